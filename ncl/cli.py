"""Command line: ``ncl train`` (and further subcommands).

Exit codes: 0 success, 1 failure (bad data, diverged run, I/O), 2 usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, once (help texts that already name it are kept)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


# ----------------------------------------------------------------------------- helpers

def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {v}")
    return v


def _read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"--config: file {path} does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise UsageError("--config: TOML needs Python >= 3.11; use a JSON file")
            return tomllib.loads(text)
        return json.loads(text)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"--config: cannot parse {path}: {e}")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--digits", type=_int_list, default=(0, 1, 2),
                   help="digit classes to model (default: 0,1,2, the paper's)")
    g.add_argument("--per-digit", type=_positive_int, default=1000,
                   help="first N training images of each digit (default: 1000)")
    g.add_argument("--mnist-dir", default=None,
                   help="directory with the MNIST IDX files (default: the bundled paper "
                        "subset when the selection is the paper's; otherwise $NCL_MNIST_DIR, "
                        "then the user cache, downloading if needed)")


def load_data_from_args(args) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(x uint8 (N, 784), labels (N,), info)`` for the data selection in ``args``."""
    from ncl import data as data_lib
    digits = tuple(args.digits)
    if not digits or any(d < 0 or d > 9 for d in digits) or len(set(digits)) != len(digits):
        raise UsageError(f"--digits must be distinct digits 0..9, got {args.digits}")
    if digits == (0, 1, 2) and args.per_digit == 1000 and args.mnist_dir is None:
        x, y = data_lib.load_paper_data()
        source = "bundled paper subset (ncl/_data)"
    else:
        x, y = data_lib.load_digits(digits=digits, per_digit=args.per_digit,
                                    directory=args.mnist_dir)
        from ncl.mnist import resolve_mnist_dir
        source = str(resolve_mnist_dir(args.mnist_dir))
    info = {"digits": list(digits), "per_digit": args.per_digit, "split": "train",
            "n_samples": int(x.shape[0]), "n_visible": int(x.shape[1]), "source": source,
            "binarize": "pixel > 127"}
    return x, y, info


def check_batch_against_data(configs, n_samples: int) -> None:
    """``UsageError`` naming ``--batch-max`` when a minibatch would exceed the data set."""
    for cfg in configs:
        if cfg.batch_max > n_samples:
            raise UsageError(f"--batch-max {cfg.batch_max} (or batch_max in --config/--grid) "
                             f"is larger than the data set ({n_samples} samples); use "
                             f"--batch-max {n_samples} or less, or select more data "
                             "(--per-digit)")


def add_output_arguments(p: argparse.ArgumentParser, default_out: str,
                         what: str = "a previous output") -> None:
    """``--out``, ``--overwrite`` and ``-q/--quiet``, shared by the writing subcommands."""
    p.add_argument("--out", default=default_out, help="output directory")
    p.add_argument("--overwrite", action="store_true", help=f"replace {what}")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from ncl.model import HIDDEN_KINDS, RECOGNITION_KINDS
    g = p.add_argument_group("ensemble and model")
    g.add_argument("--seeds", type=_positive_int, default=36,
                   help="number of seeds (members 0..S-1, offset by --first-seed) (default: 36)")
    g.add_argument("--first-seed", type=int, default=0, help="first seed (default: 0)")
    g.add_argument("-L", "--hidden-units", type=int, default=None,
                   help="hidden units L (default: 6)")
    g.add_argument("--hidden", choices=HIDDEN_KINDS, default=None,
                   help="hidden representation (default: onehot)")
    g.add_argument("--recognition", choices=RECOGNITION_KINDS, default=None,
                   help="one-hot recognition kernel normalisation (default: paper)")
    g.add_argument("--no-centering", action="store_true", help="turn off eq. (17) centering")
    g = p.add_argument_group("protocol")
    g.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default: 120)")
    g.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                   help="gradient steps per epoch (default: 30)")
    g.add_argument("-T", "--chain-length", type=_positive_int, default=None,
                   help="double steps of the chain per gradient step (default: 48)")
    g.add_argument("--lr", "--learning-rate", dest="learning_rate", type=_positive_float,
                   default=None, help="RMSprop learning rate (default: 0.1)")
    g.add_argument("--batch-min", type=_positive_int, default=None,
                   help="minibatch size at the first epoch (default: 16)")
    g.add_argument("--batch-max", type=_positive_int, default=None,
                   help="minibatch size at the last epoch (default: 160)")
    g.add_argument("--config", default=None,
                   help="JSON or TOML file with TrainConfig fields (same names as the Python "
                        "config; 'model' holds ModelConfig fields); command-line options win")
    add_device_arguments(p)


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices")
    g.add_argument("--cpu-devices", type=_positive_int, default=None,
                   help="split the CPU into this many XLA devices and shard the seed axis "
                        "over them (default: the number of CPU cores; each member's arithmetic "
                        "agrees with one device to float32 round-off, its chain until a draw "
                        "flips, in distribution after)")


