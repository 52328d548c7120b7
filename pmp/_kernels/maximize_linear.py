"""Per-step maximisation of the (augmented) Hamiltonian for fields linear in the control,
docs/theory.md sections 4, 5 and 8.

``f(x, U) = U psi(x)``, ``U`` of shape (d, q):

* "outer":    ``psi(x) = [sigma(x); 1]``, ``U = [W b]``, q = d + 1;
* "features": ``psi(x) = phi(Omega x + beta)``, ``U = A``.

Per unit time, with ``p = p_{k+1}`` the batch costate (``p_hat = N p`` per sample),
``Psi~_k(U) = <G_k, U> - R(U) - (rho/2) dU.A_k(dU) - (h1 terms)``, ``G_k = p^T Psi_k``,
``dU = U - U_old``, and ``A_k`` the sum of ``I_d (x) S_k`` (``S_k = Psi_k^T Psi_k / N``) and
the Gram operator of the costate term ``(1/N) sum_i |(D_x psi_i)^T dU^T p_hat_i|^2``. With
``D_x psi_i = diag(psi'_i) Omega~`` (``Omega~ = [I; 0]`` for "outer", ``Omega`` for
"features") and ``K~ = Omega~ Omega~^T``::

    A(V) = V S + N p^T (psi' * ((psi' * (p V)) K~))

The h1 (Jacobi) splitting adds ``h1_diag I`` to the quadratic and ``h1_rhs`` to the linear
term. For l2 the maximiser is the solution of ``M dU = g_old`` on the free entries, with
``M = (2 lam + h1_diag) I + rho A`` and ``g_old = G + h1_rhs - (2 lam + h1_diag) U_old`` the
gradient of Psi~ at ``U_old``: a direct solve of the explicit matrix when ``d q <= n_direct``
(:func:`linear_maximize_direct`), else conjugate gradients with a Kronecker preconditioner
(:func:`linear_maximize_cg`). For l1 with a bound: FISTA on the same quadratic (without
``2 lam``) with the prox of ``lam |U|`` and the ball / box (:func:`linear_maximize_l1`).
With ``rho = 0`` and no h1 term both have closed forms (``G / 2 lam``; bang-bang).

Every step is independent; ``info[k]`` = (gain ``Psi~_k(U_new) - Psi~_k(U_old)``,
stationarity residual, inner iterations, switching function ``|G_k|``).

Tuples of arguments (unpacked at the top of the kernels):

* ``spec = (kind, omega, beta, code, param, Kt, use_Kt)``: ``kind`` OUTER or FEATURES,
  ``omega``, ``beta`` (q, d), (q,) fixed features (unused for OUTER), ``code``, ``param``
  the activation (feature map), ``Kt`` (q, q) ``Omega Omega^T``, read when ``use_Kt``;
* ``op = (S, p, dpsi, Kt, use_Kt)``: what the operator ``A`` of one step reads;
* ``h1 = (h1_diag, h1_rhs)``: (K,), (K, d, q) Jacobi terms of the H^1 regulariser (zeros
  without it);
* ``solver = (tol, max_inner)``: relative tolerance and iteration cap of CG and FISTA;
* ``l1 = (reg, lam, bound)``: L1_GROUP or L1_ELEMENTWISE, its weight and its bound.
"""
import math

import numpy as np

from ._jit import jit, jit_sum
from .blas import matmul
from .activations import activate_with_slope
from .codes import L1_GROUP, L2, OUTER
from .prox import fista_step, prox, switching, vdot
from .reductions import dot
from .sweeps import _transpose_in


@jit
def _psi(spec, x, psi, dpsi, s, ds):
    """``psi`` and ``psi'`` (N, q) at states ``x`` (N, d); ``s``, ``ds`` scratch."""
    kind, omega, beta, code, param = spec[0], spec[1], spec[2], spec[3], spec[4]
    if kind == OUTER:
        activate_with_slope(code, param, x, s, ds)
        n, d = x.shape
        for i in range(n):
            for j in range(d):
                psi[i, j] = s[i, j]
                dpsi[i, j] = ds[i, j]
            psi[i, d] = 1.0
            dpsi[i, d] = 0.0
    else:
        matmul(x, omega.T, s)
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                s[i, j] += beta[j]
        activate_with_slope(code, param, s, psi, dpsi)


