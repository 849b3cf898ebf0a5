"""The canonical MNIST files for ``ncl``: a checked IDX reader, SHA-256 checksums,
the data directory and a verifying downloader.

Pure numpy (no JAX). Everything here returns numpy arrays; the binarised digit subsets
built from these files are in :mod:`ncl.data`.

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
* :func:`load_mnist` returns a verified split as ``uint8`` arrays.

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
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MNISTFormatError",
    "MNISTChecksumError",
    "MNISTUnavailableError",
    "MNIST_FILES",
    "MNIST_SHA256",
    "DEFAULT_MIRRORS",
    "ENV_VAR",
    "read_idx",
    "sha256_of_idx",
    "verify",
    "verify_mnist_dir",
    "resolve_mnist_dir",
    "default_cache_dir",
    "find_mnist_file",
    "download_mnist",
    "load_mnist",
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
            f"{source}: truncated IDX file ({len(data)} bytes, "
            "shorter than the 4-byte magic number)"
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