def add_distributed_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "multi-process (jax.distributed)",
        "run the same command once per process (e.g. once per host); the seed axis is "
        "sharded over the devices of all processes, process 0 prints and writes the run")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0's coordinator service (default: single process)")
    g.add_argument("--num-processes", type=_positive_int, default=None,
                   help="number of processes taking part")
    g.add_argument("--process-id", type=int, default=None,
                   help="this process's index, 0 .. num-processes - 1")


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


def config_from_args(args):
    """Build a :class:`TrainConfig` from ``--config`` and command-line overrides."""
    from ncl.model import ModelConfig
    from ncl.training import TrainConfig
    base = _read_config_file(args.config) if args.config else {}
    try:
        cfg = TrainConfig.from_dict(base)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--config: {e}")
    model = {}
    for arg, field in (("hidden_units", "n_hidden"), ("hidden", "hidden"),
                       ("recognition", "recognition")):
        if getattr(args, arg, None) is not None:
            model[field] = getattr(args, arg)
    if getattr(args, "no_centering", False):
        model["centering"] = False
    top = {}
    for field in ("epochs", "steps_per_epoch", "chain_length", "learning_rate", "batch_min",
                  "batch_max"):
        if getattr(args, field, None) is not None:
            top[field] = getattr(args, field)
    try:
        import dataclasses
        new_model = dataclasses.replace(cfg.model, **model) if model else cfg.model
        return dataclasses.replace(cfg, model=new_model, **top)
    except (TypeError, ValueError) as e:
        raise UsageError(_with_options(str(e), {**model, **top}))


_OPTION_OF_FIELD = {
    "n_hidden": "-L/--hidden-units", "hidden": "--hidden", "recognition": "--recognition",
    "centering": "--no-centering", "epochs": "--epochs", "steps_per_epoch": "--steps-per-epoch",
    "chain_length": "-T/--chain-length", "learning_rate": "--lr", "batch_min": "--batch-min",
    "batch_max": "--batch-max", "burn_in": "--burn-in", "n_steps": "--diag-steps",
    "n_chains": "--diag-chains", "rb_samples": "--rb-samples"}


def _with_options(message: str, given) -> str:
    """Prefix ``message`` (about config fields) with the command-line options that set
    the fields it names, e.g. ``"--batch-min/--batch-max: batch_min (4) must not ..."``."""
    opts = [_OPTION_OF_FIELD[f] for f in _OPTION_OF_FIELD if f in given and f in message]
    return f"{', '.join(opts)}: {message}" if opts else message


