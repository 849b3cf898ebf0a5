"""Exact reference for small visible layers: stationary distribution, exact
log-likelihood, its exact gradient, and the T → ∞ limit of the two-step gradient.

Layer: an estimator module, above :mod:`ncl.gradient` (whose helpers and signature it
shares) and below the registry :mod:`ncl.estimators`. Sizes as in :mod:`ncl.model`.

For ``D`` visible bits the visible chain ``x' → z → x`` has the ``2**D × 2**D`` transition
matrix ``P[x', x] = Σ_z Ā(x', z) A(z, x)`` (paper Sect. III); its stationary vector
``p(x)`` is the model's distribution and ``L = mean_n log p(x_n)`` (eq. 7) the quantity the
two-step rule tries to maximise.

Two exactly equivalent routes, both differentiable (linear solves, no eigendecomposition):

* **dense** (:func:`visible_transition_matrix`, :func:`stationary_visible_dense`): solve
  ``p (P − I) = 0`` with ``Σ p = 1`` on the ``2**D`` states (``D <= 14``); the literal
  definition, used as a cross-check.
* **hidden** (default; :func:`log_hidden_transition_matrix`, :func:`stationary_hidden`):
  ``P = Ā A`` has rank ``S`` (the number of hidden states), and with ``p̄ = p Ā`` one has
  ``p = p̄ A`` and ``p̄ = p̄ (A Ā) = p̄ M``. So ``p̄`` is the stationary vector of the
  ``S × S`` matrix ``M[z', z] = Σ_x A(z', x) Ā(x, z)`` (eq. 3, computed exactly by
  enumerating the ``2**D`` visible states in log space) and ``p(x) = Σ_z p̄(z) A(z, x)``
  (eq. 5). The solve is ``S × S``, so ``D`` up to :data:`MAX_VISIBLE` = 20 is cheap.

Gradients:

* :func:`exact_gradient` — ``jax.grad`` of :func:`log_likelihood` on a minibatch: the
  true gradient, including the dependence of ``p̄`` on every parameter.
* :func:`expected_two_step_gradient` — the two-step rule of eqs. (16a–d)/(17) with
  every chain average taken exactly over the stationary state (the ``T → ∞``,
  perfectly-mixed limit of :func:`ncl.gradient.two_step_gradient`): ``p̄`` and
  ``p(x')`` are held fixed and only ``A`` in ``Σ_z p̄(z) A(z, x)`` and ``q(z|x')`` in the
  last double step are differentiated. It is the gradient of the surrogate
  ``mean_n log Σ_z sg(p̄(z)) A(z, x_n) + Σ_{x',z} sg(p(x') Ā(x', z) R(z)) log q(z|x')``,
  ``R(z) = mean_n A(z, x_n)/p(x_n)``, with ``log q`` the recognition log-probability the
  configured option differentiates (:func:`ncl.model.recognition_log_q`).

Both have the signature of :func:`ncl.gradient.two_step_gradient` (the chain segment and
its hidden logits are ignored), so ``TrainConfig(gradient="exact")`` and
``TrainConfig(gradient="two-step-expected")`` train with them through the registry
:mod:`ncl.estimators` under the unchanged protocol.

Likelihood names: :func:`log_likelihood` here is the *exact* eq. (7), ``(params, data,
center, config, mask)``, with the model's exact stationary state; the eq. (5) likelihood
given an estimated occupancy is :func:`ncl.model.log_likelihood_given_occupancy`.
"""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ncl.chain import Trajectory
from ncl.gradient import finish_gradient, mask_and_count
from ncl.model import (ModelConfig, Params, enumerate_hidden_states, log_A_matrix,
                       log_abar_all_states, recognition_log_q)

Array = jax.Array

MAX_VISIBLE = 20
"""Largest ``D`` for the hidden-space route (``2**D`` visible states enumerated in chunks)."""
MAX_DENSE_VISIBLE = 14
"""Largest ``D`` for the dense ``2**D × 2**D`` route."""
VISIBLE_CHUNK = 4096


def check_visible(D: int, dense: bool = False) -> None:
    limit = MAX_DENSE_VISIBLE if dense else MAX_VISIBLE
    if D > limit:
        raise ValueError(
            f"the exact reference enumerates all 2**D visible states; D = {D} > {limit} "
            f"is not supported{' by the dense route' if dense else ''} (downsample the data, "
            "e.g. ncl.exact.block_downsample)")


# ----------------------------------------------------------------------------- enumeration

