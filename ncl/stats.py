"""Statistics of an ensemble's per-seed numbers (NumPy only; a leaf of the package).

* ranks and correlation: :func:`rankdata`, :func:`spearman`;
* clustering: :func:`kmeans` (k-means++ restarts), :func:`kmeans_1d` (exact, 1-D);
* two-sample comparison: :func:`mann_whitney_u`, :func:`bootstrap_median_difference`,
  :func:`spread` (median and quartiles).
"""
from __future__ import annotations

import math

import numpy as np


def rankdata(a) -> np.ndarray:
    """Ranks 1..n of ``a (n,)`` with ties given their average rank (like
    ``scipy.stats.rankdata(method="average")``). ``±inf`` are ordinary values."""
    a = np.asarray(a, np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(a.size, np.float64)
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (pairs with a NaN dropped; ``inf``
    kept as the largest value). NaN with fewer than 3 pairs or a constant variable."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    if keep.sum() < 3:
        return float("nan")
    rx, ry = rankdata(x[keep]), rankdata(y[keep])
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float(np.sum(rx * rx) * np.sum(ry * ry)))
    return float(np.sum(rx * ry) / den) if den > 0 else float("nan")


def kmeans(X, k: int, n_init: int = 20, n_iter: int = 100, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain k-means (k-means++ starts, ``n_init`` restarts, deterministic given ``seed``).

    ``X (n, d)`` → ``(labels (n,), centers (k, d), inertia)``; ``k`` is capped at the
    number of distinct points.
    """
    X = np.asarray(X, np.float64)
    n = X.shape[0]
    k = max(1, min(k, len(np.unique(X, axis=0))))
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        centers = [X[rng.integers(n)]]
        for _ in range(1, k):
            d2 = np.min(((X[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
            centers.append(X[rng.choice(n, p=p)])
        centers = np.asarray(centers)
        for _ in range(n_iter):
            d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
            labels = np.argmin(d2, axis=1)
            new = np.array([X[labels == j].mean(0) if np.any(labels == j) else centers[j]
                            for j in range(k)])
            if np.allclose(new, centers):
                break
            centers = new
        d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
        labels = np.argmin(d2, axis=1)
        inertia = float(d2[np.arange(n), labels].sum())
        if best is None or inertia < best[2] - 1e-12:
            best = (labels, centers, inertia)
    return best


def kmeans_1d(x, k: int) -> np.ndarray:
    """Exact (globally optimal) k-means of 1-D data for k <= 3: the best split of the
    sorted values into k contiguous groups, by exhaustive search over the break points
    (O(n²) with prefix sums). Returns group labels 0..k−1 in increasing order of value."""
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
    """Two-sided Mann–Whitney U test of samples ``a`` and ``b`` (NumPy; ``inf`` allowed,
    ``nan`` dropped). Normal approximation with tie correction and continuity correction.
    Returns ``(U_a, p)``; ``U_a`` counts pairs with ``a > b`` (ties count 1/2)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    allv = np.concatenate([a, b])
    ranks = rankdata(allv)
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    _, counts = np.unique(allv, return_counts=True)
    tie = float(np.sum(counts ** 3 - counts))
    var = n1 * n2 / 12.0 * ((n + 1) - tie / (n * (n - 1)))
    if var <= 0:
        return u, 1.0
    z = (abs(u - n1 * n2 / 2.0) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return u, min(1.0, p)


def bootstrap_median_difference(a, b, n_boot: int = 4000, seed: int = 0,
                                level: float = 0.95) -> tuple[float, float, float]:
    """``median(a) − median(b)`` and its percentile-bootstrap interval (seeds resampled
    with replacement within each sample). ``nan`` values are dropped; infinite medians
    give infinite/nan bounds. Returns ``(difference, low, high)``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (n_boot, b.size))], axis=1)
    with np.errstate(invalid="ignore"):
        d = ma - mb
        diff = float(np.median(a) - np.median(b))
    q = (1 - level) / 2
    d = d[~np.isnan(d)]
    if d.size == 0:
        return diff, float("nan"), float("nan")
    with np.errstate(invalid="ignore"):
        lo, hi = np.quantile(d, [q, 1 - q])
    return diff, float(lo), float(hi)


def spread(values) -> tuple[float, float, float, int]:
    """``(median, 25th, 75th percentile, n)`` over the non-nan values."""
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    with np.errstate(invalid="ignore"):
        q = np.quantile(v, [0.5, 0.25, 0.75]) if np.all(np.isfinite(v)) else np.array(
            [np.median(v), *np.percentile(v, [25, 75], method="nearest")])
    return float(q[0]), float(q[1]), float(q[2]), int(v.size)
