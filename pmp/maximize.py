"""Per-step maximisation of the (augmented) Hamiltonian: the heart of the MSA.

Given the states ``X_k`` and costates ``p_{k+1}`` of one forward and one backward sweep at
the controls ``u_old``, every step's problem is independent (THEORY.md sections 4, 8):

``u_k <- argmax_u Psi~_k(u)``, ``Psi~_k(u) = <p_{k+1}, F(X_k, u)> - R(u)``
``     - (rho/2)(1/N) sum_i |f(x_i, u) - f(x_i, u_old)|^2``
``     - (rho/2)(1/N) sum_i |(D_x f(x_i, u))^T p_hat_i - (D_x f(x_i, u_old))^T p_hat_i|^2``

(per unit time; ``rho = 0`` is the plain MSA). With ``reg="h1"`` the coupling of neighbouring
steps is handled by **proximal (Jacobi) splitting** (THEORY.md 5.1): step k keeps its
neighbours at their old values and maximises ``Psi~_k(u) - (lam1/h^2) sum_nb |u - u_nb|^2``.
A fixed point satisfies the discrete Euler-Lagrange equation ``dJ/du_k = 0`` exactly; the
price is Jacobi's slow convergence when ``lam1 / h^2`` dominates (O(K^2) iterations).

* "outer", "features" (linear in the control): exact. l2: closed form ``G_k / (2 lam)`` for
  ``rho = 0``, else the quadratic solved by Cholesky (``d q <= n_direct``) or preconditioned
  conjugate gradients. l1 with a bound: the switching (bang-bang) law for ``rho = 0``, else
  FISTA with the prox (soft-threshold, then clip).
* "diagonal": the same, coordinate by coordinate.
* "inner", "perceptron": no closed form; L-BFGS (scipy) on ``sum_k Psi~_k``, warm-started
  at ``u_old``, to a tolerance and an iteration cap (l2 and h1 only).

:meth:`Maximizer.maximize` returns the new controls and a :class:`MaximizeInfo` with the
Hamiltonian gain and stationarity residual per step.
"""
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ._kernels import maximize as _mx
from ._validation import integer, real
from .objectives import H1, L1, L2, L1Elementwise, step_norms_squared
from .threads import blocks, map_blocks

_REG_CODES = {L2: _mx.L2, H1: _mx.L2, L1: _mx.L1_GROUP, L1Elementwise: _mx.L1_ELEMENTWISE}


@dataclass
class MaximizeInfo:
    """What the per-step maximisation reached.

    Attributes
    ----------
    gain : ndarray, shape (K,)
        ``Psi~_k(u_new) - Psi~_k(u_old)`` (per unit time, >= 0 up to rounding).
    residual : ndarray, shape (K,)
        Stationarity residual at ``u_new``: the norm of the gradient of Psi~_k (l2), or of the
        prox-gradient mapping (l1). Zero up to rounding for the closed forms.
    iterations : ndarray, shape (K,)
        Inner iterations (CG, FISTA, L-BFGS; 0 for closed forms).
    switching : ndarray, shape (K,)
        ``|G_k|`` (group norm; max |G_kj| for "l1elem"): for l1 with a bound the control is
        zero where it is below ``lam`` and on the bound where above.
    """

    gain: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    switching: np.ndarray


def h1_terms(problem, controls, name):
    """Jacobi splitting of the H^1 term for control ``name``.

    Returns ``diag`` (K,) ``= 2 c_k lam1 / h^2`` (``c_k`` neighbours) and ``rhs`` (like the
    control) ``= (2 lam1 / h^2) (u_{k-1} + u_{k+1})`` over existing neighbours.
    """
    u = controls[name]
    K = problem.n_steps
    lam1 = getattr(problem.reg, "lam1", 0.0)
    coef = 2.0 * lam1 / problem.h**2
    rhs = np.zeros_like(u, dtype=np.float64)
    if lam1 == 0.0 or K == 1:
        return np.zeros(K), rhs
    rhs[1:] += u[:-1]
    rhs[:-1] += u[1:]
    neighbours = np.full(K, 2.0)
    neighbours[[0, -1]] = 1.0
    return coef * neighbours, coef * rhs


