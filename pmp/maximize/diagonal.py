"""The maximiser of ``f(x, w) = diag(w) sigma(x)`` (:class:`pmp.fields.DiagonalForm`):
the linear case coordinate by coordinate."""
import numpy as np

from .._kernels import lazy
from .._kernels.codes import L1_GROUP
from ._common import REG_CODES, free_entries, h1_terms

_kd = lazy("maximize_diagonal")


def check(problem):
    """Every regulariser of pmp has a maximiser here."""


def reads_trajectories(maximizer, problem):
    return True


def inner_solver(maximizer, problem):
    """The iterative solver of a maximisation at ``rho > 0``: FISTA for the group l1, else
    None (closed forms, coordinate by coordinate)."""
    return "fista" if REG_CODES[type(problem.reg)] == L1_GROUP else None


def maximize(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """New ``w`` and the per-step info (4, K); see :meth:`pmp.maximize.Maximizer.maximize`."""
    [(kernel, args)] = kernel_calls(maximizer, problem, form, controls, xs, ps, rho,
                                    statistics)
    kernel(*args)
    w_new, info = args[-2:]
    return {form.name: w_new}, info.T


def kernel_calls(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """The kernel :func:`maximize` calls and its arguments (the last two receive the new
    ``w`` and the info (K, 4))."""
    name = form.name
    free = free_entries(problem, [name])[name]
    h1_diag, h1_rhs = h1_terms(problem, controls, name)
    reg = problem.reg
    w_new = np.empty_like(controls[name])
    info = np.zeros((problem.n_steps, 4))
    return [(_kd.diagonal_maximize,
             (xs, ps, form.code, form.param, controls[name], np.ascontiguousarray(free),
              (REG_CODES[type(reg)], reg.lam, getattr(reg, "bound", np.inf)), rho,
              (h1_diag, h1_rhs), (maximizer.tol, maximizer.max_inner), w_new, info))]
