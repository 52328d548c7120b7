"""The matrix products of the kernels, and the BLAS they call.

The sweeps and the maximiser spend most of their time in products ``(N, d) x (d, d)`` and
``(d, N) x (N, d)``. They call :func:`matmul`, which calls the Fortran ``?gemm`` of one BLAS
through the symbols ``pmp_dgemm`` and ``pmp_sgemm``. Which BLAS those symbols name is
decided once per process, when this module is imported, before any kernel is compiled or
loaded from the cache (the compiled code refers to the symbols by name, so cached kernels
serve either BLAS):

* ``"scipy"``: the BLAS that SciPy is built with (``scipy.linalg.cython_blas``), the one
  numba's ``np.dot`` calls. Always available.
* ``"mkl"``: Intel's oneMKL (``pip install "pmp[mkl]"`` installs the ``mkl`` package), single
  threaded (pmp runs its own threads). Faster at pmp's shapes on the Intel Xeon of the
  benchmark results (docs/performance.md).

``PMP_BLAS`` chooses: ``auto`` (the default: MKL where it can be loaded, else SciPy's),
``mkl`` (MKL or an error) or ``scipy``. An MKL that another library of the process loaded
first (NumPy built with MKL) is left alone: its threading is that library's. :func:`backend` says which one is in use. Both
compute the same products; their results differ by rounding (a different order of the
additions), so a run is reproducible bit for bit with one BLAS, not across the two.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

from . import blas_choice
from ._jit import DISABLED, jit

_SYMBOLS = {"d": "pmp_dgemm", "s": "pmp_sgemm"}
_MKL_SEQUENTIAL = 1  # MKL_Set_Threading_Layer: MKL_THREADING_SEQUENTIAL
_MKL_LP64 = 0  # MKL_Set_Interface_Layer: 32-bit integers, as SciPy's BLAS
_backend = None


# ----------------------------------------------------------------- choosing the library
def _scipy_gemm():
    """``{kind: address}`` of SciPy's Fortran ``dgemm`` and ``sgemm``."""
    from scipy.linalg import cython_blas

    name_of = ctypes.pythonapi.PyCapsule_GetName
    name_of.restype, name_of.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer_of = ctypes.pythonapi.PyCapsule_GetPointer
    pointer_of.restype, pointer_of.argtypes = ctypes.c_void_p, [ctypes.py_object,
                                                                ctypes.c_char_p]
    addresses = {}
    for kind in _SYMBOLS:
        capsule = cython_blas.__pyx_capi__[kind + "gemm"]
        addresses[kind] = pointer_of(capsule, name_of(capsule))
    return addresses


def mkl_library():
    """The path of MKL's ``libmkl_rt`` (the ``mkl`` package's, or the system's), or None."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


def _loaded(path):
    """Whether the library ``path`` is already loaded in this process (by NumPy built with
    MKL, say): pmp then leaves it alone, since its threading layer is set for the whole
    process and only before its first use."""
    try:
        ctypes.CDLL(path, mode=os.RTLD_NOLOAD | ctypes.RTLD_LOCAL)
        return True
    except OSError:
        return False


def _mkl_gemm():
    """``{kind: address}`` of MKL's Fortran ``dgemm`` and ``sgemm``, set up sequential and
    LP64, and a description of the library; ``(None, None)`` where MKL cannot be loaded or
    was loaded by another library."""
    path = mkl_library()
    if path is None or _loaded(path):
        return None, None
    try:
        mkl = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        mkl.MKL_Set_Threading_Layer(_MKL_SEQUENTIAL)
        mkl.MKL_Set_Interface_Layer(_MKL_LP64)
        version = ctypes.create_string_buffer(256)
        mkl.MKL_Get_Version_String(version, len(version))
        return ({kind: ctypes.cast(getattr(mkl, kind + "gemm"), ctypes.c_void_p).value
                 for kind in _SYMBOLS},
                dict(name="mkl", version=version.value.decode(errors="replace").strip(),
                     path=path))
    except (OSError, AttributeError):
        return None, None


def _choose():
    """Bind the symbols to the BLAS ``PMP_BLAS`` asks for; returns its description."""
    wanted = blas_choice()
    addresses, described = _mkl_gemm() if wanted in ("auto", "mkl") else (None, None)
    if wanted == "mkl" and addresses is None:
        raise ValueError("PMP_BLAS=mkl, but MKL's libmkl_rt cannot be loaded, or another "
                         "library of this process loaded it first: install it with pip "
                         "install \"pmp[mkl]\", or set PMP_BLAS=auto")
    if addresses is None:
        from scipy import __version__ as scipy_version

        addresses = _scipy_gemm()
        described = dict(name="scipy", version=f"SciPy {scipy_version}'s BLAS",
                         path="scipy.linalg.cython_blas")
    for kind, address in addresses.items():
        llvm.add_symbol(_SYMBOLS[kind], address)
    return described


def backend():
    """The BLAS of pmp's kernels in this process: ``"mkl"`` or ``"scipy"``."""
    return _backend["name"]


