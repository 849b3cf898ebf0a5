"""Scaling benchmark: seed-steps per second, compile time and peak memory vs ensemble size.

For each ensemble size S (default 1, 8, 36, 144, 576, 1152) a fresh subprocess trains the
paper protocol's step (T = 48, L = 6 one-hot, D = 784, minibatch up to 160, monitoring on)
for a few epochs and reports compile time (``jit(...).lower().compile()``), run time,
seed-steps per second and the process's peak resident memory. Then it prints the scaling
exponent of run time in S (1 = linear) and the throughput of each S relative to S = 36.
``--mnist10`` adds the full-MNIST ten-digit case (60 000 images, L = 30 one-hot, 8 seeds).

    python benchmarks/bench_scale.py [--sizes 1,8,36,144,576,1152] [--epochs 4]
                                     [--cpu-devices N] [--mnist10] [--json OUT]

Targets on a 2-core CPU (issue): at 1152 seeds the throughput per seed-step is at least
0.8x that of 36 seeds, and peak memory stays below 4 GiB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import jax
    cfg_in = json.loads(sys.argv[1])
    if cfg_in["cpu_devices"]:
        from ncl._compat import set_num_cpu_devices
        set_num_cpu_devices(cfg_in["cpu_devices"])
    import jax.numpy as jnp, numpy as np
    from ncl import sharding
    from ncl import training as T
    from ncl.model import ModelConfig
    if cfg_in["mnist10"]:
        from ncl.data import binarize
        from ncl.mnist import load_mnist
        images, _ = load_mnist("train", directory=cfg_in["mnist_dir"], download=False)
        x = binarize(images)
        model = ModelConfig(**cfg_in.get("model", {"n_hidden": 30}))
    else:
        from ncl.data import load_paper_data
        x, _ = load_paper_data()
        model = ModelConfig()
    E = cfg_in["epochs"]
    # the paper's late-epoch minibatch (160) throughout: the most expensive steps
    config = T.TrainConfig(model=model, epochs=E, batch_min=160, batch_max=160,
                           **({"member_chunk": cfg_in["member_chunk"]}
                              if cfg_in["member_chunk"] else {}))
    S = cfg_in["seeds"]
    data = jnp.asarray(T.check_data(x))
    keys = T.ensemble_keys(np.arange(S))
    devices = sharding.resolve_devices(None)
    make = T._program(config, True, 0, E, True)
    # compile once (timed), through the same sharded path the library uses
    t0 = time.perf_counter()
    state, hist = sharding.run_sharded(make, keys, data, devices)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, hist = sharding.run_sharded(make, keys, data, devices)
    jax.block_until_ready(state)
    run = time.perf_counter() - t0
    steps = E * config.steps_per_epoch
    out = {"seeds": S, "epochs": E, "steps": steps, "first_call_s": first,
           "compile_s": max(first - run, 0.0), "run_s": run,
           "seed_steps_per_s": S * steps / run,
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "devices": len(devices), "finite": bool(np.all(np.asarray(hist.finite))),
           "data_rows": int(x.shape[0]), "L": model.n_hidden}
    print("RESULT" + json.dumps(out))
""")


def run_case(seeds, epochs, cpu_devices, mnist10=False, mnist_dir=None, member_chunk=None,
             model=None):
    arg = json.dumps({"seeds": seeds, "epochs": epochs, "cpu_devices": cpu_devices,
                      "mnist10": mnist10, "mnist_dir": mnist_dir, "member_chunk": member_chunk,
                      **({"model": model} if model else {})})
    proc = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"case seeds={seeds} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,8,36,144,576,1152")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--cpu-devices", type=int, default=os.cpu_count() or 1)
    p.add_argument("--mnist10", action="store_true",
                   help="add full-MNIST, 10 digits, L=30, 8 seeds")
    p.add_argument("--large-latent", action="store_true",
                   help="with --mnist10: also L=64 one-hot and 16 binary hidden units")
    p.add_argument("--mnist-dir", default=os.environ.get("NCL_MNIST_DIR"))
    p.add_argument("--member-chunk", type=int, default=None,
                   help="TrainConfig.member_chunk (default: the library default)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    print(f"# bench_scale: {os.cpu_count()} CPU cores, --cpu-devices {args.cpu_devices}, "
          f"{args.epochs} epochs x 30 steps, T=48, N=160, L=6, D=784; load {load}")
    print(f"{'seeds':>6} {'compile s':>10} {'run s':>8} {'seed-steps/s':>13} "
          f"{'rel. to 36':>10} {'peak GiB':>9}")
    rows = []
    for S in sizes:
        r = run_case(S, args.epochs, args.cpu_devices, member_chunk=args.member_chunk)
        rows.append(r)
    base = next((r for r in rows if r["seeds"] == 36), rows[0])
    for r in rows:
        r["throughput_rel_36"] = r["seed_steps_per_s"] / base["seed_steps_per_s"]
        print(f"{r['seeds']:6d} {r['compile_s']:10.2f} {r['run_s']:8.2f} "
              f"{r['seed_steps_per_s']:13.0f} {r['throughput_rel_36']:10.2f} "
              f"{r['peak_rss_gib']:9.2f}")
    import numpy as np
    S = np.array([r["seeds"] for r in rows], float)
    t = np.array([r["run_s"] for r in rows], float)
    big = S >= 36
    if big.sum() >= 2:
        slope = np.polyfit(np.log(S[big]), np.log(t[big]), 1)[0]
        print(f"scaling exponent of run time in seeds (S >= 36): {slope:.2f} (1 = linear)")
    c = np.array([r["compile_s"] for r in rows])
    print(f"compile time: min {c.min():.2f} s, max {c.max():.2f} s over seeds {sizes}")
    out = {"cases": rows, "load_average": load}
    if args.mnist10:
        r = run_case(8, max(1, args.epochs // 2), args.cpu_devices, True, args.mnist_dir,
                     member_chunk=args.member_chunk)
        out["mnist10"] = r
        print(f"full MNIST, 10 digits ({r['data_rows']} images), L=30 one-hot, 8 seeds: "
              f"compile {r['compile_s']:.1f} s, {r['seed_steps_per_s']:.0f} seed-steps/s, "
              f"peak {r['peak_rss_gib']:.2f} GiB, finite {r['finite']}")
        if args.large_latent:
            for label, model in (("L=64 one-hot", {"n_hidden": 64}),
                                 ("16 binary units", {"n_hidden": 16, "hidden": "binary"})):
                r = run_case(8, max(1, args.epochs // 2), args.cpu_devices, True,
                             args.mnist_dir, member_chunk=args.member_chunk, model=model)
                out[f"mnist10 {label}"] = r
                print(f"full MNIST, 10 digits, {label}, 8 seeds: compile "
                      f"{r['compile_s']:.1f} s, {r['seed_steps_per_s']:.0f} seed-steps/s, "
                      f"peak {r['peak_rss_gib']:.2f} GiB, finite {r['finite']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
