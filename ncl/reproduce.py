"""Reproduce the paper's experiment end to end: train, diagnose, plot, report.

* :func:`reproduce` — trains the 36-seed ensemble of Sect. IV A on the bundled data,
  saves it (``out_dir/ensemble``, :func:`ncl.io.save_run`), runs
  :func:`ncl.diagnostics.diagnose_ensemble` with the shipped digit classifier and
  writes into ``out_dir``:

  - ``fig2``, ``fig3``, ``fig4`` (``.png`` and ``.pdf``), the paper's Figs. 2–4;
  - ``metrics.csv`` — one row per seed;
  - ``config.json`` — train and diagnostics configs, seeds, timings, load average;
  - ``diagnostics.npz`` — every :class:`~ncl.diagnostics.Diagnostics` array, the
    training history and the Fig. 3 samples, so :func:`make_figures` needs nothing else;
  - ``REPORT.md`` — each claim of the paper next to what this run measured.

* :func:`diagnose_run` — the same, from a saved run (no retraining).
* :func:`make_figures` — the figures again, from ``diagnostics.npz`` alone.

Analysis helpers (NumPy only): :func:`rankdata`, :func:`spearman`, :func:`kmeans`,
:func:`classify_regimes`, :func:`cycle_structure`.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ncl import _validate as _v
from ncl.diagnostics import DiagnosticsConfig
from ncl.training import TrainConfig

REGIME_NAMES = {0: "(i) low log-likelihood, low σ",
                1: "(ii) high log-likelihood, intermediate σ",
                2: "(iii) high log-likelihood, high σ"}
REGIME_SHORT = {0: "(i) low-LL group", 1: "(ii) middle-LL group", 2: "(iii) high-LL group"}
DIAGNOSTICS_FILE = "diagnostics.npz"
METRICS_FILE = "metrics.csv"
REPORT_FILE = "REPORT.md"
CONFIG_FILE = "config.json"
ENSEMBLE_DIR = "ensemble"
FIGURES = ("fig2", "fig3", "fig4")
LOW_KL_THRESHOLDS = (1e-2, 1e-3)
"""KL values (nats) at or below which a model counts as "low KL" in the report."""


# ----------------------------------------------------------------------------- protocols

def paper_diagnostics_config() -> DiagnosticsConfig:
    """The diagnostics used by :func:`reproduce`: the docs/model.md defaults (2 000 burn-in,
    20 000 recorded double steps in 8 chains, K = 4 000 RB samples). Measured at about
    25 s for 36 models on a 2-core CPU, so nothing needs tuning down."""
    return DiagnosticsConfig()


def quick_protocol() -> tuple[TrainConfig, DiagnosticsConfig]:
    """A reduced protocol for smoke tests (seconds, not minutes): 3 epochs of 5 steps,
    T = 16, minibatch 16 → 32; short diagnostics (4 chains, 1 600 steps, K = 200)."""
    train = TrainConfig(epochs=3, steps_per_epoch=5, chain_length=16, batch_min=16,
                        batch_max=32, batch_buckets=1)
    diag = DiagnosticsConfig(burn_in=50, n_steps=1600, n_chains=4, rb_samples=200,
                             segment=50, rb_chunk=100)
    return train, diag


# ----------------------------------------------------------------------------- statistics

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


def log_sigma_feature(sigma, floor: float = 1e-4) -> np.ndarray:
    """``log10 σ`` for clustering: σ below ``floor`` (a count estimate of 0) → floor,
    ``+inf`` (a one-way flux) → 1 decade above the largest finite value."""
    s = np.asarray(sigma, np.float64)
    fin = np.isfinite(s)
    top = np.nanmax(s[fin]) if fin.any() else 1.0
    s = np.where(np.isposinf(s), 10.0 * max(top, floor), s)
    return np.log10(np.maximum(s, floor))


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


REGIME_METHODS = ("loglik-1d", "kmeans-2d")


def classify_regimes(loglik, sigma, k: int = 3, method: str = "loglik-1d", seed: int = 0
                     ) -> tuple[np.ndarray, dict]:
    """The paper's three regimes of the final models (Fig. 2c).

    Methods:
      ``"loglik-1d"`` (default): exact 1-D k-means (k = 3) of the final log-likelihoods
        (:func:`kmeans_1d`); regimes are numbered by increasing mean log-likelihood. The
        final log-likelihoods of this model take a few discrete levels (which digit
        variants the six units capture), so this recovers them without a scale choice.
        σ plays no part in the grouping, so the σ ordering of the groups is a test of the
        paper's claim, not a consequence of the method.
      ``"kmeans-2d"``: k-means (k = 3; 20 k-means++ restarts, ``seed``) in the plane
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
                "standard deviation; 20 k-means++ restarts, seed 0; lowest mean LL = (i), "
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


# ----------------------------------------------------------------------------- sampling

def _sequence_core(key, params, center, x0, config, burn_in: int, n_steps: int):
    import jax
    from ncl import chain as chain_lib
    from ncl.model import hidden_state_index, visible_logits
    k_burn, k_rec = jax.random.split(key)
    state = chain_lib.init(x0[None])
    if burn_in > 0:
        state, _ = chain_lib.run_segments(k_burn, state, params, center, config, burn_in)
    _, traj = chain_lib.run_segments(k_rec, state, params, center, config, n_steps + 1,
                                     record=lambda traj: traj)
    z_prev = traj.z[:-1, 0]                                   # z(t−1), (n, L)
    mean = jax.nn.sigmoid(visible_logits(params, z_prev))     # (n, D)
    return hidden_state_index(z_prev, config), mean, traj.x[1:, 0]


_SEQUENCE_FNS: dict = {}


def _sequence_fn(config, burn_in: int, n_steps: int, batched: bool):
    import functools

    import jax
    k = (config, burn_in, n_steps, batched)
    if k not in _SEQUENCE_FNS:
        fn = functools.partial(_sequence_core, config=config, burn_in=burn_in,
                               n_steps=n_steps)
        _SEQUENCE_FNS[k] = jax.jit(jax.vmap(fn) if batched else fn)
    return _SEQUENCE_FNS[k]


def sample_sequence(key, params, center, config, x0, burn_in: int = 200,
                    n_steps: int = 16) -> dict:
    """A sampled hidden trajectory and its images for Fig. 3 (one model).

    Starts the chain at the data point ``x0 (D,)``, runs ``burn_in`` double steps, then
    ``n_steps + 1`` more with :func:`ncl.chain.sample_chain` (explicit ``key``; one
    jit-compiled program). With a leading member axis on ``key``, ``params``, ``center``
    and ``x0`` it samples every member at once. Returns NumPy arrays ``z (n,)`` — the
    hidden states ``z(t−1)`` —, ``mean_images (n, D)`` — ``⟨x(t)⟩ = sigmoid(w z(t−1) +
    a)`` — and ``samples (n, D)`` — the sampled ``x(t)`` (each with the member axis
    first when batched).
    """
    import jax.numpy as jnp
    x0 = jnp.asarray(x0, jnp.float32)
    fn = _sequence_fn(config, int(burn_in), int(n_steps), x0.ndim == 2)
    z, mean, x = fn(key, params, jnp.asarray(center, jnp.float32), x0)
    return dict(z=np.asarray(z), mean_images=np.asarray(mean), samples=np.asarray(x))


