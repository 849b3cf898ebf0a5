"""Benchmarks of ``ncl`` and the plain NumPy reference implementation
(:mod:`benchmarks.numpy_reference`, also used by the tests as an independent check).

A package so that ``from benchmarks import numpy_reference`` works from the repository
root (the tests' ``conftest.py`` puts the root on ``sys.path``); the ``bench_*.py``
scripts are run as ``python benchmarks/bench_*.py``."""
