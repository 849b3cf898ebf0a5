"""The seed axis sharded across two processes (``jax.distributed``, 2 CPU devices each,
Gloo collectives) trains the single-device run's members, and every process gets the
whole ensemble back. Marked slow: it starts two JAX processes that talk over localhost.

What is guaranteed, and so tested (see ``tests/helpers.py``): the processes gather the
same arrays, so they hold bit-identical results. Against the single-device run, whose
vmapped matrix products have another batch shape, only float32 round-off agreement is:
one flipped Bernoulli draw sends the chaotic chain elsewhere. So: keys, step counters and
minibatch sizes bit for bit; the first training step member by member to round-off
(which catches members mixed up, duplicated or dropped); the first epoch's
log-likelihood for all members but one; nothing member-wise after that.
"""
import json
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO

SCRIPT = textwrap.dedent("""
    import dataclasses, hashlib, json, sys, jax
    pid, port = int(sys.argv[1]), sys.argv[2]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from ncl._compat import set_num_cpu_devices
    set_num_cpu_devices(2)
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=pid)
    import numpy as np
    from ncl.data import load_paper_data
    from ncl.training import TrainConfig, train_ensemble
    x, _ = load_paper_data()
    cfg = TrainConfig(epochs=3, steps_per_epoch=4, chain_length=8, batch_min=8, batch_max=32,
                      batch_buckets=2)
    from tests import helpers as A
    first = dataclasses.replace(cfg, epochs=1, steps_per_epoch=1, batch_buckets=1,
                                monitor=False)
    f_all, fh_all = train_ensemble(range(6), x, first)
    f_one, fh_one = train_ensemble(range(6), x, first, devices=1)
    A.assert_integers_equal(f_all, f_one, fh_all, fh_one)
    A.assert_first_step_matches(f_all.params, f_one.params)
    A.assert_members_close(fh_all.loglik[:, 0], fh_one.loglik[:, 0])
    rows = []
    s_all, h_all = train_ensemble(range(6), x, cfg,
                                  progress=lambda e, r: rows.append(int(e)))
    s_one, h_one = train_ensemble(range(6), x, cfg, devices=1)
    A.assert_integers_equal(s_all, s_one, h_all, h_one)
    A.assert_members_close(h_all.loglik[:, 0], h_one.loglik[:, 0], allowed=3)  # the median
    leaves = jax.tree_util.tree_leaves(A.key_data(s_all)) + [
        np.asarray(a) for a in jax.tree_util.tree_leaves(s_all.params)]
    out = {
        "process_count": jax.process_count(), "device_count": jax.device_count(),
        "shape": list(s_all.params.w.shape), "first_shape": list(f_all.params.w.shape),
        "steps": np.asarray(s_all.step).tolist(),
        # the same bits in both processes: a checksum of the gathered state
        "checksum": hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes()
                                             for a in leaves)).hexdigest(),
        "progress_epochs": sorted(set(rows)),
    }
    print("RESULT" + json.dumps(out), flush=True)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_train_the_single_device_members():
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(i), port], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
            line = [ln for ln in out.splitlines() if ln.startswith("RESULT")][-1]
            results.append(json.loads(line[len("RESULT"):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r in results:
        assert r["process_count"] == 2 and r["device_count"] == 4
        assert r["shape"] == r["first_shape"] == [6, 784, 6]  # padding (6 -> 8) dropped
        assert r["steps"] == [12] * 6
    assert results[0]["checksum"] == results[1]["checksum"]  # both hold the same result
    # host callbacks (progress, checkpoints) run once per epoch, in one process only
    # (the one holding the mesh's first device): one writer, no duplicated lines
    assert sorted(r["progress_epochs"] for r in results) == [[], [0, 1, 2]]


@pytest.mark.slow
def test_cli_train_over_two_processes_writes_one_run(tmp_path):
    """`ncl train --coordinator ... --num-processes 2 --process-id i` in two processes
    writes one run (process 0) of the single-process run's members: keys, steps and
    minibatch sizes bit for bit, the first step's log-likelihood to round-off (all members
    but one: one flipped draw moves one member)."""
    import numpy as np

    from ncl import io
    from tests import helpers as A
    common = ["--seeds", "3", "--epochs", "2", "--steps-per-epoch", "1", "-T", "6",
              "--batch-min", "8", "--batch-max", "24", "--checkpoint-every", "1", "-q"]
    port = str(_free_port())
    out = tmp_path / "mp"
    procs = [subprocess.Popen([sys.executable, "-m", "ncl.cli", "train", *common,
                               "--cpu-devices", "2", "--coordinator", f"localhost:{port}",
                               "--num-processes", "2", "--process-id", str(i),
                               "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    single = tmp_path / "one"
    r = subprocess.run([sys.executable, "-m", "ncl.cli", "train", *common, "--cpu-devices", "1",
                        "--out", str(single)], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = io.load_run(out), io.load_run(single)
    assert not (out / io.CHECKPOINT_FILE).exists()
    assert a.meta["extra"]["processes"] == 2
    assert a.config == b.config and a.seeds == b.seeds
    A.assert_integers_equal(a.state, b.state, a.history, b.history)
    np.testing.assert_array_equal(np.asarray(a.state.step), 2)
    A.assert_members_close(np.asarray(a.history.loglik)[:, 0],
                           np.asarray(b.history.loglik)[:, 0])


def test_cli_multiprocess_options_are_validated(tmp_path):
    from ncl.cli import main as cli_main
    base = ["train", "--seeds", "2", "--epochs", "1", "--out", str(tmp_path / "x")]
    assert cli_main(base + ["--coordinator", "localhost:1234"]) == 2
    assert cli_main(base + ["--coordinator", "localhost:1234", "--num-processes", "2",
                            "--process-id", "2"]) == 2
    assert cli_main(base + ["--coordinator", "nohostport", "--num-processes", "2",
                            "--process-id", "0"]) == 2
