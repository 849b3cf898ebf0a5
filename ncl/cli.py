"""Command line: ``ncl train``, ``sweep``, ``reproduce``, ``diagnose``, ``figures``,
``compare`` — the parser and the dispatch to the workflows (:mod:`ncl.checkpointing`,
:mod:`ncl.sweep`, :mod:`ncl.reproduce`, :mod:`ncl.figures`, :mod:`ncl.compare`); the
options themselves are :mod:`ncl.options`.

JAX is imported only inside the commands, after the CPU device count (and
``jax.distributed``) is configured.

Exit codes: 0 success, 1 failure (bad data, diverged run, I/O), 2 usage error.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ncl.options import (HelpFormatter, UsageError, add_data_arguments,
                         add_diagnostics_arguments, add_distributed_arguments,
                         add_output_arguments, add_train_arguments, check_batch_against_data,
                         check_no_run_files, check_output_directory, config_from_args,
                         dcfg_from_args, load_data_from_args, positive_float, positive_int,
                         quick_train_config, seeds_from_args, too_large_to_tabulate)
from ncl.progress import EpochProgress, Log

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


# ----------------------------------------------------------------------------- devices


def configure_distributed(args) -> int:
    """``jax.distributed.initialize`` from ``--coordinator/--num-processes/--process-id``
    (all three or none; CPU collectives over Gloo). Returns this process's index."""
    given = [getattr(args, k, None) is not None
             for k in ("coordinator", "num_processes", "process_id")]
    if not any(given):
        return 0
    if not all(given):
        raise UsageError("--coordinator, --num-processes and --process-id go together; "
                         "give all three (or none for a single process)")
    if not 0 <= args.process_id < args.num_processes:
        raise UsageError(f"--process-id must be in 0 .. {args.num_processes - 1} "
                         f"(--num-processes {args.num_processes}), got {args.process_id}")
    if ":" not in args.coordinator:
        raise UsageError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator,
                               num_processes=args.num_processes, process_id=args.process_id)
    return jax.process_index()


def configure_cpu_devices(n: int | None, start: bool = True) -> int:
    """Ask JAX for ``n`` CPU devices (default: the core count) before it starts.

    Returns the number in effect; when JAX's backends are already running (e.g. the CLI
    called from a Python session) the setting cannot change and is left alone. With
    ``start=False`` JAX is not started (``jax.distributed.initialize`` must come first) and
    the requested number is returned.
    """
    import os

    import jax

    from ncl._compat import set_num_cpu_devices
    n = n or os.cpu_count() or 1
    try:
        set_num_cpu_devices(int(n))
    except RuntimeError:
        pass
    return len(jax.local_devices()) if start else int(n)


# ----------------------------------------------------------------------------- commands


def _start_training_processes(args, cpu_devices, log):
    """CPU device count, then ``jax.distributed`` if asked (before JAX starts). Returns the
    log function to use: silent in every process but process 0, which prints and writes."""
    configure_cpu_devices(cpu_devices, start=False)
    if configure_distributed(args) == 0:
        return log
    args.quiet = True
    return lambda *a: None


