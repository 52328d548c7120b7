"""The maximiser of fields not linear in the control, ``f(x, u) = V sigma(W x + c)``
(:class:`pmp.fields.TwoLayerForm`): L-BFGS (scipy) on ``sum_k Psi~_k`` (separable over k),
warm-started at ``u_old``, to a tolerance and an iteration cap; l2 and h1 only."""
import numpy as np

from .._controls import Flattener, step_norms_squared
from .._kernels import lazy
from ._common import free_entries, h1_terms

_kg = lazy("maximize_general")


def check(problem):
    if not problem.reg.smooth:
        raise ValueError(f"reg={problem.reg.name!r} with field={problem.field.name!r}: the MSA "
                         "maximiser of general fields handles 'l2' and 'h1'; use a field "
                         "linear in the control ('outer', 'features', 'diagonal') or "
                         "method='proximal'")


def reads_trajectories(maximizer, problem):
    return True


def inner_solver(maximizer, problem):
    """The iterative solver of every maximisation: SciPy's L-BFGS."""
    return "lbfgs"


def kernel_calls(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """No kernel to compile ahead: the objective's kernel is called from SciPy's L-BFGS
    and compiles at its first call."""
    return []


def maximize(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """New controls and the per-step info (gain, residual, iterations, switching); see
    :meth:`pmp.maximize.Maximizer.maximize`."""
    from scipy.optimize import minimize  # scipy.optimize takes most of a second to import

    names = problem.control_names
    old = {n: controls[n] for n in names}
    layout = Flattener(old, names, problem.dtype)
    per_step = _PerStep(problem, form, old, xs, ps, rho)

    def objective(flat):
        values, grads = per_step(layout.unflatten(flat))
        return -float(np.sum(values)), -layout.flatten(grads)

    start_values, start_grads = per_step(old)
    scale = max(1.0, max(np.abs(g).max() for g in start_grads.values()))
    result = minimize(objective, layout.flatten(old), jac=True, method="L-BFGS-B",
                      options=dict(maxiter=maximizer.max_inner, gtol=maximizer.tol * scale,
                                   ftol=0.0, maxcor=20))
    new = layout.unflatten(result.x)
    for n in names:
        new[n] = np.where(per_step.free[n], new[n], old[n])
    values, grads = per_step(new)
    gain = values - start_values
    K = problem.n_steps
    if np.sum(gain) < 0.0:  # never return a worse point than the start
        new, values, grads, gain = old, start_values, start_grads, np.zeros(K)
    residual = np.sqrt(step_norms_squared(grads, names))
    return new, (gain, residual, np.full(K, float(result.nit)), np.zeros(K))


class _PerStep:
    """``u -> (Psi~_k(u) for every k, its gradient dict)`` at fixed trajectories."""

    def __init__(self, problem, form, old, xs, ps, rho):
        self.problem, self.form, self.old = problem, form, old
        self.xs, self.ps, self.rho = xs, ps, rho
        self.names = problem.control_names
        self.free = free_entries(problem, self.names)
        self.h1 = {n: h1_terms(problem, old, n) for n in self.names}
        self.empty = np.zeros((problem.n_steps, 0, 0), problem.dtype)
        self.columns = None if form.columns is None else \
            np.asarray(form.columns, problem.dtype)
        self.weights = getattr(problem.reg, "weights", None)

    def __call__(self, u):
        problem, form, old = self.problem, self.form, self.old
        K, lam = problem.n_steps, problem.reg.lam
        values = np.empty(K)
        grads = {n: np.zeros(old[n].shape, problem.dtype) for n in self.names}
        V, Vo, gV = ((u[form.outer], old[form.outer], grads[form.outer]) if form.outer
                     else (self.empty, self.empty, self.empty))
        w, c = form.weight, form.bias
        W, Wo = (u[w], old[w]) if self.columns is None else \
            (u[w] * self.columns, old[w] * self.columns)  # the field's W diag(columns)
        _kg.augmented_general(self.xs, self.ps, (V, W, u[c]), (Vo, Wo, old[c]),
                              form.outer is not None, form.code, form.param, self.rho, values,
                              (gV, grads[w], grads[c]))
        if self.columns is not None:
            grads[w] *= self.columns
        if self.weights is not None:  # a regulariser weighted entry by entry (a mesh's)
            return self._weighted(u, values, grads)
        values -= lam * step_norms_squared(u, self.names)
        for n in self.names:
            diag, rhs = self.h1[n]
            shape = (-1,) + (1,) * (u[n].ndim - 1)
            grads[n] = grads[n] - 2.0 * lam * u[n] - diag.reshape(shape) * u[n] + rhs
            values -= (0.5 * diag * step_norms_squared({n: u[n]}, [n])
                       - np.sum((rhs * u[n]).reshape(K, -1), axis=1))
            grads[n] *= self.free[n]
        return values, grads

    def _weighted(self, u, values, grads):
        """The regulariser's and the H^1 splitting's terms with the weights ``omega`` of
        every entry: ``lam sum omega u^2`` and the Jacobi terms of section 5.1 times omega."""
        K, lam = self.problem.n_steps, self.problem.reg.lam
        for n in self.names:
            diag, rhs = self.h1[n]
            omega, diag = self.weights[n], diag.reshape((-1,) + (1,) * (u[n].ndim - 1))
            wu, wrhs = omega * u[n], omega * rhs
            values -= np.sum(((lam + 0.5 * diag) * wu * u[n] - wrhs * u[n]).reshape(K, -1),
                             axis=1)
            grads[n] = (grads[n] - (2.0 * lam + diag) * wu + wrhs) * self.free[n]
        return values, grads
