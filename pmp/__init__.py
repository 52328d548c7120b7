"""pmp: training residual networks and neural ODEs by Pontryagin's maximum principle."""
from . import activations, datasets, fields, maximize, msa, objectives, optimizers
from .problem import Problem, init_controls
from .store import load_run
from .trainer import TrainResult, TrainState, iterate, train
from .sweeps import (backward, cost, evaluate, forward, grad_norm, hamiltonian, losses_along,
                     riesz_gradient, value_and_grad)

__version__ = "0.1.0"

__all__ = [
    "Problem", "init_controls", "forward", "backward", "value_and_grad", "cost", "evaluate",
    "hamiltonian", "losses_along", "train", "iterate", "TrainResult", "TrainState", "optimizers", "maximize", "msa", "riesz_gradient", "grad_norm", "activations", "datasets",
    "fields", "objectives", "load_run", "__version__",
]