class EpochProgress:
    """Host-side progress printer for ``train``'s per-epoch callback.

    On a terminal it rewrites one line every epoch; otherwise it prints a line about
    every 10% of the epochs, so logs are not flooded.
    """

    def __init__(self, total_epochs: int, quiet: bool = False, stream=None):
        self.total = total_epochs
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = max(1, total_epochs // 10)
        self.t0 = time.perf_counter()
        self.first_epoch_time = None

    def __call__(self, epoch, row) -> None:
        if self.quiet:
            return
        e = int(epoch) + 1
        ll = np.atleast_1d(np.asarray(row.loglik))
        n = int(np.atleast_1d(np.asarray(row.batch_size))[0])
        finite = np.atleast_1d(np.asarray(row.finite))
        elapsed = time.perf_counter() - self.t0
        fin = ll[np.isfinite(ll)]  # all members NaN (diverged): print nan, no warning
        med, lo, hi = ((np.median(fin), fin.min(), fin.max()) if fin.size
                       else (np.nan, np.nan, np.nan))
        msg = (f"epoch {e:4d}/{self.total}  N={n:3d}  loglik(on-the-fly) median "
               f"{med:8.2f} [min {lo:8.2f}, max {hi:8.2f}]")
        if not finite.all():
            msg += f"  DIVERGED: {int((~finite).sum())} member(s)"
        msg += f"  {elapsed:6.1f}s"
        if self.tty:
            end = "\n" if e == self.total else ""
            print("\r" + msg, end=end, file=self.stream, flush=True)
        elif e % self.every == 0 or e == self.total or e == 1:
            print(msg, file=self.stream, flush=True)


def _summary_table(history, seeds) -> str:
    ll = np.asarray(history.loglik)[:, -1]
    occ = np.asarray(history.hidden_occupancy)[:, -1]
    lines = ["seed  final loglik(on-the-fly)  hidden occupancy (last epoch)"]
    for s, l, o in zip(seeds, ll, occ):
        lines.append(f"{s:4d}  {l:24.2f}  " + " ".join(f"{v:.2f}" for v in o))
    lines.append(f"median {np.median(ll):.2f}, min {ll.min():.2f}, max {ll.max():.2f} "
                 f"over {len(seeds)} seeds")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands

class Checkpointer:
    """The ``save`` of ``train_ensemble``'s ``checkpoint``: writes ``checkpoint.npz``
    atomically (see :func:`ncl.io.save_checkpoint`) with the history of every epoch done
    so far (``prior`` holds those done before a resume).

    Training calls it on the host between compiled pieces, in order. A failing write
    raises here and training stops with :class:`ncl.training.HostCallbackError`; the
    last checkpoint written stays on disk (``written``: its last epoch, -1 for none).
    """

    def __init__(self, out: Path, config, seeds, data_info, extra, prior=None):
        self.out, self.config, self.seeds = out, config, seeds
        self.data_info, self.extra, self.prior = data_info, extra, prior
        self.written = -1 if prior is None else int(np.shape(prior.loglik)[1]) - 1

    def __call__(self, epoch, history, state) -> None:
        from ncl import io
        from ncl.training import join_histories
        epoch = int(epoch)
        if self.prior is not None:
            history = join_histories([self.prior, history])
        io.save_checkpoint(self.out, state, history, self.config, seeds=self.seeds,
                           epochs_done=epoch + 1, data_info=self.data_info,
                           extra=self.extra)
        self.written = epoch


def _data_digest(x: np.ndarray) -> str:
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(x, np.uint8).tobytes()).hexdigest()


def _start_training_processes(args, cpu_devices, log):
    """CPU device count, then ``jax.distributed`` if asked (before JAX starts). Returns the
    log function to use: silent in every process but process 0, which prints and writes."""
    configure_cpu_devices(cpu_devices, start=False)
    if configure_distributed(args) == 0:
        return log
    args.quiet = True
    return lambda *a: None


def check_output_directory(out: Path, option: str = "--out") -> None:
    """``UsageError`` unless ``out`` is, or can be made, a writable directory (checked by
    creating it and writing a probe file): before any compilation, so a bad ``--out``
    costs nothing."""
    import tempfile
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out} is a file, not a directory; choose another {option}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ncl-write-test."):
            pass
    except OSError as e:
        raise UsageError(f"{option} {out} is not a writable directory ({e.strerror or e}); "
                         f"choose another {option} or fix its permissions")