def cmd_train(args) -> int:
    from ncl import io
    log = Log(args.quiet)
    if args.resume:
        return _resume_train(args, log)
    config = config_from_args(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; choose another --out")
    check_no_run_files(out, args.overwrite)
    seeds = seeds_from_args(args.first_seed, args.seeds)
    log = _start_training_processes(args, args.cpu_devices, log)
    import jax

    from ncl.checkpointing import data_digest
    n_dev = jax.local_device_count()
    x, _, info = load_data_from_args(args)
    check_batch_against_data([config], x.shape[0])
    check_output_directory(out)
    info["sha256"] = data_digest(x)
    extra = {"cpu_devices": n_dev}
    if args.overwrite and jax.process_index() == 0:
        for name in (io.MANIFEST_FILE, io.CONFIG_FILE, io.CHECKPOINT_FILE):
            (out / name).unlink(missing_ok=True)  # the old run is uncommitted from now on
    return _run_training(out, config, seeds, x, info, extra, 0, None, None, args, log)


def _resume_train(args, log) -> int:
    from ncl import io
    out = Path(args.resume)
    if not out.is_dir():
        raise UsageError(f"--resume {out}: no such directory; give the --out directory of "
                         "an interrupted `ncl train`")
    meta = io.read_checkpoint_meta(out)  # NumPy only: JAX must not start before its devices
    extra = dict(meta.get("extra", {}))
    log = _start_training_processes(args, args.cpu_devices or extra.get("cpu_devices"), log)
    check_output_directory(out, "--resume")
    from ncl.checkpointing import load_resume_data
    run = io.load_checkpoint(out)
    x = load_resume_data(out, run.meta["data"], args.mnist_dir)
    done = int(run.meta["epochs_done"])
    log(f"ncl train --resume: {out}, {done}/{run.config.epochs} epochs done")
    return _run_training(out, run.config, list(run.seeds), x, run.meta["data"], extra, done,
                         run.state, run.history, args, log)


def _run_training(out, config, seeds, x, info, extra, start, state, prior, args, log) -> int:
    """``ncl train`` (fresh or resumed): :func:`ncl.checkpointing.train_and_save`, then
    the exit code."""
    from ncl.checkpointing import train_and_save
    return _exit_after_training(train_and_save(
        out, config, seeds, x, info, extra, start, state, prior,
        checkpoint_every=args.checkpoint_every, quiet=args.quiet, log=log))


def _exit_after_training(error: str | None, diverged: bool | None = None) -> int:
    """The exit code of every command that trains: ``EXIT_FAILURE`` when some member
    diverged — ``error``, the message naming them, is then printed (even with
    ``--quiet``) —, else ``EXIT_OK``. ``diverged`` is given instead by a command whose
    output files say which members diverged (``compare``)."""
    if diverged is None:
        diverged = error is not None
    if error:
        print(error, file=sys.stderr)
    return EXIT_FAILURE if diverged else EXIT_OK


# --------------------------------------------------------------------- reproduce, diagnose, figures


def cmd_reproduce(args) -> int:
    configure_cpu_devices(args.cpu_devices)
    from ncl.reproduce import (check_reproduce_out, divergence_error,
                               paper_diagnostics_config, quick_protocol, reproduce)
    if args.quick:
        config = quick_train_config(args)
        dcfg = dcfg_from_args(args, quick_protocol()[1])
        n_seeds = args.seeds if args.seeds is not None else 3
    else:
        config = config_from_args(args)
        dcfg = dcfg_from_args(args, paper_diagnostics_config())
        n_seeds = args.seeds if args.seeds is not None else 36
    from ncl.diagnostics import check_enumerable
    try:
        check_enumerable(config.model)
    except ValueError as e:
        raise UsageError(f"-L/--hidden: {e}") from None
    x, y, info = load_data_from_args(args)
    check_batch_against_data([config], x.shape[0])
    seeds = seeds_from_args(args.first_seed, n_seeds)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; choose another --out")
    try:
        check_reproduce_out(out, args.overwrite)
    except ValueError as e:
        raise UsageError(str(e)) from None
    check_output_directory(out)
    t0 = time.perf_counter()
    progress = EpochProgress(config.epochs, quiet=args.quiet)
    reproduce(out, seeds=seeds, config=config, dcfg=dcfg, data=x, labels=y,
              key_seed=args.key_seed, progress=progress, estimator=args.estimator,
              quiet=args.quiet, data_info=info)
    Log(args.quiet)(f"ncl reproduce: done in {time.perf_counter() - t0:.1f}s; see "
                    f"{out / 'REPORT.md'}")
    return _exit_after_training(divergence_error(out))


def cmd_diagnose(args) -> int:
    from ncl.reproduce import (check_diagnostics_out, diagnose_run,
                               paper_diagnostics_config, quick_protocol)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"RUN_DIR {run_dir}: no such directory; give a run saved by "
                         "`ncl train --out` or an `ncl reproduce` output directory")
    if not (run_dir / "config.json").exists() and (run_dir / "ensemble" / "config.json").exists():
        run_dir = run_dir / "ensemble"  # an `ncl reproduce` output directory
    out = Path(args.out) if args.out else run_dir.parent / (run_dir.name + "-diagnostics") \
        if run_dir.name != "ensemble" else run_dir.parent
    too_large = too_large_to_tabulate(run_dir)
    if args.chain_diagnostics or too_large:
        return _chain_diagnose(args, run_dir, out, too_large)
    base = quick_protocol()[1] if args.quick else paper_diagnostics_config()
    dcfg = dcfg_from_args(args, base)
    try:
        check_diagnostics_out(out, args.overwrite)
    except ValueError as e:
        raise UsageError(f"--out: {e}") from None
    diagnose_run(run_dir, out, dcfg=dcfg, key_seed=args.key_seed, estimator=args.estimator,
                 figures=not args.no_figures, quiet=args.quiet, overwrite=args.overwrite)
    Log(args.quiet)(f"ncl diagnose: wrote {out}")
    return EXIT_OK


