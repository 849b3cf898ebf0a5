"""The seed axis sharded over 4 forced CPU devices (plain, member-chunked, and resumed on
3 devices) trains the same members as the single-device run.

What is guaranteed, and so tested (see ``tests/helpers.py``): partitioning changes the
batch shape of every vmapped matrix product, and XLA does not promise the same float32
bits at another shape, so one Bernoulli draw may flip and the chaotic chain then goes
elsewhere (seen on a 2-core AMD EPYC: weights 0.79 apart after 20 steps). Bit for bit:
keys, step counters, shapes, minibatch sizes, which members progress reports. To float32
round-off: the first training step of every member, compared with the same seed's
single-device member (this is what catches members mixed up, duplicated or dropped by
the padding or the chunk interleaving). In distribution: the log-likelihoods of the full
runs. Runs in a subprocess because the device count is fixed when JAX starts.
"""
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from tests import helpers as A
from tests.helpers import REPO

SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys, jax
    from ncl._compat import set_num_cpu_devices
    set_num_cpu_devices(4)
    import numpy as np
    from ncl.data import load_paper_data
    from ncl.training import TrainConfig, train_ensemble, init_ensemble_state, continue_training
    x, _ = load_paper_data()
    cfg = TrainConfig(epochs=4, steps_per_epoch=5, chain_length=12, batch_min=8, batch_max=40,
                      batch_buckets=2)
    first = dataclasses.replace(cfg, epochs=1, steps_per_epoch=1, batch_buckets=1,
                                monitor=False)
    out, rows = {}, {}

    def keep(name, state, hist):
        out.update({f"{name}.key": np.asarray(jax.random.key_data(state.key)),
                    f"{name}.step": np.asarray(state.step),
                    f"{name}.chain": np.asarray(state.chain.x),
                    f"{name}.loglik": np.asarray(hist.loglik),
                    f"{name}.batch_size": np.asarray(hist.batch_size),
                    f"{name}.finite": np.asarray(hist.finite)})
        out.update({f"{name}.{f}": np.asarray(getattr(state.params, f))
                    for f in state.params._fields})

    def progress(name):
        rows[name] = []
        return lambda e, r: rows[name].append(np.asarray(r.loglik).shape[0])

    # one training step: single device, 4 devices (8 members with padding), 4 chunked
    keep("f1", *train_ensemble(range(6), x, first, devices=1))
    keep("f4", *train_ensemble(range(6), x, first, devices=4, progress=progress("f4")))
    keep("f4c", *train_ensemble(range(6), x, dataclasses.replace(first, member_chunk=4),
                                devices=4))
    # the full runs: single device, 4 devices chunked, 4 devices then resumed on 3
    keep("s1", *train_ensemble(range(6), x, cfg, devices=1))
    s4c, h4c = train_ensemble(range(6), x, dataclasses.replace(cfg, member_chunk=4), devices=4,
                              progress=progress("s4c"))
    keep("s4c", s4c, h4c)
    st = init_ensemble_state(range(6), x, cfg)
    a, ha = continue_training(st, x, cfg, 0, 2, devices=4, progress=progress("a"))
    b, hb = continue_training(a, x, cfg, 2, devices=3)
    keep("res", b, hb._replace(loglik=np.concatenate([ha.loglik, hb.loglik], 1),
                               batch_size=np.concatenate([ha.batch_size, hb.batch_size], 1),
                               finite=np.concatenate([ha.finite, hb.finite], 1)))
    out["n_devices"] = np.asarray(jax.device_count())
    out["sharded_over"] = np.asarray([len(a.params.w.sharding.device_set),
                                      len(s4c.params.w.sharding.device_set)])
    out.update({f"rows.{k}": np.asarray(v) for k, v in rows.items()})
    np.savez(sys.argv[1], **out)
""")


def _run(r, name):
    params = {f: r[f"{name}.{f}"] for f in ("w", "a", "wbar", "abar")}
    state = SimpleNamespace(key=r[f"{name}.key"], step=r[f"{name}.step"], params=params,
                            chain=r[f"{name}.chain"])
    hist = SimpleNamespace(loglik=r[f"{name}.loglik"], batch_size=r[f"{name}.batch_size"],
                           finite=r[f"{name}.finite"])
    return state, hist


@pytest.mark.slow   # end to end; CI runs it (-m slow)
def test_sharded_over_four_cpu_devices_trains_the_single_device_members(tmp_path):
    path = tmp_path / "result.npz"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rematerialization" not in proc.stderr
    r = dict(np.load(path))
    assert int(r["n_devices"]) == 4 and r["sharded_over"].tolist() == [4, 4]
    # progress sees the real members only, once per epoch
    assert r["rows.f4"].tolist() == [6] and r["rows.a"].tolist() == [6, 6]
    assert r["rows.s4c"].tolist() == [6, 6, 6, 6]

    f1, _ = _run(r, "f1")
    for name in ("f4", "f4c"):  # the first step: every member to round-off
        f, fh = _run(r, name)
        assert f.params["w"].shape == (6, 784, 6)  # padding members (6 -> 8) dropped
        A.assert_integers_equal(f, f1, fh, _run(r, "f1")[1])
        np.testing.assert_array_equal(f.step, 1)
        A.assert_first_step_matches(f.params, f1.params)
        A.assert_members_close(fh.loglik[:, 0], _run(r, "f1")[1].loglik[:, 0])
        # the chains agree until a draw flips: one flip touches one member
        same = [np.array_equal(u, v) for u, v in zip(f.chain, f1.chain)]
        assert sum(same) >= 5, same

    s1, h1 = _run(r, "s1")
    for name in ("s4c", "res"):  # the full runs: integers exactly, the rest in law
        s, h = _run(r, name)
        assert s.params["w"].shape == (6, 784, 6)
        A.assert_integers_equal(s, s1, h, h1)
        np.testing.assert_array_equal(s.step, 20)
        A.assert_members_close(h.loglik[:, 0], h1.loglik[:, 0], allowed=3)  # median
        A.assert_logliks_agree_in_distribution(h.loglik, h1.loglik, tol_nats=10.0)