def check_no_run_files(out: Path, overwrite: bool, what: str = "a run") -> None:
    """``UsageError`` when ``out`` holds run files (finished or not, ours or anybody's)
    and ``overwrite`` is false."""
    from ncl import io
    present = io.holds_run_files(out)
    if present and not overwrite:
        resume = (f", or continue it with --resume {out}"
                  if io.CHECKPOINT_FILE in present else "")
        raise UsageError(f"{out} already holds {what} ({', '.join(present)}); choose another "
                         f"--out, pass --overwrite to replace it{resume}")


MAX_SEEDS = 2 ** 22


def seeds_from_args(first_seed: int, n_seeds: int) -> list[int]:
    """Seeds ``first_seed .. first_seed + n_seeds - 1``, checked (``[0, 2**32)``: larger
    ones would wrap onto other seeds) before anything starts."""
    from ncl import _validate
    if not 0 <= first_seed or first_seed + n_seeds > _validate.SEED_LIMIT:
        raise UsageError(f"--first-seed/--seeds: seeds {first_seed} .. {first_seed + n_seeds - 1}"
                         f" must lie in [0, 2**32) (larger ones wrap onto other seeds)")
    if n_seeds > MAX_SEEDS:
        raise UsageError(f"--seeds {n_seeds}: at most {MAX_SEEDS} seeds per run (each member "
                         "needs about 0.3 MB and more); split the ensemble with --first-seed")
    seeds = list(range(first_seed, first_seed + n_seeds))
    try:
        return _validate.seeds("seeds", seeds)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--first-seed/--seeds: {e}")


def cmd_train(args) -> int:
    from ncl import io
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
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
    n_dev = jax.local_device_count()
    x, _, info = load_data_from_args(args)
    check_batch_against_data([config], x.shape[0])
    check_output_directory(out)
    info["sha256"] = _data_digest(x)
    extra = {"cpu_devices": n_dev}
    if args.overwrite and jax.process_index() == 0:
        for name in (io.MANIFEST_FILE, io.CONFIG_FILE, io.CHECKPOINT_FILE):
            (out / name).unlink(missing_ok=True)  # the old run is uncommitted from now on
    return _run_training(out, config, seeds, x, info, extra, 0, None, None, args, log)


def _resume_train(args, log) -> int:
    from ncl import data as data_lib
    from ncl import io
    out = Path(args.resume)
    if not out.is_dir():
        raise UsageError(f"--resume {out}: no such directory; give the --out directory of "
                         "an interrupted `ncl train`")
    meta = io.read_checkpoint_meta(out)  # NumPy only: JAX must not start before its devices
    extra = dict(meta.get("extra", {}))
    log = _start_training_processes(args, args.cpu_devices or extra.get("cpu_devices"), log)
    check_output_directory(out, "--resume")
    run = io.load_checkpoint(out)
    info = run.meta["data"]
    if info.get("source", "").startswith("bundled"):
        x, _ = data_lib.load_paper_data()
    else:
        x, _ = data_lib.load_digits(digits=tuple(info["digits"]), per_digit=info["per_digit"],
                                    directory=args.mnist_dir or info.get("source"))
    if info.get("sha256") and _data_digest(x) != info["sha256"]:
        raise RuntimeError(f"the data found now differ from the data the run in {out} was "
                           "trained on (SHA-256 mismatch); pass --mnist-dir with the original "
                           "files")
    done = int(run.meta["epochs_done"])
    log(f"ncl train --resume: {out}, {done}/{run.config.epochs} epochs done")
    return _run_training(out, run.config, list(run.seeds), x, info, extra, done, run.state,
                         run.history, args, log)


