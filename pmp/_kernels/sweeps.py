"""Forward (state) and backward (costate) sweeps of the explicit Euler ResNet, per field.

Row (batch) form, docs/theory.md section 1-3: states ``xs[k]`` of shape (N, d),
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

from ._jit import jit, jit_inline, jit_sum
from .blas import matmul
from .activations import activate, activate_rows, activate_with_slope, value_and_slope
from .codes import IDENTITY, RELU, SIGMOID, TANH
from .readout import pull_back
from .reductions import vector_sum


# ----------------------------------------------------------------------------- helpers
@jit
def _affine(x, W, c, z):
    """``z = x W^T + c``; x (N, d), W (m, d), c (m,), z (N, m)."""
    matmul(x, W.T, z)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += c[j]


@jit
def _euler(x, f, b, h, x_next):
    """``x_next = x + h (f + b)``; b (d,) is broadcast over rows; ``x_next`` must not be
    ``f`` (see :func:`_euler_in_place`)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x_next[i, j] = x[i, j] + h * (f[i, j] + b[j])


@jit
def _euler_in_place(x, f, b, h):
    """``f = x + h (f + b)``. A loop of its own: written as :func:`_euler` with
    ``x_next = f``, the store aliases a load, LLVM's run-time overlap check fails and the
    loop runs scalar."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            f[i, j] = x[i, j] + h * (f[i, j] + b[j])


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
    matmul(a.T, b, out, coef)


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
def _slope(code, param, z, s):
    """sigma'(z) given ``s = sigma(z)``: from ``s`` alone for the activations of
    :data:`SLOPE_FROM_VALUE` (so that stored activations serve), else from ``z``."""
    if code == TANH:
        return 1.0 - s * s
    if code == SIGMOID:
        return s * (1.0 - s)
    if code == RELU:
        return 1.0 if s > 0.0 else 0.0
    if code == IDENTITY:
        return 1.0
    return value_and_slope(code, param, z)[1]


@jit
def _costate_with_slope(code, param, z, s, q, p_next, h, p, gb):
    """Fused ``p = p_next + h (q * sigma'(z))`` and ``gb = -h sum_i p_next[i]``.

    One pass instead of three over (N, d) arrays; same operations in the same order as
    the unfused form, so the results are identical bit for bit."""
    n, d = p.shape
    for j in range(d):
        gb[j] = 0.0
    if code == TANH:  # a loop of its own, so that it vectorises
        one = p.dtype.type(1.0)  # a float literal would run float32 sweeps in float64
        for i in range(n):
            for j in range(d):
                gb[j] += p_next[i, j]
                p[i, j] = p_next[i, j] + h * (q[i, j] * (one - s[i, j] * s[i, j]))
    else:
        for i in range(n):
            for j in range(d):
                gb[j] += p_next[i, j]
                p[i, j] = p_next[i, j] + h * (q[i, j] * _slope(code, param, z[i, j], s[i, j]))
    for j in range(d):
        gb[j] *= -h


@jit
def _weight_by_slope(code, param, z, s, p_next, a, gb):
    """Fused ``a = sigma'(z) * p_next`` and the column sums ``gb[j] = sum_i a[i, j]``
    (``a`` may be ``z``: each entry is read before it is written)."""
    n, d = a.shape
    for j in range(d):
        gb[j] = 0.0
    for i in range(n):
        for j in range(d):
            a[i, j] = _slope(code, param, z[i, j], s[i, j]) * p_next[i, j]
            gb[j] += a[i, j]


@jit_inline
def _terminal(xs, ps, ro, gP, z, gz, r0, r1):
    """``p_K = -terminal grad Phi(X_K)`` on rows ``r0:r1``; returns Phi(X_K) (their mean).

    With the flag ``ro[6]`` false, ``p_K`` is given (a segment of a segmented sweep that
    ends inside the grid) and 0 is returned."""
    code, param, P, y, terminal, running, at_end = ro
    if not at_end:
        return 0.0
    K = xs.shape[0] - 1
    p = ps[K % ps.shape[0], r0:r1]
    p[:, :] = 0.0
    return pull_back(code, param, xs[K, r0:r1], P, y, terminal, p, gP, z, gz)


@jit_inline
def _running(k, h, xs, ps, ro, gP, z, gz, r0, r1):
    """Running-cost pullback at step k on rows ``r0:r1``; returns Phi(X_k) (0 without a
    running cost)."""
    code, param, P, y, terminal, running, at_end = ro
    if running != 0.0:
        return pull_back(code, param, xs[k, r0:r1], P, y, h * running,
                         ps[k % ps.shape[0], r0:r1], gP, z, gz)
    return 0.0


# Every sweep kernel works on the rows r0:r1 of the samples (samples evolve independently,
# so row blocks can run on separate threads) and indexes the costates by ``k % len(ps)``:
# ``ps`` holds either the whole grid (K + 1 steps) or two rolling slots when only the
# gradient is wanted. The scratch arrays and the targets ``ro[3]`` are the block's own.


# ------------------------------------------------------------ "outer": W sigma(x) + b
@jit
def outer_forward(xs, W, b, h, act, aparam, ss, final_only, r0, r1):
    """States of ``x' = W sigma(x) + b`` on the rows ``r0:r1``.

    Parameters
    ----------
    xs : ndarray, shape (K + 1, N, d)
        ``xs[0]`` holds the inputs on entry; the other steps are written.
    W : ndarray, shape (K, d, d)
    b : ndarray, shape (K, d)
    h : float
    act, aparam : int, float
        Activation code and parameter.
    ss : ndarray, shape (K, N, d) or (1, N, d)
        Receives ``sigma(X_k)`` at every step (kept for the backward sweep) or is scratch.
    final_only : bool
        Only ``X_K`` is wanted: the steps in between go to the slots 1 and 2 in turn, which
        stay in cache, instead of streaming the whole trajectory out to memory.
    r0, r1 : int
        The rows (samples) to sweep.
    """
    K = W.shape[0]
    rolling = final_only and K > 3
    for k in range(K):
        x = xs[1 + k % 2 if rolling and 0 < k else k, r0:r1]
        x1 = xs[1 + (k + 1) % 2 if rolling and k + 1 < K else k + 1, r0:r1]
        s = ss[k % ss.shape[0], r0:r1]
        activate(act, aparam, x, s)
        matmul(s, W[k].T, x1)
        _euler_in_place(x, x1, b[k], h)


@jit
def outer_backward(xs, ps, W, b, h, act, aparam, ro, gW, gb, gP, ss, stored, q, z, gz, r0, r1):
    """Costates and Hamiltonian gradients of ``x' = W sigma(x) + b`` on the rows ``r0:r1``.

    ``ro`` is the readout tuple (loss code, loss param, P, y, terminal, running, at_end);
    ``gW`` (K, d, d), ``gb`` (K, d), ``gP`` (m, d) or (0, d) receive gradients; ``ss`` holds
    the forward sweep's ``sigma(X_k)`` when ``stored``, else is (1, N, d) scratch; ``q``
    (N_rows, d), ``z``, ``gz`` (N_rows, m) are scratch. Returns ``(Phi(X_K),
    sum_{k<K} Phi(X_k))`` over these rows (the sum is 0 without a running cost); the other
    backward kernels return the same.
    """
    phi = _terminal(xs, ps, ro, gP, z, gz, r0, r1)
    run = 0.0
    L = ps.shape[0]
    for k in range(W.shape[0] - 1, -1, -1):
        x, p_next, p = xs[k, r0:r1], ps[(k + 1) % L, r0:r1], ps[k % L, r0:r1]
        s = ss[k % ss.shape[0], r0:r1]
        if not stored:
            activate(act, aparam, x, s)
        _scaled_gram(p_next, s, -h, gW[k])
        matmul(p_next, W[k], q)
        _costate_with_slope(act, aparam, x, s, q, p_next, h, p, gb[k])
        run += _running(k, h, xs, ps, ro, gP, z, gz, r0, r1)
    return phi, run


# "outer" with a small state dimension (d <= codes.SMALL_DIM). One BLAS call per (N_rows x d) x
# (d x d) product costs more than the product itself there (the call's fixed cost exceeds
# the few multiply-adds per row), so these kernels keep the block's states and
# costates transposed, (d, N_rows), where every product is d^2 vectorised row updates.


@jit_sum
def _dots3(a, b0, b1, b2):
    """``(a.b0, a.b1, a.b2)`` in one pass over ``a`` (each vector once, not three times)."""
    s0 = s1 = s2 = 0.0
    for i in range(a.shape[0]):
        s0 += a[i] * b0[i]
        s1 += a[i] * b1[i]
        s2 += a[i] * b2[i]
    return s0, s1, s2


@jit_sum
def _weighted_dots3(a, b, w0, w1, w2):
    """``sum_i a_i b_i w_i`` for the three weights ``w0``, ``w1``, ``w2``, in one pass."""
    s0 = s1 = s2 = 0.0
    for i in range(a.shape[0]):
        ab = a[i] * b[i]
        s0 += ab * w0[i]
        s1 += ab * w1[i]
        s2 += ab * w2[i]
    return s0, s1, s2


@jit
def _transpose_in(a, t):
    """``t = a^T``; a (n, d), t (d, n). Row by row of ``t``: the stores are contiguous and
    vectorise (in the other loop order they are strided and do not)."""
    for j in range(a.shape[1]):
        for i in range(a.shape[0]):
            t[j, i] = a[i, j]


@jit
def _transpose_out(t, a):
    """``a = t^T``; t (d, n), a (n, d). Row by row of ``t``: the loads are contiguous and
    vectorise (in the other loop order they are strided and do not)."""
    for j in range(a.shape[1]):
        for i in range(a.shape[0]):
            a[i, j] = t[j, i]


@jit
def outer_forward_small(xs, W, b, h, act, aparam, ss, xt, st, final_only, r0, r1):
    """:func:`outer_forward` for a small ``d``; ``xt``, ``st`` (2, d, N_rows) and (d, N_rows)
    scratch; ``final_only``: write ``X_K`` only (the states are kept transposed in between).

    A full store ``ss`` keeps sigma(X_k) *transposed within the block*: its rows ``r0:r1``
    hold a (d, N_rows) array, the layout :func:`outer_backward_small` reads, so neither
    sweep transposes it. Both must therefore run on the same row blocks.
    """
    d, n = st.shape
    _transpose_in(xs[0, r0:r1], xt[0])
    keep = ss.shape[0] == W.shape[0]  # keep sigma(X_k) for the backward sweep
    for k in range(W.shape[0]):
        x, x1 = xt[k % 2], xt[(k + 1) % 2]
        if keep:
            st = ss[k, r0:r1].reshape((d, n))
        activate_rows(act, aparam, x, st)
        # x1 = x + h (b + W sigma) in d passes per row: the first product starts from b and
        # the Euler step takes the last one (the operations and their order are unchanged)
        for j in range(d):
            c, w = b[k, j], W[k, j, 0]
            if d == 1:
                for i in range(n):
                    x1[j, i] = x[j, i] + h * (c + w * st[0, i])
                continue
            for i in range(n):
                x1[j, i] = c + w * st[0, i]
            for m in range(1, d - 1):
                w = W[k, j, m]
                for i in range(n):
                    x1[j, i] += w * st[m, i]
            w = W[k, j, d - 1]
            for i in range(n):
                x1[j, i] = x[j, i] + h * (x1[j, i] + w * st[d - 1, i])
        if not final_only or k == W.shape[0] - 1:
            _transpose_out(x1, xs[k + 1, r0:r1])


@jit
def outer_backward_small(xs, ps, W, b, h, act, aparam, ro, gW, gb, gP, ss, stored, scratch,
                         sums, r0, r1):
    """:func:`outer_backward` for a small ``d``.

    ``scratch`` is ``(xt, st, pt, qt, z, gz)``: four (d, N_rows) arrays and the readout's
    two (N_rows, m). ``sums`` is ``(sG, sS, sQ)``, of shapes (K, d, d + 1), (K, d + 1, d + 1)
    and (K, d, d, d), unless empty (shape[0] == 0): they receive the sums over the rows that
    the MSA's maximisation needs (:func:`pmp._kernels.maximize_linear.linear_maximize_sums`):
    ``G_k = p^T [sigma 1]``, ``[sigma 1]^T [sigma 1]`` and, for every column c,
    ``sum_i sigma'_ic^2 p_i p_i^T``, with ``p = p_{k+1}`` and ``sigma = sigma(X_k)``, while
    both are at hand.
    """
    xt, st, pt, qt, z, gz = scratch
    sG, sS, sQ = sums
    phi = _terminal(xs, ps, ro, gP, z, gz, r0, r1)
    run = 0.0
    L = ps.shape[0]
    d, n = pt.shape
    _transpose_in(ps[W.shape[0] % L, r0:r1], pt)
    keep = L == W.shape[0] + 1 or ro[5] != 0.0  # full costates wanted, or a running cost
    statistics = sG.shape[0] > 0
    weights = np.empty((d, n if statistics else 0), pt.dtype)
    one = pt.dtype.type(1.0)  # a float literal would run float32 sweeps in float64
    for k in range(W.shape[0] - 1, -1, -1):
        if stored:  # then the slope follows from sigma alone (SLOPE_FROM_VALUE)
            st = ss[k, r0:r1].reshape((d, n))  # transposed in the block: see the forward
        else:
            _transpose_in(xs[k, r0:r1], xt)
            activate_rows(act, aparam, xt, st)
        for j in range(d):
            total = vector_sum(pt[j])
            gb[k, j] = -h * total
            for m in range(0, d, 3):  # three columns per pass (the last ones repeated)
                g = _dots3(pt[j], st[m], st[min(m + 1, d - 1)], st[min(m + 2, d - 1)])
                for t in range(min(3, d - m)):
                    gW[k, j, m + t] = -h * g[t]
                    if statistics:
                        sG[k, j, m + t] = g[t]
            if statistics:
                sG[k, j, d] = total
        if statistics:
            _maximize_statistics(act, aparam, xt, st, pt, sS[k], sQ[k], weights)
        # q = p W row by row but for its last term, then p_k = p_{k+1} + h (q * sigma') with
        # that term, written over q: d^2 passes instead of d^2 + 2d. p_k goes to another
        # array than p_{k+1} (the two are swapped), so that no store aliases a load of
        # another row, which would keep LLVM from vectorising.
        for m in range(d):
            w = W[k, 0, m]
            for i in range(n):
                qt[m, i] = w * pt[0, i] if d > 1 else 0.0
            for j in range(1, d - 1):
                w = W[k, j, m]
                for i in range(n):
                    qt[m, i] += w * pt[j, i]
            w = W[k, d - 1, m]
            if act == TANH:  # a loop of its own, so that it vectorises
                for i in range(n):
                    qt[m, i] = pt[m, i] + h * ((qt[m, i] + w * pt[d - 1, i])
                                               * (one - st[m, i] * st[m, i]))
            else:
                for i in range(n):
                    qt[m, i] = pt[m, i] + h * ((qt[m, i] + w * pt[d - 1, i])
                                               * _slope(act, aparam, xt[m, i], st[m, i]))
        pt, qt = qt, pt
        if keep or k == 0:  # p_0 always: a segmented sweep starts the next segment from it
            _transpose_out(pt, ps[k % L, r0:r1])
        if ro[5] != 0.0:  # the running cost updates p_k in row layout: read it back
            run += _running(k, h, xs, ps, ro, gP, z, gz, r0, r1)
            _transpose_in(ps[k % L, r0:r1], pt)
    return phi, run


@jit
def _maximize_statistics(act, aparam, xt, st, pt, S, Q, weights):
    """``S = [sigma 1]^T [sigma 1]`` (d + 1, d + 1) and ``Q[c] = sum_i sigma'_ic^2 p_i p_i^T``
    (d, d, d) of one step, from the transposed ``st``, ``pt`` (d, N_rows) (``xt``: the
    states, read for the slope unless it follows from sigma); ``weights`` (d, N_rows)
    scratch. Three sums per pass over the rows: 3x fewer passes than one dot product each."""
    d, n = pt.shape
    one = pt.dtype.type(1.0)
    for c in range(d):
        for c2 in range(c, d, 3):
            v = _dots3(st[c], st[c2], st[min(c2 + 1, d - 1)], st[min(c2 + 2, d - 1)])
            for t in range(min(3, d - c2)):
                S[c, c2 + t] = S[c2 + t, c] = v[t]
        S[c, d] = S[d, c] = vector_sum(st[c])
    S[d, d] = n
    for c in range(d):
        w = weights[c]
        if act == TANH:  # a loop of its own, so that it vectorises
            for i in range(n):
                slope = one - st[c, i] * st[c, i]
                w[i] = slope * slope
        else:
            for i in range(n):
                slope = _slope(act, aparam, xt[c, i], st[c, i])
                w[i] = slope * slope
    for r in range(d):
        for r2 in range(r, d):
            for c in range(0, d, 3):
                v = _weighted_dots3(pt[r], pt[r2], weights[c], weights[min(c + 1, d - 1)],
                                    weights[min(c + 2, d - 1)])
                for t in range(min(3, d - c)):
                    Q[c + t, r, r2] = Q[c + t, r2, r] = v[t]


# ------------------------------------------------------------ "inner": sigma(W x + b)
@jit
def inner_forward(xs, W, b, h, act, aparam, ss, zero_bias, r0, r1):
    """States of ``x' = sigma(W x + b)``; arguments as :func:`outer_forward`, ``ss``
    receiving ``sigma(W_k X_k + b_k)``."""
    for k in range(W.shape[0]):
        s = ss[k % ss.shape[0], r0:r1]
        _affine(xs[k, r0:r1], W[k], b[k], s)
        activate(act, aparam, s, s)
        _euler(xs[k, r0:r1], s, zero_bias, h, xs[k + 1, r0:r1])


@jit
def inner_backward(xs, ps, W, b, h, act, aparam, ro, gW, gb, gP, ss, stored, q, z, gz, r0, r1):
    """Costates and gradients of ``x' = sigma(W x + b)``; as :func:`outer_backward` (with
    ``stored``, the slope comes from the stored ``sigma`` values, so only activations in
    :data:`SLOPE_FROM_VALUE` may be stored)."""
    phi = _terminal(xs, ps, ro, gP, z, gz, r0, r1)
    run = 0.0
    L = ps.shape[0]
    for k in range(W.shape[0] - 1, -1, -1):
        x, p_next, p = xs[k, r0:r1], ps[(k + 1) % L, r0:r1], ps[k % L, r0:r1]
        s = ss[k % ss.shape[0], r0:r1]
        if not stored:
            _affine(x, W[k], b[k], q)
            activate(act, aparam, q, s)
        _weight_by_slope(act, aparam, q, s, p_next, q, gb[k])  # q <- sigma'(z) * p
        for j in range(gb.shape[1]):
            gb[k, j] *= -h
        _scaled_gram(q, x, -h, gW[k])
        matmul(q, W[k], s)  # s reused; the stored values are not needed any more
        _costate_step(p_next, h, s, p)
        run += _running(k, h, xs, ps, ro, gP, z, gz, r0, r1)
    return phi, run


# ------------------------------------------------------------ "diagonal": w * sigma(x)
@jit
def diagonal_forward(xs, w, h, act, aparam, s, zero_bias, r0, r1):
    """States of ``x' = diag(w) sigma(x)`` on the rows ``r0:r1``; ``w`` (K, d)."""
    for k in range(w.shape[0]):
        activate(act, aparam, xs[k, r0:r1], s)
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                s[i, j] *= w[k, j]
        _euler(xs[k, r0:r1], s, zero_bias, h, xs[k + 1, r0:r1])


