"""The maximiser of fields linear in the control, ``f(x, U) = U psi(x)``
(:class:`pmp.fields.LinearForm`): exact per step (docs/theory.md section 8).

l2: the closed form ``G_k / (2 lam)`` for ``rho = 0``; else the quadratic, solved by
Cholesky when a step has at most ``n_direct`` unknowns, by preconditioned conjugate
gradients above. l1 with a bound: FISTA with the prox (the switching law for ``rho = 0``).

The conjugate gradients' preconditioner is diagonal in the eigenbases of two Gram matrices of
every step, whose eigensolves cost more than the products of a few iterations. The bases
change little from one iteration of a method to the next, so they are computed afresh on
every :data:`BASES_REFRESH`-th call of a :class:`~pmp.maximize.Maximizer` and kept in its
:attr:`~pmp.maximize.Maximizer.memory` in between (the preconditioner's diagonal is always
recomputed for the current matrices). Any such basis gives a positive definite
preconditioner: the solution to the tolerance is the same, the inexact solve's few
iterations slightly less converged.
"""
import numpy as np

from .._kernels import codes, lazy
from ..threads import blocks, map_blocks
from ._common import REG_CODES, free_entries, h1_terms

# the kernels' code of each psi of pmp.fields.LinearForm
PSI_KINDS = {"activation_and_one": codes.OUTER, "random_features": codes.FEATURES}
_kl = lazy("maximize_linear")
BASES_REFRESH = 8


def check(problem):
    """Every regulariser of pmp has a maximiser here."""


def reads_trajectories(maximizer, problem):
    """False where the costate sweep's sums suffice: l2 with a direct solve on a field
    whose costate sweep computes them."""
    return not (problem.reg.smooth and problem.field.maximize_statistics(0) is not None
                and _unknowns(maximizer, problem) <= maximizer.n_direct)


def inner_solver(maximizer, problem):
    """The iterative solver of a maximisation at ``rho > 0``: FISTA for l1, conjugate
    gradients above ``n_direct`` unknowns per step, else None (Cholesky)."""
    if not problem.reg.smooth:
        return "fista"
    return "cg" if _unknowns(maximizer, problem) > maximizer.n_direct else None


def _unknowns(maximizer, problem):
    """The unknowns of one step's maximisation."""
    return sum(int(np.prod(problem.field.step_shapes()[n])) for n in maximizer.form.names)


def maximize(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """New controls ``form.names`` and the per-step info (4, K); see
    :meth:`pmp.maximize.Maximizer.maximize`."""
    kernel, args, step_work, U_new, info = _call(maximizer, problem, form, controls, xs, ps,
                                                 rho, statistics)
    # the steps are independent: one block of steps per thread, where the work pays for it
    bounds = blocks(problem.n_steps, work_per_item=step_work)
    map_blocks(lambda k0, k1, _: kernel(*args, k0, k1), bounds)
    return form.unpack(U_new, controls), info.T


def kernel_calls(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """The kernel :func:`maximize` calls and its arguments (all steps), for compiling it
    ahead (:mod:`pmp._kernels.ahead`); nothing runs."""
    kernel, args = _call(maximizer, problem, form, controls, xs, ps, rho, statistics)[:2]
    return [(kernel, args + (0, problem.n_steps))]


def _call(maximizer, problem, form, controls, xs, ps, rho, statistics):
    """The kernel, its arguments but the steps, the work of one step (see :func:`_kernel`)
    and the arrays it fills: ``U_new`` (K, d, q) and ``info`` (K, 4)."""
    names = form.names
    U_old = np.ascontiguousarray(form.pack(controls), dtype=problem.dtype)
    free = np.ascontiguousarray(form.pack(free_entries(problem, names)))
    h1 = [h1_terms(problem, controls, n) for n in names]
    h1_diag = h1[0][0]
    h1_rhs = np.ascontiguousarray(form.pack({n: t[1] for n, t in zip(names, h1)}))
    U_new = np.empty_like(U_old)
    info = np.zeros((problem.n_steps, 4))
    return _kernel(maximizer, problem, form, xs, ps, rho, statistics, U_old, free,
                   (h1_diag, h1_rhs.astype(problem.dtype)), U_new, info) + (U_new, info)


def _kernel(maximizer, problem, form, xs, ps, rho, statistics, U_old, free, h1, U_new, info):
    """The kernel of this regulariser and size, its arguments but the steps, and the work of
    one step in the units of :data:`pmp.threads.MIN_BLOCK_WORK`: a solve of the ``d q``
    unknowns (plus, from the trajectories, the matrix's sums over the ``N`` rows), or the
    products of an iterative solver's iterations."""
    reg, dt = problem.reg, problem.dtype
    d, q = U_old.shape[1:]
    n, unknowns = xs.shape[1], d * q
    iterative = n * unknowns * (3 + 2 * maximizer.max_inner)
    solver = (maximizer.tol, maximizer.max_inner)
    if not reg.smooth:
        return _kl.linear_maximize_l1, _psi_args(form, xs, ps, dt, U_old, free) + (
            (REG_CODES[type(reg)], reg.lam, reg.bound), rho, h1, solver, U_new, info), iterative
    if unknowns <= maximizer.n_direct or (rho == 0.0 and not np.any(h1[0])):
        if statistics is not None:  # the costate sweep's sums
            return _kl.linear_maximize_sums, (U_old, free, reg.lam, rho, h1, U_new, info,
                                              tuple(statistics), n), unknowns ** 3
        return _kl.linear_maximize_direct, _psi_args(form, xs, ps, dt, U_old, free) + (
            reg.lam, rho, h1, U_new, info), unknowns ** 3 + n * unknowns ** 2
    return _kl.linear_maximize_cg, _psi_args(form, xs, ps, dt, U_old, free) + (
        reg.lam, rho, h1, solver, _bases(maximizer, U_old.shape, dt), U_new, info), iterative


def _bases(maximizer, shape, dtype):
    """The preconditioner's bases ``(E, F, fresh)`` of the conjugate-gradient kernel: the
    kept ones, or (on every :data:`BASES_REFRESH`-th call, and when the shapes change) new
    arrays for the kernel to fill, identities until it does. Arrays once kept are never
    written again: a checkpoint's state may hold them."""
    K, d, q = shape
    memory = maximizer.memory or {}
    calls = int(memory.get("calls", 0))
    E, F = memory.get("E"), memory.get("F")
    fresh = (calls % BASES_REFRESH == 0 or E is None or E.shape != (K, q, q)
             or F.shape != (K, d, d) or E.dtype != dtype)
    if fresh:
        E = np.ascontiguousarray(np.broadcast_to(np.eye(q, dtype=dtype), (K, q, q)))
        F = np.ascontiguousarray(np.broadcast_to(np.eye(d, dtype=dtype), (K, d, d)))
    maximizer.memory = dict(E=E, F=F, calls=calls + 1)
    return E, F, fresh


def _psi_args(form, xs, ps, dtype, U_old, free):
    """The kernels' leading arguments: trajectories, psi's ``spec`` (its kind, fixed
    arrays, activation and ``K~``), U_old, free."""
    if form.omega is None:
        omega, beta, Kt, use_Kt = np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), False
    else:
        omega, beta, Kt, use_Kt = form.omega, form.beta, form.omega @ form.omega.T, True
    return (xs, ps, (PSI_KINDS[form.psi], omega.astype(dtype), beta.astype(dtype), form.code,
                     form.param, Kt.astype(dtype), use_Kt), U_old, free)