def _run_training(out, config, seeds, x, info, extra, start, state, prior, args, log) -> int:
    import jax

    from ncl import io
    from ncl.training import (HostCallbackError, continue_training, divergence_epochs,
                              join_histories, train_ensemble)
    log(f"ncl train: {len(seeds)} seeds, L={config.model.n_hidden} {config.model.hidden}, "
        f"T={config.chain_length}, {config.epochs} epochs x {config.steps_per_epoch} steps, "
        f"data {x.shape[0]}x{x.shape[1]} ({info['source']}), "
        f"{jax.local_device_count()} x {jax.devices()[0].device_kind}")
    progress = EpochProgress(config.epochs, quiet=args.quiet)
    every = args.checkpoint_every or config.epochs
    saver = Checkpointer(out, config, seeds, info, extra, prior=prior)
    t0 = time.perf_counter()
    try:
        if start >= config.epochs:  # the checkpoint already holds the finished run
            history = prior
        elif state is None:
            state, history = train_ensemble(seeds, x, config, progress=progress,
                                            checkpoint=(every, saver))
        else:
            state, rest = continue_training(state, x, config, start, progress=progress,
                                            checkpoint=(every, saver))
            history = join_histories([prior, rest])
        jax.block_until_ready(state)
    except HostCallbackError as e:
        raise RuntimeError(f"{e}. {_last_checkpoint(out, saver)}") from None
    wall = time.perf_counter() - t0
    if jax.process_index() != 0:  # multi-process: process 0 writes the run
        return 0
    extra = dict(extra, train_wall_seconds=wall + extra.get("train_wall_seconds", 0.0),
                 processes=jax.process_count())
    try:
        io.save_run(out, state, history, config, seeds=seeds, data_info=info, extra=extra)
    except OSError as e:
        raise RuntimeError(f"could not save the trained run to {out} ({e}). "
                           f"{_last_checkpoint(out, saver)}") from None
    (out / io.CHECKPOINT_FILE).unlink(missing_ok=True)
    log(_summary_table(history, seeds))
    log(f"trained in {wall:.1f}s (compile included); saved to {out}")
    first_bad = divergence_epochs(history, x.shape[1])
    if (first_bad >= 0).any():
        bad = [(seeds[i], int(e)) for i, e in enumerate(first_bad) if e >= 0]
        what = ("non-finite parameters" if _only_nonfinite(history, first_bad)
                else "non-finite parameters or a log-likelihood below "
                     f"{-10 * x.shape[1] * np.log(2):.0f} nats, 10x worse than coin flips")
        # an error: printed even with --quiet
        print(f"ncl train: error: training diverged ({what}) for "
              f"{len(bad)} of {len(seeds)} seeds, seed@epoch (first diverged epoch, "
              "1-based): " + ", ".join(f"{s}@{e + 1}" for s, e in bad)
              + f"; the run was saved to {out} (History.finite marks non-finite epochs); "
              "lower the learning rate (--lr)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _only_nonfinite(history, first_bad) -> bool:
    """Whether every diverged member's first diverged epoch has non-finite parameters."""
    finite = np.asarray(history.finite, bool)
    return all(not finite[i, e] for i, e in enumerate(first_bad) if e >= 0)


def _last_checkpoint(out: Path, saver) -> str:
    from ncl import io
    if saver.written >= 0:
        return (f"The last good checkpoint ({saver.written + 1} epochs done) is kept in "
                f"{out / io.CHECKPOINT_FILE}: fix the cause (disk space, permissions) and "
                f"continue with `ncl train --resume {out}`")
    return "No checkpoint had been written; fix the cause and train again"


# ----------------------------------------------------------------------------- reproduce / diagnose / figures

def add_diagnostics_arguments(p: argparse.ArgumentParser, defaults=None) -> None:
    """Options of :class:`ncl.diagnostics.DiagnosticsConfig` (defaults: docs/model.md, "Diagnostics")."""
    from ncl.diagnostics import DiagnosticsConfig
    d = defaults or DiagnosticsConfig()
    g = p.add_argument_group("diagnostics")
    g.add_argument("--burn-in", type=int, default=None,
                   help=f"double steps discarded per chain (default: {d.burn_in})")
    g.add_argument("--diag-steps", type=_positive_int, default=None,
                   help=f"recorded double steps in total (default: {d.n_steps})")
    g.add_argument("--diag-chains", type=_positive_int, default=None,
                   help=f"independent chains, the jackknife groups (default: {d.n_chains})")
    g.add_argument("--rb-samples", type=_positive_int, default=None,
                   help=f"Rao-Blackwell samples per hidden state (default: {d.rb_samples})")
    g.add_argument("--key-seed", type=int, default=0,
                   help="seed of the diagnostics' random key (default: 0)")
    g.add_argument("--estimator", choices=("rb", "counts"), default="rb",
                   help="sigma estimator shown in the figures (default: rb, Rao-Blackwellised)")


def dcfg_from_args(args, base=None):
    """A :class:`DiagnosticsConfig` from ``base`` (default: docs/model.md, "Diagnostics") and the options."""
    import dataclasses

    from ncl.diagnostics import DiagnosticsConfig
    base = base or DiagnosticsConfig()
    over = {}
    for arg, field in (("burn_in", "burn_in"), ("diag_steps", "n_steps"),
                       ("diag_chains", "n_chains"), ("rb_samples", "rb_samples")):
        if getattr(args, arg, None) is not None:
            over[field] = getattr(args, arg)
    try:
        return dataclasses.replace(base, **over)
    except (TypeError, ValueError) as e:
        raise UsageError(_with_options(str(e), over))


_PROTOCOL_FIELDS = ("epochs", "steps_per_epoch", "chain_length", "learning_rate",
                    "batch_min", "batch_max")


def _quick_train_config(args):
    """``--quick``: the reduced protocol of :func:`ncl.reproduce.quick_protocol`, except
    for the fields given on the command line or in ``--config``."""
    import dataclasses

    from ncl.reproduce import quick_protocol
    cfg = config_from_args(args)
    quick, _ = quick_protocol()
    explicit = {f for f in _PROTOCOL_FIELDS if getattr(args, f, None) is not None}
    if args.config:
        explicit |= set(_read_config_file(args.config))
    over = {f.name: getattr(quick, f.name) for f in dataclasses.fields(quick)
            if f.name != "model" and f.name not in explicit}
    try:
        return dataclasses.replace(cfg, **over)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e))


