"""The equilibrium baseline: a restricted Boltzmann machine in the same framework.

Layer: an estimator module, above :mod:`ncl.gradient` and :mod:`ncl.exact`, below the
registry :mod:`ncl.estimators` (which registers :func:`pcd_gradient`,
:func:`pcd_autodiff_gradient` and :func:`exact_gradient` for ``family="rbm"``, with
:func:`tie` and :func:`check_model_config`). Sizes as in :mod:`ncl.model`.

An RBM is the special case of the two-kernel model in which the recognition weights are
the transpose of the generative ones, ``wbar = wᵀ``. Written with the same
:class:`ncl.model.Params` pytree and the same (visible-)centering as the main model,
its energy is

    ``E(x, z) = −(x − c)ᵀ w z − aᵀ x − abarᵀ z``,

so that

* ``p(x | z) = Π_i sigmoid((w z + a)_i)`` is exactly the generative kernel A of eq. (10);
* ``p(z | x) ∝ exp(zᵀ g)``, ``g = wᵀ (x − c) + abar``: for ``L`` binary hidden units the
  factorised eq. (11) with ``wbar = wᵀ``; for one softmax hidden unit with ``L`` states the
  ``softmax`` recognition option restricted to one-hot states.

Because both kernels are conditionals of one joint distribution, the alternating
chain satisfies detailed balance: ``p̄(z') M[z', z] = p̄(z) M[z, z']`` and σ = 0.
Centering (``c`` = data mean, default on like the main model) is a reparametrisation
(the hidden bias becomes ``abar − wᵀ c``); it changes the optimisation path, not the
model family. With ``ModelConfig(centering=False)`` it is the textbook RBM.

The RBM is trained by persistent contrastive divergence through :mod:`ncl.training`
(``TrainConfig(family="rbm")``): the same persistent chain (:func:`ncl.chain.sample_chain`
with the tied parameters), optimiser, minibatch schedule, initialisation and seeds as
the main model. Only the gradient differs:

    ``∂w = ⟨(x − c) ν(x)ᵀ⟩_data − ⟨(x' − c) ν(x')ᵀ⟩_chain``,
    ``∂a = ⟨x⟩_data − ⟨x'⟩_chain``, ``∂abar = ⟨ν(x)⟩_data − ⟨ν(x')⟩_chain``,

``ν(x) = E[z | x]`` (sigmoid(g) for binary, softmax(g) for one-hot), the chain average
taken over all ``T`` visible states ``x'(t)`` of the segment (the samples the two-step
gradient also uses). :func:`pcd_gradient` is this closed form;
:func:`pcd_autodiff_gradient` is ``jax.grad`` of the free-energy difference; both must
agree (a test). After every update the parameters are re-tied (``wbar ← wᵀ``), so the
stored parameters are always a valid kernel pair that every other tool (chain,
diagnostics, monitor, io) accepts unchanged.

Exact log-likelihood (no sampling): with ``F(x) = log Σ_z e^{−E(x, z)}``,

* one softmax hidden unit: ``log Z = logsumexp_α [abar_α − w_αᵀ c + Σ_i softplus(a_i + w_iα)]``,
  a closed form with ``L`` terms;
* ``L`` binary hidden units: ``log Z = logsumexp_z [zᵀ(abar − wᵀ c) + Σ_i softplus((w z + a)_i)]``
  over the ``2**L`` hidden states (``L <= 20``, in chunks).

The hidden marginal ``p̄(z)`` of the RBM is exact too (:func:`log_hidden_marginal`), and
``p(x) = Σ_z p̄(z) A(z, x)`` (eq. 5) holds, so the main model's eq.-(5) likelihood given
``p̄`` agrees with :func:`log_likelihood` (a test).
"""
from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

from ncl import exact
from ncl.chain import Trajectory
from ncl.gradient import finish_gradient, flatten_trajectory, mask_and_count
from ncl.model import (MAX_ENUMERABLE_BINARY_UNITS, ModelConfig, Params, hidden_logits,
                       log_A_matrix)

Array = jax.Array

STATE_CHUNK = 4096
"""Hidden states per chunk when enumerating ``2**L`` binary states."""


# ----------------------------------------------------------------------------- config

