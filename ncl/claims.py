"""The paper's claims about an ensemble (Sect. IV, Figs. 2-4), each tested as stated.

A leaf (NumPy and scipy.stats only); the report (:mod:`ncl.report`) renders what these
functions return. Every test, its direction and its decision rule are fixed here, before
any ensemble is looked at:

* a claim is **supported** when its one-sided test rejects the null hypothesis of "no
  effect" at level ``ALPHA`` = 0.05 in the paper's direction, **contradicted** when the
  same test in the opposite direction rejects it, and otherwise **undecided at this
  ensemble size**, with the number of seeds that would decide it if the effect is as large
  as measured (80 % power: ``n · ((z_α + z_0.8) / z)²`` for the observed normal score
  ``z``; none when the effect points the other way);
* every statistic comes with a 95 % bootstrap confidence interval over seeds
  (``scipy.stats.bootstrap``, BCa, 2000 resamples, fixed seed, so a report is
  reproducible); shares of models come with Wilson intervals (``scipy.stats.binomtest``);
* a claim that cannot be tested at all (too few models, one likelihood level, no model
  below a threshold) is undecided, with the reason.

The statistics: Kendall's τ_b between the level index and σ (an ordered trend test, the
rank-correlation form of the Jonckheere-Terpstra test), the Mann-Whitney U test (its
statistic reported as the probability of superiority ``U / (n₁ n₂)``), Spearman's ρ.
"""
from __future__ import annotations

import inspect
import math
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER_Z = 0.8416212335729143          # z_0.8: 80 % power
CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LOW_KL = 1e-2                         # "low KL" (nats): the primary threshold
TAU_PAPER = 50.0                      # "τ up to about 50 double steps"
TAU_FACTOR = 2.0                      # "about": within a factor of 2
SUPPORTED, CONTRADICTED, UNDECIDED = ("supported", "contradicted",
                                      "undecided at this ensemble size")


class Verdict(NamedTuple):
    """One claim tested on one ensemble with one estimator of M."""

    claim: str                      # the paper's statement
    test: str                       # the test, its direction and its groups
    statistic_name: str
    statistic: float
    interval: tuple                 # 95 % bootstrap interval of the statistic
    p_value: float                  # one-sided, in the paper's direction
    verdict: str                    # SUPPORTED, CONTRADICTED or UNDECIDED
    seeds_to_decide: int | None     # for an undecided verdict
    n_models: int
    exceptions: tuple = ()          # seeds that go against the claim
    note: str = ""


def _bootstrap_kwargs() -> dict:
    params = inspect.signature(stats.bootstrap).parameters
    key = "rng" if "rng" in params else "random_state"
    return {key: np.random.default_rng(BOOTSTRAP_SEED)}


def bootstrap_interval(data: Sequence[np.ndarray], statistic: Callable,
                       paired: bool = True, vectorized: bool = False) -> tuple[float, float]:
    """95 % BCa bootstrap interval of ``statistic(*data)`` over models (``(nan, nan)``
    when fewer than 3 models or the resampled statistic is degenerate; percentile
    interval when BCa is undefined). ``vectorized``: ``statistic(*data, axis=-1)``
    handles a batch of resamples at once."""
    data = tuple(np.asarray(d, np.float64) for d in data)
    if min(d.size for d in data) < 3:
        return (math.nan, math.nan)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = stats.bootstrap(data, statistic, paired=paired, vectorized=vectorized,
                                      n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE,
                                      method=method, batch=200, **_bootstrap_kwargs())
            except (ValueError, FloatingPointError):
                continue
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return (lo, hi)
    return (math.nan, math.nan)


def spearman_rho(x, y, axis: int = -1):
    """Spearman's ρ along ``axis`` (vectorized; average ranks for ties)."""
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(rx * ry, axis=axis) / np.sqrt(np.sum(rx * rx, axis=axis)
                                                    * np.sum(ry * ry, axis=axis))


def kendall_tau_b(x, y, axis: int = -1):
    """Kendall's τ_b along ``axis`` (vectorized): ``Σ sgn(Δx) sgn(Δy) / sqrt(Σ sgn(Δx)²
    Σ sgn(Δy)²)`` over pairs, which is τ_b's tie correction."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    dx = np.sign(x[..., :, None] - x[..., None, :])
    dy = np.sign(y[..., :, None] - y[..., None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(dx * dy, axis=(-2, -1)) / np.sqrt(
            np.sum(dx * dx, axis=(-2, -1)) * np.sum(dy * dy, axis=(-2, -1)))


def superiority(a, b, axis: int = -1):
    """``P(A > B) + ½ P(A = B)`` = ``U_A / (n_A n_B)`` along ``axis`` (vectorized)."""
    a, b = np.moveaxis(np.asarray(a), axis, -1), np.moveaxis(np.asarray(b), axis, -1)
    d = a[..., :, None] - b[..., None, :]
    return np.mean((d > 0) + 0.5 * (d == 0), axis=(-2, -1))


def median_interval(x) -> tuple[float, tuple[float, float]]:
    """The median of ``x`` and its 95 % bootstrap interval."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, (math.nan, math.nan)
    # vectorized: np.median over a batch of resamples at once, the same draws and the
    # same interval as one call per resample, 12x faster (29 medians per report)
    return float(np.median(x)), bootstrap_interval((x,), np.median, paired=False,
                                                   vectorized=True)


