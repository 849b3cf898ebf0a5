"""ncl: nonequilibrium latent-cycle generative models (Baiesi & Rosso, arXiv:2512.11415).

Modules: :mod:`ncl.model` (parameters, kernels A and Ā, sampling, init),
:mod:`ncl.chain` (persistent chain), :mod:`ncl.gradient` (two-step gradient),
:mod:`ncl.training` (protocol, ensembles), :mod:`ncl.io` (saving runs),
:mod:`ncl.mnist` (MNIST files), :mod:`ncl.data` (binarised digit data sets),
:mod:`ncl.cli` (command line).
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
