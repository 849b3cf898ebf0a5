"""The seed axis sharded over 4 forced CPU devices equals the single-device run.

What "equal" means, measured: the sampled chains (every visible and hidden state) are
bit for bit identical; parameters and monitored quantities agree to float32 round-off
(partitioning changes the batch shape of the matrix products, hence the order of some
float32 sums; RMSprop's division by sqrt(nu) amplifies that to ~1e-3 in a few weights).
Runs in a subprocess because the device count is fixed when JAX starts.
"""
import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import dataclasses, json, jax
    jax.config.update("jax_num_cpu_devices", 4)
    import numpy as np
    from ncl.data import load_paper_data
    from ncl.training import TrainConfig, train_ensemble, init_ensemble_state, continue_training
    x, _ = load_paper_data()
    cfg = TrainConfig(epochs=4, steps_per_epoch=5, chain_length=12, batch_min=8, batch_max=40,
                      batch_buckets=2)
    rows = []
    s1, h1 = train_ensemble(range(6), x, cfg, devices=1)
    s4, h4 = train_ensemble(range(6), x, cfg, devices=4,
                            progress=lambda e, r: rows.append(np.asarray(r.loglik).shape[0]))
    crows = []
    s4c, h4c = train_ensemble(range(6), x, dataclasses.replace(cfg, member_chunk=4), devices=4,
                              progress=lambda e, r: crows.append(np.asarray(r.loglik).shape[0]))
    st = init_ensemble_state(range(6), x, cfg)
    a, _ = continue_training(st, x, cfg, 0, 2, devices=4)
    b, _ = continue_training(a, x, cfg, 2, devices=3)
    out = {
        "n_devices": jax.device_count(),
        "sharded_over": len(s4.params.w.sharding.device_set),
        "chain_equal": bool(np.array_equal(s1.chain.x, s4.chain.x)),
        "w_maxdiff": float(np.abs(np.asarray(s1.params.w) - np.asarray(s4.params.w)).max()),
        "wbar_maxdiff": float(np.abs(np.asarray(s1.params.wbar) - np.asarray(s4.params.wbar)).max()),
        "ll_maxdiff": float(np.abs(np.asarray(h1.loglik) - np.asarray(h4.loglik)).max()),
        "resumed_chain_equal": bool(np.array_equal(b.chain.x, s1.chain.x)),
        "progress_rows": rows,
        "chunked_progress_rows": crows,
        "chunked_chain_equal": bool(np.array_equal(s1.chain.x, s4c.chain.x)),
        "chunked_w_maxdiff": float(np.abs(np.asarray(s1.params.w) - np.asarray(s4c.params.w)).max()),
        "chunked_sharded_over": len(s4c.params.w.sharding.device_set),
        "shape": list(s4.params.w.shape),
    }
    print("RESULT" + json.dumps(out))
""")


def test_sharded_over_four_cpu_devices_equals_single_device():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    r = json.loads(line[len("RESULT"):])
    assert r["n_devices"] == 4 and r["sharded_over"] == 4
    assert r["shape"] == [6, 784, 6]           # padding members (6 -> 8) dropped
    assert r["progress_rows"] == [6, 6, 6, 6]  # progress sees the real members only
    assert r["chain_equal"] and r["resumed_chain_equal"]
    assert r["w_maxdiff"] < 5e-3 and r["wbar_maxdiff"] < 5e-3
    assert r["ll_maxdiff"] < 1e-3
    # member chunking (8 padded members in 2 interleaved chunks of 4) on the sharded path
    assert r["chunked_chain_equal"] and r["chunked_w_maxdiff"] < 5e-3
    assert r["chunked_progress_rows"] == [6, 6, 6, 6] and r["chunked_sharded_over"] == 4
    assert "rematerialization" not in proc.stderr
