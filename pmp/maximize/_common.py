"""What the solvers of :mod:`pmp.maximize` share: regulariser codes, the H^1 splitting and
the free (not frozen) entries."""
import numpy as np

from .._kernels import codes
from ..meshes import QuadratureH1, QuadratureL2
from ..objectives import H1, L1, L2, L1Elementwise

# the quadrature-weighted l2 and h1 (a field on a mesh): the general solver only
REG_CODES = {L2: codes.L2, H1: codes.L2, L1: codes.L1_GROUP,
             L1Elementwise: codes.L1_ELEMENTWISE, QuadratureL2: codes.L2,
             QuadratureH1: codes.L2}


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


def free_entries(problem, names):
    """name -> boolean array: the entries the maximisation may change (not frozen)."""
    return {n: ~problem.frozen[n] if n in problem.frozen
            else np.ones(problem.control_shapes[n], bool) for n in names}


def compile_ahead(maximizer, problem, controls, rho):
    """Start compiling ``maximizer``'s kernels for ``problem`` in a second process where
    that can help (:mod:`pmp._kernels.ahead`; the dummy calls are built only then); the
    maximiser's :meth:`maximize` calls :func:`await_ahead` first."""
    from .._kernels import ahead
    from ..threads import get_threads

    threads = get_threads()
    maximizer._ahead = ahead.start(maximizer.kernel_calls(problem, controls, rho), threads) \
        if ahead.wanted(threads) else None


def await_ahead(maximizer):
    """Wait for the kernels :func:`compile_ahead` started compiling (they then load from
    numba's cache); nothing if none."""
    if getattr(maximizer, "_ahead", None) is not None:
        maximizer._ahead.wait()
        maximizer._ahead = None
