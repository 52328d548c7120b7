"""Elementwise activations sigma, sigma' over 2-D arrays.

An activation is passed to kernels as an integer ``code`` and one float ``param`` (the slope
of leaky ReLU, the amplitude of a random-feature map). ``sigma'`` at the kinks of the
piecewise-linear activations is the right-hand value's convention of docs/theory.md: relu'(0) = 0,
leaky_relu'(0) = slope.
"""
import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from ._jit import DISABLED, jit

from .codes import COS, GELU, LEAKY_RELU, RELU, SCALED_RELU, SIGMOID, SOFTPLUS, TANH

# fast_tanh: exp reduction constants (fdlibm) and expm1 Taylor coefficients 1/k!, k = 2..13
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (
    1.0 / math.factorial(k) for k in range(2, 14))
# Adding 1.5 * 2^52 (float64) or 1.5 * 2^23 (float32) rounds to an integer n, which then
# sits in the low bits of the sum: 2^n follows by integer operations on those bits
# (:func:`_pow2_of_shifted`) instead of float <-> int64 conversions, which AVX2 lacks.
_SHIFTER = 1.5 * 2.0 ** 52
# fast_tanh32: the same in float32 (numba types these globals as float32 constants): an
# ln2 split whose high part is exact times n for |n| < 2^9 (fdlibm's expf), Taylor to r^7
_F32 = np.float32
_LN2_HI_32, _LN2_LO_32, _INV_LN2_32 = _F32(6.9314575195e-01), _F32(1.4286067653e-06), \
    _F32(1.4426950408889634)
_F2, _F3, _F4, _F5, _F6, _F7 = (_F32(1.0 / math.factorial(k)) for k in range(2, 8))
_ONE_32, _TWO_32, _MINUS_TWO_32, _CLAMP_32, _ZERO_32 = (_F32(v) for v in (1, 2, -2, 10, 0))
_SHIFTER_32 = _F32(1.5 * 2.0 ** 23)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jit
def _sigmoid(v):
    # split by sign so that exp never overflows
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@intrinsic
def _pow2_of_shifted(typingctx, shifted):
    """``2^n`` for ``shifted = n + 1.5 * 2^52`` (float64) or ``n + 1.5 * 2^23`` (float32),
    ``n`` a small integer: the bits of ``shifted`` minus those of the shifter plus the
    exponent bias, moved into the exponent field. Integer adds and a shift on the float's
    bits, which vectorise on any x86-64 with AVX2; numba's ``float(1 << k)`` needs int64
    <-> float conversions, which only AVX-512 has, and kept tanh's loop scalar elsewhere."""
    if shifted == types.float64:
        int_type, float_type, mantissa, bias, shifter = ir.IntType(64), ir.DoubleType(), \
            52, 1023, 0x4338000000000000
    elif shifted == types.float32:
        int_type, float_type, mantissa, bias, shifter = ir.IntType(32), ir.FloatType(), \
            23, 127, 0x4B400000
    else:
        return None

    def codegen(context, builder, signature, args):
        exponent = builder.add(builder.bitcast(args[0], int_type), int_type(bias - shifter))
        return builder.bitcast(builder.shl(exponent, int_type(mantissa)), float_type)

    return shifted(shifted), codegen


if DISABLED:  # pragma: no cover - kernels as plain Python (debugging aid)

    def _pow2_of_shifted(shifted):
        if isinstance(shifted, np.float32):
            return _F32(2.0) ** (shifted - _SHIFTER_32)
        return 2.0 ** (shifted - _SHIFTER)


@jit
def fast_tanh(v):
    """tanh(v) to within 3 ulp, branch-free so that loops over it vectorise.

    numba's ``math.tanh`` is a scalar libm call, many times slower than NumPy's SIMD tanh,
    which made it the largest cost of a sweep. Here
    ``tanh|v| = -m / (2 + m)`` with ``m = expm1(-2|v|)``; ``-2|v| = n ln2 + r`` with
    ``|r| <= ln2/2``, ``expm1(r)`` by its Taylor polynomial to degree 13 (error < 1e-17,
    evaluated by Estrin's scheme) and ``2^n`` exact from the bits of ``n``. ``|v|`` is
    clamped at 20, where tanh rounds to 1.
    """
    a = min(abs(v), 20.0)
    y = -2.0 * a
    shifted = y * _INV_LN2 + _SHIFTER  # n = round(y / ln2) in its low bits
    n = shifted - _SHIFTER
    r = (y - n * _LN2_HI) - n * _LN2_LO
    # Estrin's scheme: a dependency chain of 5 multiply-adds instead of Horner's 13
    r2 = r * r
    r4 = r2 * r2
    high = (_E8 + _E9 * r) + r2 * (_E10 + _E11 * r) + r4 * (_E12 + _E13 * r)
    low = (_E2 + _E3 * r) + r2 * (_E4 + _E5 * r) + r4 * (_E6 + _E7 * r)
    p = r + r2 * (low + (r4 * r2) * high)
    m = (1.0 + p) * _pow2_of_shifted(shifted) - 1.0 if n != 0.0 else p
    t = math.copysign(-m / (2.0 + m), v)
    return t if v == v else v  # NaN in, NaN out


