"""The benchmark peers (benchmarks/peers.py) against the per-seed NumPy reference."""

import numpy as np
import pytest

from benchmarks import numpy_reference as ref
from benchmarks import peers

HIDDEN = ("onehot", "binary")


def _data(rows=200, D=30, seed=0):
    rng = np.random.default_rng(seed)
    proto = rng.random((3, D)) < 0.4
    x = proto[rng.integers(3, size=rows)] ^ (rng.random((rows, D)) < 0.1)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def problems():
    data = _data()
    return {h: peers.fixed_problem(data, E=3, T=12, N=10, L=4, hidden=h) for h in HIDDEN}


@pytest.mark.parametrize("hidden", HIDDEN)
def test_numpy_peer_gradient_matches_reference(problems, hidden):
    worst = peers.check_gradients("numpy", *problems[hidden], hidden=hidden)
    assert max(worst["float64"].values()) < 1e-9, worst
    assert max(worst["float32"].values()) < 1e-3, worst
    if hidden == "onehot":
        assert worst["float32"]["a"] == 0.0  # a is not trained with one-hot units


@pytest.mark.parametrize("hidden", HIDDEN)
def test_torch_peer_gradient_matches_reference(problems, hidden):
    pytest.importorskip("torch")
    worst = peers.check_gradients("torch", *problems[hidden], hidden=hidden)
    assert max(worst["float64"].values()) < 1e-9, worst
    assert max(worst["float32"].values()) < 1e-3, worst


def test_check_catches_a_wrong_gradient(problems, monkeypatch):
    right = peers.numpy_gradient

    def off(*args, **kw):
        grads, ll = right(*args, **kw)
        grads["wbar"] = grads["wbar"] * 1.001
        return grads, ll

    monkeypatch.setattr(peers, "numpy_gradient", off)
    with pytest.raises(AssertionError, match="float64, seed 0, wbar"):
        peers.check_gradients("numpy", *problems["onehot"])
    # the looser float32 comparison alone still catches a 1% error
    monkeypatch.setattr(peers, "numpy_gradient", lambda *a, **k: (
        lambda g, ll: ({**g, "w": g["w"] * (1.01 if g["w"].dtype == np.float32 else 1)}, ll))(
            *right(*a, **k)))
    with pytest.raises(AssertionError, match="float32, seed 0, w"):
        peers.check_gradients("numpy", *problems["onehot"])


@pytest.mark.parametrize("hidden", HIDDEN)
def test_numpy_peer_with_one_seed_is_the_reference_step(hidden):
    """Same generator, same draw order: E = 1 reproduces numpy_reference.train_step."""
    data = _data()
    c = data.mean(0)
    rng = np.random.default_rng(1)
    p = ref.init_params(rng, data, 4, hidden)
    o = ref.rmsprop_init(p)
    xc = data[rng.integers(len(data))].copy()
    bp, bo = ({k: v[None] for k, v in t.items()} for t in (p, o))  # a seed axis of 1
    bxc = xc[None]
    r1, r2 = np.random.default_rng(2), np.random.default_rng(2)
    for _ in range(5):
        p, o, xc, ll = ref.train_step(r1, p, o, xc, data, c, 12, 10, hidden)
        bp, bo, bxc, bll = peers.numpy_train_step(r2, bp, bo, bxc, data, c, 12, 10, hidden)
        np.testing.assert_array_equal(bxc[0], xc)
        np.testing.assert_allclose(bll[0], ll, rtol=1e-5)
        for k in p:
            np.testing.assert_allclose(bp[k][0], p[k], rtol=1e-4, atol=1e-5)


def _one_double_step(peer, hidden, E=20000, D=30, L=4, seed=3):
    """E identical chains from the same x: returns the hidden draws z(0) (E, L) and the
    exact probabilities (per state for one-hot, per bit for binary)."""
    rng = np.random.default_rng(seed)
    data = _data(D=D)
    p1 = {"w": rng.normal(size=(D, L)), "a": rng.normal(size=D),
          "wbar": rng.normal(scale=0.3, size=(L, D)), "abar": rng.normal(size=L)}
    p1 = {k: v.astype(np.float32) for k, v in p1.items()}
    x0, c = data[0], data.mean(0)
    probs, _ = ref.recognition_probs(p1, x0, c, hidden)
    P = {k: np.repeat(v[None], E, 0) for k, v in p1.items()}
    X0 = np.repeat(x0[None], E, 0)
    if peer == "numpy":
        _, zs, x1 = peers.numpy_chain(np.random.default_rng(seed), P, X0, 1, c, hidden)
    else:
        import torch
        gen = torch.Generator().manual_seed(seed)
        t = peers.to_torch
        _, zs, x1 = peers.torch_chain(gen, t(P), torch.as_tensor(X0), 1,
                                      torch.as_tensor(c), hidden)
        zs, x1 = zs.numpy(), x1.numpy()
    assert set(np.unique(x1)) <= {0.0, 1.0}
    return zs[:, 0], probs


@pytest.mark.parametrize("peer", ("numpy", "torch"))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_peer_hidden_draw_frequencies(peer, hidden):
    if peer == "torch":
        pytest.importorskip("torch")
    z, probs = _one_double_step(peer, hidden)
    E = len(z)
    if hidden == "onehot":
        np.testing.assert_array_equal(z.sum(1), 1.0)
    freq = z.mean(0)
    se = np.sqrt(probs * (1 - probs) / E)
    assert np.all(np.abs(freq - probs) < 5 * se + 1e-12), (freq, probs)
