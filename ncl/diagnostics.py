"""Diagnostics of a trained model (paper Sect. IV B, eqs. 3, 5, 7, 21–24; docs/model.md "Diagnostics").

Hidden states are indexed ``0..S−1``: ``S = L`` for one-hot hidden units, ``S = 2**L``
for binary ones (ordered as :func:`ncl.model.enumerate_hidden_states`; enumeration-based
diagnostics are limited to ``L <= 12`` binary units, :data:`MAX_BINARY_UNITS`).

Building blocks (pure; jittable and vmappable unless marked *host*):

* :func:`hidden_trajectory` — long chain, recording only hidden-state indices;
* :func:`occupancy`, :func:`state_counts`, :func:`transition_counts`,
  :func:`count_transition_matrix`, :func:`unvisited_states` — the count estimator of
  ``M`` (eq. 3) and ``p̄``;
* :func:`rao_blackwell_log_transition_matrix` — ``log M[z', z] = log mean_k Ā(x_k, z)``,
  ``x_k ~ A(z', ·)``, accumulated with logsumexp;
* :func:`stationary_distribution`, :func:`stationary_distribution_from_log`;
* :func:`entropy_production` (eq. 21, counts: pairs with a zero flux left out),
  :func:`entropy_production_from_log` (eq. 21 from ``log p``, ``log M``, no exclusion);
* :func:`decorrelation_time` (eq. 23, *host*, NumPy eigenvalues),
  :func:`mean_self_transition` (eq. 24), :func:`probability_currents`;
* :func:`log_likelihood` (eqs. 5, 7, App. A3), exact given ``p̄``, chunked over data;
* :func:`unit_classes`, :func:`class_distribution`, :func:`class_fidelity_kl` (eq. 22);
* training-monitor helpers :func:`log_abar_all_states`, :func:`rb_log_sum_update`,
  :func:`sigma_from_counts_and_rb_sums`.

:func:`diagnose` runs everything for one model; :func:`diagnose_ensemble` for an
ensemble (a pytree with a leading member axis) in one compiled program. Error bars are delete-one-group jackknife standard errors (see
:func:`jackknife_se`): for count-based quantities the groups are the ``n_chains``
independent chains; for Rao–Blackwellised quantities they are ``n_chains`` independent
batches of the RB samples (the RB estimate does not use the chain at all).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ncl import _validate as _v
from ncl import chain as chain_lib
from ncl import classifier as clf
from ncl.model import (ModelConfig, Params, _onehot_sampling_logits, bernoulli_from_bits,
                       bernoulli_thresholds, check_params, enumerate_hidden_states,
                       hidden_logits, hidden_state_index, visible_logits)

Array = jax.Array

MAX_BINARY_UNITS = 12
"""Largest ``L`` for binary hidden units in the enumeration-based diagnostics (S = 4096)."""

CHUNK_ELEMENTS = 1 << 23
"""Chunk sizes are capped so that one chunk's largest intermediate has about this many
float32 elements (32 MiB per model); matters only for binary hidden units with large S."""


# ----------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """Settings of :func:`diagnose` (plain, hashable data).

    Attributes:
      burn_in: double steps discarded at the start of *each* chain.
      n_steps: recorded double steps in total, split evenly among the chains
        (each chain records ``ceil(n_steps / n_chains)``).
      n_chains: independent chains (started from random data points); they are the
        jackknife groups of the count-based error bars.
      rb_samples: K, samples ``x_k ~ A(z', ·)`` per source state of the Rao–Blackwellised
        ``M``, split into ``n_chains`` independent batches (rounded up to a multiple of
        ``n_chains``) that are the jackknife groups of the RB error bars.
      loglik_chunk: data rows per chunk of :func:`log_likelihood`.
      p_floor: floor of ``P_e`` in the class-fidelity KL (eq. 22); ``P_e`` is floored
        and renormalised.
      segment: chain double steps drawn per ``sample_chain`` call (memory/speed only).
      rb_chunk: RB samples per source state per iteration (memory/speed only).
    """

    burn_in: int = 2000
    n_steps: int = 20000
    n_chains: int = 8
    rb_samples: int = 4000
    loglik_chunk: int = 1024
    p_floor: float = 1e-3
    segment: int = 125
    rb_chunk: int = 250

    def __post_init__(self):
        _v.check_fields(self, _DIAGNOSTICS_RULES)
        if self.n_steps < 2 * self.n_chains:
            raise ValueError(f"n_steps ({self.n_steps}) must be at least 2 * n_chains "
                             f"({2 * self.n_chains})")

    @property
    def steps_per_chain(self) -> int:
        return -(-self.n_steps // self.n_chains)

    @property
    def rb_per_group(self) -> int:
        return -(-self.rb_samples // self.n_chains)


_DIAGNOSTICS_RULES = {
    "burn_in": (_v.integer, dict(min=0)),
    "n_steps": (_v.integer, dict(min=1)),
    "n_chains": (_v.integer, dict(min=2)),
    "rb_samples": (_v.integer, dict(min=1)),
    "loglik_chunk": (_v.integer, dict(min=1)),
    "p_floor": (_v.real, dict(min=0, max=1, min_open=True, max_open=True)),
    "segment": (_v.integer, dict(min=1)),
    "rb_chunk": (_v.integer, dict(min=1)),
}
"""One type-and-range rule per :class:`DiagnosticsConfig` field (:mod:`ncl._validate`)."""


def _check_model_inputs(params, center, config: ModelConfig, n_visible: int | None,
                        n_members: int | None = None, what: str = "the data") -> int:
    """Shapes of ``params`` and ``center`` against ``config`` and the data width: one
    clear ``ValueError`` instead of an error from inside JAX. Returns ``D``."""
    D = check_params(params, config, n_visible, n_members, what=what)
    want = (D,) if n_members is None else (params.w.shape[0], D)
    if tuple(jnp.shape(center)) != want:
        raise ValueError(f"{'centers' if n_members is not None else 'center'} must have shape "
                         f"{want} (the centering vector of each model, e.g. "
                         f"state.center), got {tuple(jnp.shape(center))}")
    return D


def check_enumerable(config: ModelConfig) -> int:
    """Number of hidden states S; ``ValueError`` for binary hidden units with L > 12."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.hidden == "binary" and config.n_hidden > MAX_BINARY_UNITS:
        raise ValueError(
            f"diagnostics enumerate the 2**L hidden states; binary hidden units with "
            f"L = {config.n_hidden} > {MAX_BINARY_UNITS} are not supported "
            f"({2 ** config.n_hidden} states); use n_hidden (L) <= {MAX_BINARY_UNITS} or "
            "one-hot hidden units")
    return config.n_states


# ----------------------------------------------------------------------------- trajectory

def _run_and_record(key, x, params, center, config, n: int, segment: int):
    """Run ``n`` double steps from ``x (C, D)``; return state indices ``(C, n)``.

    One ``lax.scan`` over ``ceil(n / segment)`` calls of ``sample_chain`` (the last one
    may run a few steps past ``n``, which are discarded), so there is a single compiled
    instance of the chain.
    """
    n_seg = -(-n // segment)
    C = x.shape[0]

    def body(x, k):
        st, traj = chain_lib.sample_chain(k, chain_lib.ChainState(x), params, center, config,
                                          segment)
        return st.x, hidden_state_index(traj.z, config)     # (segment, C)

    _, idx = jax.lax.scan(body, x, jax.random.split(key, n_seg))
    return idx.reshape(n_seg * segment, C)[:n].T


@functools.partial(jax.jit, static_argnames=("config", "burn_in", "n_steps", "segment"))
def hidden_trajectory(key: Array, params: Params, center: Array, config: ModelConfig,
                      x0: Array, burn_in: int, n_steps: int, segment: int = 125) -> Array:
    """Hidden-state indices of a long chain (Sect. IV B), after a burn-in.

    Runs :func:`ncl.chain.sample_chain` in segments of ``segment`` double steps inside a
    ``lax.scan``; only int32 state indices are kept (visible states never leave a
    segment), so memory beyond the ``(burn_in + n_steps,)`` index buffer is
    ``O(segment · C · D)`` whatever ``n_steps``.

    Args:
      key: PRNG key.
      params, center, config: the model (``center (D,)``).
      x0: ``(D,)`` initial visible state, or ``(C, D)`` for ``C`` independent chains.
      burn_in: double steps discarded first.
      n_steps: double steps recorded (per chain).
      segment: steps per ``sample_chain`` call (memory/speed only).
    Returns:
      ``(n_steps,)`` int32 state indices ``z(t)`` (``(C, n_steps)`` for ``x0 (C, D)``).
    """
    check_enumerable(config)
    x = jnp.asarray(x0, jnp.float32)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"x0 must have shape (D,) or (C, D), got {tuple(x0.shape)}")
    _check_model_inputs(params, center, config, x.shape[1], what="x0")
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    segment = min(segment, burn_in + n_steps)
    states = _run_and_record(key, x, params, center, config, burn_in + n_steps,
                             segment)[:, burn_in:]
    return states[0] if single else states


# ----------------------------------------------------------------------------- counts

def state_counts(states: Array, n_states: int) -> Array:
    """Visits per state: ``states (T,)`` int → ``(S,)`` int32."""
    chex.assert_rank(states, 1)
    return jnp.zeros((n_states,), jnp.int32).at[states].add(1)


def occupancy(states: Array, n_states: int) -> Array:
    """Empirical occupancy ``p̄(z)``: fraction of time in each state. ``(T,)`` → ``(S,)``."""
    c = state_counts(states, n_states)
    return c.astype(jnp.float32) / jnp.maximum(jnp.sum(c), 1)


def transition_counts(states: Array, n_states: int) -> Array:
    """``N[z', z]`` = number of ``t`` with ``z(t) = z'`` and ``z(t+1) = z``.

    ``states (T,)`` int → ``(S, S)`` int32 (``T − 1`` transitions).
    """
    chex.assert_rank(states, 1)
    flat = states[:-1] * n_states + states[1:]
    return jnp.zeros((n_states * n_states,), jnp.int32).at[flat].add(1).reshape(
        n_states, n_states)


def count_transition_matrix(counts: Array) -> Array:
    """Row-normalised counts, the paper's estimator of ``M`` (eq. 3).

    ``counts (..., S, S)`` → ``M (..., S, S)`` float32. A state with no observed
    transition out of it (see :func:`unvisited_states`) gets an all-zero row.
    """
    counts = jnp.asarray(counts, jnp.float32)
    rows = jnp.sum(counts, axis=-1, keepdims=True)
    return jnp.where(rows > 0, counts / jnp.where(rows > 0, rows, 1.0), 0.0)


def unvisited_states(counts: Array) -> Array:
    """``(..., S)`` bool: states with no observed transition out of them (zero rows of
    :func:`count_transition_matrix`), e.g. never visited, or only at the last step."""
    return jnp.sum(counts, axis=-1) == 0


# ----------------------------------------------------------------------------- Rao–Blackwell

def log_abar_all_states(params: Params, x: Array, center: Array, config: ModelConfig) -> Array:
    """``log Ā(x, z)`` for every hidden state z (the sampling kernel, eq. 11 or 19).

    ``x (..., D)`` → ``(..., S)``, states ordered as :func:`ncl.model.enumerate_hidden_states`.
    Uses matrix products (no ``(..., S, L)`` intermediate for binary units).
    """
    return log_abar_all_states_from_logits(hidden_logits(params, x, center), config)


def log_abar_all_states_from_logits(g: Array, config: ModelConfig) -> Array:
    """:func:`log_abar_all_states` given the hidden logits ``g (..., L)`` of ``x`` (e.g. the
    ones the training chain computed) → ``(..., S)``."""
    if config.hidden == "onehot":
        return jax.nn.log_softmax(_onehot_sampling_logits(g, config), axis=-1)
    states = enumerate_hidden_states(config)
    return jax.nn.log_sigmoid(g) @ states.T + jax.nn.log_sigmoid(-g) @ (1.0 - states).T


def _rb_group_sums(key, params, center, config, n_groups: int, per_group: int, chunk: int,
                   classifier=None):
    """Log of ``Σ_k Ā(x_k, z)`` per group, ``x_k ~ A(z', ·)``: ``(G, S, S)``.

    If ``classifier`` is given, also returns ``Σ_k predict_proba(x_k)`` per source state,
    summed over all groups, ``(S, K)`` (else ``None``).
    """
    states = enumerate_hidden_states(config)                      # (S, L)
    S = states.shape[0]
    thr, flip = bernoulli_thresholds(visible_logits(params, states))  # (S, D)
    D = thr.shape[-1]
    c = max(1, min(chunk, per_group, CHUNK_ELEMENTS // (S * (D + S))))
    n_chunks = -(-per_group // c)
    n_cls = 0 if classifier is None else classifier.b.shape[-1]

    def chunk_body(carry, inp):
        lse, cls = carry
        k, j = inp
        bits = jax.random.bits(k, (S, c, D), jnp.uint32)
        x = bernoulli_from_bits(bits, thr[:, None, :], flip[:, None, :])  # (S, c, D)
        la = log_abar_all_states(params, x, center, config)                # (S, c, S)
        valid = (j * c + jnp.arange(c)) < per_group                        # (c,)
        la = jnp.where(valid[None, :, None], la, -jnp.inf)
        lse = jnp.logaddexp(lse, jax.nn.logsumexp(la, axis=1))
        if classifier is not None:
            pr = clf.predict_proba(classifier, x) * valid[None, :, None]
            cls = cls + jnp.sum(pr, axis=1)
        return (lse, cls), None

    def group_body(cls, k):
        ks = jax.random.split(k, n_chunks)
        init = (jnp.full((S, S), -jnp.inf, jnp.float32), cls)
        (lse, cls), _ = jax.lax.scan(chunk_body, init, (ks, jnp.arange(n_chunks)))
        return cls, lse

    cls0 = jnp.zeros((S, max(n_cls, 1)), jnp.float32)
    cls, sums = jax.lax.scan(group_body, cls0, jax.random.split(key, n_groups))
    return sums, (cls if classifier is not None else None)


@functools.partial(jax.jit, static_argnames=("config", "n_samples", "chunk"))
def rao_blackwell_log_transition_matrix(key: Array, params: Params, center: Array,
                                        config: ModelConfig, n_samples: int = 4000,
                                        chunk: int = 250) -> Array:
    """Rao–Blackwellised ``log M`` (eq. 3): ``log M[z', z] = logsumexp_k log Ā(x_k, z) − log K``.

    ``x_k ~ A(z', ·)``, ``k = 1..K``, drawn exactly (32-bit thresholds); the sum over k is
    accumulated in log space chunk by chunk (``lax.scan``), so memory is
    ``O(S · chunk · (D + S))`` (``chunk`` is lowered if that exceeds
    :data:`CHUNK_ELEMENTS`) and no small entry underflows. Cost ``O(K · S · (D + S))``:
    for binary hidden units with large L lower ``n_samples``. Each row sums to 1 in
    probability space (up to rounding).

    Args:
      key: PRNG key.
      params, center, config: the model (``center (D,)``).
      n_samples: K per source state.
      chunk: samples per source state per iteration (memory/speed only).
    Returns:
      ``log M (S, S)`` float32.
    """
    check_enumerable(config)
    _check_model_inputs(params, center, config, None)
    sums, _ = _rb_group_sums(key, params, center, config, 1, n_samples, chunk)
    return sums[0] - jnp.log(float(n_samples))


# ----------------------------------------------------------------------------- stationary

def _normalise_rows(M: Array) -> Array:
    S = M.shape[-1]
    rows = jnp.sum(M, axis=-1, keepdims=True)
    return jnp.where(rows > 0, M / jnp.where(rows > 0, rows, 1.0), 1.0 / S)


def _stationary_fallback(P: Array) -> Array:
    """Fallback for chains without a unique stationary vector (the solve is singular):
    ``(1/S) 1ᵀ Q^n`` with the lazy (hence aperiodic) ``Q = (P + I)/2`` started from the
    uniform vector — by repeated squaring (``n = 2^48``) for ``S <= 64``, else by 4096
    vector–matrix steps (cheap for large S, converged unless mixing is very slow)."""
    S = P.shape[-1]
    Q = 0.5 * (P + jnp.eye(S, dtype=P.dtype))
    if S > 64:
        def step(v, _):
            v = v @ Q
            return v / jnp.sum(v), None

        v, _ = jax.lax.scan(step, jnp.full((S,), 1.0 / S, P.dtype), None, length=4096)
        return v

    def sq(Q, _):
        Q = Q @ Q
        return Q / jnp.sum(Q, axis=-1, keepdims=True), None

    Q, _ = jax.lax.scan(sq, Q, None, length=48)
    return jnp.mean(Q, axis=0)


def stationary_distribution(M: Array) -> Array:
    """Stationary vector ``p`` with ``p M = p``, ``Σ p = 1`` (jittable; vmap for batches).

    Solves ``(I − M + 1 1ᵀ)ᵀ p = 1``, which is non-singular exactly when the stationary
    vector is unique — in particular for periodic chains (a deterministic cycle gives
    the uniform vector on the cycle). Rows of ``M`` are renormalised; an all-zero row
    (a state never left, see :func:`count_transition_matrix`) is replaced by the uniform
    row, which leaves such a state with zero stationary mass if nothing flows into it.
    If the solve fails (several closed classes), falls back to iterating the lazy chain
    ``(M + I)/2`` from the uniform vector (see :func:`_stationary_fallback`; under
    ``vmap`` the fallback is always evaluated, ``lax.cond`` becoming a select).

    ``M (S, S)`` → ``p (S,)``.
    """
    chex.assert_rank(M, 2)
    S = M.shape[-1]
    P = _normalise_rows(jnp.asarray(M, jnp.float32))
    A = (jnp.eye(S, dtype=P.dtype) - P + 1.0).T
    p = jnp.linalg.solve(A, jnp.ones((S,), P.dtype))
    resid = jnp.max(jnp.abs(p @ P - p))
    ok = jnp.all(jnp.isfinite(p)) & (jnp.min(p) > -1e-4) & (resid < 1e-4)
    p = jax.lax.cond(ok, lambda: p, lambda: _stationary_fallback(P))
    p = jnp.clip(p, 0.0, None)
    return p / jnp.sum(p)


def stationary_distribution_from_log(log_M: Array, refine: int = 2) -> Array:
    """:func:`stationary_distribution` of ``exp(log_M)``, returned as ``log p (S,)``.

    The solve is done in probability space; then ``refine`` steps of ``p ← p M`` are
    taken in log space (``log p_z ← logsumexp_{z'} [log p_{z'} + log M_{z'z}]``), which
    leaves the stationary vector unchanged but gives states whose mass underflows in
    float32 (e.g. ``e^-116``) their finite log-probability instead of ``−inf``.
    """
    log_M = log_M - jax.nn.logsumexp(log_M, axis=-1, keepdims=True)
    lp = jnp.log(stationary_distribution(jnp.exp(log_M)))
    for _ in range(refine):
        lp = jax.nn.logsumexp(lp[:, None] + log_M, axis=0)
        lp = lp - jax.nn.logsumexp(lp)
    return lp


# ----------------------------------------------------------------------------- eqs. 21–24

def _upper(S):
    return jnp.triu(jnp.ones((S, S), bool), k=1)


def entropy_production(p: Array, M: Array) -> Array:
    """Entropy production rate, eq. (21), the paper's count-based form.

    ``σ = Σ_{z'<z} (F[z',z] − F[z,z']) ln(F[z',z] / F[z,z'])``, ``F[z',z] = p(z') M[z',z]``.
    Pairs where either flux is zero are **left out**, so the estimate is biased low for
    strongly one-directional cycles (a perfect cycle gives 0).

    ``p (S,)``, ``M (S, S)`` → scalar (≥ 0).
    """
    chex.assert_rank(p, 1)
    chex.assert_shape(M, (p.shape[0], p.shape[0]))
    F = p[:, None] * M
    Ft = F.T
    keep = (F > 0) & (Ft > 0) & _upper(p.shape[0])
    lr = jnp.log(jnp.where(keep, F, 1.0)) - jnp.log(jnp.where(keep, Ft, 1.0))
    return jnp.sum(jnp.where(keep, (F - Ft) * lr, 0.0))


def entropy_production_from_log(log_p: Array, log_M: Array) -> Array:
    """Entropy production rate, eq. (21), from ``log p̄`` and ``log M`` (Rao–Blackwell).

    No pair is left out; the log-ratio is ``log F[z',z] − log F[z,z']`` computed in log
    space, so a near-deterministic cycle (flux ratios far below float32 range in
    probability space) gives a large *finite* σ. Pairs with both fluxes exactly zero
    contribute 0; one exactly-zero flux facing a positive one gives ``inf``.

    ``log_p (S,)``, ``log_M (S, S)`` → scalar.
    """
    chex.assert_rank(log_p, 1)
    chex.assert_shape(log_M, (log_p.shape[0], log_p.shape[0]))
    lF = log_p[:, None] + log_M
    lFt = lF.T
    both_zero = jnp.isneginf(lF) & jnp.isneginf(lFt)
    diff = jnp.exp(lF) - jnp.exp(lFt)
    lr = jnp.where(both_zero, 0.0, lF - lFt)
    # diff == 0 (both fluxes underflow, or are equal): the term is 0 (x ln x → 0)
    term = jnp.where(both_zero | (diff == 0), 0.0, diff * lr)
    return jnp.sum(jnp.where(_upper(log_p.shape[0]), term, 0.0))


def probability_currents(p: Array, M: Array) -> Array:
    """Net probability currents ``J[i, j] = p_i M_ij − p_j M_ji`` (antisymmetric).

    ``p (S,)``, ``M (S, S)`` → ``(S, S)``.
    """
    return _antisym(p[:, None] * M)


def _antisym(F: Array) -> Array:
    U = jnp.triu(F - F.T, k=1)
    return U - U.T


def probability_currents_from_log(log_p: Array, log_M: Array) -> Array:
    """:func:`probability_currents` from log quantities."""
    return _antisym(jnp.exp(log_p[:, None] + log_M))


def mean_self_transition(M: Array) -> Array:
    """Mean self-transition probability, eq. (24): ``Tr(M) / S``.

    ``S`` is the number of hidden states (``L`` for one-hot; ``2**L`` for binary hidden
    units, whose random baseline is ``1/S``). ``M (..., S, S)`` → ``(...)``.
    """
    return jnp.trace(M, axis1=-2, axis2=-1) / M.shape[-1]


def decorrelation_time(M, tol: float = 1e-9) -> np.ndarray:
    """Decorrelation time, eq. (23): ``τ = −1 / ln|λ₂|``.

    λ₂ is the eigenvalue of second-largest modulus. ``|λ₂| ≥ 1 − tol`` (periodic or
    reducible chain) → ``inf``; ``|λ₂| ≤ 1e-12`` (λ₂ = 0 up to the eigensolver's
    round-off, e.g. a rank-one M) → 0.

    **Host-side** (NumPy, float64 ``np.linalg.eigvals``): ``jnp.linalg.eig`` exists on CPU
    only, so this is not jittable. Accepts batches ``(..., S, S)`` → ``(...)`` float64.
    """
    M = np.asarray(M, np.float64)
    if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"M must be (..., S, S), got shape {M.shape}")
    ev = np.abs(np.linalg.eigvals(M))
    ev = -np.sort(-ev, axis=-1)
    lam2 = ev[..., 1]
    with np.errstate(divide="ignore"):
        tau = np.where(lam2 >= 1.0 - tol, np.inf,
                       np.where(lam2 <= 1e-12, 0.0, -1.0 / np.log(np.clip(lam2, 1e-300, 1.0))))
    return tau


def decorrelation_time_from_log(log_M, tol: float = 1e-9) -> np.ndarray:
    """:func:`decorrelation_time` of ``exp(log_M)`` exponentiated in float64 (host-side)."""
    return decorrelation_time(np.exp(np.asarray(log_M, np.float64)), tol)


# ----------------------------------------------------------------------------- likelihood

def _log_A_all_states(params: Params, x: Array, config: ModelConfig) -> Array:
    """``log A(z, x_n)`` for all states: ``x (N, D)`` → ``(N, S)``."""
    states = enumerate_hidden_states(config)
    h = visible_logits(params, states)                       # (S, D)
    return x @ h.T - jnp.sum(jax.nn.softplus(h), axis=-1)


def log_likelihood(params: Params, data: Array, log_p_bar: Array, config: ModelConfig,
                   chunk: int = 1024) -> Array:
    """Exact log-likelihood given ``p̄``, eqs. (5), (7), App. A3:
    ``mean_n logsumexp_z [log p̄(z) + log A(z, x_n)]`` over the whole data set.

    The data are processed ``chunk`` rows at a time (``lax.map`` over chunks; the last
    chunk is padded and masked), so memory is ``O(chunk · (D + P · S))``; ``chunk`` is
    lowered if ``chunk · P · S`` exceeds :data:`CHUNK_ELEMENTS`. States with
    ``p̄ = 0`` (``log p̄ = −inf``) contribute nothing.

    Args:
      params: model parameters (only ``w``, ``a`` are used).
      data: ``(N, D)`` binary data.
      log_p_bar: ``(S,)`` or a batch ``(P, S)`` of log occupancies.
      config: model configuration.
      chunk: data rows per chunk.
    Returns:
      scalar (or ``(P,)``), nats per data point.

    Jittable; called with concrete arrays it first checks the data (2-D, non-empty,
    finite, 0/1) and ``log_p_bar`` (log-probabilities, ``<= 0``) on the host.
    """
    check_enumerable(config)
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if not isinstance(data, jax.core.Tracer):
        from ncl.data import check_data
        data = check_data(data)
    elif data.ndim != 2 or 0 in data.shape:
        raise ValueError(f"data must be a non-empty 2-D array (N, D), got shape {data.shape}")
    check_params(params, config, data.shape[1])
    S = config.n_states
    lp = jnp.asarray(log_p_bar, jnp.float32)
    if lp.ndim not in (1, 2) or lp.shape[-1] != S:
        raise ValueError(f"log_p_bar must have shape ({S},) or (P, {S}) (log occupancy of "
                         f"the {S} hidden states), got {tuple(lp.shape)}")
    if not isinstance(lp, jax.core.Tracer):
        v = np.asarray(lp)
        if np.isnan(v).any() or (v > 1e-4).any():
            raise ValueError("log_p_bar must hold log-probabilities (<= 0, -inf allowed, no "
                             "NaN); pass jnp.log(p_bar), not p_bar")
    return _log_likelihood(params, data, lp, config, int(chunk))


@functools.partial(jax.jit, static_argnames=("config", "chunk"))
def _log_likelihood(params: Params, data: Array, lp: Array, config: ModelConfig,
                    chunk: int) -> Array:
    S = config.n_states
    single = lp.ndim == 1
    lp = lp[None] if single else lp
    N, D = data.shape
    c = max(1, min(chunk, N, CHUNK_ELEMENTS // (S * (lp.shape[0] + 1))))
    n_chunks = -(-N // c)
    pad = n_chunks * c - N
    x = jnp.pad(jnp.asarray(data, jnp.float32), ((0, pad), (0, 0))).reshape(n_chunks, c, D)
    mask = (jnp.arange(n_chunks * c) < N).reshape(n_chunks, c)

    def one(args):
        xc, m = args
        la = _log_A_all_states(params, xc, config)                   # (c, S)
        ll = jax.nn.logsumexp(lp[:, None, :] + la[None], axis=-1)    # (P, c)
        return jnp.sum(jnp.where(m[None], ll, 0.0), axis=-1)         # (P,)

    total = jnp.sum(jax.lax.map(one, (x, mask)), axis=0) / N
    return total[0] if single else total


# ----------------------------------------------------------------------------- classes (eq. 22)

def unit_classes(params: Params, classifier: clf.ClassifierParams) -> Array:
    """Class index (0..K−1) of each one-hot hidden unit: the classifier's prediction for
    its mean image ``sigmoid(w[:, α] + a)`` → ``(L,)`` int32 (one-hot hidden only)."""
    mean_images = jax.nn.sigmoid(params.w.T + params.a)   # (L, D)
    return clf.predict(classifier, mean_images)


def class_distribution(p_bar: Array, unit_class: Array, n_classes: int) -> Array:
    """``P_e(k) = Σ_α p̄(α) [class(α) = k]`` (eq. 22). ``(L,)``, ``(L,)`` → ``(K,)``."""
    return jnp.zeros((n_classes,), p_bar.dtype).at[unit_class].add(p_bar)


def class_fidelity_kl(p_e: Array, p_data: Array, p_floor: float = 1e-3) -> Array:
    """``KL(P_D || P_e) = Σ_k P_D(k) ln(P_D(k) / P_e(k))``, eq. (22).

    ``P_e`` is floored at ``p_floor`` and renormalised first, so a class the model never
    generates costs ``ln(P_D / p_floor)`` instead of infinity. ``(..., K)`` → ``(...)``.
    """
    pe = jnp.maximum(p_e, p_floor)
    pe = pe / jnp.sum(pe, axis=-1, keepdims=True)
    pd = jnp.asarray(p_data, pe.dtype)
    t = jnp.where(pd > 0, pd * (jnp.log(jnp.where(pd > 0, pd, 1.0)) - jnp.log(pe)), 0.0)
    return jnp.sum(t, axis=-1)


# ----------------------------------------------------------------------------- monitor helpers

def rb_log_sum_update(log_rb_sum: Array, rb_visits: Array, prev_states: Array,
                      log_abar: Array) -> tuple[Array, Array]:
    """Accumulate the Rao–Blackwell transition sum of a training chain in log space.

    ``rb_sum[z', z] = Σ_{t: z(t−1) = z'} Ā(x'(t), z)`` where ``x'(t) ~ A(z(t−1), ·)``.
    For a :class:`ncl.chain.Trajectory` segment, the pairs are ``prev_states =
    z(0..T−2)`` with ``log_abar = log_abar_all_states(params, x'(1..T−1), ...)`` (plus the
    pair across segment boundaries if the previous segment's last z is kept).

    Args:
      log_rb_sum: ``(S, S)`` running ``log rb_sum`` (start at ``−inf``).
      rb_visits: ``(S,)`` running number of terms per row (start at 0).
      prev_states: ``(T,)`` int state indices ``z(t−1)``.
      log_abar: ``(T, S)`` ``log Ā(x'(t), ·)``.
    Returns:
      updated ``(log_rb_sum, rb_visits)``.
    """
    S = log_rb_sum.shape[-1]
    chex.assert_shape(log_abar, (prev_states.shape[0], S))
    m = jax.ops.segment_max(log_abar, prev_states, num_segments=S)           # (S, S)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    s = jax.ops.segment_sum(jnp.exp(log_abar - m[prev_states]), prev_states, num_segments=S)
    new = jnp.log(s) + m                                                     # −inf if empty
    return (jnp.logaddexp(log_rb_sum, new),
            rb_visits + jnp.zeros((S,), rb_visits.dtype).at[prev_states].add(1))


class MonitorSigmas(NamedTuple):
    """σ_rb (from ``log_rb_sum``, p̄ its stationary vector) and σ_counts (eq. 21)."""

    sigma_rb: Array
    sigma_counts: Array


def sigma_from_counts_and_rb_sums(occupancy_counts: Array, transition_counts: Array,
                                  log_rb_sum: Array, rb_visits: Array | None = None
                                  ) -> MonitorSigmas:
    """Both entropy-production estimates from accumulated chain statistics (jittable).

    Args:
      occupancy_counts: ``(S,)`` visits per state (gives ``p̄`` of the count estimate).
      transition_counts: ``(S, S)`` ``N[z', z]`` (gives ``M_counts``).
      log_rb_sum: ``(S, S)`` ``log Σ_{t: z(t−1)=z'} Ā(x'(t), z)`` (see
        :func:`rb_log_sum_update`; if you accumulated in probability space pass
        ``jnp.log(rb_sum)``, but then entries may have underflowed to 0).
      rb_visits: ``(S,)`` number of terms in each row of the sum; default
        ``transition_counts.sum(1)``.
    Returns:
      :class:`MonitorSigmas`: ``sigma_rb`` = eq. (21) from ``log M_rb = log_rb_sum −
      log rb_visits`` and its stationary vector (rows never visited are treated as
      uniform, see :func:`stationary_distribution`); ``sigma_counts`` = eq. (21) from the
      occupancy and the row-normalised counts, zero-flux pairs left out.
    """
    S = occupancy_counts.shape[-1]
    chex.assert_shape(transition_counts, (S, S))
    chex.assert_shape(log_rb_sum, (S, S))
    if rb_visits is None:
        rb_visits = jnp.sum(transition_counts, axis=-1)
    visited = rb_visits > 0
    log_M = jnp.where(visited[:, None],
                      log_rb_sum - jnp.log(jnp.maximum(rb_visits, 1)).astype(jnp.float32)[:, None],
                      -jnp.log(float(S)))
    log_M = log_M - jax.nn.logsumexp(log_M, axis=-1, keepdims=True)
    s_rb = entropy_production_from_log(stationary_distribution_from_log(log_M), log_M)
    occ = jnp.asarray(occupancy_counts, jnp.float32)
    p = occ / jnp.maximum(jnp.sum(occ), 1.0)
    s_counts = entropy_production(p, count_transition_matrix(transition_counts))
    return MonitorSigmas(s_rb, s_counts)


# ----------------------------------------------------------------------------- jackknife

def jackknife_se(loo) -> np.ndarray:
    """Delete-one-group jackknife standard error from leave-one-out estimates.

    ``loo (..., G)`` → ``sqrt((G − 1)/G · Σ_g (θ_{−g} − mean_g θ_{−g})²)`` ``(...)``.
    ``nan`` where a leave-one-out estimate is not finite (e.g. τ = inf).
    """
    loo = np.asarray(loo, np.float64)
    G = loo.shape[-1]
    finite = np.all(np.isfinite(loo), axis=-1)
    safe = np.where(np.isfinite(loo), loo, 0.0)
    dev = safe - safe.mean(axis=-1, keepdims=True)
    se = np.sqrt((G - 1) / G * np.sum(dev ** 2, axis=-1))
    return np.where(finite, se, np.nan)


def jackknife_bias_corrected(full, loo) -> np.ndarray:
    """Delete-one-group jackknife bias correction.

    ``full (...)`` the estimate from all ``G`` groups, ``loo (..., G)`` the leave-one-out
    estimates → ``G·full − (G−1)·mean_g loo`` ``(...)``. Removes the O(1/n) bias of a
    smooth plug-in estimator (exactly, for a quadratic functional of group means).
    """
    full = np.asarray(full, np.float64)
    loo = np.asarray(loo, np.float64)
    G = loo.shape[-1]
    return G * full - (G - 1) * loo.mean(axis=-1)


# ----------------------------------------------------------------------------- diagnose

class Diagnostics(NamedTuple):
    """Result of :func:`diagnose` (NumPy arrays; :func:`diagnose_ensemble` adds a leading
    member axis to every field). ``S`` states, ``C`` chains, ``K`` classes.
    Every ``*_err`` is a jackknife standard error (see :func:`jackknife_se`).

    Attributes:
      p_bar: ``(S,)`` occupancy of the recorded trajectory (all chains pooled).
      occupancy_counts: ``(S,)`` visits; ``transition_counts``: ``(S, S)`` counts.
      unvisited: ``(S,)`` bool, states with no observed transition out (zero rows of M_counts).
      M_counts: ``(S, S)`` count estimator of M (eq. 3), rows normalised.
      log_M_rb: ``(S, S)`` Rao–Blackwellised log M.
      p_bar_rb: ``(S,)`` stationary vector of the RB M.
      sigma_counts, sigma_counts_err: eq. (21) from ``p_bar`` and ``M_counts``, zero-flux
        pairs left out (the paper's estimator; biased low for strong cycles).
      sigma_rb, sigma_rb_err: eq. (21) from ``log p_bar_rb`` and ``log_M_rb``.
      sigma_rb_bc: delete-one-group jackknife bias-corrected ``sigma_rb``,
        ``G·σ − (G−1)·mean_g σ_{−g}`` (see :func:`jackknife_bias_corrected`). The plug-in
        ``sigma_rb`` is ≥ 0 and biased upwards by O(1/samples) (eq. 21 is convex in the
        estimated M), so a reversible model shows ``sigma_rb`` of a few standard errors;
        ``sigma_rb_bc`` removes that first-order bias (it can be negative) and is the
        quantity to test against 0 (``|sigma_rb_bc| ≲ 3·sigma_rb_err``).
      tau_counts, tau_counts_err, tau_rb, tau_rb_err: eq. (23) from each M.
      self_transition_counts, self_transition_rb: eq. (24), ``Tr(M)/S`` (with ``*_err``,
        jackknife over the chains / RB batches).
      currents_counts, currents_rb: ``(S, S)`` antisymmetric probability currents.
      loglik, loglik_err: eqs. (5)/(7) with ``p_bar``, over the whole data set.
      loglik_rb, loglik_rb_err: the same with ``p_bar_rb``.
      unit_class: ``(L,)`` class index of each hidden unit's mean image (one-hot with a
        classifier, else ``None``); ``unit_digit``: the corresponding digits.
      p_data: ``(K,)`` class frequencies of the data (uniform if no labels given).
      p_e, kl, kl_err: eq. (22) with the hard unit assignment (``P_e`` floored at
        ``p_floor`` and renormalised before the KL).
      p_e_soft, kl_soft, kl_soft_err: soft variant, ``P_e(k) = Σ_z p̄(z) E_{x~A(z,·)}
        [classifier prob. of k]`` estimated from the RB samples (= images of the chain
        in its stationary state); applies to binary hidden units too.
      n_steps, n_chains, rb_samples: the effective sample sizes used.
    """

    p_bar: np.ndarray
    occupancy_counts: np.ndarray
    transition_counts: np.ndarray
    unvisited: np.ndarray
    M_counts: np.ndarray
    log_M_rb: np.ndarray
    p_bar_rb: np.ndarray
    sigma_counts: np.ndarray
    sigma_counts_err: np.ndarray
    sigma_rb: np.ndarray
    sigma_rb_err: np.ndarray
    sigma_rb_bc: np.ndarray
    tau_counts: np.ndarray
    tau_counts_err: np.ndarray
    tau_rb: np.ndarray
    tau_rb_err: np.ndarray
    self_transition_counts: np.ndarray
    self_transition_counts_err: np.ndarray
    self_transition_rb: np.ndarray
    self_transition_rb_err: np.ndarray
    currents_counts: np.ndarray
    currents_rb: np.ndarray
    loglik: np.ndarray
    loglik_err: np.ndarray
    loglik_rb: np.ndarray
    loglik_rb_err: np.ndarray
    unit_class: np.ndarray | None = None
    unit_digit: np.ndarray | None = None
    p_data: np.ndarray | None = None
    p_e: np.ndarray | None = None
    kl: np.ndarray | None = None
    kl_err: np.ndarray | None = None
    p_e_soft: np.ndarray | None = None
    kl_soft: np.ndarray | None = None
    kl_soft_err: np.ndarray | None = None
    n_steps: int = 0
    n_chains: int = 0
    rb_samples: int = 0

    def summary(self) -> dict:
        """Scalar results (or per-member arrays) as a plain dict."""
        keys = ("sigma_counts", "sigma_counts_err", "sigma_rb", "sigma_rb_err", "sigma_rb_bc",
                "tau_counts",
                "tau_counts_err", "tau_rb", "tau_rb_err", "self_transition_counts",
                "self_transition_counts_err", "self_transition_rb", "self_transition_rb_err", "loglik", "loglik_err", "loglik_rb", "loglik_rb_err",
                "kl", "kl_err", "kl_soft", "kl_soft_err")
        out = {}
        for k in keys:
            v = getattr(self, k)
            if v is not None:
                v = np.asarray(v)
                out[k] = float(v) if v.ndim == 0 else v.tolist()
        return out


def _loo_sum(a):
    """Pooled sum and leave-one-out sums over the leading group axis: ``(G, ...)`` →
    ``(G + 1, ...)`` (row 0 pooled, row g+1 without group g)."""
    tot = jnp.sum(a, axis=0)
    return jnp.concatenate([tot[None], tot[None] - a], axis=0)


def _loo_logsumexp(a):
    """Like :func:`_loo_sum` for log-space sums ``(G, ...)``."""
    G = a.shape[0]
    tot = jax.nn.logsumexp(a, axis=0)
    excl = ~jnp.eye(G, dtype=bool)
    loo = jax.vmap(lambda m: jax.nn.logsumexp(
        jnp.where(m.reshape((G,) + (1,) * (a.ndim - 1)), a, -jnp.inf), axis=0))(excl)
    return jnp.concatenate([tot[None], loo], axis=0)


def _core(key, params, center, data, p_data, classifier, config: ModelConfig,
          dcfg: DiagnosticsConfig):
    """Everything jittable for one model. Row 0 of each ``*_all`` array is the pooled
    estimate; rows 1.. are the leave-one-group-out estimates."""
    S = config.n_states
    C, G = dcfg.n_chains, dcfg.n_chains
    k_x0, k_traj, k_rb = jax.random.split(key, 3)
    x0 = data[jax.random.randint(k_x0, (C,), 0, data.shape[0])]
    states = hidden_trajectory(k_traj, params, center, config, x0, dcfg.burn_in,
                               dcfg.steps_per_chain, dcfg.segment)          # (C, T)
    occ_c = jax.vmap(state_counts, in_axes=(0, None))(states, S)           # (C, S)
    trans_c = jax.vmap(transition_counts, in_axes=(0, None))(states, S)    # (C, S, S)
    occ_all = _loo_sum(occ_c).astype(jnp.float32)                          # (C+1, S)
    trans_all = _loo_sum(trans_c)                                          # (C+1, S, S)
    p_all = occ_all / jnp.sum(occ_all, axis=-1, keepdims=True)
    M_all = count_transition_matrix(trans_all)
    sig_c_all = jax.vmap(entropy_production)(p_all, M_all)

    # Rao–Blackwell
    per = dcfg.rb_per_group
    sums, cls_sums = _rb_group_sums(k_rb, params, center, config, G, per, dcfg.rb_chunk,
                                    classifier)
    lM_all = _loo_logsumexp(sums)
    n_all = jnp.concatenate([jnp.array([G * per]), jnp.full((G,), (G - 1) * per)])
    lM_all = lM_all - jnp.log(n_all.astype(jnp.float32))[:, None, None]
    lM_all = lM_all - jax.nn.logsumexp(lM_all, axis=-1, keepdims=True)  # rows sum to 1
    lp_rb_all = jax.vmap(stationary_distribution_from_log)(lM_all)        # (G+1, S)
    sig_rb_all = jax.vmap(entropy_production_from_log)(lp_rb_all, lM_all)

    # log-likelihood for all p vectors at once
    lp_counts = jnp.log(p_all)  # −inf for unvisited states: they contribute nothing
    ll = log_likelihood(params, data, jnp.concatenate([lp_counts, lp_rb_all]), config,
                        dcfg.loglik_chunk)
    out = dict(
        occ=occ_all[0], trans=trans_all[0], p_all=p_all, M_all=M_all, sig_c_all=sig_c_all,
        lM_all=lM_all, lp_rb_all=lp_rb_all, sig_rb_all=sig_rb_all,
        ll_c_all=ll[:C + 1], ll_rb_all=ll[C + 1:],
        cur_c=probability_currents(p_all[0], M_all[0]),
        cur_rb=probability_currents_from_log(lp_rb_all[0], lM_all[0]),
        st_c_all=jax.vmap(mean_self_transition)(M_all),
        st_rb_all=jax.vmap(mean_self_transition)(jnp.exp(lM_all)))
    if classifier is not None:
        K = classifier.b.shape[-1]
        cls_probs = cls_sums / (G * per)                                   # (S, K)
        pe_soft_all = p_all @ cls_probs                                    # (C+1, K)
        out["pe_soft_all"] = pe_soft_all
        out["kl_soft_all"] = class_fidelity_kl(pe_soft_all, p_data, dcfg.p_floor)
        if config.hidden == "onehot":
            uc = unit_classes(params, classifier)
            pe_all = jax.vmap(class_distribution, in_axes=(0, None, None))(p_all, uc, K)
            out["unit_class"] = uc
            out["pe_all"] = pe_all
            out["kl_all"] = class_fidelity_kl(pe_all, p_data, dcfg.p_floor)
    return out


@functools.lru_cache(maxsize=32)
def _compiled(config: ModelConfig, dcfg: DiagnosticsConfig, ensemble: bool,
              member_batch: int | None = None):
    fn = functools.partial(_core, config=config, dcfg=dcfg)
    if ensemble and member_batch is None:
        fn = jax.vmap(fn, in_axes=(0, 0, 0, None, None, None))
    elif ensemble:
        one = fn

        def fn(keys, params, centers, data, p_data, classifier):
            return jax.lax.map(lambda m: one(m[0], m[1], m[2], data, p_data, classifier),
                               (keys, params, centers),
                               batch_size=None if member_batch == 1 else member_batch)
    return jax.jit(fn)


def _finalize(out: dict, classifier, p_data, dcfg: DiagnosticsConfig) -> Diagnostics:
    o = {k: np.asarray(v) for k, v in out.items()}

    def est(a):  # pooled estimate and jackknife SE from the (..., G+1) layout
        a = np.asarray(a, np.float64)
        return a[..., 0], jackknife_se(a[..., 1:])

    # arrays are (..., G+1, ...) with the group axis right after any member axis
    lead = o["sig_c_all"].ndim - 1  # 0 for one model, 1 for an ensemble

    def scal(name):
        a = np.moveaxis(o[name], lead, -1)
        return est(a)

    sig_c, sig_c_err = scal("sig_c_all")
    sig_rb_all = np.moveaxis(np.asarray(o["sig_rb_all"], np.float64), lead, -1)
    sig_rb, sig_rb_err = est(sig_rb_all)
    sig_rb_bc = jackknife_bias_corrected(sig_rb_all[..., 0], sig_rb_all[..., 1:])
    ll_c, ll_c_err = scal("ll_c_all")
    ll_rb, ll_rb_err = scal("ll_rb_all")
    tau_c_all = np.moveaxis(decorrelation_time(o["M_all"]), lead, -1)
    tau_rb_all = np.moveaxis(decorrelation_time_from_log(o["lM_all"]), lead, -1)
    st_c, st_c_err = scal("st_c_all")
    st_rb, st_rb_err = scal("st_rb_all")
    tau_c, tau_c_err = est(tau_c_all)
    tau_rb, tau_rb_err = est(tau_rb_all)

    def first(name):
        return np.take(o[name], 0, axis=lead)

    M_counts = first("M_all")
    res = dict(
        p_bar=first("p_all"), occupancy_counts=o["occ"].astype(np.int64),
        transition_counts=o["trans"].astype(np.int64),
        unvisited=np.sum(o["trans"], axis=-1) == 0, M_counts=M_counts,
        log_M_rb=first("lM_all"), p_bar_rb=np.exp(first("lp_rb_all")),
        sigma_counts=sig_c, sigma_counts_err=sig_c_err, sigma_rb=sig_rb,
        sigma_rb_err=sig_rb_err, sigma_rb_bc=sig_rb_bc, tau_counts=tau_c, tau_counts_err=tau_c_err, tau_rb=tau_rb,
        tau_rb_err=tau_rb_err, self_transition_counts=st_c,
        self_transition_counts_err=st_c_err, self_transition_rb=st_rb,
        self_transition_rb_err=st_rb_err, currents_counts=o["cur_c"], currents_rb=o["cur_rb"],
        loglik=ll_c, loglik_err=ll_c_err, loglik_rb=ll_rb, loglik_rb_err=ll_rb_err,
        n_steps=dcfg.steps_per_chain * dcfg.n_chains, n_chains=dcfg.n_chains,
        rb_samples=dcfg.rb_per_group * dcfg.n_chains)
    if classifier is not None:
        res["p_data"] = np.asarray(p_data)
        res["p_e_soft"] = first("pe_soft_all")
        res["kl_soft"], res["kl_soft_err"] = scal("kl_soft_all")
        if "kl_all" in o:
            res["unit_class"] = o["unit_class"]
            res["unit_digit"] = np.asarray(classifier.classes)[o["unit_class"]]
            res["p_e"] = first("pe_all")
            res["kl"], res["kl_err"] = scal("kl_all")
    return Diagnostics(**res)


def _prepare(config, data, labels, classifier, dcfg):
    from ncl.data import check_data
    check_enumerable(config)
    if not isinstance(dcfg, DiagnosticsConfig):
        raise TypeError(f"dcfg must be a DiagnosticsConfig, got {type(dcfg).__name__}")
    data = check_data(data)
    p_data = None
    if classifier is not None:
        if not isinstance(classifier, clf.ClassifierParams):
            raise TypeError("classifier must be ncl.classifier.ClassifierParams, got "
                            f"{type(classifier).__name__}")
        if classifier.W.shape[0] != data.shape[1]:
            raise ValueError(f"classifier expects {classifier.W.shape[0]} pixels, data has "
                             f"{data.shape[1]}")
        K = classifier.n_classes
        if labels is None:
            p_data = np.full((K,), 1.0 / K, np.float32)
        else:
            idx = clf.labels_to_index(labels, np.asarray(classifier.classes))
            if idx.shape[0] != data.shape[0]:
                raise ValueError(f"{data.shape[0]} data rows but {idx.shape[0]} labels")
            p_data = (np.bincount(idx, minlength=K) / idx.shape[0]).astype(np.float32)
    return jnp.asarray(data), p_data


def diagnose(key: Array, params: Params, center: Array, config: ModelConfig, data,
             dcfg: DiagnosticsConfig = DiagnosticsConfig(), labels=None,
             classifier: clf.ClassifierParams | None = None) -> Diagnostics:
    """All diagnostics of Sect. IV B for ONE model.

    ``n_chains`` independent chains start from random data points, run ``burn_in`` double
    steps and record ``ceil(n_steps / n_chains)`` steps each; the RB matrix uses
    ``rb_samples`` samples per source state in ``n_chains`` batches. The JAX part is one
    jit-compiled program (cached per ``(config, dcfg)``); eigenvalues (τ) and the
    jackknife are computed on the host.

    Args:
      key: PRNG key.
      params: model parameters; ``center (D,)`` the centering vector.
      config: model configuration (binary hidden units: L <= 12).
      data: ``(N, D)`` binary data (log-likelihood, chain starts).
      dcfg: :class:`DiagnosticsConfig`.
      labels: ``(N,)`` digit labels of ``data`` (for ``P_D`` of eq. 22; uniform over the
        classifier's classes if omitted).
      classifier: :class:`ncl.classifier.ClassifierParams` to compute the KL of eq. (22).
    Returns:
      :class:`Diagnostics`.
    """
    data_j, p_data = _prepare(config, data, labels, classifier, dcfg)
    _check_model_inputs(params, center, config, data_j.shape[1])
    out = _compiled(config, dcfg, False)(key, params, jnp.asarray(center, jnp.float32),
                                         data_j, p_data, classifier)
    return _finalize(out, classifier, p_data, dcfg)


def diagnose_ensemble(key: Array, state_params: Params, centers: Array, config: ModelConfig,
                      data, dcfg: DiagnosticsConfig = DiagnosticsConfig(), labels=None,
                      classifier: clf.ClassifierParams | None = None,
                      member_batch: int | str | None = "auto") -> Diagnostics:
    """:func:`diagnose` for an ensemble: one compiled program over all members.

    Member ``i`` uses ``jax.random.split(key, E)[i]`` and equals
    ``diagnose(keys[i], ...)`` up to float32 round-off (other batch shapes: a draw may
    flip, after which chain statistics agree in distribution).

    Args:
      key: PRNG key, split into one key per member.
      state_params: :class:`Params` with a leading ``(E,)`` member axis
        (e.g. ``train_state.params`` of :func:`ncl.training.train_ensemble`).
      centers: ``(E, D)`` centering vectors (``train_state.center``).
      member_batch: ``None`` vmaps over all members at once; an int ``b`` runs
        ``lax.map`` over members, vmapping ``b`` at a time (less memory). ``"auto"``
        (default): ``1`` on CPU — measured on a 2-core CPU, 36 members at the default
        settings take ~10 s this way against ~25 s fully vmapped, and compile faster —
        and ``None`` on accelerators.
      (others as in :func:`diagnose`)
    Returns:
      :class:`Diagnostics` whose array fields have a leading ``(E,)`` axis.
    """
    data_j, p_data = _prepare(config, data, labels, classifier, dcfg)
    _check_model_inputs(state_params, centers, config, data_j.shape[1], n_members=-1)
    E = state_params.w.shape[0]
    if isinstance(member_batch, str) and member_batch == "auto":
        member_batch = 1 if jax.default_backend() == "cpu" else None
    if member_batch is not None and (not isinstance(member_batch, int)
                                     or isinstance(member_batch, bool) or member_batch < 1):
        raise ValueError(f"member_batch must be 'auto', None or a positive int, "
                         f"got {member_batch!r}")
    keys = jax.random.split(key, E)
    out = _compiled(config, dcfg, True, member_batch)(
        keys, state_params, jnp.asarray(centers, jnp.float32), data_j, p_data, classifier)
    return _finalize(out, classifier, p_data, dcfg)