def enumerate_visible(D: int) -> Array:
    """All ``2**D`` visible states as float32 rows ``(2**D, D)``; state ``s`` has bit ``i`` =
    ``(s >> i) & 1`` (so :func:`visible_state_index` inverts it)."""
    check_visible(D)
    s = jnp.arange(2 ** D, dtype=jnp.uint32)[:, None]
    return ((s >> jnp.arange(D, dtype=jnp.uint32)) & 1).astype(jnp.float32)


def visible_state_index(x) -> Array:
    """Index of ``x (..., D)`` (0/1) in :func:`enumerate_visible` → ``(...)`` int32."""
    x = jnp.asarray(x)
    D = x.shape[-1]
    check_visible(D)
    return jnp.sum(x.astype(jnp.int32) * (2 ** jnp.arange(D, dtype=jnp.int32)), axis=-1)


def _visible_chunks(D: int, chunk: int):
    n = 2 ** D
    c = min(chunk, n)
    return c, n // c  # both powers of two


def log_hidden_transition_matrix(params: Params, center: Array, config: ModelConfig,
                                 chunk: int = VISIBLE_CHUNK) -> Array:
    """Exact ``log M[z', z] = log Σ_x A(z', x) Ā(x, z)`` (eq. 3), ``(S, S)``.

    Enumerates the ``2**D`` visible states ``chunk`` at a time and accumulates with
    logsumexp (no small entry underflows). Differentiable.
    """
    D = params.w.shape[0]
    check_visible(D)
    states = enumerate_hidden_states(config)
    c, n_chunks = _visible_chunks(D, chunk)

    def one(i):
        idx = (i * c + jnp.arange(c, dtype=jnp.uint32))[:, None]
        x = ((idx >> jnp.arange(D, dtype=jnp.uint32)) & 1).astype(jnp.float32)
        la = log_A_matrix(params, x, states)                       # (c, S): log A(z', x)
        lab = log_abar_all_states(params, x, center, config)           # (c, S): log Ā(x, z)
        return jax.nn.logsumexp(la[:, :, None] + lab[:, None, :], axis=0)

    if n_chunks == 1:
        return one(0)
    return jax.nn.logsumexp(jax.lax.map(one, jnp.arange(n_chunks)), axis=0)


def stationary_hidden(M: Array) -> Array:
    """Stationary vector of a row-stochastic ``M (S, S)``: solves ``(I − M + 1 1ᵀ)ᵀ p = 1``
    (non-singular exactly when the stationary vector is unique; every entry of the exact
    ``M`` is positive, so it is). Differentiable; no eigendecomposition."""
    S = M.shape[-1]
    A = (jnp.eye(S, dtype=M.dtype) - M + 1.0).T
    p = jnp.linalg.solve(A, jnp.ones((S,), M.dtype))
    return p / jnp.sum(p)


def log_stationary_hidden(params: Params, center: Array, config: ModelConfig) -> Array:
    """Exact ``log p̄(z)`` (eq. 6), ``(S,)``."""
    lM = log_hidden_transition_matrix(params, center, config)
    lM = lM - jax.nn.logsumexp(lM, axis=-1, keepdims=True)  # rows sum to 1 exactly
    p = stationary_hidden(jnp.exp(lM))
    return jnp.log(jnp.clip(p, 1e-38, None))


def log_stationary_visible(params: Params, center: Array, config: ModelConfig) -> Array:
    """Exact ``log p(x)`` for all ``2**D`` visible states (ordered as
    :func:`enumerate_visible`), through the hidden-space route: ``(2**D,)``."""
    D = params.w.shape[0]
    lp = log_stationary_hidden(params, center, config)
    X = enumerate_visible(D)
    return jax.nn.logsumexp(log_A_matrix(params, X, enumerate_hidden_states(config))
                            + lp[None, :], axis=1)


def visible_transition_matrix(params: Params, center: Array, config: ModelConfig) -> Array:
    """Dense ``P[x', x] = Σ_z Ā(x', z) A(z, x)``, ``(2**D, 2**D)`` (``D <= 14``)."""
    D = params.w.shape[0]
    check_visible(D, dense=True)
    X = enumerate_visible(D)
    abar = jnp.exp(log_abar_all_states(params, X, center, config))             # (2^D, S)
    A = jnp.exp(log_A_matrix(params, X, enumerate_hidden_states(config))).T  # (S, 2^D)
    return abar @ A


def stationary_visible_dense(P: Array) -> Array:
    """Solve ``p (P − I) = 0``, ``Σ p = 1`` for a dense row-stochastic ``P`` (the literal
    definition; differentiable)."""
    return stationary_hidden(P / jnp.sum(P, axis=-1, keepdims=True))


