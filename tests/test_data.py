"""Tests for ncl.mnist and ncl.data: IDX reader, checksums, directory resolution, the
verifying downloader (with injected openers, no network), binarisation,
digit selection and the bundled paper subset."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from ncl import data, mnist
from ncl.mnist import (
    MNISTChecksumError,
    MNISTFormatError,
    MNISTUnavailableError,
)

REPO = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("NCL_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

needs_mnist = pytest.mark.skipif(
    mnist.find_mnist_file(MNIST_DIR, TRAIN_LABELS) is None,
    reason=f"MNIST files not found in {MNIST_DIR} (set NCL_MNIST_DIR to a folder with the "
    "four MNIST IDX files to run these tests)",
)


def mnist_file(name: str) -> Path:
    p = mnist.find_mnist_file(MNIST_DIR, name)
    assert p is not None, f"{name} missing in {MNIST_DIR}"
    return p


def raw_bytes(name: str) -> bytes:
    p = mnist_file(name)
    b = p.read_bytes()
    return gzip.decompress(b) if p.name.endswith(".gz") else b


def gz_bytes(name: str) -> bytes:
    p = mnist_file(name)
    b = p.read_bytes()
    return b if p.name.endswith(".gz") else gzip.compress(b)


@pytest.fixture(scope="module")
def train():
    return mnist.load_mnist("train", MNIST_DIR, download=False)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Never touch the real user cache: point the cache at a tmp dir."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def failing_opener(url, timeout):
    raise urllib.error.URLError(f"simulated: no network ({url})")


class _DroppingResponse(io.BytesIO):
    """Serves some bytes, then the connection 'drops'."""

    def read(self, n=-1):
        if self.tell() > 0:
            raise ConnectionResetError("simulated connection drop")
        return super().read(min(n, 1000) if n and n > 0 else 1000)


def serving_opener(mapping, calls=None):
    """Opener serving ``mapping[basename-of-url]`` bytes (404 otherwise)."""

    def opener(url, timeout):
        if calls is not None:
            calls.append(url)
        key = url.rsplit("/", 1)[-1]
        if key not in mapping:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(mapping[key])

    return opener


# --------------------------------------------------------------------------- #
# IDX reader and checksums on the real files
# --------------------------------------------------------------------------- #


@needs_mnist
def test_read_idx_real_files():
    labels = mnist.read_idx(mnist_file(TRAIN_LABELS))
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842,
                                            5421, 5918, 6265, 5851, 5949]
    assert mnist.read_idx(mnist_file(TEST_LABELS)).shape == (10000,)
    test_images = mnist.read_idx(mnist_file(TEST_IMAGES))
    assert test_images.shape == (10000, 28, 28) and test_images.dtype == np.uint8
    assert test_images.max() == 255 and test_images.min() == 0
    assert test_images.flags.writeable


@needs_mnist
def test_load_mnist_train_and_test(train):
    images, labels = train
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.uint8
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    ti, tl = mnist.load_mnist("test", MNIST_DIR, download=False)
    assert ti.shape == (10000, 28, 28) and tl.shape == (10000,)
    assert tl[:5].tolist() == [7, 2, 1, 0, 4]
    with pytest.raises(ValueError, match="split"):
        mnist.load_mnist("validation", MNIST_DIR, download=False)


@needs_mnist
def test_checksums_pass_and_match_sha256sums():
    for name, digest in mnist.MNIST_SHA256.items():
        assert mnist.verify(mnist_file(name)) == digest
    sums = MNIST_DIR / "SHA256SUMS"
    if sums.exists():
        listed = dict(reversed(line.split()) for line in sums.read_text().splitlines()
                      if line.strip())
        assert listed == mnist.MNIST_SHA256
    assert set(mnist.verify_mnist_dir(MNIST_DIR)) == set(mnist.MNIST_SHA256)


@needs_mnist
def test_corrupted_copy_raises_checksum_error(tmp_path):
    raw = bytearray(raw_bytes(TEST_LABELS))
    raw[100] ^= 0x01  # payload byte: still a well-formed IDX file
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(bytes(raw)))
    shutil.copy(mnist_file(TEST_IMAGES), tmp_path / mnist_file(TEST_IMAGES).name)
    labels = mnist.read_idx(tmp_path / f"{TEST_LABELS}.gz")  # format is fine
    assert labels.shape == (10000,)
    with pytest.raises(MNISTChecksumError) as ei:
        mnist.verify(tmp_path / f"{TEST_LABELS}.gz")
    msg = str(ei.value)
    assert TEST_LABELS in msg and mnist.MNIST_SHA256[TEST_LABELS] in msg
    assert hashlib.sha256(bytes(raw)).hexdigest() in msg
    with pytest.raises(MNISTChecksumError):
        mnist.load_mnist("test", tmp_path, download=False)


@needs_mnist
def test_raw_uncompressed_files_accepted(tmp_path):
    for name in (TEST_IMAGES, TEST_LABELS):
        (tmp_path / name).write_bytes(raw_bytes(name))
    images, labels = mnist.load_mnist("test", tmp_path, download=False)
    assert images.shape == (10000, 28, 28) and labels[:3].tolist() == [7, 2, 1]
    # A raw file that is actually gzip-compressed is sniffed and decompressed.
    (tmp_path / "sniff").write_bytes(gz_bytes(TEST_LABELS))
    assert mnist.read_idx(tmp_path / "sniff").shape == (10000,)


# --------------------------------------------------------------------------- #
# Malformed files
# --------------------------------------------------------------------------- #


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_read_idx_synthetic_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "a.idx"), arr)
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "a.idx.gz"), arr)
    # big-endian int32 type code 0x0C
    ints = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "i.idx").write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big")
                                     + ints.tobytes())
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "i.idx"), [1, -2, 70000])


def test_truncated_file_raises_format_error(tmp_path):
    arr = np.zeros((10, 28, 28), dtype=np.uint8)
    good = _idx_bytes(arr)
    p = tmp_path / "trunc-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(good[:-5]))  # payload short by 5 bytes
    with pytest.raises(MNISTFormatError, match="trunc-idx3-ubyte.gz.*truncated"):
        mnist.read_idx(p)
    p2 = tmp_path / "extra-idx3-ubyte"
    p2.write_bytes(good + b"\0")
    with pytest.raises(MNISTFormatError, match="trailing"):
        mnist.read_idx(p2)
    p3 = tmp_path / "header-idx3-ubyte"
    p3.write_bytes(good[:9])  # header cut
    with pytest.raises(MNISTFormatError, match="header"):
        mnist.read_idx(p3)
    # truncated gzip stream
    p4 = tmp_path / "cut.gz"
    p4.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(MNISTFormatError, match="cut.gz"):
        mnist.read_idx(p4)
    assert issubclass(MNISTFormatError, ValueError)


@needs_mnist
def test_truncated_real_file_raises_format_error(tmp_path):
    raw = raw_bytes(TEST_LABELS)
    p = tmp_path / f"{TEST_LABELS}.gz"
    p.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(MNISTFormatError, match=TEST_LABELS):
        mnist.read_idx(p)


def test_bad_magic_raises_format_error(tmp_path):
    good = _idx_bytes(np.zeros((4,), dtype=np.uint8))
    for i, bad in enumerate([b"\x01" + good[1:], good[:2] + b"\x07" + good[3:],
                             good[:3] + b"\x00" + good[4:]]):
        p = tmp_path / f"bad{i}-idx1-ubyte"
        p.write_bytes(bad)
        with pytest.raises(MNISTFormatError, match=rf"bad{i}-idx1-ubyte.*magic"):
            mnist.read_idx(p)
    (tmp_path / "short").write_bytes(b"\0\0")
    with pytest.raises(MNISTFormatError, match="truncated"):
        mnist.read_idx(tmp_path / "short")


def test_bad_gzip_raises_format_error(tmp_path):
    p = tmp_path / "junk-idx1-ubyte.gz"
    p.write_bytes(b"this is not gzip data at all")
    with pytest.raises(MNISTFormatError, match="junk-idx1-ubyte.gz.*gzip"):
        mnist.read_idx(p)


# --------------------------------------------------------------------------- #
# Directory resolution
# --------------------------------------------------------------------------- #


def test_resolve_mnist_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist.resolve_mnist_dir() == tmp_path / "xdg" / "ncl" / "mnist"
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path / "env"))
    assert mnist.resolve_mnist_dir() == tmp_path / "env"
    assert mnist.resolve_mnist_dir(tmp_path / "arg") == tmp_path / "arg"
    assert mnist.resolve_mnist_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(mnist.ENV_VAR, "")  # empty: treated as unset
    assert mnist.resolve_mnist_dir() == tmp_path / "xdg" / "ncl" / "mnist"
    monkeypatch.delenv(mnist.ENV_VAR)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist.resolve_mnist_dir() == tmp_path / "home" / ".cache" / "ncl" / "mnist"


@needs_mnist
def test_env_var_used_by_load_mnist(monkeypatch, tmp_path):
    for name in (TEST_IMAGES, TEST_LABELS):
        shutil.copy(mnist_file(name), tmp_path / mnist_file(name).name)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    images, labels = mnist.load_mnist("test", download=False)
    assert images.shape == (10000, 28, 28) and labels[0] == 7


# --------------------------------------------------------------------------- #
# Unavailable data and downloads (no network: injected openers)
# --------------------------------------------------------------------------- #


def test_missing_dir_download_disabled(tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(MNISTUnavailableError) as ei:
        mnist.load_mnist("train", missing, download=False)
    msg = str(ei.value)
    assert TRAIN_IMAGES in msg and TRAIN_LABELS in msg and str(missing) in msg
    assert mnist.ENV_VAR in msg and "internet" in msg and "download=False" in msg
    assert not missing.exists()
    with pytest.raises(MNISTUnavailableError):
        data.load_digits(directory=missing, download=False)


@pytest.mark.parametrize("opener", [failing_opener,
                                    lambda url, timeout: _DroppingResponse(b"\x1f\x8b" * 5000)])
def test_no_network_raises_and_leaves_no_partial_file(tmp_path, opener):
    d = tmp_path / "cache"
    with pytest.raises(MNISTUnavailableError) as ei:
        mnist.load_mnist("test", d, download=True,
                         mirrors=("https://m1.invalid/a/", "https://m2.invalid/b"), opener=opener)
    msg = str(ei.value)
    assert TEST_IMAGES in msg and TEST_LABELS in msg and str(d) in msg
    assert "https://m1.invalid/a/t10k-images-idx3-ubyte.gz" in msg
    assert "https://m2.invalid/b/t10k-images-idx3-ubyte.gz" in msg
    assert "NCL_MNIST_DIR" in msg and "internet" in msg
    assert d.is_dir() and list(d.iterdir()) == []  # no partial / temp files


def test_download_into_unwritable_location_is_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MNISTUnavailableError, match="cannot create"):
        mnist.download_mnist(blocker / "sub", opener=failing_opener)


@needs_mnist
def test_download_with_injected_opener(tmp_path):
    calls = []
    served = {f"{n}.gz": gz_bytes(n) for n in (TEST_IMAGES, TEST_LABELS)}
    opener = serving_opener(served, calls)
    d = tmp_path / "dl"
    mirrors = ("https://dead.invalid/", "https://good.invalid/mnist/")
    images, labels = mnist.load_mnist("test", d, mirrors=mirrors, opener=lambda url, timeout: (
        failing_opener(url, timeout) if "dead" in url else opener(url, timeout)))
    assert images.shape == (10000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert sorted(p.name for p in d.iterdir()) == [f"{TEST_IMAGES}.gz", f"{TEST_LABELS}.gz"]
    assert mnist.verify(d / f"{TEST_LABELS}.gz") == mnist.MNIST_SHA256[TEST_LABELS]
    assert calls == [f"https://good.invalid/mnist/{TEST_IMAGES}.gz", f"https://good.invalid/mnist/{TEST_LABELS}.gz"]
    # Already present and valid: nothing is fetched again.
    calls.clear()
    mnist.download_mnist(d, mirrors=mirrors[1:], splits=("test",), opener=opener)
    assert calls == []
    # Only the missing file of a pair is fetched.
    (d / f"{TEST_LABELS}.gz").unlink()
    mnist.download_mnist(d, mirrors=mirrors[1:], splits=("test",), opener=opener)
    assert calls == [f"https://good.invalid/mnist/{TEST_LABELS}.gz"]
    # An opener may also return bytes.
    mnist.download_mnist(d, mirrors=mirrors[1:], splits=("test",), force=True,
                        opener=lambda url, timeout: served[url.rsplit("/", 1)[-1]])
    assert mnist.verify(d / f"{TEST_IMAGES}.gz")


@needs_mnist
def test_corrupted_download_does_not_replace_good_file(tmp_path):
    d = tmp_path / "dl"
    d.mkdir()
    good = gz_bytes(TEST_LABELS)
    target = d / f"{TEST_LABELS}.gz"
    target.write_bytes(good)
    shutil.copy(mnist_file(TEST_IMAGES), d / mnist_file(TEST_IMAGES).name)
    raw = bytearray(raw_bytes(TEST_LABELS))
    raw[-1] ^= 0xFF
    bad_served = {f"{n}.gz": b for n, b in [(TEST_LABELS, gzip.compress(bytes(raw))),
                                            (TEST_IMAGES, b"garbage")]}
    with pytest.raises(MNISTUnavailableError) as ei:
        mnist.download_mnist(d, mirrors=("https://bad.invalid/",), splits=("test",), force=True,
                            opener=serving_opener(bad_served))
    msg = str(ei.value)
    assert "MNISTChecksumError" in msg and "MNISTFormatError" in msg
    assert "left unchanged" in msg and str(target) in msg
    assert target.read_bytes() == good
    assert sorted(p.name for p in d.iterdir()) == sorted([target.name,
                                                          mnist_file(TEST_IMAGES).name])
    assert mnist.load_mnist("test", d, download=False)[1][0] == 7


@needs_mnist
def test_bad_existing_file_is_replaced_by_verified_download(tmp_path):
    d = tmp_path / "dl"
    d.mkdir()
    (d / f"{TEST_LABELS}.gz").write_bytes(b"not gzip")
    shutil.copy(mnist_file(TEST_IMAGES), d / mnist_file(TEST_IMAGES).name)
    mnist.download_mnist(d, mirrors=("https://good.invalid/",), splits=("test",),
                        opener=serving_opener({f"{TEST_LABELS}.gz": gz_bytes(TEST_LABELS)}))
    assert mnist.verify(d / f"{TEST_LABELS}.gz") == mnist.MNIST_SHA256[TEST_LABELS]


# --------------------------------------------------------------------------- #
# Binarisation and digit selection
# --------------------------------------------------------------------------- #


def test_binarize_threshold():
    imgs = np.array([[[0, 126], [127, 128]], [[200, 255], [1, 127]]], dtype=np.uint8)
    out = data.binarize(imgs)
    assert out.dtype == np.uint8 and out.shape == (2, 4)
    assert out.tolist() == [[0, 0, 0, 1], [1, 1, 0, 0]]
    assert data.binarize(np.full((3, 784), 128, np.uint8)).shape == (3, 784)


def test_select_digits_synthetic_order_and_errors():
    labels = np.array([5, 2, 0, 1, 0, 2, 1, 0, 2, 1], dtype=np.uint8)
    images = np.repeat(np.arange(10, dtype=np.uint8)[:, None] * 20, 784, axis=1).reshape(10, 28, 28)
    x, y, idx = data.select_digits(images, labels, (0, 1, 2), 2, return_indices=True)
    assert idx.tolist() == [1, 2, 3, 4, 5, 6]  # file order, not grouped by digit
    assert y.tolist() == [2, 0, 1, 0, 2, 1] and y.dtype == np.uint8
    assert x.shape == (6, 784) and x.dtype == np.uint8
    assert x[:, 0].tolist() == [int(i * 20 > 127) for i in idx]
    with pytest.raises(ValueError, match="digit 0 has only 3 images"):
        data.select_digits(images, labels, (0,), 4)
    for bad in [(), (0, 0), (10,), (-1,), ("a",), (1.5,)]:
        with pytest.raises(ValueError, match="digits"):
            data.select_digits(images, labels, bad, 1)
    for bad in [0, -3, 1.0]:
        with pytest.raises(ValueError, match="per_digit"):
            data.select_digits(images, labels, (0,), bad)
    with pytest.raises(ValueError, match="leading axis"):
        data.select_digits(images[:5], labels, (0,), 1)


@needs_mnist
def test_select_digits_real_counts_and_order(train):
    images, labels = train
    x, y, idx = data.select_digits(images, labels, (0, 1, 2), 1000, return_indices=True)
    assert x.shape == (3000, 784) and set(np.unique(x)) <= {0, 1}
    assert np.bincount(y).tolist() == [1000, 1000, 1000]
    assert np.all(np.diff(idx) > 0)  # dataset order
    for d in (0, 1, 2):
        np.testing.assert_array_equal(idx[y == d], np.flatnonzero(labels == d)[:1000])
    assert y[:5].tolist() == [0, 1, 2, 1, 1]  # labels 5,0,4,1,9,2,1,3,1,4,3,5,3,6,1 filtered
    np.testing.assert_array_equal(x, (images[idx].reshape(-1, 784) > 127).astype(np.uint8))
    with pytest.raises(ValueError, match="digit 5 has only 5421"):
        data.select_digits(images, labels, (5,), 6000)


@needs_mnist
def test_load_digits(train):
    x, y = data.load_digits((3,), 7, directory=MNIST_DIR, download=False)
    assert x.shape == (7, 784) and y.tolist() == [3] * 7
    np.testing.assert_array_equal(x, data.binarize(train[0][np.flatnonzero(train[1] == 3)[:7]]))


# --------------------------------------------------------------------------- #
# Bundled paper subset
# --------------------------------------------------------------------------- #


def test_bundled_paper_data_shape_and_counts():
    x, y = data.load_paper_data()
    assert x.shape == (3000, 784) and x.dtype == np.uint8
    assert y.shape == (3000,) and y.dtype == np.uint8
    assert set(np.unique(x).tolist()) == {0, 1}
    assert np.bincount(y).tolist() == [1000, 1000, 1000]
    assert y[:5].tolist() == [0, 1, 2, 1, 1]
    bundled = REPO / "ncl" / "_data" / data.PAPER_SUBSET_FILE
    assert bundled.stat().st_size < 500_000
    assert (REPO / "ncl" / "_data" / "ATTRIBUTION.md").is_file()


def test_bundled_heldout_data_shape_and_counts():
    x, y = data.load_heldout_data()
    assert x.shape == (data.HELDOUT_SIZE, 784) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [980, 1135, 1032]
    assert set(np.unique(x).tolist()) == {0, 1}
    bundled = REPO / "ncl" / "_data" / data.HELDOUT_SUBSET_FILE
    assert bundled.stat().st_size < 500_000
    xt, _ = data.load_paper_data()   # held out: other images (after binarisation, 2 of
    train = {row.tobytes() for row in np.packbits(xt, axis=1)}   # the 3147 equal one)
    assert sum(row.tobytes() in train for row in np.packbits(x, axis=1)) <= 2


@needs_mnist
def test_bundled_heldout_subset_equals_rebuild():
    built = data.build_heldout_subset(MNIST_DIR, download=False)
    with np.load(REPO / "ncl" / "_data" / data.HELDOUT_SUBSET_FILE, allow_pickle=False) as npz:
        for key, value in built.items():
            np.testing.assert_array_equal(npz[key], value, err_msg=key)
        assert set(npz.files) == set(built)
        assert str(npz["split"]) == "test" and int(npz["per_digit"]) == -1
    x, y = data.load_heldout_data()
    xd, yd = data.load_digits(per_digit=None, split="test", directory=MNIST_DIR,
                              download=False)
    np.testing.assert_array_equal(x, xd)
    np.testing.assert_array_equal(y, yd)


@needs_mnist
def test_bundled_subset_equals_rebuild():
    built = data.build_paper_subset(MNIST_DIR, download=False)
    with np.load(REPO / "ncl" / "_data" / data.PAPER_SUBSET_FILE, allow_pickle=False) as npz:
        for key, value in built.items():
            np.testing.assert_array_equal(npz[key], value, err_msg=key)
        assert set(npz.files) == set(built)
        assert npz["source_sha256"].tolist() == [mnist.MNIST_SHA256[TRAIN_IMAGES],
                                                 mnist.MNIST_SHA256[TRAIN_LABELS]]
    x, y = data.load_paper_data()
    np.testing.assert_array_equal(x, np.unpackbits(built["bits"], axis=1, count=784))
    np.testing.assert_array_equal(y, built["labels"])
    xd, yd = data.load_digits(directory=MNIST_DIR, download=False)
    np.testing.assert_array_equal(x, xd)
    np.testing.assert_array_equal(y, yd)


def test_corrupted_bundle_is_detected(tmp_path):
    src = REPO / "ncl" / "_data" / data.PAPER_SUBSET_FILE
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    ok = data.save_subset(arrays, tmp_path / "ok.npz")
    assert data.load_subset_npz(ok)[0].shape == (3000, 784)
    arrays["bits"] = arrays["bits"].copy()
    arrays["bits"][17, 3] ^= 0x10
    bad = data.save_subset(arrays, tmp_path / "bad.npz")
    with pytest.raises(MNISTChecksumError, match="bad.npz.*x SHA-256 mismatch"):
        data.load_subset_npz(bad)
    (tmp_path / "junk.npz").write_bytes(src.read_bytes()[:1000])
    with pytest.raises(MNISTFormatError, match="junk.npz"):
        data.load_subset_npz(tmp_path / "junk.npz")
    del arrays["labels_sha256"]
    with pytest.raises(MNISTFormatError, match="lacks keys"):
        data.load_subset_npz(data.save_subset(arrays, tmp_path / "nokey.npz"))


def test_build_script_runs(tmp_path):
    import subprocess
    import sys

    if mnist.find_mnist_file(MNIST_DIR, TRAIN_LABELS) is None:
        pytest.skip(f"MNIST files not found in {MNIST_DIR}")
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_bundled_subset.py"),
         "--mnist-dir", str(MNIST_DIR), "--output-dir", str(tmp_path), "--no-download"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    for name, load in ((data.PAPER_SUBSET_FILE, data.load_paper_data),
                       (data.HELDOUT_SUBSET_FILE, data.load_heldout_data)):
        assert (tmp_path / name).read_bytes() == (REPO / "ncl" / "_data" / name).read_bytes()
        x, y = data.load_subset_npz(tmp_path / name)
        x0, y0 = load()
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)
