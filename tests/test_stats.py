"""ncl.stats, the thin SciPy wrappers of the comparison and the regimes cross-check, checked
against values computed independently here: closed-form exact Mann–Whitney p-values, the
normal approximation written out, the asymptotic standard error of a median, brute-force
optimal k-means. (Ranks, Spearman and the exact 1-D k-means: tests/test_plots_reproduce.py.)"""
import itertools
import math

import numpy as np
import pytest

from ncl import stats


# ----------------------------------------------------------------------------- Mann–Whitney

@pytest.mark.parametrize("a, b, u, p", [
    # a entirely below b: U_a = 0, only 1 of the C(6, 3) = 20 orderings is as extreme
    ([1, 2, 3], [4, 5, 6], 0.0, 2 / 20),
    # a entirely above b: U_a = 12 = 4·3, two-sided 2 / C(7, 3)
    ([4, 5, 6, 7], [1, 2, 3], 12.0, 2 / 35),
    # interleaved: U_a = 3 (3>2, 5>2, 5>4); the U counts for m = n = 3 are
    # 1,1,2,3,3,3,3,2,1,1 (U = 0..9), so P(U <= 3) = 7/20 and p = 14/20
    ([1, 3, 5], [2, 4, 6], 3.0, 14 / 20),
])
def test_mann_whitney_exact_small_samples(a, b, u, p):
    got_u, got_p = stats.mann_whitney_u(a, b)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-12)


def _normal_approximation(a, b):
    """U_a by counting pairs, and the tie- and continuity-corrected normal p-value."""
    n1, n2 = a.size, b.size
    d = a[:, None] - b[None, :]
    u = float(np.sum(d > 0) + 0.5 * np.sum(d == 0))
    _, t = np.unique(np.concatenate([a, b]), return_counts=True)
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - np.sum(t ** 3 - t) / (n * (n - 1)))
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return u, math.erfc(z / math.sqrt(2))


def test_mann_whitney_large_samples_with_ties_inf_and_nan():
    rng = np.random.default_rng(0)
    for n1, n2, shift in ((36, 36, 0.0), (36, 36, 0.7), (10, 17, 1.5)):
        a = rng.normal(shift, 1, n1)
        b = rng.normal(0, 1, n2)
        a[:3] = np.round(a[:3])   # ties
        b[:3] = np.round(b[:3])
        a[-1] = np.inf            # e.g. tau of a periodic chain
        u_ref, p_ref = _normal_approximation(a, b)
        u, p = stats.mann_whitney_u(np.append(a, np.nan), b)  # nan dropped
        assert u == u_ref
        assert p == pytest.approx(p_ref, rel=1e-9)


def test_mann_whitney_edge_cases():
    assert stats.mann_whitney_u([1, 1, 1], [1, 1, 1])[1] == 1.0  # no evidence at all
    assert all(np.isnan(stats.mann_whitney_u([], [1.0])))
    assert all(np.isnan(stats.mann_whitney_u([np.nan], [1.0, 2.0])))


# ----------------------------------------------------------------------------- bootstrap

def test_bootstrap_median_difference_point_and_bounds():
    d, lo, hi = stats.bootstrap_median_difference(np.arange(30.0) + 10, np.arange(30.0), 2000)
    assert d == 10.0 and 0 < lo < 10.0 < hi
    d, lo, hi = stats.bootstrap_median_difference(np.zeros(20), np.zeros(20))
    assert d == lo == hi == 0.0
    d, lo, hi = stats.bootstrap_median_difference(np.full(5, 3.0), np.full(7, 1.0))
    assert d == lo == hi == 2.0


def test_bootstrap_median_difference_width_matches_asymptotic_se():
    # median of n normal values: SE ≈ sqrt(pi/2)·sd/sqrt(n); of a difference: × sqrt(2)
    rng = np.random.default_rng(1)
    n = 400
    a, b = rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)
    d, lo, hi = stats.bootstrap_median_difference(a, b, n_boot=4000, seed=3)
    se = math.sqrt(math.pi / 2) * math.sqrt(2 / n)
    assert (hi - lo) == pytest.approx(2 * 1.959964 * se, rel=0.2)
    assert lo < d < hi


def test_bootstrap_median_difference_seeded_inf_nan_and_tiny():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=12), rng.normal(size=9)
    r0 = stats.bootstrap_median_difference(a, b, 500, seed=0)
    assert r0 == stats.bootstrap_median_difference(a, b, 500, seed=0)   # reproducible
    assert r0[1:] != stats.bootstrap_median_difference(a, b, 500, seed=1)[1:]
    # nan dropped; an infinite median gives an infinite upper bound
    d, lo, hi = stats.bootstrap_median_difference([1, 2, np.inf, np.inf, np.inf, np.nan],
                                                  [1, 2, 3])
    assert d == np.inf and hi == np.inf and np.isfinite(lo)
    # inf − inf is undefined
    d, lo, hi = stats.bootstrap_median_difference([1, 2, np.inf, np.inf], [1, np.inf, np.inf])
    assert np.isnan(d) and np.isnan(lo) and np.isnan(hi)
    # one value: no interval; none: nothing
    d, lo, hi = stats.bootstrap_median_difference([5.0], [1.0, 2.0, 3.0])
    assert d == 3.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(stats.bootstrap_median_difference([], [1.0, 2.0])))


def test_spread():
    med, q1, q3, n = stats.spread([1.0, 2.0, np.inf, np.nan])
    assert n == 3 and med == 2.0 and q1 == 1.0 and q3 == np.inf
    assert stats.spread([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0, 4.0, 5)
    assert stats.spread([np.nan])[3] == 0


# ----------------------------------------------------------------------------- k-means

def _best_inertia(X, k):
    """Brute force over every labelling with k non-empty groups."""
    best = np.inf
    for lab in itertools.product(range(k), repeat=len(X)):
        lab = np.asarray(lab)
        if len(np.unique(lab)) < k:
            continue
        best = min(best, sum(((X[lab == j] - X[lab == j].mean(0)) ** 2).sum()
                             for j in range(k)))
    return best


def test_kmeans_reaches_the_optimum_and_is_seeded():
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(0, 0.5, (3, 2)), rng.normal((3, 0), 0.5, (3, 2)),
                        rng.normal((1.5, 2.5), 0.5, (3, 2))])
    labels, centers, inertia = stats.kmeans(X, 3, seed=0)
    assert labels.shape == (9,) and centers.shape == (3, 2)
    assert inertia == pytest.approx(_best_inertia(X, 3), rel=1e-9)
    # labels are the nearest centres, the inertia their squared distances
    d2 = ((X[:, None] - centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, d2.argmin(1))
    assert inertia == pytest.approx(d2.min(1).sum())
    again = stats.kmeans(X, 3, seed=0)
    np.testing.assert_array_equal(again[0], labels)
    np.testing.assert_array_equal(again[1], centers)


def test_kmeans_caps_k_at_distinct_points():
    labels, centers, inertia = stats.kmeans([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]], 3)
    assert centers.shape == (2, 2) and sorted(set(labels.tolist())) == [0, 1]
    assert inertia == pytest.approx(0.0)
    labels, centers, inertia = stats.kmeans(np.zeros((4, 2)), 3)
    assert labels.tolist() == [0, 0, 0, 0] and inertia == 0.0