# ----------------------------------------------------------------------------- likelihood

def log_likelihood(params: Params, data: Array, center: Array, config: ModelConfig,
                   mask: Array | None = None, method: str = "hidden") -> Array:
    """Exact ``mean_n log p(x_n)`` (eq. 7) of ``data (N, D)``, optionally weighted by a 0/1
    ``mask``. ``method``: ``"hidden"`` (default, ``S × S`` solve) or ``"dense"``
    (``2**D × 2**D`` solve). Differentiable in ``params``. → scalar (nats)."""
    chex.assert_rank(data, 2)
    mask, n_eff = mask_and_count(data, mask)
    if method == "dense":
        P = visible_transition_matrix(params, center, config)
        logp = jnp.log(stationary_visible_dense(P))[visible_state_index(data)]
    elif method == "hidden":
        lp = log_stationary_hidden(params, center, config)
        logp = jax.nn.logsumexp(log_A_matrix(params, data, enumerate_hidden_states(config))
                                + lp[None, :], axis=1)
    else:
        raise ValueError(f"method must be 'hidden' or 'dense', got {method!r}")
    return jnp.sum(mask * logp) / n_eff


def exact_gradient(params: Params, traj: Trajectory | None, batch: Array, center: Array,
                   config: ModelConfig, mask: Array | None = None, *,
                   hidden_logits: Array | None = None) -> tuple[Params, Array]:
    """The true gradient: ``jax.grad`` of :func:`log_likelihood` on the (masked) minibatch.

    Signature of :func:`ncl.gradient.two_step_gradient` (``traj`` and ``hidden_logits``
    are ignored). Returns
    ``(grads, exact minibatch log-likelihood)``; ``grads.a`` is zero when ``a`` is not trained.
    """
    value, grads = jax.value_and_grad(log_likelihood)(params, batch, center, config, mask)
    return finish_gradient(grads, params, config), value


def two_step_surrogate(params: Params, batch: Array, center: Array, config: ModelConfig,
                       mask: Array | None = None) -> tuple[Array, Array]:
    """``(surrogate, exact log-likelihood)``: the gradient of the surrogate is the
    two-step rule with exact stationary averages (see the module docstring)."""
    D = params.w.shape[0]
    mask, n_eff = mask_and_count(batch, mask)
    states = enumerate_hidden_states(config)
    sg = jax.lax.stop_gradient
    lp_bar = sg(log_stationary_hidden(params, center, config))              # (S,)
    la_data = log_A_matrix(params, batch, states)                           # (N, S)
    log_px = jax.nn.logsumexp(la_data + lp_bar[None, :], axis=1)            # (N,)
    s1 = jnp.sum(mask * log_px) / n_eff
    # R(z) = mean_n A(z, x_n) / p(x_n)
    R = jnp.sum(mask[:, None] * jnp.exp(sg(la_data - log_px[:, None])), axis=0) / n_eff
    X = enumerate_visible(D)
    sp = sg(params)
    lp_vis = jax.nn.logsumexp(log_A_matrix(sp, X, states) + lp_bar[None, :], axis=1)
    l_abar = log_abar_all_states(sp, X, center, config)                        # (2^D, S)
    weight = sg(jnp.exp(lp_vis[:, None] + l_abar) * R[None, :])             # (2^D, S)
    log_q = recognition_log_q(params, X[:, None, :], states[None, :, :], center, config)
    s2 = jnp.sum(weight * log_q)
    return s1 + s2, sg(s1)


def expected_two_step_gradient(params: Params, traj: Trajectory | None, batch: Array,
                               center: Array, config: ModelConfig, mask: Array | None = None,
                               *, hidden_logits: Array | None = None
                               ) -> tuple[Params, Array]:
    """The two-step rule (eqs. 16a–d, 17) in its ``T → ∞`` limit: chain averages taken
    exactly over the stationary state. Signature of :func:`ncl.gradient.two_step_gradient`
    (``traj`` and ``hidden_logits`` ignored). Returns ``(grads, exact minibatch
    log-likelihood)``."""
    grads, value = jax.grad(two_step_surrogate, has_aux=True)(params, batch, center, config,
                                                              mask)
    return finish_gradient(grads, params, config), value


FIELDS = {"exact": exact_gradient, "two-step-expected": expected_two_step_gradient}
"""The two exact gradient fields of the main model (:func:`ascend`; as training
estimators they are registered in :mod:`ncl.estimators`)."""


# ----------------------------------------------------------------------------- analysis

