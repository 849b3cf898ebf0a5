"""The approximate two-step log-likelihood gradient (paper Sect. III, eqs. 12–17).

Layer: above :mod:`ncl.chain` (it reads a chain's :class:`ncl.chain.Trajectory`);
below the estimators :mod:`ncl.exact`, :mod:`ncl.rbm` and the registry
:mod:`ncl.estimators`. Besides the two forms it owns the helpers every estimator
shares: :func:`flatten_trajectory`, :func:`mask_and_count` (the masked minibatch) and
:func:`finish_gradient` (zero what is not trained). Sizes as in :mod:`ncl.model`.

Two forms that must agree (``tests/test_chain_gradient.py``):

* :func:`two_step_gradient`: the closed form of eqs. (16a–d) with the centering of
  eq. (17), written as a few matrix products;
* :func:`autodiff_gradient`: ``jax.grad`` of :func:`surrogate_objective`
  ``S = mean_n logsumexp_t [log A(z(t), x_n) + log q(z(t)|x'(t)) − sg(log q(z(t)|x'(t)))]``
  with the chain samples held fixed.

Both return the gradient of the log-likelihood (to be *ascended*) and the
on-the-fly log-likelihood estimate of App. A3, ``mean_n [logsumexp_t ℓ[n,t] − log T]``.
Samples from ``C`` parallel chains are pooled: ``T`` is replaced by ``T·C``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ncl.chain import Trajectory
from ncl.model import (ModelConfig, Params, check_params, log_A, log_A_matrix,
                       recognition_log_q, recognition_score_factor, softplus, visible_logits)
from ncl.model import hidden_logits as model_hidden_logits

Array = jax.Array


def flatten_trajectory(traj: Trajectory) -> tuple[Array, Array]:
    """A segment's ``x (T, C, D)``, ``z (T, C, L)`` pooled into ``(T·C, D)``, ``(T·C, L)``."""
    xs, zs = traj
    return xs.reshape(-1, xs.shape[-1]), zs.reshape(-1, zs.shape[-1])


def mask_and_count(batch: Array, mask: Array | None) -> tuple[Array, Array]:
    """The 0/1 row weights of a minibatch ``batch (N, D)`` and ``N_e = max(Σ mask, 1)``.

    ``mask (N,)`` (``None``: all rows count) is cast to the batch's float dtype, or to
    float32 for an integer (or bool) batch, so integer masks and data work too.
    """
    dtype = batch.dtype if jnp.issubdtype(batch.dtype, jnp.floating) else jnp.float32
    if mask is None:
        mask = jnp.ones(batch.shape[0], dtype)
    mask = mask.astype(dtype)
    return mask, jnp.maximum(jnp.sum(mask), 1.0)


def finish_gradient(grads: Params, params: Params, config: ModelConfig,
                    tied: bool = False) -> Params:
    """Zero what is not trained: ``grads.a`` when ``a`` is not (``config``), and
    ``grads.wbar`` for tied parameters (the RBM family, ``wbar ← wᵀ`` after each update)."""
    if tied:
        grads = grads._replace(wbar=jnp.zeros_like(params.wbar))
    if not config.trains_visible_bias:
        grads = grads._replace(a=jnp.zeros_like(params.a))
    return grads


def _check_gradient_inputs(params, traj, batch, center, config, mask) -> None:
    """Shape checks (trace time): a mismatch is one clear ``ValueError``, not a JAX error."""
    if getattr(batch, "ndim", None) != 2:
        raise ValueError("batch must be a 2-D array (N, D) of data rows, got shape "
                         f"{getattr(batch, 'shape', type(batch).__name__)}")
    D = check_params(params, config, batch.shape[1], what="the batch")
    xs, zs = traj
    if xs.ndim != 3 or xs.shape[-1] != D or zs.shape != xs.shape[:2] + (config.n_hidden,):
        raise ValueError(f"traj must hold x (T, C, {D}) and z (T, C, {config.n_hidden}) "
                         f"(from ncl.chain.sample_chain), got x {tuple(xs.shape)} and z "
                         f"{tuple(zs.shape)}")
    if tuple(jnp.shape(center)) != (D,):
        raise ValueError(f"center must have shape ({D},), got {tuple(jnp.shape(center))}")
    if mask is not None and tuple(jnp.shape(mask)) != (batch.shape[0],):
        raise ValueError(f"mask must have shape ({batch.shape[0]},) (one weight per batch "
                         f"row), got {tuple(jnp.shape(mask))}")


