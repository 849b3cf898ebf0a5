import atexit
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# The repository root on sys.path, whatever pytest's import mode or working directory:
# the tests import ``tests.helpers`` and ``benchmarks.numpy_reference`` from it.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.helpers import REPO  # noqa: E402

# The tests never touch the user's persistent compilation cache (~/.cache/ncl/jax): the
# in-process ``ncl.cli.main`` calls run with it off, and any subprocess that switches it
# back on writes a directory private to this run. tests/test_progress.py turns the cache
# on explicitly where it is the thing under test.
os.environ["NCL_NO_COMPILE_CACHE"] = "1"
os.environ["NCL_COMPILE_CACHE_DIR"] = tempfile.mkdtemp(prefix="ncl-test-jax-cache-")
atexit.register(shutil.rmtree, os.environ["NCL_COMPILE_CACHE_DIR"], True)


@pytest.fixture(scope="session")
def paper_data():
    """The bundled paper subset: x (3000, 784) float32 0/1, labels (3000,)."""
    from ncl.data import load_paper_data
    x, y = load_paper_data()
    return x.astype(np.float32), y


@pytest.fixture(scope="session")
def mnist_dir():
    d = Path(os.environ.get("NCL_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))
    if not d.is_dir():
        pytest.skip(f"MNIST directory {d} not found (set NCL_MNIST_DIR)")
    return d


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test module, drop JAX's compiled programs. One pytest process compiles
    well over a thousand XLA programs, and each loaded CPU executable keeps its own memory
    mappings: kept all suite long they passed Linux's per-process limit
    (``vm.max_map_count``, 65 530), and the next compilation crashed the process
    (SIGSEGV or SIGABRT inside XLA, seen in CI at about three quarters of the suite)."""
    yield
    import jax
    jax.clear_caches()
    gc.collect()