@jit
def _apply(V, op, coef_I, rho, free, out, tmp, dq):
    """``out = free * (coef_I V + rho A(V))``; tmp = (t1, t2) (N, q), dq (d, q) scratch."""
    S, p, dpsi, Kt, use_Kt = op
    t1, t2 = tmp
    n = p.shape[0]
    if rho == 0.0:
        for r in range(out.shape[0]):
            for c in range(out.shape[1]):
                out[r, c] = coef_I * V[r, c] if free[r, c] else 0.0
        return
    matmul(V, S, out)
    matmul(p, V, t1)
    if use_Kt:
        for i in range(n):
            for c in range(t1.shape[1]):
                t1[i, c] *= dpsi[i, c]
        matmul(t1, Kt, t2)
        for i in range(n):
            for c in range(t2.shape[1]):
                t2[i, c] *= dpsi[i, c]
    else:  # "outer": K~ = diag(1, ..., 1, 0), and psi' is 0 in the last column
        t2 = t1
        for i in range(n):
            for c in range(t2.shape[1]):
                t2[i, c] *= dpsi[i, c] * dpsi[i, c]
    matmul(p.T, t2, dq)
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            v = coef_I * V[r, c] + rho * (out[r, c] + n * dq[r, c])
            out[r, c] = v if free[r, c] else 0.0


@jit
def _explicit(S, pT, dpsiT, Kt, use_Kt, coef_I, rho, M, scratch):
    """The matrix of ``coef_I I + rho A`` on row-major ``vec(U)``; M (d q, d q).

    The costate term's (c, c2) block is ``N k~_{c c2} sum_i psi'_ic psi'_ic2 p_i p_i^T``: dot
    products of the rows of ``pT`` (d, N) and ``dpsiT`` (q, N), ``p`` and ``psi'``
    transposed; scratch (2, N).
    """
    d, n = pT.shape
    q = S.shape[0]
    _explicit_data_part(S, d, coef_I, rho, M)
    pair, weighted = scratch[0], scratch[1]
    for c in range(q):
        for c2 in range(c, q):
            k = Kt[c, c2] if use_Kt else (1.0 if c == c2 else 0.0)
            if k == 0.0:
                continue
            nonzero = False
            for i in range(n):
                pair[i] = dpsiT[c, i] * dpsiT[c2, i]
                nonzero |= pair[i] != 0.0
            if not nonzero:  # e.g. the bias column of "outer"
                continue
            w = rho * n * k
            for r in range(d):
                for i in range(n):
                    weighted[i] = pair[i] * pT[r, i]
                for r2 in range(r if c2 == c else 0, d):
                    v = w * dot(weighted, pT[r2])
                    M[r * q + c, r2 * q + c2] += v
                    if c2 != c or r2 != r:  # the block (c2, c) is the transpose of (c, c2)
                        M[r2 * q + c2, r * q + c] += v


@jit
def _explicit_data_part(S, d, coef_I, rho, M):
    """``M = coef_I I + rho (I_d (x) S)`` on row-major ``vec(U)``, U (d, q)."""
    q = S.shape[0]
    M[:, :] = 0.0
    for r in range(d):
        for c in range(q):
            M[r * q + c, r * q + c] += coef_I
            for c2 in range(q):
                M[r * q + c, r * q + c2] += rho * S[c, c2]


@jit
def _explicit_outer(S, Q, n, coef_I, rho, M):
    """:func:`_explicit` for "outer" from the costate Gram blocks ``Q`` (d, d, d) of the
    costate sweep: block (c, c) is ``N Q[c]``, the bias column has none."""
    d = Q.shape[0]
    q = S.shape[0]
    _explicit_data_part(S, d, coef_I, rho, M)
    for c in range(d):
        for r in range(d):
            for r2 in range(d):
                M[r * q + c, r2 * q + c] += rho * n * Q[c, r, r2]


@jit
def _small_products(spec, x, p, values, transposed, G, S):
    """For the direct path (small d and q, where one BLAS call per product costs more than
    the product): ``psi``, ``psi'`` transposed into ``psiT``, ``dpsiT`` (q, N), ``p`` into
    ``pT`` (d, N), and ``G = p^T psi``, ``S = psi^T psi / N`` by dot products of their rows.
    ``values = (psi, dpsi, s, ds)`` as for :func:`_psi`, ``transposed = (xT, pT, psiT,
    dpsiT)``. For "outer" the activations run on the rows of ``xT`` (d, N), ``x``
    transposed, and ``psi``, ``dpsi`` are not filled."""
    kind, code, param = spec[0], spec[3], spec[4]
    psi, dpsi, s, ds = values
    xT, pT, psiT, dpsiT = transposed
    q = psiT.shape[0]
    d, n = pT.shape
    if kind == OUTER:
        _transpose_in(x, xT)
        for j in range(d):
            activate_with_slope(code, param, xT[j], psiT[j], dpsiT[j])
        psiT[d, :] = 1.0
        dpsiT[d, :] = 0.0
    else:
        _psi(spec, x, psi, dpsi, s, ds)
        _transpose_in(psi, psiT)
        _transpose_in(dpsi, dpsiT)
    _transpose_in(p, pT)
    for c in range(q):
        for r in range(d):
            G[r, c] = dot(pT[r], psiT[c])
        for c2 in range(c, q):
            S[c, c2] = S[c2, c] = dot(psiT[c], psiT[c2]) / n


