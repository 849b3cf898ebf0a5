"""Training benchmark: the paper protocol as one XLA program vs a per-seed NumPy loop.

Prints, measured side by side in one run on this machine:

* JAX: compile time, run time, seed-steps per second for the paper protocol (36 seeds,
  120 epochs x 30 steps = 3600 steps, T = 48, minibatch 16 -> 160, L = 6, D = 784),
  the total "compile included" wall time; variants without the in-program monitor
  (sigma and the precise log-likelihood per epoch) and with the per-epoch progress
  callback the CLI uses, so their overheads are measured too; one device; and XLA's
  default CPU backend level (3) against the level 1 ncl compiles at, so the compile time
  saved and the run time it costs are measured side by side;
* NumPy: the reference step of ``benchmarks/numpy_reference.py`` (a straightforward
  per-seed implementation), timed at the protocol's minibatch sizes and looped over
  seeds; seconds per seed-step, extrapolated to the protocol's average minibatch;
* the ratio NumPy / JAX per seed-step.

    python benchmarks/bench_train.py [--seeds 36] [--epochs 120] [--cpu-devices N]
                                     [--numpy-steps 200] [--skip-variants] [--json OUT]

Each JAX configuration runs in a fresh subprocess (the device count is fixed when JAX
starts, and compile caches must not leak between variants).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: benchmarks/ is sys.path[0]
    sys.path.insert(0, str(HERE.parent))

CHILD = textwrap.dedent("""
    import json, sys, time
    import jax
    a = json.loads(sys.argv[1])
    from ncl._compat import set_num_cpu_devices
    set_num_cpu_devices(a["cpu_devices"])
    import numpy as np
    from ncl.data import load_paper_data
    from ncl.training import TrainConfig, train_ensemble
    x, _ = load_paper_data()
    cfg = TrainConfig(epochs=a["epochs"], monitor=a["monitor"], **a.get("overrides", {}))
    calls = []
    progress = (lambda e, row: calls.append(int(e))) if a["progress"] else None
    t0 = time.perf_counter()
    state, hist = train_ensemble(range(a["seeds"]), x, cfg, progress=progress)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, hist = train_ensemble(range(a["seeds"]), x, cfg, progress=progress)
    jax.block_until_ready(state)
    run = time.perf_counter() - t0
    ll = np.asarray(hist.loglik)
    print("RESULT" + json.dumps({
        "first_call_s": first, "run_s": run, "compile_s": max(first - run, 0.0),
        "seed_steps": a["seeds"] * cfg.total_steps, "devices": jax.local_device_count(),
        "final_loglik_median": float(np.median(ll[:, -1])),
        "finite": bool(np.all(np.asarray(hist.finite))), "progress_calls": len(calls)}))
