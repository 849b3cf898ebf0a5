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
from ncl.chain import ChainState, Trajectory, sample_chain
from ncl.gradient import autodiff_gradient, surrogate_objective, two_step_gradient
from ncl.model import (ModelConfig, Params, init_params, log_A, log_Abar, sample_hidden,
                       sample_visible)
from ncl.training import (History, TrainConfig, TrainState, continue_training,
                           init_ensemble_state, member,
                          minibatch_size, train, train_ensemble)

__version__ = "0.1.0"

__all__ = [
    "ChainState", "History", "ModelConfig", "Params", "TrainConfig", "TrainState",
    "Trajectory", "autodiff_gradient", "continue_training", "init_ensemble_state",
    "init_params", "log_A",
    "log_Abar", "member", "minibatch_size", "sample_chain", "sample_hidden", "sample_visible",
    "surrogate_objective", "train", "train_ensemble", "two_step_gradient",
]
