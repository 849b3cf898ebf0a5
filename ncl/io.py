"""Saving and loading runs: parameters, optimiser and chain states, config, history.

A run directory holds plain, light files that any NumPy can read:

* ``config.json`` — the :class:`~ncl.training.TrainConfig`, the seeds, a description of
  the data, the epochs completed, and provenance (ncl/JAX versions, device, time);
* ``state.npz`` — every leaf of the (ensemble) :class:`~ncl.training.TrainState`, named
  by its pytree path (e.g. ``params.w``, ``opt_state[0].nu.w``; PRNG keys as raw key data);
* ``history.npz`` — the per-epoch :class:`~ncl.training.History` fields;
* ``manifest.json`` — the commit point, written last: the SHA-256 and size of the three
  files above, the epochs completed and the member count;
* ``checkpoint.npz`` — during training: all of the above in ONE file (so it is replaced
  as a whole), written every few epochs; ``ncl train --resume`` continues from it.

Every file is written to a temporary name and moved into place with ``os.replace``, so
an interrupted save leaves the previous version intact. A save into a directory that
already holds a run first removes that run's commit points (``manifest.json``, then
``config.json``), so an interrupted overwrite leaves a directory that
:func:`load_run` refuses as incomplete, never new files mixed with old ones; and
:func:`load_run` checks the checksums and that steps, history and seeds agree.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ncl._atomic import atomic_write as _atomic_write
from ncl.training import History, TrainConfig, TrainState, init_state

FORMAT_VERSION = 3  # 2: optimiser state with an injected learning rate (ncl.sweep); 3: manifest
READABLE_VERSIONS = (2, 3)  # 2: no manifest (its config.json, written last, commits it)
CONFIG_FILE, STATE_FILE, HISTORY_FILE = "config.json", "state.npz", "history.npz"
MANIFEST_FILE, CHECKPOINT_FILE = "manifest.json", "checkpoint.npz"
RUN_FILES = (STATE_FILE, HISTORY_FILE, CONFIG_FILE)


class RunFileError(ValueError):
    """A saved run is missing, incomplete or corrupt."""


class RunIntegrityError(RunFileError):
    """A saved run's files do not belong together (checksums, steps, history or seeds
    disagree) or its commit point is missing: it must not be read at all."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A loaded run. ``state``/``history`` leaves carry a leading ``(S,)`` member axis when
    ``ensemble`` is true."""

    config: TrainConfig
    state: TrainState
    history: History
    seeds: tuple[int, ...]
    ensemble: bool
    meta: dict


def provenance() -> dict:
    """Versions and device, recorded with every run so results can be traced and rerun."""
    import ncl
    dev = jax.devices()[0]
    return {
        "ncl_version": ncl.__version__,
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "hostname": platform.node(),
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jaxlib_version():
    try:
        import jaxlib
        return jaxlib.__version__
    except Exception:  # pragma: no cover
        return None


def _leaf_to_numpy(leaf) -> np.ndarray:
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def _flatten(tree) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path).lstrip("."): _leaf_to_numpy(leaf)
            for path, leaf in leaves}


def _meta(config, seeds, ensemble, epochs_done, data_info, extra) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "train_config": config.to_dict(),
        "seeds": [int(v) for v in np.atleast_1d(np.asarray(seeds))],
        "ensemble": bool(ensemble),
        "epochs_done": int(epochs_done),
        "data": data_info or {},
        "provenance": provenance(),
        "extra": extra or {},
    }


def save_run(directory, state: TrainState, history: History, config: TrainConfig, *,
             seeds, ensemble: bool = True, data_info: dict | None = None,
             epochs_done: int | None = None, extra: dict | None = None) -> Path:
    """Save a run into ``directory``; returns its path.

    Each file is written atomically; ``manifest.json`` (checksums) is written last and is
    the run's commit point. An existing run in ``directory`` loses its commit points
    before anything is written, so an interrupted overwrite is refused by
    :func:`load_run` instead of being read as a mixture of two runs.

    Args:
      state, history: from :func:`ncl.training.train_ensemble` (or ``train`` with
        ``ensemble=False``).
      config: the :class:`TrainConfig` used.
      seeds: the member seeds.
      data_info: a JSON-able description of the data (selection, shape, checksum).
      epochs_done: epochs completed (default: the history length).
      extra: more JSON-able metadata to store under ``"extra"``.
    """
    directory = Path(directory)
    hist_arrays = {k: np.asarray(v) for k, v in history._asdict().items()}
    if epochs_done is None:
        epochs_done = int(hist_arrays["loglik"].shape[-1])
    meta = _meta(config, seeds, ensemble, epochs_done, data_info, extra)
    state_arrays = _flatten(state)
    directory.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST_FILE, CONFIG_FILE):  # uncommit the run being replaced
        (directory / name).unlink(missing_ok=True)
    _atomic_write(directory / STATE_FILE, lambda f: np.savez(f, **state_arrays))
    _atomic_write(directory / HISTORY_FILE, lambda f: np.savez(f, **hist_arrays))
    _atomic_write(directory / CONFIG_FILE,
                  lambda f: f.write(json.dumps(meta, indent=2).encode()))
    manifest = {"format_version": FORMAT_VERSION, "epochs_done": int(epochs_done),
                "n_members": int(np.atleast_1d(np.asarray(seeds)).size),
                "files": {name: _file_record(directory / name) for name in RUN_FILES}}
    _atomic_write(directory / MANIFEST_FILE,
                  lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    return directory


def _file_record(path: Path) -> dict:
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def holds_run_files(directory) -> list[str]:
    """The names of run files (committed or not: ``config.json``, ``state.npz``,
    ``history.npz``, ``manifest.json``, ``checkpoint.npz``) present in ``directory``."""
    directory = Path(directory)
    return [n for n in (CONFIG_FILE, STATE_FILE, HISTORY_FILE, MANIFEST_FILE, CHECKPOINT_FILE)
            if (directory / n).exists()]


def check_manifest(directory, meta: dict) -> None:
    """Raise :class:`RunIntegrityError` unless ``manifest.json`` commits the run files
    present in ``directory`` (format 3; a format-2 run has none and is committed by its
    ``config.json``)."""
    directory = Path(directory)
    if meta.get("format_version") == 2:
        return
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise RunIntegrityError(
            f"{directory} holds an incomplete run: {MANIFEST_FILE} (written last by "
            "save_run) is missing, so the save was interrupted or the files were copied "
            "in part; train it again (ncl train --overwrite) or restore the whole directory")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise RunIntegrityError(f"cannot read {path}: corrupt manifest ({e})") from e
    for name in RUN_FILES:
        want = files.get(name) if isinstance(files, dict) else None
        if not (directory / name).exists():
            raise RunIntegrityError(f"{directory} holds an incomplete run: {name} is missing")
        if want is None or _file_record(directory / name) != want:
            raise RunIntegrityError(
                f"{directory / name} does not match {MANIFEST_FILE} (SHA-256 or size "
                "differ): it is corrupt or truncated, was changed, or comes from another "
                "run; the run cannot be trusted: train it again (ncl train --overwrite) or "
                "restore the whole directory")


def _check_consistent(where, meta: dict, config: TrainConfig, state: TrainState,
                      history: History, ensemble: bool) -> None:
    """Steps, history length and seeds of a loaded run against its metadata."""
    done = meta.get("epochs_done")
    if not isinstance(done, int) or isinstance(done, bool) or not 0 <= done <= config.epochs:
        raise RunIntegrityError(f"{where}: epochs_done {done!r} is not an epoch count in "
                                f"0 .. {config.epochs}")
    n_hist = int(np.shape(history.loglik)[-1])
    if n_hist != done:
        raise RunIntegrityError(f"{where}: history holds {n_hist} epochs but the metadata "
                                f"say {done} were done: the files come from different runs")
    steps = np.unique(np.asarray(state.step))
    if steps.tolist() != [done * config.steps_per_epoch]:
        raise RunIntegrityError(
            f"{where}: the state has taken {steps.tolist()} steps, but {done} epochs of "
            f"{config.steps_per_epoch} steps make {done * config.steps_per_epoch}: the "
            "files come from different runs")
    if ensemble:
        n = int(np.shape(state.step)[0])
        if len(meta["seeds"]) != n or int(np.shape(history.loglik)[0]) != n:
            raise RunIntegrityError(
                f"{where}: {len(meta['seeds'])} seeds, {n} members in the state and "
                f"{int(np.shape(history.loglik)[0])} in the history: they must agree")
    if len(set(meta["seeds"])) != len(meta["seeds"]):
        raise RunIntegrityError(f"{where}: duplicate seeds {meta['seeds']}")


def save_checkpoint(directory, state: TrainState, history: History, config: TrainConfig, *,
                    seeds, epochs_done: int, data_info: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``checkpoint.npz`` (state, history so far, config, provenance) atomically:
    a kill during the write leaves the previous checkpoint intact."""
    directory = Path(directory)
    arrays = {"state/" + k: v for k, v in _flatten(state).items()}
    arrays.update({"history/" + k: np.asarray(v) for k, v in history._asdict().items()})
    meta = _meta(config, seeds, True, epochs_done, data_info, extra)
    arrays["meta_json"] = np.asarray(json.dumps(meta))
    path = directory / CHECKPOINT_FILE
    _atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def read_checkpoint_meta(directory) -> dict:
    """The metadata of ``checkpoint.npz`` read with NumPy alone (JAX is not started, so a
    resumed run can still configure its devices); see :func:`load_checkpoint`."""
    path = Path(directory) / CHECKPOINT_FILE
    load_checkpoint_path_checks(directory)
    try:
        with np.load(path, allow_pickle=False) as f:
            if "meta_json" not in f.files:
                raise RunFileError(f"{path}: no metadata; not an ncl checkpoint")
            return json.loads(str(f["meta_json"]))
    except RunFileError:
        raise
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: corrupt metadata ({e})") from e
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, OSError...
        raise RunFileError(f"cannot read {path}: the file is corrupt or truncated ({e})") from e