def two_step_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                      config: ModelConfig, mask: Array | None = None, *,
                      hidden_logits: Array | None = None) -> tuple[Params, Array]:
    """Closed-form two-step gradient, eqs. (16a–d) with the centering of eq. (17).

    Args:
      params: model parameters (``w (D, L)``, ``a (D,)``, ``wbar (L, D)``, ``abar (L,)``).
      traj: chain samples, ``x (T, C, D)`` and ``z (T, C, L)`` (one-hot rows for
        one-hot hidden units).
      batch: ``(N, D)`` data minibatch.
      center: ``(D,)`` centering vector ``c``.
      config: model configuration (hidden representation, recognition option).
      mask: optional ``(N,)`` 0/1 weights; only rows with mask 1 count (static shapes
        with a variable minibatch size).
      hidden_logits: optional ``(T, C, L)`` logits ``g = wbar (x' − c) + abar`` of
        ``traj.x`` (eq. 17), as returned by :func:`ncl.chain.sample_chain_with_logits`;
        computed here if omitted.
    Returns:
      ``(grads, loglik)``: a :class:`Params` of ascent directions averaged over the
      counted data (``grads.a`` is zero when ``a`` is not trained) and the App. A3
      on-the-fly log-likelihood of the minibatch.

    The products with the minibatch and the trajectory are written as contractions with
    ``(L, ·)`` operands, e.g. ``Σ_n (r z)[n, β] x_n`` as ``(L, N) × (N, D)``: on XLA's CPU
    backend this orientation runs about twice as fast as ``batchᵀ @ (r z)``.
    """
    _check_gradient_inputs(params, traj, batch, center, config, mask)
    if hidden_logits is not None and tuple(jnp.shape(hidden_logits)) != tuple(traj.z.shape):
        raise ValueError(f"hidden_logits must have the shape of traj.z, "
                         f"{tuple(traj.z.shape)}, got {tuple(jnp.shape(hidden_logits))}")
    xs, zs = flatten_trajectory(traj)
    n_samples = xs.shape[0]
    dtype = params.w.dtype
    batch = batch.astype(dtype)
    mask, n_eff = mask_and_count(batch, mask)

    if config.hidden == "onehot":
        # z(t) is one of the L basis states e_α: ℓ[n, t] = E[n, α(t)] with
        # E[n, α] = log A(e_α, x_n), so everything over t reduces to the L states
        # weighted by their counts k_α = #{t: α(t) = α}:
        #   logsumexp_t ℓ[n, t] = logsumexp_α (E[n, α] + log k_α),
        #   (r @ z)[n, α] = Σ_{t: α(t) = α} r[n, t] = exp(E[n, α] + log k_α − lse_n),
        #   r[n, t] = (r @ z)[n, α(t)] / k_α(t).
        h_states = params.w.T + params.a                             # (L, D) = h(e_α)
        mu_states = jax.nn.sigmoid(h_states)                         # μ(e_α), eq. (14)
        sp_states = jnp.sum(softplus(h_states), axis=-1)            # (L,)
        E = jnp.einsum("nd,ld->nl", batch, h_states) - sp_states     # (N, L)
        counts = jnp.sum(zs, axis=0)                                 # (L,) k_α
        visited = counts > 0
        log_counts = jnp.where(visited, jnp.log(jnp.where(visited, counts, 1)), -jnp.inf)
        lse = jax.nn.logsumexp(E + log_counts, axis=1)               # (N,)
        rz = jnp.exp(E + log_counts - lse[:, None]) * mask[:, None]  # (N, L) = r @ z, masked
        s_states = jnp.sum(rz, axis=0)                               # (L,) Σ_n Σ_t r z(t)
        s = zs @ jnp.where(visited, s_states / jnp.where(visited, counts, 1), 0)  # (TC,)
        # eqs. (16a), (16b): Σ_n Σ_t r[n,t] z_β(t) (x_nj − μ_j(z(t)))
        data_term_w = jnp.einsum("nl,nd->ld", rz, batch)             # (L, D)
        model_term_w = mu_states * s_states[:, None]
        grad_w = (data_term_w - model_term_w).T
        model_term_a = mu_states.T @ s_states
    else:
        mu = jax.nn.sigmoid(visible_logits(params, zs))              # (TC, D) μ(z(t)), eq. (14)
        ell = log_A_matrix(params, batch, zs)                        # (N, TC)
        lse = jax.nn.logsumexp(ell, axis=1)                          # (N,)
        r = jnp.exp(ell - lse[:, None]) * mask[:, None]              # masked responsibilities
        s = jnp.sum(r, axis=0)                                       # (TC,) Σ_n r[n,t]
        data_term_w = jnp.einsum("nl,nd->ld", r @ zs, batch)         # (L, D)
        model_term_w = jnp.einsum("tl,td->ld", s[:, None] * zs, mu)
        grad_w = (data_term_w - model_term_w).T
        model_term_a = mu.T @ s
    if config.trains_visible_bias:
        grad_a = mask @ batch - model_term_a
    else:
        grad_a = jnp.zeros_like(params.a)
    # eqs. (16c), (16d), (17): Σ_t s_t (x'_j(t) − c_j) F_β(t), F = ∂ log q / ∂g,
    # with g = wbar x' + (abar − wbar c) and Σ_t F(t) (x'(t) − c) = F^T x' − (Σ_t F(t)) c.
    g = (model_hidden_logits(params, xs, center) if hidden_logits is None
         else hidden_logits.reshape(zs.shape))
    weighted = s[:, None] * recognition_score_factor(g, zs, config)  # (TC, L)
    grad_abar = jnp.sum(weighted, axis=0)
    grad_wbar = jnp.einsum("tl,td->ld", weighted, xs) - grad_abar[:, None] * center[None, :]

    grads = Params(w=grad_w / n_eff, a=grad_a / n_eff, wbar=grad_wbar / n_eff,
                   abar=grad_abar / n_eff)
    loglik = jnp.sum(mask * (lse - math.log(n_samples))) / n_eff
    return grads, loglik


