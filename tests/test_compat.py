"""ncl._compat: the version shims work on the JAX at hand (the lowest allowed one in
.ci/lowest, the newest in .ci/run). Device counts are fixed when JAX starts, hence
subprocesses."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from tests.helpers import REPO

OLD_JAX = "jax_num_cpu_devices" not in jax.config.values


def _run(code: str, env_extra: dict | None = None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    env.pop("JAX_NUM_CPU_DEVICES", None)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_set_num_cpu_devices_before_start_and_cli_helper():
    out = _run("""
        import json, jax
        from ncl.cli import configure_cpu_devices
        n = configure_cpu_devices(3)
        m = configure_cpu_devices(5)   # JAX runs now: left alone, the count in effect
        print(json.dumps({"n": n, "m": m, "count": jax.device_count()}))
    """, {"XLA_FLAGS": ""})
    assert out == {"n": 3, "m": 3, "count": 3}


def test_set_num_cpu_devices_after_start_raises():
    out = _run("""
        import json, jax
        from ncl._compat import set_num_cpu_devices
        jax.devices()
        try:
            set_num_cpu_devices(2)
            raised = False
        except RuntimeError:
            raised = True
        print(json.dumps({"raised": raised, "count": jax.device_count()}))
    """, {"XLA_FLAGS": ""})
    assert out == {"raised": True, "count": 1}


@pytest.mark.skipif(not OLD_JAX, reason="JAX has jax_num_cpu_devices; XLA_FLAGS not used")
def test_xla_flags_fallback_replaces_an_earlier_count_and_keeps_other_flags():
    out = _run("""
        import json, os, jax
        from ncl._compat import set_num_cpu_devices
        set_num_cpu_devices(2)
        print(json.dumps({"flags": os.environ["XLA_FLAGS"], "count": jax.device_count()}))
    """, {"XLA_FLAGS": "--xla_force_host_platform_device_count=7 --xla_cpu_enable_fast_math=false"})
    assert out == {"flags": "--xla_cpu_enable_fast_math=false "
                            "--xla_force_host_platform_device_count=2", "count": 2}


def test_enable_x64_context():
    from ncl._compat import enable_x64
    assert jnp.zeros(1).dtype == jnp.float32
    with enable_x64(True):
        assert jnp.zeros(1).dtype == jnp.float64
    assert jnp.zeros(1).dtype == jnp.float32


def test_cpu_compiler_options_default_override_and_bad_value(monkeypatch):
    from ncl import _compat
    monkeypatch.delenv(_compat.CPU_OPT_LEVEL_ENV, raising=False)
    assert _compat.cpu_compiler_options() == {"xla_backend_optimization_level": 1}
    monkeypatch.setenv(_compat.CPU_OPT_LEVEL_ENV, "2")
    assert _compat.cpu_compiler_options() == {"xla_backend_optimization_level": 2}
    monkeypatch.setenv(_compat.CPU_OPT_LEVEL_ENV, "xla")
    assert _compat.cpu_compiler_options() == {}
    monkeypatch.setenv(_compat.CPU_OPT_LEVEL_ENV, "fast")
    with pytest.raises(ValueError, match="NCL_XLA_CPU_OPT_LEVEL.*'fast'.*unset it"):
        _compat.cpu_compiler_options()


def test_jit_passes_the_options_where_jax_takes_them(monkeypatch):
    """The wrapper hands the level to jax.jit (JAX after 0.4.33) and nothing otherwise,
    and the program it compiles computes what jax.jit's does."""
    import inspect
    from ncl import _compat
    monkeypatch.delenv(_compat.CPU_OPT_LEVEL_ENV, raising=False)
    takes = "compiler_options" in inspect.signature(jax.jit).parameters
    seen = {}
    real = jax.jit

    def spy(fn, **kw):
        seen.update(kw)
        return real(fn, **kw)
    spy.__signature__ = inspect.signature(real)
    monkeypatch.setattr(jax, "jit", spy)
    f = _compat.jit(lambda x: jnp.tanh(x) @ x.T, static_argnames=())
    x = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    assert jnp.allclose(f(x), real(lambda x: jnp.tanh(x) @ x.T)(x), rtol=1e-6)
    assert seen.get("static_argnames") == ()
    if takes:
        assert seen["compiler_options"] == {"xla_backend_optimization_level": 1}
    else:
        assert "compiler_options" not in seen
