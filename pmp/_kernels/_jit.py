"""The one place where pmp's JIT policy is set.

Every ``@njit`` function of pmp is decorated with :func:`jit` from this module, so the
options below apply everywhere:

* ``cache=True``: compiled machine code is written next to the sources (or to
  ``NUMBA_CACHE_DIR``) and a warm process loads it instead of compiling again.
* ``fastmath=False``: results must match the NumPy twins in ``tests/`` to rounding, and
  reductions must be reproducible bit for bit.
* ``nogil=True``: kernels release the GIL, so threads (a notebook's, Dask's) can overlap them.
* ``error_model="numpy"``: division by zero gives inf/nan like NumPy instead of raising, so
  kernels never raise; the Python wrappers check results.

Set ``PMP_DISABLE_JIT=1`` (or numba's ``NUMBA_DISABLE_JIT=1``) to run the kernels as plain
Python, e.g. for coverage or a debugger.
"""
import os

import numba

CACHE = os.environ.get("PMP_NO_CACHE", "0") != "1"
OPTIONS = dict(cache=CACHE, fastmath=False, nogil=True, error_model="numpy")

if os.environ.get("PMP_DISABLE_JIT", "0") == "1":  # pragma: no cover - debugging aid

    def jit(func):
        return func

else:

    def jit(func):
        """Compile ``func`` with pmp's JIT options (lazily, on first call)."""
        return numba.njit(**OPTIONS)(func)