# ----------------------------------------------------------------------------- progress

class _Log:
    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def __call__(self, msg: str):
        if not self.quiet:
            print(msg, file=self.stream, flush=True)


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover
        return None


# ----------------------------------------------------------------------------- diagnose

def _load_data_for(meta_data: dict | None):
    """Data and labels for a saved run (the bundled paper subset unless the run's
    recorded selection differs)."""
    from ncl import data as data_lib
    info = meta_data or {}
    digits = tuple(info.get("digits", (0, 1, 2)))
    per = int(info.get("per_digit", 1000))
    if digits == (0, 1, 2) and per == 1000:
        x, y = data_lib.load_paper_data()
    else:
        x, y = data_lib.load_digits(digits=digits, per_digit=per)
    return x, y, digits


def _classifier_for(digits, log):
    from ncl import classifier as clf
    try:
        return clf.classifier_for_digits(tuple(digits))
    except Exception as e:  # no MNIST for a non-default digit set: KL is skipped
        log(f"warning: no digit classifier for digits {tuple(digits)} ({e}); "
            "the KL of eq. (22) is skipped")
        return None


def _diagnostics_arrays(d) -> dict:
    out = {}
    for k, v in d._asdict().items():
        if v is None:
            continue
        out[f"diag_{k}"] = np.asarray(v)
    return out


def _history_arrays(history) -> dict:
    out = {}
    for k in ("loglik", "loglik_precise", "sigma_rb", "sigma_counts", "batch_size",
              "hidden_occupancy", "finite"):
        v = getattr(history, k, None)
        if v is not None:
            out[f"hist_{k}"] = np.asarray(v)
    return out


def _fig3_arrays(key, params, centers, config, x, diag_loglik, seeds) -> dict:
    """Params and a sampled sequence of the best and the worst run (by final LL)."""
    import jax
    ll = np.asarray(diag_loglik, np.float64)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    best, worst = int(np.argmax(ll)), int(np.argmin(ll))
    which = [best, worst]
    out = {"fig3_index": np.array(which), "fig3_seed": np.asarray(seeds)[which]}
    keys = jax.random.split(key, 2 * len(which))
    k_x0, k_seq = keys[:len(which)], keys[len(which):]
    x0 = np.stack([x[int(jax.random.randint(k, (), 0, x.shape[0]))] for k in k_x0])
    sub = jax.tree_util.tree_map(lambda a: a[np.asarray(which)], params)
    seq = sample_sequence(k_seq, sub, np.asarray(centers)[which], config, x0)
    for name in ("z", "mean_images", "samples"):
        out[f"fig3_{name}"] = seq[name]
    for name in ("w", "a", "wbar", "abar"):
        out[f"fig3_{name}"] = np.asarray(getattr(params, name))[which]
    return out


def _diagnose_and_write(out_dir: Path, *, params, centers, train_config: TrainConfig,
                        history, seeds, x, labels, digits, dcfg: DiagnosticsConfig,
                        key_seed: int, log, timings: dict, run_dir: Path | None,
                        data_info: dict | None, estimator: str, figures: bool) -> dict:
    import jax
    from ncl import diagnostics as dg
    out_dir.mkdir(parents=True, exist_ok=True)
    # host copies: a freshly trained ensemble may be sharded over several devices; the
    # diagnostics run as one program either way (and compile once for both entry points)
    params = jax.tree_util.tree_map(np.asarray, params)
    centers = np.asarray(centers)
    classifier = _classifier_for(digits, log)
    S = len(seeds)
    log(f"diagnostics: {S} models, {dcfg.burn_in} burn-in + {dcfg.n_steps} recorded double "
        f"steps in {dcfg.n_chains} chains, K={dcfg.rb_samples} RB samples per state ...")
    t0 = time.perf_counter()
    key = jax.random.key(key_seed)
    k_diag, k_fig = jax.random.split(key)
    d = dg.diagnose_ensemble(k_diag, params, centers, train_config.model, x, dcfg, labels,
                             classifier)
    timings["diagnose_seconds"] = time.perf_counter() - t0
    timings["load_average_after_diagnose"] = _loadavg()
    log(f"diagnostics: done in {timings['diagnose_seconds']:.1f} s")

    arrays = {"seeds": np.asarray(seeds), "n_hidden": np.asarray(train_config.model.n_hidden)}
    arrays.update(_diagnostics_arrays(d))
    arrays.update(_history_arrays(history))
    arrays.update(_fig3_arrays(k_fig, params, np.asarray(centers), train_config.model,
                               np.asarray(x, np.float32), d.loglik, seeds))
    if classifier is not None:
        arrays["classifier_digits"] = np.asarray(classifier.classes)
    np.savez_compressed(out_dir / DIAGNOSTICS_FILE, **arrays)

    summary = analyse(arrays)
    rows = metrics_rows(arrays, np.asarray(summary["regime_labels"]))
    write_metrics_csv(out_dir / METRICS_FILE, rows)
    cfg = {
        "train_config": train_config.to_dict(),
        "diagnostics_config": dataclasses.asdict(dcfg),
        "seeds": [int(s) for s in seeds],
        "key_seed": int(key_seed),
        "run_dir": None if run_dir is None else os.path.relpath(run_dir, out_dir),
        "data": data_info or {},
        "timings": timings,
        "cpu_count": os.cpu_count(),
        "provenance": _provenance(),
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_json(out_dir / CONFIG_FILE, cfg)
    if figures:
        make_figures(out_dir, estimator=estimator, log=log)
    summary = write_report(out_dir)
    log(f"wrote {out_dir / METRICS_FILE}, {out_dir / REPORT_FILE}, {out_dir / DIAGNOSTICS_FILE}")
    return summary


def write_report(out_dir) -> dict:
    """(Re)write ``out_dir/REPORT.md`` from ``diagnostics.npz`` and ``config.json``;
    returns the analysis summary."""
    out_dir = Path(out_dir)
    summary = analyse(load_diagnostics_npz(out_dir))
    cfg = json.loads((out_dir / CONFIG_FILE).read_text())
    (out_dir / REPORT_FILE).write_text(render_report(summary, cfg))
    return summary


def _git_commit() -> str | None:
    import subprocess
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                           capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout
        return r.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _provenance() -> dict:
    from ncl.io import provenance
    out = provenance()
    out["git_commit"] = _git_commit()
    return out


def _write_json(path: Path, obj):
    from ncl.io import to_jsonable
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=True))
    os.replace(tmp, path)


