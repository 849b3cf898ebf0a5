"""Numerical safety: the chain, the gradient, the monitor and the diagnostics stay finite
for extreme parameters (weights of ±1e3), degenerate data (all-zero and all-one
columns) and a learning rate of 10; a run that does diverge is recorded in
``History.finite`` and reported by ``ncl train`` (exit code 1)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import cli, io, progress
from ncl import diagnostics as dg
from ncl import monitor as mon
from ncl import training as T
from ncl.chain import init as chain_init
from ncl.chain import sample_chain
from ncl.gradient import autodiff_gradient, two_step_gradient
from ncl.model import ModelConfig, Params

D = 64
DCFG = dg.DiagnosticsConfig(burn_in=10, n_steps=400, n_chains=2, rb_samples=40, segment=50,
                            rb_chunk=20)


@pytest.fixture(scope="module")
def data():
    """(300, 64) binary data with two all-zero and two all-one columns."""
    rng = np.random.default_rng(1)
    protos = rng.random((3, D)) < 0.5
    x = protos[rng.integers(0, 3, 300)] ^ (rng.random((300, D)) < 0.1)
    x[:, :2] = 0
    x[:, 2:4] = 1
    return x.astype(np.float32)


def _extreme(kind, L, seed=0):
    rng = np.random.default_rng(seed)

    def leaf(shape):
        if kind == "+1e3":
            return np.full(shape, 1e3, np.float32)
        if kind == "-1e3":
            return np.full(shape, -1e3, np.float32)
        return rng.choice(np.float32([-1e3, 1e3]), size=shape)

    return Params(w=jnp.asarray(leaf((D, L))), a=jnp.asarray(leaf((D,))),
                  wbar=jnp.asarray(leaf((L, D))), abar=jnp.asarray(leaf((L,))))


def _all_finite(tree):
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


def _diagnostics_sane(d: dg.Diagnostics):
    """Every estimate finite; τ may be +inf (a periodic or reducible chain, documented),
    its error bar then NaN; no NaN anywhere else."""
    for name in ("sigma_rb", "sigma_rb_err", "sigma_counts", "sigma_counts_err", "loglik",
                 "loglik_err", "loglik_rb", "loglik_rb_err", "p_bar", "p_bar_rb",
                 "M_counts", "self_transition_counts", "self_transition_rb",
                 "currents_counts", "currents_rb"):
        assert np.all(np.isfinite(getattr(d, name))), (name, getattr(d, name))
    assert not np.any(np.isnan(d.log_M_rb)) and not np.any(np.isposinf(d.log_M_rb))
    for name in ("tau_rb", "tau_counts"):
        tau = np.asarray(getattr(d, name))
        assert np.all((tau >= 0) & ~np.isnan(tau)), (name, tau)
        err = np.asarray(getattr(d, name + "_err"))  # NaN if a leave-one-out τ is ∞
        assert np.all(np.isnan(err) | (np.isfinite(err) & (err >= 0))), (name, err)
    np.testing.assert_allclose(np.sum(d.p_bar_rb, -1), 1.0, rtol=1e-4)
    assert np.all(d.sigma_rb >= 0) and np.all(d.sigma_counts >= 0)


@functools.partial(jax.jit, static_argnames="cfg")
def _one_training_step_by_hand(key, p, c, x, cfg):
    """sample_chain, both gradient forms and the per-epoch monitor (one program)."""
    _, traj = sample_chain(key, chain_init(x[:2]), p, c, cfg, 16)
    g1, ll1 = two_step_gradient(p, traj, x[:32], c, cfg)
    g2, ll2 = autodiff_gradient(p, traj, x[:32], c, cfg)
    acc = mon.accumulate(mon.empty_accumulator(cfg), p, traj, c, cfg)
    return traj, (g1, ll1), (g2, ll2), mon.summarize(acc, p, x, cfg)


@pytest.mark.parametrize("hidden, L", [("onehot", 6), ("binary", 4)])
def test_extreme_weights_keep_chain_gradient_monitor_and_diagnostics_finite(data, hidden, L):
    cfg = ModelConfig(n_hidden=L, hidden=hidden)
    c = jnp.asarray(data.mean(0))
    key = jax.random.key(3)
    for kind in ("+1e3", "-1e3", "±1e3"):
        p = _extreme(kind, L)
        traj, (g1, ll1), (g2, ll2), m = _one_training_step_by_hand(key, p, c,
                                                                   jnp.asarray(data), cfg)
        assert _all_finite(traj), kind
        assert set(np.unique(np.asarray(traj.x))) <= {0.0, 1.0}
        assert _all_finite((g1, ll1, g2, ll2)), kind
        np.testing.assert_allclose(float(ll1), float(ll2), rtol=1e-5)
        assert _all_finite(m), (kind, m)
        _diagnostics_sane(dg.diagnose(key, p, c, cfg, data, DCFG))


def test_extreme_weights_rb_sigma_of_a_hard_cycle_is_large_and_finite(data):
    """±1e3 weights wired as a deterministic 3-cycle: the RB σ is huge but finite."""
    L = 3
    w = np.full((D, L), -1e3, np.float32)
    wbar = np.zeros((L, D), np.float32)
    for a in range(L):
        w[a * 8:(a + 1) * 8, a] = 1e3               # unit a draws block a
        wbar[(a + 1) % L, a * 8:(a + 1) * 8] = 1e3  # block a points to unit a+1
    # abar = -1e3: g = +7e3 for the next unit, -1e3 for the others (p ~ e^-1000)
    p = Params(jnp.asarray(w), jnp.zeros(D), jnp.asarray(wbar), jnp.full(L, -1e3))
    cfg = ModelConfig(n_hidden=L, centering=False)
    d = dg.diagnose(jax.random.key(0), p, jnp.zeros(D), cfg, data, DCFG)
    assert np.all(np.isfinite([d.sigma_rb, d.loglik, d.loglik_rb]))
    assert d.sigma_rb > 100.0
    assert np.isinf(d.tau_rb)  # a perfect cycle is periodic: |λ₂| = 1, τ = ∞


@pytest.fixture(scope="module")
def lr10_run(data):
    cfg = T.TrainConfig(epochs=6, steps_per_epoch=10, chain_length=16, learning_rate=10.0,
                        batch_min=16, batch_max=64)
    return cfg, T.train_ensemble([0, 1, 2], data, cfg)


def test_learning_rate_10_stays_finite(lr10_run, data):
    """RMSprop bounds each step by about lr/sqrt(1 − decay): at lr = 10 the weights grow
    large but stay finite, and the run does not diverge (nor at lr = 1e4 for 20 epochs,
    checked by hand). The data have all-zero and all-one columns."""
    cfg, (state, hist) = lr10_run
    assert np.asarray(hist.finite).all()
    assert _all_finite(state.params)
    for name in ("loglik", "loglik_precise", "sigma_rb", "sigma_counts", "hidden_occupancy"):
        assert np.all(np.isfinite(np.asarray(getattr(hist, name)))), name
    assert float(jnp.max(jnp.abs(state.params.wbar))) > 10.0  # the steps really were large
    w = np.asarray(state.params.w)
    assert np.all(w[..., :2, :] < 0) and np.all(w[..., 2:4, :] > 0)  # constant pixels
    d = dg.diagnose_ensemble(jax.random.key(0), state.params, state.center, cfg.model, data,
                             DCFG)
    _diagnostics_sane(d)


# ----------------------------------------------------------------------------- divergence

POISON_STEP = 7  # steps_per_epoch = 3: the parameters go NaN during epoch index 2


@pytest.fixture
def poisoned_training(monkeypatch):
    """Training whose parameters turn NaN from gradient step ``POISON_STEP`` on, as a
    diverging run's would (a learning rate of 10 does not diverge, see above). The
    compiled training programs are dropped before and after."""
    real_step = T.train_step

    def step(state, data, batch_size, config, n_pad=None):
        new, info = real_step(state, data, batch_size, config, n_pad)
        bad = jnp.where(state.step >= POISON_STEP, jnp.nan, 0.0)
        params = jax.tree_util.tree_map(lambda p: p + bad, new.params)
        return new._replace(params=params), info

    T._compiled.cache_clear()
    monkeypatch.setattr(T, "train_step", step)
    yield
    monkeypatch.undo()
    T._compiled.cache_clear()


def test_diverged_run_history_finite_and_cli_report(tmp_path, capsys, poisoned_training):
    """History.finite records the epoch; ``ncl train`` names the seeds, the epoch and the
    fix (even with --quiet), saves the run and exits 1."""
    out = tmp_path / "run"
    rc = cli.main(["train", "--seeds", "2", "--epochs", "4", "--steps-per-epoch", "3",
                   "-T", "4", "--batch-min", "4", "--batch-max", "8", "--cpu-devices", "1",
                   "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_FAILURE
    assert ("ncl train: error: training diverged (non-finite parameters) for 2 of 2 seeds"
            in err)
    assert "0@3, 1@3" in err and "--lr" in err  # first non-finite epoch (1-based); the fix
    run = io.load_run(out)  # the run is saved, with the record of where it diverged
    np.testing.assert_array_equal(np.asarray(run.history.finite),
                                  [[True, True, False, False]] * 2)
    assert not _all_finite(run.state.params)


def test_progress_line_flags_diverged_members(recwarn):
    import io as _io
    buf = _io.StringIO()
    nan2 = np.array([np.nan, np.nan])
    row = T.History(loglik=nan2, loglik_precise=nan2, sigma_rb=nan2, sigma_counts=nan2,
                    batch_size=np.array([8, 8]), hidden_occupancy=np.zeros((2, 6)),
                    finite=np.array([False, True]))
    progress.EpochProgress(4, stream=buf)(2, row)
    assert "DIVERGED: 1 member(s)" in buf.getvalue()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