""")


def jax_case(seeds, epochs, cpu_devices, monitor=True, progress=False, overrides=None,
             env=None):
    arg = json.dumps({"seeds": seeds, "epochs": epochs, "cpu_devices": cpu_devices,
                      "monitor": monitor, "progress": progress, "overrides": overrides or {}})
    proc = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True,
                          cwd=HERE.parent, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def numpy_seconds_per_seed_step(n_steps: int, n_seeds: int, epochs: int) -> dict:
    """Time the NumPy reference step at the smallest, middle and largest minibatch of the
    protocol and average over the protocol's schedule (the step cost is linear in N)."""
    from benchmarks import numpy_reference as ref
    from ncl.data import load_paper_data
    x, _ = load_paper_data()
    data = x.astype(np.float32)
    center = data.mean(0)
    per_n = {}
    for N in (16, 88, 160):
        times = []
        for seed in range(n_seeds):
            rng = np.random.default_rng(seed)
            params = ref.init_params(rng, data, 6)
            opt = ref.rmsprop_init(params)
            xc = data[rng.integers(len(data))]
            for _ in range(5):  # warm-up
                params, opt, xc, _ = ref.train_step(rng, params, opt, xc, data, center, 48, N)
            t0 = time.perf_counter()
            for _ in range(n_steps):
                params, opt, xc, _ = ref.train_step(rng, params, opt, xc, data, center, 48, N)
            times.append((time.perf_counter() - t0) / n_steps)
        per_n[N] = float(np.median(times))
    sizes = np.array([ref.minibatch_size(e, epochs) for e in range(epochs)], float)
    slope = (per_n[160] - per_n[16]) / (160 - 16)
    protocol = float(np.mean(per_n[16] + slope * (sizes - 16)))
    return {"per_N": per_n, "protocol_mean_s": protocol, "mean_batch": float(sizes.mean())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=36)
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1)
    p.add_argument("--numpy-steps", type=int, default=200)
    p.add_argument("--numpy-seeds", type=int, default=3)
    p.add_argument("--skip-variants", action="store_true",
                   help="only the default configuration (monitor on, no progress)")
    p.add_argument("--buckets", default="",
                   help="comma-separated TrainConfig.batch_buckets values to time as extra "
                        "variants (compile vs padding trade-off), e.g. 1,2,8")
    p.add_argument("--json", default=None)
    p.add_argument("--numpy-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.numpy_only:
        r = numpy_seconds_per_seed_step(args.numpy_steps, args.numpy_seeds, args.epochs)
        print("NUMPY" + json.dumps(r))
        return
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    print(f"# bench_train: {os.cpu_count()} CPU cores, load average {load}")
    print(f"# protocol: {args.seeds} seeds x {args.epochs} epochs x 30 steps, T=48, "
          f"minibatch 16->160, L=6 one-hot, D=784, bundled data")
    out = {"load_average": load, "args": vars(args)}
    cases = [("default (monitor on)", dict(monitor=True, progress=False))]
    if not args.skip_variants:
        cases += [("monitor off", dict(monitor=False, progress=False)),
                  ("monitor on + progress callback", dict(monitor=True, progress=True)),
                  ("1 CPU device", dict(monitor=True, progress=False, cpu_devices=1)),
                  # ncl compiles its programs at XLA's CPU backend level 1
                  # (ncl._compat.cpu_compiler_options); this is XLA's own default (3)
                  ("XLA's default CPU backend level", dict(
                      monitor=True, progress=False, env={"NCL_XLA_CPU_OPT_LEVEL": "xla"}))]
    for b in filter(None, args.buckets.split(",")):
        cases.append((f"batch_buckets={int(b)}", dict(monitor=True, progress=False,
                                                     overrides={"batch_buckets": int(b)})))
    results = {}
    for name, kw in cases:
        dev = kw.pop("cpu_devices", args.cpu_devices)
        r = jax_case(args.seeds, args.epochs, dev, **kw)
        r["seconds_per_seed_step"] = r["run_s"] / r["seed_steps"]
        results[name] = r
        print(f"JAX  {name:32s} devices {r['devices']}: compile {r['compile_s']:6.2f} s, "
              f"run {r['run_s']:6.2f} s, total (compile included) {r['first_call_s']:6.2f} s, "
              f"{r['seed_steps'] / r['run_s']:8.0f} seed-steps/s, "
              f"compile/run {r['compile_s'] / r['run_s']:.2f}, "
              f"median final loglik {r['final_loglik_median']:.2f}")
    base = results["default (monitor on)"]
    if "monitor off" in results:
        off = results["monitor off"]
        print(f"monitor overhead: {100 * (base['run_s'] / off['run_s'] - 1):+.1f}% run time, "
              f"{base['compile_s'] - off['compile_s']:+.1f} s compile")
    if "XLA's default CPU backend level" in results:
        o2 = results["XLA's default CPU backend level"]
        print(f"XLA CPU backend level 1 (ncl) vs XLA's default (3): compile "
              f"{base['compile_s']:.2f} s vs {o2['compile_s']:.2f} s, run {base['run_s']:.2f} s "
              f"vs {o2['run_s']:.2f} s")
    if "monitor on + progress callback" in results:
        pr = results["monitor on + progress callback"]
        print(f"progress callback overhead: {100 * (pr['run_s'] / base['run_s'] - 1):+.1f}% "
              f"run time ({pr['progress_calls']} calls)")
    refs = {}
    for threads in ("1", None):  # OpenBLAS single-threaded and with its default threads
        env = dict(os.environ)
        if threads:
            env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = threads
        proc = subprocess.run([sys.executable, __file__, "--numpy-only",
                               "--numpy-steps", str(args.numpy_steps), "--numpy-seeds",
                               str(args.numpy_seeds), "--epochs", str(args.epochs)],
                              capture_output=True, text=True, env=env, cwd=HERE.parent)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("NUMPY")][-1]
        refs[threads or "default"] = json.loads(line[len("NUMPY"):])
        r = refs[threads or "default"]
        print(f"NumPy reference, BLAS threads {threads or 'default'}: "
              f"{1e3 * r['protocol_mean_s']:.3f} ms per seed-step (protocol mean)")
    ref = min(refs.values(), key=lambda r: r["protocol_mean_s"])  # the faster: conservative
    ref["per_N"] = {int(k): v for k, v in ref["per_N"].items()}  # JSON keys are strings
    print(f"NumPy reference (faster of the two): {1e3 * ref['per_N'][16]:.3f} / "
          f"{1e3 * ref['per_N'][88]:.3f} / "
          f"{1e3 * ref['per_N'][160]:.3f} ms per seed-step at N = 16 / 88 / 160; protocol "
          f"mean (N = {ref['mean_batch']:.0f}): {1e3 * ref['protocol_mean_s']:.3f} ms "
          f"-> {ref['protocol_mean_s'] * base['seed_steps']:.0f} s for the whole protocol")
    for name, r in results.items():
        print(f"speed-up vs NumPy per seed-step, {name}: "
              f"{ref['protocol_mean_s'] / r['seconds_per_seed_step']:.1f}x")
    out.update(jax=results, numpy=refs)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
