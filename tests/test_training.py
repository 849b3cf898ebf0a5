"""Training protocol: schedule, determinism, ensemble members == single runs, learning,
resume, saving, the command line.

Equality, as far as it is guaranteed (see ``tests/helpers.py``): the same program on the
same shapes (a run repeated, a run resumed in pieces, a reloaded state) is bit for bit
reproducible and tested so. Programs of other shapes or arithmetic (an ensemble member
against ``train`` of its seed: vmap batches the matrix products; member chunking; the
autodiff gradient against the closed form) only agree to float32 round-off, and one
flipped Bernoulli draw sends the chaotic chain elsewhere; so they are compared on what
cannot drift: keys and step counters bit for bit, the first training step to round-off
(member by member, which catches members mixed up), later results in distribution.
"""
import dataclasses
import json

import jax
import numpy as np
import pytest

from ncl import io
from ncl import training as T
from ncl.cli import main as cli_main
from ncl.model import ModelConfig
from tests import helpers as A

SMALL = T.TrainConfig(epochs=4, steps_per_epoch=5, chain_length=12, batch_min=8,
                      batch_max=32, batch_buckets=2)
# one training step of SMALL: the runs compared across program shapes
FIRST_STEP = dataclasses.replace(SMALL, epochs=1, steps_per_epoch=1, batch_buckets=1,
                                 monitor=False)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *a: np.stack([np.asarray(
        jax.random.key_data(x) if T.jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
        for x in a]), *trees)


def test_minibatch_schedule_is_the_papers():
    cfg = T.TrainConfig()
    sizes = [T.minibatch_size(e, cfg) for e in range(cfg.epochs)]
    assert sizes[0] == 16 and sizes[-1] == 160
    assert all(b >= a for a, b in zip(sizes, sizes[1:]))
    for e in (0, 17, 60, 119):
        assert sizes[e] == round(16 + 144 * e / 119)
        assert int(T.minibatch_size(np.int32(e), cfg)) == sizes[e]  # traced path agrees
    assert T.minibatch_size(0, dataclasses.replace(cfg, epochs=1)) == 16
    # padded segments cover every epoch and are large enough
    segs = T.epoch_segments(cfg)
    assert segs[0][0] == 0 and segs[-1][1] == cfg.epochs
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
    for lo, hi, n_pad in segs:
        assert all(T.minibatch_size(e, cfg) <= n_pad for e in range(lo, hi))
    assert segs[-1][2] == 160