@jit_sum
def _cholesky_solve(M, g, L, x):
    """Solve ``M x = g`` for a symmetric positive definite ``M`` (n, n) by Cholesky,
    ``M = L L^T`` into the lower triangle of ``L`` (n, n); returns False (``x`` unset) if a
    pivot is not positive.

    Written out rather than LAPACK's: the maximiser's systems are small, and for them a call
    of numba's ``np.linalg.solve`` costs more than the factorisation itself; its inner
    products are reassociated (:func:`pmp._kernels._jit.jit_sum`) so that they vectorise.
    """
    n = M.shape[0]
    for j in range(n):
        acc = M[j, j]
        for m in range(j):
            acc -= L[j, m] * L[j, m]
        if not acc > 0.0:
            return False
        pivot = math.sqrt(acc)
        L[j, j] = pivot
        for i in range(j + 1, n):
            acc = M[i, j]
            for m in range(j):
                acc -= L[i, m] * L[j, m]
            L[i, j] = acc / pivot
    for i in range(n):  # L y = g
        acc = g[i]
        for m in range(i):
            acc -= L[i, m] * x[m]
        x[i] = acc / L[i, i]
    for i in range(n - 1, -1, -1):  # L^T x = y
        acc = x[i]
        for m in range(i + 1, n):
            acc -= L[m, i] * x[m]
        x[i] = acc / L[i, i]
    return True


@jit_sum
def _lu_solve(M, g, LU, x):
    """Solve ``M x = g`` by Gaussian elimination with partial pivoting, factors in ``LU``
    (n, n): the fallback of :func:`_cholesky_solve` when ``M`` is not positive definite.

    Written out rather than numba's ``np.linalg.solve``, which takes several seconds to
    compile on every new machine for a path that rarely runs. An exactly singular ``M``
    gives inf or nan in ``x``, which the callers' result checks reject.
    """
    n = M.shape[0]
    for i in range(n):
        x[i] = g[i]
        for j in range(n):
            LU[i, j] = M[i, j]
    for j in range(n):
        pivot_row = j
        for i in range(j + 1, n):
            if abs(LU[i, j]) > abs(LU[pivot_row, j]):
                pivot_row = i
        if pivot_row != j:
            for m in range(n):
                LU[j, m], LU[pivot_row, m] = LU[pivot_row, m], LU[j, m]
            x[j], x[pivot_row] = x[pivot_row], x[j]
        for i in range(j + 1, n):
            factor = LU[i, j] / LU[j, j]
            for m in range(j + 1, n):
                LU[i, m] -= factor * LU[j, m]
            x[i] -= factor * x[j]
    for i in range(n - 1, -1, -1):
        acc = x[i]
        for m in range(i + 1, n):
            acc -= LU[i, m] * x[m]
        x[i] = acc / LU[i, i]


@jit
def _matvec(M, V, out):
    """``vec(out) = M vec(V)`` (row-major vec)."""
    flat_v, flat_out = V.reshape(V.size), out.reshape(out.size)
    for i in range(M.shape[0]):
        acc = 0.0
        for j in range(M.shape[1]):
            acc += M[i, j] * flat_v[j]
        flat_out[i] = acc


@jit
def _l1_value(kind, U):
    if kind == L1_GROUP:
        return math.sqrt(vdot(U, U))
    acc = 0.0
    for r in range(U.shape[0]):
        for c in range(U.shape[1]):
            acc += abs(U[r, c])
    return acc


# The three solvers are three kernels (chosen by pmp.maximize), so that a run compiles only
# the one it uses: numba compiles every branch of a function, and the CG and FISTA code
# would add their compile time to the first run of every E-MSA. Their common arguments
# (and the tuples of the module's docstring):
#   xs, ps            (K + 1, N, d) states and (batch) costates from the sweeps at U_old
#   U_old, U_new      (K, d, q)
#   free              (K, d, q) bool, False for frozen entries (kept at U_old)
#   lam, rho          weight of the regulariser, E-MSA penalty (0: plain MSA)
#   info              (K, 4) receives gain, residual, iterations, switching function per step
#   k0, k1            the steps to solve (independent: blocks of steps run on threads)


