"""Shims for the range of JAX versions ``pyproject.toml`` allows (a leaf module: imports
nothing from ``ncl``, and JAX only inside the functions)."""
from __future__ import annotations

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
