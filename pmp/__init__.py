"""pmp: training residual networks and neural ODEs by Pontryagin's maximum principle.

The package follows the data: a :class:`Problem` (data, grid, vector field from
:mod:`pmp.fields`, loss and regulariser from :mod:`pmp.objectives`) is swept forward and
backward (:mod:`pmp.sweeps`), its Hamiltonian maximised step by step (:mod:`pmp.maximize`)
by the training methods (:mod:`pmp.methods`) that the trainer drives (:func:`iterate`,
:func:`train`); batch runs store it all (:mod:`pmp.batch`) for :mod:`pmp.analysis` and
:mod:`pmp.plots`. Importing pmp changes no setting: thread settings are applied when pmp
first runs a sweep.
"""
from . import (activations, analysis, datasets, fields, maximize, meshes, methods, objectives,
               plots, stages)
from ._version import __version__
from .batch.config import RunConfig, demo_config, load_config, parse_config
from .batch.store import load_run
from .problem import Problem
# the functions of pmp.stages take staged problems too (and are pmp.sweeps' on the others)
from .stages import (Stage, backward, cost, evaluate, forward, grad_norm, hamiltonian,
                     init_controls, losses_along, riesz_gradient, value_and_grad)
from .threads import available_cores, get_threads, set_threads, threads
from .trainer import TrainResult, TrainState, iterate, train

__all__ = [
    # problem -> sweeps
    "Problem", "Stage", "init_controls", "forward", "backward", "value_and_grad", "cost",
    "evaluate", "hamiltonian", "losses_along", "riesz_gradient", "grad_norm",
    # maximisation -> methods -> trainer
    "train", "iterate", "TrainResult", "TrainState",
    # runs
    "RunConfig", "load_config", "parse_config", "demo_config", "load_run",
    "set_threads", "get_threads", "threads", "available_cores",
    # modules
    "activations", "datasets", "fields", "meshes", "objectives", "maximize", "methods", "stages",
    "analysis", "plots",
    "__version__",
]