@jit
def _products(spec, x, p, values, G, S):
    """``psi``, ``psi'`` at ``x``, ``G = p^T psi`` and ``S = psi^T psi / N`` (BLAS);
    ``values = (psi, dpsi, s, ds)`` as for :func:`_psi`."""
    psi, dpsi, s, ds = values
    _psi(spec, x, psi, dpsi, s, ds)
    matmul(p.T, psi, G)
    matmul(psi.T, psi, S)
    for c in range(S.shape[0]):
        for c2 in range(S.shape[1]):
            S[c, c2] /= x.shape[0]


@jit
def _l2_start(G, h1r, coef, closed, Uo, Un, fr, g, delta, Md, info_k):
    """The start of an l2 step: ``g``, the gradient of Psi~ at ``U_old`` (per unit time) on
    the free entries, and the switching function; when ``closed`` (no rho, no h1 term) also
    the closed form ``delta = g / coef`` and the step's result: returns whether it is done."""
    for r in range(g.shape[0]):
        for c in range(g.shape[1]):
            g[r, c] = (G[r, c] + h1r[r, c] - coef * Uo[r, c]) if fr[r, c] else 0.0
    info_k[3] = switching(L2, G, fr)
    if not closed:
        return False
    for r in range(g.shape[0]):
        for c in range(g.shape[1]):
            delta[r, c] = g[r, c] / coef
            Md[r, c] = coef * delta[r, c] if fr[r, c] else 0.0
    _l2_result(g, delta, Md, Uo, Un, 0.0, info_k)
    return True


@jit
def _l2_result(g, delta, Md, Uo, Un, iters, info_k):
    """``U_new = U_old + delta``; gain ``<g, delta> - delta.M delta / 2``, residual
    ``|g - M delta|`` and the iterations (a float: an int literal would compile a copy per
    value) into ``info_k``."""
    resid = 0.0
    for r in range(g.shape[0]):
        for c in range(g.shape[1]):
            Un[r, c] = Uo[r, c] + delta[r, c]
            resid += (g[r, c] - Md[r, c]) ** 2
    info_k[0] = vdot(g, delta) - 0.5 * vdot(delta, Md)
    info_k[1] = math.sqrt(resid)
    info_k[2] = iters


@jit
def linear_maximize_direct(xs, ps, spec, U_old, free, lam, rho, h1, U_new, info, k0, k1):
    """l2: maximise Psi~_k for the steps ``k0 <= k < k1`` by the closed form (``rho = 0``,
    no h1 term) or a direct solve of the explicit (d q, d q) matrix (small ``d q``), from
    the trajectories ``xs``, ``ps``."""
    kind, Kt, use_Kt = spec[0], spec[5], spec[6]
    h1_diag, h1_rhs = h1
    n, d = xs.shape[1], xs.shape[2]
    q = U_old.shape[2]
    dt = xs.dtype
    psi, dpsi = np.empty((n, q), dt), np.empty((n, q), dt)
    width = d if kind == OUTER else q
    s, ds = np.empty((n, width), dt), np.empty((n, width), dt)
    G, S = np.empty((d, q), dt), np.empty((q, q), dt)
    g, delta, Md = np.empty((d, q), dt), np.empty((d, q), dt), np.empty((d, q), dt)
    M, chol, sol = _direct_scratch(d * q, rho, h1_diag[k0:k1])
    # transposed copies: small products by dot products rather than BLAS calls
    xT, pT = np.empty((d, n), dt), np.empty((d, n), dt)
    psiT, dpsiT = np.empty((q, n), dt), np.empty((q, n), dt)
    pair_scratch = np.empty((2, n), dt)
    for k in range(k0, k1):
        _small_products(spec, xs[k], ps[k + 1], (psi, dpsi, s, ds), (xT, pT, psiT, dpsiT),
                        G, S)
        Uo, Un, fr = U_old[k], U_new[k], free[k]
        coef = h1_diag[k] + 2.0 * lam
        if _l2_start(G, h1_rhs[k], coef, rho == 0.0 and h1_diag[k] == 0.0, Uo, Un, fr, g,
                     delta, Md, info[k]):
            continue
        _explicit(S, pT, dpsiT, Kt, use_Kt, coef, rho, M, pair_scratch)
        _direct_solve(M, chol, sol, g, delta, Md, Uo, Un, fr, info[k])