def rbm_model_config(n_hidden: int = 6, hidden: str = "onehot", centering: bool = True,
                     learn_visible_bias: bool | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of an RBM: ``softmax`` recognition for one softmax hidden
    unit (``hidden="onehot"``), the factorised eq. (11) for binary hidden units."""
    return ModelConfig(n_hidden=n_hidden, hidden=hidden,
                       recognition="softmax" if hidden == "onehot" else "paper",
                       centering=centering, learn_visible_bias=learn_visible_bias)


def as_rbm_model_config(config: ModelConfig) -> ModelConfig:
    """The RBM counterpart of a main-model config: same L, hidden kind, centering and
    visible-bias choice; recognition set to what the RBM's ``p(z|x)`` is."""
    return rbm_model_config(config.n_hidden, config.hidden, config.centering,
                            config.learn_visible_bias)


def check_model_config(config: ModelConfig) -> None:
    """``ValueError`` unless ``config`` describes an RBM's conditionals (one-hot hidden
    units need ``recognition="softmax"``: eq. 19 is not the conditional of any energy)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.hidden == "onehot" and config.recognition != "softmax":
        raise ValueError(
            "an RBM with one softmax hidden unit needs ModelConfig(recognition='softmax') "
            f"(p(z|x) = softmax(w^T (x - c) + abar)); got recognition={config.recognition!r}. "
            "Use ncl.rbm.rbm_model_config(...) or ncl.rbm.as_rbm_model_config(config)")


# ----------------------------------------------------------------------------- parameters

def tie(params: Params) -> Params:
    """The RBM's kernel pair: ``wbar = wᵀ`` (works on a leading member axis too)."""
    return params._replace(wbar=jnp.swapaxes(params.w, -1, -2))


def is_tied(params: Params, atol: float = 0.0) -> bool:
    """Whether ``wbar == wᵀ`` (host-side check)."""
    return bool(jnp.all(jnp.abs(params.wbar - jnp.swapaxes(params.w, -1, -2)) <= atol))


def effective_hidden_bias(params: Params, center: Array) -> Array:
    """``abar − wᵀ c``: the hidden bias of the equivalent uncentered RBM, ``(L,)``."""
    return params.abar - center @ params.w


# ----------------------------------------------------------------------------- energies

def hidden_expectation(params: Params, x: Array, center: Array, config: ModelConfig) -> Array:
    """``ν(x) = E[z | x]``: sigmoid(g) (binary) or softmax(g) (one-hot), ``g = wᵀ(x − c) + abar``.

    Uses ``w`` (not ``wbar``), so it is the RBM's conditional whether or not the
    parameters are tied. ``x (..., D)`` → ``(..., L)``.
    """
    g = hidden_logits(tie(params), x, center)
    if config.hidden == "onehot":
        return jax.nn.softmax(g, axis=-1)
    return jax.nn.sigmoid(g)


def neg_free_energy(params: Params, x: Array, center: Array, config: ModelConfig) -> Array:
    """``F(x) = log Σ_z exp(−E(x, z))``: ``aᵀx + Σ_α softplus(g_α)`` (binary) or
    ``aᵀx + logsumexp_α g_α`` (one-hot). ``x (..., D)`` → ``(...)``."""
    g = hidden_logits(tie(params), x, center)
    vis = x @ params.a
    if config.hidden == "onehot":
        return vis + jax.nn.logsumexp(g, axis=-1)
    return vis + jnp.sum(jax.nn.softplus(g), axis=-1)


def _states_from_indices(idx: Array, L: int) -> Array:
    return ((idx[:, None].astype(jnp.uint32) >> jnp.arange(L, dtype=jnp.uint32)) & 1
            ).astype(jnp.float32)


def _log_hidden_weight_rows(params: Params, states: Array, b_eff: Array) -> Array:
    """``zᵀ b_eff + Σ_i softplus((w z + a)_i)`` for ``states (S, L)`` → ``(S,)``."""
    h = states @ params.w.T + params.a
    return states @ b_eff + jnp.sum(jax.nn.softplus(h), axis=-1)


def log_hidden_weights(params: Params, center: Array, config: ModelConfig,
                       chunk: int = STATE_CHUNK) -> Array:
    """Unnormalised log hidden marginal ``log Σ_x e^{−E(x, z)}`` for every hidden state.

    States ordered as :func:`ncl.model.enumerate_hidden_states`. One-hot: ``(L,)``;
    binary: ``(2**L,)``, computed ``chunk`` states at a time (``L <= 20``).
    """
    b_eff = effective_hidden_bias(params, center)
    L = config.n_hidden
    if config.hidden == "onehot":
        return _log_hidden_weight_rows(params, jnp.eye(L, dtype=params.w.dtype), b_eff)
    if L > MAX_ENUMERABLE_BINARY_UNITS:
        raise ValueError(f"exact RBM quantities enumerate 2**L hidden states; L = {L} > "
                         f"{MAX_ENUMERABLE_BINARY_UNITS} is not supported")
    S = 2 ** L
    c = min(chunk, S)
    n_chunks = S // c  # S and c are powers of two

    def one(i):
        idx = i * c + jnp.arange(c, dtype=jnp.int32)
        return _log_hidden_weight_rows(params, _states_from_indices(idx, L), b_eff)

    return jax.lax.map(one, jnp.arange(n_chunks)).reshape(S)


def log_partition(params: Params, center: Array, config: ModelConfig) -> Array:
    """``log Z`` exactly: closed form (one-hot, L terms) or 2**L enumeration (binary)."""
    return jax.nn.logsumexp(log_hidden_weights(params, center, config))


def log_hidden_marginal(params: Params, center: Array, config: ModelConfig) -> Array:
    """Exact ``log p̄(z)`` of the RBM, ``(S,)`` (the stationary hidden distribution of its
    chain), states ordered as :func:`ncl.model.enumerate_hidden_states`."""
    lw = log_hidden_weights(params, center, config)
    return lw - jax.nn.logsumexp(lw)


def log_prob(params: Params, x: Array, center: Array, config: ModelConfig) -> Array:
    """Exact ``log p(x) = F(x) − log Z``. ``x (..., D)`` → ``(...)``."""
    return neg_free_energy(params, x, center, config) - log_partition(params, center, config)


def log_likelihood(params: Params, data: Array, center: Array, config: ModelConfig,
                   mask: Array | None = None) -> Array:
    """Exact mean log-likelihood ``mean_n log p(x_n)`` (eq. 7) over ``data (N, D)``
    (optionally weighted by a 0/1 ``mask (N,)``). Differentiable. → scalar (nats).

    The signature of :func:`ncl.exact.log_likelihood` (the main model's exact eq. 7);
    the eq. (5) likelihood given an *estimated* occupancy is
    :func:`ncl.model.log_likelihood_given_occupancy`."""
    chex.assert_rank(data, 2)
    mask, n_eff = mask_and_count(data, mask)
    F = neg_free_energy(params, data, center, config)
    return jnp.sum(mask * F) / n_eff - log_partition(params, center, config)


# ----------------------------------------------------------------------------- gradients

def on_the_fly_loglik(params: Params, traj: Trajectory, batch: Array, mask: Array | None
                      ) -> Array:
    """App. A3 minibatch estimate ``mean_n [logsumexp_t log A(z(t), x_n) − log T]`` from the
    chain's hidden samples: valid for any model with ``p(x) = Σ_z p̄(z) A(z, x)``, the RBM
    included, so the training histories of both families are comparable."""
    _, zs = flatten_trajectory(traj)
    mask, n_eff = mask_and_count(batch, mask)
    lse = jax.nn.logsumexp(log_A_matrix(params, batch, zs), axis=1)
    return jnp.sum(mask * (lse - math.log(zs.shape[0]))) / n_eff


def pcd_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                 config: ModelConfig, mask: Array | None = None, *,
                 hidden_logits: Array | None = None) -> tuple[Params, Array]:
    """Persistent-contrastive-divergence gradient of the RBM log-likelihood (closed form).

    Same signature and outputs as :func:`ncl.gradient.two_step_gradient`: ``traj`` the
    chain segment (``x (T, C, D)``; all ``T·C`` visible states are the negative phase),
    ``batch (N, D)`` the minibatch with optional 0/1 ``mask``. Returns ``(grads, loglik)``:
    ascent directions as :class:`Params` (``grads.wbar`` is zero: ``wbar`` is tied to
    ``wᵀ`` after each update; ``grads.a`` is zero when ``a`` is not trained) and the App. A3
    on-the-fly log-likelihood of the minibatch. ``hidden_logits`` (the chain's ``g``,
    computed with ``wbar``) is accepted for the common signature and ignored.
    """
    chex.assert_rank(batch, 2)
    xs, _ = flatten_trajectory(traj)
    mask, n_eff = mask_and_count(batch, mask)
    n_s = xs.shape[0]
    nu_d = hidden_expectation(params, batch, center, config) * mask[:, None]    # (N, L)
    nu_m = hidden_expectation(params, xs, center, config)                       # (TC, L)
    grad_w = (batch - center).T @ nu_d / n_eff - (xs - center).T @ nu_m / n_s
    grad_abar = jnp.sum(nu_d, axis=0) / n_eff - jnp.mean(nu_m, axis=0)
    if config.trains_visible_bias:
        grad_a = batch.T @ mask / n_eff - jnp.mean(xs, axis=0)
    else:
        grad_a = jnp.zeros_like(params.a)
    grads = Params(w=grad_w, a=grad_a, wbar=jnp.zeros_like(params.wbar), abar=grad_abar)
    return grads, on_the_fly_loglik(params, traj, batch, mask)


