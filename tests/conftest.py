import os
import sys
from pathlib import Path

import numpy as np
import pytest

# The repository root on sys.path, whatever pytest's import mode or working directory:
# the tests import ``tests.helpers`` and ``benchmarks.numpy_reference`` from it.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.helpers import REPO  # noqa: E402


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