@jit
def linear_maximize_sums(U_old, free, lam, rho, h1, U_new, info, sums, n, k0, k1):
    """:func:`linear_maximize_direct` for "outer" from the costate sweep's sums instead of
    the trajectories: ``sums = (sG, sS, sQ)``, (K, d, q), (K, q, q), (K, d, d, d), are ``p^T
    psi``, ``psi^T psi`` and ``sum_i psi'_ic^2 p_i p_i^T`` per step over the ``n`` samples
    (:func:`pmp._kernels.sweeps.outer_backward_small`). A kernel of its own: it compiles in
    a fraction of the time of the other, which computes the sums itself."""
    h1_diag, h1_rhs = h1
    sG, sS, sQ = sums
    d, q = U_old.shape[1], U_old.shape[2]
    dt = U_old.dtype
    G, S = np.empty((d, q), dt), np.empty((q, q), dt)
    g, delta, Md = np.empty((d, q), dt), np.empty((d, q), dt), np.empty((d, q), dt)
    M, chol, sol = _direct_scratch(d * q, rho, h1_diag[k0:k1])
    for k in range(k0, k1):
        for r in range(d):
            for c in range(q):
                G[r, c] = sG[k, r, c]
        for c in range(q):
            for c2 in range(q):
                S[c, c2] = sS[k, c, c2] / n
        Uo, Un, fr = U_old[k], U_new[k], free[k]
        coef = h1_diag[k] + 2.0 * lam
        if _l2_start(G, h1_rhs[k], coef, rho == 0.0 and h1_diag[k] == 0.0, Uo, Un, fr, g,
                     delta, Md, info[k]):
            continue
        _explicit_outer(S, sQ[k], n, coef, rho, M)
        _direct_solve(M, chol, sol, g, delta, Md, Uo, Un, fr, info[k])


@jit
def _direct_scratch(size, rho, h1_diag):
    """The explicit matrix, its factor and the solution, (size, size) x 2 and (size,): empty
    when every step has the closed form (no rho, no h1 term)."""
    if rho == 0.0 and not np.any(h1_diag != 0.0):
        size = 0
    return np.empty((size, size)), np.empty((size, size)), np.empty(size)


@jit
def _direct_solve(M, chol, sol, g, delta, Md, Uo, Un, fr, info_k):
    """Solve ``M delta = g`` on the free entries (frozen ones get the identity row, and
    ``g = 0`` there) by Cholesky, or by LU if ``M`` is not positive definite; then the step's
    result."""
    d, q = g.shape
    flat_free = fr.reshape(d * q)
    for a in range(d * q):
        if not flat_free[a]:
            M[a, :] = 0.0
            M[:, a] = 0.0
            M[a, a] = 1.0
    rhs = g.reshape(d * q).astype(np.float64)
    if not _cholesky_solve(M, rhs, chol, sol):
        _lu_solve(M, rhs, chol, sol)
    flat_delta = delta.reshape(d * q)
    for a in range(d * q):
        flat_delta[a] = sol[a]
    _matvec(M, delta, Md)
    _l2_result(g, delta, Md, Uo, Un, 1.0, info_k)


@jit
def _matrix_free_scratch(kind, xs, q):
    """Work arrays of the CG and FISTA kernels: ``(psi, psi', s, ds)`` of :func:`_psi`
    ((N, q) x 2 and the activation's (N, d or q) x 2), the two (N, q) of :func:`_apply`,
    G (d, q), S (q, q) and six (d, q)."""
    n, d = xs.shape[1], xs.shape[2]
    dt = xs.dtype
    width = d if kind == OUTER else q
    return ((np.empty((n, q), dt), np.empty((n, q), dt), np.empty((n, width), dt),
             np.empty((n, width), dt)), (np.empty((n, q), dt), np.empty((n, q), dt)),
            np.empty((d, q), dt), np.empty((q, q), dt), np.empty((6, d, q), dt))


