"""The loss Phi(X) = (1/N) sum_i l(P x_i, y_i) and its pullbacks.

Targets are passed as a float array ``y`` of shape (N, m_y): real targets for "squared" and
"lp", +-1 for "logistic" (m_y = m), the class index for "cross_entropy" (m_y = 1).
"""
import math

import numpy as np

from ._jit import jit

from .codes import CROSS_ENTROPY, LP, SQUARED
from .reductions import dot


@jit
def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@jit
def loss_and_grad(code, param, z, y, g):
    """Mean loss over the rows of ``z`` and its gradient.

    Parameters
    ----------
    code, param : int, float
        Loss code and parameter (the exponent ``p`` of "lp").
    z : ndarray, shape (N, m)
        Outputs ``P x_i``.
    y : ndarray, shape (N, m_y)
        Targets.
    g : ndarray, shape (N, m) or (0, m)
        Receives ``dPhi/dz = (1/N) dl/dz``; not written when it has no rows.

    Returns
    -------
    float
        ``Phi = (1/N) sum_i l(z_i, y_i)``.
    """
    n, m = z.shape
    want_grad = g.shape[0] > 0
    inv_n = 1.0 / n
    total = 0.0
    for i in range(n):
        if code == CROSS_ENTROPY:
            zmax = z[i, 0]
            for j in range(1, m):
                zmax = max(zmax, z[i, j])
            sum_exp = 0.0
            for j in range(m):
                sum_exp += math.exp(z[i, j] - zmax)
            label = int(y[i, 0])
            total += zmax + math.log(sum_exp) - z[i, label]
            if want_grad:
                for j in range(m):
                    g[i, j] = inv_n * math.exp(z[i, j] - zmax) / sum_exp
                g[i, label] -= inv_n
            continue
        for j in range(m):
            if code == SQUARED:
                r = z[i, j] - y[i, j]
                total += 0.5 * r * r
                dl = r
            elif code == LP:
                r = z[i, j] - y[i, j]
                a = abs(r)
                total += a**param
                if a == 0.0:
                    dl = 0.0
                else:
                    dl = param * a ** (param - 1.0) * (1.0 if r > 0.0 else -1.0)
            else:  # LOGISTIC: log(1 + exp(-y z))
                margin = y[i, j] * z[i, j]
                total += _softplus(-margin)
                # d/dz = -y sigmoid(-y z) = -y / (1 + exp(y z))
                if margin >= 0.0:
                    e = math.exp(-margin)
                    dl = -y[i, j] * e / (1.0 + e)
                else:
                    dl = -y[i, j] / (1.0 + math.exp(margin))
            if want_grad:
                g[i, j] = inv_n * dl
    return inv_n * total


@jit
def _selected_columns(P):
    """The column each row of ``P`` selects, if ``P`` is a selection matrix (every row one
    1 and zeros: the projections "last", "first", the identity), else an empty array."""
    m, d = P.shape
    cols = np.empty(m, np.int64)
    for r in range(m):
        found = -1
        for j in range(d):
            if P[r, j] == 1.0 and found < 0:
                found = j
            elif P[r, j] != 0.0:
                return cols[:0]
        if found < 0:
            return cols[:0]
        cols[r] = found
    return cols


@jit
def _project(x, P, z):
    """``z = x P^T``; a selection ``P`` (e.g. the identity readout) reads its columns
    instead of a matrix product. The readout has few rows (the outputs) and runs once per
    sweep: loops, not numba's ``np.dot``, whose every call site takes a second to compile."""
    cols = _selected_columns(P)
    if cols.shape[0] == 0:
        for i in range(x.shape[0]):
            for r in range(P.shape[0]):
                z[i, r] = dot(x[i], P[r])
        return cols
    for i in range(x.shape[0]):
        for r in range(cols.shape[0]):
            z[i, r] = x[i, cols[r]]
    return cols


@jit
def loss(code, param, x, P, y, z):
    """Phi(x) for states ``x`` (N, d), readout ``P`` (m, d); ``z`` (N, m) is scratch."""
    _project(x, P, z)
    return loss_and_grad(code, param, z, y, z[:0])


@jit
def pull_back(code, param, x, P, y, coef, p, gP, z, gz):
    """Subtract ``coef * grad Phi(x)`` from ``p`` and add ``coef * dPhi/dP`` to ``gP``.

    Parameters
    ----------
    x : ndarray, shape (N, d)
        States at one step.
    P : ndarray, shape (m, d)
        Readout.
    y : ndarray, shape (N, m_y)
        Targets.
    coef : float
        Weight of Phi at this step in J (``terminal`` at the last step, ``h * running`` before).
    p : ndarray, shape (N, d)
        Costate being assembled; ``grad_x Phi = (dPhi/dz) P`` is subtracted in place.
    gP : ndarray, shape (m, d) or (0, d)
        Gradient of J with respect to a trainable readout, accumulated when it has rows.
    z, gz : ndarray, shape (N, m)
        Scratch.

    Returns
    -------
    float
        ``Phi(x)``.
    """
    cols = _project(x, P, z)
    phi = loss_and_grad(code, param, z, y, gz)
    if cols.shape[0] > 0:  # grad_x = gz P, and row r of P is the unit vector e_cols[r]
        for i in range(p.shape[0]):
            for r in range(cols.shape[0]):
                p[i, cols[r]] -= coef * gz[i, r]
    else:
        for i in range(p.shape[0]):
            for r in range(P.shape[0]):
                w = coef * gz[i, r]
                for j in range(p.shape[1]):
                    p[i, j] -= w * P[r, j]
    if gP.shape[0] > 0:
        for i in range(x.shape[0]):
            for r in range(gP.shape[0]):
                w = coef * gz[i, r]
                for j in range(gP.shape[1]):
                    gP[r, j] += w * x[i, j]
    return phi


@jit
def losses_along(code, param, xs, P, y, out, z):
    """``out[k] = Phi(xs[k])`` for every step; ``xs`` (K + 1, N, d), ``out`` (K + 1,)."""
    for k in range(xs.shape[0]):
        out[k] = loss(code, param, xs[k], P, y, z)
