"""Training benchmark: the paper protocol as one XLA program vs the per-seed NumPy reference.

Prints, measured in one run on this machine, for the protocol of the paper (Sect. IV A:
36 seeds, 120 epochs x 30 steps = 3600 steps, T = 48, minibatch 16 -> 160, L = 6 one-hot,
D = 784, the bundled MNIST 0/1/2 data; ``TrainConfig()`` defaults, so the in-program
monitor is on):

* compile: the compile time of the whole-protocol program (tracing, lowering and XLA
  compilation, as ``jax.monitoring`` reports them during the call);
* run: the rest of the wall time of that one ``train_ensemble`` call, the run of the
  compiled program (``--repeat`` measures it again with a second call), and the wall
  time of the call itself, compile included;
* seed-steps per second (seeds x steps / run time) and the time per seed-step;
* the NumPy reference per seed-step and the ratio NumPy / ncl per seed-step (and for the
  whole protocol with compile included).

The NumPy reference (``benchmarks/numpy_reference.py``, a straightforward per-seed
implementation) is timed, not assumed: ``--numpy-seeds`` seeds are run one after the
other (a Python loop over seeds), each for ``--numpy-steps`` training steps after
``--numpy-warmup`` untimed ones. The minibatch size of timed step ``i`` of ``n`` is that of
epoch ``floor(i * E / n)``, so the timed steps sweep the 16 -> 160 schedule and their mean
cost is the protocol's mean cost per seed-step; the whole protocol is extrapolated as
(time per seed-step) x seeds x steps. It is timed twice in fresh interpreters, with BLAS
limited to one thread and with its default threads, and the faster of the two is the
reference (the conservative choice for the ratio).

Devices: ``--devices K`` (default: the number of CPU cores; ``--cpu-devices`` is an
alias) asks JAX for K CPU devices (``jax_num_cpu_devices``, before JAX starts) and
``train_ensemble(..., devices=K)`` shards the seed axis over them, so each core runs its
share of the seeds. Results equal the single-device run up to float32 round-off
(``tests/test_sharding.py``). ``--xla-flags`` appends XLA flags (e.g.
``--xla_cpu_prefer_vector_width=512`` on AVX-512 CPUs); by default XLA's defaults are
left alone, so the figures are what a user of the library gets. ``--variants`` also runs
the protocol without the monitor, with the CLI's per-epoch progress callback and on one
device, each in a fresh interpreter.

    python benchmarks/bench_train.py [--seeds 36] [--epochs 120] [--devices K]
                                     [--numpy-steps 300] [--variants] [--json OUT]
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=36, help="ensemble size (default 36)")
    ap.add_argument("--epochs", type=int, default=120, help="epochs (default 120)")
    ap.add_argument("--steps-per-epoch", type=int, default=30, help="steps per epoch (30)")
    ap.add_argument("--devices", "--cpu-devices", type=int, dest="devices",
                    default=os.cpu_count() or 1,
                    help="CPU devices to shard the seed axis over (default: CPU cores)")
    ap.add_argument("--no-monitor", action="store_true",
                    help="run with TrainConfig(monitor=False)")
    ap.add_argument("--progress", action="store_true",
                    help="pass a per-epoch progress callback, as the CLI does")
    ap.add_argument("--numpy-steps", type=int, default=300,
                    help="timed NumPy steps per seed (default 300; 0 skips NumPy)")
    ap.add_argument("--numpy-seeds", type=int, default=3,
                    help="seeds the NumPy reference is timed on (default 3)")
    ap.add_argument("--numpy-warmup", type=int, default=10, help="untimed NumPy steps per seed")
    ap.add_argument("--xla-flags", default="",
                    help="extra XLA flags, appended to $XLA_FLAGS before JAX starts")
    ap.add_argument("--repeat", action="store_true",
                    help="call train_ensemble a second time and report that run time")
    ap.add_argument("--variants", action="store_true",
                    help="also run without the monitor, with a progress callback and on one "
                         "device (each in a fresh process)")
    ap.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    ap.add_argument("--numpy-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for name in ("seeds", "epochs", "steps_per_epoch", "numpy_seeds", "devices"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.numpy_steps < 0 or args.numpy_warmup < 0:
        ap.error("--numpy-steps and --numpy-warmup must be non-negative")
    return args


# ----------------------------------------------------------------------------- NumPy

def _numpy_reference():
    spec = importlib.util.spec_from_file_location("numpy_reference", HERE / "numpy_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_numpy(data, epochs, n_steps, n_seeds, warmup, T=48, L=6):
    """Seconds per seed-step of the NumPy reference over a sweep of the minibatch schedule,
    and the mean minibatch size of the timed steps."""
    import numpy as np

    ref = _numpy_reference()
    data = np.asarray(data, np.float32)
    center = data.mean(axis=0)
    sizes = [ref.minibatch_size((i * epochs) // n_steps, epochs) for i in range(n_steps)]
    elapsed = 0.0
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        params = ref.init_params(rng, data, L)
        opt = ref.rmsprop_init(params)
        x = data[rng.integers(data.shape[0])].copy()
        for i in range(warmup):
            params, opt, x, _ = ref.train_step(rng, params, opt, x, data, center, T,
                                               sizes[i % n_steps])
        t0 = time.perf_counter()
        for n in sizes:
            params, opt, x, _ = ref.train_step(rng, params, opt, x, data, center, T, n)
        elapsed += time.perf_counter() - t0
    return elapsed / (n_seeds * n_steps), float(np.mean(sizes))


def _numpy_only(args):
    from ncl.data import load_paper_data

    x, _ = load_paper_data()
    s, mean_n = time_numpy(x, args.epochs, args.numpy_steps, args.numpy_seeds,
                           args.numpy_warmup)
    print("NUMPY" + json.dumps({"seconds_per_seed_step": s, "mean_batch": mean_n}))


def _numpy_in_fresh_process(args, blas_threads):
    env = dict(os.environ)
    if blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(blas_threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--numpy-only",
           "--epochs", str(args.epochs), "--numpy-steps", str(args.numpy_steps),
           "--numpy-seeds", str(args.numpy_seeds), "--numpy-warmup", str(args.numpy_warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE.parent)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("NUMPY")][-1]
    return json.loads(line[len("NUMPY"):])


# ----------------------------------------------------------------------------- JAX

def _configure_jax(n_devices: int, xla_flags: str):
    """Device count and XLA flags; must run before JAX creates its CPU backend."""
    if xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags).strip()
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n_devices)
    except Exception as exc:  # the backend already started (jax used by the caller)
        print(f"warning: could not set the CPU device count ({exc})", file=sys.stderr)
    return jax


def _make_config(args):
    from ncl import training

    kw = {"monitor": False} if args.no_monitor else {}
    return training.TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, **kw)


def _run_jax(args, jax, config):
    import numpy as np

    from ncl import training
    from ncl.data import load_paper_data

    x, _ = load_paper_data()
    data = training.check_data(x)
    seed_steps = args.seeds * config.total_steps
    n_dev = min(args.devices, len(jax.devices()))
    keys = training.ensemble_keys(np.arange(args.seeds))
    calls = []
    kw = {"progress": lambda epoch, row: calls.append(int(epoch))} if args.progress else {}
    if "devices" in inspect.signature(training.train_ensemble).parameters:
        def run():
            return training.train_ensemble(keys, data, config, devices=n_dev, **kw)
    else:  # an API without devices=: shard the keys by hand
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        if n_dev > 1 and args.seeds % n_dev == 0:
            mesh = Mesh(np.array(jax.devices()[:n_dev]), ("seeds",))
            keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("seeds")))
        else:
            n_dev = 1

        def run():
            return training.train_ensemble(keys, data, config, **kw)

    compile_events = {}

    def listener(event, duration, **_):
        if event.startswith("/jax/core/compile/"):
            compile_events[event] = compile_events.get(event, 0.0) + duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    t0 = time.perf_counter()
    state, hist = run()
    jax.block_until_ready((state, hist))
    t_total = time.perf_counter() - t0
    jax.monitoring.unregister_event_duration_listener(listener)
    t_compile = sum(compile_events.values())
    t_run = t_total - t_compile
    t_run_repeat = None
    if args.repeat:
        t0 = time.perf_counter()
        jax.block_until_ready(run())
        t_run = t_run_repeat = time.perf_counter() - t0
    final_ll = np.asarray(hist.loglik)[:, -1]
    return dict(
        seeds=args.seeds, epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch, seed_steps=seed_steps,
        monitor=getattr(config, "monitor", None), devices=n_dev,
        progress_calls=len(calls) if args.progress else None,
        compile_s=t_compile, compile_breakdown_s=compile_events, run_s=t_run,
        run_repeat_s=t_run_repeat, total_s=t_total, seed_steps_per_s=seed_steps / t_run,
        ms_per_seed_step=1e3 * t_run / seed_steps,
        all_finite=bool(np.all(np.asarray(hist.finite))),
        final_loglik_mean=float(np.mean(final_ll)))


def _variant_in_fresh_process(args, extra):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--seeds", str(args.seeds),
               "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch),
               "--numpy-steps", "0", "--json", str(out)] + extra
        if args.xla_flags:
            cmd += ["--xla-flags", args.xla_flags]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        return json.loads(out.read_text())


def _describe(name, r):
    return (f"  {name}: compile {r['compile_s']:.2f} s, run {r['run_s']:.2f} s "
            f"({r['seed_steps_per_s']:,.0f} seed-steps/s, {r['ms_per_seed_step']:.4f} ms per "
            f"seed-step), total {r['total_s']:.2f} s")


def main(argv=None):
    args = _parse(argv)
    if args.numpy_only:
        return _numpy_only(args)
    try:
        load = os.getloadavg()
    except OSError:
        load = None

    # NumPy first, in fresh interpreters (BLAS threads are fixed at import)
    numpy_refs = {}
    if args.numpy_steps > 0:
        for threads in (1, None):
            numpy_refs["1" if threads else "default"] = _numpy_in_fresh_process(args, threads)

    jax = _configure_jax(args.devices, args.xla_flags)
    import numpy as np

    from ncl import training

    config = _make_config(args)
    mean_n = np.mean([training.minibatch_size(e, config) for e in range(config.epochs)])
    n_dev = min(args.devices, len(jax.devices()))
    print("ncl training benchmark")
    print(f"  machine: {platform.machine()}, {os.cpu_count()} CPU cores, load average "
          f"{tuple(round(v, 2) for v in load) if load else None}; python "
          f"{platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"  protocol: {args.seeds} seeds x {config.epochs} epochs x "
          f"{config.steps_per_epoch} steps = {args.seeds * config.total_steps} seed-steps; "
          f"T={config.chain_length}, L={config.model.n_hidden} {config.model.hidden}, D=784, "
          f"minibatch {config.batch_min}->{config.batch_max} (mean {mean_n:.1f}), "
          f"{config.batch_buckets} batch buckets, monitor={getattr(config, 'monitor', None)}"
          f"{', progress callback' if args.progress else ''}; "
          f"{n_dev} CPU device(s), seed axis sharded over them", flush=True)
    r = _run_jax(args, jax, config)
    print(f"  compile: {r['compile_s']:.2f} s")
    print(f"  run:     {r['run_s']:.2f} s" + (" (second call)" if args.repeat else ""))
    print(f"  seed-steps per second: {r['seed_steps_per_s']:,.0f} "
          f"({r['ms_per_seed_step']:.4f} ms per seed-step)")
    print(f"  protocol wall time, compile included (one train_ensemble call): "
          f"{r['total_s']:.2f} s")
    result = dict(load_average=load, cpu_count=os.cpu_count(), jax_version=jax.__version__,
                  xla_flags=os.environ.get("XLA_FLAGS", ""), **r)
    if numpy_refs:
        best = min(numpy_refs, key=lambda k: numpy_refs[k]["seconds_per_seed_step"])
        ref_s = numpy_refs[best]["seconds_per_seed_step"]
        per_step = r["run_s"] / r["seed_steps"]
        ratio, ratio_total = ref_s / per_step, ref_s * r["seed_steps"] / r["total_s"]
        for k, v in numpy_refs.items():
            print(f"  NumPy reference, BLAS threads {k}: "
                  f"{1e3 * v['seconds_per_seed_step']:.3f} ms per seed-step")
        print(f"  NumPy reference: {args.numpy_seeds} seeds x {args.numpy_steps} timed steps "
              f"each (+{args.numpy_warmup} warm-up), looped over seeds, minibatch swept over "
              f"the protocol schedule (mean N "
              f"{numpy_refs[best]['mean_batch']:.1f}); the faster ({best} BLAS thread(s)) "
              f"{1e3 * ref_s:.3f} ms per seed-step x {r['seed_steps']} seed-steps = "
              f"{ref_s * r['seed_steps']:.0f} s for the protocol")
        print(f"  ncl vs NumPy per seed-step: {ratio:.1f}x faster "
              f"({ratio_total:.1f}x for the whole protocol, compile included)")
        result.update(numpy=numpy_refs, numpy_ms_per_seed_step=1e3 * ref_s,
                      numpy_protocol_s=ref_s * r["seed_steps"], speedup=ratio,
                      speedup_incl_compile=ratio_total)
    print(f"  check: all parameters finite: {r['all_finite']}; final-epoch on-the-fly "
          f"log-likelihood (mean over seeds) {r['final_loglik_mean']:.2f}")
    if args.variants:
        variants = {}
        same = (["--no-monitor"] if args.no_monitor else []) + (
            ["--progress"] if args.progress else [])
        if not args.no_monitor:
            variants["monitor off"] = _variant_in_fresh_process(
                args, ["--no-monitor", "--devices", str(args.devices)])
        if not args.progress:
            variants["progress callback"] = _variant_in_fresh_process(
                args, ["--progress", "--devices", str(args.devices)] + same)
        if args.devices > 1:
            variants["1 CPU device"] = _variant_in_fresh_process(args, ["--devices", "1"] + same)
        for name, v in variants.items():
            print(_describe(name, v))
        result["variants"] = variants
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"  wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
