"""pmp: training residual networks and neural ODEs by Pontryagin's maximum principle."""
from . import activations, analysis, datasets, fields, maximize, msa, objectives, optimizers, plots
from .problem import Problem, init_controls
from .sweeps import (backward, cost, evaluate, forward, grad_norm, hamiltonian, losses_along,
                     riesz_gradient, value_and_grad)
from .trainer import TrainResult, TrainState, iterate, train
from .config import RunConfig, demo_config, load_config, parse_config  # noqa: E402
from .store import load_run
from .threads import available_cores, get_threads, set_threads, threads
from .threads import _default as _default_threads

_default_threads()

__version__ = "0.1.0"

__all__ = [
    # problem -> sweeps
    "Problem", "init_controls", "forward", "backward", "value_and_grad", "cost", "evaluate",
    "hamiltonian", "losses_along", "riesz_gradient", "grad_norm",
    # maximisation -> trainers
    "train", "iterate", "TrainResult", "TrainState",
    # runs
    "RunConfig", "load_config", "parse_config", "demo_config", "load_run",
    "set_threads", "get_threads", "threads", "available_cores",
    # modules
    "activations", "datasets", "fields", "objectives", "optimizers", "maximize", "msa",
    "analysis", "plots",
    "__version__",
]
