"""Diagnostics of a model from its chain's samples alone, for hidden spaces too large to
tabulate ``M`` (docs/model.md, "Diagnostics"; paper Sect. IV B, eqs. 5, 7, 21–23).

:mod:`ncl.diagnostics` tabulates the ``S × S`` latent transition matrix ``M`` (eq. 3);
that stops at ``S = 4096`` (12 binary units). :func:`chain_diagnose` needs no table:

* **σ** (eq. 21) from a hidden trajectory, each visited entry of ``ln M``
  Rao–Blackwellised and bias-corrected, with a batch-means error
  (:func:`ncl.trajectory.trajectory_diagnostics`);
* **decorrelation** of the hidden vector and of the *generated digit classes* (the
  classifier applied to every visible state ``x(t)`` of the chain): the e-folding lag
  of the autocorrelation envelope (:func:`ncl.trajectory.decorrelation_time`, the
  sampled ``τ = −1/ln|λ₂|`` of eq. 23, oscillations of a cycling chain included), and
  the integrated autocorrelation time and effective sample size of each class
  indicator (Sokal's window: the variance of means);
* **sample fidelity**: the class frequencies of the generated images, their
  ``KL(P_D || P_samples)`` (eq. 22 applied to samples, floored at ``p_floor``) and the
  fraction classified with probability above ``confidence``; jackknife errors over
  chains;
* **class irreversibility**: ``Σ_ij P(c→c') ln[P(c→c') / P(c'→c)]`` of consecutive
  generated classes (pseudo-count ½ per cell), a lower bound on the entropy production
  of the visible chain per double step (coarse-graining never increases the KL between
  forward and reversed pair distributions); 0 for a reversible chain (an RBM);
* **log-likelihood** (eqs. 5, 7) given the Rao–Blackwellised occupancy
  ``p̄(z) = mean_t Ā(x(t), z)`` of the chain's visible states, where the ``S`` states
  can be enumerated (``S ≤ max_states``; binary ``L ≤ 16`` by default, one-hot any ``L``),
  on the training data and optionally on held-out data; ``nan`` otherwise.

Every function is pure and jittable with static configs; :func:`chain_diagnose_ensemble`
runs the members one after the other (``lax.map``, memory of one member).

Layer: above :mod:`ncl.diagnostics` (uses :mod:`ncl.trajectory`, :mod:`ncl.classifier`,
:mod:`ncl.fidelity`, :mod:`ncl.model`, :mod:`ncl.chain`), below :mod:`ncl.io`.
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
from ncl import fidelity
from ncl import trajectory as traj_lib
from ncl.model import (MAX_ENUMERABLE_BINARY_UNITS, ModelConfig, Params, check_params,
                       log_abar_all_states, log_likelihood_given_occupancy)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ChainDiagnosticsConfig:
    """Settings of :func:`chain_diagnose` (plain, hashable data).

    Attributes:
      n_chains: independent chains ``C`` (random-bit starts); the jackknife groups.
      burn_in: double steps discarded first by every chain.
      n_steps: recorded double steps per chain ``T``.
      rb_samples: ``K`` visible draws per visited hidden state for ``ln M`` (σ).
      bias_correction: of the log of a Monte-Carlo mean: ``"jackknife"``, ``"delta"``,
        ``"none"`` (:func:`ncl.trajectory.log_mean_exp`).
      n_batches: batches per chain of σ's batch-means error.
      segment: double steps per chain call (memory/speed only).
      max_states: the log-likelihood enumerates the hidden states only up to this many.
      loglik_images: the log-likelihoods use the first this many images of each data
        set (0: all).
      p_floor: floor of the sample class frequencies in the KL (eq. 22).
      confidence: a generated image counts as confidently classified above this.
    """

    n_chains: int = 16
    burn_in: int = 1000
    n_steps: int = 2000
    rb_samples: int = 16
    bias_correction: str = "jackknife"
    n_batches: int = 16
    segment: int = 100
    max_states: int = 1 << 16
    loglik_images: int = 0
    p_floor: float = 1e-3
    confidence: float = 0.9

    def __post_init__(self):
        _v.check_fields(self, _RULES)


_RULES = {
    "n_chains": (_v.integer, dict(min=2)),
    "burn_in": (_v.integer, dict(min=0)),
    "n_steps": (_v.integer, dict(min=8)),
    "rb_samples": (_v.integer, dict(min=2)),
    "bias_correction": (_v.choice, dict(choices=traj_lib.BIAS_CORRECTIONS)),
    "n_batches": (_v.integer, dict(min=2)),
    "segment": (_v.integer, dict(min=1)),
    "max_states": (_v.integer, dict(min=1, max=1 << MAX_ENUMERABLE_BINARY_UNITS)),
    "loglik_images": (_v.integer, dict(min=0)),
    "p_floor": (_v.real, dict(min=0, max=1, min_open=True, max_open=True)),
    "confidence": (_v.real, dict(min=0, max=1, min_open=True, max_open=True)),
}
"""One type-and-range rule per :class:`ChainDiagnosticsConfig` field."""


class ChainDiagnostics(NamedTuple):
    """Result of :func:`chain_diagnose` (a leading member axis from the ensemble version).

    Attributes:
      sigma, sigma_err: σ (eq. 21, nats per double step) and its batch-means error.
      sigma_plugin: σ without the log-mean bias correction.
      rb_ess_mean: mean Kish effective number of the ``K`` draws (trust σ if ``≫ 1``).
      hidden_tau, hidden_tau_err: decorrelation time of the hidden vector
        (:func:`ncl.trajectory.decorrelation_time`: the e-folding lag of the
        autocorrelation envelope, the sampled counterpart of eq. 23's ``−1/ln|λ₂|``;
        double steps) and its delete-one-chain jackknife error.
      hidden_tau_int_max: the largest finite integrated autocorrelation time of the
        hidden components (variance of means; near 0 for a chain that cycles).
      class_tau, class_tau_err: decorrelation time of the generated classes (their
        indicators pooled) and its jackknife error.
      class_tau_int: ``(Q,)`` integrated autocorrelation time of each class indicator
        (``nan`` for a class never generated).
      class_ess: effective sample size ``C T / (2 max(τ_int, 1/2))`` of the class indicator
        with the fewest.
      sample_freq: ``(Q,)`` class frequencies of the generated images.
      sample_kl, sample_kl_err: ``KL(P_D || P_samples)`` and its jackknife error.
      confident, confident_err: fraction classified with probability > ``confidence``.
      class_irreversibility, class_irreversibility_err: the class-pair KL (nats per double
        step; a lower bound on the visible chain's entropy production) and its error.
      loglik, loglik_heldout: eq. (7) given the RB occupancy (``nan`` when not
        enumerable or no held-out data).
    """

    sigma: Array
    sigma_err: Array
    sigma_plugin: Array
    rb_ess_mean: Array
    hidden_tau: Array
    hidden_tau_err: Array
    hidden_tau_int_max: Array
    class_tau: Array
    class_tau_err: Array
    class_tau_int: Array
    class_ess: Array
    sample_freq: Array
    sample_kl: Array
    sample_kl_err: Array
    confident: Array
    confident_err: Array
    class_irreversibility: Array
    class_irreversibility_err: Array
    loglik: Array
    loglik_heldout: Array


def enumerable(config: ModelConfig, max_states: int = 1 << 16) -> bool:
    """Whether the log-likelihood can enumerate the hidden states of ``config``."""
    if config.hidden == "binary":
        return config.n_hidden <= MAX_ENUMERABLE_BINARY_UNITS and 2 ** config.n_hidden <= max_states
    return config.n_hidden <= max_states


def _jackknife(per_chain_stat, C: int):
    """Delete-one-chain jackknife error of ``per_chain_stat(mask (C,)) -> scalar``."""
    loo = jax.vmap(lambda i: per_chain_stat(jnp.arange(C) != i))(jnp.arange(C))
    return jnp.sqrt((C - 1) / C * jnp.sum((loo - jnp.mean(loo)) ** 2))


def _class_pair_kl(counts: Array) -> Array:
    """``Σ_ij P_ij ln(P_ij / P_ji)`` from pair counts ``(Q, Q)`` with pseudo-count ½."""
    p = counts + 0.5
    p = p / jnp.sum(p)
    return jnp.sum(p * (jnp.log(p) - jnp.log(p.T)))


def _record_fn(params, center, classifier, config, track_occupancy: bool):
    def record(traj):
        x = traj.x                                                   # (T, C, D)
        probs = clf.predict_proba(classifier, x)                     # (T, C, Q)
        cls = jnp.argmax(probs, axis=-1).astype(jnp.int32)
        occ = None
        if track_occupancy:
            occ = jax.lax.map(lambda xt: jnp.sum(jnp.exp(
                log_abar_all_states(params, xt, center, config)), axis=0), x).sum(0)
        z = (jnp.argmax(traj.z, -1).astype(jnp.int32) if config.hidden == "onehot"
             else traj.z.astype(jnp.uint8))
        return cls, jnp.max(probs, axis=-1), occ, z
    return record


def _core(key, params, center, classifier, data, heldout, config: ModelConfig,
          cfg: ChainDiagnosticsConfig, p_data):
    C, T = cfg.n_chains, cfg.n_steps
    k_sig, k_init, k_burn, k_run = jax.random.split(key, 4)
    td = traj_lib.trajectory_diagnostics(
        k_sig, params, config, T, cfg.burn_in, C, cfg.rb_samples, center=center,
        bias_correction=cfg.bias_correction, n_batches=cfg.n_batches)

    # a second set of chains for the generated images: classes and occupancy
    D = params.w.shape[0]
    x0 = (jax.random.bits(k_init, (C * D,), jnp.uint32).reshape(C, D) >> 31).astype(jnp.float32)
    state = chain_lib.init(x0)
    seg = min(cfg.segment, T)
    n_burn = -(-cfg.burn_in // seg)
    if n_burn:
        state, _ = chain_lib.run_segments(jax.random.split(k_burn, n_burn), state, params,
                                          center, config, seg)
    n_seg = -(-T // seg)
    track = enumerable(config, cfg.max_states)
    _, (cls, pmax, occ, zc) = chain_lib.run_segments(
        jax.random.split(k_run, n_seg), state, params, center, config, seg,
        record=_record_fn(params, center, classifier, config, track))
    cls = cls.reshape(n_seg * seg, C)[:T]                            # (T, C)
    pmax = pmax.reshape(n_seg * seg, C)[:T]
    Q = classifier.b.shape[-1]

    onehot = jax.nn.one_hot(cls, Q, dtype=jnp.float32)               # (T, C, Q)
    iat = traj_lib.integrated_autocorrelation_time(onehot)
    finite = jnp.isfinite(iat.tau)
    # N / (2 τ_int) with τ_int floored at 1/2 (i.i.d.): an antithetic or cycling
    # indicator is not credited with more samples than were drawn
    ess = C * T / (2.0 * jnp.maximum(iat.tau, 0.5))
    class_ess = jnp.min(jnp.where(finite, ess, jnp.inf))
    dec = traj_lib.decorrelation_time(onehot)
    zc = zc.reshape((n_seg * seg,) + zc.shape[2:])[:T]
    zf = (jax.nn.one_hot(zc, config.n_hidden, dtype=jnp.float32) if config.hidden == "onehot"
          else zc.astype(jnp.float32))
    hdec = traj_lib.decorrelation_time(zf)

    per_chain_freq = jnp.mean(onehot, axis=0)                        # (C, Q)
    per_chain_conf = jnp.mean(pmax > cfg.confidence, axis=0)         # (C,)
    pairs = jnp.zeros((C, Q, Q), jnp.float32).at[
        jnp.arange(C)[None, :], cls[:-1], cls[1:]].add(1.0)          # (C, Q, Q)

    def kl_of(mask):
        f = jnp.sum(per_chain_freq * mask[:, None], 0) / jnp.sum(mask)
        return fidelity.class_fidelity_kl(f, p_data, cfg.p_floor)

    def conf_of(mask):
        return jnp.sum(per_chain_conf * mask) / jnp.sum(mask)

    def irr_of(mask):
        return _class_pair_kl(jnp.sum(pairs * mask[:, None, None], 0))

    full = jnp.ones((C,), bool)
    freq = jnp.mean(per_chain_freq, axis=0)

    if track:
        log_p_bar = jnp.log(jnp.sum(occ, axis=0) / (C * n_seg * seg))
        ll = log_likelihood_given_occupancy(params, data, log_p_bar, config)
        ll_h = (log_likelihood_given_occupancy(params, heldout, log_p_bar, config)
                if heldout is not None else jnp.float32(jnp.nan))
    else:
        ll = ll_h = jnp.float32(jnp.nan)
    s = td.sigma
    return ChainDiagnostics(
        sigma=s.sigma, sigma_err=s.sigma_err, sigma_plugin=s.sigma_plugin,
        rb_ess_mean=s.rb_ess_mean, hidden_tau=hdec.tau, hidden_tau_err=hdec.tau_err,
        hidden_tau_int_max=td.tau_int_max,
        class_tau=dec.tau, class_tau_err=dec.tau_err, class_tau_int=iat.tau,
        class_ess=class_ess, sample_freq=freq,
        sample_kl=kl_of(full), sample_kl_err=_jackknife(kl_of, C),
        confident=conf_of(full), confident_err=_jackknife(conf_of, C),
        class_irreversibility=irr_of(full), class_irreversibility_err=_jackknife(irr_of, C),
        loglik=ll, loglik_heldout=ll_h)


@functools.lru_cache(maxsize=16)
def _program(config: ModelConfig, cfg: ChainDiagnosticsConfig, ensemble: bool,
             has_heldout: bool):
    def one(key, params, center, classifier, data, heldout, p_data):
        return _core(key, params, center, classifier, data, heldout if has_heldout else None,
                     config, cfg, p_data)
    if not ensemble:
        return _compat.jit(one)

    def many(keys, params, centers, classifier, data, heldout, p_data):
        return jax.lax.map(lambda a: one(a[0], a[1], a[2], classifier, data, heldout, p_data),
                           (keys, params, centers))
    return _compat.jit(many)


def _prepare(config, classifier, data, labels, heldout, cfg):
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if not isinstance(cfg, ChainDiagnosticsConfig):
        raise TypeError(f"cfg must be a ChainDiagnosticsConfig, got {type(cfg).__name__}")
    if not isinstance(classifier, clf.ClassifierParams):
        raise TypeError("classifier must be a ncl.classifier.ClassifierParams (e.g. "
                        "ncl.classifier.load_default_classifier(range(10)))")
    from ncl.data import check_data
    data = check_data(data)
    n_pixels = int(classifier.W.shape[-2])
    if n_pixels != data.shape[1]:
        raise ValueError(f"classifier takes images of {n_pixels} pixels but the data have "
                         f"{data.shape[1]}; use a classifier trained on images like the data")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],):
        raise ValueError(f"labels must have shape ({data.shape[0]},) (one per image), got "
                         f"{labels.shape}")
    classes = np.asarray(classifier.classes)
    unknown = sorted(set(np.unique(labels).tolist()) - set(classes.tolist()))
    if unknown:
        raise ValueError(f"labels hold digits {unknown} that the classifier does not know "
                         f"(it knows {classes.tolist()}); use a classifier of those digits")
    p_data = np.array([np.mean(labels == c) for c in classes], np.float32)
    n = cfg.loglik_images or data.shape[0]
    x = jnp.asarray(data[:n], jnp.float32)
    h = None
    if heldout is not None:
        h = check_data(heldout, "heldout")
        if h.shape[1] != data.shape[1]:
            raise ValueError(f"heldout has {h.shape[1]} pixels, data {data.shape[1]}")
        h = jnp.asarray(h[:cfg.loglik_images or h.shape[0]], jnp.float32)
    return x, h, jnp.asarray(p_data)


def chain_diagnose(key: Array, params: Params, center: Array, config: ModelConfig, data,
                   labels, classifier: clf.ClassifierParams, heldout=None,
                   cfg: ChainDiagnosticsConfig = ChainDiagnosticsConfig()) -> ChainDiagnostics:
    """:class:`ChainDiagnostics` of one model from ``cfg.n_chains`` chains.

    Args:
      key: PRNG key.
      params, center, config: the model (``center (D,)``; binary ``L`` up to 64 and
        beyond, one-hot ``L`` of hundreds; the log-likelihood only where enumerable).
      data, labels: ``(N, D)`` binary training data and ``(N,)`` digit labels (``P_D``).
      classifier: a digit classifier knowing every label (e.g. the ten-digit one).
      heldout: optional ``(N_h, D)`` held-out data for ``loglik_heldout``.
      cfg: :class:`ChainDiagnosticsConfig`.
    """
    x, h, p_data = _prepare(config, classifier, data, labels, heldout, cfg)
    check_params(params, config, x.shape[1])
    fn = _program(config, cfg, False, h is not None)
    return fn(key, params, jnp.asarray(center, jnp.float32), classifier, x, h, p_data)


def chain_diagnose_ensemble(key: Array, params: Params, centers: Array, config: ModelConfig,
                            data, labels, classifier: clf.ClassifierParams, heldout=None,
                            cfg: ChainDiagnosticsConfig = ChainDiagnosticsConfig()
                            ) -> ChainDiagnostics:
    """:func:`chain_diagnose` of every member (``params`` and ``centers (E, D)`` with a
    leading member axis; member ``i`` uses ``jax.random.fold_in(key, i)``), as one
    compiled program; fields gain a leading ``(E,)`` axis."""
    x, h, p_data = _prepare(config, classifier, data, labels, heldout, cfg)
    D = check_params(params, config, x.shape[1], n_members=-1)
    E = int(params.w.shape[0])
    if tuple(jnp.shape(centers)) != (E, D):
        raise ValueError(f"centers must have shape ({E}, {D}) (one centering vector per "
                         f"member, e.g. state.center), got {tuple(jnp.shape(centers))}")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(E))
    fn = _program(config, cfg, True, h is not None)
    return fn(keys, params, jnp.asarray(centers, jnp.float32), classifier, x, h, p_data)


__all__ = ["ChainDiagnostics", "ChainDiagnosticsConfig", "chain_diagnose",
           "chain_diagnose_ensemble", "enumerable"]
