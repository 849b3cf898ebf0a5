"""ncl: nonequilibrium latent-cycle generative models (Baiesi & Rosso, arXiv:2512.11415).

The numerical core, in layers (each module imports only from those before it):

* leaves: :mod:`ncl._validate`, :mod:`ncl._atomic`, :mod:`ncl._compat`, :mod:`ncl.keys`
  (seeds to PRNG keys), :mod:`ncl.mnist` (MNIST files), :mod:`ncl.data` (binarised
  digit data sets), :mod:`ncl.classifier`;
* :mod:`ncl.model` (parameters, kernels A and Ā, per-state tables, sampling, init, the
  eq. 5 likelihood given p̄; also the size letters used everywhere);
* :mod:`ncl.markov` (counts, stationary vectors, σ, τ, jackknife: arrays in, arrays out);
* :mod:`ncl.chain` (the persistent chain, the segment runner, the kernel);
* :mod:`ncl.gradient` (two-step gradient) → :mod:`ncl.exact`, :mod:`ncl.rbm` →
  :mod:`ncl.estimators` (the registry by ``family`` and ``gradient``);
* :mod:`ncl.monitor` → :mod:`ncl.trajectory` → :mod:`ncl.sharding` →
  :mod:`ncl.protocol` (``TrainConfig``) → :mod:`ncl.training` → :mod:`ncl.diagnostics`;

then :mod:`ncl.io` (saving runs), the workflows and :mod:`ncl.cli` (command line).
"""
import importlib
import importlib.util

# The public names and the submodules (``ncl.training`` after a bare ``import ncl``),
# imported on first use (PEP 562), so that ``import ncl.plots`` (a figure worker,
# :mod:`ncl.figure_pool`) does not start JAX.
_PUBLIC = {
    "ChainState": "ncl.chain", "Trajectory": "ncl.chain", "sample_chain": "ncl.chain",
    "autodiff_gradient": "ncl.gradient", "surrogate_objective": "ncl.gradient",
    "two_step_gradient": "ncl.gradient",
    "ModelConfig": "ncl.model", "Params": "ncl.model", "init_params": "ncl.model",
    "log_A": "ncl.model", "log_Abar": "ncl.model", "sample_hidden": "ncl.model",
    "sample_visible": "ncl.model",
    "History": "ncl.training", "TrainConfig": "ncl.training", "TrainState": "ncl.training",
    "continue_training": "ncl.training", "init_ensemble_state": "ncl.training",
    "member": "ncl.training", "minibatch_size": "ncl.training", "train": "ncl.training",
    "train_ensemble": "ncl.training",
}


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"ncl.{name}") is not None:
        value = importlib.import_module(f"ncl.{name}")
    else:
        raise AttributeError(f"module 'ncl' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


__version__ = "0.1.0"

__all__ = [
    "ChainState", "History", "ModelConfig", "Params", "TrainConfig", "TrainState",
    "Trajectory", "autodiff_gradient", "continue_training", "init_ensemble_state",
    "init_params", "log_A",
    "log_Abar", "member", "minibatch_size", "sample_chain", "sample_hidden", "sample_visible",
    "surrogate_objective", "train", "train_ensemble", "two_step_gradient",
]