@jit
def linear_maximize_cg(xs, ps, spec, U_old, free, lam, rho, h1, solver, bases, U_new, info,
                       k0, k1):
    """l2: maximise Psi~_k for the steps ``k0 <= k < k1`` by preconditioned conjugate
    gradients with matrix-free products (large ``d q``), to the relative tolerance ``tol``
    or ``max_inner`` iterations. ``bases = (E, F, fresh)``: the preconditioner's bases of
    every step, (K, q, q) and (K, d, d), recomputed (``fresh``) or kept."""
    Kt, use_Kt = spec[5], spec[6]
    h1_diag, h1_rhs = h1
    values, tmp, G, S, work = _matrix_free_scratch(spec[0], xs, U_old.shape[2])
    dpsi = values[1]
    g, delta, Md = work[0], work[1], work[5]
    for k in range(k0, k1):
        p = ps[k + 1]
        _products(spec, xs[k], p, values, G, S)
        Uo, Un, fr = U_old[k], U_new[k], free[k]
        coef = h1_diag[k] + 2.0 * lam
        if _l2_start(G, h1_rhs[k], coef, rho == 0.0 and h1_diag[k] == 0.0, Uo, Un, fr, g,
                     delta, Md, info[k]):
            continue
        op = (S, p, dpsi, Kt, use_Kt)
        iters = _cg(op, coef, rho, fr, g, delta, solver, work, tmp,
                    (bases[0][k], bases[1][k], bases[2]))
        residual = work[2]  # CG's g - M delta: M delta without one more product
        for r in range(Md.shape[0]):
            for c in range(Md.shape[1]):
                Md[r, c] = g[r, c] - residual[r, c]
        _l2_result(g, delta, Md, Uo, Un, float(iters), info[k])


@jit
def linear_maximize_l1(xs, ps, spec, U_old, free, l1, rho, h1, solver, U_new, info, k0, k1):
    """l1 (``reg`` L1_GROUP or L1_ELEMENTWISE) with the bound ``bound``: maximise Psi~_k for
    the steps ``k0 <= k < k1`` by the switching law (``rho = 0``, no h1 term) or FISTA."""
    reg, lam = l1[0], l1[1]
    Kt, use_Kt = spec[5], spec[6]
    h1_diag, h1_rhs = h1
    d, q = U_old.shape[1], U_old.shape[2]
    values, tmp, G, S, work = _matrix_free_scratch(spec[0], xs, q)
    dpsi = values[1]
    for k in range(k0, k1):
        p = ps[k + 1]
        _products(spec, xs[k], p, values, G, S)
        Uo, Un, fr = U_old[k], U_new[k], free[k]
        info[k, 3] = switching(reg, G, fr)
        quadratic = rho != 0.0 or h1_diag[k] != 0.0
        op = (S, p, dpsi, Kt, use_Kt)
        iters, resid = _l1_step(l1, op, h1_diag[k], rho, fr, G, h1_rhs[k], Uo, Un,
                                quadratic, solver, work, tmp)
        # gain: <G + h1_rhs, dU> - lam (r(U) - r(U_old)) - 1/2 dU.M dU - h1_diag <U_old, dU>
        delta, Md = work[1], work[5]
        for r in range(d):
            for c in range(q):
                delta[r, c] = Un[r, c] - Uo[r, c]
        _apply(delta, op, h1_diag[k], rho, fr, Md, tmp, work[4])
        lin = 0.0
        for r in range(d):
            for c in range(q):
                lin += (G[r, c] + h1_rhs[k, r, c] - h1_diag[k] * Uo[r, c]) * delta[r, c]
        info[k, 0] = lin - lam * (_l1_value(reg, Un) - _l1_value(reg, Uo)) \
            - 0.5 * vdot(delta, Md)
        info[k, 1] = resid
        info[k, 2] = iters


@jit
def _cg(op, coef, rho, fr, g, x, solver, work, tmp, bases):
    """Preconditioned CG for ``M x = g`` on the free entries (``M = coef I + rho A``, the
    preconditioner of :func:`_kronecker_preconditioner` in ``bases = (E, F, fresh)``) from
    ``x = 0``; returns the iterations and leaves the residual ``g - M x`` in ``work[2]``.
    Four small products per iteration."""
    tol, max_iter = solver
    d, q = g.shape
    r, z, pdir = work[2], work[3], work[4]
    Ap = np.empty((d, q), g.dtype)
    scratch = np.empty((d, q), g.dtype)
    E, F, fresh = bases
    D = _kronecker_preconditioner(op, coef, rho, g, E, F, fresh)
    FtR, rotated = np.empty((d, q), g.dtype), np.empty((d, q), g.dtype)
    x[:, :] = 0.0
    r[:, :] = g
    norm_g = math.sqrt(vdot(g, g))
    if norm_g == 0.0:
        return 0
    _precondition(r, F, E, D, fr, z, FtR, rotated)
    pdir[:, :] = z
    rz = vdot(r, z)
    it = 0
    while it < max_iter:
        it += 1
        _apply(pdir, op, coef, rho, fr, Ap, tmp, scratch)
        alpha = rz / vdot(pdir, Ap)
        for rr in range(d):
            for c in range(q):
                x[rr, c] += alpha * pdir[rr, c]
                r[rr, c] -= alpha * Ap[rr, c]
        if math.sqrt(vdot(r, r)) <= tol * norm_g:
            break
        _precondition(r, F, E, D, fr, z, FtR, rotated)
        rz_new = vdot(r, z)
        beta = rz_new / rz
        rz = rz_new
        for rr in range(d):
            for c in range(q):
                pdir[rr, c] = z[rr, c] + beta * pdir[rr, c]
    return it


