"""Digit classifiers for the class-fidelity diagnostic (eq. 22).

Two kinds, one params pytree (:class:`ClassifierParams`), both on binarised images
(pixel > 127 → 1) and deterministic given the key:

* multinomial logistic regression (:class:`ClassifierConfig`: Adam, full batch, L2
  penalty, fixed number of steps) — the shipped classifier for the paper's digits 0, 1, 2;
* a one-hidden-layer ReLU MLP (:class:`MLPClassifierConfig`: minibatch Adam with a cosine
  learning-rate decay, L2 penalty on the weights, fixed epochs; a fresh shuffle each
  epoch) — the shipped classifier for all ten digits.

All functions are pure; :class:`ClassifierParams` is a pytree (the MLP-only fields are
``None`` for logistic regression), so ``predict_proba`` can be called inside jit / vmap
(the diagnostics do).

* :func:`train_classifier` — ``(x, labels, classes, key, config) -> ClassifierParams``;
  the config's type picks the kind;
* :func:`predict_proba`, :func:`predict`, :func:`accuracy`;
* :func:`load_default_classifier` — ``(digits=(0, 1, 2), *, with_meta=False)``: the
  shipped weights, built by ``scripts/build_classifier.py`` from *all* MNIST training
  images of the digits; each file stores the held-out accuracy on the MNIST test images
  of the same digits (``meta["test_accuracy"]``):

  - digits ``(0, 1, 2)``: logistic regression, ``ncl/_data/classifier_digits012.npz``;
  - digits ``(0, 1, …, 9)``: MLP 784-256-10,
    ``ncl/_data/classifier_digits0123456789.npz`` (≥ 97 % on the 10 000 test images);
* :func:`classifier_for_digits` — the shipped one for those two digit tuples, otherwise
  trained at runtime from all training images of the digits (:func:`ncl.mnist.load_mnist`).

Class index ``k`` (0..K−1) means digit ``classes[k]``.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ncl import _validate as _v
from ncl import keys

Array = jax.Array

DEFAULT_FILE = "classifier_digits012.npz"
"""Shipped logistic regression for the paper's digits (0, 1, 2)."""
TEN_DIGIT_FILE = "classifier_digits0123456789.npz"
"""Shipped MLP for all ten digits (0, 1, …, 9)."""
SHIPPED_FILES = {(0, 1, 2): DEFAULT_FILE, tuple(range(10)): TEN_DIGIT_FILE}
"""Digit tuple → shipped file under ``ncl/_data`` (:func:`load_default_classifier`)."""
FORMAT_VERSION = 2
"""Newest classifier file version: 1 = logistic regression (``W``, ``b``, ``classes``;
still written for logistic regression), 2 = adds the MLP arrays ``hidden_b``, ``W_out``.
:func:`load_classifier` reads both."""
_MLP_FIELDS = ("hidden_b", "W_out")