def load_checkpoint_path_checks(directory) -> None:
    """``RunFileError`` unless ``directory`` holds a checkpoint to resume."""
    path = Path(directory) / CHECKPOINT_FILE
    if not Path(directory).is_dir():
        raise RunFileError(f"no run to resume at {directory}: not a directory")
    if not path.exists() and (Path(directory) / CONFIG_FILE).exists():
        raise RunFileError(f"{directory} holds a finished run (no {CHECKPOINT_FILE}); there "
                           "is nothing to resume: load it with ncl.io.load_run, or train "
                           "more epochs into a new directory")
    if not path.exists():
        raise RunFileError(f"no run to resume at {directory}: {CHECKPOINT_FILE} is missing "
                           "(give the --out directory of an interrupted `ncl train`)")


def load_checkpoint(directory) -> Run:
    """Load ``checkpoint.npz`` of a run directory (see :func:`save_checkpoint`)."""
    path = Path(directory) / CHECKPOINT_FILE
    load_checkpoint_path_checks(directory)
    arrays = _read_npz(path)
    if "meta_json" not in arrays:
        raise RunFileError(f"{path}: no metadata; not an ncl checkpoint")
    try:
        meta = json.loads(str(arrays.pop("meta_json")))
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: corrupt metadata ({e})") from e
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    hist = {k[len("history/"):]: v for k, v in arrays.items() if k.startswith("history/")}
    return _build_run(meta, state, hist, path)


