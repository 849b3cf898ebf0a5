"""Names of the likelihood levels (the one naming table of the figure legends and the
report), the k-means regimes (a cross-check) and the cycle structure of a hidden transition
matrix (NumPy; the k-means of :mod:`ncl.stats`: ``scipy.cluster.vq.kmeans2`` and an exact
1-D search).

* :func:`level_names` — the name of each likelihood level found by
  :func:`ncl.levels.find_levels` (``"level 1 (-152.4)"``: numbered by increasing mean
  log-likelihood, the mean in the name) and :data:`STRAGGLER_NAME`; figures and
  ``REPORT.md`` both use it;
* :func:`classify_regimes` (with :func:`log_sigma_feature`): the older k = 3 k-means
  grouping, kept as a cross-check (the report's levels come from ``ncl.levels``);
  :data:`REGIME_NAMES` are the paper's three regimes;
* :func:`cycle_structure`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ncl.stats import kmeans, kmeans_1d

STRAGGLER_NAME = "straggler (no level)"
"""The name of a model that sits on no likelihood level (label −1)."""


def level_name(index: int, mean: float) -> str:
    """``"level {index + 1} ({mean:.1f})"``; ``index`` −1: :data:`STRAGGLER_NAME`."""
    if int(index) < 0:
        return STRAGGLER_NAME
    return f"level {int(index) + 1} ({float(mean):.1f})"


def level_names(means: Sequence[float]) -> dict:
    """``{level index: name}`` for levels of increasing mean log-likelihood ``means``,
    with ``-1`` → :data:`STRAGGLER_NAME` (the one naming table of figures and report)."""
    out = {j: level_name(j, m) for j, m in enumerate(means)}
    out[-1] = STRAGGLER_NAME
    return out


REGIMES = (
    # numeral, the paper's description
    ("(i)", "low log-likelihood, low σ"),
    ("(ii)", "high log-likelihood, intermediate σ"),
    ("(iii)", "high log-likelihood, high σ"),
)
"""The paper's regimes 0, 1, 2 as ``(numeral, description)``."""
REGIME_NAMES = {r: f"{num} {name}" for r, (num, name) in enumerate(REGIMES)}


def log_sigma_feature(sigma, floor: float = 1e-4) -> np.ndarray:
    """``log10 σ`` for clustering: σ below ``floor`` (a count estimate of 0) → floor,
    ``+inf`` (a one-way flux) → 1 decade above the largest finite value."""
    s = np.asarray(sigma, np.float64)
    fin = np.isfinite(s)
    top = np.nanmax(s[fin]) if fin.any() else 1.0
    s = np.where(np.isposinf(s), 10.0 * max(top, floor), s)
    return np.log10(np.maximum(s, floor))


REGIME_METHODS = ("loglik-1d", "kmeans-2d")