def _chain_metrics_rows(d, seeds, digits, finite) -> list[dict]:
    """One row per member: every scalar field of :class:`ChainDiagnostics`, the per-class
    arrays as ``<field>_<digit>``."""
    rows = []
    for i, seed in enumerate(seeds):
        row = {"seed": int(seed), "finite": int(finite[i])}
        for k, v in d._asdict().items():
            v = np.asarray(v[i])
            if v.ndim == 0:
                row[k] = float(v)
            else:
                row.update({f"{k}_{dg}": float(x) for dg, x in zip(digits, v)})
        rows.append(row)
    return rows


def _write_csv_atomically(path: Path, rows: list[dict]) -> None:
    import csv
    import io as _io

    from ncl._atomic import atomic_write
    text = _io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def _median_range(v) -> str:
    v = np.asarray(v, np.float64)
    ok = v[np.isfinite(v)]
    if ok.size == 0:
        return "nan"
    med, lo, hi = np.median(ok), ok.min(), ok.max()
    extra = "" if ok.size == v.size else f" ({v.size - ok.size} not finite)"
    return f"{med:.4g} [{lo:.4g}, {hi:.4g}]{extra}"


def _chain_diagnose(args, run_dir: Path, out: Path, too_large: bool) -> int:
    """``ncl diagnose`` from the chains alone (:func:`ncl.chain_diagnostics.
    chain_diagnose_ensemble`): ``OUT/chain_diagnostics.npz`` and ``OUT/chain_metrics.csv``."""
    import dataclasses
    import json
    import os

    from ncl.artifacts import CHAIN_DIAGNOSTICS_FILE, CHAIN_METRICS_FILE
    from ncl.options import chain_classifier, chain_config_from_args
    from ncl.reproduce import (_heldout_for, _load_data_for, check_diagnostics_out,
                               load_run_parameters)
    log = Log(args.quiet)
    ccfg = chain_config_from_args(args, args.quick)
    try:
        check_diagnostics_out(out, overwrite=True)  # a file or a saved run: never
    except ValueError as e:
        raise UsageError(f"--out: {e}") from None
    earlier = [n for n in (CHAIN_DIAGNOSTICS_FILE, CHAIN_METRICS_FILE) if (out / n).exists()]
    if earlier and not args.overwrite:
        raise UsageError(f"--out: {out} already holds chain diagnostics ({', '.join(earlier)})"
                         "; pass --overwrite to replace them, or choose another --out")
    check_output_directory(out)
    import jax

    from ncl import chain_diagnostics as cdg
    from ncl.io import provenance
    run = load_run_parameters(run_dir, log)
    model = run.config.model
    x, labels, digits = _load_data_for(run.meta.get("data"))
    classifier = chain_classifier(digits, log)
    heldout, heldout_info = _heldout_for(digits, log)
    params = jax.tree_util.tree_map(np.asarray, run.params)
    centers = np.asarray(run.center)
    seeds = list(run.seeds)
    S = (f"2**{model.n_hidden} = {2 ** model.n_hidden}" if model.hidden == "binary"
         else str(model.n_hidden))
    why = ("too many to tabulate M" if too_large else "--chain-diagnostics")
    log(f"chain diagnostics ({model.hidden} L = {model.n_hidden}: {S} hidden states, {why})"
        f": {len(seeds)} models, {ccfg.n_chains} chains x ({ccfg.burn_in} burn-in + "
        f"{ccfg.n_steps} recorded) double steps, K={ccfg.rb_samples} ...")
    t0 = time.perf_counter()
    d = cdg.chain_diagnose_ensemble(jax.random.key(args.key_seed), params, centers, model, x,
                                    labels, classifier, heldout=heldout, cfg=ccfg)
    d = jax.tree_util.tree_map(np.asarray, d)
    wall = time.perf_counter() - t0
    log(f"chain diagnostics: done in {wall:.1f} s")

    finite = np.asarray(getattr(run.history, "finite", np.ones((len(seeds), 1))), bool)
    finite = finite.reshape(len(seeds), -1).all(axis=1)
    class_digits = [int(c) for c in np.asarray(classifier.classes)]
    settings = {
        "chain_diagnostics_config": dataclasses.asdict(ccfg),
        "train_config": run.config.to_dict(), "seeds": [int(s) for s in seeds],
        "key_seed": int(args.key_seed), "run_dir": os.path.relpath(run_dir, out),
        "data": run.meta.get("data") or {}, "heldout": heldout_info,
        "classifier_digits": class_digits, "seconds": wall, "provenance": provenance()}
    arrays = {"seeds": np.asarray(seeds), "n_hidden": np.asarray(model.n_hidden),
              "classifier_digits": np.asarray(class_digits),
              "finite": finite.astype(np.int8),
              "settings_json": np.asarray(json.dumps(settings, default=str))}
    arrays.update({f"chain_{k}": np.asarray(v) for k, v in d._asdict().items()})
    from ncl._atomic import atomic_write
    atomic_write(out / CHAIN_DIAGNOSTICS_FILE, lambda f: np.savez_compressed(f, **arrays))
    _write_csv_atomically(out / CHAIN_METRICS_FILE,
                          _chain_metrics_rows(d, seeds, class_digits, finite))
    for label, v, err in (
            ("sigma (nats/double step)", d.sigma, d.sigma_err),
            ("hidden decorrelation tau", d.hidden_tau, d.hidden_tau_err),
            ("class decorrelation tau", d.class_tau, d.class_tau_err),
            ("sample class KL", d.sample_kl, d.sample_kl_err),
            ("confidently classified", d.confident, d.confident_err),
            ("class irreversibility", d.class_irreversibility, d.class_irreversibility_err),
            ("loglik given occupancy", d.loglik, None),
            ("held-out loglik", d.loglik_heldout, None)):
        shown = _median_range(v)
        if err is not None and shown != "nan":
            shown += f", median error {np.nanmedian(err):.2g}"
        log(f"  {label:26s} median [min, max] over models: {shown}")
    if np.any(d.rb_ess_mean < 2):
        log(f"  warning: RB effective draws {_median_range(d.rb_ess_mean)} (of "
            f"K={ccfg.rb_samples}): sigma is unreliable; raise --rb-samples")
    log(f"ncl diagnose: wrote {out / CHAIN_DIAGNOSTICS_FILE}, {out / CHAIN_METRICS_FILE}")
    return EXIT_OK


