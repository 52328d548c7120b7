"""Forward (state) and backward (costate) sweeps of the explicit Euler ResNet, per field.

Row (batch) form, THEORY.md section 1-3: states ``xs[k]`` of shape (N, d),
``X_{k+1} = X_k + h F(X_k, u_k)``; costates ``p_K = -terminal grad Phi(X_K)`` and
``p_k = p_{k+1} + h (D_x F)^T p_{k+1} - h running grad Phi(X_k)``. The backward kernels also
write the Hamiltonian part of the gradient, ``-h d<p_{k+1}, F(X_k, u_k)>/du_k``; the Python
wrappers add the regulariser's.

Activations are recomputed from the stored states in the backward sweep instead of being
stored by the forward sweep: it keeps memory at states + costates (sigma and sigma' are
evaluated together, once per step).

Every kernel writes into preallocated outputs and scratch arrays; the backward kernels return
the loss values they met on the way.
"""
import numpy as np

from ._jit import jit
from .activations import activate, activate_with_slope
from .readout import pull_back


# ----------------------------------------------------------------------------- helpers
@jit
def _affine(x, W, c, z):
    """``z = x W^T + c``; x (N, d), W (m, d), c (m,), z (N, m)."""
    np.dot(x, W.T, z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += c[j]


@jit
def _euler(x, f, b, h, x_next):
    """``x_next = x + h (f + b)``; b (d,) is broadcast over rows."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x_next[i, j] = x[i, j] + h * (f[i, j] + b[j])


@jit
def _scaled_column_sums(a, coef, out):
    """``out[j] = coef * sum_i a[i, j]``."""
    for j in range(a.shape[1]):
        out[j] = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j] += a[i, j]
    for j in range(a.shape[1]):
        out[j] *= coef


@jit
def _scaled_gram(a, b, coef, out):
    """``out = coef a^T b``; a (N, n), b (N, m), out (n, m)."""
    np.dot(a.T, b, out)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] *= coef


@jit
def _multiply(a, b):
    """``a *= b`` elementwise."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] *= b[i, j]


@jit
def _costate_step(p_next, h, v, p):
    """``p = p_next + h v``."""
    for i in range(p.shape[0]):
        for j in range(p.shape[1]):
            p[i, j] = p_next[i, j] + h * v[i, j]


@jit
def _terminal(xs, ps, ro, gP, z, gz):
    """``p_K = -terminal grad Phi(X_K)``; returns Phi(X_K).

    With the flag ``ro[6]`` false, ``ps[-1]`` is given (a segment of a segmented sweep that
    ends inside the grid) and 0 is returned."""
    code, param, P, y, terminal, running, at_end = ro
    if not at_end:
        return 0.0
    ps[-1, :, :] = 0.0
    return pull_back(code, param, xs[-1], P, y, terminal, ps[-1], gP, z, gz)


@jit
def _running(k, h, xs, ps, ro, gP, z, gz):
    """Running-cost pullback at step k; returns Phi(X_k) (0 without a running cost)."""
    code, param, P, y, terminal, running, at_end = ro
    if running != 0.0:
        return pull_back(code, param, xs[k], P, y, h * running, ps[k], gP, z, gz)
    return 0.0


# ------------------------------------------------------------ "outer": W sigma(x) + b
@jit
def outer_forward(xs, W, b, h, act, aparam, s, zero_bias):
    """States of ``x' = W sigma(x) + b``.

    Parameters
    ----------
    xs : ndarray, shape (K + 1, N, d)
        ``xs[0]`` holds the inputs on entry; the other steps are written.
    W : ndarray, shape (K, d, d)
    b : ndarray, shape (K, d)
    h : float
    act, aparam : int, float
        Activation code and parameter.
    s : ndarray, shape (N, d)
        Scratch.
    zero_bias : ndarray, shape (d,)
        Unused here (uniform signature with the other fields).
    """
    for k in range(W.shape[0]):
        activate(act, aparam, xs[k], s)
        np.dot(s, W[k].T, xs[k + 1])
        _euler(xs[k], xs[k + 1], b[k], h, xs[k + 1])


@jit
def outer_backward(xs, ps, W, b, h, act, aparam, ro, gW, gb, gP, s, ds, q, z, gz):
    """Costates and Hamiltonian gradients of ``x' = W sigma(x) + b``.

    ``ro`` is the readout tuple (loss code, loss param, P, y, terminal, running, at_end);
    ``gW`` (K, d, d), ``gb`` (K, d), ``gP`` (m, d) or (0, d) receive gradients; ``s``, ``ds``,
    ``q`` (N, d), ``z``, ``gz`` (N, m) are scratch. Returns ``(Phi(X_K), sum_{k<K} Phi(X_k))``
    (the sum is 0 without a running cost); the other backward kernels return the same.
    """
    phi = _terminal(xs, ps, ro, gP, z, gz)
    run = 0.0
    for k in range(W.shape[0] - 1, -1, -1):
        activate_with_slope(act, aparam, xs[k], s, ds)
        _scaled_gram(ps[k + 1], s, -h, gW[k])
        _scaled_column_sums(ps[k + 1], -h, gb[k])
        np.dot(ps[k + 1], W[k], q)
        _multiply(q, ds)
        _costate_step(ps[k + 1], h, q, ps[k])
        run += _running(k, h, xs, ps, ro, gP, z, gz)
    return phi, run


# ------------------------------------------------------------ "inner": sigma(W x + b)
@jit
def inner_forward(xs, W, b, h, act, aparam, s, zero_bias):
    """States of ``x' = sigma(W x + b)``; arguments as :func:`outer_forward`."""
    for k in range(W.shape[0]):
        _affine(xs[k], W[k], b[k], s)
        activate(act, aparam, s, s)
        _euler(xs[k], s, zero_bias, h, xs[k + 1])


@jit
def inner_backward(xs, ps, W, b, h, act, aparam, ro, gW, gb, gP, s, ds, q, z, gz):
    """Costates and gradients of ``x' = sigma(W x + b)``; as :func:`outer_backward`."""
    phi = _terminal(xs, ps, ro, gP, z, gz)
    run = 0.0
    for k in range(W.shape[0] - 1, -1, -1):
        _affine(xs[k], W[k], b[k], q)
        activate_with_slope(act, aparam, q, s, ds)
        _multiply(ds, ps[k + 1])  # a = sigma'(z) * p
        _scaled_gram(ds, xs[k], -h, gW[k])
        _scaled_column_sums(ds, -h, gb[k])
        np.dot(ds, W[k], q)
        _costate_step(ps[k + 1], h, q, ps[k])
        run += _running(k, h, xs, ps, ro, gP, z, gz)
    return phi, run


# ------------------------------------------------------------ "diagonal": w * sigma(x)
@jit
def diagonal_forward(xs, w, h, act, aparam, s, zero_bias):
    """States of ``x' = diag(w) sigma(x)``; ``w`` (K, d)."""
    for k in range(w.shape[0]):
        activate(act, aparam, xs[k], s)
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                s[i, j] *= w[k, j]
        _euler(xs[k], s, zero_bias, h, xs[k + 1])


@jit
def diagonal_backward(xs, ps, w, h, act, aparam, ro, gw, gP, s, ds, z, gz):
    """Costates and gradients of ``x' = diag(w) sigma(x)``; ``gw`` (K, d)."""
    phi = _terminal(xs, ps, ro, gP, z, gz)
    run = 0.0
    n, d = s.shape
    for k in range(w.shape[0] - 1, -1, -1):
        activate_with_slope(act, aparam, xs[k], s, ds)
        _multiply(s, ps[k + 1])
        _scaled_column_sums(s, -h, gw[k])
        for i in range(n):
            for j in range(d):
                ds[i, j] *= w[k, j] * ps[k + 1, i, j]
        _costate_step(ps[k + 1], h, ds, ps[k])
        run += _running(k, h, xs, ps, ro, gP, z, gz)
    return phi, run


# --------------------------------------------- "features": A phi(Omega x + beta), fixed Omega
@jit
def features_forward(xs, A, omega, beta, h, feat, fparam, phi, zero_bias):
    """States of ``x' = A phi(Omega x + beta)``.

    ``A`` (K, d, q), ``omega`` (q, d), ``beta`` (q,); ``phi`` (N, q) scratch.
    """
    for k in range(A.shape[0]):
        _affine(xs[k], omega, beta, phi)
        activate(feat, fparam, phi, phi)
        np.dot(phi, A[k].T, xs[k + 1])
        _euler(xs[k], xs[k + 1], zero_bias, h, xs[k + 1])


@jit
def features_backward(xs, ps, A, omega, beta, h, feat, fparam, ro, gA, gP, zf, phi, dphi, q, z, gz):
    """Costates and gradients of ``x' = A phi(Omega x + beta)``; ``gA`` (K, d, q).

    ``zf``, ``phi``, ``dphi`` (N, q) and ``q`` (N, d) are scratch.
    """
    out = _terminal(xs, ps, ro, gP, z, gz)
    run = 0.0
    for k in range(A.shape[0] - 1, -1, -1):
        _affine(xs[k], omega, beta, zf)
        activate_with_slope(feat, fparam, zf, phi, dphi)
        _scaled_gram(ps[k + 1], phi, -h, gA[k])
        np.dot(ps[k + 1], A[k], zf)  # zf reused: (p A) of shape (N, q)
        _multiply(dphi, zf)
        np.dot(dphi, omega, q)
        _costate_step(ps[k + 1], h, q, ps[k])
        run += _running(k, h, xs, ps, ro, gP, z, gz)
    return out, run


# ----------------------------------------- "perceptron": V sigma(W x + c) (Marion et al.)
@jit
def perceptron_forward(xs, V, W, c, h, act, aparam, s, zero_bias):
    """States of ``x' = V sigma(W x + c)``; ``V`` (K, d, m), ``W`` (K, m, d), ``c`` (K, m).

    ``s`` (N, m) scratch.
    """
    for k in range(V.shape[0]):
        _affine(xs[k], W[k], c[k], s)
        activate(act, aparam, s, s)
        np.dot(s, V[k].T, xs[k + 1])
        _euler(xs[k], xs[k + 1], zero_bias, h, xs[k + 1])


@jit
def perceptron_backward(xs, ps, V, W, c, h, act, aparam, ro, gV, gW, gc, gP, zw, s, ds, q, z, gz):
    """Costates and gradients of ``x' = V sigma(W x + c)``.

    ``zw``, ``s``, ``ds`` (N, m) and ``q`` (N, d) are scratch.
    """
    phi = _terminal(xs, ps, ro, gP, z, gz)
    run = 0.0
    for k in range(V.shape[0] - 1, -1, -1):
        _affine(xs[k], W[k], c[k], zw)
        activate_with_slope(act, aparam, zw, s, ds)
        _scaled_gram(ps[k + 1], s, -h, gV[k])
        np.dot(ps[k + 1], V[k], zw)  # zw reused: (p V) of shape (N, m)
        _multiply(ds, zw)
        _scaled_gram(ds, xs[k], -h, gW[k])
        _scaled_column_sums(ds, -h, gc[k])
        np.dot(ds, W[k], q)
        _costate_step(ps[k + 1], h, q, ps[k])
        run += _running(k, h, xs, ps, ro, gP, z, gz)
    return phi, run


@jit
def hamiltonians(xs, ps, running_phis, reg_values, h, running):
    """Per-step ``H_k = <p_{k+1}, X_{k+1}> - h (running Phi(X_k) + R(u_k))``.

    ``X_k + h F(X_k, u_k) = X_{k+1}``, so the stored next state is used. ``running_phis``
    (K + 1,) holds Phi(X_k) (only read when ``running != 0``), ``reg_values`` (K,) R(u_k).
    Returns ndarray, shape (K,).
    """
    K = xs.shape[0] - 1
    out = np.empty(K)
    for k in range(K):
        acc = 0.0
        for i in range(xs.shape[1]):
            for j in range(xs.shape[2]):
                acc += ps[k + 1, i, j] * xs[k + 1, i, j]
        run = running * running_phis[k] if running != 0.0 else 0.0
        out[k] = acc - h * (run + reg_values[k])
    return out
