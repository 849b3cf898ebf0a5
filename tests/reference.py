"""NumPy float64 helpers shared by the exact-enumeration references of the tests
(independent of ncl's JAX code)."""
import numpy as np


def log_sigmoid(u):
    """``log σ(u)``, elementwise, without overflow."""
    return -np.logaddexp(0.0, -u)


def hidden_states(L: int, hidden: str) -> np.ndarray:
    """All hidden states as rows: ``(L, L)`` one-hot, or ``(2^L, L)`` bit vectors (state
    ``s`` has bit ``b`` = ``(s >> b) & 1``)."""
    if hidden == "onehot":
        return np.eye(L)
    return np.array([[(s >> b) & 1 for b in range(L)] for s in range(2 ** L)], np.float64)