def cmd_figures(args) -> int:
    from ncl.artifacts import DIAGNOSTICS_FILE
    from ncl.figures import make_figures
    out = Path(args.out_dir)
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes must be at least 1, got {args.processes}; leave it "
                         "out for one process per figure")
    if not (out / DIAGNOSTICS_FILE).exists():
        raise UsageError(f"{out / DIAGNOSTICS_FILE} not found; run `ncl reproduce` or "
                         "`ncl diagnose` first")
    paths = make_figures(out, estimator=args.estimator, log=Log(args.quiet),
                         heldout=args.heldout, processes=args.processes)
    if not args.quiet:
        for p in paths:
            print(p)
    return EXIT_OK


def cmd_sweep(args) -> int:
    """``ncl sweep``: a grid of settings × seeds, one compiled program per shape."""
    from ncl import sweep as sweep_lib
    try:
        grid = sweep_lib.parse_grid(args.grid)
        base = config_from_args(args)
        seeds = seeds_from_args(args.first_seed, args.seeds)
        members = sweep_lib.expand(base, grid, seeds)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--grid: {e}") from None
    out = Path(args.out)
    if (out / "sweep.csv").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a sweep; choose another --out or --overwrite")
    check_no_run_files(out, False, "a run")
    check_output_directory(out)
    configure_cpu_devices(args.cpu_devices)
    x, _, info = load_data_from_args(args)
    check_batch_against_data([m.config for m in members], x.shape[0])
    log = Log(args.quiet)
    group_configs = list(sweep_lib.group_members(members))
    log(f"ncl sweep: {len(members)} members ({len(seeds)} seeds x "
        f"{len(members) // len(seeds)} grid points) in {len(group_configs)} compiled group(s)")
    printers = [EpochProgress(cfg.epochs, quiet=args.quiet) for cfg in group_configs]
    from ncl.metrics import run_metrics
    groups = list(sweep_lib.group_members(members).values())
    streams = [run_metrics(out / f"group_{gi:02d}", [m.seed for m in group])
               for gi, group in enumerate(groups)]      # group_NN/metrics.jsonl, per epoch

    def progress(gi, epoch, row):
        printers[gi](epoch, row)
        streams[gi](epoch, row)

    t0 = time.perf_counter()
    try:
        results = sweep_lib.train_sweep(members, x, progress=progress)
    finally:
        for stream in streams:
            stream.close()
    wall = time.perf_counter() - t0
    rows = sweep_lib.save_sweep(out, results, data_info=info, grid=args.grid, seeds=seeds,
                                base=base, wall=wall)
    log(f"sweep trained in {wall:.1f}s; {out / 'sweep.csv'} has one row per member")
    return _exit_after_training(sweep_lib.divergence_error(rows, out))