def pcd_surrogate(params: Params, traj: Trajectory, batch: Array, center: Array,
                  config: ModelConfig, mask: Array | None = None) -> Array:
    """``mean_n F(x_n) − mean_t F(x'(t))`` with the chain samples held fixed: its gradient
    is the PCD gradient (the ``− log Z`` term replaced by the chain average)."""
    xs, _ = flatten_trajectory(traj)
    xs = jax.lax.stop_gradient(xs)
    mask, n_eff = mask_and_count(batch, mask)
    pos = jnp.sum(mask * neg_free_energy(params, batch, center, config)) / n_eff
    return pos - jnp.mean(neg_free_energy(params, xs, center, config))


def pcd_autodiff_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                          config: ModelConfig, mask: Array | None = None, *,
                          hidden_logits: Array | None = None) -> tuple[Params, Array]:
    """``jax.grad`` of :func:`pcd_surrogate`; same outputs as :func:`pcd_gradient`
    (``hidden_logits`` ignored)."""
    grads = jax.grad(pcd_surrogate)(tie(params), traj, batch, center, config, mask)
    # the surrogate reads w only through tie(); its wbar leaf is unused
    return (finish_gradient(grads, params, config, tied=True),
            on_the_fly_loglik(params, traj, batch, mask))


def exact_gradient(params: Params, traj: Trajectory, batch: Array, center: Array,
                   config: ModelConfig, mask: Array | None = None, *,
                   hidden_logits: Array | None = None) -> tuple[Params, Array]:
    """Gradient of the *exact* minibatch log-likelihood (no chain; ``traj`` and
    ``hidden_logits`` are ignored):
    exact maximum-likelihood training of the RBM (cheap for one softmax hidden unit,
    ``2**L`` states for binary ones). Returns ``(grads, exact minibatch loglik)``."""
    value, grads = jax.value_and_grad(log_likelihood)(tie(params), batch, center, config,
                                                      mask)
    return finish_gradient(grads, params, config, tied=True), value


