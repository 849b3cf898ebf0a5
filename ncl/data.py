"""The binarised MNIST digit data sets of ``ncl``: binarisation, digit selection,
the paper's bundled subset, and the check every data matrix passes.

Pure numpy (no JAX). Everything here returns ``uint8`` numpy arrays (:func:`check_data`:
float32); convert with ``jnp.asarray`` where needed.  The MNIST files themselves (IDX
reader, checksums, data directory, downloader, :func:`~ncl.mnist.load_mnist`) are in
:mod:`ncl.mnist`.

Overview
--------
* :func:`binarize`, :func:`select_digits`, :func:`load_digits` build binary
  ``(n, 784)`` data sets.
* :func:`load_paper_data` returns the paper's data set - the first 1000
  training images of each of the digits 0, 1, 2, binarised at gray level > 127
  - from a small bit-packed file bundled with the package, so no MNIST download
  is needed for it.  :func:`build_paper_subset` (used by
  ``scripts/build_bundled_subset.py``) rebuilds it from the original files.
* :func:`check_data` validates a binary data matrix ``(N, D)`` before training or
  diagnostics.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges and is
licensed CC BY-SA 3.0; see ``ncl/_data/ATTRIBUTION.md``.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ncl._atomic import atomic_write
from ncl.mnist import (
    MNIST_FILES,
    MNIST_SHA256,
    MNISTChecksumError,
    MNISTFormatError,
    MNISTUnavailableError,
    load_mnist,
)

__all__ = [
    "PAPER_DIGITS",
    "PAPER_PER_DIGIT",
    "PAPER_SUBSET_FILE",
    "HELDOUT_SUBSET_FILE",
    "binarize",
    "select_digits",
    "load_digits",
    "build_subset",
    "build_paper_subset",
    "build_heldout_subset",
    "save_subset",
    "load_subset_npz",
    "load_paper_data",
    "load_heldout_data",
    "check_data",
]

# --------------------------------------------------------------------------- #
# Constants
# --------------------------------------------------------------------------- #

#: Paper data set: the first 1000 training images of each of these digits.
PAPER_DIGITS: tuple[int, ...] = (0, 1, 2)
PAPER_PER_DIGIT = 1000
#: Bundled bit-packed file (inside ``ncl/_data``).
PAPER_SUBSET_FILE = "mnist_012_first1000.npz"
HELDOUT_SUBSET_FILE = "mnist_012_test.npz"   # every test-split image of the digits 0, 1, 2
HELDOUT_SIZE = 3147                          # 980 zeros, 1135 ones, 1032 twos
_SUBSET_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- #
# Binarisation and digit subsets
# --------------------------------------------------------------------------- #


def binarize(images: np.ndarray, threshold: int = 127) -> np.ndarray:
    """Binarise gray-level images: pixel ``> threshold`` -> 1, else 0.

    The default threshold 127 means "gray level above 50%" on the 0..255
    scale (127 -> 0, 128 -> 1).

    Args:
      images: ``(N, 28, 28)``, ``(N, 784)`` or any ``(N, ...)`` array of gray
        levels on the 0..255 scale.

    Returns:
      uint8 ``(N, prod(...))`` (``(N, 784)`` for MNIST) with values in {0, 1}.
    """
    images = np.asarray(images)
    if images.ndim < 1:
        raise ValueError(f"images must have a leading batch axis, got shape {images.shape}")
    return (images.reshape(images.shape[0], -1) > threshold).astype(np.uint8)


def _check_digits(digits: Iterable[int]) -> tuple[int, ...]:
    try:
        ds = tuple(digits)
    except TypeError:
        raise ValueError(f"digits must be a sequence of ints in 0..9, got {digits!r}") from None
    if not ds:
        raise ValueError("digits must be non-empty")
    for d in ds:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d <= 9:
            raise ValueError(f"digits must be ints in 0..9, got {ds!r}")
    if len(set(ds)) != len(ds):
        raise ValueError(f"digits must be distinct, got {ds!r}")
    return tuple(int(d) for d in ds)


def _select_indices(labels: np.ndarray, digits: tuple[int, ...], per_digit: int | None
                    ) -> np.ndarray:
    parts = []
    for d in digits:
        idx = np.flatnonzero(labels == d)
        if per_digit is None:   # every image of the digit
            parts.append(idx)
            continue
        if idx.size < per_digit:
            raise ValueError(
                f"digit {d} has only {idx.size} images, fewer than per_digit={per_digit}"
            )
        parts.append(idx[:per_digit])
    return np.sort(np.concatenate(parts))


def select_digits(
    images: np.ndarray,
    labels: np.ndarray,
    digits: Iterable[int] = PAPER_DIGITS,
    per_digit: int | None = PAPER_PER_DIGIT,
    *,
    return_indices: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binarised subset: the first ``per_digit`` images of each digit (``None``: all).

    Selection is deterministic: for each digit, the first ``per_digit``
    occurrences in file order.  The output keeps the original file order (the
    selected indices sorted ascending), i.e. digits are interleaved as in
    MNIST, *not* grouped by digit; shuffle or sort by label yourself if needed.

    Args:
      images: ``(N, 28, 28)`` (or ``(N, 784)``) gray levels 0..255.
      labels: ``(N,)`` digit labels.
      digits: distinct digits in 0..9.
      per_digit: positive number of images per digit, or ``None`` for all of them.
      return_indices: also return the selected indices into ``images``.

    Returns:
      ``(x, y)`` or ``(x, y, idx)``: ``x`` uint8 ``(n, 784)`` in {0, 1} with
      ``n = len(digits) * per_digit``, ``y`` uint8 ``(n,)``, ``idx`` int64
      ``(n,)`` ascending.

    Raises:
      ValueError: invalid ``digits`` / ``per_digit``, mismatched lengths, or a
        digit with fewer than ``per_digit`` images.
    """
    ds = _check_digits(digits)
    if per_digit is not None and (isinstance(per_digit, bool)
                                  or not isinstance(per_digit, (int, np.integer))
                                  or per_digit < 1):
        raise ValueError(f"per_digit must be a positive int or None (all images), got "
                         f"{per_digit!r}")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if labels.ndim != 1 or images.shape[:1] != labels.shape:
        raise ValueError(
            f"images {images.shape} and labels {labels.shape} must share the leading axis"
        )
    idx = _select_indices(labels, ds, None if per_digit is None else int(per_digit))
    x = binarize(images[idx])
    y = labels[idx].astype(np.uint8)
    if return_indices:
        return x, y, idx.astype(np.int64)
    return x, y