def share_interval(k: int, n: int) -> tuple[float, tuple[float, float]]:
    """The share ``k / n`` and its 95 % Wilson interval."""
    if n == 0:
        return math.nan, (math.nan, math.nan)
    ci = stats.binomtest(int(k), int(n)).proportion_ci(CONFIDENCE, method="wilson")
    return k / n, (float(ci.low), float(ci.high))


def _models(n: int, word: str = "model") -> str:
    """``"1 model"``, ``"3 models"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def _decide(p_paper: float, p_opposite: float, n: int) -> tuple[str, int | None]:
    if p_paper < ALPHA:
        return SUPPORTED, None
    if p_opposite < ALPHA:
        return CONTRADICTED, None
    if not (p_paper < 0.5):
        return UNDECIDED, None                # the effect points the other way, if at all
    z = stats.norm.isf(p_paper)
    need = n * ((stats.norm.isf(ALPHA) + POWER_Z) / z) ** 2
    return UNDECIDED, int(math.ceil(need))


def _untestable(claim: str, test: str, name: str, n: int, why: str) -> Verdict:
    return Verdict(claim, test, name, math.nan, (math.nan, math.nan), math.nan, UNDECIDED,
                   None, n, (), why)


# ----------------------------------------------------------------------------- the claims

REGIMES = ("three regimes: (i) low LL & low σ, (ii) high LL & intermediate σ, (iii) high "
           "LL & high σ")


def regimes_trend(level_label, sigma) -> Verdict:
    """σ increases with the likelihood level (models on a level; stragglers left out).

    ``level_label (E,)``: level index per model by increasing mean LL, −1 for stragglers
    (:func:`ncl.levels.find_levels`); ``sigma (E,)``. Kendall's τ_b between level index
    and σ, one-sided (paper: τ_b > 0); three or more levels are needed for the paper's
    three regimes.
    """
    test = "ordered trend of σ across the likelihood levels: Kendall τ_b(level, σ), one-sided"
    lab, s = np.asarray(level_label), np.asarray(sigma, np.float64)
    keep = (lab >= 0) & np.isfinite(s)
    lab, s = lab[keep], s[keep]
    n, k = int(keep.sum()), len(np.unique(lab))
    if k < 2 or n < 3:
        return _untestable(REGIMES, test, "Kendall τ_b", n,
                           f"{k} likelihood level(s) among {_models(n)}: no trend to test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_up = float(stats.kendalltau(lab, s, alternative="greater").pvalue)
        p_down = float(stats.kendalltau(lab, s, alternative="less").pvalue)
    tau = float(kendall_tau_b(lab, s))
    verdict, need = _decide(p_up, p_down, n)
    note = ""
    if k < 3 and verdict == SUPPORTED:
        verdict, note = UNDECIDED, f"σ grows with the level, but only {k} levels were found"
    ci = bootstrap_interval((lab.astype(np.float64), s), kendall_tau_b, vectorized=True)
    return Verdict(REGIMES, test, "Kendall τ_b", tau, ci, p_up, verdict, need, n, (), note)


LOW_LL = "low LL occurs only with small σ"


def low_ll_low_sigma(low_mask, sigma, seeds) -> Verdict:
    """The low-likelihood models sit at the low end of σ.

    ``low_mask (E,)``: the low-likelihood group (:func:`ncl.levels.low_group`). One-sided
    Mann-Whitney U (paper: σ of the low group is smaller); statistic
    ``P(σ_low < σ_other)``. Exceptions: low-LL seeds whose σ is above the median σ of the
    other models.
    """
    test = "Mann-Whitney U, σ(low-LL models) < σ(other models), one-sided"
    low, s = np.asarray(low_mask, bool), np.asarray(sigma, np.float64)
    ok = np.isfinite(s)
    a, b = s[low & ok], s[~low & ok]
    name = "P(σ_low < σ_other)"
    if a.size == 0 or b.size == 0:
        return _untestable(LOW_LL, test, name, int(ok.sum()),
                           "no low-likelihood group (fewer than two likelihood levels)"
                           if a.size == 0 else "every model is in the low group")
    p_less = float(stats.mannwhitneyu(a, b, alternative="less").pvalue)
    p_greater = float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)
    verdict, need = _decide(p_less, p_greater, a.size + b.size)
    stat = float(superiority(b, a))
    ci = bootstrap_interval((b, a), superiority, paired=False, vectorized=True) \
        if min(a.size, b.size) >= 3 else (math.nan, math.nan)
    seeds = np.asarray(seeds)
    exc = tuple(int(x) for x in seeds[low & ok][a > np.median(b)])
    return Verdict(LOW_LL, test, name, stat, ci, p_less, verdict, need, int(ok.sum()), exc,
                   f"{_models(a.size, 'low-LL model')}; exceptions: σ above the median σ "
                   "of the others")


LOW_KL_CLAIM = "low KL occurs only at large σ"


def low_kl_high_sigma(kl, sigma, seeds, threshold: float = LOW_KL) -> Verdict:
    """Models with KL ≤ ``threshold`` sit at the high end of σ (one-sided Mann-Whitney U;
    statistic ``P(σ_lowKL > σ_other)``); exceptions: low-KL seeds whose σ is below the
    median σ of the others. Spearman ρ(σ, KL) is in the note."""
    test = (f"Mann-Whitney U, σ(models with KL ≤ {threshold:g}) > σ(other models), "
            "one-sided")
    kl, s = np.asarray(kl, np.float64), np.asarray(sigma, np.float64)
    ok = np.isfinite(kl) & np.isfinite(s)
    low = (kl <= threshold) & ok
    a, b = s[low], s[~low & ok]
    name = "P(σ_lowKL > σ_other)"
    if a.size == 0 or b.size == 0:
        return _untestable(LOW_KL_CLAIM, test, name, int(ok.sum()),
                           f"KL ≤ {threshold:g} in {a.size} of {_models(int(ok.sum()))}: "
                           "no two groups to compare")
    p_greater = float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)
    p_less = float(stats.mannwhitneyu(a, b, alternative="less").pvalue)
    verdict, need = _decide(p_greater, p_less, a.size + b.size)
    ci = bootstrap_interval((a, b), superiority, paired=False, vectorized=True) \
        if min(a.size, b.size) >= 3 else (math.nan, math.nan)
    exc = tuple(int(x) for x in np.asarray(seeds)[low][a < np.median(b)])
    rho = float(spearman_rho(s[ok], kl[ok])) if ok.sum() >= 3 else math.nan
    return Verdict(LOW_KL_CLAIM, test, name, float(superiority(a, b)), ci, p_greater, verdict,
                   need, int(ok.sum()), exc,
                   f"{_models(a.size)} with KL ≤ {threshold:g}; Spearman ρ(σ, KL) = {rho:+.2f}; "
                   "exceptions: σ below the median σ of the others")


TAU_TREND = "τ grows with σ"


def tau_grows_with_sigma(sigma, tau) -> Verdict:
    """Spearman ρ(σ, τ) > 0, one-sided (finite τ only)."""
    test = "Spearman ρ(σ, τ), one-sided"
    s, t = np.asarray(sigma, np.float64), np.asarray(tau, np.float64)
    ok = np.isfinite(s) & np.isfinite(t)
    n = int(ok.sum())
    if n < 3:
        return _untestable(TAU_TREND, test, "Spearman ρ", n, f"{_models(n)} with finite σ, τ")
    s, t = s[ok], t[ok]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p_up = float(stats.spearmanr(s, t, alternative="greater").pvalue)
        p_down = float(stats.spearmanr(s, t, alternative="less").pvalue)
    if not math.isfinite(p_up):   # a constant input
        return _untestable(TAU_TREND, test, "Spearman ρ", n, "σ or τ is constant")
    verdict, need = _decide(p_up, p_down, n)
    return Verdict(TAU_TREND, test, "Spearman ρ", float(spearman_rho(s, t)),
                   bootstrap_interval((s, t), spearman_rho, vectorized=True), p_up, verdict,
                   need, n)


TAU_SCALE = "τ reaches about 50 double steps (high-σ models)"


def tau_scale(sigma, tau, seeds) -> Verdict:
    """The typical τ of the high-σ models: the median τ of the top σ tercile with its
    bootstrap interval, against "about 50" read as ``[25, 100]`` (a factor of 2):
    supported when the interval lies inside, contradicted when it lies outside,
    undecided when it straddles an end. The largest τ (and its seed) is in the note,
    reported apart: the maximum of many draws is not the typical value."""
    lo_ok, hi_ok = TAU_PAPER / TAU_FACTOR, TAU_PAPER * TAU_FACTOR
    test = (f"median τ of the top σ tercile, 95 % bootstrap interval against "
            f"[{lo_ok:g}, {hi_ok:g}]")
    s, t = np.asarray(sigma, np.float64), np.asarray(tau, np.float64)
    ok = np.isfinite(s)
    n = int(ok.sum())
    if n < 3:
        return _untestable(TAU_SCALE, test, "median τ", n, f"{_models(n)} with finite σ")
    idx = np.flatnonzero(ok)[np.argsort(s[ok], kind="mergesort")][-(n // 3):]
    top = t[idx]
    med, ci = median_interval(top)
    fin = np.isfinite(t)
    imax = int(np.argmax(np.where(fin, t, -np.inf))) if fin.any() else -1
    note = (f"top tercile: {_models(idx.size)}, τ quartiles "
            f"{np.nanpercentile(top, 25):.1f} / {np.nanpercentile(top, 75):.1f}; "
            f"largest τ {t[imax]:.1f} (seed {int(np.asarray(seeds)[imax])})"
            if imax >= 0 else "no finite τ")
    if not (math.isfinite(ci[0]) and math.isfinite(ci[1])):
        return Verdict(TAU_SCALE, test, "median τ", med, ci, math.nan, UNDECIDED, None, n, (),
                       note + "; too few models for an interval")
    if lo_ok <= ci[0] and ci[1] <= hi_ok:
        verdict = SUPPORTED
    elif ci[1] < lo_ok or ci[0] > hi_ok:
        verdict = CONTRADICTED
    else:
        verdict = UNDECIDED
    return Verdict(TAU_SCALE, test, "median τ", med, ci, math.nan, verdict, None, n, (), note)


TRACE = "⟨M_zz⟩ = Tr(M)/L < 1/L for every model"


def trace_below_uniform(tr_over_L, err, n_hidden: int, seeds) -> Verdict:
    """Every model's mean self-transition probability ``Tr(M)/L`` is below ``1/L``.

    Contradicted when some model is above ``1/L`` by more than two standard errors
    (those seeds are the exceptions), supported when every model is below by more than
    two standard errors, undecided otherwise. The statistic is the share of models
    below ``1/L``, with its Wilson interval."""
    test = "each model: Tr(M)/L ± 2 s.e. against 1/L"
    v, e = np.asarray(tr_over_L, np.float64), np.asarray(err, np.float64)
    e = np.where(np.isfinite(e), e, 0.0)
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n == 0:
        return _untestable(TRACE, test, "share below 1/L", 0, "no finite Tr(M)/L")
    bound = 1.0 / n_hidden
    below = int(np.sum(v[ok] < bound))
    share, ci = share_interval(below, n)
    above = ok & (v - 2 * e > bound)
    clearly_below = ok & (v + 2 * e < bound)
    verdict = (CONTRADICTED if above.any() else
               SUPPORTED if clearly_below.sum() == n else UNDECIDED)
    exc = tuple(int(x) for x in np.asarray(seeds)[ok & (v >= bound)])
    return Verdict(TRACE, test, "share below 1/L", share, ci, math.nan, verdict, None, n,
                   exc, f"{below} of {n} below 1/L = {bound:.3f}; largest "
                        f"{float(np.max(v[ok])):.3f}")


GOOD_RUN = ("a good run: two units per digit, near-uniform p̄, one dominant off-diagonal "
            "entry per row (a cycle)")


def good_run_structure(is_good, loglik, seeds, top_level_mask) -> Verdict:
    """The best run (highest LL) has the structure of the paper's Fig. 3 (``is_good``:
    per model, two units per digit, p̄ within 0.05 of uniform and one L-cycle). Supported
    when the best run has it; the statistic is the share of top-level models that have
    it, with its Wilson interval (the exceptions: top-level seeds without it)."""
    test = "structure of the best run; share of top-level models with it"
    good, ll = np.asarray(is_good, bool), np.asarray(loglik, np.float64)
    top = np.asarray(top_level_mask, bool)
    n = int(np.isfinite(ll).sum())
    if n == 0:
        return _untestable(GOOD_RUN, test, "share of top level", 0, "no finite LL")
    best = int(np.nanargmax(ll))
    k, m = int(np.sum(good & top)), int(top.sum())
    share, ci = share_interval(k, m)
    exc = tuple(int(x) for x in np.asarray(seeds)[top & ~good])
    verdict = SUPPORTED if good[best] else CONTRADICTED
    return Verdict(GOOD_RUN, test, "share of top level", share, ci, math.nan, verdict, None,
                   n, exc, f"best run: seed {int(np.asarray(seeds)[best])}; {k} of {m} "
                           "top-level models have the structure")