class Maximizer:
    """Per-step Hamiltonian maximisation for one problem.

    Parameters
    ----------
    problem : Problem
    n_direct : int
        Largest number of unknowns per step solved directly (Cholesky); above it, conjugate
        gradients ("outer", "features").
    tol : float
        Relative tolerance of the inner iterative solvers.
    max_inner : int
        Iteration cap of the inner solvers.
    """

    def __init__(self, problem, n_direct=256, tol=1e-10, max_inner=500):
        self.problem = problem
        self.n_direct = integer(n_direct, "n_direct", low=0)
        self.tol = real(tol, "tol", low=0.0, low_open=True)
        self.max_inner = integer(max_inner, "max_inner", low=1)
        self.field = problem.field.name
        reg = problem.reg
        if type(reg) not in _REG_CODES:
            raise TypeError(f"no maximiser for regularizer {type(reg).__name__}")
        if self.field in ("inner", "perceptron") and not reg.smooth:
            raise ValueError(f"reg={reg.name!r} with field={self.field!r}: the MSA maximiser of "
                             "general fields handles 'l2' and 'h1'; use a field linear in the "
                             "control ('outer', 'features', 'diagonal') or method='proximal'")

    def _check(self, rho):
        reg = self.problem.reg
        if rho == 0.0 and reg.smooth and reg.lam == 0.0 and not getattr(reg, "lam1", 0.0):
            raise ValueError("plain MSA (rho = 0) with reg='l2' needs lam > 0: the Hamiltonian "
                             "is linear in the control and has no maximiser")
        if not reg.smooth and not np.isfinite(reg.bound) and rho == 0.0:
            raise ValueError(f"reg={reg.name!r} needs a finite bound for the MSA: without it "
                             "the Hamiltonian is unbounded above where |G_k| > lam")

    def reads_trajectories(self, problem):
        """Whether :meth:`maximize` reads the states and costates of every step, or (False)
        only the sums the costate sweep computes for it (``statistics``, see
        :meth:`pmp.fields.Field.maximize_statistics`) and the arrays' shapes."""
        d = problem.dim
        return not (self.field == "outer" and problem.reg.smooth
                    and problem.field.maximize_statistics(0) is not None
                    and d * (d + 1) <= self.n_direct)

    def maximize(self, problem, controls, xs, ps, rho=0.0, statistics=None):
        """New controls maximising Psi~_k at every step.

        Parameters
        ----------
        problem : Problem
            The problem (or a mini-batch of it) the sweeps were computed on.
        controls : dict
            ``u_old``.
        xs, ps : ndarray, shape (n_steps + 1, n_samples, dim)
            States and costates at ``u_old``.
        rho : float
            E-MSA penalty (0: plain MSA).
        statistics : tuple of ndarray, optional
            What the costate sweep computed for the maximisation
            (:meth:`pmp.fields.Field.maximize_statistics`) on these ``xs``, ``ps``: used
            instead of a pass over them where the solver allows (l2, direct solve).

        Returns
        -------
        new : dict
        info : MaximizeInfo
        """
        rho = real(rho, "rho", low=0.0)
        self._check(rho)
        if problem.reg.name == "l1" and any(np.any(controls[n][m] != 0.0)
                                            for n, m in problem.frozen.items()):
            # the group norm would couple the free entries to fixed non-zero ones
            raise ValueError("reg='l1' (group norm) with frozen entries needs the frozen "
                             "entries to be 0 for the MSA maximiser")
        if self.field in ("outer", "features"):
            return self._linear(problem, controls, xs, ps, rho, statistics)
        if self.field == "diagonal":
            return self._diagonal(problem, controls, xs, ps, rho)
        return self._general(problem, controls, xs, ps, rho)

    # ------------------------------------------------------------------ linear fields
    def _pack(self, arrays):
        """(K, d, q) control matrix ``U`` (outer: ``[W b]``)."""
        if self.field == "outer":
            return np.concatenate([arrays["W"], arrays["b"][..., None]], axis=2)
        return arrays["A"]

    def _unpack(self, U, like):
        if self.field == "outer":
            d = U.shape[1]
            return {"W": np.ascontiguousarray(U[:, :, :d], dtype=like["W"].dtype),
                    "b": np.ascontiguousarray(U[:, :, d], dtype=like["b"].dtype)}
        return {"A": np.ascontiguousarray(U, dtype=like["A"].dtype)}

    def _free(self, problem, names):
        return {n: ~problem.frozen[n] if n in problem.frozen
                else np.ones(problem.control_shapes[n], bool) for n in names}

    def _linear(self, problem, controls, xs, ps, rho, statistics):
        field = problem.field
        names = field.control_names
        U_old = np.ascontiguousarray(self._pack(controls), dtype=problem.dtype)
        free = np.ascontiguousarray(self._pack(self._free(problem, names)))
        h1 = [h1_terms(problem, controls, n) for n in names]
        h1_diag = h1[0][0]
        h1_rhs = np.ascontiguousarray(self._pack({n: t[1] for n, t in zip(names, h1)}))
        if self.field == "outer":
            kind, omega, beta = _mx.OUTER, np.zeros((1, 1)), np.zeros(1)
            code, param = field.activation.code, field.activation.param
            Kt, use_Kt = np.zeros((1, 1)), False
        else:
            kind = _mx.FEATURES
            omega, beta = field.omega, field.beta
            code, param = field.feature_code, field.amplitude
            Kt, use_Kt = omega @ omega.T, True
        dt = problem.dtype
        U_new = np.empty_like(U_old)
        info = np.zeros((problem.n_steps, 4))
        reg = problem.reg
        common = (kind, xs, ps, omega.astype(dt), beta.astype(dt), code, param, Kt.astype(dt),
                  use_Kt, U_old, free)
        h1 = (h1_diag, h1_rhs.astype(dt))
        d, q = U_old.shape[1:]
        if not reg.smooth:
            kernel = _mx.linear_maximize_l1
            args = common + (_REG_CODES[type(reg)], reg.lam, reg.bound, rho) + h1 + (
                self.tol, self.max_inner, U_new, info)
        elif d * q <= self.n_direct or (rho == 0.0 and not np.any(h1_diag)):
            if statistics is not None:  # "outer", small d: the costate sweep's sums
                kernel = _mx.linear_maximize_sums
                args = (U_old, free, reg.lam, rho) + h1 + (U_new, info) + tuple(statistics) \
                    + (xs.shape[1],)
            else:
                kernel = _mx.linear_maximize_direct
                args = common + (reg.lam, rho) + h1 + (U_new, info)
        else:
            kernel = _mx.linear_maximize_cg
            args = common + (reg.lam, rho) + h1 + (self.tol, self.max_inner, U_new, info)
        # the steps are independent: one block of steps per thread
        map_blocks(lambda k0, k1, _: kernel(*args, k0, k1), blocks(problem.n_steps))
        new = dict(controls)
        new.update(self._unpack(U_new, controls))
        return new, MaximizeInfo(*info.T)

    def _diagonal(self, problem, controls, xs, ps, rho):
        act = problem.field.activation
        free = self._free(problem, ["w"])["w"]
        h1_diag, h1_rhs = h1_terms(problem, controls, "w")
        reg = problem.reg
        w_new = np.empty_like(controls["w"])
        info = np.zeros((problem.n_steps, 4))
        _mx.diagonal_maximize(xs, ps, act.code, act.param, controls["w"],
                              np.ascontiguousarray(free), _REG_CODES[type(reg)], reg.lam,
                              getattr(reg, "bound", np.inf), rho, h1_diag, h1_rhs, self.tol,
                              self.max_inner, w_new, info)
        new = dict(controls)
        new["w"] = w_new
        return new, MaximizeInfo(*info.T)

    # ----------------------------------------------------------------- general fields
    def _general(self, problem, controls, xs, ps, rho):
        """L-BFGS on ``sum_k Psi~_k`` (separable over k), warm-started at ``u_old``."""
        names = problem.control_names
        has_V = self.field == "perceptron"
        K = problem.n_steps
        act = problem.field.activation
        lam = problem.reg.lam
        old = {n: controls[n] for n in names}
        frozen = self._free(problem, names)
        h1 = {n: h1_terms(problem, controls, n) for n in names}
        shapes = {n: old[n].shape for n in names}
        sizes = np.cumsum([0] + [old[n].size for n in names])
        empty = np.zeros((K, 0, 0), problem.dtype)

        def unpack(flat):
            return {n: flat[sizes[i]:sizes[i + 1]].reshape(shapes[n]).astype(problem.dtype)
                    for i, n in enumerate(names)}

        def per_step(u):
            """Psi~_k (K,) and its gradient (dict)."""
            values = np.empty(K)
            grads = {n: np.zeros(shapes[n], problem.dtype) for n in names}
            V, Vo, gV = ((u["V"], old["V"], grads["V"]) if has_V else (empty, empty, empty))
            b = "c" if has_V else "b"
            _mx.augmented_general(xs, ps, V, u["W"], u[b], Vo, old["W"], old[b], has_V,
                                  act.code, act.param, rho, values, gV, grads["W"], grads[b])
            values -= lam * step_norms_squared(u, names)
            for n in names:
                diag, rhs = h1[n]
                shape = (-1,) + (1,) * (u[n].ndim - 1)
                grads[n] = grads[n] - 2.0 * lam * u[n] - diag.reshape(shape) * u[n] + rhs
                values -= (0.5 * diag * step_norms_squared({n: u[n]}, [n])
                           - np.sum((rhs * u[n]).reshape(K, -1), axis=1))
                grads[n] *= frozen[n]
            return values, grads

        def objective(flat):
            values, grads = per_step(unpack(flat))
            return -float(np.sum(values)), -np.concatenate([grads[n].ravel() for n in names])

        x0 = np.concatenate([old[n].ravel() for n in names]).astype(np.float64)
        start_values, start_grads = per_step(old)
        scale = max(1.0, max(np.abs(g).max() for g in start_grads.values()))
        result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                          options=dict(maxiter=self.max_inner, gtol=self.tol * scale, ftol=0.0,
                                       maxcor=20))
        new_u = unpack(result.x)
        for n in names:
            new_u[n] = np.where(frozen[n], new_u[n], old[n])
        values, grads = per_step(new_u)
        gain = values - start_values
        if np.sum(gain) < 0.0:  # never return a worse point than the start
            new_u, values, grads, gain = old, start_values, start_grads, np.zeros(K)
        residual = np.sqrt(step_norms_squared(grads, names))
        new = dict(controls)
        new.update(new_u)
        return new, MaximizeInfo(gain, residual, np.full(K, float(result.nit)), np.zeros(K))