def reproduce(out_dir, seeds: Sequence[int] = range(36), config: TrainConfig = TrainConfig(),
              dcfg: DiagnosticsConfig | None = None, data=None, labels=None,
              key_seed: int = 0, progress: bool | Callable = True, *,
              estimator: str = "rb", quiet: bool = False, data_info: dict | None = None
              ) -> dict:
    """Train, save, diagnose, plot and report (the paper's Sect. IV end to end).

    Args:
      out_dir: output directory (created); the ensemble goes to ``out_dir/ensemble``.
      seeds: member seeds (paper: 36).
      config: training protocol (default: the paper's).
      dcfg: diagnostics settings (default: :func:`paper_diagnostics_config`).
      data, labels: ``(N, D)`` binary data and ``(N,)`` digit labels (default: the
        bundled paper subset, :func:`ncl.data.load_paper_data`).
      key_seed: seed of the diagnostics' and Fig. 3's random keys.
      progress: ``True`` for a per-epoch progress line on stderr
        (:class:`ncl.cli.EpochProgress`), ``False`` for none, or a callable
        ``progress(epoch, history_row)``.
      estimator: σ estimator shown in the figures (``"rb"`` or ``"counts"``).
      quiet: print nothing.
    Returns:
      the analysis summary (as written to ``REPORT.md``), with ``"timings"``.
    """
    import jax
    from ncl import io
    from ncl.diagnostics import check_enumerable
    from ncl.training import train_ensemble
    check_enumerable(config.model)  # fail before training, not after it
    log = _Log(quiet or progress is False)
    out_dir = Path(out_dir)
    seeds = _v.seeds("seeds", seeds)  # before any work: ValueError naming the seed
    dcfg = paper_diagnostics_config() if dcfg is None else dcfg
    if data is None:
        from ncl.data import load_paper_data
        data, labels = load_paper_data()
        data_info = data_info or {"digits": [0, 1, 2], "per_digit": 1000,
                                  "source": "bundled paper subset (ncl/_data)",
                                  "binarize": "pixel > 127"}
        digits = (0, 1, 2)
    else:
        digits = tuple(int(v) for v in np.unique(labels)) if labels is not None else (0, 1, 2)
    x = np.asarray(data)
    data_info = dict(data_info or {}, n_samples=int(x.shape[0]), n_visible=int(x.shape[1]))
    if progress is True and not quiet:
        from ncl.cli import EpochProgress
        cb = EpochProgress(config.epochs)
    elif callable(progress):
        cb = progress
    else:
        cb = None
    timings = {"load_average_start": _loadavg()}
    log(f"reproduce: training {len(seeds)} seeds, {config.epochs} epochs x "
        f"{config.steps_per_epoch} steps, T={config.chain_length}, L={config.model.n_hidden}, "
        f"data {x.shape[0]}x{x.shape[1]}, device {jax.devices()[0]}")
    t0 = time.perf_counter()
    state, history = train_ensemble(seeds, x, config, progress=cb)
    jax.block_until_ready(state)
    timings["train_seconds"] = time.perf_counter() - t0
    timings["load_average_after_train"] = _loadavg()
    log(f"training: done in {timings['train_seconds']:.1f} s (compilation included)")
    run_dir = out_dir / ENSEMBLE_DIR
    io.save_run(run_dir, state, history, config, seeds=seeds, data_info=data_info,
                extra={"train_wall_seconds": timings["train_seconds"],
                       "devices": [str(d) for d in jax.devices()]})
    timings["train_devices"] = len(jax.devices())
    log(f"saved the ensemble to {run_dir}")
    finite = np.asarray(history.finite)[:, -1]
    if not finite.all():
        log(f"warning: non-finite parameters for seeds "
            f"{[s for s, f in zip(seeds, finite) if not f]}")
    summary = _diagnose_and_write(
        out_dir, params=state.params, centers=state.center, train_config=config,
        history=history, seeds=seeds, x=x, labels=labels, digits=digits, dcfg=dcfg,
        key_seed=key_seed, log=log, timings=timings, run_dir=run_dir, data_info=data_info,
        estimator=estimator, figures=True)
    return summary


@dataclasses.dataclass(frozen=True)
class RunParameters:
    """What the diagnostics need of a saved ensemble (see :func:`load_run_parameters`)."""

    config: TrainConfig
    params: object           # ncl.model.Params with a leading member axis
    center: np.ndarray       # (S, D)
    history: object          # attribute access to the History fields present
    seeds: tuple
    meta: dict

    def __post_init__(self):
        _v.check_fields(self, _RUN_PARAMETER_RULES)
        if self.params.w.shape[0] != len(self.seeds) or self.center.shape[0] != len(self.seeds):
            raise ValueError(f"RunParameters: params hold {self.params.w.shape[0]} and center "
                             f"{self.center.shape[0]} members, but {len(self.seeds)} seeds are "
                             "given; the run's files do not belong together")


def _ensemble_params(name, value, *, where="", example=None):
    """The rule of ``RunParameters.params``: :class:`ncl.model.Params` of an ensemble."""
    from ncl.model import Params
    if not isinstance(value, Params):
        raise TypeError(f"{name} must be ncl.model.Params (w, a, wbar, abar), got "
                        f"{type(value).__name__} ({where}.{name})")
    _v.array(f"{name}.w", value.w, 3, where=where)
    return value


def _history(name, value, *, where="", example=None):
    """The rule of ``RunParameters.history``: an object with History fields as attributes."""
    from ncl.training import History
    if not any(hasattr(value, f) for f in History._fields) or isinstance(value, type):
        raise TypeError(f"{name} must be an ncl.training.History or an object with its fields "
                        f"as attributes (e.g. types.SimpleNamespace), got "
                        f"{type(value).__name__} ({where}.{name})")
    return value


def _seed_tuple(name, value, *, where="", example=None):
    """The rule of ``RunParameters.seeds``: a tuple of seeds (repeats allowed: a run saved
    by an older ncl may hold them; it is diagnosed as it is)."""
    return tuple(_v.seeds(name, value, unique=False, where=where))


_RUN_PARAMETER_RULES = {
    "config": (_v.instance, dict(cls=TrainConfig)),
    "params": (_ensemble_params, {}),
    "center": (_v.array, dict(ndim=2)),
    "history": (_history, {}),
    "seeds": (_seed_tuple, {}),
    "meta": (_v.mapping, {}),
}
"""One type rule per :class:`RunParameters` field (:mod:`ncl._validate`)."""


def load_run_parameters(run_dir, log=None) -> RunParameters:
    """Parameters, centering vectors, history and metadata of a saved ensemble.

    Uses :func:`ncl.io.load_run`; if that cannot rebuild the full training state (e.g. a
    run saved by an ncl whose optimiser-state layout differed), falls back to reading
    only ``params.*`` and ``center`` from ``state.npz`` — all the diagnostics need — and
    says so.
    """
    import types

    from ncl import io
    from ncl.model import Params
    run_dir = Path(run_dir)
    try:
        run = io.load_run(run_dir)
    except io.RunIntegrityError:
        raise  # files that do not belong together are never read, not even in part
    except io.RunFileError as e:
        meta = io.load_meta(run_dir)
        try:
            with np.load(run_dir / io.STATE_FILE, allow_pickle=False) as f:
                params = Params(*(np.asarray(f[f"params.{k}"]) for k in Params._fields))
                center = np.asarray(f["center"])
            with np.load(run_dir / io.HISTORY_FILE, allow_pickle=False) as f:
                history = types.SimpleNamespace(**{k: f[k] for k in f.files})
            config = TrainConfig.from_dict(meta["train_config"])
        except Exception:
            raise e from None
        if not meta.get("ensemble", True) or params.w.ndim != 3:
            raise ValueError(f"{run_dir} holds a single model; diagnostics need an ensemble")
        (log or _Log(True))(f"warning: {e}; reading only the parameters (enough for the "
                            "diagnostics)")
        return RunParameters(config, params, center, history, tuple(meta["seeds"]), meta)
    if not run.ensemble:
        raise ValueError(f"{run_dir} holds a single model; diagnostics need an ensemble")
    return RunParameters(run.config, run.state.params, run.state.center, run.history,
                         tuple(run.seeds), run.meta)


