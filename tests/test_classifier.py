"""Digit classifiers (held-out accuracy on MNIST test digits: logistic regression for 0, 1, 2,
the MLP for all ten digits) and the class-fidelity KL (eq. 22)."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ncl import classifier as clf
from ncl import diagnostics as dg
from ncl import fidelity
from ncl.model import ModelConfig, Params

DIGITS = (0, 1, 2)


@pytest.fixture(scope="module")
def default_clf():
    return clf.load_default_classifier(with_meta=True)


def test_shipped_classifier_held_out_accuracy(default_clf, mnist_dir):
    params, meta = default_clf
    x_te, y_te = clf.all_training_digits(DIGITS, mnist_dir, download=False, split="test")
    assert len(y_te) == 3147 and set(np.unique(y_te)) == set(DIGITS)
    acc = clf.accuracy(params, x_te, y_te)
    print(f"shipped classifier: held-out accuracy on MNIST test digits 0,1,2 = {acc:.4f} "
          f"(stored {meta['test_accuracy']:.4f}, train {meta['train_accuracy']:.4f})")
    assert acc >= 0.97
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert meta["n_train"] == 18623 and meta["n_test"] == 3147


def test_shipped_classifier_metadata(default_clf):
    params, meta = default_clf
    assert params.W.shape == (784, 3) and params.b.shape == (3,)
    assert np.asarray(params.classes).tolist() == [0, 1, 2]
    assert meta["test_accuracy"] >= 0.97 and meta["binarize_threshold"] == 127
    with pytest.raises(ValueError, match="classifier_for_digits"):
        clf.load_default_classifier((3, 5))


def test_train_classifier_runtime_on_bundled_subset(paper_data):
    x, y = paper_data
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, te = perm[:2000], perm[2000:]
    cfg = clf.ClassifierConfig(steps=200)
    p1 = clf.train_classifier(x[tr], y[tr], DIGITS, jax.random.key(1), cfg)
    p2 = clf.train_classifier(x[tr], y[tr], DIGITS, jax.random.key(1), cfg)
    np.testing.assert_array_equal(p1.W, p2.W)                       # deterministic
    acc = clf.accuracy(p1, x[te], y[te])
    assert acc > 0.95
    # non-contiguous digit labels map through classes
    keep = y != 1
    p3 = clf.train_classifier(x[keep][:1000], y[keep][:1000], (2, 0), 0, cfg)
    pred = np.asarray(clf.predict_digit(p3, jnp.asarray(x[keep][1000:])))
    assert set(np.unique(pred)) <= {0, 2}
    assert np.mean(pred == y[keep][1000:]) > 0.95


def test_predict_functions_and_errors(default_clf):
    params, _ = default_clf
    x = (np.random.default_rng(0).random((5, 784)) < 0.2).astype(np.float32)
    pr = clf.predict_proba(params, x)
    assert pr.shape == (5, 3)
    np.testing.assert_allclose(pr.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(params, x), np.argmax(pr, -1))
    assert jax.jit(clf.predict_proba)(params, x).shape == (5, 3)           # a pytree
    with pytest.raises(ValueError, match="not among the classifier classes"):
        clf.labels_to_index([0, 7], (0, 1, 2))
    with pytest.raises(ValueError, match="2-D"):
        clf.accuracy(params, np.zeros(784), [0])
    with pytest.raises(ValueError, match="distinct"):
        clf.train_classifier(x, [0] * 5, (0, 0))


# ----------------------------------------------------------------------------- ten digits

TEN = tuple(range(10))


@pytest.fixture(scope="module")
def ten_clf():
    return clf.load_default_classifier(TEN, with_meta=True)


def test_shipped_ten_digit_classifier_held_out_accuracy(ten_clf, mnist_dir):
    params, meta = ten_clf
    x_te, y_te = clf.all_training_digits(TEN, mnist_dir, download=False, split="test")
    assert x_te.shape == (10000, 784) and set(np.unique(x_te)) == {0, 1}
    acc = clf.accuracy(params, x_te, y_te)
    print(f"shipped ten-digit MLP: held-out accuracy on the 10000 MNIST test images = "
          f"{acc:.4f} (stored {meta['test_accuracy']:.4f}, train {meta['train_accuracy']:.4f})")
    assert acc >= 0.97
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-6)
    assert meta["n_train"] == 60000 and meta["n_test"] == 10000


def test_shipped_ten_digit_classifier_file(ten_clf):
    params, meta = ten_clf
    H = meta["hidden_units"]
    assert params.hidden_units == H >= 1 and params.n_classes == 10
    assert params.W.shape == (784, H) and params.hidden_b.shape == (H,)
    assert params.W_out.shape == (H, 10) and params.b.shape == (10,)
    assert all(a.dtype == jnp.float32 for a in (params.W, params.b, params.hidden_b,
                                                 params.W_out))
    assert np.asarray(params.classes).tolist() == list(TEN)
    assert meta["format_version"] == 2 and meta["binarize_threshold"] == 127
    assert meta["test_accuracy"] >= 0.97
    path = clf._resource(clf.TEN_DIGIT_FILE)
    assert path.read_bytes()[:2] == b"PK" and len(path.read_bytes()) < 1_000_000
    # the logistic (0, 1, 2) file is still format version 1
    p012, m012 = clf.load_default_classifier(with_meta=True)
    assert m012["format_version"] == 1 and p012.hidden_units == 0 and p012.W_out is None


def test_classifier_for_ten_digits_is_the_shipped_one(ten_clf, monkeypatch):
    params, _ = ten_clf

    def no_training(*a, **k):
        raise AssertionError("classifier_for_digits trained or read MNIST for a shipped set")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    monkeypatch.setattr(clf, "all_training_digits", no_training)
    for digits in (range(10), TEN, list(TEN), np.arange(10)):
        got = clf.classifier_for_digits(digits)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
            np.testing.assert_array_equal(a, b)
    assert clf.classifier_for_digits(DIGITS).W.shape == (784, 3)     # unchanged
    with pytest.raises(ValueError, match="classifier_for_digits"):
        clf.load_default_classifier(TEN[::-1])                      # order matters


def test_mlp_predict_proba_sums_to_one_jit_vmap(ten_clf, paper_data):
    params, _ = ten_clf
    x, _ = paper_data
    xs = x[:7]
    pr = clf.predict_proba(params, xs)
    assert pr.shape == (7, 10)
    np.testing.assert_allclose(pr.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(jax.jit(clf.predict_proba)(params, xs), pr, atol=1e-6)
    v = jax.vmap(clf.predict_proba, in_axes=(None, 0))(params, xs)          # over images
    np.testing.assert_allclose(v, pr, atol=1e-6)
    # over a stack of two classifiers (the MLP-only fields are leaves, None is not)
    stack = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    vv = jax.jit(jax.vmap(clf.predict_proba, in_axes=(0, None)))(stack, xs)
    assert vv.shape == (2, 7, 10)
    np.testing.assert_allclose(vv[1], pr, atol=1e-6)
    # leading batch axes, predictions, digits
    pr3 = clf.predict_proba(params, xs.reshape(1, 7, 784))
    np.testing.assert_allclose(pr3[0], pr, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(params, xs), np.argmax(pr, -1))
    assert set(np.asarray(clf.predict_digit(params, x[:300])).tolist()) <= {0, 1, 2}
    assert clf.accuracy(params, x, paper_data[1]) > 0.97                 # the paper subset


def test_mlp_trainer_deterministic_given_key(paper_data, tmp_path):
    x, y = paper_data
    tr, te = slice(0, 1000), slice(1000, 3000)
    cfg = clf.MLPClassifierConfig(hidden_units=32, epochs=3, batch_size=64,
                                  learning_rate=3e-3, l2=1e-4)
    p1 = clf.train_classifier(x[tr], y[tr], DIGITS, jax.random.key(3), cfg)
    p2 = clf.train_classifier(x[tr], y[tr], DIGITS, 3, cfg)             # same key as int
    p3 = clf.train_classifier(x[tr], y[tr], DIGITS, jax.random.key(4), cfg)
    assert p1.hidden_units == 32 and p1.W.shape == (784, 32) and p1.W_out.shape == (32, 3)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(p1.W, p3.W)
    assert clf.accuracy(p1, x[te], y[te]) > 0.95
    # batch_size above N is capped at N (one full batch per epoch)
    big = dataclasses.replace(cfg, batch_size=10_000, epochs=1)
    assert np.all(np.isfinite(clf.train_classifier(x[:50], y[:50], DIGITS, 0, big).W))
    # npz round trip (format version 2)
    out = clf.save_classifier(tmp_path / "mlp.npz", p1, test_accuracy=0.5)
    q, meta = clf.load_classifier(out)
    assert meta == {"format_version": 2, "test_accuracy": 0.5}
    for a, b in zip(p1, q):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls, field, value", [
    (clf.MLPClassifierConfig, "hidden_units", 0),
    (clf.MLPClassifierConfig, "hidden_units", -5),
    (clf.MLPClassifierConfig, "epochs", 0),
    (clf.MLPClassifierConfig, "batch_size", 0),
    (clf.MLPClassifierConfig, "learning_rate", 0.0),
    (clf.MLPClassifierConfig, "learning_rate", float("nan")),
    (clf.MLPClassifierConfig, "l2", -1e-3),
    (clf.ClassifierConfig, "steps", 0),
    (clf.ClassifierConfig, "learning_rate", -0.1),
])
def test_bad_config_values_raise_one_clear_value_error(cls, field, value):
    with pytest.raises(ValueError) as info:
        cls(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"{field} must be") and f"got {value!r}" in msg, msg
    assert f"{cls.__name__}.{field}" in msg


def test_config_rules_and_types():
    assert set(clf._MLP_RULES) == {f.name for f in dataclasses.fields(clf.MLPClassifierConfig)}
    assert set(clf._CLASSIFIER_RULES) == {f.name for f in dataclasses.fields(clf.ClassifierConfig)}
    with pytest.raises(TypeError, match="hidden_units must be an integer"):
        clf.MLPClassifierConfig(hidden_units=2.5)
    cfg = clf.MLPClassifierConfig(hidden_units=np.int64(8), l2=np.float32(0))
    assert type(cfg.hidden_units) is int and hash(cfg) == hash(clf.MLPClassifierConfig(
        hidden_units=8, l2=0.0))
    with pytest.raises(TypeError, match="ClassifierConfig or an MLPClassifierConfig"):
        clf.train_classifier(np.zeros((4, 784)), [0, 1, 0, 1], (0, 1), 0, {"steps": 1})


def test_load_classifier_refuses_bad_files(tmp_path, ten_clf):
    params, _ = ten_clf
    arrays = {"W": np.asarray(params.W), "b": np.asarray(params.b),
              "classes": np.asarray(params.classes)}
    np.savez(tmp_path / "future.npz", **arrays, hidden_b=np.asarray(params.hidden_b),
             W_out=np.asarray(params.W_out), format_version=np.array(3))
    with pytest.raises(ValueError, match="format_version 3 is not supported"):
        clf.load_classifier(tmp_path / "future.npz")
    np.savez(tmp_path / "half.npz", **arrays, W_out=np.asarray(params.W_out),
             format_version=np.array(2))
    with pytest.raises(ValueError, match="need both"):
        clf.load_classifier(tmp_path / "half.npz")
    np.savez(tmp_path / "shape.npz", **arrays, hidden_b=np.zeros(3, np.float32),
             W_out=np.asarray(params.W_out), format_version=np.array(2))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        clf.load_classifier(tmp_path / "shape.npz")
    with pytest.raises(ValueError, match="reserved"):
        clf.save_classifier(tmp_path / "x.npz", params, W_out=1)


# ----------------------------------------------------------------------------- eq. (22)

def class_mean_model(x, y, digits=DIGITS, per_class=1):
    """One-hot model whose unit α generates the mean image of digit digits[α // per_class]."""
    cols = []
    for d in digits:
        m = (x[y == d].sum(0) + 0.5) / ((y == d).sum() + 1.0)
        cols += [np.log(m) - np.log1p(-m)] * per_class
    w = np.stack(cols, axis=1).astype(np.float32)
    L = w.shape[1]
    return Params(jnp.asarray(w), jnp.zeros(784), jnp.zeros((L, 784)), jnp.zeros(L))


def test_kl_zero_for_one_unit_per_class_and_uniform_occupancy(default_clf, paper_data):
    params_c, _ = default_clf
    x, y = paper_data
    for per_class in (1, 2):
        model = class_mean_model(x, y, per_class=per_class)
        uc = np.asarray(fidelity.unit_classes(model, params_c))
        assert uc.tolist() == np.repeat([0, 1, 2], per_class).tolist()
        L = 3 * per_class
        p_e = fidelity.class_distribution(jnp.full((L,), 1.0 / L), jnp.asarray(uc), 3)
        np.testing.assert_allclose(p_e, 1 / 3, atol=1e-6)
        assert float(fidelity.class_fidelity_kl(p_e, jnp.full(3, 1 / 3))) == pytest.approx(
            0, abs=1e-6)


def test_kl_collapsed_model_closed_form(default_clf, paper_data):
    params_c, _ = default_clf
    x, y = paper_data
    model = class_mean_model(x, y)
    uc = fidelity.unit_classes(model, params_c)
    p_e = fidelity.class_distribution(jnp.array([1.0, 0.0, 0.0]), uc, 3)   # only digit 0
    f = 1e-3
    # P_e floored at f and renormalised: (1, f, f)/(1 + 2f)
    expected = -math.log(3) + math.log(1 + 2 * f) - (2 / 3) * math.log(f)
    kl = float(fidelity.class_fidelity_kl(p_e, jnp.full(3, 1 / 3), f))
    assert kl == pytest.approx(expected, rel=1e-5)
    # with P_D = (1/2, 1/2, 0): zero-probability data classes contribute nothing
    kl2 = float(fidelity.class_fidelity_kl(jnp.array([0.5, 0.5, 0.0]), jnp.array([0.5, 0.5, 0.0])))
    assert kl2 == pytest.approx(-math.log(1 / (1 + f)), abs=1e-6)


def test_diagnose_with_classifier(default_clf, paper_data):
    params_c, _ = default_clf
    x, y = paper_data
    model = class_mean_model(x, y)
    # recognition that cycles 0 → 1 → 2 → 0 through the class means
    means = np.stack([x[y == d].mean(0) for d in DIGITS])
    center = x.mean(0)
    wbar = 0.2 * np.roll(means - center, 1, axis=0)
    model = model._replace(wbar=jnp.asarray(wbar, jnp.float32))
    dcfg = dg.DiagnosticsConfig(burn_in=100, n_steps=4000, n_chains=4, rb_samples=400)
    r = dg.diagnose(jax.random.key(0), model, jnp.asarray(center), ModelConfig(n_hidden=3), x,
                    dcfg, labels=y, classifier=params_c)
    assert r.unit_digit.tolist() == [0, 1, 2]
    np.testing.assert_allclose(r.p_data, 1 / 3, atol=1e-6)
    np.testing.assert_allclose(r.p_e, r.p_bar, atol=1e-6)   # one unit per class
    assert r.kl == pytest.approx(float(fidelity.class_fidelity_kl(r.p_e, r.p_data)), abs=1e-6)
    np.testing.assert_allclose(r.p_e_soft.sum(), 1.0, atol=1e-5)
    # sampled images of unit α are mostly classified as digit α
    np.testing.assert_allclose(r.p_e_soft, r.p_bar, atol=0.1)
    assert np.isfinite(r.kl_soft) and np.isfinite(r.kl_soft_err) and np.isfinite(r.kl_err)
    assert r.sigma_rb > 0.1                                       # it does cycle
    assert 0 < r.summary()["kl"] < 0.5


def test_soft_kl_applies_to_binary_hidden_units(default_clf, paper_data):
    params_c, _ = default_clf
    x, y = paper_data
    # binary L = 2: state (bits) 00 → mean of 0s, 10 → 1s, 01 → 2s, 11 → mixture
    means = np.stack([(x[y == d].sum(0) + 0.5) / ((y == d).sum() + 1.0) for d in DIGITS])
    lg = np.log(means) - np.log1p(-means)
    a = lg[0]
    w = np.stack([lg[1] - a, lg[2] - a], axis=1)
    model = Params(*(jnp.asarray(v, jnp.float32) for v in (w, a, np.zeros((2, 784)),
                                                           np.zeros(2))))
    dcfg = dg.DiagnosticsConfig(burn_in=100, n_steps=4000, n_chains=4, rb_samples=400)
    r = dg.diagnose(jax.random.key(0), model, jnp.asarray(x.mean(0)),
                    ModelConfig(n_hidden=2, hidden="binary"), x, dcfg, labels=y,
                    classifier=params_c)
    assert r.kl is None and r.unit_class is None          # hard assignment: one-hot only
    # Ā uniform (wbar = 0, abar = 0): p̄ = 1/4 for each of the 4 states
    np.testing.assert_allclose(r.p_bar_rb, 0.25, atol=1e-5)
    assert r.p_e_soft.shape == (3,) and r.p_e_soft.sum() == pytest.approx(1.0, abs=1e-5)
    # states 00, 10, 01 generate digits 0, 1, 2 (each ≥ 1/4); 11 adds a mixture
    assert np.all(r.p_e_soft > 0.2)
    assert r.kl_soft == pytest.approx(float(fidelity.class_fidelity_kl(r.p_e_soft, r.p_data)),
                                      abs=1e-6)
