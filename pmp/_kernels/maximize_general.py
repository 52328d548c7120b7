"""The smooth part of the augmented Hamiltonian, and its gradient, for the fields not linear
in the control, ``f(x, u) = V sigma(W x + c)`` ("perceptron") and ``sigma(W x + c)``
("inner"), docs/theory.md section 8: what L-BFGS in :mod:`pmp.maximize.general` maximises."""
import numpy as np

from ._jit import jit
from .blas import matmul
from .activations import activate_with_curvature, activate_with_slope


@jit
def augmented_general(xs, ps, u, u_old, has_V, code, param, rho, values, grads):
    """Smooth part of Psi~_k (without R) and its gradient for ``V sigma(W x + c)``.

    With ``has_V = False`` the field is ``sigma(W x + c)`` ("inner", ``V`` unused). Per step,
    ``p = p_{k+1}``, ``F = sigma(z) V^T``, ``J = N (sigma'(z) * (p V)) W`` (the costate term
    ``(D_x f)^T p_hat``) and the same at the old control::

        Psi~ = <p, F> - rho/(2N) |F - F_old|^2 - rho/(2N) |J - J_old|^2

    ``u = (V, W, c)`` and ``u_old`` the controls, V (K, d, m), W (K, m, d), c (K, m);
    values (K,); ``grads = (gV, gW, gc)`` like the controls.
    """
    V, W, c = u
    Vo, Wo, co = u_old
    gV, gW, gc = grads
    K, n, d = xs.shape[0] - 1, xs.shape[1], xs.shape[2]
    m = W.shape[1]
    dt = xs.dtype
    # z, s, ds, dds, so, dso, F, Fo, g, go, J, Jo, e
    scratch = (np.empty((n, m), dt), np.empty((n, m), dt), np.empty((n, m), dt),
               np.empty((n, m), dt), np.empty((n, m), dt), np.empty((n, m), dt),
               np.empty((n, d), dt), np.empty((n, d), dt), np.empty((n, m), dt),
               np.empty((n, m), dt), np.empty((n, d), dt), np.empty((n, d), dt),
               np.empty((n, m), dt))
    for k in range(K):
        x, p = xs[k], ps[k + 1]
        values[k] = _value(x, p, (V[k], W[k], c[k]), (Vo[k], Wo[k], co[k]), has_V, code,
                           param, rho, scratch)
        _gradient(x, p, V[k], W[k], has_V, rho, scratch, (gV[k], gW[k], gc[k]))


@jit
def _value(x, p, u, u_old, has_V, code, param, rho, scratch):
    """Psi~_k of :func:`augmented_general` at one step (``u``, ``u_old`` the step's
    controls). Leaves in ``scratch`` what :func:`_gradient` reads: ``s``, ``ds``, ``dds`` at
    ``u``, ``g = p V``, ``z = sigma' * g``, ``F = p - rho/N (F - F_old)`` and
    ``J = N (J - J_old)``."""
    V, W, c = u
    Vo, Wo, co = u_old
    z, s, ds, dds, so, dso, F, Fo, g, go, J, Jo, e = scratch
    n, d = x.shape
    m = W.shape[0]
    matmul(x, W.T, z)
    for i in range(n):
        for r in range(m):
            z[i, r] += c[r]
    activate_with_curvature(code, param, z, s, ds, dds)
    matmul(x, Wo.T, z)
    for i in range(n):
        for r in range(m):
            z[i, r] += co[r]
    activate_with_slope(code, param, z, so, dso)
    if has_V:
        matmul(s, V.T, F)
        matmul(so, Vo.T, Fo)
        matmul(p, V, g)
        matmul(p, Vo, go)
    else:
        F[:, :] = s
        Fo[:, :] = so
        g[:, :] = p
        go[:, :] = p
    for i in range(n):
        for r in range(m):
            z[i, r] = ds[i, r] * g[i, r]
            so[i, r] = dso[i, r] * go[i, r]
    matmul(z, W, J)
    matmul(so, Wo, Jo)
    val = 0.0
    fdiff = 0.0
    jdiff = 0.0
    for i in range(n):
        for j in range(d):
            val += p[i, j] * F[i, j]
            df = F[i, j] - Fo[i, j]
            dj = n * (J[i, j] - Jo[i, j])
            fdiff += df * df
            jdiff += dj * dj
            F[i, j] = p[i, j] - rho / n * df  # F reused: cc = p - rho/N (F - F_old)
            J[i, j] = dj  # J reused: E = J - J_old (with the factor N)
    return val - rho / (2.0 * n) * (fdiff + jdiff)


@jit
def _gradient(x, p, V, W, has_V, rho, scratch, grads):
    """The gradient of :func:`_value` at one step into ``grads = (gV, gW, gc)``, the step's
    rows, from what :func:`_value` left in ``scratch``."""
    z, s, ds, dds, so, dso, F, Fo, g, go, J, Jo, e = scratch
    gV, gW, gc = grads
    n, d = x.shape
    m = W.shape[0]
    # a = sigma' * (cc V); gradient of <cc, F>
    if has_V:
        matmul(F.T, s, gV)
        matmul(F, V, go)  # go reused: cc V
    else:
        go[:, :] = F
    matmul(J, W.T, e)  # e = E W^T
    for i in range(n):
        for r in range(m):
            # a - rho e * g * sigma'' (E = J - J_old carries the N of p_hat)
            go[i, r] = ds[i, r] * go[i, r] - rho * e[i, r] * g[i, r] * dds[i, r]
    matmul(go.T, x, gW)
    for r in range(m):
        acc = 0.0
        for i in range(n):
            acc += go[i, r]
        gc[r] = acc
    # the costate term through W directly: - rho (sigma' * g)^T E; through V: - rho p^T (e sigma')
    matmul(z.T, J, gW, -rho, 1.0)
    if has_V:
        for i in range(n):
            for r in range(m):
                e[i, r] *= ds[i, r]
        matmul(p.T, e, gV, -rho, 1.0)
