"""Nonequilibrium diagnostics from chain trajectories, for hidden spaces too large to
enumerate (paper Sect. IV B, eqs. 3, 21, 23).

:mod:`ncl.diagnostics` tabulates the latent transition matrix ``M`` (eq. 3) over all
``S`` hidden states; for ``L`` binary units ``S = 2**L`` and that stops at ``L ≈ 12``.
This module never forms ``M``: hidden states are bit vectors (or one-hot rows) and only
the entries of ``M`` that a trajectory actually visits are estimated.

Entropy production (eq. 21) along a trajectory. In the stationary state the
occupancy terms of eq. (21) cancel in expectation
(``Σ p(z) M(z→z') [ln p(z) − ln p(z')] = 0`` by stationarity), so

    ``σ = E_{(z, z') ~ p(z) M(z→z')} [ln M(z→z') − ln M(z'→z)]``,

an average over the observed transitions ``z(t) → z(t+1)``. Each needed entry is
Rao–Blackwellised, ``M(z→z') = E_{x~A(z,·)} Ā(x, z')`` (eq. 3), from ``K`` fresh draws
``x_k ~ A(z, ·)`` (independent of the chain), in log space:
``ln M̂ = logsumexp_k ln Ā(x_k, z') − ln K``. The log of a Monte-Carlo mean is biased
low, ``E ln M̂ = ln M − V/(2K) + O(K⁻²)`` with ``V = Var(Ā)/M²`` (Jensen); see
:func:`log_mean_exp` for the corrections (default: delete-one jackknife over the ``K``
samples). Self-transitions (``z' = z``) contribute exactly 0 and are not estimated.
The draws made for state ``z(t)`` serve both ``ln M(z(t)→z(t+1))`` and the reverse
entry ``ln M(z(t)→z(t−1))``, so each step costs ``K`` visible draws.
Standard error: batch means over each chain's terms (batches of all chains pooled);
a second error from the integrated autocorrelation time of the terms is returned as a
cross-check.

Integrated autocorrelation time (Sokal's automatic windowing, Madras & Sokal 1988):
``τ_int = 1/2 + Σ_{t=1}^{W} ρ(t)``, ``W`` the smallest lag with ``W ≥ c·τ_int(W)``
(``c = 5``); ``Var(mean) = 2 τ_int Var(f) / N``, ``ESS = N / (2 τ_int)``. For a single
eigenmode ``ρ(t) = λ^t``: ``τ_int = (1 + λ) / (2 (1 − λ))``, related to the paper's
``τ = −1/ln|λ₂|`` (eq. 23) by ``λ = e^{−1/τ}``.

:func:`trajectory_diagnostics` runs the chain (:func:`ncl.chain.sample_chain`) and
returns both for one model; ``jax.vmap`` it over ensemble members.

Limits. The Rao–Blackwell proposal is ``A(z, ·)``, not the posterior
``∝ A(z, x) Ā(x, z')``: when ``ln Ā(x, z')`` varies by many nats over ``x ~ A(z, ·)``
(large ``D`` and ``L`` binary models) one draw dominates, ``rb_ess_mean ≈ 1``, and no
log-mean correction rescues the estimate (D = 784, L = 64, weights ~ N(0, 0.1²):
``ess ≈ 1.2 / 1.7 / 2.6`` at ``K = 8 / 64 / 512`` and σ̂ does not settle). Trust σ̂
only where ``rb_ess_mean ≫ 1``. The IAT error bars assume a well-sampled observable:
indicators of rare states (fewer than about 10³ visits) get too-small errors.

All functions are pure and jittable (configs and sizes are static).

Layer: above :mod:`ncl.monitor` (needs only :mod:`ncl.model` and :mod:`ncl.chain`),
below :mod:`ncl.training`. Sizes as in :mod:`ncl.model` (``T`` steps, ``C`` chains,
``K`` RB draws per visited state).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ncl import chain as chain_lib
from ncl.model import (ModelConfig, Params, bernoulli_from_bits, bernoulli_thresholds,
                       check_params, hidden_logits, log_abar_from_logits, visible_logits)

Array = jax.Array

BIAS_CORRECTIONS = ("jackknife", "delta", "none")
CHUNK_ELEMENTS = 1 << 22
"""Default time chunks hold about this many float32 elements of visible draws
(``chunk · C · K · (D + L)``, 16 MiB per model)."""


# ----------------------------------------------------------------------------- kernels

def _bits(key: Array, shape: tuple[int, ...]) -> Array:
    """uint32 random bits, drawn flat and reshaped (XLA compiles multi-dimensional
    ``jax.random.bits`` with partitionable Threefry several times slower on CPU)."""
    return jax.random.bits(key, (math.prod(shape),), jnp.uint32).reshape(shape)


def sample_visible_logits(key: Array, params: Params, center: Array, z: Array,
                          n_samples: int) -> Array:
    """Hidden logits ``g(x_k)`` of ``K = n_samples`` draws ``x_k ~ A(z, ·)`` (eq. 10).

    ``z (..., L)`` → ``(..., K, L)``. Draws are exact to ``2**-32`` (32-bit thresholds);
    the ``(..., K, D)`` visible draws are an intermediate only.
    """
    thr, flip = bernoulli_thresholds(visible_logits(params, z))          # (..., D)
    bits = _bits(key, z.shape[:-1] + (n_samples, thr.shape[-1]))
    x = bernoulli_from_bits(bits, thr[..., None, :], flip[..., None, :])  # (..., K, D)
    return hidden_logits(params, x, center)


def log_mean_exp(log_a: Array, bias_correction: str = "jackknife"
                 ) -> tuple[Array, Array, Array]:
    """Log of a Monte-Carlo mean, ``ln((1/K) Σ_k a_k)`` from ``log_a (..., K)``, debiased.

    The plug-in ``ln ā`` has bias ``−V/(2K) + O(K⁻²)``, ``V = Var(a)/E(a)²``.

    * ``"jackknife"`` (default): ``K ln ā − (K−1)/K Σ_j ln ā_{−j}`` with the
      leave-one-out log-means ``ln ā_{−j}`` (``O(K)``, no cancellation). Removes
      the ``1/K`` term exactly, needs no variance model, and is the smallest residual
      bias in the tests; its correction is unbounded, so when one draw dominates
      (``ess ≈ 1``) it is itself noisy.
    * ``"delta"``: ``ln ā + (r − 1) / (2 (K − 1))``, ``r = mean(a²)/ā² ∈ [1, K]`` (the
      delta method with the unbiased sample variance); bounded (at most ½ nat),
      leaves an ``O(K⁻²)`` bias.
    * ``"none"``: the plug-in.

    Returns ``(corrected, plug-in, ess)``, each ``(...)``; ``ess = (Σa)²/Σa² ∈ [1, K]``
    is the effective number of draws (Kish): reliable estimates need ``ess ≫ 1``.
    """
    if bias_correction not in BIAS_CORRECTIONS:
        raise ValueError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got "
                         f"{bias_correction!r}")
    K = log_a.shape[-1]
    lse = jax.nn.logsumexp(log_a, axis=-1)
    plugin = lse - math.log(K)
    lse2 = jax.nn.logsumexp(2.0 * log_a, axis=-1)
    ess = jnp.exp(2.0 * lse - lse2)
    if bias_correction == "none" or K < 2:
        return plugin, plugin, ess
    if bias_correction == "delta":
        r = K / ess
        return plugin + (r - 1.0) / (2.0 * (K - 1)), plugin, ess
    # leave-one-out sums: S − a_j in max-shifted linear space (S − a_j ≥ max a, so no
    # cancellation) except for the largest draw, whose LOO is a logsumexp of the others
    m = jnp.max(log_a, axis=-1, keepdims=True)
    a = jnp.exp(log_a - m)
    is_max = jnp.arange(K) == jnp.argmax(log_a, axis=-1)[..., None]
    rest = jnp.sum(a, axis=-1, keepdims=True) - a
    loo_max = jax.nn.logsumexp(jnp.where(is_max, -jnp.inf, log_a), axis=-1, keepdims=True)
    loo = jnp.where(is_max, loo_max, m + jnp.log(jnp.where(is_max, 1.0, rest)))
    loo = loo - math.log(K - 1)                                         # (..., K)
    return K * plugin - (K - 1) * jnp.mean(loo, axis=-1), plugin, ess


def log_transition_rb(key: Array, params: Params, center: Array, config: ModelConfig,
                      z_from: Array, z_to: Array, n_samples: int,
                      bias_correction: str = "jackknife") -> tuple[Array, Array, Array]:
    """Rao–Blackwellised ``ln M(z_from → z_to)`` (eq. 3) for given pairs of states.

    ``M(z→z') = E_{x~A(z,·)} Ā(x, z')`` from ``K = n_samples`` draws, combined by
    :func:`log_mean_exp`. ``z_from, z_to (..., L)`` float rows → ``(corrected, plug-in,
    ess)``, each ``(...)``. Memory ``O(... · K · (D + L))``.
    """
    g = sample_visible_logits(key, params, center, z_from, n_samples)    # (..., K, L)
    return log_mean_exp(log_abar_from_logits(g, z_to[..., None, :], config), bias_correction)


# ----------------------------------------------------------------------------- σ

class SigmaEstimate(NamedTuple):
    """Entropy production rate (eq. 21) from a trajectory. All fields are scalars.

    Attributes:
      sigma: bias-corrected estimate (nats per double step).
      sigma_err: batch-means standard error (``n_batches`` per chain, pooled).
      sigma_plugin: the same without the log-mean bias correction.
      sigma_err_iat: ``sqrt(2 τ_int Var(s) / N)`` from the IAT of the per-transition terms
        ``s`` (cross-check of ``sigma_err``). Near reversibility it is too large: the
        exact terms telescope (``ln M(z→z') − ln M(z'→z) = ln p̄(z') − ln p̄(z)``),
        their autocorrelations sum to ``−1/2``, and Sokal's window does not resolve
        that; batch means do (tied-weight RBMs: ``sigma_err`` ≈ ``sigma_err_iat`` / 3).
      terms_tau_int: that IAT (double steps).
      n_transitions: observed transitions used, ``C · (T − 1)``.
      n_batches: batches in ``sigma_err``.
      self_fraction: fraction of transitions with ``z(t+1) = z(t)`` (exact 0 terms).
      rb_ess_mean, rb_ess_min: Kish effective number of the ``K`` draws over the
        estimated entries (not self-transitions; ``nan`` if there are none). Values near
        1 mean the log-mean is dominated by one draw: raise ``K``.
    """

    sigma: Array
    sigma_err: Array
    sigma_plugin: Array
    sigma_err_iat: Array
    terms_tau_int: Array
    n_transitions: Array
    n_batches: Array
    self_fraction: Array
    rb_ess_mean: Array
    rb_ess_min: Array


def _terms_chunk(key, params, center, config, carry, z, n_samples, bias_correction):
    """Per-transition terms for one time chunk ``z (T, C, L)``, given the previous state
    and its draws ``carry = (z_prev (C, L), g_prev (C, K, L))``.

    Transition ``i`` is ``a_i → b_i`` with ``b = z``, ``a = (z_prev, z[:-1])``. Returns
    the new carry and ``(s, s_plugin, ess, same)``, each ``(T, C)``.
    """
    z_prev, g_prev = carry
    g_b = sample_visible_logits(key, params, center, z, n_samples)     # (T, C, K, L)
    a = jnp.concatenate([z_prev[None], z[:-1]], 0)
    g_a = jnp.concatenate([g_prev[None], g_b[:-1]], 0)
    fwd = log_mean_exp(log_abar_from_logits(g_a, z[:, :, None, :], config), bias_correction)
    rev = log_mean_exp(log_abar_from_logits(g_b, a[:, :, None, :], config), bias_correction)
    same = jnp.all(a == z, axis=-1)
    s = jnp.where(same, 0.0, fwd[0] - rev[0])
    s_plug = jnp.where(same, 0.0, fwd[1] - rev[1])
    ess = jnp.minimum(fwd[2], rev[2])
    return (z[-1], g_b[-1]), (s, s_plug, ess, same)


def _summarise_sigma(s, s_plug, ess, same, n_batches: int) -> SigmaEstimate:
    """``s, s_plug, ess, same (N, C)``: the valid transitions of ``C`` chains."""
    N, C = s.shape
    n_batches = max(1, min(n_batches, N))
    blen = N // n_batches
    bm = jnp.mean(s[N - n_batches * blen:].reshape(n_batches, blen, C), axis=1).reshape(-1)
    B = bm.shape[0]
    err = jnp.std(bm, ddof=1) / math.sqrt(B) if B > 1 else jnp.array(jnp.nan)
    iat = integrated_autocorrelation_time(s)
    var = jnp.var(s)
    err_iat = jnp.sqrt(2.0 * iat.tau * var / (N * C))
    est = ~same
    n_est = jnp.sum(est)
    ess_mean = jnp.sum(jnp.where(est, ess, 0.0)) / n_est
    ess_min = jnp.where(n_est > 0, jnp.min(jnp.where(est, ess, jnp.inf)), jnp.nan)
    return SigmaEstimate(jnp.mean(s), err, jnp.mean(s_plug), err_iat, iat.tau,
                         jnp.asarray(N * C), jnp.asarray(B), jnp.mean(same.astype(jnp.float32)),
                         ess_mean, ess_min)


def _check_sizes(n_samples, bias_correction):
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"rb_samples (K) must be a positive int, got {n_samples!r}")
    if bias_correction not in BIAS_CORRECTIONS:
        raise ValueError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got "
                         f"{bias_correction!r}")
    if bias_correction != "none" and n_samples < 2:
        raise ValueError(f"bias_correction={bias_correction!r} needs rb_samples >= 2")


def default_chunk(n_chains: int, n_samples: int, n_visible: int, n_hidden: int) -> int:
    """Time steps per chunk so that one chunk's draws hold about :data:`CHUNK_ELEMENTS`."""
    return max(1, CHUNK_ELEMENTS // max(1, n_chains * n_samples * (n_visible + n_hidden)))


@functools.partial(jax.jit, static_argnames=("config", "n_samples", "bias_correction",
                                             "n_batches", "chunk"))
def sigma_from_trajectory(key: Array, params: Params, center: Array, config: ModelConfig,
                          z: Array, n_samples: int = 64, bias_correction: str = "jackknife",
                          n_batches: int = 16, chunk: int | None = None) -> SigmaEstimate:
    """Entropy production rate (eq. 21) from a recorded hidden trajectory.

    ``σ̂ = mean_t [ln M̂(z(t)→z(t+1)) − ln M̂(z(t+1)→z(t))]`` over all ``C (T − 1)``
    transitions, each entry Rao–Blackwellised with ``K = n_samples`` fresh draws and
    :func:`log_mean_exp` (``bias_correction``). Assumes the chains are stationary
    (discard a burn-in first).

    Args:
      key: PRNG key (for the draws ``x_k``; the trajectory is given).
      params, center, config: the model (``center (D,)``, eq. 17).
      z: ``(T, C, L)`` hidden states (``ncl.chain.Trajectory.z``: bits or one-hot rows),
        or ``(T, L)`` for one chain. Any ``L`` (binary ``L = 64`` is fine).
      n_samples: K draws per visited state.
      bias_correction: ``"jackknife"`` (default), ``"delta"`` or ``"none"``.
      n_batches: batches per chain for the batch-means error.
      chunk: time steps per ``lax.scan`` iteration (memory ``O(chunk · C · K · (D + L))``);
        default from :data:`CHUNK_ELEMENTS`.
    Returns:
      :class:`SigmaEstimate`.
    """
    check_params(params, config)
    _check_sizes(n_samples, bias_correction)
    z = jnp.asarray(z, jnp.float32)
    if z.ndim == 2:
        z = z[:, None]
    if z.ndim != 3 or z.shape[-1] != config.n_hidden or z.shape[0] < 2:
        raise ValueError(f"z must be (T, C, L) or (T, L) with L = {config.n_hidden} and "
                         f"T >= 2, got shape {tuple(z.shape)}")
    T, C, L = z.shape
    D = params.w.shape[0]
    chunk = min(T, chunk or default_chunk(C, n_samples, D, L))
    n_chunks = -(-T // chunk)
    zs = jnp.pad(z, ((0, n_chunks * chunk - T), (0, 0), (0, 0))).reshape(n_chunks, chunk, C, L)

    def body(carry, inp):
        k, zc = inp
        return _terms_chunk(k, params, center, config, carry, zc, n_samples, bias_correction)

    carry0 = (jnp.zeros((C, L), jnp.float32), jnp.zeros((C, n_samples, L), jnp.float32))
    _, out = jax.lax.scan(body, carry0, (jax.random.split(key, n_chunks), zs))
    # transition 0 has no predecessor (placeholder carry): keep transitions 1..T−1
    s, s_plug, ess, same = (o.reshape(n_chunks * chunk, C)[1:T] for o in out)
    return _summarise_sigma(s, s_plug, ess, same, n_batches)


# ----------------------------------------------------------------------------- IAT

class IATResult(NamedTuple):
    """Integrated autocorrelation time of each component of an observable.

    Every field has the observable's component shape (``()`` for a scalar).

    Attributes:
      tau: ``τ_int = 1/2 + Σ_{t=1}^{W} ρ(t)`` (double steps); ``nan`` for a constant series.
      tau_err: Madras–Sokal standard error ``τ · sqrt(2 (2W + 1) / N)``, ``N = C·T``
        (derived for Gaussian processes: too small for indicators of rare states).
      tau_err_jackknife: delete-one-chain jackknife standard error (no Gaussian
        assumption; ``nan`` for one chain, noisy for few chains).
      window: ``W``.
      ess: effective sample size ``N / (2 τ)``.
      converged: the window condition ``W ≥ c τ`` was met within the series and
        ``T ≥ min_length · τ`` (otherwise run longer: ``tau`` is then a lower bound).
    """

    tau: Array
    tau_err: Array
    tau_err_jackknife: Array
    window: Array
    ess: Array
    converged: Array


def _chain_autocovariance(y: Array) -> Array:
    """Per-chain autocovariance ``(1/T) Σ_s ỹ(s) ỹ(s+t)`` about the grand mean, by FFT
    (zero-padded): ``y (T, C)`` → ``(T, C)``, lags ``0..T−1``."""
    T = y.shape[0]
    y = y - jnp.mean(y)
    n = 1 << (2 * T - 1).bit_length()
    f = jnp.fft.rfft(y, n=n, axis=0)
    return jnp.fft.irfft(f * jnp.conj(f), n=n, axis=0)[:T] / T


def autocorrelation(y: Array) -> Array:
    """Normalised autocorrelation ``ρ(t)``, ``t = 0..T−1``, of ``y (T, C)`` (C chains).

    Deviations from the grand mean over all chains; the autocovariance
    ``(1/T) Σ_s ỹ(s) ỹ(s+t)`` is averaged over chains and divided by its lag-0 value.
    → ``(T,)`` (``nan`` if ``y`` is constant).
    """
    acov = jnp.mean(_chain_autocovariance(y), axis=1)
    return jnp.where(jnp.all(y == y[0, 0]), jnp.nan, acov / acov[0])


def _window(rho: Array, c: float) -> tuple[Array, Array, Array]:
    """Sokal's window on ``rho (T,)``: ``(τ_int, W, found)``."""
    T = rho.shape[0]
    tau_w = 0.5 + jnp.cumsum(rho[1:])                                  # τ(W), W = 1..T−1
    ok = jnp.arange(1, T, dtype=rho.dtype) >= c * tau_w
    found = jnp.any(ok)
    iw = jnp.where(found, jnp.argmax(ok), T - 2)
    return tau_w[iw], (iw + 1).astype(jnp.int32), found


def _iat_component(y: Array, c: float, min_length: float) -> IATResult:
    """:class:`IATResult` of one scalar observable ``y (T, C)``."""
    T, C = y.shape
    acov = _chain_autocovariance(y)                                    # (T, C)
    const = jnp.all(y == y[0, 0])
    tot = jnp.sum(acov, axis=1)
    tau, W, found = _window(tot / tot[0], c)
    tau = jnp.where(const, jnp.nan, tau)
    err = tau * jnp.sqrt(2.0 * (2.0 * W + 1.0) / (T * C))
    if C > 1:
        loo = tot[:, None] - acov                                      # (T, C): chain c out
        tau_loo = jax.vmap(lambda r: _window(r, c)[0], in_axes=1)(loo / loo[0])
        jk = jnp.sqrt((C - 1) / C * jnp.sum((tau_loo - jnp.mean(tau_loo)) ** 2))
    else:
        jk = jnp.array(jnp.nan, jnp.float32)
    conv = found & (T >= min_length * tau)
    return IATResult(tau, err, jnp.where(const, jnp.nan, jk), W, T * C / (2.0 * tau), conv)


@functools.partial(jax.jit, static_argnames=("c", "min_length"))
def _iat_all(flat: Array, c: float, min_length: float) -> IATResult:
    return jax.lax.map(lambda y: _iat_component(y, c, min_length), flat)


def integrated_autocorrelation_time(series: Array, c: float = 5.0,
                                    min_length: float = 50.0) -> IATResult:
    """Integrated autocorrelation time by Sokal's automatic windowing.

    ``τ_int = 1/2 + Σ_{t=1}^{W} ρ(t)`` (so ``Var(mean) ≈ 2 τ_int Var/N`` and i.i.d. gives
    ``1/2``), ``W`` the smallest lag with ``W ≥ c · τ_int(W)`` (Sokal 1997; ``c = 5``),
    ``ρ`` from :func:`autocorrelation` (chains pooled), error by Madras & Sokal (1988)
    and by a delete-one-chain jackknife. For one eigenmode ``ρ(t) = λ^t`` it gives
    ``(1 + λ)/(2(1 − λ))``; for an AR(1) series ``(1 + φ)/(2(1 − φ))``. The window
    truncates ``Σ_{t>W} ρ(t)``: small unless the observable has a slow mode of small
    weight (then ``τ_int`` is underestimated; raise ``c``). Works for nonreversible
    chains (oscillating ``ρ``), unlike Geyer's initial-sequence estimators.

    Args:
      series: ``(T,)`` one chain, ``(T, C)`` C chains, or ``(T, C, *obs)`` a vector (or
        array) observable; time first, chains second (the layout of
        :class:`ncl.chain.Trajectory`). Components are processed one at a time
        (``lax.map``), so memory is ``O(C · T)`` beyond the input.
      c: window constant.
      min_length: ``converged`` requires ``T ≥ min_length · τ``.
    Returns:
      :class:`IATResult` with fields of shape ``obs`` (``()`` for ``(T,)``/``(T, C)``).
    """
    series = jnp.asarray(series, jnp.float32)
    if series.ndim == 1:
        series = series[:, None]
    if series.ndim < 2 or series.shape[0] < 3:
        raise ValueError(f"series must be (T,), (T, C) or (T, C, ...) with T >= 3, got "
                         f"shape {tuple(series.shape)}")
    T, C = series.shape[:2]
    obs = series.shape[2:]
    flat = jnp.moveaxis(series.reshape(T, C, -1), -1, 0)                # (m, T, C)
    out = _iat_all(flat, float(c), float(min_length))
    return IATResult(*(o.reshape(obs) for o in out))


def effective_sample_size(series: Array, c: float = 5.0) -> Array:
    """``N / (2 τ_int)`` per component (see :func:`integrated_autocorrelation_time`)."""
    return integrated_autocorrelation_time(series, c).ess


class DecorrelationResult(NamedTuple):
    """Result of :func:`decorrelation_time` (scalars, except ``rho``).

    Attributes:
      tau: e-folding time of the correlation envelope (double steps): the lag where
        ``max_{s ≥ t} ρ(s)`` falls to ``1/e`` (log-linear interpolation); ``inf`` if it
        does not within ``max_lag``.
      tau_err: delete-one-chain jackknife error (``nan`` for one chain).
      reached: whether the envelope fell below ``1/e`` within ``max_lag``.
      rho: ``(max_lag + 1,)`` the lagged canonical correlation ``ρ(0..max_lag)``.
    """

    tau: Array
    tau_err: Array
    reached: Array
    rho: Array


def _envelope_time(rho: Array) -> tuple[Array, Array]:
    """e-folding lag of ``max_{s>=t} |rho(s)|`` for ``rho (n,)`` with ``rho[0] = 1``."""
    env = jax.lax.cummax(jnp.abs(rho), axis=0, reverse=True)
    below = env < math.exp(-1.0)
    reached = jnp.any(below)
    t1 = jnp.maximum(jnp.argmax(below), 1)
    e0, e1 = env[t1 - 1], jnp.maximum(env[t1], 1e-30)
    frac = (jnp.log(e0) + 1.0) / jnp.maximum(jnp.log(e0) - jnp.log(e1), 1e-12)
    tau = (t1 - 1).astype(jnp.float32) + jnp.clip(frac, 0.0, 1.0)
    return jnp.where(reached, tau, jnp.inf), reached


def _lagged_correlation(y: Array, n: int, rank_tol: float = 1e-6) -> Array:
    """``ρ(t)``, ``t = 0..n``: the largest singular value of the whitened lagged
    cross-covariance ``W C(t) W`` of ``y (T, C, m)`` (``C(t) = E ỹ(s) ỹ(s+t)ᵀ`` pooled over
    chains, ``W = C(0)^{-1/2}`` on its non-null eigenspace: indicators that sum to 1 are
    fine). ``ρ(0) = 1``."""
    T, C, m = y.shape
    y = y - jnp.mean(y, axis=(0, 1))
    c0 = jnp.einsum("tci,tcj->ij", y, y) / (T * C)
    ev, U = jnp.linalg.eigh(c0)
    keep = ev > rank_tol * jnp.max(ev)
    W = (U * jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, ev, 1.0)), 0.0)) @ U.T
    yw = y @ W                                                            # (T, C, m)

    def at(t):
        a = jax.lax.dynamic_slice_in_dim(yw, 0, T - n, axis=0)
        b = jax.lax.dynamic_slice_in_dim(yw, t, T - n, axis=0)
        ct = jnp.einsum("tci,tcj->ij", a, b) / ((T - n) * C)
        return jnp.linalg.svd(ct, compute_uv=False)[0]
    return jax.lax.map(at, jnp.arange(n + 1))


@functools.partial(jax.jit, static_argnames=("max_lag",))
def decorrelation_time(series: Array, max_lag: int | None = None) -> DecorrelationResult:
    """Decorrelation time of a chain observable: the paper's ``τ = −1/ln|λ₂|`` (eq. 23)
    measured from samples, for chains too large to diagonalise.

    ``ρ(t)`` is the largest canonical correlation between the observable now and ``t``
    double steps later (the top singular value of the whitened lagged cross-covariance
    matrix of its components; for indicators of all states of a Markov chain it decays
    as ``|λ₂|^t``), and ``τ`` is where the envelope ``max_{s ≥ t} ρ(s)`` crosses ``1/e``.
    Cross-covariances matter: a chain that cycles through its states keeps its phase
    in ``Cov(1[z(0) = j], 1[z(t) = k])`` for ``j ≠ k`` while every diagonal term has
    already decayed. For a scalar AR(1) it returns ``−1/ln|φ|``, for a rotating
    two-dimensional AR ``−1/ln|λ|``. Unlike :func:`integrated_autocorrelation_time`
    (the variance of a mean, near 0 for a chain that cycles deterministically), it
    measures how long the chain remembers its state. Lags use the first ``T − max_lag``
    origins of every chain.

    Args:
      series: ``(T,)``, ``(T, C)`` or ``(T, C, *obs)`` (time first, chains second).
      max_lag: largest lag examined (default ``T // 4``).
    Returns:
      :class:`DecorrelationResult`.
    """
    series = jnp.asarray(series, jnp.float32)
    if series.ndim == 1:
        series = series[:, None]
    if series.ndim < 2 or series.shape[0] < 8:
        raise ValueError(f"series must be (T,), (T, C) or (T, C, ...) with T >= 8, got "
                         f"shape {tuple(series.shape)}")
    T, C = series.shape[:2]
    n = min(T - 2, max_lag or T // 4)
    y = series.reshape(T, C, -1)
    const = jnp.all(jnp.var(y, axis=(0, 1)) == 0)
    rho = _lagged_correlation(y, n)
    tau, reached = _envelope_time(rho)
    if C > 1:
        tau_loo = jax.lax.map(
            lambda i: _envelope_time(_lagged_correlation(
                jnp.delete(y, i, axis=1, assume_unique_indices=True), n))[0], jnp.arange(C))
        ok = jnp.all(jnp.isfinite(tau_loo))
        jk = jnp.sqrt((C - 1) / C * jnp.sum((tau_loo - jnp.mean(tau_loo)) ** 2))
        jk = jnp.where(ok, jk, jnp.inf)
    else:
        jk = jnp.array(jnp.nan, jnp.float32)
    return DecorrelationResult(jnp.where(const, jnp.nan, tau), jnp.where(const, jnp.nan, jk),
                               reached & ~const, rho)


# ----------------------------------------------------------------------------- driver

class TrajectoryDiagnostics(NamedTuple):
    """Result of :func:`trajectory_diagnostics` (add a leading member axis under vmap).

    Attributes:
      sigma: :class:`SigmaEstimate` of eq. (21).
      hidden_iat: :class:`IATResult` of the hidden vector, shape ``(L,)``: each bit
        (binary) or each one-hot indicator ``[z = e_α]``.
      tau_int_max: the largest finite component ``τ_int`` (a scalar summary).
    """

    sigma: SigmaEstimate
    hidden_iat: IATResult
    tau_int_max: Array


def _initial_visible(key, n_chains, n_visible):
    """Uniformly random visible states ``(C, D)`` (the burn-in forgets them)."""
    bits = _bits(key, (n_chains, n_visible))
    return (bits >> 31).astype(jnp.float32)


def _codes(z, config):
    if config.hidden == "onehot":
        return jnp.argmax(z, axis=-1).astype(jnp.int32)
    return z.astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames=(
    "model_config", "n_steps", "burn_in", "n_chains", "rb_samples", "bias_correction",
    "n_batches", "segment"))
def trajectory_diagnostics(key: Array, params: Params, model_config: ModelConfig,
                           n_steps: int, burn_in: int, n_chains: int, rb_samples: int,
                           *, center: Array, x0: Array | None = None,
                           bias_correction: str = "jackknife", n_batches: int = 16,
                           segment: int | None = None) -> TrajectoryDiagnostics:
    """Run ``n_chains`` chains of one model and estimate σ (eq. 21) and the IAT.

    The chains (:func:`ncl.chain.sample_chain`, in segments of ``segment`` double steps
    inside ``lax.scan``) are burnt in for ``burn_in`` double steps, then ``n_steps``
    hidden states each are recorded; every segment's transitions are scored at once
    (:func:`sigma_from_trajectory`'s estimator), so the full ``(T, C, L)`` float
    trajectory is never held: memory is ``O(segment · C · K · (D + L))`` plus the
    recorded hidden codes (``T · C · L`` bytes binary, ``4 T C`` one-hot) for the IAT.

    Args:
      key: PRNG key.
      params: one model's :class:`ncl.model.Params`.
      model_config: its :class:`ncl.model.ModelConfig` (binary L up to 64 and beyond,
        one-hot L of hundreds).
      n_steps: recorded hidden states per chain (``n_steps − 1`` transitions each).
      burn_in: double steps discarded first (rounded up to a multiple of ``segment``).
      n_chains: independent chains ``C``.
      rb_samples: ``K`` draws ``x_k ~ A(z, ·)`` per visited state.
      center: ``(D,)`` centering vector of eq. (17) (keyword; the model's data mean, or
        zeros without centering).
      x0: ``(C, D)`` initial visible states; default uniformly random bits.
      bias_correction, n_batches: see :func:`sigma_from_trajectory`.
      segment: double steps per chain call; default from :data:`CHUNK_ELEMENTS`.
    Returns:
      :class:`TrajectoryDiagnostics`. vmappable: ``jax.vmap(lambda k, p, c:
      trajectory_diagnostics(k, p, cfg, T, B, C, K, center=c))(keys, params, centers)``.
    """
    D = check_params(params, model_config)
    _check_sizes(rb_samples, bias_correction)
    for name, v, lo in (("n_steps", n_steps, 2), ("burn_in", burn_in, 0),
                        ("n_chains", n_chains, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if tuple(jnp.shape(center)) != (D,):
        raise ValueError(f"center must have shape ({D},), got {tuple(jnp.shape(center))}")
    C, L, K = n_chains, model_config.n_hidden, rb_samples
    seg = min(n_steps, segment or default_chunk(C, K, D, L))
    n_seg = -(-n_steps // seg)
    k_init, k_burn, k_run = jax.random.split(key, 3)
    if x0 is None:
        x = _initial_visible(k_init, C, D)
    else:
        x = jnp.asarray(x0, jnp.float32)
        if x.shape != (C, D):
            raise ValueError(f"x0 must have shape ({C}, {D}), got {tuple(x.shape)}")

    def run(k, x):
        st, traj = chain_lib.sample_chain(k, chain_lib.ChainState(x), params, center,
                                          model_config, seg)
        return st.x, traj.z

    n_burn = -(-burn_in // seg)
    if n_burn:
        x = chain_lib.run_segments(jax.random.split(k_burn, n_burn), chain_lib.ChainState(x),
                                   params, center, model_config, seg)[0].x

    def body(carry, k):
        x, zc = carry
        k1, k2 = jax.random.split(k)
        x, z = run(k1, x)                                                  # z (seg, C, L)
        zc, terms = _terms_chunk(k2, params, center, model_config, zc, z, K, bias_correction)
        return (x, zc), (terms, _codes(z, model_config))

    carry0 = (x, (jnp.zeros((C, L), jnp.float32), jnp.zeros((C, K, L), jnp.float32)))
    _, (terms, codes) = jax.lax.scan(body, carry0, jax.random.split(k_run, n_seg))
    # transition 0 of the first segment has no predecessor; keep 1..n_steps−1
    s, s_plug, ess, same = (t.reshape(n_seg * seg, C)[1:n_steps] for t in terms)
    sigma = _summarise_sigma(s, s_plug, ess, same, n_batches)
    codes = codes.reshape((n_seg * seg,) + codes.shape[2:])[:n_steps]

    def component(j):
        y = (codes == j) if model_config.hidden == "onehot" else codes[:, :, j]
        return _iat_component(y.astype(jnp.float32), 5.0, 50.0)

    iat = jax.lax.map(component, jnp.arange(L))
    tau_max = jnp.max(jnp.where(jnp.isfinite(iat.tau), iat.tau, -jnp.inf))
    return TrajectoryDiagnostics(sigma, iat, tau_max)


__all__ = [
    "BIAS_CORRECTIONS", "CHUNK_ELEMENTS", "DecorrelationResult", "IATResult", "SigmaEstimate",
    "TrajectoryDiagnostics", "autocorrelation", "decorrelation_time", "default_chunk",
    "effective_sample_size",
    "integrated_autocorrelation_time", "log_mean_exp",
    "log_transition_rb", "sample_visible_logits", "sigma_from_trajectory",
    "trajectory_diagnostics",
]