# ----------------------------------------------------------------------------- compare

def cmd_compare(args) -> int:
    """``ncl compare``: NCL vs RBM ensembles, same protocol and seeds (:mod:`ncl.compare`)."""
    import dataclasses

    from ncl import compare as compare_lib
    from ncl import compare_report
    from ncl.reproduce import paper_diagnostics_config
    config = config_from_args(args)
    dcfg = dcfg_from_args(args, paper_diagnostics_config())
    out = Path(args.out)
    if (out / "compare.md").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a comparison; choose another --out or pass "
                         "--overwrite")
    check_no_run_files(out, False, "a run")
    try:
        over = {k: v for k, v in (("sample_chains", args.sample_chains),
                                  ("sample_start", args.sample_start),
                                  ("confidence", args.confidence),
                                  ("n_boot", args.bootstrap)) if v is not None}
        cfg = dataclasses.replace(
            compare_lib.CompareConfig(), train=config, n_seeds=args.seeds,
            first_seed=args.first_seed, rbm_learning_rates=tuple(args.rbm_lr or ()),
            rbm_exact=args.rbm_exact, diagnostics=dcfg, key_seed=args.key_seed, **over)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    configure_cpu_devices(args.cpu_devices)
    x, y, info = load_data_from_args(args)
    check_output_directory(out)
    log = Log(args.quiet)
    t0 = time.perf_counter()
    comp = compare_lib.run_comparison(
        cfg, x, y, log=log,
        progress_factory=lambda arm: EpochProgress(arm.config.epochs, quiet=args.quiet),
        save_runs_to=(out / "runs") if args.save_runs else None)
    paths = compare_report.write_outputs(comp, out, figure=not args.no_figure)
    log(f"ncl compare: done in {time.perf_counter() - t0:.1f}s; see {paths['markdown']}")
    if not args.quiet:
        print(paths["markdown"].read_text())
    return _exit_after_training(None, diverged=not all(np.all(r.metrics["finite"] == 1)
                                                       for r in comp.arms))