def test_config_defaults_are_the_papers():
    cfg = T.TrainConfig()
    assert (cfg.model.n_hidden, cfg.model.hidden, cfg.model.recognition) == (6, "onehot", "paper")
    assert cfg.model.centering and not cfg.model.trains_visible_bias
    assert (cfg.chain_length, cfg.learning_rate, cfg.epochs, cfg.steps_per_epoch) == (
        48, 0.1, 120, 30)
    assert (cfg.batch_min, cfg.batch_max) == (16, 160)
    assert T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("bad, match", [
    (dict(chain_length=0), "chain_length"), (dict(epochs=0), "epochs"),
    (dict(learning_rate=0.0), "learning_rate"), (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(batch_min=50, batch_max=20), "batch_min"), (dict(gradient="magic"), "gradient"),
    (dict(member_chunk=0), "member_chunk"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        T.TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown TrainConfig option"):
        T.TrainConfig.from_dict({"epoch": 3})


def test_bad_data_is_rejected(paper_data):
    x, _ = paper_data
    with pytest.raises(ValueError, match="2-D"):
        T.train(0, x[0], SMALL)
    with pytest.raises(ValueError, match="binary"):
        T.train(0, x * 0.5, SMALL)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        T.train(0, bad, SMALL)
    with pytest.raises(ValueError, match="larger than the data set"):
        T.train(0, x[:10], SMALL)


def test_same_seed_twice_is_identical_and_ensemble_member_equals_single_run(paper_data):
    x, _ = paper_data
    seeds = [3, 5, 8]
    ens_state, ens_hist = T.train_ensemble(seeds, x, SMALL)
    again_state, _ = T.train_ensemble(seeds, x, SMALL)
    for a, b in zip(jax.tree_util.tree_leaves(ens_state),          # same program: bitwise
                    jax.tree_util.tree_leaves(again_state)):
        if T.jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    # member i is train(seeds[i]): the first step to round-off, keys and steps exactly
    ens1, ens1_hist = T.train_ensemble(seeds, x, FIRST_STEP)
    singles = [T.train(seed, x, FIRST_STEP) for seed in seeds]
    single_state = _stack([s for s, _ in singles])
    single_hist = _stack([h for _, h in singles])
    A.assert_integers_equal(ens1, single_state, ens1_hist, single_hist)
    A.assert_first_step_matches(ens1.params, single_state.params)
    A.assert_members_close(ens1_hist.loglik[:, 0], single_hist.loglik[:, 0])
    # the full run keeps its members' keys (step keys are fold_in(key, step))
    np.testing.assert_array_equal(A.key_data(ens_state), single_state.key)
    np.testing.assert_array_equal(ens_state.step, SMALL.total_steps)
    assert np.all(np.asarray(ens_hist.finite))
    # different seeds give different models
    assert not np.allclose(ens_state.params.w[0], ens_state.params.w[1])


def test_resume_equals_uninterrupted_run(paper_data):
    x, _ = paper_data
    full_state, full_hist = T.train_ensemble([1, 2], x, SMALL)
    st = T.init_ensemble_state([1, 2], x, SMALL)
    part_state, part_hist = T.continue_training(st, x, SMALL, 0, 1)       # inside a segment
    mid_state, mid_hist = T.continue_training(part_state, x, SMALL, 1, 3)  # across segments
    rest_state, rest_hist = T.continue_training(mid_state, x, SMALL, 3)
    np.testing.assert_array_equal(rest_state.params.w, full_state.params.w)
    np.testing.assert_array_equal(rest_state.chain.x, full_state.chain.x)
    np.testing.assert_array_equal(
        np.concatenate([part_hist.loglik, mid_hist.loglik, rest_hist.loglik], axis=1),
        full_hist.loglik)
    with pytest.raises(ValueError, match="starts at step"):
        T.continue_training(part_state, x, SMALL, 2)


def test_short_training_raises_loglik_for_every_seed(paper_data):
    x, _ = paper_data
    cfg = T.TrainConfig(epochs=8, steps_per_epoch=30)
    state, hist = T.train_ensemble([0, 1, 2, 3], x, cfg)
    ll = np.asarray(hist.loglik)
    assert hist.loglik.shape == (4, 8)
    assert np.all(np.asarray(hist.finite))
    # the App. A1 initial model sits near -165 nats; a few epochs gain well over 8 nats
    assert np.all(ll[:, -1] > ll[:, 0] + 8.0), ll
    assert np.all(np.asarray(state.params.a) == 0)  # a fixed at 0 for one-hot (eq. 20)


def test_binary_hidden_and_other_options_train(paper_data):
    x, _ = paper_data
    for model in (ModelConfig(n_hidden=4, hidden="binary"),
                  ModelConfig(n_hidden=4, recognition="softmax"),
                  ModelConfig(n_hidden=4, recognition="eq19-exact"),
                  ModelConfig(n_hidden=4, centering=False)):
        cfg = dataclasses.replace(SMALL, model=model, n_chains=2)
        state, hist = T.train_ensemble([0, 1], x, cfg)
        assert np.all(np.isfinite(np.asarray(hist.loglik)))
        assert state.chain.x.shape == (2, 2, 784)
    # the autodiff gradient is the closed form in other float32 arithmetic: the first step
    # agrees to round-off (RMSprop's first step, lr * g / |g| sqrt(1 - decay), can flip the
    # sign of a near-zero gradient component: a few entries); later steps may diverge
    s_auto, _ = T.train(4, x, dataclasses.replace(FIRST_STEP, gradient="autodiff"))
    s_closed, _ = T.train(4, x, FIRST_STEP)
    A.assert_first_step_matches(_stack([s_auto.params]), _stack([s_closed.params]))


def test_save_load_roundtrip_and_corruption(paper_data, tmp_path):
    x, _ = paper_data
    state, hist = T.train_ensemble([0, 1], x, SMALL)
    d = io.save_run(tmp_path / "run", state, hist, SMALL, seeds=[0, 1],
                    data_info={"digits": [0, 1, 2]})
    run = io.load_run(d)
    assert run.config == SMALL and run.seeds == (0, 1)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(run.state)):
        if T.jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(run.history.loglik, hist.loglik)
    assert run.meta["provenance"]["jax_version"] == jax.__version__
    # a reloaded state continues exactly like the original
    more = dataclasses.replace(SMALL, epochs=6)
    s1, _ = T.continue_training(state, x, more, 4, ensemble=True)
    s2, _ = T.continue_training(run.state, x, more, 4, ensemble=True)
    np.testing.assert_array_equal(s1.params.w, s2.params.w)
    # corruption and absence give RunFileError naming the file
    (d / "state.npz").write_bytes((d / "state.npz").read_bytes()[:100])
    with pytest.raises(io.RunFileError, match="state.npz"):
        io.load_run(d)
    with pytest.raises(io.RunFileError, match="not a directory"):
        io.load_run(tmp_path / "nothing")
    (d / "config.json").write_text("{not json")
    with pytest.raises(io.RunFileError, match="corrupt JSON"):
        io.load_run(d)


def test_cli_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli_run"
    code = cli_main(["train", "--seeds", "2", "--epochs", "2", "--steps-per-epoch", "3",
                     "-T", "8", "--batch-max", "40", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "epoch    2/2" in err and "saved to" in err
    run = io.load_run(out)
    assert run.config.chain_length == 8 and run.history.loglik.shape == (2, 2)
    # refuses to overwrite, usage errors exit 2
    assert cli_main(["train", "--seeds", "1", "--epochs", "1", "--out", str(out)]) == 2
    assert cli_main(["train", "--digits", "0,0", "--out", str(tmp_path / "x")]) == 2
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochz": 3}))
    assert cli_main(["train", "--config", str(cfg), "--out", str(tmp_path / "y")]) == 2
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--epochs", "0"])
    assert e.value.code == 2


def test_member_chunks_rule():
    from ncl.sharding import member_chunks
    assert member_chunks(36, 256) == 1
    assert member_chunks(1152, 256, 2) == 6        # 192 members per chunk, 96 per device
    assert member_chunks(1152, 256, 1) == 6
    assert member_chunks(97, 10, 1) == 97          # prime: one member per chunk
    for M, cap, d in [(1152, 256, 1), (1152, 256, 2), (600, 100, 4), (96, 10, 1)]:
        n = member_chunks(M, cap, d)
        assert (M // d) % n == 0 and M // n <= cap


def test_member_chunked_ensemble_equals_unchunked(paper_data):
    """Chunking the member axis (5 interleaved chunks of 2) changes memory, not which
    member is which: the first step of all 10 members to round-off (each closest to its
    own unchunked member), keys and steps bit for bit; the full chunked run keeps them.
    (tests/test_sharding.py compares chunked and unchunked full runs in distribution.)"""
    x, _ = paper_data
    cfg = T.TrainConfig(epochs=2, steps_per_epoch=4, chain_length=8, batch_max=32)
    first = dataclasses.replace(cfg, epochs=1, steps_per_epoch=1, monitor=False)
    f0, fh0 = T.train_ensemble(range(10), x, first, devices=1)
    f1, fh1 = T.train_ensemble(range(10), x, dataclasses.replace(first, member_chunk=2),
                               devices=1)
    A.assert_integers_equal(f1, f0, fh1, fh0)
    A.assert_first_step_matches(f1.params, f0.params)
    A.assert_members_close(fh1.loglik[:, 0], fh0.loglik[:, 0])
    # the full chunked run (2 epochs): keys and steps exactly, every member learned
    s1, h1 = T.train_ensemble(range(10), x, dataclasses.replace(cfg, member_chunk=2), devices=1)
    np.testing.assert_array_equal(A.key_data(s1), A.key_data(f0))
    np.testing.assert_array_equal(s1.step, cfg.total_steps)
    np.testing.assert_array_equal(h1.batch_size, np.broadcast_to([16, 32], (10, 2)))
    assert np.all(np.asarray(h1.finite)) and np.all(np.isfinite(np.asarray(h1.loglik)))


def test_a_new_callback_reuses_the_compiled_program(paper_data):
    """The compiled program is cached per shape and config, not per callback: a notebook
    user calling again with a new progress lambda (or checkpoint) compiles nothing."""
    x = paper_data[0][:200]
    cfg = T.TrainConfig(epochs=2, steps_per_epoch=1, chain_length=2, batch_min=8,
                        batch_max=8, monitor=False)
    rows = []
    T.train_ensemble([0, 1], x, cfg, progress=lambda e, r: rows.append(e))
    misses = T._compiled.cache_info().misses
    for _ in range(2):
        T.train_ensemble([0, 1], x, cfg, progress=lambda e, r: rows.append(-e))
    assert T._compiled.cache_info().misses == misses
    assert rows == [0, 1, 0, -1, 0, -1]
