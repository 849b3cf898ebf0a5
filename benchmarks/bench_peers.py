"""Peers benchmark: ncl (JAX) vs the same training step written without ncl, side by side.

Measured in one run on this machine:

* ncl JAX: the paper protocol as one XLA program (``bench_train.jax_case``, a fresh
  subprocess; 36 seeds x 120 epochs x 30 steps, minibatch 16 -> 160, T = 48, L = 6 one-hot,
  D = 784), monitor off by default, since the peers compute only the training step
  (``--monitor`` includes the in-program sigma / log-likelihood per epoch);
* the per-seed NumPy reference loop (``bench_train.numpy_seconds_per_seed_step``, through
  ``bench_train.py --numpy-only``: ``benchmarks/numpy_reference.py`` at N = 16 / 88 / 160,
  averaged over the protocol's schedule);
* (a) the NumPy peer batched over seeds and (b) the PyTorch CPU peer batched over seeds
  (``benchmarks/peers.py``), each timed over ``--peer-steps`` steps at E = ``--seeds``
  seeds and the protocol's mean minibatch N = 88, after its gradient has been checked
  against ``numpy_reference.two_step_gradient`` seed by seed on fixed chain samples at the
  same sizes, in float64 and in float32 (the run stops if a check fails). The NumPy cases
  run in subprocesses with OpenBLAS on one thread and on its default; torch is timed with
  one intra-op thread and with its default (``--torch-threads``).

Prints seconds per seed-step, seed-steps per second and the ratios to ncl, and the load
average at start and end.

    python benchmarks/bench_peers.py [--quick] [--seeds 36] [--epochs 120] [--peer-steps 30]
                                     [--N 88] [--monitor] [--torch-threads 1,default]
                                     [--cpu-devices N] [--json OUT]

PyTorch is optional (``pip install -e '.[bench]'``); without it the torch peer is skipped
with a message.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: benchmarks/ is sys.path[0]
    sys.path.insert(0, str(HERE.parent))

from benchmarks import bench_train, peers  # noqa: E402  (after the sys.path line)


def _load_avg():
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return None


def _in_subprocess(script, argv, tag, blas_threads):
    """Run ``script argv`` with OpenBLAS/OpenMP limited to ``blas_threads`` (None: their
    default) and return the JSON printed after ``tag``."""
    env = dict(os.environ)
    if blas_threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(blas_threads)
    proc = subprocess.run([sys.executable, str(script), *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=HERE.parent)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(tag)][-1]
    return json.loads(line[len(tag):])


def time_peer(peer, name, E, T, N, L, steps, warmup, data, hidden, seed=0):
    """Seconds per seed-step of a peer over ``steps`` steps of E seeds (after warm-up)."""
    rng = np.random.default_rng(seed)
    center = data.mean(0)
    params, opt, xc = peer.numpy_init(rng, data, E, L, hidden)
    if name == "numpy":
        step, state = peer.numpy_train_step, rng
        args = (data, center)
    else:
        import torch
        state = torch.Generator().manual_seed(seed)
        params, opt = peer.to_torch(params), peer.to_torch(opt)
        xc = torch.as_tensor(xc)
        args = (torch.as_tensor(data), torch.as_tensor(center))
        step = peer.torch_train_step
    for _ in range(warmup):
        params, opt, xc, ll = step(state, params, opt, xc, *args, T, N, hidden)
    t0 = time.perf_counter()
    for _ in range(steps):
        params, opt, xc, ll = step(state, params, opt, xc, *args, T, N, hidden)
    dt = time.perf_counter() - t0
    ll = np.asarray(ll)
    return {"seconds_per_seed_step": dt / (steps * E), "steps": steps, "seeds": E, "N": N,
            "wall_s": dt, "last_loglik_median": float(np.median(ll)),
            "finite": bool(np.all(np.isfinite(ll)))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 epochs of JAX, 3 peer steps, 3 reference steps")
    p.add_argument("--seeds", type=int, default=36)
    p.add_argument("--epochs", type=int, default=120, help="JAX protocol epochs")
    p.add_argument("--peer-steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--numpy-steps", type=int, default=30,
                   help="per-seed reference: timed steps per seed and minibatch size")
    p.add_argument("--numpy-seeds", type=int, default=3)
    p.add_argument("--N", type=int, default=88, help="peer minibatch (protocol mean: 88)")
    p.add_argument("--T", type=int, default=48)
    p.add_argument("--L", type=int, default=6)
    p.add_argument("--hidden", default="onehot", choices=("onehot", "binary"),
                   help="peers only; the JAX run is the paper protocol (one-hot)")
    p.add_argument("--monitor", action="store_true",
                   help="JAX with the in-program monitor (sigma, log-likelihood per epoch)")
    p.add_argument("--torch-threads", default="1,default",
                   help="comma-separated torch.set_num_threads values to time the torch peer "
                        "at ('default' = torch's own choice); under load one thread is faster")
    p.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", default=None)
    p.add_argument("--numpy-peer-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.peer_steps, args.numpy_steps, args.warmup = 2, 3, 3, 1

    from ncl.data import load_paper_data
    x, _ = load_paper_data()
    data = np.asarray(x, np.float32)
    if args.numpy_peer_only:  # child: time the NumPy peer under the caller's BLAS threads
        r = time_peer(peers, "numpy", args.seeds, args.T, args.N, args.L, args.peer_steps,
                      args.warmup, data, args.hidden)
        print("PEER" + json.dumps(r))
        return

    load0 = _load_avg()
    print(f"# bench_peers: {os.cpu_count()} CPU cores, load average at start {load0}")
    print(f"# ncl JAX: {args.seeds} seeds x {args.epochs} epochs x 30 steps, minibatch 16->160 "
          f"(mean 88), T=48, L=6 one-hot, D=784, monitor {'on' if args.monitor else 'off'}, "
          f"{args.cpu_devices} CPU devices")
    print(f"# peers: E={args.seeds} seeds batched, {args.peer_steps} timed steps "
          f"(+{args.warmup} warm-up), N={args.N}, T={args.T}, L={args.L} {args.hidden}, "
          f"D={data.shape[1]}")
    out = {"args": vars(args), "load_average_start": load0}
    rows = {}

    # correctness before timing: each peer's gradient vs the per-seed reference
    have_torch = peers.torch_available()
    problem = peers.fixed_problem(data, args.seeds, args.T, args.N, args.L, args.hidden)
    names = ["numpy"] + (["torch"] if have_torch else [])
    checks = {}
    for name in names:
        worst = peers.check_gradients(name, *problem, hidden=args.hidden)  # raises on mismatch
        checks[name] = worst
        for label, w in worst.items():
            print(f"gradient check, {name} peer vs numpy_reference.two_step_gradient, "
                  f"{args.seeds} seeds, {label}: passed; max |peer - ref| / max |ref|: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in w.items()))
    out["gradient_checks"] = checks
    if not have_torch:
        print("torch not installed: pip install -e '.[bench]'")

    # peers, batched over seeds; NumPy (peer and reference) in subprocesses with BLAS on one
    # thread and on its default, as bench_train times the reference (under load, fewer
    # threads can be faster)
    timed = []  # (row name, peer)
    blas = [("1 thread", 1), ("default threads", None)]
    for label, threads in blas:
        r = _in_subprocess(Path(__file__), ["--numpy-peer-only", "--seeds", args.seeds,
                                            "--peer-steps", args.peer_steps, "--warmup",
                                            args.warmup, "--N", args.N, "--T", args.T,
                                            "--L", args.L, "--hidden", args.hidden],
                           "PEER", threads)
        rows[f"numpy peer, batched (BLAS {label})"] = r
        timed.append((f"numpy peer, batched (BLAS {label})", "numpy"))
    if have_torch:
        import torch
        default_threads = torch.get_num_threads()
        settings = [default_threads if t.strip() == "default" else int(t)
                    for t in args.torch_threads.split(",")]
        for threads in dict.fromkeys(settings):  # "1,default" on one core: once
            torch.set_num_threads(threads)
            r = time_peer(peers, "torch", args.seeds, args.T, args.N, args.L,
                          args.peer_steps, args.warmup, data, args.hidden)
            r["torch"], r["threads"] = torch.__version__, torch.get_num_threads()
            torch.set_num_threads(default_threads)
            plural = "s" if r["threads"] > 1 else ""
            row = f"torch peer, batched ({r['threads']} thread{plural})"
            rows[row] = r
            timed.append((row, "torch"))

    # the per-seed NumPy reference loop (bench_train's timing, reused through its
    # --numpy-only child, at both BLAS settings)
    refs = []
    for label, threads in blas:
        ref = _in_subprocess(HERE / "bench_train.py",
                             ["--numpy-only", "--numpy-steps", args.numpy_steps,
                              "--numpy-seeds", args.numpy_seeds, "--epochs", args.epochs],
                             "NUMPY", threads)
        ref["per_N"] = {int(k): v for k, v in ref["per_N"].items()}  # JSON keys are strings
        row = f"NumPy reference, per seed (BLAS {label})"
        rows[row] = {"seconds_per_seed_step": ref["protocol_mean_s"], **ref}
        refs.append(row)

    # ncl JAX (bench_train's subprocess, reused)
    j = bench_train.jax_case(args.seeds, args.epochs, args.cpu_devices, monitor=args.monitor)
    j["seconds_per_seed_step"] = j["run_s"] / j["seed_steps"]
    rows["ncl JAX"] = j

    base = j["seconds_per_seed_step"]
    print(f"ncl JAX: compile {j['compile_s']:.2f} s, run {j['run_s']:.2f} s for "
          f"{j['seed_steps']} seed-steps, median final loglik {j['final_loglik_median']:.2f}, "
          f"finite {j['finite']}")
    for row in refs:
        ref = rows[row]
        print(f"{row}: {1e3 * ref['per_N'][16]:.3f} / {1e3 * ref['per_N'][88]:.3f} / "
              f"{1e3 * ref['per_N'][160]:.3f} ms per seed-step at N = 16 / 88 / 160 "
              f"({args.numpy_seeds} seeds x {args.numpy_steps} steps each)")
    for row, name in timed:
        r = rows[row]
        extra = f", torch {r['torch']}" if name == "torch" else ""
        print(f"{row}: {r['steps']} steps x {r['seeds']} seeds in {r['wall_s']:.2f} s, "
              f"last-step median loglik {r['last_loglik_median']:.2f}, finite {r['finite']}{extra}")
    print(f"{'implementation':48s} {'ms/seed-step':>12s} {'seed-steps/s':>13s} "
          f"{'vs ncl (throughput)':>20s} {'ncl speed-up':>13s}")
    for row in ["ncl JAX", *refs, *(r for r, _ in timed)]:
        s = rows[row]["seconds_per_seed_step"]
        print(f"{row:48s} {1e3 * s:12.4f} {1 / s:13.0f} {base / s:20.3f} {s / base:12.1f}x")
    load1 = _load_avg()
    print(f"# load average at end {load1}")
    out.update(rows=rows, load_average_end=load1)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