@jit
def diagonal_backward(xs, ps, w, h, act, aparam, ro, gw, gP, s, ds, z, gz, r0, r1):
    """Costates and gradients of ``x' = diag(w) sigma(x)``; ``gw`` (K, d)."""
    phi = _terminal(xs, ps, ro, gP, z, gz, r0, r1)
    run = 0.0
    L = ps.shape[0]
    n, d = s.shape
    for k in range(w.shape[0] - 1, -1, -1):
        p_next = ps[(k + 1) % L, r0:r1]
        activate_with_slope(act, aparam, xs[k, r0:r1], s, ds)
        _multiply(s, p_next)
        _scaled_column_sums(s, -h, gw[k])
        for i in range(n):
            for j in range(d):
                ds[i, j] *= w[k, j] * p_next[i, j]
        _costate_step(p_next, h, ds, ps[k % L, r0:r1])
        run += _running(k, h, xs, ps, ro, gP, z, gz, r0, r1)
    return phi, run


# --------------------------------------------- "features": A phi(Omega x + beta), fixed Omega
@jit
def features_forward(xs, A, omega, beta, h, feat, fparam, phi, zero_bias, r0, r1):
    """States of ``x' = A phi(Omega x + beta)`` on the rows ``r0:r1``.

    ``A`` (K, d, q), ``omega`` (q, d), ``beta`` (q,); ``phi`` (N_rows, q) scratch.
    """
    for k in range(A.shape[0]):
        x1 = xs[k + 1, r0:r1]
        _affine(xs[k, r0:r1], omega, beta, phi)
        activate(feat, fparam, phi, phi)
        matmul(phi, A[k].T, x1)
        _euler_in_place(xs[k, r0:r1], x1, zero_bias, h)


