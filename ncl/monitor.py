"""Monitoring inside the training program: σ and the precise log-likelihood per epoch.

Fig. 2(a, b) need the log-likelihood and the entropy production rate σ at every epoch.
Running a separate long chain every epoch would cost more than training, so the
monitor reuses the training chain's own samples (no extra random numbers):

* occupancy ``p̄(z)``: how often the training chain visited each hidden state;
* transitions ``n[z', z]`` between consecutive hidden states (count estimator of M);
* Rao–Blackwellised transition matrix: ``x'(t) ~ A(z(t−1), ·)``, so the average of
  ``Ā(x'(t), ·)`` over the times with ``z(t−1) = z'`` estimates ``M[z', ·]`` (eq. 3)
  without the noise of the discrete draw. Accumulated in log space.

At the end of the epoch: ``σ`` (eq. 21) from both estimators and the precise
log-likelihood of the whole data set given ``p̄`` (eqs. 5, 7; App. A3). The parameters
drift during an epoch (30 gradient steps), so these are estimates of the epoch's
average model, as in the paper's monitoring. All functions are pure and jittable.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ncl.chain import Trajectory
from ncl.model import ModelConfig, Params, enumerate_hidden_states, hidden_logits, hidden_state_index

Array = jax.Array

MAX_MONITOR_STATES = 64


class MonitorAccumulator(NamedTuple):
    """Running sums over an epoch's training-chain samples (S hidden states).

    Attributes:
      occupancy: ``(S,)`` visits per hidden state.
      transitions: ``(S, S)`` counts of ``z(t−1) → z(t)``.
      log_rb_sum: ``(S, S)`` ``log Σ_{t: z(t−1)=z'} Ā(x'(t), z)``.
    """

    occupancy: Array
    transitions: Array
    log_rb_sum: Array


def monitor_supported(config: ModelConfig) -> bool:
    return config.n_states <= MAX_MONITOR_STATES


def empty_accumulator(config: ModelConfig) -> MonitorAccumulator:
    S = config.n_states
    return MonitorAccumulator(jnp.zeros(S), jnp.zeros((S, S)), jnp.full((S, S), -jnp.inf))


def _log_hidden_state_probs(params: Params, x: Array, center: Array, config: ModelConfig):
    g = hidden_logits(params, x, center)
    if config.hidden == "onehot":
        logits = g if config.recognition == "softmax" else jax.nn.log_sigmoid(g)
        return jax.nn.log_softmax(logits, axis=-1)
    states = enumerate_hidden_states(config)
    return jax.nn.log_sigmoid(g) @ states.T + jax.nn.log_sigmoid(-g) @ (1 - states).T


def accumulate(acc: MonitorAccumulator, params: Params, traj: Trajectory, center: Array,
               config: ModelConfig) -> MonitorAccumulator:
    """Add one chain segment ``traj`` (``x (T, C, D)``, ``z (T, C, L)``) to ``acc``."""
    S = config.n_states
    idx = hidden_state_index(traj.z, config)                          # (T, C)
    onehot = jax.nn.one_hot(idx, S)                                   # (T, C, S)
    prev, nxt = onehot[:-1].reshape(-1, S), onehot[1:].reshape(-1, S)
    log_abar = _log_hidden_state_probs(params, traj.x[1:], center, config).reshape(-1, S)
    # log Σ_t [prev_t = z'] Ā(x'(t), z): masked logsumexp over t
    masked = jnp.where(prev.T[:, :, None] > 0, log_abar[None, :, :], -jnp.inf)  # (S, n, S)
    step_log = jax.nn.logsumexp(masked, axis=1)
    return MonitorAccumulator(
        occupancy=acc.occupancy + onehot.sum((0, 1)),
        transitions=acc.transitions + prev.T @ nxt,
        log_rb_sum=jnp.logaddexp(acc.log_rb_sum, step_log))


def stationary_distribution(M: Array) -> Array:
    """Stationary vector ``p`` of a row-stochastic ``M (S, S)``: ``p M = p``, ``Σ p = 1``.

    Solved as a linear system with the normalisation replacing one balance equation
    (exact also for periodic chains, where power iteration would oscillate). Needs a
    unique stationary vector (an irreducible M, as the Rao–Blackwellised M always is).
    """
    S = M.shape[0]
    A = (M - jnp.eye(S, dtype=M.dtype)).T
    A = A.at[-1].set(1.0)
    b = jnp.zeros(S, M.dtype).at[-1].set(1.0)
    p = jnp.linalg.solve(A, b)
    p = jnp.clip(p, 0.0, None)
    return p / jnp.sum(p)


def entropy_production_from_log(log_p: Array, log_M: Array) -> Array:
    """σ of eq. (21) from ``log p (S,)`` and ``log M (S, S)``, no pair left out.

    ``σ = ½ Σ_{i≠j} (F_ij − F_ji) (ln F_ij − ln F_ji)``, ``F_ij = p_i M_ij``. Pairs where
    both fluxes vanish contribute 0; a one-way flux gives ``inf`` (a perfect cycle).
    """
    log_F = log_p[:, None] + log_M
    diff = jnp.exp(log_F) - jnp.exp(log_F.T)
    log_ratio = log_F - log_F.T
    both_zero = jnp.isneginf(log_F) & jnp.isneginf(log_F.T)
    terms = jnp.where(both_zero, 0.0, diff * jnp.where(both_zero, 0.0, log_ratio))
    return 0.5 * jnp.sum(terms * (1 - jnp.eye(log_p.shape[0], dtype=terms.dtype)))


def entropy_production_counts(transitions: Array) -> Array:
    """The paper's count estimator of σ (eq. 21) from a transition-count matrix ``(S, S)``.

    ``p̄(z') M[z', z]`` is estimated by ``n[z', z] / Σ n``; pairs with a zero count in
    either direction are left out (so a perfect cycle gives 0: biased low).
    """
    F = transitions / jnp.maximum(jnp.sum(transitions), 1.0)
    keep = (F > 0) & (F.T > 0)
    safe = jnp.where(keep, F, 1.0)
    terms = jnp.where(keep, (F - F.T) * (jnp.log(safe) - jnp.log(safe.T)), 0.0)
    return 0.5 * jnp.sum(terms)


def rb_log_transition_matrix(acc: MonitorAccumulator) -> Array:
    """Row-normalised log of the Rao–Blackwellised M; a state never left gets a uniform row."""
    rows = jnp.sum(acc.transitions, axis=1)
    S = rows.shape[0]
    log_M = acc.log_rb_sum - jnp.log(jnp.maximum(rows, 1.0))[:, None]
    return jnp.where((rows > 0)[:, None], log_M, -jnp.log(float(S)))


def data_log_likelihood(params: Params, data: Array, log_p: Array, config: ModelConfig,
                        chunk: int = 1024) -> Array:
    """``mean_n ln Σ_z p̄(z) A(z, x_n)`` (eqs. 5, 7) over ``data (N, D)``, in row chunks.

    ``log_p (S,)`` may hold ``-inf`` for states of zero weight.
    """
    from ncl.gradient import log_A_matrix
    states = enumerate_hidden_states(config)
    N, D = data.shape
    n_chunks = -(-N // chunk)
    pad = n_chunks * chunk - N
    padded = jnp.concatenate([data, jnp.zeros((pad, D), data.dtype)]).reshape(n_chunks, chunk, D)
    weights = (jnp.arange(n_chunks * chunk) < N).astype(data.dtype).reshape(n_chunks, chunk)

    def one(args):
        x, wts = args
        ll = jax.nn.logsumexp(log_A_matrix(params, x, states) + log_p[None, :], axis=1)
        return jnp.sum(jnp.where(wts > 0, ll, 0.0))

    return jnp.sum(jax.lax.map(one, (padded, weights))) / N


class EpochMonitor(NamedTuple):
    """Per-epoch monitoring values (scalars; ``(S,)`` for the occupancy)."""

    loglik_precise: Array
    sigma_rb: Array
    sigma_counts: Array
    occupancy: Array


def summarize(acc: MonitorAccumulator, params: Params, data: Array, config: ModelConfig
              ) -> EpochMonitor:
    """σ (both estimators) and the precise log-likelihood from an epoch's accumulator."""
    p_emp = acc.occupancy / jnp.maximum(jnp.sum(acc.occupancy), 1.0)
    log_M = rb_log_transition_matrix(acc)
    p_rb = stationary_distribution(jnp.exp(log_M))
    sigma_rb = entropy_production_from_log(jnp.log(p_rb), log_M)
    sigma_counts = entropy_production_counts(acc.transitions)
    ll = data_log_likelihood(params, data, jnp.log(p_emp), config)
    return EpochMonitor(ll, sigma_rb, sigma_counts, p_emp)
