"""Per-step maximisation of the (augmented) Hamiltonian for the "diagonal" field
``f = diag(w) sigma(x)``, docs/theory.md sections 4, 5 and 8: the linear case of
:mod:`.maximize_linear` coordinate by coordinate.

Tuples of arguments: ``l1 = (reg, lam, bound)`` (``reg`` L2, L1_GROUP or L1_ELEMENTWISE,
``bound`` unused for L2), ``h1 = (h1_diag, h1_rhs)`` (K,), (K, d) the Jacobi terms of the
H^1 regulariser (zeros without it), ``solver = (tol, max_inner)`` of FISTA.
"""
import math

import numpy as np

from ._jit import jit
from .activations import activate_with_slope
from .codes import L1_ELEMENTWISE, L1_GROUP, L2
from .prox import fista_step, soft_clip, switching


@jit
def diagonal_maximize(xs, ps, code, param, w_old, free, l1, rho, h1, solver, w_new, info):
    """Maximise Psi~_k for ``f = diag(w) sigma(x)``: every coordinate is a scalar problem.

    ``Psi~_k(w) = <g, w> - R(w) - (rho/2) sum_j a_j dw_j^2 - h1_diag/2 |w|^2 + <h1_rhs, w>``
    with ``g_j = sum_i p_ij sigma_ij`` and
    ``a_j = (1/N) sum_i sigma_ij^2 + N sum_i p_ij^2 sigma'_ij^2``. Arrays (K, d); the group
    l1 (not separable) is solved by FISTA on the diagonal quadratic. ``info[k]`` = (gain,
    residual, iterations, switching function).
    """
    reg, lam = l1[0], l1[1]
    h1_diag, h1_rhs = h1
    K, n, d = xs.shape[0] - 1, xs.shape[1], xs.shape[2]
    s = np.empty((n, d), xs.dtype)
    ds = np.empty((n, d), xs.dtype)
    g = np.empty(d)
    a = np.empty(d)
    width = d if reg == L1_GROUP else 0  # FISTA's (1, d) arrays: grad, trial; x, y, x_prev
    work = (np.empty((2, 1, width)), np.empty((3, 1, width), w_old.dtype))
    for k in range(K):
        p = ps[k + 1]
        activate_with_slope(code, param, xs[k], s, ds)
        for j in range(d):
            g[j] = 0.0
            a[j] = 0.0
        for i in range(n):
            for j in range(d):
                g[j] += p[i, j] * s[i, j]
                a[j] += s[i, j] * s[i, j] / n + n * (p[i, j] * ds[i, j]) ** 2
        wo, wn, fr = w_old[k], w_new[k], free[k]
        info[k, 3] = switching(reg, g.reshape(1, d), fr.reshape(1, d))
        resid = 0.0
        iters = 0
        if reg == L2:
            gain = _l2_step(g, a, wo, wn, fr, lam, rho, h1_diag[k], h1_rhs[k])
        else:
            if reg == L1_ELEMENTWISE or (rho == 0.0 and h1_diag[k] == 0.0):
                _l1_closed_form(g, a, wo, wn, fr, l1, rho, h1_diag[k], h1_rhs[k])
            else:
                iters, resid = _l1_fista(g, a, wo, wn, fr, l1, rho, h1_diag[k], h1_rhs[k],
                                         solver, work)
            gain = _l1_gain(reg, lam, g, a, wo, wn, rho, h1_diag[k], h1_rhs[k])
        info[k, 0] = gain
        info[k, 1] = resid
        info[k, 2] = iters


@jit
def _l2_step(g, a, wo, wn, fr, lam, rho, h1d, h1r):
    """l2 (and h1): the closed form per coordinate; returns the gain."""
    gain = 0.0
    for j in range(g.shape[0]):
        m = 2.0 * lam + h1d + rho * a[j]
        grad = g[j] + h1r[j] - (2.0 * lam + h1d) * wo[j]
        delta = grad / m if fr[j] else 0.0
        wn[j] = wo[j] + delta
        gain += grad * delta - 0.5 * m * delta * delta
    return gain


@jit
def _l1_closed_form(g, a, wo, wn, fr, l1, rho, h1d, h1r):
    """The elementwise l1 (soft threshold and clip per coordinate; bang-bang without a
    quadratic), and the group l1 without a quadratic (the switching law)."""
    reg, lam, bound = l1
    d = g.shape[0]
    for j in range(d):
        m = h1d + rho * a[j]
        c = g[j] + h1r[j] + rho * a[j] * wo[j]
        if not fr[j]:
            wn[j] = wo[j]
        elif m == 0.0 and reg == L1_ELEMENTWISE:
            wn[j] = math.copysign(bound, c) if abs(c) > lam else 0.0
        elif reg == L1_ELEMENTWISE:
            wn[j] = soft_clip(c, lam, m, bound)
        else:  # group, no quadratic: switching law
            wn[j] = c
    if reg == L1_GROUP:
        norm = math.sqrt(np.sum(wn * wn))
        scale = bound / norm if norm > lam else 0.0
        for j in range(d):
            wn[j] = wn[j] * scale if fr[j] else wo[j]


@jit
def _l1_fista(g, a, wo, wn, fr, l1, rho, h1d, h1r, solver, work):
    """Group l1 with a quadratic: FISTA on the diagonal quadratic; returns (iterations, prox
    residual). ``work`` the (2, 1, d) and (3, 1, d) arrays of :func:`diagonal_maximize`."""
    tol, max_inner = solver
    d = g.shape[0]
    grad, trial = work[0][0], work[0][1]
    x, y, x_prev = work[1][0], work[1][1], work[1][2]
    L = 1.1 * (h1d + rho * np.max(a)) + 1e-300
    x[0, :] = wo
    y[0, :] = wo
    t = 1.0
    scale = math.sqrt(np.sum(g * g)) + 1e-300
    iters = 0
    resid = 0.0
    fr2, wo2 = fr.reshape(1, d), wo.reshape(1, d)
    while iters < max_inner:
        iters += 1
        for j in range(d):
            grad[0, j] = rho * a[j] * (y[0, j] - wo[j]) + h1d * y[0, j] - g[j] - h1r[j]
        resid, t, done = fista_step(l1, L, t, tol, scale, fr2, wo2, (x, y, grad, trial, x_prev))
        if done:
            break
    wn[:] = x[0]
    return iters, resid


@jit
def _l1_gain(reg, lam, g, a, wo, wn, rho, h1d, h1r):
    """The gain ``Psi~_k(w_new) - Psi~_k(w_old)`` of an l1 step."""
    norm_new = math.sqrt(np.sum(wn * wn)) if reg == L1_GROUP else np.sum(np.abs(wn))
    norm_old = math.sqrt(np.sum(wo * wo)) if reg == L1_GROUP else np.sum(np.abs(wo))
    gain = -lam * (norm_new - norm_old)
    for j in range(g.shape[0]):
        dw = wn[j] - wo[j]
        gain += (g[j] + h1r[j] - h1d * wo[j]) * dw \
            - 0.5 * (rho * a[j] + h1d) * dw * dw
    return gain