@jit
def features_backward(xs, ps, A, omega, beta, h, feat, fparam, ro, gA, gP, zf, phi, dphi, q, z,
                      gz, r0, r1):
    """Costates and gradients of ``x' = A phi(Omega x + beta)``; ``gA`` (K, d, q).

    ``zf``, ``phi``, ``dphi`` (N_rows, q) and ``q`` (N_rows, d) are scratch.
    """
    out = _terminal(xs, ps, ro, gP, z, gz, r0, r1)
    run = 0.0
    L = ps.shape[0]
    for k in range(A.shape[0] - 1, -1, -1):
        p_next = ps[(k + 1) % L, r0:r1]
        _affine(xs[k, r0:r1], omega, beta, zf)
        activate_with_slope(feat, fparam, zf, phi, dphi)
        _scaled_gram(p_next, phi, -h, gA[k])
        matmul(p_next, A[k], zf)  # zf reused: (p A) of shape (N, q)
        _multiply(dphi, zf)
        matmul(dphi, omega, q)
        _costate_step(p_next, h, q, ps[k % L, r0:r1])
        run += _running(k, h, xs, ps, ro, gP, z, gz, r0, r1)
    return out, run


# ----------------------------------------- "perceptron": V sigma(W x + c) (Marion et al.)
@jit
def perceptron_forward(xs, V, W, c, h, act, aparam, s, zero_bias, r0, r1):
    """States of ``x' = V sigma(W x + c)`` on the rows ``r0:r1``; ``V`` (K, d, m), ``W``
    (K, m, d), ``c`` (K, m); ``s`` (N_rows, m) scratch.
    """
    for k in range(V.shape[0]):
        x1 = xs[k + 1, r0:r1]
        _affine(xs[k, r0:r1], W[k], c[k], s)
        activate(act, aparam, s, s)
        matmul(s, V[k].T, x1)
        _euler_in_place(xs[k, r0:r1], x1, zero_bias, h)


@jit
def perceptron_backward(xs, ps, V, W, c, h, act, aparam, ro, gV, gW, gc, gP, zw, s, ds, q, z, gz,
                        r0, r1):
    """Costates and gradients of ``x' = V sigma(W x + c)``.

    ``zw``, ``s``, ``ds`` (N_rows, m) and ``q`` (N_rows, d) are scratch.
    """
    phi = _terminal(xs, ps, ro, gP, z, gz, r0, r1)
    run = 0.0
    L = ps.shape[0]
    for k in range(V.shape[0] - 1, -1, -1):
        x, p_next = xs[k, r0:r1], ps[(k + 1) % L, r0:r1]
        _affine(x, W[k], c[k], zw)
        activate_with_slope(act, aparam, zw, s, ds)
        _scaled_gram(p_next, s, -h, gV[k])
        matmul(p_next, V[k], zw)  # zw reused: (p V) of shape (N, m)
        _multiply(ds, zw)
        _scaled_gram(ds, x, -h, gW[k])
        _scaled_column_sums(ds, -h, gc[k])
        matmul(ds, W[k], q)
        _costate_step(p_next, h, q, ps[k % L, r0:r1])
        run += _running(k, h, xs, ps, ro, gP, z, gz, r0, r1)
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