def trainable_vector(tree: Params, config: ModelConfig) -> Array:
    """Concatenate the trained leaves (``a`` only if trained) into one vector; works on a
    leading member axis (``(..., P)``)."""
    names = ("w", "a", "wbar", "abar") if config.trains_visible_bias else ("w", "wbar", "abar")
    lead = tree.abar.shape[:-1]
    return jnp.concatenate([getattr(tree, n).reshape(lead + (-1,)) for n in names], axis=-1)


def gradient_angle(g1: Params, g2: Params, config: ModelConfig) -> Array:
    """Angle in degrees between two gradients over the trained parameters
    (``(...)`` for leading member axes)."""
    v1, v2 = trainable_vector(g1, config), trainable_vector(g2, config)
    cos = jnp.sum(v1 * v2, -1) / (jnp.linalg.norm(v1, axis=-1) * jnp.linalg.norm(v2, axis=-1))
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))


def gradient_norm(g: Params, config: ModelConfig) -> Array:
    return jnp.linalg.norm(trainable_vector(g, config), axis=-1)


def ascend(params: Params, data: Array, center: Array, config: ModelConfig, field: str,
           steps: int = 2000, learning_rate: float = 0.01) -> tuple[Params, Array]:
    """Deterministic full-batch ascent along ``field`` (``"exact"`` or
    ``"two-step-expected"``) with Adam and a cosine-decaying learning rate: finds the
    fixed point of each gradient field from a given start, free of minibatch and chain
    noise. Returns ``(params, exact log-likelihood per step (steps,))``."""
    fn = FIELDS[field]
    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    data = jnp.asarray(data, jnp.float32)

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            g, ll = fn(p, None, data, center, config)
            u, s = opt.update(jax.tree_util.tree_map(jnp.negative, g), s, p)
            return (optax.apply_updates(p, u), s), ll

        (p, _), lls = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return p, lls

    return run(params)


# ----------------------------------------------------------------------------- data helpers

def block_downsample(images, shape: tuple[int, int] = (4, 3), threshold: float = 0.5,
                     side: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Block-average binary images ``(N, H·W)`` onto a ``shape`` grid (rows, cols; uneven
    blocks as ``np.array_split`` cuts them) and threshold: ``(N, rows·cols)`` uint8 with
    pixel = 1 where the block mean exceeds ``threshold``."""
    x = np.asarray(images, np.float32).reshape(-1, *side)
    rows = np.array_split(np.arange(side[0]), shape[0])
    cols = np.array_split(np.arange(side[1]), shape[1])
    out = np.empty((x.shape[0], shape[0], shape[1]), np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            out[:, i, j] = x[:, r][:, :, c].mean(axis=(1, 2))
    return (out.reshape(x.shape[0], -1) > threshold).astype(np.uint8)


def noisy_prototypes(key_or_seed, n_visible: int = 10, n_prototypes: int = 3,
                     n_samples: int = 600, flip: float = 0.1, weights=None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic data set: ``n_prototypes`` random binary prototypes of ``n_visible`` bits,
    each sample a prototype (chosen with ``weights``, default uniform) with every bit
    flipped with probability ``flip``. Returns ``(x (N, D) uint8, labels (N,), prototypes)``."""
    rng = np.random.default_rng(key_or_seed)
    protos = rng.integers(0, 2, (n_prototypes, n_visible)).astype(np.uint8)
    w = np.full(n_prototypes, 1.0 / n_prototypes) if weights is None else np.asarray(weights)
    labels = rng.choice(n_prototypes, size=n_samples, p=w / w.sum())
    noise = (rng.random((n_samples, n_visible)) < flip).astype(np.uint8)
    return protos[labels] ^ noise, labels, protos


def empirical_log_likelihood(data) -> float:
    """``mean_n log p_emp(x_n)``: the log-likelihood of the empirical distribution itself,
    the upper bound of any model on the training data (nats)."""
    _, counts = np.unique(np.asarray(data), axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(np.sum(p * np.log(p)))


__all__ = [
    "FIELDS", "MAX_DENSE_VISIBLE", "MAX_VISIBLE", "ascend", "block_downsample",
    "empirical_log_likelihood", "enumerate_visible", "exact_gradient",
    "expected_two_step_gradient", "gradient_angle", "gradient_norm", "log_hidden_transition_matrix",
    "log_likelihood", "log_stationary_hidden", "log_stationary_visible", "noisy_prototypes",
    "stationary_hidden", "stationary_visible_dense", "trainable_vector", "two_step_surrogate",
    "visible_state_index", "visible_transition_matrix",
]