def diagnose_run(run_dir, out_dir=None, dcfg: DiagnosticsConfig | None = None,
                 key_seed: int = 0, data=None, labels=None, *, estimator: str = "rb",
                 figures: bool = True, quiet: bool = False, overwrite: bool = False) -> dict:
    """Diagnose a saved run (:func:`ncl.io.save_run`) without retraining and write the
    same outputs as :func:`reproduce` into ``out_dir`` (default ``run_dir/diagnostics``).

    The data are those recorded with the run (the bundled paper subset by default), or
    ``data``/``labels`` if given. ``out_dir`` must not hold a run's files (the
    diagnostics' ``config.json`` would replace the run's); earlier diagnostics there are
    replaced only with ``overwrite=True``. Returns the analysis summary.
    """
    log = _Log(quiet)
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "diagnostics"
    check_diagnostics_out(out_dir, overwrite)
    run = load_run_parameters(run_dir, log)
    if data is None:
        x, labels, digits = _load_data_for(run.meta.get("data"))
    else:
        x = np.asarray(data)
        digits = tuple(int(v) for v in np.unique(labels)) if labels is not None else (0, 1, 2)
    timings = {"load_average_start": _loadavg()}
    tw = run.meta.get("extra", {}).get("train_wall_seconds")
    if tw is not None:
        timings["train_seconds"] = tw
    dcfg = paper_diagnostics_config() if dcfg is None else dcfg
    return _diagnose_and_write(
        out_dir, params=run.params, centers=run.center, train_config=run.config,
        history=run.history, seeds=list(run.seeds), x=x, labels=labels, digits=digits,
        dcfg=dcfg, key_seed=key_seed, log=log, timings=timings, run_dir=run_dir,
        data_info=run.meta.get("data"), estimator=estimator, figures=figures)


def check_diagnostics_out(out_dir, overwrite: bool = False) -> None:
    """``ValueError`` (before any work) when diagnostics must not be written to
    ``out_dir``: it is a file, it holds a saved run's files, or it holds earlier
    diagnostics and ``overwrite`` is false."""
    from ncl import io
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output directory {out_dir} is a file; choose another --out")
    run_files = [n for n in io.holds_run_files(out_dir) if n != io.CONFIG_FILE]
    if run_files:
        raise ValueError(f"output directory {out_dir} holds a saved run ({', '.join(run_files)}"
                         "); diagnostics would replace its config.json: choose another --out "
                         "(default: RUN_DIR-diagnostics)")
    earlier = [n for n in (DIAGNOSTICS_FILE, METRICS_FILE, REPORT_FILE)
               if (out_dir / n).exists()]
    if earlier and not overwrite:
        raise ValueError(f"output directory {out_dir} already holds diagnostics "
                         f"({', '.join(earlier)}); pass --overwrite (overwrite=True) to "
                         "replace them, or choose another --out")


# ----------------------------------------------------------------------------- metrics

def _f(v, nd=6):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{nd}g}"


def metrics_rows(arrays: dict, regimes) -> list[dict]:
    """One dict per seed (the columns of ``metrics.csv``)."""
    seeds = np.asarray(arrays["seeds"])
    g = lambda k: arrays.get(f"diag_{k}")  # noqa: E731
    p_bar = np.asarray(g("p_bar"))
    L = p_bar.shape[1]
    hist_ll = arrays.get("hist_loglik")
    hist_llp = arrays.get("hist_loglik_precise")
    finite = arrays.get("hist_finite")
    rows = []
    for i, s in enumerate(seeds):
        r = {"seed": int(s), "regime": int(regimes[i]),
             "loglik": _f(g("loglik")[i]), "loglik_err": _f(g("loglik_err")[i]),
             "loglik_onthefly": _f(hist_ll[i, -1]) if hist_ll is not None else "nan",
             "loglik_precise_monitor": (_f(hist_llp[i, -1]) if hist_llp is not None
                                        else "nan"),
             "sigma_rb": _f(g("sigma_rb")[i]), "sigma_rb_err": _f(g("sigma_rb_err")[i]),
             "sigma_counts": _f(g("sigma_counts")[i]),
             "sigma_counts_err": _f(g("sigma_counts_err")[i]),
             "tau_rb": _f(g("tau_rb")[i]), "tau_rb_err": _f(g("tau_rb_err")[i]),
             "tau_counts": _f(g("tau_counts")[i]),
             "tau_counts_err": _f(g("tau_counts_err")[i]),
             "trM_over_L_counts": _f(g("self_transition_counts")[i]),
             "trM_over_L_rb": _f(g("self_transition_rb")[i])}
        for k in ("kl", "kl_err", "kl_soft", "kl_soft_err"):
            r[k] = _f(g(k)[i]) if g(k) is not None else "nan"
        # newer fields (absent from diagnostics files written before them)
        for col, k in (("sigma_rb_bc", "sigma_rb_bc"),
                       ("trM_over_L_counts_err", "self_transition_counts_err"),
                       ("trM_over_L_rb_err", "self_transition_rb_err")):
            r[col] = _f(g(k)[i]) if g(k) is not None else "nan"
        for a in range(L):
            r[f"p_bar_{a}"] = _f(p_bar[i, a], 4)
        ud = g("unit_digit")
        for a in range(L):
            r[f"digit_{a}"] = int(ud[i, a]) if ud is not None else -1
        r["finite"] = int(bool(np.all(finite[i]))) if finite is not None else 1
        rows.append(r)
    return rows


def write_metrics_csv(path, rows: list[dict]) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return path


def read_metrics_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- figures

_FIGURE_KEYS = ("seeds", "n_hidden", "diag_loglik", "diag_loglik_err", "diag_sigma_rb",
                "diag_sigma_rb_err", "diag_sigma_counts", "diag_sigma_counts_err",
                "diag_tau_rb", "diag_tau_rb_err", "diag_tau_counts", "diag_tau_counts_err",
                "diag_p_bar", "diag_log_M_rb", "diag_M_counts", "diag_transition_counts",
                "diag_self_transition_counts", "diag_self_transition_rb",
                "fig3_index", "fig3_w", "fig3_wbar", "fig3_abar", "fig3_z",
                "fig3_mean_images", "fig3_samples")


def load_diagnostics_npz(out_dir) -> dict:
    """The arrays of ``out_dir/diagnostics.npz``; ``FileNotFoundError`` if absent,
    ``ValueError`` naming the file if it is corrupt or lacks arrays the figures need."""
    path = Path(out_dir) / DIAGNOSTICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `ncl reproduce` or `ncl diagnose` "
                                "first")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # BadZipFile, pickled data, truncated members, ...
        raise ValueError(f"cannot read {path}: the file is corrupt or truncated ({e}); "
                         "write it again with `ncl diagnose RUN_DIR`") from e
    missing = [k for k in _FIGURE_KEYS if k not in arrays]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more"
                                          if len(missing) > 4 else "")
        raise ValueError(f"{path} lacks the arrays {shown}; it was not written by "
                         "`ncl reproduce`/`ncl diagnose` (write it again with "
                         "`ncl diagnose RUN_DIR`)")
    return arrays


