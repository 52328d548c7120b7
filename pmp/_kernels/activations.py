"""Elementwise activations sigma, sigma' over 2-D arrays.

An activation is passed to kernels as an integer ``code`` and one float ``param`` (the slope
of leaky ReLU, the amplitude of a random-feature map). ``sigma'`` at the kinks of the
piecewise-linear activations is the right-hand value's convention of THEORY.md: relu'(0) = 0,
leaky_relu'(0) = slope.
"""
import math

from ._jit import jit

TANH = 0
RELU = 1
LEAKY_RELU = 2
SIGMOID = 3
SOFTPLUS = 4
GELU = 5
IDENTITY = 6
COS = 7  # param * cos(z): random Fourier features
SCALED_RELU = 8  # param * max(z, 0): random ReLU features

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jit
def _sigmoid(v):
    # split by sign so that exp never overflows
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@jit
def value(code, param, v):
    """sigma(v) for one scalar ``v``."""
    if code == TANH:
        return math.tanh(v)
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
        s = math.tanh(v)
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
def activate(code, param, z, s):
    """``s = sigma(z)``; ``z``, ``s``: shape (n, m)."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            s[i, j] = value(code, param, z[i, j])


@jit
def activate_with_slope(code, param, z, s, ds):
    """``s = sigma(z)``, ``ds = sigma'(z)``; all of shape (n, m)."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            s[i, j], ds[i, j] = value_and_slope(code, param, z[i, j])
