"""Shims for the range of JAX versions ``pyproject.toml`` allows (a leaf module: imports
nothing from ``ncl``, and JAX only inside the functions)."""
from __future__ import annotations

import contextlib
import os

_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def set_num_cpu_devices(n: int) -> None:
    """Ask for ``n`` CPU devices before JAX's backends start; ``RuntimeError`` if they
    already run (the count is fixed then).

    JAX 0.5.0 and later: the ``jax_num_cpu_devices`` option. Older JAX has no such option
    (``jax.config.update`` raises "Unrecognized config option"); there the count is XLA's
    ``--xla_force_host_platform_device_count`` flag, read from ``XLA_FLAGS`` when the CPU
    backend starts, so the flag is set in the environment (replacing any earlier value).
    """
    import jax
    n = int(n)
    if "jax_num_cpu_devices" in jax.config.values:
        jax.config.update("jax_num_cpu_devices", n)
        return
    from jax._src import xla_bridge
    if xla_bridge.backends_are_initialized():
        raise RuntimeError("the CPU device count cannot change: JAX's backends are "
                           "already initialized")
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith(_DEVICE_COUNT_FLAG)]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"{_DEVICE_COUNT_FLAG}={n}"])


def enable_x64(new_val: bool = True):
    """Context manager switching 64-bit types on (or off) inside it: ``jax.enable_x64``
    (JAX 0.8.0 and later), else ``jax.experimental.enable_x64`` (which newer JAX removed)."""
    import jax
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(new_val)
    from jax.experimental import enable_x64 as _enable_x64
    return _enable_x64(new_val)


CPU_OPT_LEVEL_ENV = "NCL_XLA_CPU_OPT_LEVEL"
DEFAULT_CPU_OPT_LEVEL = 1


def cpu_compiler_options() -> dict:
    """XLA options for ncl's large programs when JAX's default backend is the CPU:
    ``{"xla_backend_optimization_level": n}``, ``n`` from ``$NCL_XLA_CPU_OPT_LEVEL``
    (0–3, default 1; ``xla`` passes no option, leaving XLA's own default, 3); ``{}`` on
    other backends (their code generators keep XLA's defaults).

    On the paper protocol (36 seeds, 2 CPU devices) level 1 compiles the training program
    in 4.6 s instead of 5.7 s at XLA's default and runs about 1 % slower (13.1 s vs
    12.9 s, interleaved runs); the trained parameters are bit-identical (only reductions
    of the monitor round differently, at 1e-7 relative). ``benchmarks/bench_train.py``
    times both side by side. Level 0 compiles faster still but runs 6× slower.
    """
    import jax
    if jax.default_backend() != "cpu":
        return {}
    raw = os.environ.get(CPU_OPT_LEVEL_ENV, "").strip()
    if raw == "xla":
        return {}
    if not raw:
        return {"xla_backend_optimization_level": DEFAULT_CPU_OPT_LEVEL}
    if raw not in ("0", "1", "2", "3"):
        raise ValueError(f"{CPU_OPT_LEVEL_ENV} must be 0, 1, 2, 3 (XLA's CPU backend "
                         f"optimization level) or 'xla' (XLA's default), got {raw!r}; unset "
                         f"it for ncl's default ({DEFAULT_CPU_OPT_LEVEL})")
    return {"xla_backend_optimization_level": int(raw)}


def jit(fn, **kwargs):
    """``jax.jit(fn, **kwargs)`` with :func:`cpu_compiler_options` where this JAX takes
    ``compiler_options`` (added after 0.4.33; older JAX compiles with XLA's defaults)."""
    import inspect

    import jax
    options = cpu_compiler_options()
    if options and "compiler_options" in inspect.signature(jax.jit).parameters:
        kwargs = {**kwargs, "compiler_options": {**options,
                                                 **kwargs.get("compiler_options", {})}}
    return jax.jit(fn, **kwargs)


COMPILE_CACHE_ENV = "NCL_NO_COMPILE_CACHE"
COMPILE_CACHE_DIR_ENV = "NCL_COMPILE_CACHE_DIR"


def compilation_cache_dir() -> str:
    """Where compiled XLA programs are kept between runs: ``$NCL_COMPILE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ncl/jax`` (``~/.cache/ncl/jax``)."""
    explicit = os.environ.get(COMPILE_CACHE_DIR_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ncl", "jax")


_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


def _reset_compilation_cache() -> None:
    """Forget JAX's opened cache so the next compile reads the options afresh (JAX opens
    the cache directory once per process and keeps writing there otherwise)."""
    try:
        from jax.experimental.compilation_cache import compilation_cache as cc
    except ImportError:                                   # pragma: no cover
        return
    reset = getattr(cc, "reset_cache", None)
    if reset is not None:
        reset()


def enable_compilation_cache(directory: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache (a second ``ncl`` run with the same
    shapes loads its programs instead of compiling them again); returns the directory,
    or ``None`` when ``NCL_NO_COMPILE_CACHE=1`` turned it off or the directory cannot be
    created. This changes JAX's process-wide configuration until the process ends; code
    that must leave the caller's setting alone (``ncl.cli.main`` called from a notebook)
    uses :func:`compilation_cache` instead.

    Trust caveat: a cache entry is an executable that JAX loads and runs; keep the
    directory private to your user (it is created with mode 0700) and never point it at
    files you did not write. Entries are keyed on the program, the JAX/XLA versions and
    the device, so a stale entry is not reused; deleting the directory is always safe.
    Every program is cached (no minimum compile time), so small programs are reused too.
    """
    if os.environ.get(COMPILE_CACHE_ENV, "").strip() not in ("", "0"):
        return None
    directory = directory or compilation_cache_dir()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return None
    import jax
    jax.config.update("jax_compilation_cache_dir", directory)
    for option, value in (("jax_persistent_cache_min_compile_time_secs", 0.0),
                          ("jax_persistent_cache_min_entry_size_bytes", 0)):
        if option in jax.config.values:
            jax.config.update(option, value)
    _reset_compilation_cache()
    return directory


@contextlib.contextmanager
def compilation_cache(directory: str | None = None):
    """The persistent compilation cache on inside the ``with`` block (as
    :func:`enable_compilation_cache`, yielding its directory or ``None``), and the
    caller's cache options back on exit, so programs compiled after the block are not
    written to (or read from) that directory."""
    import jax
    saved = {o: jax.config.values[o] for o in _CACHE_OPTIONS if o in jax.config.values}
    enabled = enable_compilation_cache(directory)
    try:
        yield enabled
    finally:
        if enabled is not None:
            for option, value in saved.items():
                jax.config.update(option, value)
            _reset_compilation_cache()