@jit
def _kronecker_preconditioner(op, coef, rho, g, E, F, fresh):
    """The diagonal ``D`` (d, q) of :func:`_cg`'s preconditioner, a Kronecker-product
    approximation of ``M`` in the orthonormal bases ``F`` (d, d) and ``E`` (q, q); in
    ``g``'s dtype. With ``fresh`` the bases are first set to the eigenvectors of this step's
    matrices, else those given (an earlier iteration's) are kept.

    Approximating ``psi'_ic psi'_ic2 ~ w_i beta_c beta_c2`` (``beta_c^2`` the mean of
    ``psi'_c^2`` over the rows, ``w_i`` the row's share) turns the costate term into
    ``Q V K^`` with the (d, d) Gram ``Q = N p^T diag(w) p`` and
    ``K^ = diag(beta) K~ diag(beta)``. In bases ``E``, ``F`` the approximation
    ``coef V + rho (V S + Q V K^)`` is replaced by its diagonal
    ``D_rj = coef + rho (lam_j + mu_r kappa_j)``, with ``lam_j = (E^T S E)_jj``,
    ``mu_r = (F^T Q F)_rr`` and ``kappa_j = (E^T K^ E)_jj``: ``P^-1 R = F ((F^T R E) / D)
    E^T``. In the eigenbases of ``S`` and ``Q`` it is exact for the ``I (x) S`` part and
    needs several times fewer iterations than the exact inverse of that part alone; in
    another iteration's bases it costs two small products instead of two eigensolves, and
    conjugate gradients converge to the same solution with any such (positive definite)
    preconditioner. Setup: one (d, N) x (N, d) product per step.
    """
    S, p, dpsi, Kt, use_Kt = op
    d, q = g.shape
    n = p.shape[0]
    beta2 = np.zeros(q)
    weights = np.zeros(n)
    for i in range(n):
        for c in range(q):
            v = dpsi[i, c] * dpsi[i, c]
            beta2[c] += v
            weights[i] += v
    total = 0.0
    for c in range(q):
        total += beta2[c]
        beta2[c] /= n
    scaled = np.empty((n, d), g.dtype)
    for i in range(n):
        w = n * weights[i] / total if total > 0.0 else 0.0  # mean 1 over the rows
        for rr in range(d):
            scaled[i, rr] = n * w * p[i, rr]  # Q = N p^T diag(w) p
    gram = np.empty((d, d), g.dtype)
    matmul(scaled.T, p, gram)
    lam_S, mu = np.empty(q), np.empty(d)
    if fresh:
        values, vectors = np.linalg.eigh(S.astype(np.float64))
        lam_S[:] = values
        E[:, :] = vectors
        values, vectors = np.linalg.eigh(gram.astype(np.float64))
        mu[:] = values
        F[:, :] = vectors
    else:
        _rayleigh_quotients(S, E, lam_S)
        _rayleigh_quotients(gram, F, mu)
    D = np.empty((d, q), g.dtype)
    for j in range(q):
        kappa = 0.0  # (E^T K^ E)_jj
        for c in range(q):
            if use_Kt:
                for c2 in range(q):
                    kappa += E[c, j] * E[c2, j] * Kt[c, c2] * math.sqrt(beta2[c] * beta2[c2])
            else:
                kappa += E[c, j] * E[c, j] * beta2[c]
        for rr in range(d):
            D[rr, j] = coef + rho * (lam_S[j] + mu[rr] * kappa)
    return D


@jit
def _rayleigh_quotients(A, B, out):
    """``out_j = (B^T A B)_jj`` for a symmetric ``A`` (m, m) and a basis ``B`` (m, m)."""
    AB = np.empty(A.shape, A.dtype)
    matmul(A, B, AB)
    for j in range(B.shape[1]):
        total = 0.0
        for c in range(B.shape[0]):
            total += B[c, j] * AB[c, j]
        out[j] = total


@jit
def _precondition(R, F, E, D, fr, out, FtR, rotated):
    """``out = P^-1 R`` of :func:`_cg` on the free entries; FtR, rotated (d, q) scratch."""
    matmul(F.T, R, FtR)
    matmul(FtR, E, rotated)
    for rr in range(R.shape[0]):
        for c in range(R.shape[1]):
            rotated[rr, c] /= D[rr, c]
    matmul(F, rotated, FtR)
    matmul(FtR, E.T, out)
    for rr in range(R.shape[0]):
        for c in range(R.shape[1]):
            if not fr[rr, c]:
                out[rr, c] = 0.0