def classify_regimes(loglik, sigma, k: int = 3, method: str = "loglik-1d", seed: int = 0
                     ) -> tuple[np.ndarray, dict]:
    """The paper's three regimes of the final models (Fig. 2c).

    Methods:
      ``"loglik-1d"`` (default): exact 1-D k-means (k = 3) of the final log-likelihoods
        (:func:`ncl.stats.kmeans_1d`); regimes are numbered by increasing mean
        log-likelihood. The final log-likelihoods of this model take a few discrete levels
        (which digit variants the six units capture), so this recovers them without a
        scale choice.
        σ plays no part in the grouping, so the σ ordering of the groups is a test of the
        paper's claim, not a consequence of the method.
      ``"kmeans-2d"``: k-means (k = 3; :func:`ncl.stats.kmeans`: 20 restarts of
        ``scipy.cluster.vq.kmeans2`` with k-means++ starts, ``seed``) in the plane
        ``(log-likelihood, log10 σ)``, each coordinate scaled to unit standard deviation;
        the cluster of lowest mean LL is regime 0, the others are ordered by mean log σ.

    In both, regime 0 is the paper's "(i) low LL, low σ", 1 "(ii) high LL, intermediate
    σ", 2 "(iii) high LL, high σ" — if the data have that shape, which
    ``info["paper_like"]`` checks: median σ increases from regime 0 to 1 to 2, and the
    log-likelihood gap between regime 0 and the others exceeds the gap between 1 and 2.

    Returns ``(labels (n,), info)``; ``info`` holds per-regime counts, mean LL, median σ,
    ranges and the check.
    """
    if method not in REGIME_METHODS:
        raise ValueError(f"method must be one of {REGIME_METHODS}, got {method!r}")
    ll = np.asarray(loglik, np.float64)
    s = np.asarray(sigma, np.float64)
    ls = log_sigma_feature(s)
    n = ll.size
    if method == "loglik-1d":
        labels = kmeans_1d(ll, k)
        desc = ("exact 1-D k-means (k=3, optimal contiguous split of the sorted values) of "
                "the final log-likelihood alone; regimes numbered by increasing mean LL; σ "
                "is not used for the grouping")
    else:
        X = np.stack([ll, ls], axis=1)
        sd = X.std(axis=0)
        Xs = (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)
        raw, _, _ = kmeans(Xs, k, seed=seed)
        kk = int(raw.max()) + 1
        mean_ll = np.array([ll[raw == j].mean() for j in range(kk)])
        mean_ls = np.array([ls[raw == j].mean() for j in range(kk)])
        low = int(np.argmin(mean_ll))
        rest = sorted((j for j in range(kk) if j != low), key=lambda j: mean_ls[j])
        mapping = {low: 0, **{j: r for r, j in enumerate(rest, start=1)}}
        labels = np.array([mapping[int(j)] for j in raw], int)
        desc = ("k-means (k=3) on (final log-likelihood, log10 σ_RB), each scaled to unit "
                "standard deviation; 20 restarts of scipy.cluster.vq.kmeans2 (k-means++ "
                f"starts), seed {seed}; lowest mean LL = (i), "
                "the others ordered by mean log σ")
    kk = int(labels.max()) + 1
    regimes = {}
    for r in range(kk):
        m = labels == r
        regimes[r] = dict(name=REGIME_NAMES.get(r, f"regime {r}"), count=int(m.sum()),
                          mean_loglik=float(ll[m].mean()),
                          loglik_range=[float(ll[m].min()), float(ll[m].max())],
                          median_sigma=float(np.median(s[m])),
                          sigma_range=[float(np.min(s[m])), float(np.max(s[m]))])
    paper_like = False
    if kk == 3:
        ml = [regimes[r]["mean_loglik"] for r in range(3)]
        ms = [regimes[r]["median_sigma"] for r in range(3)]
        paper_like = bool(ms[0] < ms[1] < ms[2]
                          and min(ml[1], ml[2]) - ml[0] > abs(ml[2] - ml[1]))
    info = dict(method=method, description=desc, n=n, regimes=regimes,
                paper_like=paper_like)
    return labels, info


def cycle_structure(M) -> dict:
    """Does ``M (L, L)`` have one dominant off-diagonal entry per row that forms a single
    cycle through all states? Returns ``successor (L,)`` (the argmax off-diagonal column
    of each row), ``dominant_fraction`` (the smallest ratio of that entry to the row's
    off-diagonal mass), and ``single_cycle`` (the successor map is one L-cycle)."""
    M = np.asarray(M, np.float64)
    L = M.shape[0]
    off = M * (1.0 - np.eye(L))
    succ = np.argmax(off, axis=1)
    mass = off.sum(1)
    frac = np.where(mass > 0, off[np.arange(L), succ] / np.where(mass > 0, mass, 1.0), 0.0)
    seen, z = set(), 0
    for _ in range(L):
        seen.add(z)
        z = int(succ[z])
    single = (len(seen) == L) and z == 0
    return dict(successor=succ.tolist(), dominant_fraction=float(frac.min()),
                single_cycle=bool(single))
