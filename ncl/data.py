"""MNIST data for ``ncl``: a checked IDX reader, a verifying downloader and
the binarised digit subsets used in the paper.

Pure numpy (no JAX). Everything here returns ``uint8`` numpy arrays; convert
with ``jnp.asarray`` where needed.

Overview
--------
* :func:`read_idx` parses gzipped or raw IDX files with strict header and
  length checks (:class:`MNISTFormatError` on anything malformed).
* :data:`MNIST_SHA256` holds the SHA-256 of the four *decompressed* canonical
  MNIST files; :func:`verify` and :func:`load_mnist` check them
  (:class:`MNISTChecksumError` on mismatch).
* :func:`resolve_mnist_dir` finds the data directory: explicit argument, then
  ``$NCL_MNIST_DIR``, then ``$XDG_CACHE_HOME/ncl/mnist`` (default
  ``~/.cache/ncl/mnist``).  In a directory each file may be present as
  ``name.gz`` or as the raw ``name``.
* :func:`download_mnist` fetches missing files from public mirrors, writing to a
  temporary file and atomically renaming it into place only after the checksum
  verifies, so a partial or corrupted download never replaces a good file.
* :func:`binarize`, :func:`select_digits`, :func:`load_digits` build binary
  ``(n, 784)`` data sets.
* :func:`load_paper_data` returns the paper's data set - the first 1000
  training images of each of the digits 0, 1, 2, binarised at gray level > 127
  - from a small bit-packed file bundled with the package, so no MNIST download
  is needed for it.  :func:`build_paper_subset` (used by
  ``scripts/build_bundled_subset.py``) rebuilds it from the original files.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges and is
licensed CC BY-SA 3.0; see ``ncl/_data/ATTRIBUTION.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ncl._atomic import atomic_write

__all__ = [
    "MNISTFormatError",
    "MNISTChecksumError",
    "MNISTUnavailableError",
    "MNIST_FILES",
    "MNIST_SHA256",
    "DEFAULT_MIRRORS",
    "ENV_VAR",
    "PAPER_DIGITS",
    "PAPER_PER_DIGIT",
    "PAPER_SUBSET_FILE",
    "read_idx",
    "sha256_of_idx",
    "verify",
    "verify_mnist_dir",
    "resolve_mnist_dir",
    "default_cache_dir",
    "find_mnist_file",
    "download_mnist",
    "load_mnist",
    "binarize",
    "select_digits",
    "load_digits",
    "build_subset",
    "build_paper_subset",
    "save_subset",
    "load_subset_npz",
    "load_paper_data",
]

# --------------------------------------------------------------------------- #
# Constants
# --------------------------------------------------------------------------- #

#: Environment variable naming a directory that holds the MNIST files.
ENV_VAR = "NCL_MNIST_DIR"

#: Canonical file names (without ``.gz``) per split: ``(images, labels)``.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: SHA-256 of the *decompressed* canonical MNIST files (``sha256sum`` of the
#: raw IDX bytes, header included).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Expected number of examples per split.
_SPLIT_SIZES = {"train": 60000, "test": 10000}

#: Public mirrors serving ``<name>.gz``, tried in order.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Paper data set: the first 1000 training images of each of these digits.
PAPER_DIGITS: tuple[int, ...] = (0, 1, 2)
PAPER_PER_DIGIT = 1000
#: Bundled bit-packed file (inside ``ncl/_data``).
PAPER_SUBSET_FILE = "mnist_012_first1000.npz"
_SUBSET_FORMAT_VERSION = 1

#: Upper bound on a single downloaded file (the largest is ~9.9 MB gzipped).
_MAX_DOWNLOAD_BYTES = 128 * 1024 * 1024
_CHUNK = 1 << 20

# IDX type code -> numpy dtype (IDX data is big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


class MNISTFormatError(ValueError):
    """A file is not a well-formed (gzipped) IDX file: bad gzip stream, bad
    magic number, truncated or oversized payload, ..."""


class MNISTChecksumError(ValueError):
    """A file's SHA-256 (of its decompressed bytes) differs from the expected
    value."""


class MNISTUnavailableError(RuntimeError):
    """MNIST files are missing and could not be downloaded."""


# --------------------------------------------------------------------------- #
# IDX reading and checksums
# --------------------------------------------------------------------------- #


def _idx_name(path: str | os.PathLike[str]) -> str:
    """Canonical file name of ``path`` (basename without a ``.gz`` suffix)."""
    name = Path(path).name
    return name[:-3] if name.endswith(".gz") else name


def _read_decompressed(path: str | os.PathLike[str], gz: bool | None = None) -> bytes:
    """Return the decompressed bytes of a gzipped or raw file.

    With ``gz=None`` a file is treated as gzip if its name ends in ``.gz`` or
    it starts with the gzip magic bytes.  ``FileNotFoundError`` and other I/O
    errors propagate; a corrupt gzip stream raises :class:`MNISTFormatError`.
    """
    path = Path(path)
    raw = path.read_bytes()
    if gz is None:
        gz = path.name.endswith(".gz") or raw[:2] == _GZIP_MAGIC
    if gz:
        try:
            return gzip.decompress(raw)
        except EOFError as exc:
            raise MNISTFormatError(
                f"{path}: truncated gzip stream ({len(raw)} compressed bytes; {exc})"
            ) from exc
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise MNISTFormatError(f"{path}: not a valid gzip file ({exc})") from exc
    return raw


def _parse_idx(data: bytes, source: str | os.PathLike[str]) -> np.ndarray:
    """Parse IDX bytes (already decompressed); ``source`` names the file in errors."""
    if len(data) < 4:
        raise MNISTFormatError(
            f"{source}: truncated IDX file ({len(data)} bytes, shorter than the 4-byte magic number)"
        )
    zero, type_code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        hint = " (looks gzip-compressed; name it *.gz)" if data[:2] == _GZIP_MAGIC else ""
        raise MNISTFormatError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()}{hint}; expected "
            "0x0000TTDD with type TT in {08,09,0b,0c,0d,0e} and DD >= 1 dimensions "
            "(MNIST uses 0x00000803 for images and 0x00000801 for labels)"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise MNISTFormatError(
            f"{source}: truncated IDX header ({len(data)} bytes, the header of a "
            f"{ndim}-dimensional file needs {header_len})"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_len
    if payload != expected:
        problem = "truncated" if payload < expected else "has trailing bytes"
        raise MNISTFormatError(
            f"{source}: IDX payload {problem}: header declares shape {dims} of "
            f"{dtype.name} ({expected} bytes) but {payload} bytes follow the header"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    # Copy: writable, native byte order, independent of the input buffer.
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a gzipped (``*.gz``) or raw IDX file.

    Args:
      path: file path.  Gzip is detected from the ``.gz`` suffix or the gzip
        magic bytes.

    Returns:
      A writable array with the shape and dtype declared in the header, e.g.
      ``uint8 (60000, 28, 28)`` for ``train-images-idx3-ubyte`` and
      ``uint8 (60000,)`` for ``train-labels-idx1-ubyte``.

    Raises:
      MNISTFormatError: bad gzip stream, bad magic number, truncated header, or
        a payload whose length differs from what the header declares.
      FileNotFoundError / OSError: the file cannot be read.
    """
    return _parse_idx(_read_decompressed(path), path)