def cmd_reproduce(args) -> int:
    configure_cpu_devices(args.cpu_devices)
    from ncl import io
    from ncl.reproduce import paper_diagnostics_config, quick_protocol, reproduce
    if args.quick:
        config = _quick_train_config(args)
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
        raise UsageError(f"-L/--hidden: {e}")
    x, y, info = load_data_from_args(args)
    check_batch_against_data([config], x.shape[0])
    seeds = seeds_from_args(args.first_seed, n_seeds)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; choose another --out")
    if (out / io.CONFIG_FILE).exists() or io.holds_run_files(out / "ensemble"):
        if not args.overwrite:
            raise UsageError(f"{out} already holds a reproduction; choose another --out or "
                             "pass --overwrite")
    foreign = [n for n in io.holds_run_files(out) if n != io.CONFIG_FILE]
    if foreign:  # e.g. --out pointing at an `ncl train` run: never replaced
        raise UsageError(f"{out} holds a saved run ({', '.join(foreign)}), not a "
                         "reproduction; choose another --out")
    check_output_directory(out)
    t0 = time.perf_counter()
    progress = EpochProgress(config.epochs, quiet=args.quiet)
    reproduce(out, seeds=seeds, config=config, dcfg=dcfg, data=x, labels=y,
              key_seed=args.key_seed, progress=progress, estimator=args.estimator,
              quiet=args.quiet, data_info=info)
    if not args.quiet:
        print(f"ncl reproduce: done in {time.perf_counter() - t0:.1f}s; see "
              f"{out / 'REPORT.md'}", file=sys.stderr)
    hist = np.load(out / "ensemble" / io.HISTORY_FILE)
    if not np.asarray(hist["finite"]).all():
        print("ncl reproduce: ERROR: training diverged (non-finite parameters) for some "
              "seeds; see metrics.csv (column finite)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_diagnose(args) -> int:
    from ncl.reproduce import diagnose_run, paper_diagnostics_config, quick_protocol
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"RUN_DIR {run_dir}: no such directory; give a run saved by "
                         "`ncl train --out` or an `ncl reproduce` output directory")
    if not (run_dir / "config.json").exists() and (run_dir / "ensemble" / "config.json").exists():
        run_dir = run_dir / "ensemble"  # an `ncl reproduce` output directory
    out = Path(args.out) if args.out else run_dir.parent / (run_dir.name + "-diagnostics") \
        if run_dir.name != "ensemble" else run_dir.parent
    base = quick_protocol()[1] if args.quick else paper_diagnostics_config()
    dcfg = dcfg_from_args(args, base)
    from ncl.reproduce import check_diagnostics_out
    try:
        check_diagnostics_out(out, args.overwrite)
    except ValueError as e:
        raise UsageError(f"--out: {e}")
    diagnose_run(run_dir, out, dcfg=dcfg, key_seed=args.key_seed, estimator=args.estimator,
                 figures=not args.no_figures, quiet=args.quiet, overwrite=args.overwrite)
    if not args.quiet:
        print(f"ncl diagnose: wrote {out}", file=sys.stderr)
    return EXIT_OK


