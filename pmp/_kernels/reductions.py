"""Vectorised reductions shared by the kernels."""
from ._jit import jit_sum


@jit_sum
def dot(x, y):
    """``sum_i x[i] y[i]`` of two 1-D arrays, vectorised (see :func:`pmp._kernels._jit.jit_sum`)."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * y[i]
    return acc


@jit_sum
def vector_sum(x):
    """``sum_i x[i]`` of a 1-D array, vectorised (see :func:`pmp._kernels._jit.jit_sum`)."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i]
    return acc