def rbm_train_config(config, **changes):
    """The RBM counterpart of a :class:`ncl.training.TrainConfig`: identical protocol
    (optimiser, chain length, schedule, init, monitoring), ``family="rbm"`` and the RBM's
    model config (:func:`as_rbm_model_config`). ``changes`` override fields."""
    return dataclasses.replace(config, family="rbm", model=as_rbm_model_config(config.model),
                               **changes)


# ----------------------------------------------------------------------------- checks

def exact_hidden_transition_matrix(params: Params, center: Array, config: ModelConfig) -> Array:
    """``M[z', z] = Σ_x A(z', x) Ā(x, z)`` by enumerating all ``2**D`` visible states
    (small D only; see :func:`ncl.exact.log_hidden_transition_matrix`). ``(S, S)``."""
    return jnp.exp(exact.log_hidden_transition_matrix(tie(params), center, config))


def detailed_balance_violation(params: Params, center: Array, config: ModelConfig) -> Array:
    """``max |p̄(z') M[z', z] − p̄(z) M[z, z']|`` with the exact RBM ``p̄`` and exact ``M``
    (small D): 0 up to round-off for an RBM."""
    M = exact_hidden_transition_matrix(params, center, config)
    p = jnp.exp(log_hidden_marginal(params, center, config))
    F = p[:, None] * M
    return jnp.max(jnp.abs(F - F.T))


__all__ = [
    "as_rbm_model_config", "check_model_config", "detailed_balance_violation",
    "effective_hidden_bias", "exact_gradient", "exact_hidden_transition_matrix",
    "hidden_expectation", "is_tied", "log_hidden_marginal",
    "log_hidden_weights", "log_likelihood", "log_partition", "log_prob", "neg_free_energy",
    "on_the_fly_loglik", "pcd_autodiff_gradient", "pcd_gradient", "pcd_surrogate",
    "rbm_model_config", "rbm_train_config", "tie",
]