def cmd_figures(args) -> int:
    from ncl.reproduce import DIAGNOSTICS_FILE, make_figures
    out = Path(args.out_dir)
    if not (out / DIAGNOSTICS_FILE).exists():
        raise UsageError(f"{out / DIAGNOSTICS_FILE} not found; run `ncl reproduce` or "
                         "`ncl diagnose` first")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    paths = make_figures(out, estimator=args.estimator, log=log)
    if not args.quiet:
        for p in paths:
            print(p)
    return EXIT_OK


def cmd_sweep(args) -> int:
    """``ncl sweep``: a grid of settings × seeds, one compiled program per shape."""
    import csv
    import json as _json

    from ncl import io
    from ncl import sweep as sweep_lib
    try:
        grid = sweep_lib.parse_grid(args.grid)
        base = config_from_args(args)
        seeds = seeds_from_args(args.first_seed, args.seeds)
        members = sweep_lib.expand(base, grid, seeds)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--grid: {e}")
    out = Path(args.out)
    if (out / "sweep.csv").exists() and not args.overwrite:
        raise UsageError(f"{out} already holds a sweep; choose another --out or --overwrite")
    check_no_run_files(out, False, "a run")
    check_output_directory(out)
    configure_cpu_devices(args.cpu_devices)
    x, _, info = load_data_from_args(args)
    check_batch_against_data([m.config for m in members], x.shape[0])
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    group_configs = list(sweep_lib.group_members(members))
    log(f"ncl sweep: {len(members)} members ({len(seeds)} seeds x "
        f"{len(members) // len(seeds)} grid points) in {len(group_configs)} compiled group(s)")
    printers = [EpochProgress(cfg.epochs, quiet=args.quiet) for cfg in group_configs]

    def progress(gi, epoch, row):
        printers[gi](epoch, row)

    t0 = time.perf_counter()
    results = sweep_lib.train_sweep(members, x, progress=progress)
    wall = time.perf_counter() - t0
    for gi, res in enumerate(results):
        io.save_run(out / f"group_{gi:02d}", res.state, res.history, res.config,
                    seeds=[m.seed for m in res.members], data_info=info,
                    extra={"sweep_members": [{"member": m.index, "seed": m.seed,
                                              **dict(m.settings)} for m in res.members]})
    rows = sweep_lib.summary_rows(results)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "sweep.json").write_text(_json.dumps(
        {"grid": args.grid, "seeds": seeds, "base_config": base.to_dict(),
         "train_wall_seconds": wall, "members": rows}, indent=2))
    log(f"sweep trained in {wall:.1f}s; {out / 'sweep.csv'} has one row per member")
    bad = [r for r in rows if not r["finite"]]
    if bad:
        print(f"ncl sweep: error: training diverged (non-finite parameters) for "
              f"{len(bad)} of {len(rows)} members: "
              + ", ".join(str(r["member"]) for r in bad)
              + f" (column finite of {out / 'sweep.csv'}); lower their learning rate",
              file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


# ----------------------------------------------------------------------------- compare

def cmd_compare(args) -> int:
    """``ncl compare``: NCL vs RBM ensembles, same protocol and seeds (:mod:`ncl.compare`)."""
    import dataclasses

    from ncl import compare as compare_lib
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
        raise UsageError(str(e))
    configure_cpu_devices(args.cpu_devices)
    x, y, info = load_data_from_args(args)
    check_output_directory(out)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    t0 = time.perf_counter()
    comp = compare_lib.run_comparison(
        cfg, x, y, log=log,
        progress_factory=lambda arm: EpochProgress(arm.config.epochs, quiet=args.quiet),
        save_runs_to=(out / "runs") if args.save_runs else None)
    paths = compare_lib.write_outputs(comp, out, figure=not args.no_figure)
    log(f"ncl compare: done in {time.perf_counter() - t0:.1f}s; see {paths['markdown']}")
    if not args.quiet:
        print(paths["markdown"].read_text())
    return EXIT_OK if all(np.all(r.metrics["finite"] == 1) for r in comp.arms) else EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    import ncl
    parser = argparse.ArgumentParser(
        prog="ncl", formatter_class=HelpFormatter,
        description="Nonequilibrium latent-cycle generative models (Baiesi & Rosso, "
                    "arXiv:2512.11415): train seed ensembles, diagnose, reproduce the paper.")
    parser.add_argument("--version", action="version", version=f"ncl {ncl.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train an ensemble of seeds and save it",
                       formatter_class=HelpFormatter)
    add_train_arguments(p)
    add_data_arguments(p)
    add_distributed_arguments(p)
    p.add_argument("--out", default="runs/train", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a run saved in --out")
    p.add_argument("--checkpoint-every", type=_positive_int, default=10,
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
                       "write figures, metrics.csv, REPORT.md",
                       formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run saved by `ncl train` (or an `ncl reproduce` output directory)")
    p.add_argument("--out", default=None,
                   help="output directory (default: RUN_DIR-diagnostics; for a reproduce "
                        "directory, that directory)")
    add_diagnostics_arguments(p)
    p.add_argument("--quick", action="store_true",
                   help="short diagnostics for smoke tests (those of `ncl reproduce --quick`)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier diagnostics in --out (never a saved run's files)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("figures", help="redraw Figs. 2-4 from OUT_DIR/diagnostics.npz",
                       formatter_class=HelpFormatter)
    p.add_argument("out_dir", metavar="OUT_DIR", help="output of `ncl reproduce`/`diagnose`")
    p.add_argument("--estimator", choices=("rb", "counts"), default="rb",
                   help="sigma estimator shown (rb: Rao-Blackwellised; counts: the paper's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("compare", help="train NCL and RBM ensembles with the same protocol "
                       "and seeds, diagnose both, write a table (CSV + Markdown) and figure",
                       formatter_class=HelpFormatter)
    add_train_arguments(p)
    add_data_arguments(p)
    add_diagnostics_arguments(p)
    g = p.add_argument_group("comparison")
    g.add_argument("--rbm-lr", type=_positive_float, action="append", default=None,
                   metavar="LR", help="add an RBM arm with this learning rate (repeatable)")
    g.add_argument("--rbm-exact", action="store_true",
                   help="add an RBM arm trained with its exact log-likelihood gradient")
    g.add_argument("--sample-chains", type=_positive_int, default=None,
                   help="sampling chains per model, 10 images each (default: 100)")
    g.add_argument("--sample-start", choices=("noise", "data"), default=None,
                   help="start of the sampling chains (default: noise)")
    g.add_argument("--confidence", type=float, default=None,
                   help="max class probability of a confidently classified sample "
                        "(default: 0.9)")
    g.add_argument("--bootstrap", type=_positive_int, default=None,
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
    try:
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