def load_digits(
    digits: Iterable[int] = PAPER_DIGITS,
    per_digit: int | None = PAPER_PER_DIGIT,
    split: str = "train",
    directory: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ncl.mnist.load_mnist` followed by :func:`select_digits`.

    Returns ``(x, labels)``: ``x`` uint8 ``(len(digits)*per_digit, 784)`` in
    {0, 1}, ``labels`` uint8 ``(len(digits)*per_digit,)``, in file order.
    ``load_digits()`` equals :func:`load_paper_data` (which needs no MNIST files).
    """
    ds = _check_digits(digits)  # fail fast before touching the disk
    images, labels = load_mnist(split, directory, download)
    x, y = select_digits(images, labels, ds, per_digit)  # type: ignore[misc]
    return x, y


# --------------------------------------------------------------------------- #
# Bundled (bit-packed) subsets
# --------------------------------------------------------------------------- #


def _array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).hexdigest()


def build_subset(
    directory: str | os.PathLike[str] | None = None,
    digits: Iterable[int] = PAPER_DIGITS,
    per_digit: int | None = PAPER_PER_DIGIT,
    split: str = "train",
    download: bool = True,
) -> dict[str, np.ndarray]:
    """Build a bit-packed binarised digit subset from the MNIST files.

    Returns a dict of arrays (the npz contents):

    * ``bits``: uint8 ``(n, 98)`` = ``np.packbits(x, axis=1)``
    * ``labels``: uint8 ``(n,)``
    * ``shape``: int64 ``(2,)`` = ``(n, 784)``
    * ``indices``: int64 ``(n,)`` indices into the source split
    * ``digits``: int64 ``(k,)``; ``per_digit`` (−1: all), ``threshold``: int64 scalars
    * ``split``, ``x_sha256``, ``labels_sha256`` (of the unpacked ``x`` and
      ``labels`` bytes): 0-d str arrays
    * ``source_files``, ``source_sha256``: str ``(2,)`` the IDX files used
    * ``format_version``: int64 scalar
    """
    ds = _check_digits(digits)
    images, labels = load_mnist(split, directory, download)
    x, y, idx = select_digits(images, labels, ds, per_digit, return_indices=True)  # type: ignore[misc]
    names = MNIST_FILES[split]
    return {
        "bits": np.packbits(x, axis=1),
        "labels": y,
        "shape": np.array(x.shape, dtype=np.int64),
        "indices": idx,
        "digits": np.array(ds, dtype=np.int64),
        "per_digit": np.array(-1 if per_digit is None else per_digit, dtype=np.int64),
        "threshold": np.array(127, dtype=np.int64),
        "split": np.array(split),
        "x_sha256": np.array(_array_sha256(x)),
        "labels_sha256": np.array(_array_sha256(y)),
        "source_files": np.array(names),
        "source_sha256": np.array([MNIST_SHA256[n] for n in names]),
        "format_version": np.array(_SUBSET_FORMAT_VERSION, dtype=np.int64),
    }


def build_paper_subset(
    directory: str | os.PathLike[str] | None = None, download: bool = True
) -> dict[str, np.ndarray]:
    """:func:`build_subset` for the paper: digits 0, 1, 2, first 1000 training
    images each -> ``bits`` ``(3000, 98)``, ``labels`` ``(3000,)``."""
    return build_subset(directory, PAPER_DIGITS, PAPER_PER_DIGIT, "train", download)


def build_heldout_subset(
    directory: str | os.PathLike[str] | None = None, download: bool = True
) -> dict[str, np.ndarray]:
    """:func:`build_subset` of the held-out images: every MNIST *test* image of the
    digits 0, 1, 2 -> ``bits`` ``(3147, 98)``, ``labels`` ``(3147,)``."""
    return build_subset(directory, PAPER_DIGITS, None, "test", download)


def save_subset(subset: dict[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write ``subset`` (from :func:`build_subset`) with ``np.savez_compressed``,
    atomically (temp file + :func:`os.replace`)."""
    return atomic_write(path, lambda fh: np.savez_compressed(fh, **subset))


_SUBSET_KEYS = ("bits", "labels", "shape", "x_sha256", "labels_sha256")


def load_subset_npz(
    file: str | os.PathLike[str] | Any, *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load and verify a subset written by :func:`save_subset`.

    Args:
      file: path or binary file object.
      name: how to name the file in error messages (default: ``file``).

    Returns:
      ``(x, labels)``: ``x`` uint8 ``(n, 784)`` in {0, 1}, ``labels`` uint8 ``(n,)``.

    Raises:
      MNISTFormatError: unreadable npz, missing keys or inconsistent shapes.
      MNISTChecksumError: the unpacked data do not match the stored SHA-256.
    """
    if name is None:
        name = str(getattr(file, "name", file))
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in _SUBSET_KEYS if k not in npz.files]
            if missing:
                raise MNISTFormatError(f"{name}: bundled subset lacks keys {missing}")
            arrays = {k: npz[k] for k in _SUBSET_KEYS}
    except MNISTFormatError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise MNISTFormatError(
            f"{name}: cannot read subset npz ({type(exc).__name__}: {exc})") from exc
    shape = tuple(int(s) for s in arrays["shape"])
    bits, labels = arrays["bits"], arrays["labels"]
    if (
        len(shape) != 2
        or bits.dtype != np.uint8
        or bits.shape != (shape[0], (shape[1] + 7) // 8)
        or labels.dtype != np.uint8
        or labels.shape != (shape[0],)
    ):
        raise MNISTFormatError(
            f"{name}: inconsistent subset: shape={shape}, bits {bits.dtype}{bits.shape}, "
            f"labels {labels.dtype}{labels.shape}"
        )
    x = np.unpackbits(bits, axis=1, count=shape[1])
    for what, arr, key in (("x", x, "x_sha256"), ("labels", labels, "labels_sha256")):
        expected, found = str(arrays[key]), _array_sha256(arr)
        if found != expected:
            raise MNISTChecksumError(
                f"{name}: {what} SHA-256 mismatch: expected {expected}, found {found}; "
                "the bundled data file is corrupted (reinstall ncl or rebuild it with "
                "scripts/build_bundled_subset.py)"
            )
    return x, labels


def _bundled_path(name: str = PAPER_SUBSET_FILE) -> Any:
    """Traversable for a bundled subset (works from an installed wheel)."""
    from importlib import resources

    try:
        return resources.files("ncl").joinpath("_data", name)
    except (ModuleNotFoundError, TypeError, AttributeError):  # pragma: no cover
        return Path(__file__).resolve().parent / "_data" / name


def _load_bundled(name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    res = _bundled_path(name)
    try:
        with res.open("rb") as fh:
            payload = fh.read()
    except FileNotFoundError as exc:
        raise MNISTUnavailableError(
            f"bundled data file {res} is missing; reinstall ncl or rebuild it with "
            "scripts/build_bundled_subset.py --mnist-dir DIR"
        ) from exc
    x, labels = load_subset_npz(io.BytesIO(payload), name=f"bundled {res}")
    if x.shape != shape:
        raise MNISTFormatError(f"bundled {res}: expected x of shape {shape}, got {x.shape}")
    return x, labels


def load_paper_data() -> tuple[np.ndarray, np.ndarray]:
    """The paper's data set, from the file bundled with the package.

    The first 1000 training images of each of the digits 0, 1, 2 (file order
    kept, see :func:`select_digits`), binarised with gray level > 127.  Stored
    bit-packed in ``ncl/_data/mnist_012_first1000.npz`` and verified against
    the SHA-256 recorded in it.  Identical to ``load_digits((0, 1, 2), 1000)``.

    Returns:
      ``(x, labels)``: ``x`` uint8 ``(3000, 784)`` in {0, 1}, ``labels`` uint8
      ``(3000,)`` (1000 each of 0, 1, 2).
    """
    return _load_bundled(PAPER_SUBSET_FILE, (3000, 784))


def load_heldout_data() -> tuple[np.ndarray, np.ndarray]:
    """The held-out images for the paper's data set, from the file bundled with the
    package: every MNIST *test* image of the digits 0, 1, 2 (file order), binarised
    like the training set. Identical to ``load_digits((0, 1, 2), None, split="test")``.

    Returns:
      ``(x, labels)``: ``x`` uint8 ``(3147, 784)`` in {0, 1}, ``labels`` uint8
      ``(3147,)`` (980 zeros, 1135 ones, 1032 twos).
    """
    return _load_bundled(HELDOUT_SUBSET_FILE, (HELDOUT_SIZE, 784))


def check_data(data, name: str = "data") -> np.ndarray:
    """Validate a binary data matrix on the host and return it as float32 ``(N, D)``.

    Raises ``ValueError`` naming the problem (rank, emptiness, NaN/inf, non-binary values).
    """
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as e:  # ragged lists, unconvertible objects
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_visible) of 0/1 values; "
                         f"cannot convert it ({e})") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_visible), got shape "
                         f"{arr.shape}; flatten images first, e.g. x.reshape(len(x), -1)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be numeric 0/1 values (bool, int or float), got dtype "
                         f"{arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values")
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)].ravel()[:3]
        raise ValueError(f"{name} must be binary (0/1); found values such as {bad.tolist()}. "
                         "Binarise first, e.g. ncl.data.binarize(images) (pixel > 127)")
    return arr.astype(np.float32)