def describe():
    """``{"name", "version", "path"}`` of the BLAS of pmp's kernels in this process."""
    return dict(_backend)


# ------------------------------------------------------------------------- the kernels
@intrinsic
def _gemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Fortran ``?gemm``: ``C <- alpha op(A) op(B) + beta C`` in column-major terms; the
    integers and scalars by value here, by reference in the call."""
    dtype = c.dtype
    if dtype not in (types.float64, types.float32) or a.dtype != dtype or b.dtype != dtype:
        raise TypingError(f"matmul needs float64 or float32 arrays of one dtype, got "
                          f"{a.dtype}, {b.dtype} and {dtype}")
    kind = {types.float64: "d", types.float32: "s"}[dtype]
    sig = types.void(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        voidp = ir.IntType(8).as_pointer()
        wanted = (types.int8, types.int8, types.int32, types.int32, types.int32, dtype, None,
                  types.int32, None, types.int32, dtype, None, types.int32)
        pointers = []
        for value, ty, to in zip(args, signature.args, wanted):
            if to is None:  # an array: its data
                pointer = context.make_array(ty)(context, builder, value).data
            else:  # a scalar: by reference
                pointer = cgutils.alloca_once_value(builder,
                                                    context.cast(builder, value, ty, to))
            pointers.append(builder.bitcast(pointer, voidp))
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [voidp] * 13), _SYMBOLS[kind])
        builder.call(fn, pointers)
        return context.get_dummy_value()

    return sig, codegen


_N, _T = ord("N"), ord("T")


@jit
def _operand(x):
    """``x`` (r, c) as a Fortran operand of ``x^T`` in column-major terms: ``(trans, ld,
    x)``, ``x`` copied first when neither its rows nor its columns are contiguous."""
    size = x.itemsize
    if x.strides[1] == size and x.strides[0] >= max(1, x.shape[1]) * size:
        return _N, max(1, x.strides[0] // size), x  # row-major: x^T column-major as is
    if x.strides[0] == size and x.strides[1] >= max(1, x.shape[0]) * size:
        return _T, max(1, x.strides[1] // size), x  # column-major (a transposed view)
    y = np.ascontiguousarray(x)
    return _N, max(1, x.shape[1]), y


def _matmul(a, b, out, alpha=1.0, beta=0.0):
    """``out <- alpha a b + beta out``; a (m, k), b (k, n), out (m, n) with contiguous rows
    (strided rows are fine, as ``xs[k, r0:r1]``); ``a`` and ``b`` may be transposed views.
    ``beta = 0`` ignores what ``out`` held (NaN included), as BLAS does."""
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            for j in range(n):
                out[i, j] = 0.0 if beta == 0.0 else beta * out[i, j]
        return
    # row-major out = a b is column-major out^T = b^T a^T
    transb, ldb, bb = _operand(b)
    transa, lda, aa = _operand(a)
    copy = out.strides[1] != out.itemsize or out.strides[0] < n * out.itemsize
    target = np.empty((m, n), out.dtype) if copy else out  # rows not contiguous: a copy
    if copy and beta != 0.0:
        target[:, :] = out
    _gemm(transb, transa, n, m, k, alpha, bb, ldb, aa, lda, beta, target,
          max(1, target.strides[0] // target.itemsize))
    if copy:
        out[:, :] = target


def _plain_matmul(a, b, out, alpha=1.0, beta=0.0):
    """:func:`matmul` in NumPy, for ``PMP_DISABLE_JIT=1`` (kernels as plain Python)."""
    out[...] = alpha * np.dot(a, b) + (beta * out if beta != 0.0 else 0.0)


matmul = _plain_matmul if DISABLED else jit(_matmul)

_backend = _choose()
