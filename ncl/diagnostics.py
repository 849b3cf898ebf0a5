"""Diagnostics of a trained model (paper Sect. IV B, eqs. 3, 5, 7, 21–24;
docs/model.md "Diagnostics").

Layer: the top of the numerical core, above :mod:`ncl.training` (it needs only the
lower modules: :mod:`ncl.model`, :mod:`ncl.markov`, :mod:`ncl.chain`, and the leaves
:mod:`ncl.data`, :mod:`ncl.classifier`); below io, the workflows and the command line.
This module is the pipeline: it runs chains and Rao–Blackwell samples for a model and
hands the arrays to :mod:`ncl.markov` (counts, stationary vectors, σ, τ, jackknife).

Hidden states are indexed ``0..S−1``: ``S = L`` for one-hot hidden units, ``S = 2**L``
for binary ones (ordered as :func:`ncl.model.enumerate_hidden_states`; enumeration-based
diagnostics are limited to ``L <= 12`` binary units, :data:`ncl.model.MAX_BINARY_UNITS`).
Sizes as in :mod:`ncl.model` (``C`` chains, ``G`` jackknife groups, ``K`` RB samples,
``Q`` classes, ``E`` members).

* :class:`DiagnosticsConfig`, :func:`diagnose` (one model), :func:`diagnose_ensemble`
  (an ensemble, a pytree with a leading member axis, in one compiled program);
* :func:`hidden_trajectory` — long chain, recording only hidden-state indices;
* :func:`rao_blackwell_log_transition_matrix` — ``log M[z', z] = log mean_k Ā(x_k, z)``,
  ``x_k ~ A(z', ·)``, accumulated with logsumexp;
* the class fidelity of eq. (22) comes from :mod:`ncl.fidelity`.

Error bars are delete-one-group jackknife standard errors
(:func:`ncl.markov.jackknife_se`): for count-based quantities the groups are the
``n_chains`` independent chains; for Rao–Blackwellised quantities they are ``n_chains``
independent batches of the RB samples (the RB estimate does not use the chain at all).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ncl import _compat
from ncl import _validate as _v
from ncl import chain as chain_lib
from ncl import classifier as clf
from ncl.data import check_data
from ncl.fidelity import class_distribution, class_fidelity_kl, unit_classes
from ncl.markov import (_loo_logsumexp, _loo_sum, count_transition_matrix,
                        decorrelation_time, decorrelation_time_from_log, entropy_production,
                        entropy_production_from_log, jackknife_bias_corrected, jackknife_se,
                        mean_self_transition, probability_currents,
                        probability_currents_from_log, state_counts,
                        stationary_distribution_from_log, transition_counts)
from ncl.model import (CHUNK_ELEMENTS, ModelConfig, Params,
                       bernoulli_from_bits, bernoulli_thresholds, check_enumerable,
                       check_params, enumerate_hidden_states, hidden_state_index,
                       log_abar_all_states, log_likelihood_given_occupancy, visible_logits)

Array = jax.Array


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


# ----------------------------------------------------------------------------- trajectory

def _run_and_record(key, x, params, center, config, n: int, segment: int):
    """Run ``n`` double steps from ``x (C, D)``; return state indices ``(C, n)``.

    :func:`ncl.chain.run_segments` over ``ceil(n / segment)`` segments (the last one may
    run a few steps past ``n``, which are discarded): one compiled instance of the chain.
    """
    n_seg = -(-n // segment)
    C = x.shape[0]
    _, idx = chain_lib.run_segments(
        jax.random.split(key, n_seg), chain_lib.ChainState(x), params, center, config,
        segment, record=lambda traj: hidden_state_index(traj.z, config))   # (n_seg, seg, C)
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

# ----------------------------------------------------------------------------- Rao–Blackwell

def _rb_group_sums(key, params, center, config, n_groups: int, per_group: int, chunk: int,
                   classifier=None):
    """Log of ``Σ_k Ā(x_k, z)`` per group, ``x_k ~ A(z', ·)``: ``(G, S, S)``.

    If ``classifier`` is given, also returns ``Σ_k predict_proba(x_k)`` per source state,
    summed over all groups, ``(S, Q)`` (else ``None``).
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

# ----------------------------------------------------------------------------- eqs. 21–24

# ----------------------------------------------------------------------------- likelihood

# ----------------------------------------------------------------------------- diagnose

class Diagnostics(NamedTuple):
    """Result of :func:`diagnose` (NumPy arrays; :func:`diagnose_ensemble` adds a leading
    member axis to every field). ``S`` states, ``C`` chains, ``Q`` classes.
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
      loglik_heldout, loglik_heldout_err, loglik_heldout_rb, loglik_heldout_rb_err: the
        same two on the held-out images (``None`` when none were given).
      unit_class: ``(L,)`` class index of each hidden unit's mean image (one-hot with a
        classifier, else ``None``); ``unit_digit``: the corresponding digits.
      p_data: ``(Q,)`` class frequencies of the data (uniform if no labels given).
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
    loglik_heldout: np.ndarray | None = None
    loglik_heldout_err: np.ndarray | None = None
    loglik_heldout_rb: np.ndarray | None = None
    loglik_heldout_rb_err: np.ndarray | None = None
    n_steps: int = 0
    n_chains: int = 0
    rb_samples: int = 0

    def summary(self) -> dict:
        """Scalar results (or per-member arrays) as a plain dict."""
        keys = ("sigma_counts", "sigma_counts_err", "sigma_rb", "sigma_rb_err", "sigma_rb_bc",
                "tau_counts",
                "tau_counts_err", "tau_rb", "tau_rb_err", "self_transition_counts",
                "self_transition_counts_err", "self_transition_rb", "self_transition_rb_err",
                "loglik", "loglik_err", "loglik_rb", "loglik_rb_err", "kl", "kl_err",
                "kl_soft", "kl_soft_err", "loglik_heldout", "loglik_heldout_err",
                "loglik_heldout_rb", "loglik_heldout_rb_err")
        out = {}
        for k in keys:
            v = getattr(self, k)
            if v is not None:
                v = np.asarray(v)
                out[k] = float(v) if v.ndim == 0 else v.tolist()
        return out


class _Estimates(NamedTuple):
    """What the compiled part of :func:`diagnose` returns to the host part (one model;
    an ensemble adds a leading member axis). ``*_all`` arrays have a group axis of
    ``G + 1`` rows: row 0 the pooled estimate, row ``g + 1`` the estimate without group
    ``g`` (the jackknife layout of :func:`ncl.markov._loo_sum`). The class fields are
    ``None`` without a classifier (and the hard-assignment ones for binary units)."""

    occ: Array                # (S,) visits, all chains
    trans: Array              # (S, S) transition counts, all chains
    p_all: Array              # (G+1, S) count occupancies
    M_all: Array              # (G+1, S, S) count estimators of M
    sig_c_all: Array          # (G+1,) σ from counts (eq. 21)
    lM_all: Array             # (G+1, S, S) Rao–Blackwellised log M
    lp_rb_all: Array          # (G+1, S) its stationary log p̄
    sig_rb_all: Array         # (G+1,) σ from the RB M
    ll_c_all: Array           # (G+1,) eq. (5)/(7) with p_all
    ll_rb_all: Array          # (G+1,) the same with lp_rb_all
    cur_c: Array              # (S, S) currents, counts
    cur_rb: Array             # (S, S) currents, RB
    st_c_all: Array           # (G+1,) Tr(M)/S, counts (eq. 24)
    st_rb_all: Array          # (G+1,) Tr(M)/S, RB
    pe_soft_all: Array | None = None   # (G+1, Q) soft P_e
    kl_soft_all: Array | None = None   # (G+1,) its KL (eq. 22)
    unit_class: Array | None = None    # (L,) class of each one-hot unit
    pe_all: Array | None = None        # (G+1, Q) hard P_e
    kl_all: Array | None = None        # (G+1,) its KL
    llh_c_all: Array | None = None     # (G+1,) eq. (5) on the held-out images, counts p̄
    llh_rb_all: Array | None = None    # (G+1,) the same with the RB p̄


def _core(key, params, center, data, p_data, classifier, heldout, config: ModelConfig,
          dcfg: DiagnosticsConfig) -> _Estimates:
    """Everything jittable for one model (see :class:`_Estimates`)."""
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
    ll = log_likelihood_given_occupancy(params, data,
                                        jnp.concatenate([lp_counts, lp_rb_all]), config,
                                        dcfg.loglik_chunk)
    out = _Estimates(
        occ=occ_all[0], trans=trans_all[0], p_all=p_all, M_all=M_all, sig_c_all=sig_c_all,
        lM_all=lM_all, lp_rb_all=lp_rb_all, sig_rb_all=sig_rb_all,
        ll_c_all=ll[:C + 1], ll_rb_all=ll[C + 1:],
        cur_c=probability_currents(p_all[0], M_all[0]),
        cur_rb=probability_currents_from_log(lp_rb_all[0], lM_all[0]),
        st_c_all=jax.vmap(mean_self_transition)(M_all),
        st_rb_all=jax.vmap(mean_self_transition)(jnp.exp(lM_all)))
    if heldout is not None:
        llh = log_likelihood_given_occupancy(params, heldout,
                                             jnp.concatenate([lp_counts, lp_rb_all]), config,
                                             dcfg.loglik_chunk)
        out = out._replace(llh_c_all=llh[:C + 1], llh_rb_all=llh[C + 1:])
    if classifier is not None:
        Q = classifier.b.shape[-1]
        cls_probs = cls_sums / (G * per)                                   # (S, Q)
        pe_soft_all = p_all @ cls_probs                                    # (C+1, Q)
        out = out._replace(pe_soft_all=pe_soft_all,
                           kl_soft_all=class_fidelity_kl(pe_soft_all, p_data, dcfg.p_floor))
        if config.hidden == "onehot":
            uc = unit_classes(params, classifier)
            pe_all = jax.vmap(class_distribution, in_axes=(0, None, None))(p_all, uc, Q)
            out = out._replace(unit_class=uc, pe_all=pe_all,
                               kl_all=class_fidelity_kl(pe_all, p_data, dcfg.p_floor))
    return out


@functools.lru_cache(maxsize=32)
def _compiled(config: ModelConfig, dcfg: DiagnosticsConfig, ensemble: bool,
              member_batch: int | None = None):
    fn = functools.partial(_core, config=config, dcfg=dcfg)
    if ensemble and member_batch is None:
        fn = jax.vmap(fn, in_axes=(0, 0, 0, None, None, None, None))
    elif ensemble:
        one = fn

        def fn(keys, params, centers, data, p_data, classifier, heldout):
            return jax.lax.map(lambda m: one(m[0], m[1], m[2], data, p_data, classifier,
                                             heldout),
                               (keys, params, centers),
                               batch_size=None if member_batch == 1 else member_batch)
    return _compat.jit(fn)


def _finalize(out: _Estimates, classifier, p_data, dcfg: DiagnosticsConfig) -> Diagnostics:
    o = {k: np.asarray(v) for k, v in out._asdict().items() if v is not None}

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
    held = {}
    if "llh_c_all" in o:
        held["loglik_heldout"], held["loglik_heldout_err"] = scal("llh_c_all")
        held["loglik_heldout_rb"], held["loglik_heldout_rb_err"] = scal("llh_rb_all")
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
        sigma_rb_err=sig_rb_err, sigma_rb_bc=sig_rb_bc, tau_counts=tau_c, tau_counts_err=tau_c_err,
        tau_rb=tau_rb,
        tau_rb_err=tau_rb_err, self_transition_counts=st_c,
        self_transition_counts_err=st_c_err, self_transition_rb=st_rb,
        self_transition_rb_err=st_rb_err, currents_counts=o["cur_c"], currents_rb=o["cur_rb"],
        loglik=ll_c, loglik_err=ll_c_err, loglik_rb=ll_rb, loglik_rb_err=ll_rb_err,
        n_steps=dcfg.steps_per_chain * dcfg.n_chains, n_chains=dcfg.n_chains,
        rb_samples=dcfg.rb_per_group * dcfg.n_chains, **held)
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


def _prepare_heldout(heldout, data):
    if heldout is None:
        return None
    heldout = check_data(heldout, "heldout")
    if heldout.shape[1] != data.shape[1]:
        raise ValueError(f"heldout has {heldout.shape[1]} pixels per image, the data "
                         f"{data.shape[1]}; pass held-out images of the same size")
    return jnp.asarray(heldout)


def _prepare(config, data, labels, classifier, dcfg):
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
        Q = classifier.n_classes
        if labels is None:
            p_data = np.full((Q,), 1.0 / Q, np.float32)
        else:
            idx = clf.labels_to_index(labels, np.asarray(classifier.classes))
            if idx.shape[0] != data.shape[0]:
                raise ValueError(f"{data.shape[0]} data rows but {idx.shape[0]} labels")
            p_data = (np.bincount(idx, minlength=Q) / idx.shape[0]).astype(np.float32)
    return jnp.asarray(data), p_data


def diagnose(key: Array, params: Params, center: Array, config: ModelConfig, data,
             dcfg: DiagnosticsConfig = DiagnosticsConfig(), labels=None,
             classifier: clf.ClassifierParams | None = None, heldout=None) -> Diagnostics:
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
      heldout: ``(N_H, D)`` binary held-out images (e.g.
        :func:`ncl.data.load_heldout_data`): adds the exact log-likelihood given p̄ on
        them (``Diagnostics.loglik_heldout``), with the same jackknife error.
    Returns:
      :class:`Diagnostics`.
    """
    data_j, p_data = _prepare(config, data, labels, classifier, dcfg)
    held_j = _prepare_heldout(heldout, data_j)
    _check_model_inputs(params, center, config, data_j.shape[1])
    out = _compiled(config, dcfg, False)(key, params, jnp.asarray(center, jnp.float32),
                                         data_j, p_data, classifier, held_j)
    return _finalize(out, classifier, p_data, dcfg)


def diagnose_ensemble(key: Array, state_params: Params, centers: Array, config: ModelConfig,
                      data, dcfg: DiagnosticsConfig = DiagnosticsConfig(), labels=None,
                      classifier: clf.ClassifierParams | None = None,
                      member_batch: int | str | None = "auto", heldout=None) -> Diagnostics:
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
    held_j = _prepare_heldout(heldout, data_j)
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
        keys, state_params, jnp.asarray(centers, jnp.float32), data_j, p_data, classifier,
        held_j)
    return _finalize(out, classifier, p_data, dcfg)