@jit
def _l1_step(l1, op, h1d, rho, fr, G, h1r, Uo, Un, quadratic, solver, work, tmp):
    """l1 + bound: closed form (bang-bang) or FISTA; returns (iterations, prox residual).
    ``work`` (6, d, q) scratch, ``tmp`` the two (N, q) of :func:`_apply`."""
    reg, lam, bound = l1
    d, q = G.shape
    c_lin = work[0]
    for r in range(d):
        for c in range(q):
            c_lin[r, c] = G[r, c] + h1r[r, c] if fr[r, c] else 0.0
    if not quadratic:
        _switching_law(reg, c_lin, lam, bound, fr, Uo, Un)
        return 0, 0.0
    return _fista(l1, op, h1d, rho, fr, c_lin, Uo, Un, solver, work, tmp)


@jit
def _switching_law(reg, c_lin, lam, bound, fr, Uo, Un):
    """argmax ``<c_lin, U> - lam |U|`` over the ball / box: the switching law (docs/theory.md 4b)."""
    d, q = c_lin.shape
    prox(reg, c_lin, lam, np.inf, fr, Uo, Un)
    if reg == L1_GROUP:
        norm = math.sqrt(vdot(Un, Un))
        scale = bound / norm if norm > 0.0 else 0.0
        for r in range(d):
            for c in range(q):
                Un[r, c] = Un[r, c] * scale if fr[r, c] else Uo[r, c]
    else:
        for r in range(d):
            for c in range(q):
                if fr[r, c]:
                    Un[r, c] = math.copysign(bound, Un[r, c]) if Un[r, c] != 0.0 else 0.0


@jit
def _fista(l1, op, h1d, rho, fr, c_lin, Uo, Un, solver, work, tmp):
    """FISTA from ``U_old`` into ``Un`` on the smooth part ``f(U) = -<c, U> + h1d/2 |U|^2 +
    rho/2 (U - Uo).A(U - Uo)`` plus the l1 term; returns (iterations, prox residual)."""
    tol, max_iter = solver
    d, q = c_lin.shape
    scratch = np.empty((d, q), c_lin.dtype)
    L = _lipschitz(op, h1d, rho, fr, work[1], work[2], tmp, scratch)
    x, y, grad, trial, Av = Un, work[3], work[4], work[5], work[2]
    x_prev = np.empty_like(Un)
    x[:, :] = Uo
    y[:, :] = Uo
    t = 1.0
    resid = np.inf
    it = 0
    scale = math.sqrt(vdot(c_lin, c_lin)) + 1e-300
    while it < max_iter:
        it += 1
        _grad_smooth(y, Uo, c_lin, op, h1d, rho, fr, grad, Av, tmp, scratch)
        resid, t, done = fista_step(l1, L, t, tol, scale, fr, Uo, (x, y, grad, trial, x_prev))
        if done:
            break
    return it, resid


@jit
def _lipschitz(op, h1d, rho, fr, v, Av, tmp, scratch):
    """``1.1 lambda_max + 1e-300`` of ``h1d I + rho A`` on the free block, by 30 steps of
    power iteration; v, Av (d, q) scratch."""
    for r in range(v.shape[0]):
        for c in range(v.shape[1]):
            v[r, c] = 1.0 if fr[r, c] else 0.0
    L = 0.0
    for _ in range(30):  # power iteration on the free block
        nv = math.sqrt(vdot(v, v))
        if nv == 0.0:
            break
        for r in range(v.shape[0]):
            for c in range(v.shape[1]):
                v[r, c] /= nv
        _apply(v, op, h1d, rho, fr, Av, tmp, scratch)
        L = vdot(v, Av)
        v[:, :] = Av
    return 1.1 * L + 1e-300


@jit
def _grad_smooth(U, Uo, c_lin, op, h1d, rho, fr, out, Av, tmp, scratch):
    """Gradient of ``-<c, U> + h1d/2 |U|^2 + rho/2 (U - Uo).A(U - Uo)`` (free entries)."""
    diff = U - Uo
    _apply(diff, op, 0.0, rho, fr, Av, tmp, scratch)
    for r in range(U.shape[0]):
        for c in range(U.shape[1]):
            out[r, c] = (Av[r, c] - c_lin[r, c] + h1d * U[r, c]) if fr[r, c] else 0.0
