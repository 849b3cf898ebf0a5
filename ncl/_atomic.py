"""Atomic file writes shared by :mod:`ncl.io` (runs, checkpoints) and :mod:`ncl.data`
(the bundled subset): write a temporary file in the target's folder, flush and fsync it,
then :func:`os.replace` it into place, so a reader never sees a torn file and an
interrupted write never replaces a good one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike[str], write_fn: Callable[[BinaryIO], None]) -> Path:
    """Call ``write_fn(f)`` on a temporary binary file next to ``path``, then atomically
    replace ``path`` with it (permissions: ``0o666`` less the umask, like ``open``).
    On any error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