@jit
def fast_tanh32(v):
    """:func:`fast_tanh` in float32 arithmetic for float32 ``v``, to within 3 ulp of float32
    (faster than the float64 algorithm on float32 data: twice the values per vector and a
    shorter polynomial). ``|v|`` is
    clamped at 10, where tanh rounds to 1 in float32."""
    a = min(abs(v), _CLAMP_32)
    y = _MINUS_TWO_32 * a
    shifted = y * _INV_LN2_32 + _SHIFTER_32
    n = shifted - _SHIFTER_32
    r = (y - n * _LN2_HI_32) - n * _LN2_LO_32
    r2 = r * r
    p = r + r2 * ((_F2 + _F3 * r) + r2 * ((_F4 + _F5 * r) + r2 * (_F6 + _F7 * r)))
    m = (_ONE_32 + p) * _pow2_of_shifted(shifted) - _ONE_32 if n != _ZERO_32 else p
    t = math.copysign(-m / (_TWO_32 + m), v)
    return t if v == v else v


@jit
def value(code, param, v):
    """sigma(v) for one scalar ``v``."""
    if code == TANH:
        return fast_tanh(v)
    if code == RELU:
        return v if v > 0.0 else 0.0 * v
    if code == LEAKY_RELU:
        return v if v > 0.0 else param * v
    if code == SIGMOID:
        return _sigmoid(v)
    if code == SOFTPLUS:
        return max(v, 0.0) + math.log1p(math.exp(-abs(v)))
    if code == GELU:
        return 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))
    if code == COS:
        return param * math.cos(v)
    if code == SCALED_RELU:
        return param * v if v > 0.0 else 0.0 * v
    return v  # IDENTITY


@jit
def value_and_slope(code, param, v):
    """(sigma(v), sigma'(v)) for one scalar ``v``."""
    if code == TANH:
        s = fast_tanh(v)
        return s, 1.0 - s * s
    if code == RELU:
        return (v, 1.0) if v > 0.0 else (0.0 * v, 0.0)
    if code == LEAKY_RELU:
        return (v, 1.0) if v > 0.0 else (param * v, param)
    if code == SIGMOID:
        s = _sigmoid(v)
        return s, s * (1.0 - s)
    if code == SOFTPLUS:
        return max(v, 0.0) + math.log1p(math.exp(-abs(v))), _sigmoid(v)
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
        return v * cdf, cdf + v * _INV_SQRT2PI * math.exp(-0.5 * v * v)
    if code == COS:
        return param * math.cos(v), -param * math.sin(v)
    if code == SCALED_RELU:
        return (param * v, param) if v > 0.0 else (0.0 * v, 0.0)
    return v, 1.0  # IDENTITY


@jit
def curvature(code, param, v, s, ds):
    """sigma''(v) given ``s = sigma(v)``, ``ds = sigma'(v)`` (0 for piecewise-linear ones)."""
    if code == TANH:
        return -2.0 * s * ds
    if code == SIGMOID:
        return ds * (1.0 - 2.0 * s)
    if code == SOFTPLUS:
        return ds * (1.0 - ds)  # ds = sigmoid(v)
    if code == GELU:
        return _INV_SQRT2PI * math.exp(-0.5 * v * v) * (2.0 - v * v)
    if code == COS:
        return -s
    return 0.0  # relu, leaky_relu, identity, scaled relu


@jit
def activate_with_curvature(code, param, z, s, ds, dds):
    """``s = sigma(z)``, ``ds = sigma'(z)``, ``dds = sigma''(z)``; C-contiguous, one shape."""
    zf, sf, dsf, ddsf = z.reshape(z.size), s.reshape(s.size), ds.reshape(ds.size), \
        dds.reshape(dds.size)
    for i in range(zf.size):
        a, b = value_and_slope(code, param, zf[i])
        sf[i], dsf[i] = a, b
        ddsf[i] = curvature(code, param, zf[i], a, b)


@jit
def activate(code, param, z, s):
    """``s = sigma(z)``; ``z``, ``s``: C-contiguous, same shape (may be the same array).
    Flattened to one row, so that the loop vectorises for any width of ``z``."""
    activate_rows(code, param, z.reshape((1, z.size)), s.reshape((1, s.size)))


@jit
def activate_rows(code, param, z, s):
    """``s = sigma(z)`` for 2-D arrays with long rows, row by row (no flattening views:
    their set-up is a fixed cost per call, which counts in the small-d sweeps' cost per
    step). The activations' loops are written here
    once, with loops of their own for tanh so that they vectorise."""
    if code == TANH and z.itemsize == 4:
        for r in range(z.shape[0]):
            for i in range(z.shape[1]):
                s[r, i] = fast_tanh32(z[r, i])
        return
    if code == TANH:
        for r in range(z.shape[0]):
            for i in range(z.shape[1]):
                s[r, i] = fast_tanh(z[r, i])
        return
    for r in range(z.shape[0]):
        for i in range(z.shape[1]):
            s[r, i] = value(code, param, z[r, i])


@jit
def activate_with_slope(code, param, z, s, ds):
    """``s = sigma(z)``, ``ds = sigma'(z)``; C-contiguous arrays of one shape."""
    zf, sf, dsf = z.reshape(z.size), s.reshape(s.size), ds.reshape(ds.size)
    if code == TANH and zf.itemsize == 4:
        for i in range(zf.size):
            t = fast_tanh32(zf[i])
            sf[i] = t
            dsf[i] = _ONE_32 - t * t
        return
    if code == TANH:
        for i in range(zf.size):
            t = fast_tanh(zf[i])
            sf[i] = t
            dsf[i] = 1.0 - t * t
        return
    for i in range(zf.size):
        sf[i], dsf[i] = value_and_slope(code, param, zf[i])