def sha256_of_idx(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of the *decompressed* bytes of ``path``."""
    return hashlib.sha256(_read_decompressed(path)).hexdigest()


def _expected_digest(path: str | os.PathLike[str], expected: str | None) -> str:
    if expected is not None:
        return expected.lower()
    name = _idx_name(path)
    try:
        return MNIST_SHA256[name]
    except KeyError:
        raise ValueError(
            f"{path}: no known SHA-256 for {name!r} (known: {sorted(MNIST_SHA256)}); "
            "pass expected=..."
        ) from None


_LOCAL_ADVICE = (
    " The file is corrupted or not the canonical MNIST file; delete it and download it again."
)


def _check_digest(
    path: str | os.PathLike[str], data: bytes, expected: str, advice: str = _LOCAL_ADVICE
) -> str:
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise MNISTChecksumError(
            f"{path}: SHA-256 mismatch (of the decompressed bytes): expected {expected}, "
            f"found {found}.{advice}"
        )
    return found


def verify(path: str | os.PathLike[str], expected: str | None = None) -> str:
    """Check the SHA-256 of the decompressed bytes of ``path``.

    Args:
      path: a gzipped or raw MNIST file.
      expected: hex digest; default: looked up in :data:`MNIST_SHA256` by the
        file's canonical name (basename without ``.gz``).

    Returns:
      The (matching) hex digest.

    Raises:
      MNISTChecksumError: digest mismatch (message names file, expected and
        found digests).
      MNISTFormatError: bad gzip stream.
      ValueError: no known digest for this file name and ``expected`` is None.
    """
    exp = _expected_digest(path, expected)
    return _check_digest(path, _read_decompressed(path), exp)


# In-process cache of verified files: (resolved path, mtime_ns, size, digest).
_VERIFIED: set[tuple[str, int, int, str]] = set()


def _stat_key(path: Path, digest: str) -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, digest)


def _read_verified_idx(path: Path) -> np.ndarray:
    """Read an MNIST IDX file, verifying its checksum (cached per path+mtime+size)."""
    exp = _expected_digest(path, None)
    key = _stat_key(path, exp)
    data = _read_decompressed(path)
    if key not in _VERIFIED:
        _check_digest(path, data, exp)
        _VERIFIED.add(key)
    return _parse_idx(data, path)


# --------------------------------------------------------------------------- #
# Locating files
# --------------------------------------------------------------------------- #


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ncl/mnist``, or ``~/.cache/ncl/mnist`` if unset."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ncl" / "mnist"


def _resolve_with_origin(directory: str | os.PathLike[str] | None) -> tuple[Path, str]:
    if directory is not None:
        return Path(directory).expanduser(), "the `directory` argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    return default_cache_dir(), "the default cache directory"


def resolve_mnist_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding (or to receive) the MNIST files.

    Order: ``directory`` if given, else ``$NCL_MNIST_DIR`` if set and
    non-empty, else :func:`default_cache_dir`.  The directory need not exist.
    """
    return _resolve_with_origin(directory)[0]


def find_mnist_file(directory: str | os.PathLike[str], name: str) -> Path | None:
    """Path of ``name.gz`` (preferred) or raw ``name`` in ``directory``, or None."""
    directory = Path(directory)
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def verify_mnist_dir(
    directory: str | os.PathLike[str] | None = None,
    splits: Iterable[str] = ("train", "test"),
) -> dict[str, Path]:
    """Verify every MNIST file of ``splits`` in ``directory``.

    Returns ``{name: path}``.  Raises :class:`MNISTUnavailableError` if a file
    is missing, :class:`MNISTChecksumError` / :class:`MNISTFormatError` if one
    is bad.
    """
    d, origin = _resolve_with_origin(directory)
    names = [n for s in splits for n in MNIST_FILES[_check_split(s)]]
    missing = [n for n in names if find_mnist_file(d, n) is None]
    if missing:
        raise MNISTUnavailableError(_unavailable_message(missing, d, origin))
    out = {}
    for n in names:
        p = find_mnist_file(d, n)
        assert p is not None
        verify(p)
        out[n] = p
    return out


def _check_split(split: str) -> str:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    return split


def _unavailable_message(
    missing: Sequence[str],
    directory: Path,
    origin: str,
    errors: Sequence[str] = (),
    download_disabled: bool = False,
    kept: Sequence[Path] = (),
) -> str:
    lines = [
        "MNIST file(s) not available: " + ", ".join(missing) + " (as name.gz or raw name).",
        f"Looked in: {directory} (from {origin}; search order: `directory` argument, "
        f"${ENV_VAR}, then {default_cache_dir()}).",
    ]
    if download_disabled:
        lines.append("Download was disabled (download=False).")
    if errors:
        lines.append("Download attempts failed:")
        lines.extend(f"  - {e}" for e in errors)
    if kept:
        lines.append(
            "Existing verified file(s) were left unchanged: " + ", ".join(map(str, kept)) + "."
        )
    lines.append(
        "To fix: pass directory=/path/to/mnist (a folder holding the four MNIST IDX "
        f"files), or set {ENV_VAR}=/path/to/mnist, or connect to the internet and "
        f"call with download=True so they are fetched into {directory}."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Download
# --------------------------------------------------------------------------- #

Opener = Callable[..., Any]


def _default_opener(url: str, timeout: float) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": "ncl-mnist-downloader/1"})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (fixed mirror URLs)


def _fetch_to(fh: Any, url: str, opener: Opener, timeout: float) -> None:
    """Stream ``url`` into the open binary file ``fh``."""
    response = opener(url, timeout=timeout)
    if isinstance(response, (bytes, bytearray, memoryview)):
        response = io.BytesIO(bytes(response))
    try:
        total = 0
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > _MAX_DOWNLOAD_BYTES:
                raise OSError(f"response larger than {_MAX_DOWNLOAD_BYTES} bytes")
            fh.write(chunk)
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()


def _download_one(
    directory: Path, name: str, mirrors: Sequence[str], opener: Opener, timeout: float
) -> tuple[Path | None, list[str]]:
    """Try each mirror for ``name.gz``; return (final path or None, error list)."""
    errors: list[str] = []
    target = directory / f"{name}.gz"
    expected = MNIST_SHA256[name]
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        tmp_path: Path | None = None
        try:
            with tempfile.NamedTemporaryFile(
                dir=directory, prefix=f".{name}.gz.", suffix=".part", delete=False
            ) as fh:
                tmp_path = Path(fh.name)
                _fetch_to(fh, url, opener, timeout)
                fh.flush()
                os.fsync(fh.fileno())
            data = _read_decompressed(tmp_path, gz=True)
            _check_digest(url, data, expected, advice=" Download rejected.")
            _parse_idx(data, url)  # implied by the digest; cheap sanity check
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, target)
            tmp_path = None
            _VERIFIED.add(_stat_key(target, expected))
            return target, errors
        except Exception as exc:  # noqa: BLE001 - any failure: try the next mirror
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if tmp_path is not None:
                try:
                    tmp_path.unlink()
                except FileNotFoundError:
                    pass
    return None, errors


def download_mnist(
    directory: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    timeout: float = 30.0,
    *,
    splits: Iterable[str] = ("train", "test"),
    force: bool = False,
    opener: Opener | None = None,
) -> Path:
    """Download the MNIST files of ``splits`` into ``directory`` as ``name.gz``.

    Files already present (as ``name.gz`` or raw ``name``) and passing the
    checksum are kept unless ``force``.  For each file the mirrors are tried in
    order; the response is streamed to a temporary file in ``directory``,
    decompressed, checked against :data:`MNIST_SHA256` and only then moved into
    place with :func:`os.replace` (atomic), so an interrupted or corrupted
    download never replaces an existing file.

    Args:
      directory: target directory (resolved with :func:`resolve_mnist_dir`;
        created if needed).
      mirrors: base URLs; ``<mirror>/<name>.gz`` is fetched.
      timeout: per-request timeout in seconds.
      splits: which splits' files to fetch.
      force: re-download even if a verified file is present.
      opener: ``opener(url, timeout=...)`` returning a binary file-like object
        (with ``read``; ``close`` is called if present) or ``bytes``.  Default:
        :func:`urllib.request.urlopen`.  Inject one to test without a network.

    Returns:
      The resolved directory.

    Raises:
      MNISTUnavailableError: some file could not be obtained from any mirror
        (message lists missing files, the directory, each failed attempt and
        how to fix it).
    """
    d, origin = _resolve_with_origin(directory)
    opener = _default_opener if opener is None else opener
    names = [n for s in splits for n in MNIST_FILES[_check_split(s)]]
    todo = []
    good: dict[str, Path] = {}  # verified files already present
    for n in names:
        p = find_mnist_file(d, n)
        if p is None:
            todo.append(n)
            continue
        try:
            _read_verified_idx(p)
            good[n] = p
        except (MNISTChecksumError, MNISTFormatError):
            pass
        if force or n not in good:
            todo.append(n)
    if not todo:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MNISTUnavailableError(
            _unavailable_message(todo, d, origin, [f"cannot create {d}: {exc}"])
        ) from exc
    failed: list[str] = []
    all_errors: list[str] = []
    for n in todo:
        path, errors = _download_one(d, n, mirrors, opener, timeout)
        if path is None:
            failed.append(n)
            all_errors.extend(errors or [f"{n}: no mirrors given"])
    if failed:
        kept = [good[n] for n in failed if n in good]
        raise MNISTUnavailableError(_unavailable_message(failed, d, origin, all_errors, kept=kept))
    return d


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def load_mnist(
    split: str = "train",
    directory: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    opener: Opener | None = None,
    timeout: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split, verifying the SHA-256 of each file read.

    Args:
      split: ``"train"`` (60000 examples) or ``"test"`` (10000).
      directory: data directory; see :func:`resolve_mnist_dir`.
      download: fetch missing files (see :func:`download_mnist`).
      mirrors, opener, timeout: passed to :func:`download_mnist`.

    Returns:
      ``(images, labels)``: ``images`` uint8 ``(N, 28, 28)`` with gray levels
      0..255, ``labels`` uint8 ``(N,)`` with digits 0..9, in file order.

    Raises:
      MNISTUnavailableError: files missing and ``download`` is False or every
        mirror failed.
      MNISTChecksumError / MNISTFormatError: a file present is corrupted (it is
        not replaced automatically; delete it to re-download).
    """
    _check_split(split)
    d, origin = _resolve_with_origin(directory)
    names = MNIST_FILES[split]
    missing = [n for n in names if find_mnist_file(d, n) is None]
    if missing:
        if not download:
            raise MNISTUnavailableError(
                _unavailable_message(missing, d, origin, download_disabled=True)
            )
        download_mnist(d, mirrors, timeout, splits=(split,), opener=opener)
    paths = [find_mnist_file(d, n) for n in names]
    assert paths[0] is not None and paths[1] is not None
    images = _read_verified_idx(paths[0])
    labels = _read_verified_idx(paths[1])
    n = _SPLIT_SIZES[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,) or images.dtype != np.uint8:
        raise MNISTFormatError(
            f"{d}: unexpected MNIST {split} shapes images {images.shape}, labels {labels.shape}"
        )
    return images, labels


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


def _select_indices(labels: np.ndarray, digits: tuple[int, ...], per_digit: int) -> np.ndarray:
    parts = []
    for d in digits:
        idx = np.flatnonzero(labels == d)
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
    per_digit: int = PAPER_PER_DIGIT,
    *,
    return_indices: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binarised subset: the first ``per_digit`` images of each digit.

    Selection is deterministic: for each digit, the first ``per_digit``
    occurrences in file order.  The output keeps the original file order (the
    selected indices sorted ascending), i.e. digits are interleaved as in
    MNIST, *not* grouped by digit; shuffle or sort by label yourself if needed.

    Args:
      images: ``(N, 28, 28)`` (or ``(N, 784)``) gray levels 0..255.
      labels: ``(N,)`` digit labels.
      digits: distinct digits in 0..9.
      per_digit: positive number of images per digit.
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
    if isinstance(per_digit, bool) or not isinstance(per_digit, (int, np.integer)) or per_digit < 1:
        raise ValueError(f"per_digit must be a positive int, got {per_digit!r}")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if labels.ndim != 1 or images.shape[:1] != labels.shape:
        raise ValueError(
            f"images {images.shape} and labels {labels.shape} must share the leading axis"
        )
    idx = _select_indices(labels, ds, int(per_digit))
    x = binarize(images[idx])
    y = labels[idx].astype(np.uint8)
    if return_indices:
        return x, y, idx.astype(np.int64)
    return x, y


def load_digits(
    digits: Iterable[int] = PAPER_DIGITS,
    per_digit: int = PAPER_PER_DIGIT,
    split: str = "train",
    directory: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_mnist` followed by :func:`select_digits`.

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
    per_digit: int = PAPER_PER_DIGIT,
    split: str = "train",
    download: bool = True,
) -> dict[str, np.ndarray]:
    """Build a bit-packed binarised digit subset from the MNIST files.

    Returns a dict of arrays (the npz contents):

    * ``bits``: uint8 ``(n, 98)`` = ``np.packbits(x, axis=1)``
    * ``labels``: uint8 ``(n,)``
    * ``shape``: int64 ``(2,)`` = ``(n, 784)``
    * ``indices``: int64 ``(n,)`` indices into the source split
    * ``digits``: int64 ``(k,)``; ``per_digit``, ``threshold``: int64 scalars
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
        "per_digit": np.array(per_digit, dtype=np.int64),
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
        raise MNISTFormatError(f"{name}: cannot read subset npz ({type(exc).__name__}: {exc})") from exc
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


def _bundled_path() -> Any:
    """Traversable for the bundled subset (works from an installed wheel)."""
    from importlib import resources

    try:
        return resources.files("ncl").joinpath("_data", PAPER_SUBSET_FILE)
    except (ModuleNotFoundError, TypeError, AttributeError):  # pragma: no cover
        return Path(__file__).resolve().parent / "_data" / PAPER_SUBSET_FILE


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
    res = _bundled_path()
    try:
        with res.open("rb") as fh:
            payload = fh.read()
    except FileNotFoundError as exc:
        raise MNISTUnavailableError(
            f"bundled data file {res} is missing; reinstall ncl or rebuild it with "
            "scripts/build_bundled_subset.py --mnist-dir DIR"
        ) from exc
    x, labels = load_subset_npz(io.BytesIO(payload), name=f"bundled {res}")
    if x.shape != (3000, 784):
        raise MNISTFormatError(f"bundled {res}: expected x of shape (3000, 784), got {x.shape}")
    return x, labels


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