def _state_template(config: TrainConfig, n_visible: int, n_members: int | None):
    data = jax.ShapeDtypeStruct((config.batch_max, n_visible), jnp.float32)
    init = lambda k, d: init_state(k, d, config)  # noqa: E731
    if n_members is None:
        return jax.eval_shape(init, jax.random.key(0), data)
    keys = jax.eval_shape(lambda: jax.vmap(jax.random.key)(jnp.zeros(n_members, jnp.uint32)))
    return jax.eval_shape(jax.vmap(init, in_axes=(0, None)), keys, data)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise RunFileError(f"saved run is incomplete: {path} is missing")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, OSError...
        raise RunFileError(f"cannot read {path}: the file is corrupt or truncated ({e})") from e


def load_meta(directory) -> dict:
    """Read and check ``config.json`` of a run directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunFileError(f"no saved run at {directory}: not a directory")
    path = directory / CONFIG_FILE
    if not path.exists():
        hint = (f"; it holds an interrupted run: finish it with `ncl train --resume "
                f"{directory}`" if (directory / CHECKPOINT_FILE).exists() else
                " (expected the --out directory of `ncl train`)")
        raise RunFileError(f"no saved run at {directory}: {CONFIG_FILE} is missing{hint}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFileError(f"cannot read {path}: corrupt JSON ({e})") from e
    if not isinstance(meta, dict) or "train_config" not in meta:
        raise RunFileError(f"{path} is not the config.json of an ncl run (no train_config)")
    return meta


def load_run(directory) -> Run:
    """Load a run saved by :func:`save_run`, checking every array's name, shape and dtype."""
    directory = Path(directory)
    meta = load_meta(directory)
    state, hist = _read_npz(directory / STATE_FILE), _read_npz(directory / HISTORY_FILE)
    if meta.get("format_version") in READABLE_VERSIONS:
        check_manifest(directory, meta)  # readable files that do not belong together
    return _build_run(meta, state, hist, directory)


