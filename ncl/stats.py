"""Statistics of an ensemble's per-seed numbers: thin wrappers around SciPy (a leaf of
the package; NumPy and SciPy only).

* ranks and correlation: :func:`rankdata` (``scipy.stats.rankdata``), :func:`spearman`
  (``scipy.stats.spearmanr``);
* clustering: :func:`kmeans` (``scipy.cluster.vq.kmeans2`` with k-means++ starts,
  restarts, the best inertia kept), :func:`kmeans_1d` (exact 1-D k-means: SciPy has no
  exact algorithm, so this one is written out here);
* two-sample comparison: :func:`mann_whitney_u` (``scipy.stats.mannwhitneyu``),
  :func:`bootstrap_median_difference` (``scipy.stats.bootstrap``, percentile interval),
  :func:`spread` (median and quartiles, ``np.quantile``).

Every function takes array-likes and drops ``nan`` where its docstring says so; random
ones take a ``seed`` and are deterministic given it.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np
from scipy import stats as _st
from scipy.cluster import vq as _vq


def _rng_kwarg(fn, seed: int) -> dict:
    """``{"rng": Generator}`` for SciPy functions that take ``rng`` (SciPy >= 1.15), else
    the older keyword (``random_state`` / ``seed``; SciPy 1.11.2 is the lowest supported)."""
    params = inspect.signature(fn).parameters
    key = next(k for k in ("rng", "random_state", "seed") if k in params)
    return {key: np.random.default_rng(seed)}


def rankdata(a) -> np.ndarray:
    """Ranks 1..n of ``a`` (flattened to ``(n,)``) with ties given their average rank:
    ``scipy.stats.rankdata(method="average")``. ``±inf`` are ordinary values; a ``nan``
    makes every rank ``nan`` (SciPy's ``nan_policy="propagate"``)."""
    return _st.rankdata(np.asarray(a, np.float64).ravel(), method="average")


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x (n,)`` and ``y (n,)``: ``scipy.stats.spearmanr``
    after dropping the pairs with a ``nan`` (``inf`` is kept as the largest value).
    ``nan`` with fewer than 3 pairs or a constant variable; ``ValueError`` when the
    lengths differ."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 3:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning: the result is nan
        return float(_st.spearmanr(x[keep], y[keep]).statistic)


def kmeans(X, k: int, n_init: int = 20, n_iter: int = 100, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means of ``X (n, d)``: ``n_init`` runs of ``scipy.cluster.vq.kmeans2``
    (``minit="++"``, ``n_iter`` Lloyd iterations; an emptied cluster keeps its centre),
    all drawing from one generator seeded with ``seed`` (deterministic); the run of least
    inertia is kept. ``k`` is capped at the number of distinct points.

    Returns ``(labels (n,), centers (k, d), inertia)``: each point's nearest centre
    (``scipy.cluster.vq.vq``) and the sum of squared distances to it.
    """
    X = np.asarray(X, np.float64)
    if X.ndim == 1:
        X = X[:, None]
    k = max(1, min(int(k), len(np.unique(X, axis=0))))
    rng = _rng_kwarg(_vq.kmeans2, seed)
    best = None
    for _ in range(n_init):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "One of the clusters is empty"
            centers, _ = _vq.kmeans2(X, k, iter=n_iter, minit="++", missing="warn", **rng)
        labels, dist = _vq.vq(X, centers)
        inertia = float(np.sum(dist ** 2))
        if best is None or inertia < best[2] - 1e-12:
            best = (labels.astype(int), centers, inertia)
    return best


def kmeans_1d(x, k: int) -> np.ndarray:
    """Exact (globally optimal) k-means of 1-D data ``x (n,)`` for k <= 3: the best split
    of the sorted values into k contiguous groups, by exhaustive search over the break
    points (O(n²) with prefix sums). SciPy has no exact k-means (``scipy.cluster.vq`` is
    Lloyd's local search, ``scipy.cluster.hierarchy``'s Ward linkage is greedy), hence the
    NumPy code. ``k`` is capped at 3 and at the number of distinct values. Returns group
    labels ``(n,)`` 0..k−1 in increasing order of value."""
    x = np.asarray(x, np.float64)
    n = x.size
    k = max(1, min(k, len(np.unique(x)), 3))
    order = np.argsort(x, kind="mergesort")
    v = x[order]
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = np.concatenate([[0.0], np.cumsum(v * v)])

    def sse(i, j):  # v[i:j]
        m = j - i
        return c2[j] - c2[i] - (c1[j] - c1[i]) ** 2 / m if m > 0 else 0.0

    if k == 1:
        breaks = ()
    elif k == 2:
        breaks = (min(range(1, n), key=lambda b: sse(0, b) + sse(b, n)),)
    else:
        best, breaks = np.inf, (1, 2)
        for b1 in range(1, n - 1):
            head = sse(0, b1)
            for b2 in range(b1 + 1, n):
                t = head + sse(b1, b2) + sse(b2, n)
                if t < best - 1e-12:
                    best, breaks = t, (b1, b2)
    sorted_labels = np.zeros(n, int)
    for b in breaks:
        sorted_labels[b:] += 1
    labels = np.empty(n, int)
    labels[order] = sorted_labels
    return labels


def mann_whitney_u(a, b) -> tuple[float, float]:
    """Two-sided Mann–Whitney U test of samples ``a (n_a,)`` and ``b (n_b,)``:
    ``scipy.stats.mannwhitneyu(a, b, alternative="two-sided")`` after dropping ``nan``
    (``inf`` allowed). SciPy's ``method="auto"``: the exact null distribution when a
    sample has at most 8 values and there are no ties, else the normal approximation with
    tie and continuity corrections.

    Returns ``(U_a, p)``; ``U_a`` counts pairs with ``a > b`` (ties count 1/2), so
    ``U_a / (n_a n_b)`` is the probability of superiority. ``(nan, nan)`` when a sample
    is empty."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    res = _st.mannwhitneyu(a, b, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def _median_difference(a, b, axis=-1):
    with np.errstate(invalid="ignore"):  # inf − inf: an undefined difference
        return np.median(a, axis=axis) - np.median(b, axis=axis)


def bootstrap_median_difference(a, b, n_boot: int = 4000, seed: int = 0,
                                level: float = 0.95) -> tuple[float, float, float]:
    """``median(a) − median(b)`` of independent samples ``a (n_a,)``, ``b (n_b,)`` and
    its ``level`` percentile-bootstrap interval: ``scipy.stats.bootstrap((a, b),
    paired=False, method="percentile", n_resamples=n_boot)``, seeds resampled with
    replacement within each sample, the generator seeded with ``seed`` (reproducible).
    Percentile rather than BCa: BCa's jackknife acceleration is unreliable for a median
    and undefined when a sample has infinite or all-equal values.

    ``nan`` values are dropped. Infinite medians give infinite bounds; a bound is ``nan``
    when a resampled difference is undefined (``inf − inf``) or a sample has fewer than 2
    values. Returns ``(difference, low, high)``."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan"), float("nan")
    diff = float(_median_difference(a, b))
    if a.size < 2 or b.size < 2:
        return diff, float("nan"), float("nan")
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore")
        res = _st.bootstrap((a, b), _median_difference, paired=False, vectorized=True,
                            n_resamples=int(n_boot), confidence_level=level,
                            method="percentile", **_rng_kwarg(_st.bootstrap, seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return diff, lo, hi


def spread(values) -> tuple[float, float, float, int]:
    """``(median, 25th, 75th percentile, n)`` over the non-nan values of ``values (n,)``
    (``np.quantile``; with infinite values the quartiles are the nearest order
    statistics, so an infinite quartile stays ``±inf`` instead of ``nan``)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    with np.errstate(invalid="ignore"):
        q = np.quantile(v, [0.5, 0.25, 0.75]) if np.all(np.isfinite(v)) else np.array(
            [np.median(v), *np.percentile(v, [25, 75], method="nearest")])
    return float(q[0]), float(q[1]), float(q[2]), int(v.size)
