"""The Hamiltonian maximisation of a staged problem (:mod:`pmp.stages`): every stage by its own
field's :class:`~pmp.maximize.Maximizer` on that stage's states and costates, and a trainable
transition by its own closed form (docs/theory.md section 13).

A trainable transition ``X_next = X A^T`` enters J through ``<p^{(j+1)}_0, X A^T>`` and its
regulariser, so the MSA maximises, with ``G = (p^{(j+1)}_0)^T X^{(j)}_{K_j}`` and
``D = A - A_old``,

``psi(A) = <G, A> - lam_A |A|^2 - (rho / 2N) (|X D^T|^2 + |N p_0 D|^2)``

(the augmented terms of section 4d for the map ``x -> A x``): ``A = G / (2 lam_A)`` for
``rho = 0``, else the Sylvester equation
``(2 lam_A I + rho N p_0^T p_0) D + D (rho / N) X^T X = G - 2 lam_A A_old``.

The controls come as one dict ``"j.name"`` (:meth:`pmp.stages.StagedProblem.flatten_controls`);
the gains are reported per unit of the problem's mean step ``problem.h``, so that
``problem.h * sum(gain)`` is ``sum_j h_j sum_k gain_jk`` plus the transitions' gains, in units
of J, as for an unstaged problem.
"""
import numpy as np
from scipy.linalg import solve_sylvester

from .._validation import real
from ..stages import ENTER
from ..sweeps import Need
from . import MaximizeInfo, Maximizer
from ._common import await_ahead, compile_ahead


class StagedMaximizer:
    """:class:`~pmp.maximize.Maximizer` of a staged problem (what ``Maximizer(problem)``
    returns for one); same parameters and methods."""

    def __init__(self, problem, n_direct=256, tol=1e-10, max_inner=500):
        self.problem = problem
        self.maximizers = [Maximizer(stage, n_direct, tol, max_inner)
                           for stage in problem.stages]
        self._ahead = None

    @property
    def memory(self):
        """The stages' :attr:`pmp.maximize.Maximizer.memory`, a list (None if all are)."""
        memories = [m.memory for m in self.maximizers]
        return None if all(m is None for m in memories) else memories

    @memory.setter
    def memory(self, memories):
        for maximizer, memory in zip(self.maximizers, memories or [None] * len(self.maximizers)):
            maximizer.memory = memory

    def check(self, rho):
        """Raise ``ValueError`` where a stage's or a transition's maximisation has no
        solution at this ``rho``."""
        for j, maximizer in enumerate(self.maximizers):
            try:
                maximizer.check(rho)
            except ValueError as err:
                raise ValueError(f"stages[{j}]: {err}") from None
        for j, tr in enumerate(self.problem.transitions):
            if tr.trainable and tr.lam == 0.0 and rho == 0.0:
                raise ValueError(f"plain MSA (rho = 0) needs enter_lam > 0 for the trainable "
                                 f"transition into stages[{j + 1}] (its Hamiltonian is linear "
                                 f"in A), got 0.0")

    def need(self, problem):
        """Every state and costate of every stage."""
        return Need(trajectories=True, statistics=False)

    def compile_ahead(self, problem, controls, rho=0.0):
        """:meth:`pmp.maximize.Maximizer.compile_ahead` for the stages' kernels, in one
        second process."""
        compile_ahead(self, problem, controls, rho)

    def kernel_calls(self, problem, controls, rho=0.0):
        """The stages' :meth:`pmp.maximize.Maximizer.kernel_calls` (``controls`` one flat
        dict; the stages' maximisers read the trajectories, not the sweeps' sums)."""
        old = problem.unflatten_controls(controls)
        return [call for stage, maximizer, u in zip(problem.stages, self.maximizers, old)
                for call in maximizer.kernel_calls(
                    stage, {n: a for n, a in u.items() if n != ENTER}, rho, statistics=False)]

    def maximize(self, problem, controls, xs, ps, rho=0.0, statistics=None):
        """New controls (one flat dict) maximising every stage's and transition's
        (augmented) Hamiltonian.

        Parameters
        ----------
        problem : StagedProblem
            The problem (or a mini-batch of it) the sweeps were computed on.
        controls : dict
            ``u_old`` as one dict ``"j.name" -> array``.
        xs, ps : list of ndarray, shape (n_steps[j] + 1, n_samples, dims[j])
            States and costates of every stage at ``u_old``.
        rho : float
        statistics : None
            Unused (the stages' maximisers read the trajectories).

        Returns
        -------
        new : dict
        info : MaximizeInfo
            Per step of every stage (stage after stage; a trainable transition adds one
            entry before the stage it enters), gains per unit of ``problem.h``.
        """
        rho = real(rho, "rho", low=0.0)
        self.check(rho)
        await_ahead(self)
        old = problem.unflatten_controls(controls)
        new, parts = [], []
        for j, (stage, maximizer, u) in enumerate(zip(problem.stages, self.maximizers, old)):
            tr = problem.enter_transition(j)
            out = {}
            if tr is not None and tr.trainable:
                out[ENTER], gain = _transition(tr, u[ENTER], ps[j][0], xs[j - 1][-1], rho)
                parts.append(([gain / problem.h], [0.0], [0], [0.0]))
            own, info = maximizer.maximize(stage, {n: a for n, a in u.items() if n != ENTER},
                                           xs[j], ps[j], rho)
            out.update(own)
            new.append(out)
            parts.append((info.gain * (stage.h / problem.h), info.residual, info.iterations,
                          info.switching))
        info = MaximizeInfo(*(np.concatenate([np.asarray(p[i], float) for p in parts])
                              for i in range(4)))
        return problem.flatten_controls(new), info


def _transition(tr, A_old, p0, X, rho):
    """The maximiser of ``psi`` (module docstring) and its gain ``psi(A) - psi(A_old)``."""
    n = X.shape[0]
    p0, X, A_old = (np.asarray(a, np.float64) for a in (p0, X, A_old))
    G = p0.T @ X
    if rho == 0.0:
        A = G / (2.0 * tr.lam)
    else:
        Ph = n * p0
        left = 2.0 * tr.lam * np.eye(A_old.shape[0]) + (rho / n) * (Ph.T @ Ph)
        A = A_old + solve_sylvester(left, (rho / n) * (X.T @ X), G - 2.0 * tr.lam * A_old)
    if tr.frozen is not None:  # frozen entries keep their value
        A[tr.frozen] = A_old[tr.frozen]

    def psi(B):
        D = B - A_old
        penalty = np.sum((X @ D.T) ** 2) + np.sum((n * p0 @ D) ** 2)
        return np.sum(G * B) - tr.lam * np.sum(B * B) - rho / (2 * n) * penalty

    return A.astype(tr.matrix.dtype), float(psi(A) - psi(A_old))
