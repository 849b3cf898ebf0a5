"""Saving and loading runs: parameters, optimiser and chain states, config, history.

A run directory holds plain, light files that any NumPy can read:

* ``config.json`` — the :class:`~ncl.training.TrainConfig`, the seeds, a description of
  the data, the epochs completed, and provenance (ncl/JAX versions, device, time);
* ``state.npz`` — every leaf of the (ensemble) :class:`~ncl.training.TrainState`, named
  by its pytree path (e.g. ``params.w``, ``opt_state[0].nu.w``; PRNG keys as raw key data);
* ``history.npz`` — the per-epoch :class:`~ncl.training.History` fields;
* ``checkpoint.npz`` — during training: all of the above in ONE file (so it is replaced
  as a whole), written every few epochs; ``ncl train --resume`` continues from it.

Every file is written to a temporary name and moved into place with ``os.replace``, so
an interrupted save leaves the previous version intact.
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

FORMAT_VERSION = 2  # 2: optimiser state with an injected learning rate (ncl.sweep)
CONFIG_FILE, STATE_FILE, HISTORY_FILE = "config.json", "state.npz", "history.npz"
CHECKPOINT_FILE = "checkpoint.npz"


class RunFileError(ValueError):
    """A saved run is missing, incomplete or corrupt."""


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
    """Save a run (atomically, file by file) into ``directory``; returns its path.

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
    _atomic_write(directory / STATE_FILE, lambda f: np.savez(f, **_flatten(state)))
    _atomic_write(directory / HISTORY_FILE, lambda f: np.savez(f, **hist_arrays))
    _atomic_write(directory / CONFIG_FILE,
                  lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return directory


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


def load_checkpoint(directory) -> Run:
    """Load ``checkpoint.npz`` of a run directory (see :func:`save_checkpoint`)."""
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
    return _build_run(meta, _read_npz(directory / STATE_FILE),
                      _read_npz(directory / HISTORY_FILE), directory)


def _build_run(meta: dict, arrays: dict, hist: dict, where: Path) -> Run:
    if meta.get("format_version") != FORMAT_VERSION:
        raise RunFileError(f"{where}: unsupported format_version "
                           f"{meta.get('format_version')!r} (this ncl reads {FORMAT_VERSION})")
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
