"""Command-line options: the argument groups the subcommands share, their value types,
and what they become — :class:`~ncl.training.TrainConfig` (:func:`config_from_args`,
``--quick``: :func:`quick_train_config`), :class:`~ncl.diagnostics.DiagnosticsConfig`
(:func:`dcfg_from_args`), :class:`~ncl.chain_diagnostics.ChainDiagnosticsConfig`
(:func:`chain_config_from_args`; which runs need it: :func:`too_large_to_tabulate`; its
classifier: :func:`chain_classifier`), seeds (:func:`seeds_from_args`), data
(:func:`load_data_from_args`) — and the checks of ``--out`` made before any work.
Everything wrong raises :class:`UsageError` naming the option (exit code 2).

Imports nothing of JAX at module level (the CPU device count is set before JAX starts).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, once (help texts that already name it are kept)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t != "")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
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
                raise UsageError("--config: TOML needs Python >= 3.11; use a JSON file") from None
            return tomllib.loads(text)
        return json.loads(text)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"--config: cannot parse {path}: {e}") from None


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--digits", type=int_list, default=(0, 1, 2),
                   help="digit classes to model (default: 0,1,2, the paper's)")
    g.add_argument("--per-digit", type=positive_int, default=1000,
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
    g.add_argument("--seeds", type=positive_int, default=36,
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
    g.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: 120)")
    g.add_argument("--steps-per-epoch", type=positive_int, default=None,
                   help="gradient steps per epoch (default: 30)")
    g.add_argument("-T", "--chain-length", type=positive_int, default=None,
                   help="double steps of the chain per gradient step (default: 48)")
    g.add_argument("--lr", "--learning-rate", dest="learning_rate", type=positive_float,
                   default=None, help="RMSprop learning rate (default: 0.1)")
    g.add_argument("--batch-min", type=positive_int, default=None,
                   help="minibatch size at the first epoch (default: 16)")
    g.add_argument("--batch-max", type=positive_int, default=None,
                   help="minibatch size at the last epoch (default: 160)")
    g.add_argument("--config", default=None,
                   help="JSON or TOML file with TrainConfig fields (same names as the Python "
                        "config; 'model' holds ModelConfig fields); command-line options win")
    add_device_arguments(p)


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices")
    g.add_argument("--cpu-devices", type=positive_int, default=None,
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
    g.add_argument("--num-processes", type=positive_int, default=None,
                   help="number of processes taking part")
    g.add_argument("--process-id", type=int, default=None,
                   help="this process's index, 0 .. num-processes - 1")


def config_from_args(args):
    """Build a :class:`TrainConfig` from ``--config`` and command-line overrides."""
    from ncl.training import TrainConfig
    base = _read_config_file(args.config) if args.config else {}
    try:
        cfg = TrainConfig.from_dict(base)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--config: {e}") from None
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
        raise UsageError(_with_options(str(e), {**model, **top})) from None


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
                         f"choose another {option} or fix its permissions") from None


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
        raise UsageError(f"--first-seed/--seeds: {e}") from None


def add_diagnostics_arguments(p: argparse.ArgumentParser, defaults=None) -> None:
    """Options of :class:`ncl.diagnostics.DiagnosticsConfig` (defaults: docs/model.md,
    "Diagnostics")."""
    from ncl.diagnostics import DiagnosticsConfig
    d = defaults or DiagnosticsConfig()
    g = p.add_argument_group("diagnostics")
    g.add_argument("--burn-in", type=int, default=None,
                   help=f"double steps discarded per chain (default: {d.burn_in})")
    g.add_argument("--diag-steps", type=positive_int, default=None,
                   help=f"recorded double steps in total (default: {d.n_steps})")
    g.add_argument("--diag-chains", type=positive_int, default=None,
                   help=f"independent chains, the jackknife groups (default: {d.n_chains})")
    g.add_argument("--rb-samples", type=positive_int, default=None,
                   help=f"Rao-Blackwell samples per hidden state (default: {d.rb_samples})")
    g.add_argument("--key-seed", type=int, default=0,
                   help="seed of the diagnostics' random key (default: 0)")
    g.add_argument("--estimator", choices=("rb", "counts"), default="rb",
                   help="sigma estimator shown in the figures (default: rb, Rao-Blackwellised)")


def dcfg_from_args(args, base=None):
    """A :class:`DiagnosticsConfig` from ``base`` (default: docs/model.md, "Diagnostics")
    and the options."""
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
        raise UsageError(_with_options(str(e), over)) from None


def quick_chain_config():
    """``ncl diagnose --quick``'s chain diagnostics: 4 chains of 50 burn-in + 400 recorded
    double steps, K = 8, the log-likelihoods on the first 500 images (seconds per model)."""
    from ncl.chain_diagnostics import ChainDiagnosticsConfig
    return ChainDiagnosticsConfig(n_chains=4, burn_in=50, n_steps=400, rb_samples=8,
                                  segment=50, loglik_images=500)


def chain_config_from_args(args, quick: bool = False):
    """A :class:`ncl.chain_diagnostics.ChainDiagnosticsConfig` for ``ncl diagnose``'s
    chain path: its defaults (or :func:`quick_chain_config` with ``quick``) and the
    diagnostics options given (``--diag-steps`` is the total over the chains, as for the
    tabulated diagnostics: each chain records ``ceil(N / chains)``)."""
    import dataclasses

    from ncl.chain_diagnostics import ChainDiagnosticsConfig
    base = quick_chain_config() if quick else ChainDiagnosticsConfig()
    over = {}
    for arg, field in (("burn_in", "burn_in"), ("diag_chains", "n_chains"),
                       ("rb_samples", "rb_samples")):
        if getattr(args, arg, None) is not None:
            over[field] = getattr(args, arg)
    if getattr(args, "diag_steps", None) is not None:
        chains = over.get("n_chains", base.n_chains)
        over["n_steps"] = -(-args.diag_steps // chains)
        if over["n_steps"] < 8:
            raise UsageError(f"--diag-steps {args.diag_steps}: the chain diagnostics record "
                             f"at least 8 double steps per chain; give at least {8 * chains} "
                             f"for {chains} chains")
    try:
        return dataclasses.replace(base, **over)
    except (TypeError, ValueError) as e:
        raise UsageError(_with_options(str(e), over)) from None


def too_large_to_tabulate(run_dir) -> bool:
    """Whether :mod:`ncl.diagnostics` cannot tabulate ``M`` for the model recorded in
    ``run_dir/config.json`` (binary L > 12); ``False`` when the file cannot be read
    (loading the run then reports why). Reads JSON only (JAX need not start)."""
    from ncl import io
    from ncl.diagnostics import check_enumerable
    from ncl.training import TrainConfig
    try:
        model = TrainConfig.from_dict(io.load_meta(Path(run_dir))["train_config"]).model
    except Exception:
        return False
    try:
        check_enumerable(model)
    except ValueError:
        return True
    return False


def chain_classifier(digits, log):
    """The digit classifier of the chain diagnostics: the shipped one for (0, 1, 2) or the
    ten digits, else one of the run's digits (trained now from MNIST), else the shipped
    ten-digit one (it knows every digit)."""
    from ncl import classifier as clf
    digits = tuple(sorted(int(d) for d in digits))
    try:
        return clf.classifier_for_digits(digits)
    except Exception as e:  # no MNIST files here to train one for these digits
        log(f"warning: no classifier for digits {digits} ({e}); using the shipped "
            "ten-digit classifier")
        return clf.load_default_classifier(range(10))


_PROTOCOL_FIELDS = ("epochs", "steps_per_epoch", "chain_length", "learning_rate",
                    "batch_min", "batch_max")


def quick_train_config(args):
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
        raise UsageError(str(e)) from None