def surrogate_objective(params: Params, traj: Trajectory, batch: Array, center: Array,
                        config: ModelConfig, mask: Array | None = None) -> Array:
    """The scalar ``S`` of docs/model.md training step 4 whose gradient (samples fixed) is the
    two-step rule.

    ``S = mean_n logsumexp_t [log A(z(t), x_n) + log q(z(t)|x'(t)) − sg(log q(z(t)|x'(t)))]``;
    its value equals the on-the-fly log-likelihood plus ``log(T·C)``.
    Shapes as in :func:`two_step_gradient`. → scalar.
    """
    _check_gradient_inputs(params, traj, batch, center, config, mask)
    xs, zs = flatten_trajectory(traj)
    xs, zs = jax.lax.stop_gradient(xs), jax.lax.stop_gradient(zs)
    mask, n_eff = mask_and_count(batch, mask)
    log_q = recognition_log_q(params, xs, zs, center, config)        # (TC,)
    log_a = jax.vmap(lambda x: log_A(params, zs, x))(batch)          # (N, TC)
    terms = log_a + (log_q - jax.lax.stop_gradient(log_q))[None, :]
    return jnp.sum(mask * jax.nn.logsumexp(terms, axis=1)) / n_eff


def autodiff_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                      config: ModelConfig, mask: Array | None = None, *,
                      hidden_logits: Array | None = None) -> tuple[Params, Array]:
    """``jax.grad`` of :func:`surrogate_objective`; same outputs as :func:`two_step_gradient`.

    ``hidden_logits`` is accepted for the common estimator signature and ignored (the
    surrogate differentiates through ``g``, so it recomputes it)."""
    del hidden_logits
    value, grads = jax.value_and_grad(surrogate_objective)(params, traj, batch, center,
                                                            config, mask)
    grads = finish_gradient(grads, params, config)
    n_samples = traj.z.shape[0] * traj.z.shape[1]
    return grads, value - math.log(n_samples)