def build_parser() -> argparse.ArgumentParser:
    import ncl
    parser = argparse.ArgumentParser(
        prog="ncl", formatter_class=HelpFormatter,
        description="Nonequilibrium latent-cycle generative models (Baiesi & Rosso, "
                    "arXiv:2512.11415): train seed ensembles, diagnose, reproduce the paper.",
        epilog="Compiled XLA programs are cached between runs in ~/.cache/ncl/jax "
               "(NCL_COMPILE_CACHE_DIR moves it, NCL_NO_COMPILE_CACHE=1 turns it off). "
               "Training runs write OUT/metrics.jsonl, one line per epoch per seed "
               "(NCL_TENSORBOARD=1 adds TensorBoard event files).")
    parser.add_argument("--version", action="version", version=f"ncl {ncl.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an ensemble of seeds and save it",
                       formatter_class=HelpFormatter)
    add_train_arguments(p)
    add_data_arguments(p)
    add_distributed_arguments(p)
    p.add_argument("--out", default="runs/train", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a run saved in --out")
    p.add_argument("--checkpoint-every", type=positive_int, default=10,
                   help="write OUT/checkpoint.npz (atomically) every this many epochs")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR from its checkpoint (its saved "
                        "config, seeds and data are used; the result equals an "
                        "uninterrupted run bit for bit)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train a grid of settings x seeds (one compiled "
                       "program per shape) and tabulate the results",
                       formatter_class=HelpFormatter)
    p.add_argument("--grid", required=True,
                   help='settings to sweep, e.g. "lr=0.03,0.1,0.3 T=24,48 centering=on,off '
                        'recognition=paper,softmax L=6,10"')
    add_train_arguments(p)
    add_data_arguments(p)
    add_output_arguments(p, "runs/sweep", "a sweep saved in --out")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("reproduce", help="the paper's experiment end to end: train the "
                       "ensemble, diagnose, Figs. 2-4, metrics.csv, REPORT.md",
                       formatter_class=HelpFormatter)
    add_train_arguments(p)
    p.set_defaults(seeds=None)
    add_data_arguments(p)
    add_diagnostics_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help="reduced protocol for smoke tests (3 seeds, 3 short epochs, short "
                        "diagnostics); explicit options still win")
    add_output_arguments(p, "runs/reproduce")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("diagnose", help="diagnose a saved ensemble (no retraining) and "
                       "write figures, metrics.csv, REPORT.md (chain diagnostics for "
                       "hidden spaces too large to tabulate)",
                       formatter_class=HelpFormatter,
                       description="Diagnose a saved ensemble without retraining. Where the "
                       "hidden space can be tabulated (one-hot, or binary L <= 12) the "
                       "latent transition matrix M is estimated and the paper's diagnostics, "
                       "Figs. 2-4, metrics.csv and REPORT.md are written. For binary L > 12 "
                       "(or with --chain-diagnostics) only the chains are used "
                       "(ncl.chain_diagnostics): sigma from the hidden trajectory "
                       "(Rao-Blackwellised, bias-corrected, batch-means error), the "
                       "decorrelation time of the hidden vector and of the generated digit "
                       "classes, class IAT/ESS, the class frequencies, KL and confident "
                       "fraction of the generated images, the class-pair irreversibility (a "
                       "lower bound on the visible chain's entropy production) and the "
                       "log-likelihood given the chains' occupancy (up to binary L = 16; nan "
                       "beyond), written to OUT/chain_diagnostics.npz and "
                       "OUT/chain_metrics.csv (one row per model); there the diagnostics "
                       "options set the chains (--diag-steps: total over the chains; "
                       "defaults 16 chains x (1000 burn-in + 2000) double steps, K = 16 "
                       "draws per visited state).")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run saved by `ncl train` (or an `ncl reproduce` output directory)")
    p.add_argument("--out", default=None,
                   help="output directory (default: RUN_DIR-diagnostics; for a reproduce "
                        "directory, that directory)")
    add_diagnostics_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help="short diagnostics for smoke tests (those of `ncl reproduce --quick`"
                        "; chain diagnostics: 4 chains x (50 burn-in + 400) double steps, "
                        "K = 8, log-likelihoods on the first 500 images)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--chain-diagnostics", action="store_true",
                   help="use the chain diagnostics (no M table) for any model; they are "
                        "used anyway where M cannot be tabulated (binary L > 12)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier diagnostics in --out (never a saved run's files)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("figures", help="redraw Figs. 2-4 from OUT_DIR/diagnostics.npz",
                       formatter_class=HelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="output of `ncl reproduce`/`diagnose`")
    p.add_argument("--estimator", choices=("rb", "counts"), default="rb",
                   help="sigma estimator shown (rb: Rao-Blackwellised; counts: the paper's)")
    p.add_argument("--heldout", action="store_true",
                   help="Fig. 2c shows the held-out log-likelihood instead of the training one")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="processes drawing the figures side by side (default: one per "
                   "figure, at most the core count; 1: one after the other)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("compare", help="train NCL and RBM ensembles with the same protocol "
                       "and seeds, diagnose both, write a table (CSV + Markdown) and figure",
                       formatter_class=HelpFormatter)
    add_train_arguments(p)
    add_data_arguments(p)
    add_diagnostics_arguments(p)
    g = p.add_argument_group("comparison")
    g.add_argument("--rbm-lr", type=positive_float, action="append", default=None,
                   metavar="LR", help="add an RBM arm with this learning rate (repeatable)")
    g.add_argument("--rbm-exact", action="store_true",
                   help="add an RBM arm trained with its exact log-likelihood gradient")
    g.add_argument("--sample-chains", type=positive_int, default=None,
                   help="sampling chains per model, 10 images each (default: 100)")
    g.add_argument("--sample-start", choices=("noise", "data"), default=None,
                   help="start of the sampling chains (default: noise)")
    g.add_argument("--confidence", type=float, default=None,
                   help="max class probability of a confidently classified sample "
                        "(default: 0.9)")
    g.add_argument("--bootstrap", type=positive_int, default=None,
                   help="bootstrap resamples (default: 4000)")
    p.add_argument("--save-runs", action="store_true",
                   help="also save every trained ensemble under OUT/runs/")
    p.add_argument("--no-figure", action="store_true", help="skip compare.png")
    add_output_arguments(p, "runs/compare")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    # compiled programs persist between runs (a second run loads them instead of compiling
    # again): on by default, NCL_NO_COMPILE_CACHE=1 turns it off (see ncl._compat); only
    # for this command, so a notebook calling main() keeps its own JAX cache settings
    from ncl._compat import compilation_cache
    try:
        with compilation_cache():
            return args.func(args)
    except UsageError as e:
        print(f"ncl {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ncl {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except (ValueError, OSError, RuntimeError) as e:
        print(f"ncl {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