class ClassifierParams(NamedTuple):
    """A digit classifier (a pytree): logistic regression or a one-hidden-layer MLP.

    Logistic regression (``hidden_b``, ``W_out`` are ``None``): logits ``x W + b``.
    MLP: logits ``relu(x W + hidden_b) W_out + b``.

    Attributes:
      W: input weights, ``(D, K)`` (logistic regression) or ``(D, H)`` (MLP).
      b: ``(K,)`` class biases (output layer).
      classes: ``(K,)`` int32, the digit each class index stands for.
      hidden_b: ``(H,)`` hidden biases (MLP), else ``None``.
      W_out: ``(H, K)`` hidden-to-class weights (MLP), else ``None``.
    """

    W: Array
    b: Array
    classes: Array
    hidden_b: Array | None = None
    W_out: Array | None = None

    @property
    def n_classes(self) -> int:
        return int(self.b.shape[-1])

    @property
    def hidden_units(self) -> int:
        """``H`` for an MLP, 0 for logistic regression."""
        return 0 if self.W_out is None else int(self.W_out.shape[0])


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Training settings (plain, hashable data).

    Attributes:
      steps: full-batch Adam steps.
      learning_rate: Adam learning rate.
      l2: weight of the L2 penalty ``l2 · ||W||² / 2`` (biases not penalised).
    """

    steps: int = 600
    learning_rate: float = 0.05
    l2: float = 1e-4

    def __post_init__(self):
        _v.check_fields(self, _CLASSIFIER_RULES)


_CLASSIFIER_RULES = {
    "steps": (_v.integer, dict(min=1)),
    "learning_rate": (_v.real, dict(min=0, min_open=True)),
    "l2": (_v.real, dict(min=0)),
}
"""One type-and-range rule per :class:`ClassifierConfig` field (:mod:`ncl._validate`)."""


@dataclasses.dataclass(frozen=True)
class MLPClassifierConfig:
    """Training settings of the one-hidden-layer ReLU MLP (plain, hashable data).

    The defaults build the shipped ten-digit classifier (784-256-10).

    Attributes:
      hidden_units: hidden ReLU units ``H`` (at least 1).
      epochs: passes over the training images; each epoch takes ``N // batch_size``
        minibatches of a fresh permutation (the last partial batch is dropped; a new
        permutation next epoch); ``batch_size`` is capped at ``N``.
      batch_size: images per Adam step.
      learning_rate: peak Adam learning rate, decayed to 0 by a cosine schedule over all
        ``epochs · (N // batch_size)`` steps.
      l2: weight of the L2 penalty ``l2 · (||W||² + ||W_out||²) / 2`` (biases not
        penalised).
    """

    hidden_units: int = 256
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    l2: float = 1e-4

    def __post_init__(self):
        _v.check_fields(self, _MLP_RULES)


_MLP_RULES = {
    "hidden_units": (_v.integer, dict(min=1, max=65536)),
    "epochs": (_v.integer, dict(min=1)),
    "batch_size": (_v.integer, dict(min=1)),
    "learning_rate": (_v.real, dict(min=0, min_open=True)),
    "l2": (_v.real, dict(min=0)),
}
"""One type-and-range rule per :class:`MLPClassifierConfig` field (:mod:`ncl._validate`)."""


def logits(params: ClassifierParams, x: Array) -> Array:
    """Class logits: ``x W + b`` (logistic regression) or ``relu(x W + hidden_b) W_out + b``
    (MLP); ``x (..., D)`` (0/1 or probabilities) → ``(..., K)``."""
    x = jnp.asarray(x, params.W.dtype)
    chex.assert_axis_dimension(x, -1, params.W.shape[0])
    if params.W_out is None:
        return x @ params.W + params.b
    return jax.nn.relu(x @ params.W + params.hidden_b) @ params.W_out + params.b


def predict_proba(params: ClassifierParams, x: Array) -> Array:
    """Class probabilities ``softmax(logits(params, x))``: ``x (..., D)`` → ``(..., K)``."""
    return jax.nn.softmax(logits(params, x), axis=-1)


def predict(params: ClassifierParams, x: Array) -> Array:
    """Most probable class *index* (0..K−1): ``x (..., D)`` → ``(...)`` int32.

    Map to digits with ``params.classes[predict(params, x)]``.
    """
    return jnp.argmax(logits(params, x), axis=-1).astype(jnp.int32)


def predict_digit(params: ClassifierParams, x: Array) -> Array:
    """Most probable *digit*: ``x (..., D)`` → ``(...)`` int32."""
    return params.classes[predict(params, x)]


def labels_to_index(labels, classes) -> np.ndarray:
    """Digit labels ``(N,)`` → class indices ``(N,)`` int32 (host-side).

    Raises ``ValueError`` if a label is not one of ``classes``.
    """
    labels = np.asarray(labels).astype(np.int64)
    classes = np.asarray(classes).astype(np.int64)
    lut = {int(c): i for i, c in enumerate(classes)}
    bad = sorted({int(v) for v in np.unique(labels)} - set(lut))
    if bad:
        raise ValueError(f"labels {bad} are not among the classifier classes "
                         f"{classes.tolist()}")
    return np.array([lut[int(v)] for v in labels], np.int32) if labels.size else \
        np.zeros((0,), np.int32)


def accuracy(params: ClassifierParams, x, labels) -> float:
    """Fraction of images whose predicted digit equals ``labels`` (digits, not indices)."""
    x = _check_x(x, params.W.shape[0])
    pred = np.asarray(predict_digit(params, jnp.asarray(x)))
    return float(np.mean(pred == np.asarray(labels).astype(np.int64)))


def _check_x(x, D: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"images must be a 2-D array (N, D), got shape {arr.shape}; "
                         "flatten first, e.g. x.reshape(len(x), -1)")
    if D is not None and arr.shape[1] != D:
        raise ValueError(f"images have {arr.shape[1]} pixels, the classifier expects {D}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or inf")
    return arr


def _loss(params: ClassifierParams, x, y_onehot, l2):
    lp = jax.nn.log_softmax(logits(params, x), axis=-1)
    return -jnp.mean(jnp.sum(y_onehot * lp, axis=-1)) + 0.5 * l2 * jnp.sum(params.W ** 2)


def train_classifier(x, labels, classes: Sequence[int], key: Array | int = 0,
                     config: ClassifierConfig | MLPClassifierConfig = ClassifierConfig()
                     ) -> ClassifierParams:
    """Fit a classifier (cross-entropy + L2); the type of ``config`` picks the kind.

    * :class:`ClassifierConfig`: multinomial logistic regression, full-batch Adam for
      ``config.steps`` steps (initial ``W`` small random normals, ``b = 0``);
    * :class:`MLPClassifierConfig`: one-hidden-layer ReLU MLP, minibatch Adam with a
      cosine learning-rate decay for ``config.epochs`` epochs (He-normal initial weights,
      zero biases; a fresh permutation of the images each epoch).

    Both are deterministic given ``key``.

    Args:
      x: ``(N, D)`` binarised images (0/1; any numeric dtype).
      labels: ``(N,)`` digit labels, each one of ``classes``.
      classes: the distinct digits, e.g. ``(0, 1, 2)``; class index ``k`` ↔ ``classes[k]``.
      key: PRNG key or int seed, made one typed key by :func:`ncl.keys.as_key` (initial
        weights; for the MLP also the minibatch order).
      config: :class:`ClassifierConfig` or :class:`MLPClassifierConfig`.
    Returns:
      :class:`ClassifierParams`: ``W (D, K)``, ``b (K,)``, ``classes (K,)`` for logistic
      regression; ``W (D, H)``, ``hidden_b (H,)``, ``W_out (H, K)``, ``b (K,)``,
      ``classes (K,)`` for the MLP.
    """
    if not isinstance(config, (ClassifierConfig, MLPClassifierConfig)):
        raise TypeError("config must be a ClassifierConfig or an MLPClassifierConfig, got "
                        f"{type(config).__name__}")
    x = _check_x(x)
    classes = tuple(int(c) for c in classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be at least two distinct labels, got {classes}")
    y = labels_to_index(labels, classes)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    key = keys.as_key(key, "key", hint="")
    if isinstance(config, MLPClassifierConfig):
        return _train_mlp(x, y, classes, key, config)
    D, K = x.shape[1], len(classes)
    params = ClassifierParams(W=0.01 * jax.random.normal(key, (D, K), jnp.float32),
                              b=jnp.zeros((K,), jnp.float32),
                              classes=jnp.asarray(classes, jnp.int32))
    opt = optax.adam(config.learning_rate)

    @jax.jit
    def fit(params, x, y1h):
        trainable = (params.W, params.b)

        def loss_fn(t):
            return _loss(params._replace(W=t[0], b=t[1]), x, y1h, config.l2)

        def step(carry, _):
            t, s = carry
            g = jax.grad(loss_fn)(t)
            u, s = opt.update(g, s, t)
            return (optax.apply_updates(t, u), s), None

        (t, _), _ = jax.lax.scan(step, (trainable, opt.init(trainable)), None,
                                 length=config.steps)
        return params._replace(W=t[0], b=t[1])

    return fit(params, jnp.asarray(x), jax.nn.one_hot(jnp.asarray(y), K, dtype=jnp.float32))


def _mlp_loss(t, classes, x, y, l2):
    W, hidden_b, W_out, b = t
    params = ClassifierParams(W, b, classes, hidden_b, W_out)
    lp = jax.nn.log_softmax(logits(params, x), axis=-1)
    nll = -jnp.mean(jnp.take_along_axis(lp, y[:, None], axis=-1))
    return nll + 0.5 * l2 * (jnp.sum(W ** 2) + jnp.sum(W_out ** 2))


def _train_mlp(x: np.ndarray, y: np.ndarray, classes: tuple, key: Array,
               config: MLPClassifierConfig) -> ClassifierParams:
    N, D = x.shape
    K, H = len(classes), config.hidden_units
    B = min(config.batch_size, N)
    n_batches = N // B
    k_w, k_out, k_order = jax.random.split(key, 3)
    t0 = (jax.random.normal(k_w, (D, H), jnp.float32) * np.float32(np.sqrt(2.0 / D)),
          jnp.zeros((H,), jnp.float32),
          jax.random.normal(k_out, (H, K), jnp.float32) * np.float32(np.sqrt(1.0 / H)),
          jnp.zeros((K,), jnp.float32))
    classes_arr = jnp.asarray(classes, jnp.int32)
    schedule = optax.cosine_decay_schedule(config.learning_rate,
                                           decay_steps=config.epochs * n_batches)
    opt = optax.adam(schedule)
    grad_fn = jax.grad(_mlp_loss)

    @jax.jit
    def fit(t, x, y):
        def epoch(carry, e):
            order = jax.random.permutation(jax.random.fold_in(k_order, e), N)
            batches = order[:n_batches * B].reshape(n_batches, B)

            def step(carry, idx):
                t, s = carry
                g = grad_fn(t, classes_arr, x[idx], y[idx], config.l2)
                u, s = opt.update(g, s, t)
                return (optax.apply_updates(t, u), s), None

            return jax.lax.scan(step, carry, batches)[0], None

        (t, _), _ = jax.lax.scan(epoch, (t, opt.init(t)), jnp.arange(config.epochs))
        return t

    W, hidden_b, W_out, b = fit(t0, jnp.asarray(x), jnp.asarray(y))
    return ClassifierParams(W, b, classes_arr, hidden_b, W_out)


# ----------------------------------------------------------------------------- files

def save_classifier(path, params: ClassifierParams, **meta) -> Path:
    """Write ``params`` (and scalar/str metadata such as the held-out accuracy) to npz.

    Logistic regression is written as format version 1 (``W``, ``b``, ``classes``), an
    MLP as version 2 (adds ``hidden_b``, ``W_out``); arrays are float32 / int32,
    compressed.
    """
    path = Path(path)
    mlp = params.W_out is not None
    if mlp != (params.hidden_b is not None):
        raise ValueError("an MLP classifier needs both hidden_b and W_out")
    reserved = sorted(set(meta) & {"W", "b", "classes", "format_version", *_MLP_FIELDS})
    if reserved:
        raise ValueError(f"metadata names {reserved} are reserved for the classifier arrays")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"W": np.asarray(params.W, np.float32), "b": np.asarray(params.b, np.float32),
              "classes": np.asarray(params.classes, np.int32),
              "format_version": np.array(2 if mlp else 1, np.int64)}
    if mlp:
        arrays["hidden_b"] = np.asarray(params.hidden_b, np.float32)
        arrays["W_out"] = np.asarray(params.W_out, np.float32)
    for k, v in meta.items():
        arrays[k] = np.asarray(v)
    np.savez_compressed(path, **arrays)
    return path


def load_classifier(file) -> tuple[ClassifierParams, dict]:
    """Read a file written by :func:`save_classifier` (format version 1 or 2) →
    ``(params, metadata dict)``."""
    arrays = ("W", "b", "classes", *_MLP_FIELDS)
    with np.load(file, allow_pickle=False) as npz:
        missing = [k for k in ("W", "b", "classes") if k not in npz.files]
        if missing:
            raise ValueError(f"{file}: not a classifier file (missing {missing})")
        W, b, classes = npz["W"], npz["b"], npz["classes"]
        mlp = {k: npz[k] for k in _MLP_FIELDS if k in npz.files}
        meta = {k: npz[k][()] for k in npz.files if k not in arrays}
    version = meta.get("format_version", 1)
    version = version.item() if isinstance(version, (np.generic, np.ndarray)) else version
    if isinstance(version, bool) or not (isinstance(version, (int, np.integer))
                                         and 1 <= int(version) <= FORMAT_VERSION):
        raise ValueError(f"{file}: classifier format_version {version!r} is not supported "
                         f"(this ncl reads 1..{FORMAT_VERSION}); upgrade ncl")
    if mlp and (len(mlp) != len(_MLP_FIELDS) or int(version) < 2):
        raise ValueError(f"{file}: MLP arrays {sorted(mlp)} need both of {list(_MLP_FIELDS)} "
                         "and format_version 2")
    K = W.shape[1] if W.ndim == 2 and not mlp else b.shape[0] if b.ndim == 1 else -1
    ok = W.ndim == 2 and b.shape == (K,) and classes.shape == (K,)
    if mlp:
        H = W.shape[1] if W.ndim == 2 else -1
        ok = ok and mlp["hidden_b"].shape == (H,) and mlp["W_out"].shape == (H, K)
    if not ok:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in
                           dict(W=W, b=b, classes=classes, **mlp).items())
        raise ValueError(f"{file}: inconsistent shapes {shapes}")
    meta = {k: (v.item() if isinstance(v, np.generic) else
                (str(v) if isinstance(v, np.ndarray) and v.dtype.kind == "U" else v))
            for k, v in meta.items()}
    extra = {k: jnp.asarray(v, jnp.float32) for k, v in mlp.items()}
    return ClassifierParams(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32),
                            jnp.asarray(classes, jnp.int32), **extra), meta


def _resource(name: str):
    from importlib import resources
    try:
        return resources.files("ncl").joinpath("_data", name)
    except (ModuleNotFoundError, TypeError, AttributeError):  # pragma: no cover
        return Path(__file__).resolve().parent / "_data" / name


def load_default_classifier(digits: Sequence[int] = (0, 1, 2), *, with_meta: bool = False):
    """A shipped classifier: ``digits`` ``(0, 1, 2)`` (the paper's; the default) or
    ``(0, 1, …, 9)`` (e.g. ``range(10)``), in that order (:data:`SHIPPED_FILES`).

    Built by ``scripts/build_classifier.py`` from all MNIST training images of the digits
    (binarised at > 127): (0, 1, 2) — logistic regression (``classifier_digits012.npz``);
    (0, …, 9) — MLP 784-256-10 (``classifier_digits0123456789.npz``).
    ``meta["test_accuracy"]`` is its accuracy on the MNIST test images of those digits.

    Returns ``ClassifierParams`` (or ``(params, meta)`` with ``with_meta=True``).
    Raises ``ValueError`` for other digit tuples (use :func:`classifier_for_digits`).
    """
    digits = tuple(int(d) for d in digits)
    if digits not in SHIPPED_FILES:
        raise ValueError(f"shipped classifiers are for digits (0, 1, 2) and (0, 1, ..., 9) "
                         f"(in that order), got {digits}; use "
                         "ncl.classifier.classifier_for_digits(digits) to train one")
    res = _resource(SHIPPED_FILES[digits])
    try:
        payload = res.read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"shipped classifier {res} is missing; rebuild it with "
            "scripts/build_classifier.py --mnist-dir DIR") from exc
    params, meta = load_classifier(io.BytesIO(payload))
    return (params, meta) if with_meta else params


def classifier_for_digits(digits: Sequence[int], directory=None, download: bool = True,
                          key: Array | int = 0,
                          config: ClassifierConfig | MLPClassifierConfig = ClassifierConfig()
                          ) -> ClassifierParams:
    """The shipped classifier for digits (0, 1, 2) or (0, 1, …, 9)
    (:func:`load_default_classifier`; ``key`` and ``config`` are then unused); otherwise
    one trained now with ``config`` on all MNIST training images of ``digits``
    (:func:`all_training_digits`: the files read by :func:`ncl.mnist.load_mnist`,
    binarised at > 127 by :func:`ncl.data.binarize`)."""
    digits = tuple(int(d) for d in digits)
    if digits in SHIPPED_FILES:
        return load_default_classifier(digits)
    x, y = all_training_digits(digits, directory, download)
    return train_classifier(x, y, digits, key, config)


def all_training_digits(digits, directory=None, download: bool = True, split: str = "train"):
    """All binarised MNIST images of ``digits`` in ``split`` → ``(x uint8 (N, 784), y (N,))``."""
    from ncl import data as data_lib
    from ncl import mnist
    images, labels = mnist.load_mnist(split, directory, download)
    keep = np.isin(labels, np.asarray(digits))
    return data_lib.binarize(images[keep]), labels[keep].astype(np.int64)
