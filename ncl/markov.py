"""Markov-chain algebra on the hidden states: arrays in, arrays out (paper eqs. 3, 6, 21, 23, 24).

Layer: above :mod:`ncl.model` (it needs nothing of it: every function takes plain
arrays), below :mod:`ncl.chain`. Like BlackJAX's ``diagnostics`` module, nothing here
runs a chain or knows a model: the inputs are hidden-state index trajectories, counts,
transition matrices ``M (S, S)`` (probability or log space) and occupancies ``p (S,)``.
Sizes as in :mod:`ncl.model` (``S`` hidden states, ``T`` steps, ``G`` jackknife groups).

* counts: :func:`state_counts`, :func:`occupancy`, :func:`transition_counts`,
  :func:`count_transition_matrix`, :func:`unvisited_states` — the count estimator of
  ``M`` (eq. 3) and ``p̄``;
* :func:`stationary_distribution`, :func:`stationary_distribution_from_log` (eq. 6);
* :func:`entropy_production` (eq. 21, counts: pairs with a zero flux left out),
  :func:`entropy_production_from_log` (eq. 21 from ``log p``, ``log M``, no exclusion),
  :func:`probability_currents`, :func:`mean_self_transition` (eq. 24),
  :func:`decorrelation_time` (eq. 23, *host*, NumPy eigenvalues);
* Rao–Blackwell sums of a training chain: :func:`rb_log_sum_update`,
  :func:`sigma_from_counts_and_rb_sums`;
* delete-one-group jackknife: :func:`jackknife_se`, :func:`jackknife_bias_corrected`
  and the leave-one-out sums :func:`_loo_sum`, :func:`_loo_logsumexp`.

All functions are pure and jittable (vmap for batches) unless marked *host*.
"""
from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# --------------------------------------------------------- counts (the count estimator of M, eq. 3)

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



# ------------------------------------------------------------------------ stationary vector (eq. 6)

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



# ----------------------------------------------------------------------------- eqs. 21, 23, 24

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



# -------------------------------------------------------------------- Rao–Blackwell sums of a chain

def rb_log_sum_update(log_rb_sum: Array, rb_visits: Array, prev_states: Array,
                      log_abar: Array) -> tuple[Array, Array]:
    """Accumulate the Rao–Blackwell transition sum of a training chain in log space.

    ``rb_sum[z', z] = Σ_{t: z(t−1) = z'} Ā(x'(t), z)`` where ``x'(t) ~ A(z(t−1), ·)``.
    For a :class:`ncl.chain.Trajectory` segment, the pairs are ``prev_states =
    z(0..T−2)`` with ``log_abar = ncl.model.log_abar_all_states(params, x'(1..T−1), ...)`` (plus the
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



# --------------------------------------------------------------------- jackknife (delete-one-group)

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
