"""Digit classifier for the class-fidelity diagnostic (eq. 22).

Multinomial logistic regression on binarised images (pixel > 127 → 1), trained with
optax (Adam, full batch, L2 penalty, fixed number of steps; deterministic given the
key). All functions are pure; :class:`ClassifierParams` is a pytree, so
``predict_proba`` can be called inside jit / vmap (the diagnostics do).

* :func:`train_classifier` — ``(x, labels, classes, key) -> ClassifierParams``;
* :func:`predict_proba`, :func:`predict`, :func:`accuracy`;
* :func:`load_default_classifier` — shipped weights for the paper's digits 0, 1, 2
  (``ncl/_data/classifier_digits012.npz``, built by ``scripts/build_classifier.py``
  from *all* MNIST training images of those digits; the file stores the held-out
  accuracy on the MNIST test images of the same digits);
* :func:`classifier_for_digits` — the shipped one for (0, 1, 2), otherwise trained at
  runtime from all training images of the digits (:func:`ncl.mnist.load_mnist`).

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
FORMAT_VERSION = 1


class ClassifierParams(NamedTuple):
    """Multinomial logistic regression (a pytree).

    Attributes:
      W: ``(D, K)`` weights.
      b: ``(K,)`` biases.
      classes: ``(K,)`` int32, the digit each class index stands for.
    """

    W: Array
    b: Array
    classes: Array

    @property
    def n_classes(self) -> int:
        return int(self.b.shape[-1])


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


def logits(params: ClassifierParams, x: Array) -> Array:
    """Class logits ``x W + b``: ``x (..., D)`` (0/1 or probabilities) → ``(..., K)``."""
    x = jnp.asarray(x, params.W.dtype)
    chex.assert_axis_dimension(x, -1, params.W.shape[0])
    return x @ params.W + params.b


def predict_proba(params: ClassifierParams, x: Array) -> Array:
    """Class probabilities ``softmax(x W + b)``: ``x (..., D)`` → ``(..., K)``."""
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
                     config: ClassifierConfig = ClassifierConfig()) -> ClassifierParams:
    """Fit multinomial logistic regression (cross-entropy + L2) with full-batch Adam.

    Args:
      x: ``(N, D)`` binarised images (0/1; any numeric dtype).
      labels: ``(N,)`` digit labels, each one of ``classes``.
      classes: the distinct digits, e.g. ``(0, 1, 2)``; class index ``k`` ↔ ``classes[k]``.
      key: PRNG key or int seed, made one typed key by :func:`ncl.keys.as_key` (initial
        weights are small random normals).
      config: :class:`ClassifierConfig`.
    Returns:
      :class:`ClassifierParams` with ``W (D, K)``, ``b (K,)``, ``classes (K,)``.
    """
    x = _check_x(x)
    classes = tuple(int(c) for c in classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be at least two distinct labels, got {classes}")
    y = labels_to_index(labels, classes)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    key = keys.as_key(key, "key", hint="")
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


# ----------------------------------------------------------------------------- files

def save_classifier(path, params: ClassifierParams, **meta) -> Path:
    """Write ``params`` (and scalar/str metadata such as the held-out accuracy) to npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"W": np.asarray(params.W, np.float32), "b": np.asarray(params.b, np.float32),
              "classes": np.asarray(params.classes, np.int32),
              "format_version": np.array(FORMAT_VERSION, np.int64)}
    for k, v in meta.items():
        arrays[k] = np.asarray(v)
    np.savez_compressed(path, **arrays)
    return path


def load_classifier(file) -> tuple[ClassifierParams, dict]:
    """Read a file written by :func:`save_classifier` → ``(params, metadata dict)``."""
    with np.load(file, allow_pickle=False) as npz:
        missing = [k for k in ("W", "b", "classes") if k not in npz.files]
        if missing:
            raise ValueError(f"{file}: not a classifier file (missing {missing})")
        W, b, classes = npz["W"], npz["b"], npz["classes"]
        meta = {k: npz[k][()] for k in npz.files if k not in ("W", "b", "classes")}
    if W.ndim != 2 or b.shape != (W.shape[1],) or classes.shape != b.shape:
        raise ValueError(f"{file}: inconsistent shapes W {W.shape}, b {b.shape}, "
                         f"classes {classes.shape}")
    meta = {k: (v.item() if isinstance(v, np.generic) else
                (str(v) if isinstance(v, np.ndarray) and v.dtype.kind == "U" else v))
            for k, v in meta.items()}
    return ClassifierParams(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32),
                            jnp.asarray(classes, jnp.int32)), meta


def _resource(name: str):
    from importlib import resources
    try:
        return resources.files("ncl").joinpath("_data", name)
    except (ModuleNotFoundError, TypeError, AttributeError):  # pragma: no cover
        return Path(__file__).resolve().parent / "_data" / name


def load_default_classifier(digits: Sequence[int] = (0, 1, 2), *, with_meta: bool = False):
    """The shipped classifier for the paper's digits 0, 1, 2.

    Trained by ``scripts/build_classifier.py`` on all MNIST training images of digits
    0, 1, 2 (binarised at > 127); ``meta["test_accuracy"]`` is its accuracy on the
    MNIST test images of those digits.

    Returns ``ClassifierParams`` (or ``(params, meta)`` with ``with_meta=True``).
    Raises ``ValueError`` for other digit sets (use :func:`classifier_for_digits`).
    """
    digits = tuple(int(d) for d in digits)
    if digits != (0, 1, 2):
        raise ValueError(f"only a classifier for digits (0, 1, 2) is shipped, got {digits}; "
                         "use ncl.classifier.classifier_for_digits(digits) to train one")
    res = _resource(DEFAULT_FILE)
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
                          config: ClassifierConfig = ClassifierConfig()) -> ClassifierParams:
    """Shipped classifier for (0, 1, 2); otherwise trained now on all MNIST training
    images of ``digits`` (:func:`all_training_digits`: the files read by
    :func:`ncl.mnist.load_mnist`, binarised at > 127 by :func:`ncl.data.binarize`)."""
    digits = tuple(int(d) for d in digits)
    if digits == (0, 1, 2):
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