def _build_run(meta: dict, arrays: dict, hist: dict, where: Path) -> Run:
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise RunFileError(f"{where}: unsupported format_version "
                           f"{meta.get('format_version')!r} (this ncl reads "
                           f"{', '.join(map(str, READABLE_VERSIONS))})")
    try:
        config = TrainConfig.from_dict(meta["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunFileError(f"{where}: invalid train_config ({e})") from e
    ensemble = bool(meta.get("ensemble", True))
    if "params.w" not in arrays:
        raise RunFileError(f"{where}: no params.w array; not an ncl run")
    n_visible = int(arrays["params.w"].shape[-2])
    n_members = int(arrays["params.w"].shape[0]) if ensemble else None
    template = _state_template(config, n_visible, n_members)
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, spec in paths_leaves:
        name = jax.tree_util.keystr(path).lstrip(".")
        if name not in arrays:
            raise RunFileError(f"{where}: state array {name!r} is missing")
        value = arrays[name]
        if jnp.issubdtype(spec.dtype, jax.dtypes.prng_key):
            leaves.append(jax.random.wrap_key_data(jnp.asarray(value, jnp.uint32)))
            continue
        if value.shape != spec.shape or value.dtype != spec.dtype:
            raise RunFileError(f"{where}: array {name!r} has shape {value.shape} {value.dtype}, "
                               f"expected {spec.shape} {spec.dtype}")
        leaves.append(jnp.asarray(value))
    state = jax.tree_util.tree_unflatten(treedef, leaves)
    missing = set(History._fields) - set(hist)
    if missing:
        raise RunFileError(f"{where}: history fields {sorted(missing)} are missing")
    history = History(**{k: jnp.asarray(hist[k]) for k in History._fields})
    if not isinstance(meta.get("seeds"), list):
        raise RunFileError(f"{where}: the metadata have no list of seeds; not an ncl run")
    _check_consistent(where, meta, config, state, history, ensemble)
    return Run(config=config, state=state, history=history, seeds=tuple(meta["seeds"]),
               ensemble=ensemble, meta=meta)


def to_jsonable(obj: Any):
    """Convert numpy/jax scalars and arrays inside ``obj`` to plain Python for JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return np.asarray(obj).tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
