"""Per-step maximisation of the (augmented) Hamiltonian: the heart of the MSA.

Given the states ``X_k`` and costates ``p_{k+1}`` of one forward and one backward sweep at
the controls ``u_old``, every step's problem is independent (docs/theory.md sections 4, 8)::

    u_k <- argmax_u Psi~_k(u),   Psi~_k(u) = <p_{k+1}, F(X_k, u)> - R(u)
         - (rho/2)(1/N) sum_i |f(x_i, u) - f(x_i, u_old)|^2
         - (rho/2)(1/N) sum_i |(D_x f(x_i, u))^T p_hat_i - (D_x f(x_i, u_old))^T p_hat_i|^2

(per unit time; ``rho = 0`` is the plain MSA). With ``reg="h1"`` the coupling of neighbouring
steps is handled by **proximal (Jacobi) splitting** (docs/theory.md 5.1): step k keeps its
neighbours at their old values and maximises ``Psi~_k(u) - (lam1/h^2) sum_nb |u - u_nb|^2``.
A fixed point satisfies the discrete Euler-Lagrange equation ``dJ/du_k = 0`` exactly; the
price is Jacobi's slow convergence when ``lam1 / h^2`` dominates (O(K^2) iterations).

The solver follows the field's :meth:`~pmp.fields.Field.control_form`:

* :class:`~pmp.fields.LinearForm` ("outer", "features"; :mod:`pmp.maximize.linear`):
  exact. l2: closed form ``G_k / (2 lam)`` for ``rho = 0``, else the quadratic solved by
  Cholesky (``d q <= n_direct``) or preconditioned conjugate gradients. l1 with a bound:
  the switching (bang-bang) law for ``rho = 0``, else FISTA with the prox (soft-threshold,
  then clip).
* :class:`~pmp.fields.DiagonalForm` ("diagonal"; :mod:`pmp.maximize.diagonal`): the same,
  coordinate by coordinate.
* :class:`~pmp.fields.TwoLayerForm` ("inner", "perceptron", "integral";
  :mod:`pmp.maximize.general`): no closed form; L-BFGS (scipy) on ``sum_k Psi~_k``,
  warm-started at ``u_old``, to a tolerance and an iteration cap (l2 and h1 only; for
  "integral" with ``W diag(q)`` and the regulariser weighted by the mesh's quadrature).

:meth:`Maximizer.maximize` returns the new controls and a :class:`MaximizeInfo` with the
Hamiltonian gain and stationarity residual per step.
"""
from dataclasses import dataclass

import numpy as np

from .._validation import integer, real
from ..fields import DiagonalForm, LinearForm, TwoLayerForm
from ..sweeps import Need
from . import diagonal, general, linear
from ._common import REG_CODES, await_ahead, compile_ahead, free_entries, h1_terms

