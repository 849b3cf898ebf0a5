"""Reproduce the paper's experiment end to end: train, diagnose, plot, report
(orchestration; the parts live in their own modules).

* :func:`reproduce` — trains the 36-seed ensemble of Sect. IV A on the bundled data,
  saves it (``out_dir/ensemble``, :func:`ncl.io.save_run`), runs
  :func:`ncl.diagnostics.diagnose_ensemble` with the shipped digit classifier and
  writes into ``out_dir`` (file names and the npz schema: :mod:`ncl.artifacts`):

  - ``fig2``, ``fig3``, ``fig4`` (``.png`` and ``.pdf``), the paper's Figs. 2–4
    (:func:`ncl.figures.make_figures`);
  - ``metrics.csv`` — one row per seed (:func:`ncl.report.metrics_rows`);
  - ``config.json`` — train and diagnostics configs, seeds, timings, load average;
  - ``diagnostics.npz`` — every :class:`~ncl.diagnostics.Diagnostics` array, the
    training history and the Fig. 3 samples, so ``make_figures`` needs nothing else;
  - ``REPORT.md`` — each claim of the paper next to what this run measured
    (:func:`ncl.report.render_report`).

* :func:`diagnose_run` — the same, from a saved run (no retraining).

Analysis: :mod:`ncl.levels` (the likelihood levels), :mod:`ncl.claims` (each claim as a
test), :mod:`ncl.analysis` (:func:`~ncl.analysis.analyse`), :mod:`ncl.report` (REPORT.md).
The held-out log-likelihood uses the MNIST test images of the run's digits
(:func:`ncl.data.load_heldout_data` for 0, 1, 2), recorded as ``heldout`` in
``config.json``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ncl import _validate as _v
from ncl.artifacts import (CONFIG_FILE, DIAGNOSTICS_FILE, ENSEMBLE_DIR, METRICS_FILE,
                           REPORT_FILE, diagnostics_arrays, history_arrays, write_json)
from ncl.diagnostics import DiagnosticsConfig
from ncl.figures import fig3_arrays, make_figures
from ncl.metrics import combine, run_metrics
from ncl.progress import EpochProgress, Log
from ncl.report import analyse, metrics_rows, write_metrics_csv, write_report
from ncl.training import TrainConfig


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


# ----------------------------------------------------------------------------- timings

def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover
        return None


# ----------------------------------------------------------------------------- outputs

def check_reproduce_out(out_dir, overwrite: bool = False) -> None:
    """``ValueError`` (before any work) when a reproduction must not be written to
    ``out_dir``: it holds one and ``overwrite`` is false, or it holds another saved run
    (e.g. of ``ncl train``: never replaced)."""
    from ncl import io
    out = Path(out_dir)
    if (out / io.CONFIG_FILE).exists() or io.holds_run_files(out / ENSEMBLE_DIR):
        if not overwrite:
            raise ValueError(f"{out} already holds a reproduction; choose another --out or "
                             "pass --overwrite")
    foreign = [n for n in io.holds_run_files(out) if n != io.CONFIG_FILE]
    if foreign:
        raise ValueError(f"{out} holds a saved run ({', '.join(foreign)}), not a "
                         "reproduction; choose another --out")


def divergence_error(out_dir) -> str | None:
    """``ncl reproduce``'s error message when training diverged (non-finite parameters)
    for some seeds of the ensemble saved in ``out_dir``; ``None`` when none did."""
    from ncl import io
    hist = np.load(Path(out_dir) / ENSEMBLE_DIR / io.HISTORY_FILE)
    if np.asarray(hist["finite"]).all():
        return None
    return ("ncl reproduce: ERROR: training diverged (non-finite parameters) for some "
            "seeds; see metrics.csv (column finite)")


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


def _heldout_for(digits, log) -> tuple[np.ndarray | None, dict]:
    """The held-out images for a run on ``digits`` and what to record of them: the bundled
    MNIST test images of 0, 1, 2 for the paper's digits, else the MNIST test split of
    ``digits`` when its files are available (``None`` with a reason otherwise)."""
    from ncl import data as data_lib
    digits = tuple(int(d) for d in digits)
    if digits == (0, 1, 2):
        x, _ = data_lib.load_heldout_data()
        return x, {"source": "bundled MNIST test images of digits 0, 1, 2 (ncl/_data)",
                   "digits": list(digits), "n_images": int(x.shape[0])}
    try:
        x, _ = data_lib.load_digits(digits, per_digit=None, split="test", download=False)
    except Exception as e:  # no MNIST test files here: the held-out LL is skipped
        log(f"warning: no MNIST test images for digits {digits} ({e}); the held-out "
            "log-likelihood is skipped")
        return None, {"digits": list(digits), "n_images": 0,
                      "reason": f"no MNIST test files for digits {list(digits)}"}
    return x, {"source": f"MNIST test split, digits {list(digits)}", "digits": list(digits),
               "n_images": int(x.shape[0])}


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
    x_heldout, heldout_info = _heldout_for(digits, log)
    S = len(seeds)
    log(f"diagnostics: {S} models, {dcfg.burn_in} burn-in + {dcfg.n_steps} recorded double "
        f"steps in {dcfg.n_chains} chains, K={dcfg.rb_samples} RB samples per state ...")
    t0 = time.perf_counter()
    key = jax.random.key(key_seed)
    k_diag, k_fig = jax.random.split(key)
    d = dg.diagnose_ensemble(k_diag, params, centers, train_config.model, x, dcfg, labels,
                             classifier, heldout=x_heldout)
    timings["diagnose_seconds"] = time.perf_counter() - t0
    timings["load_average_after_diagnose"] = _loadavg()
    log(f"diagnostics: done in {timings['diagnose_seconds']:.1f} s")

    arrays = {"seeds": np.asarray(seeds), "n_hidden": np.asarray(train_config.model.n_hidden)}
    arrays.update(diagnostics_arrays(d))
    arrays.update(history_arrays(history))
    arrays.update(fig3_arrays(k_fig, params, np.asarray(centers), train_config.model,
                              np.asarray(x, np.float32), d.loglik, seeds))
    if classifier is not None:
        arrays["classifier_digits"] = np.asarray(classifier.classes)
    np.savez_compressed(out_dir / DIAGNOSTICS_FILE, **arrays)

    summary = analyse(arrays)
    rows = metrics_rows(arrays, np.asarray(summary["level_labels"]))
    write_metrics_csv(out_dir / METRICS_FILE, rows)
    cfg = {
        "train_config": train_config.to_dict(),
        "diagnostics_config": dataclasses.asdict(dcfg),
        "seeds": [int(s) for s in seeds],
        "key_seed": int(key_seed),
        "run_dir": None if run_dir is None else os.path.relpath(run_dir, out_dir),
        "data": data_info or {},
        "heldout": heldout_info,
        "timings": timings,
        "cpu_count": os.cpu_count(),
        "provenance": _provenance(),
        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out_dir / CONFIG_FILE, cfg)
    if figures:
        make_figures(out_dir, estimator=estimator, log=log,
                     levels=np.asarray(summary["level_labels"]))
    write_report(out_dir, summary)
    log(f"wrote {out_dir / METRICS_FILE}, {out_dir / REPORT_FILE}, {out_dir / DIAGNOSTICS_FILE}")
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
        (:class:`ncl.progress.EpochProgress`), ``False`` for none, or a callable
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
    log = Log(quiet or progress is False)
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
    stream = run_metrics(out_dir / ENSEMBLE_DIR, seeds)   # ensemble/metrics.jsonl, per epoch
    try:
        state, history = train_ensemble(seeds, x, config, progress=combine(cb, stream))
        jax.block_until_ready(state)
    finally:
        stream.close()
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
            raise ValueError(f"{run_dir} holds a single model; diagnostics need an "
                             "ensemble") from None
        (log or Log(True))(f"warning: {e}; reading only the parameters (enough for the "
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
    log = Log(quiet)
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
