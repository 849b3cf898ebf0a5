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

Layer: above the estimators, below :mod:`ncl.trajectory` and :mod:`ncl.training`; it
uses :mod:`ncl.markov` for σ and :mod:`ncl.model` for the per-state kernel tables and
the eq. (5) likelihood. Sizes as in :mod:`ncl.model`.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ncl import markov
from ncl.chain import Trajectory
from ncl.model import (ModelConfig, Params, hidden_state_index, log_abar_all_states,
                       log_abar_all_states_from_logits, log_likelihood_given_occupancy)

Array = jax.Array

MAX_MONITOR_STATES = 64


class MonitorAccumulator(NamedTuple):
    """Running sums over an epoch's training-chain samples (S hidden states).

    Attributes:
      occupancy: ``(S,)`` visits per hidden state.
      transitions: ``(S, S)`` counts of ``z(t−1) → z(t)``.
      log_rb_sum: ``(S, S)`` ``log Σ_{t: z(t−1)=z'} Ā(x'(t), z)``.
      rb_visits: ``(S,)`` number of terms in each row of ``log_rb_sum``.
    """

    occupancy: Array
    transitions: Array
    log_rb_sum: Array
    rb_visits: Array


def monitor_supported(config: ModelConfig) -> bool:
    """Monitoring is on for models with at most ``MAX_MONITOR_STATES`` hidden states."""
    return config.n_states <= MAX_MONITOR_STATES


def empty_accumulator(config: ModelConfig) -> MonitorAccumulator:
    S = config.n_states
    return MonitorAccumulator(jnp.zeros(S), jnp.zeros((S, S)), jnp.full((S, S), -jnp.inf),
                              jnp.zeros(S))


def accumulate(acc: MonitorAccumulator, params: Params, traj: Trajectory, center: Array,
               config: ModelConfig, hidden_logits: Array | None = None) -> MonitorAccumulator:
    """Add one chain segment ``traj`` (``x (T, C, D)``, ``z (T, C, L)``) to ``acc``.

    ``params`` must be the parameters the segment was sampled with. ``hidden_logits``:
    optionally the ``(T, C, L)`` logits ``g(x'(t))`` the chain computed
    (:func:`ncl.chain.sample_chain_with_logits`), so they need not be recomputed.
    """
    S = config.n_states
    idx = hidden_state_index(traj.z, config)                          # (T, C)
    prev = jnp.swapaxes(idx[:-1], 0, 1).reshape(-1)                   # chain-major pairs
    nxt = jnp.swapaxes(idx[1:], 0, 1).reshape(-1)
    if hidden_logits is None:
        log_abar = log_abar_all_states(params, jnp.swapaxes(traj.x[1:], 0, 1), center,
                                            config)                   # log Ā(x'(t), ·)
    else:
        log_abar = log_abar_all_states_from_logits(
            jnp.swapaxes(hidden_logits[1:], 0, 1), config)            # (C, T−1, S)
    log_abar = log_abar.reshape(-1, S)
    log_rb_sum, rb_visits = markov.rb_log_sum_update(acc.log_rb_sum, acc.rb_visits, prev,
                                                     log_abar)
    return MonitorAccumulator(
        occupancy=acc.occupancy + jnp.zeros(S).at[idx.reshape(-1)].add(1.0),
        transitions=acc.transitions + jnp.zeros((S, S)).at[prev, nxt].add(1.0),
        log_rb_sum=log_rb_sum, rb_visits=rb_visits)


class EpochMonitor(NamedTuple):
    """Per-epoch monitoring values (scalars; ``(S,)`` for the occupancy)."""

    loglik_precise: Array
    sigma_rb: Array
    sigma_counts: Array
    occupancy: Array


def summarize(acc: MonitorAccumulator, params: Params, data: Array, config: ModelConfig
              ) -> EpochMonitor:
    """σ (both estimators, :func:`ncl.markov.sigma_from_counts_and_rb_sums`) and the
    precise log-likelihood of ``data (N, D)`` given the epoch's occupancy
    (:func:`ncl.model.log_likelihood_given_occupancy`) from an epoch's accumulator."""
    p_emp = acc.occupancy / jnp.maximum(jnp.sum(acc.occupancy), 1.0)
    sig = markov.sigma_from_counts_and_rb_sums(acc.occupancy, acc.transitions,
                                               acc.log_rb_sum, acc.rb_visits)
    ll = log_likelihood_given_occupancy(params, data, jnp.log(p_emp), config)
    return EpochMonitor(ll, sig.sigma_rb, sig.sigma_counts, p_emp)