def _pick(arrays, estimator):
    if estimator == "rb":
        return (arrays["diag_sigma_rb"], arrays["diag_sigma_rb_err"], arrays["diag_tau_rb"],
                arrays["diag_tau_rb_err"])
    return (arrays["diag_sigma_counts"], arrays["diag_sigma_counts_err"],
            arrays["diag_tau_counts"], arrays["diag_tau_counts_err"])


def self_transition_err_counts(transition_counts) -> np.ndarray:
    """Standard error of ``Tr(M_counts)/L`` from the transition counts ``(..., L, L)``.

    The hidden process is a Markov chain, so given the visits ``n_z`` the row counts are
    multinomial: ``SE = sqrt(Σ_z M_zz (1 − M_zz) / n_z) / L``.
    """
    c = np.asarray(transition_counts, np.float64)
    n = c.sum(-1)
    L = c.shape[-1]
    mzz = np.diagonal(c, axis1=-2, axis2=-1) / np.maximum(n, 1)
    var = np.where(n > 0, mzz * (1 - mzz) / np.maximum(n, 1), 0.0)
    return np.sqrt(var.sum(-1)) / L


def make_figures(out_dir, estimator: str = "rb", log=None,
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Figs. 2–4 from ``out_dir/diagnostics.npz`` (no JAX computation). Returns paths
    and records the time in ``out_dir/config.json`` (``timings.figures_seconds``)."""
    from ncl import plots
    log = log or _Log(True)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    A = load_diagnostics_npz(out_dir)
    seeds = A["seeds"]
    L = int(A["n_hidden"])
    sig, sig_err, tau, tau_err = _pick(A, estimator)
    regimes, _ = classify_regimes(A["diag_loglik"], A["diag_sigma_rb"])
    name = plots.ESTIMATOR_NAMES[estimator]
    paths = []

    llh = A.get("hist_loglik_precise")
    ll_label = "precise: exact given the epoch's p̄, all data"
    if llh is None or not np.isfinite(llh).any():
        llh, ll_label = A["hist_loglik"], "on-the-fly minibatch estimate, App. A3"
    sgh = A.get(f"hist_sigma_{estimator}")
    if sgh is None:
        sgh = np.full_like(llh, np.nan)
    log("figures: fig2 ...")
    fig = plots.figure2(
        llh, sgh, A["diag_loglik"], sig, A["diag_loglik_err"], sig_err, seeds=seeds,
        estimator=estimator, regimes=regimes, regime_names=REGIME_SHORT,
        caption=(f"(a, b) per-epoch values monitored on the training chain (σ from its "
                 f"{name} M). (c) and the colours: final values from the diagnostics "
                 f"(long chains; jackknife error bars). Markers: regimes, grouped by 1-D "
                 f"k-means of the final log-likelihood (see REPORT.md)."))
    paths += plots.save_figure(fig, out_dir / "fig2", formats)

    log("figures: fig3 ...")
    runs = []
    for j, tag in enumerate(("(a) best run (highest final log-likelihood)",
                             "(b) worst run (lowest final log-likelihood)")):
        i = int(A["fig3_index"][j])
        M = (np.exp(A["diag_log_M_rb"][i]) if estimator == "rb" else A["diag_M_counts"][i])
        ud = A.get("diag_unit_digit")
        kl = A.get("diag_kl")
        title = (f"{tag}: seed {int(seeds[i])}, log-likelihood {A['diag_loglik'][i]:.2f} "
                 f"nats/image, σ = {sig[i]:.3g} ± {sig_err[i]:.2g} ({estimator}), "
                 f"τ = {tau[i]:.3g}")
        if kl is not None:
            title += f", KL = {kl[i]:.3g}"
        runs.append(dict(w=A["fig3_w"][j], wbar=A["fig3_wbar"][j], abar=A["fig3_abar"][j],
                         p_bar=A["diag_p_bar"][i], M=M,
                         unit_digit=None if ud is None else ud[i],
                         mean_images=A["fig3_mean_images"][j], samples=A["fig3_samples"][j],
                         z=A["fig3_z"][j], title=title))
    fig = plots.figure3(runs, estimator=estimator)
    paths += plots.save_figure(fig, out_dir / "fig3", formats)

    log("figures: fig4 ...")
    st_c = A["diag_self_transition_counts"]
    st_rb = A["diag_self_transition_rb"]
    kl = A.get("diag_kl")
    fig = plots.figure4(
        sig, kl if kl is not None else np.full(sig.shape, np.nan), tau, st_c,
        sigma_err=sig_err, kl_err=A.get("diag_kl_err"), tau_err=tau_err,
        self_transition_err=(A["diag_self_transition_counts_err"]
                             if "diag_self_transition_counts_err" in A
                             else self_transition_err_counts(A["diag_transition_counts"])),
        self_transition_alt=st_rb, alt_label="Tr(M)/L, Rao–Blackwellised M",
        n_hidden=L, estimator=estimator, regimes=regimes, regime_names=REGIME_SHORT,
        caption=("(a) KL of eq. (22), P_e floored at 1e-3 (values below 1e-6 drawn at 1e-6); (b) τ = −1/ln|λ₂| of the "
                 f"{name} M; (c) dots: count estimate of Tr(M)/L with "
                 f"{'jackknife' if 'diag_self_transition_counts_err' in A else 'multinomial'} "
                 "error bars, crosses: Rao–Blackwellised M; dashed: 1/L. Error bars: jackknife "
                 "over chains / RB batches."))
    paths += plots.save_figure(fig, out_dir / "fig4", formats)
    dt = time.perf_counter() - t0
    cfg_path = out_dir / CONFIG_FILE
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        cfg.setdefault("timings", {})["figures_seconds"] = dt
        _write_json(cfg_path, cfg)
    log(f"figures: {len(paths)} files written in {dt:.1f} s")
    return paths


# ----------------------------------------------------------------------------- report

def _terciles(x):
    """Indices of the lower, middle and upper third of ``x`` (by rank)."""
    order = np.argsort(rankdata(x), kind="mergesort")
    return np.array_split(order, 3)


def _regime_table(info: dict) -> list[dict]:
    return [dict(regime=int(r), **v) for r, v in sorted(info["regimes"].items(),
                                                         key=lambda kv: int(kv[0]))]


def analyse(arrays: dict) -> dict:
    """Numbers behind each claim of the paper (docs/model.md, "What the paper reports"), from the
    arrays of ``diagnostics.npz``. σ is the Rao–Blackwellised estimate unless a key says
    ``counts``."""
    g = lambda k: arrays.get(f"diag_{k}")  # noqa: E731
    seeds = np.asarray(arrays["seeds"])
    ll = np.asarray(g("loglik"), np.float64)
    s_rb = np.asarray(g("sigma_rb"), np.float64)
    s_c = np.asarray(g("sigma_counts"), np.float64)
    tau_rb = np.asarray(g("tau_rb"), np.float64)
    tau_c = np.asarray(g("tau_counts"), np.float64)
    kl = None if g("kl") is None else np.asarray(g("kl"), np.float64)
    st_c = np.asarray(g("self_transition_counts"), np.float64)
    st_rb = np.asarray(g("self_transition_rb"), np.float64)
    L = int(arrays["n_hidden"])
    S = ll.size
    regimes, info = classify_regimes(ll, s_rb, method="loglik-1d")
    regimes2, info2 = classify_regimes(ll, s_rb, method="kmeans-2d")
    out = {"n_models": S, "L": L, "regimes": info, "regimes_2d": info2,
           "regime_labels": regimes.tolist(), "regime_labels_2d": regimes2.tolist()}

    low, high = regimes == 0, regimes != 0
    both = low.any() and high.any()
    nan = float("nan")
    out["low_ll_only_at_low_sigma"] = dict(
        n_low=int(low.sum()),
        low_sigma_rb_range=[float(s_rb[low].min()), float(s_rb[low].max())] if low.any()
        else [nan, nan],
        high_sigma_rb_range=[float(s_rb[high].min()), float(s_rb[high].max())] if high.any()
        else [nan, nan],
        low_sigma_rb_median=float(np.median(s_rb[low])) if low.any() else nan,
        high_sigma_rb_median=float(np.median(s_rb[high])) if high.any() else nan,
        n_low_above_min_high=int(np.sum(s_rb[low] > s_rb[high].min())) if both else 0,
        n_high_below_max_low=int(np.sum(s_rb[high] < s_rb[low].max())) if both else 0,
        separated=bool(both and s_rb[low].max() < s_rb[high].min()),
        low_sigma_counts_range=[float(s_c[low].min()), float(s_c[low].max())] if low.any()
        else [nan, nan],
        high_sigma_counts_range=[float(s_c[high].min()), float(s_c[high].max())]
        if high.any() else [nan, nan],
        separated_counts=bool(both and s_c[low].max() < s_c[high].min()))

    terc = []
    for part, idx in zip(("lowest", "middle", "highest"), _terciles(s_rb)):
        if idx.size == 0:
            continue
        row = dict(part=part, n=int(idx.size),
                   sigma_range=[float(s_rb[idx].min()), float(s_rb[idx].max())],
                   loglik_median=float(np.median(ll[idx])), loglik_min=float(ll[idx].min()),
                   n_low_ll=int(np.sum(low[idx])),
                   tau_median=float(np.median(tau_rb[idx])),
                   trM_median=float(np.median(st_c[idx])))
        if kl is not None:
            row.update(kl_median=float(np.median(kl[idx])), kl_max=float(kl[idx].max()))
        terc.append(row)
    out["sigma_terciles"] = terc

    if kl is not None:
        med = float(np.median(s_rb))
        thr = []
        for t in LOW_KL_THRESHOLDS:
            m = kl <= t
            thr.append(dict(threshold=t, n=int(m.sum()),
                            n_above_median_sigma=int(np.sum(m & (s_rb > med))),
                            min_sigma=float(s_rb[m].min()) if m.any() else nan,
                            per_regime=[int(np.sum(m & (regimes == r))) for r in range(3)]))
        out["low_kl"] = dict(median_sigma=med, kl_range=[float(kl.min()), float(kl.max())],
                             thresholds=thr,
                             kl_median_per_regime=[float(np.median(kl[regimes == r]))
                                                   if np.any(regimes == r) else nan
                                                   for r in range(3)])

    def tau_max(t):
        fin = np.isfinite(t)
        if not fin.any():
            return nan, -1
        i = int(np.argmax(np.where(fin, t, -np.inf)))
        return float(t[i]), i

    tmax, imax = tau_max(tau_rb)
    tcmax, _ = tau_max(tau_c)
    top = _terciles(s_rb)[-1]
    out["tau"] = dict(max_tau_rb=tmax, max_tau_rb_seed=int(seeds[imax]) if imax >= 0 else -1,
                      max_tau_rb_err=float(g("tau_rb_err")[imax]) if imax >= 0 else nan,
                      max_tau_counts=tcmax,
                      median_tau_rb_top_tercile=float(np.median(tau_rb[top])),
                      n_tau_rb_above_50=int(np.sum(tau_rb > 50)),
                      n_infinite_rb=int((~np.isfinite(tau_rb)).sum()),
                      n_infinite_counts=int((~np.isfinite(tau_c)).sum()))
    out["self_transition"] = dict(
        inv_L=1.0 / L, n_below_counts=int(np.sum(st_c < 1.0 / L)),
        n_below_rb=int(np.sum(st_rb < 1.0 / L)), max_counts=float(st_c.max()),
        max_rb=float(st_rb.max()))
    sp = {"sigma_rb_vs_loglik": spearman(s_rb, ll),
          "sigma_rb_vs_kl": spearman(s_rb, kl) if kl is not None else nan,
          "sigma_rb_vs_tau_rb": spearman(s_rb, tau_rb),
          "sigma_rb_vs_trM_counts": spearman(s_rb, st_c),
          "sigma_counts_vs_loglik": spearman(s_c, ll),
          "sigma_counts_vs_kl": spearman(s_c, kl) if kl is not None else nan,
          "sigma_counts_vs_tau_counts": spearman(s_c, tau_c),
          "sigma_rb_vs_sigma_counts": spearman(s_rb, s_c)}
    out["spearman"] = sp

    ud = g("unit_digit")
    p_bar = np.asarray(g("p_bar"), np.float64)
    M_rb = np.exp(np.asarray(g("log_M_rb"), np.float64))
    runs = []
    for i in range(S):
        cyc = cycle_structure(M_rb[i])
        r = dict(seed=int(seeds[i]), loglik=float(ll[i]), sigma_rb=float(s_rb[i]),
                 regime=int(regimes[i]), p_min=float(p_bar[i].min()),
                 p_max=float(p_bar[i].max()), single_cycle=cyc["single_cycle"],
                 dominant_fraction=cyc["dominant_fraction"], successor=cyc["successor"])
        if ud is not None:
            n_cls = len(arrays.get("classifier_digits", [0, 1, 2]))
            idx = np.searchsorted(np.asarray(arrays.get("classifier_digits", [0, 1, 2])),
                                  np.asarray(ud[i]))
            counts = np.bincount(idx, minlength=n_cls)
            r["units_per_digit"] = counts.tolist()
            r["two_per_digit"] = bool(L == 2 * n_cls and np.all(counts == 2))
        runs.append(r)
    out["runs"] = runs
    out["best"], out["worst"] = runs[int(np.argmax(ll))], runs[int(np.argmin(ll))]
    per_regime = []
    for r in range(int(regimes.max()) + 1):
        m = [run for run, lab in zip(runs, regimes) if lab == r]
        per_regime.append(dict(
            regime=r, n=len(m), n_single_cycle=sum(x["single_cycle"] for x in m),
            n_two_per_digit=sum(x.get("two_per_digit", False) for x in m),
            n_near_uniform=sum(x["p_max"] - x["p_min"] < 0.05 for x in m)))
    out["structure_per_regime"] = per_regime
    return out


def _yn(b):
    return "**yes**" if b else "**no**"


def _fmt_range(r, fmt=".3g"):
    return f"{r[0]:{fmt}} … {r[1]:{fmt}}"


def render_report(summary: dict, cfg: dict) -> str:
    """``REPORT.md``: each claim of the paper next to what this run measured."""
    t = cfg.get("timings", {})
    tc = cfg["train_config"]
    dc = cfg["diagnostics_config"]
    S, L = summary["n_models"], summary["L"]
    reg, reg2 = summary["regimes"], summary["regimes_2d"]
    lo = summary["low_ll_only_at_low_sigma"]
    sp = summary["spearman"]
    tau = summary["tau"]
    st = summary["self_transition"]
    src = cfg["data"].get("source") or f"digits {cfg['data'].get('digits')}"
    lines = [
        "# Reproduction of Baiesi & Rosso, Sect. IV (Figs. 2–4)",
        "",
        f"{S} models (seeds {cfg['seeds'][0]}..{cfg['seeds'][-1]}), L = {L} "
        f"{tc['model']['hidden']} hidden units (recognition `{tc['model']['recognition']}`), "
        f"T = {tc['chain_length']}, {tc['epochs']} epochs × {tc['steps_per_epoch']} steps, "
        f"RMSprop lr {tc['learning_rate']}, minibatch {tc['batch_min']} → {tc['batch_max']}, "
        f"data: {cfg['data'].get('n_samples', '?')} images ({src}).",
        "",
        f"Diagnostics per model: {dc['n_chains']} chains from random data points, "
        f"{dc['burn_in']} double steps of burn-in each, {dc['n_steps']} recorded double steps "
        f"in total; Rao–Blackwellised (RB) M from K = {dc['rb_samples']} samples per state. "
        f"Error bars: delete-one-group jackknife over the {dc['n_chains']} chains (count "
        f"quantities) or RB batches. Log-likelihood (LL): exact given p̄, averaged over all "
        f"data, in nats per image. σ in nats per double step, τ in double steps. σ is the "
        f"**Rao–Blackwellised** estimate unless marked \"counts\" (the paper's count "
        f"estimate leaves out zero-count pairs and is biased low for near-deterministic "
        f"cycles; both are in `metrics.csv`). KL: eq. (22) with the shipped classifier "
        f"applied to each unit's mean image, P_e floored at {dc['p_floor']}.",
        "",
        "## Timings",
        "",
        "| step | wall time (s) |",
        "|---|---|",
    ]
    total = 0.0
    for k, name in (("train_seconds", "training, 36-seed vmapped program (incl. compilation)"
                     if S == 36 else "training (incl. compilation)"),
                    ("diagnose_seconds", "diagnostics (incl. compilation)"),
                    ("figures_seconds", "figures (PNG + PDF)")):
        if t.get(k) is not None:
            lines.append(f"| {name} | {t[k]:.1f} |")
            total += float(t[k])
    lines += [f"| **total** | **{total:.1f}** ({total / 60:.1f} min) |", "",
              f"CPU cores: {cfg.get('cpu_count')}; training sharded over "
              f"{t.get('train_devices', 'n/a')} XLA CPU device(s); ncl commit "
              f"{cfg.get('provenance', {}).get('git_commit')}, JAX "
              f"{cfg.get('provenance', {}).get('jax_version')}. Load average (1, 5, 15 min): at start "
              f"{t.get('load_average_start', 'n/a')}, after training "
              f"{t.get('load_average_after_train', 'n/a')}, after diagnostics "
              f"{t.get('load_average_after_diagnose', 'n/a')}. A load above the core count means "
              f"other jobs shared the machine, which inflates these times.", ""]

    lines += ["## Claims of the paper vs this run", "",
              "| paper (docs/model.md, What the paper reports) | this run | agrees? |", "|---|---|---|"]
    rt = _regime_table(reg)
    med = [r["median_sigma"] for r in rt]
    lines.append(
        "| three regimes: (i) low LL & low σ, (ii) high LL & intermediate σ, (iii) high LL "
        "& high σ | LL groups " + ", ".join(
            f"{r['mean_loglik']:.2f} ({r['count']} models, median σ {r['median_sigma']:.3g})"
            for r in rt) + f" | {_yn(reg['paper_like'])} |")
    lines.append(
        f"| low LL occurs only with small σ | σ of the {lo['n_low']} low-LL models "
        f"{_fmt_range(lo['low_sigma_rb_range'])} (median {lo['low_sigma_rb_median']:.3g}); "
        f"high-LL models {_fmt_range(lo['high_sigma_rb_range'])} (median "
        f"{lo['high_sigma_rb_median']:.3g}); overlap: {lo['n_low_above_min_high']} low-LL "
        f"above the smallest high-LL σ | "
        f"{'**yes**' if lo['separated'] else ('**mostly** (overlap at the boundary)' if lo['low_sigma_rb_median'] < lo['high_sigma_rb_range'][0] else '**no**')} |")
    if "low_kl" in summary:
        k = summary["low_kl"]
        cells = "; ".join(f"KL ≤ {x['threshold']:g}: {x['n']} models (regimes i/ii/iii: "
                          f"{'/'.join(map(str, x['per_regime']))}), smallest σ "
                          f"{x['min_sigma']:.3g}, {x['n_above_median_sigma']} above the "
                          f"median σ {k['median_sigma']:.3g}" for x in k["thresholds"])
        parts = []
        for x in k["thresholds"]:
            frac = x["n_above_median_sigma"] / x["n"] if x["n"] else float("nan")
            low_regime = x["per_regime"][0] if x["per_regime"] else 0
            v = ("yes" if frac == 1.0 else
                 "mostly" if frac >= 0.8 and low_regime == 0 else "no")
            parts.append(f"**{v}** at KL ≤ {x['threshold']:g}")
        verdict = "; ".join(parts)
        lines.append(f"| low KL occurs only at large σ | {cells}; ρ(σ, KL) = "
                     f"{sp['sigma_rb_vs_kl']:+.2f} | {verdict} |")
    lines.append(
        f"| τ grows with σ, up to about 50 double steps | ρ(σ, τ) = "
        f"{sp['sigma_rb_vs_tau_rb']:+.2f}; largest τ = {tau['max_tau_rb']:.1f} ± "
        f"{tau['max_tau_rb_err']:.1f} (seed {tau['max_tau_rb_seed']}); median τ in the top "
        f"σ tercile {tau['median_tau_rb_top_tercile']:.1f}; {tau['n_tau_rb_above_50']} models "
        f"with τ > 50 | {'**yes** (trend); τ reaches ≈ ' + format(tau['max_tau_rb'], '.0f') + ', about twice the paper' if sp['sigma_rb_vs_tau_rb'] > 0.3 and tau['max_tau_rb'] > 75 else _yn(sp['sigma_rb_vs_tau_rb'] > 0.3)} |")
    lines.append(
        f"| ⟨M_zz⟩ = Tr(M)/L < 1/L for every model | {st['n_below_counts']} of {S} (counts M; "
        f"max {st['max_counts']:.3f}), {st['n_below_rb']} of {S} (RB M; max "
        f"{st['max_rb']:.3f}); 1/L = {st['inv_L']:.3f} | "
        f"{_yn(st['n_below_counts'] == S and st['n_below_rb'] == S)} |")
    b = summary["best"]
    lines.append(
        f"| a good run: two units per digit, near-uniform p̄, one dominant off-diagonal "
        f"entry per row (a cycle) | best run (seed {b['seed']}): units per digit "
        f"{b.get('units_per_digit')}, p̄ {b['p_min']:.3f} … {b['p_max']:.3f}, dominant "
        f"successors {b['successor']} (≥ {b['dominant_fraction']:.0%} of each row's "
        f"off-diagonal mass), one {L}-cycle: {'yes' if b['single_cycle'] else 'no'} | "
        f"{_yn(b.get('two_per_digit', False) and b['single_cycle'] and b['p_max'] - b['p_min'] < 0.1)} |")
    lines.append("")

    lines += ["## Details", "", "### Regimes (Fig. 2c)", "",
              f"Primary method: {reg['description']}.", "",
              "| regime | models | mean LL | LL range | median σ | σ range |",
              "|---|---|---|---|---|---|"]
    for r in rt:
        lines.append(f"| {r['name']} | {r['count']} | {r['mean_loglik']:.2f} | "
                     f"{_fmt_range(r['loglik_range'], '.2f')} | {r['median_sigma']:.3g} | "
                     f"{_fmt_range(r['sigma_range'])} |")
    lines += ["", f"Paper-like shape (median σ increasing over (i), (ii), (iii) and the LL gap "
              f"from (i) to the others larger than the gap between (ii) and (iii)): "
              f"{_yn(reg['paper_like'])}.", "",
              f"Cross-check, {reg2['description']}:", "",
              "| cluster | models | mean LL | LL range | median σ | σ range |",
              "|---|---|---|---|---|---|"]
    for r in _regime_table(reg2):
        lines.append(f"| {r['regime']} | {r['count']} | {r['mean_loglik']:.2f} | "
                     f"{_fmt_range(r['loglik_range'], '.2f')} | {r['median_sigma']:.3g} | "
                     f"{_fmt_range(r['sigma_range'])} |")
    lines += ["", f"Paper-like shape: {_yn(reg2['paper_like'])}. (With standardised "
              "coordinates, k-means weighs the σ spread of the low-LL group as much as the "
              "LL gap, so it may split that group by σ instead of separating the LL levels.)",
              ""]
    lines += ["### Low LL and σ", "",
              f"Count estimator: low-LL models σ_counts {_fmt_range(lo['low_sigma_counts_range'])}, "
              f"high-LL models {_fmt_range(lo['high_sigma_counts_range'])}; separated: "
              f"{_yn(lo['separated_counts'])}. ρ(σ_counts, LL) = "
              f"{sp['sigma_counts_vs_loglik']:+.2f} vs ρ(σ_RB, LL) = "
              f"{sp['sigma_rb_vs_loglik']:+.2f}.", "",
              "By σ_RB tercile:", "",
              "| σ tercile | σ range | median LL | min LL | low-LL models | median KL | "
              "max KL | median τ | median Tr(M)/L |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["sigma_terciles"]:
        lines.append(f"| {r['part']} ({r['n']}) | {_fmt_range(r['sigma_range'])} | "
                     f"{r['loglik_median']:.2f} | {r['loglik_min']:.2f} | {r['n_low_ll']} | "
                     f"{r.get('kl_median', float('nan')):.2g} | "
                     f"{r.get('kl_max', float('nan')):.2g} | {r['tau_median']:.3g} | "
                     f"{r['trM_median']:.3g} |")
    lines.append("")
    if "low_kl" in summary:
        k = summary["low_kl"]
        lines += ["### KL (Fig. 4a)", "",
                  f"KL ranges over {_fmt_range(k['kl_range'])} nats; median KL per regime "
                  f"(i)/(ii)/(iii): " + " / ".join(f"{v:.2g}" for v in
                                                   k["kl_median_per_regime"]) + ".", "",
                  "| KL threshold (nats) | models at or below | of them with σ above the "
                  "median | smallest σ among them | per regime (i)/(ii)/(iii) |",
                  "|---|---|---|---|---|"]
        for x in k["thresholds"]:
            lines.append(f"| {x['threshold']:g} | {x['n']} | {x['n_above_median_sigma']} | "
                         f"{x['min_sigma']:.3g} | {'/'.join(map(str, x['per_regime']))} |")
        lines.append("")
    lines += ["### τ (Fig. 4b)", "",
              f"Largest finite τ_counts = {tau['max_tau_counts']:.1f}; τ = ∞ (periodic M): "
              f"{tau['n_infinite_rb']} (RB), {tau['n_infinite_counts']} (counts). "
              f"ρ(σ_counts, τ_counts) = {sp['sigma_counts_vs_tau_counts']:+.2f}.", ""]
    lines += ["### Structure of the runs (Fig. 3)", ""]
    for tag, r in (("Best", summary["best"]), ("Worst", summary["worst"])):
        s = (f"* {tag} run: seed {r['seed']}, LL {r['loglik']:.2f}, σ {r['sigma_rb']:.3g}, "
             f"p̄ {r['p_min']:.3f} … {r['p_max']:.3f}")
        if "units_per_digit" in r:
            s += f", hidden units per digit {r['units_per_digit']}"
        s += (f", dominant successor of each state {r['successor']} (at least "
              f"{r['dominant_fraction']:.0%} of the row's off-diagonal mass), one {L}-cycle: "
              f"{'yes' if r['single_cycle'] else 'no'}.")
        lines.append(s)
    lines += ["", "| regime | models | two units per digit | p̄ within 0.05 of uniform | "
              f"dominant successors form one {L}-cycle |", "|---|---|---|---|---|"]
    for r in summary["structure_per_regime"]:
        lines.append(f"| {REGIME_NAMES.get(r['regime'], r['regime'])} | {r['n']} | "
                     f"{r['n_two_per_digit']} | {r['n_near_uniform']} | {r['n_single_cycle']} |")
    lines += ["", "### Spearman rank correlations (over all models)", "", "| pair | ρ |",
              "|---|---|"]
    for key, v in sp.items():
        lines.append(f"| {key.replace('_vs_', ' vs ')} | {v:+.3f} |")
    lines += ["", "## Notes", "",
              "* Which seed lands in which regime is not stable under float round-off: "
              "training the same seeds with a different number of XLA CPU devices "
              "(`--cpu-devices`, default: the core count) changes the last bits of a logit, "
              "which flips an occasional Bernoulli draw and sends the chain on another path. "
              "Compare ensembles (regime counts, correlations), not individual seeds.",
              "* The per-epoch curves of Fig. 2(a, b) come from the training chain itself "
              "(30 × 48 double steps per epoch, parameters drifting), so they are noisier "
              "than the final diagnostics (long chains at fixed parameters).",
              "", "## Files", "",
              "* `fig2.png/pdf`, `fig3.png/pdf`, `fig4.png/pdf` — Figs. 2–4 (σ: "
              "Rao–Blackwellised; `ncl figures DIR --estimator counts` redraws them with the "
              "count estimator).",
              "* `metrics.csv` — one row per seed: regime, final LL ± err, on-the-fly and "
              "monitored LL of the last epoch, σ_RB ± err, σ_counts ± err, τ ± err (both), "
              "Tr(M)/L (both), KL ± err, KL_soft ± err, p̄ and digit of each unit.",
              "* `config.json` — train and diagnostics configuration, seeds, timings.",
              "* `diagnostics.npz` — all diagnostics arrays, the training history and the "
              "Fig. 3 samples (`ncl figures` redraws from it).", ""]
    return "\n".join(lines)