# the solver of each control form (pmp.fields): a module with check(problem) and
# maximize(maximizer, problem, form, controls, xs, ps, rho, statistics)
SOLVERS = {LinearForm: linear, DiagonalForm: diagonal, TwoLayerForm: general}
# the iterative inner solvers, as Maximizer.inner_solver names them
INNER_SOLVERS = ("cg", "fista", "lbfgs")


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
        ``|G_k|`` (group norm; ``max |G_kj|`` for "l1elem"): for l1 with a bound the control is
        zero where it is below ``lam`` and on the bound where above.
    """

    gain: np.ndarray
    residual: np.ndarray
    iterations: np.ndarray
    switching: np.ndarray


class Maximizer:
    """Per-step Hamiltonian maximisation for one problem.

    Parameters
    ----------
    problem : Problem
    n_direct : int
        Largest number of unknowns per step solved directly (Cholesky); above it, conjugate
        gradients (fields linear in the control).
    tol : float
        Relative tolerance of the inner iterative solvers.
    max_inner : int or dict
        Iteration cap of the inner solvers, or a cap per solver (keys "cg", "fista",
        "lbfgs": see :meth:`inner_solver`).

    Attributes
    ----------
    memory : dict or None
        What the solver keeps from one call of :meth:`maximize` to the next (the
        conjugate-gradient solver's preconditioner bases, see :mod:`pmp.maximize.linear`):
        arrays and numbers, never written once kept. A method stores it with its checkpoint
        state and sets it back on resuming, so that a resumed run continues bit for bit.

    For a staged problem (:mod:`pmp.stages`) ``Maximizer(problem)`` is a
    :class:`pmp.maximize.staged.StagedMaximizer`: one maximiser per stage.
    """

    def __new__(cls, problem, n_direct=256, tol=1e-10, max_inner=500):
        if cls is Maximizer and hasattr(problem, "transitions"):  # a staged problem
            from .staged import StagedMaximizer

            return StagedMaximizer(problem, n_direct, tol, max_inner)
        return super().__new__(cls)

    def __init__(self, problem, n_direct=256, tol=1e-10, max_inner=500):
        self.problem = problem
        self.n_direct = integer(n_direct, "n_direct", low=0)
        self.tol = real(tol, "tol", low=0.0, low_open=True)
        self.form = problem.field.control_form()
        self.solver = SOLVERS[type(self.form)]
        if type(problem.reg) not in REG_CODES:
            raise TypeError(f"no maximiser for regularizer {type(problem.reg).__name__}")
        if getattr(problem.reg, "weights", None) is not None and self.solver is not general:
            raise TypeError(f"no maximiser for regularizer {type(problem.reg).__name__} "
                            f"(weighted entry by entry) with field {problem.field!r}")
        self.solver.check(problem)
        if isinstance(max_inner, dict):
            max_inner = self._cap_of(max_inner)
        self.max_inner = integer(max_inner, "max_inner", low=1)
        self.memory = None
        self._ahead = None

    def inner_solver(self):
        """The iterative solver of the maximisation at ``rho > 0``, which ``max_inner``
        caps: "cg" (conjugate gradients), "fista" or "lbfgs"; None where every step is
        solved directly or in closed form."""
        return self.solver.inner_solver(self, self.problem)

    def _cap_of(self, caps):
        """The cap of this problem's inner solver in ``caps`` (solver -> cap); 1 where the
        steps are solved directly (no cap applies)."""
        unknown = sorted(set(caps) - set(INNER_SOLVERS))
        if unknown:
            raise ValueError(f"max_inner's keys must be among {', '.join(INNER_SOLVERS)}, got "
                             f"{', '.join(map(repr, unknown))}")
        solver = self.inner_solver()
        if solver is not None and solver not in caps:
            raise ValueError(f"max_inner has no cap for this problem's inner solver "
                             f"{solver!r}: got {caps}")
        return caps.get(solver, 1)

    def check(self, rho):
        """Raise ``ValueError`` where the maximisation has no solution at this ``rho``."""
        reg = self.problem.reg
        if rho == 0.0 and reg.smooth and reg.lam == 0.0 and not getattr(reg, "lam1", 0.0):
            raise ValueError("plain MSA (rho = 0) with reg='l2' needs lam > 0: the Hamiltonian "
                             "is linear in the control and has no maximiser")
        if not reg.smooth and not np.isfinite(reg.bound) and rho == 0.0:
            raise ValueError(f"reg={reg.name!r} needs a finite bound for the MSA: without it "
                             "the Hamiltonian is unbounded above where |G_k| > lam")

    def need(self, problem):
        """What the sweeps must produce for :meth:`maximize` (a :class:`pmp.sweeps.Need`):
        every state and costate, or (where the solver reads only the sums the costate
        sweep computes for it, see :meth:`pmp.fields.Field.maximize_statistics`) not."""
        return Need(trajectories=self.solver.reads_trajectories(self, problem))

    def compile_ahead(self, problem, controls, rho=0.0):
        """Start compiling, in a second process, the kernel :meth:`maximize` will call for
        ``problem`` at ``rho``, where it is not in numba's cache (see
        :mod:`pmp._kernels.ahead`); :meth:`maximize` waits for it. A method calls this
        before its first sweeps, which compile meanwhile. Nothing else changes."""
        compile_ahead(self, problem, controls, rho)

    def kernel_calls(self, problem, controls, rho=0.0, statistics=True):
        """The kernels :meth:`maximize` calls and arguments of their types (zero
        trajectories of one sample: nothing runs), as :func:`pmp._kernels.ahead.start`
        takes them; ``statistics``: whether the sweeps hand it the field's sums."""
        K = problem.n_steps
        xs = np.zeros((K + 1, 1, problem.dim), problem.dtype)
        shapes = problem.field.maximize_statistics(K) if statistics else None
        statistics = None if shapes is None else \
            tuple(np.zeros(shape, problem.dtype) for shape in shapes)
        memory = self.memory  # a solver may count its calls there: this is not one
        calls = self.solver.kernel_calls(self, problem, self.form, controls, xs, xs, rho,
                                         statistics)
        self.memory = memory
        return calls

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
        self.check(rho)
        if problem.reg.name == "l1" and any(np.any(controls[n][m] != 0.0)
                                            for n, m in problem.frozen.items()):
            # the group norm would couple the free entries to fixed non-zero ones
            raise ValueError("reg='l1' (group norm) with frozen entries needs the frozen "
                             "entries to be 0 for the MSA maximiser")
        await_ahead(self)
        new_controls, info = self.solver.maximize(self, problem, self.form, controls, xs, ps,
                                                  rho, statistics)
        new = dict(controls)
        new.update(new_controls)
        return new, MaximizeInfo(*info)


__all__ = ["Maximizer", "MaximizeInfo", "SOLVERS", "REG_CODES", "h1_terms", "free_entries"]
