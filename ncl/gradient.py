"""The approximate two-step log-likelihood gradient (paper Sect. III, eqs. 12–17).

Two forms that must agree (``tests/test_gradient.py``):

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
from ncl.model import (ModelConfig, Params, check_params, hidden_logits, log_A,
                       recognition_log_q, recognition_score_factor, visible_logits)

Array = jax.Array


def _flatten(traj: Trajectory) -> tuple[Array, Array]:
    xs, zs = traj
    return xs.reshape(-1, xs.shape[-1]), zs.reshape(-1, zs.shape[-1])


def _mask_and_count(batch: Array, mask: Array | None):
    if mask is None:
        mask = jnp.ones(batch.shape[0], batch.dtype)
    mask = mask.astype(batch.dtype)
    return mask, jnp.maximum(jnp.sum(mask), 1.0)


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


def log_A_matrix(params: Params, batch: Array, zs: Array) -> Array:
    """``ℓ[n, t] = log A(z(t), x_n)`` (eq. 10) for data ``batch (N, D)`` and hidden
    states ``zs (S, L)`` → ``(N, S)``. Uses ``x·(w z + a) = (x w)·z + x·a``: an
    ``(N, L) @ (L, S)`` product, never an ``(N, S, D)`` tensor."""
    h = visible_logits(params, zs)                                   # (S, D)
    softplus_sum = jnp.sum(jax.nn.softplus(h), axis=-1)              # (S,)
    return (batch @ params.w) @ zs.T + (batch @ params.a)[:, None] - softplus_sum[None, :]


def two_step_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                      config: ModelConfig, mask: Array | None = None
                      ) -> tuple[Params, Array]:
    """Closed-form two-step gradient, eqs. (16a–d) with the centering of eq. (17).

    Args:
      params: model parameters (``w (D, L)``, ``a (D,)``, ``wbar (L, D)``, ``abar (L,)``).
      traj: chain samples, ``x (T, C, D)`` and ``z (T, C, L)``.
      batch: ``(N, D)`` data minibatch.
      center: ``(D,)`` centering vector ``c``.
      config: model configuration (hidden representation, recognition option).
      mask: optional ``(N,)`` 0/1 weights; only rows with mask 1 count (static shapes
        with a variable minibatch size).
    Returns:
      ``(grads, loglik)``: a :class:`Params` of ascent directions averaged over the
      counted data (``grads.a`` is zero when ``a`` is not trained) and the App. A3
      on-the-fly log-likelihood of the minibatch.
    """
    _check_gradient_inputs(params, traj, batch, center, config, mask)
    xs, zs = _flatten(traj)
    n_samples = xs.shape[0]
    mask, n_eff = _mask_and_count(batch, mask)

    if config.hidden == "onehot":
        # z(t) is one of the L basis states: tabulate h, μ and Σ softplus per state
        # (L rows) instead of per sample (T·C rows); identical values, ~T/L fewer exps.
        h_states = visible_logits(params, jnp.eye(config.n_hidden, dtype=batch.dtype))
        mu_states = jax.nn.sigmoid(h_states)                         # (L, D) μ(α), eq. (14)
        sp_states = jnp.sum(jax.nn.softplus(h_states), axis=-1)      # (L,)
        ell = (batch @ h_states.T - sp_states[None, :]) @ zs.T       # (N, TC) ℓ[n,t]
    else:
        mu = jax.nn.sigmoid(visible_logits(params, zs))              # (TC, D) μ(z(t)), eq. (14)
        ell = log_A_matrix(params, batch, zs)                        # (N, TC)
    lse = jax.nn.logsumexp(ell, axis=1)                              # (N,)
    r = jnp.exp(ell - lse[:, None]) * mask[:, None]                  # masked responsibilities
    s = jnp.sum(r, axis=0)                                           # (TC,) Σ_n r[n,t]

    # eqs. (16a), (16b): Σ_n Σ_t r[n,t] z_β(t) (x_nj − μ_j(z(t)))
    if config.hidden == "onehot":
        s_states = zs.T @ s                                          # (L,) Σ_t s_t z(t)
        model_term_w = mu_states.T * s_states[None, :]
        model_term_a = mu_states.T @ s_states
    else:
        model_term_w = mu.T @ (s[:, None] * zs)
        model_term_a = mu.T @ s
    grad_w = batch.T @ (r @ zs) - model_term_w
    if config.trains_visible_bias:
        grad_a = batch.T @ mask - model_term_a
    else:
        grad_a = jnp.zeros_like(params.a)
    # eqs. (16c), (16d), (17): Σ_t s_t (x'_j(t) − c_j) F_β(t), F = ∂ log q / ∂g
    factor = recognition_score_factor(hidden_logits(params, xs, center), zs, config)
    weighted = s[:, None] * factor                                   # (TC, L)
    grad_wbar = weighted.T @ (xs - center)
    grad_abar = jnp.sum(weighted, axis=0)

    grads = Params(w=grad_w / n_eff, a=grad_a / n_eff, wbar=grad_wbar / n_eff,
                   abar=grad_abar / n_eff)
    loglik = jnp.sum(mask * (lse - math.log(n_samples))) / n_eff
    return grads, loglik


def surrogate_objective(params: Params, traj: Trajectory, batch: Array, center: Array,
                        config: ModelConfig, mask: Array | None = None) -> Array:
    """The scalar ``S`` of SPEC step 4 whose gradient (samples fixed) is the two-step rule.

    ``S = mean_n logsumexp_t [log A(z(t), x_n) + log q(z(t)|x'(t)) − sg(log q(z(t)|x'(t)))]``;
    its value equals the on-the-fly log-likelihood plus ``log(T·C)``.
    Shapes as in :func:`two_step_gradient`. → scalar.
    """
    _check_gradient_inputs(params, traj, batch, center, config, mask)
    xs, zs = _flatten(traj)
    xs, zs = jax.lax.stop_gradient(xs), jax.lax.stop_gradient(zs)
    mask, n_eff = _mask_and_count(batch, mask)
    log_q = recognition_log_q(params, xs, zs, center, config)        # (TC,)
    log_a = jax.vmap(lambda x: log_A(params, zs, x))(batch)          # (N, TC)
    terms = log_a + (log_q - jax.lax.stop_gradient(log_q))[None, :]
    return jnp.sum(mask * jax.nn.logsumexp(terms, axis=1)) / n_eff


def autodiff_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                      config: ModelConfig, mask: Array | None = None
                      ) -> tuple[Params, Array]:
    """``jax.grad`` of :func:`surrogate_objective`; same outputs as :func:`two_step_gradient`."""
    value, grads = jax.value_and_grad(surrogate_objective)(params, traj, batch, center,
                                                            config, mask)
    if not config.trains_visible_bias:
        grads = grads._replace(a=jnp.zeros_like(grads.a))
    n_samples = traj.z.shape[0] * traj.z.shape[1]
    return grads, value - math.log(n_samples)
