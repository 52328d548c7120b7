"""The one place where pmp's JIT policy is set.

Every ``@njit`` function of pmp is decorated with :func:`jit` from this module, so the
options below apply everywhere:

* ``cache=True``: compiled machine code is written next to the sources (or to
  ``NUMBA_CACHE_DIR``) and a warm process loads it instead of compiling again.
* ``fastmath={"contract"}`` only: a multiplication and an addition may fuse into one FMA
  (one rounding fewer, and fewer instructions in the polynomials of the vectorised tanh).
  Nothing is reordered, so results match the NumPy twins in ``tests/`` to rounding and are
  reproducible bit for bit. The one exception is :func:`jit_sum`, for the short dot
  products and sums of the small-d kernels.
* ``nogil=True``: kernels release the GIL, so threads (a notebook's, Dask's) can overlap them.
* ``error_model="numpy"``: division by zero gives inf/nan like NumPy instead of raising, so
  kernels never raise; the Python wrappers check results.

numba keys a cached kernel on its own source file only, so a kernel whose callee in another
file changed would load stale machine code. At import, :func:`drop_stale_cache` compares a
hash of all kernel sources (and the numba version) with the one stored beside the cache and
removes the package's cache files when they differ.

Set ``PMP_DISABLE_JIT=1`` (or numba's ``NUMBA_DISABLE_JIT=1``) to run the kernels as plain
Python, e.g. for coverage or a debugger.

The first compilation in a process (a new machine, a new numba, or changed kernels) prints
one line to stderr, so that a notebook or a command does not sit silent for the seconds it
takes; ``PMP_QUIET=1`` silences it. Loading kernels from the cache prints nothing.
"""
import glob
import hashlib
import os
import sys

import numba
from numba.core import event

CACHE = os.environ.get("PMP_NO_CACHE", "0") != "1"
OPTIONS = dict(cache=CACHE, fastmath={"contract"}, nogil=True, error_model="numpy")
# A strict left-to-right sum is one chain of dependent additions that LLVM may not
# vectorise; allowing it to reassociate (and fuse multiply-adds) lets a dot product keep
# several partial sums in vector registers at once. The order it picks is fixed in the
# compiled code, so results stay reproducible run to run and for any thread count.
SUM_OPTIONS = dict(OPTIONS, fastmath={"reassoc", "contract"})
# numba compiles each function a kernel calls as a library of its own, with its callees
# inlined and optimised, and then again inside each caller: a thin wrapper around heavy code
# (the readout's pullback in the costate sweeps) has that code optimised and assembled
# twice more. Inlined into the caller's numba IR instead, it compiles as part of the caller
# only (LLVM inlines it into the caller either way).
INLINE_OPTIONS = dict(OPTIONS, inline="always")



def drop_stale_cache():
    """Remove this package's numba cache files if any kernel source changed since they
    were written (default cache location only; harmless races between processes)."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(glob.glob(os.path.join(here, "*.py"))):
        with open(path, "rb") as f:
            digest.update(f.read())
    digest = digest.hexdigest()
    cache_dir = os.path.join(here, "__pycache__")
    stamp = os.path.join(cache_dir, "pmp-kernels.stamp")
    try:
        with open(stamp) as f:
            if f.read() == digest:
                return
    except OSError:
        pass
    try:
        for path in glob.glob(os.path.join(cache_dir, "*.nb[ic]")):
            os.remove(path)
        os.makedirs(cache_dir, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(digest)
    except OSError:  # read-only install or a concurrent cleaner: numba copes
        pass


if CACHE and "NUMBA_CACHE_DIR" not in os.environ:
    drop_stale_cache()

DISABLED = os.environ.get("PMP_DISABLE_JIT", "0") == "1"


def use_full_vector_width():
    """On a CPU with AVX-512, let LLVM vectorise with 512-bit registers.

    LLVM's models of Intel's AVX-512 CPUs prefer 256-bit vectors by default (a guard
    against the clock slow-down of wide instructions on early Xeons); pmp's loops (tanh,
    the Euler and costate passes) ran 10-25% faster per W1 iteration at full width on an
    AVX-512 Xeon. This sets numba's ``CPU_FEATURES`` (the host's, and ``-prefer-256-bit``)
    for this process before its first compilation; it does nothing if ``NUMBA_CPU_FEATURES``
    or ``NUMBA_CPU_NAME`` is set, or if numba has compiled already (its code generator then
    exists). The numba cache keys its files on the features, so kernels compiled either way
    never mix."""
    from numba.core import config

    if config.CPU_FEATURES is not None or config.CPU_NAME is not None:
        return
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


if not DISABLED:
    use_full_vector_width()
COMPILE_NOTICE = ("pmp: compiling kernels for this machine, once (up to tens of seconds; "
                  "later runs load them from numba's cache)")


class _FirstCompileNotice(event.Listener):
    """Prints :data:`COMPILE_NOTICE` when a kernel of pmp starts compiling for the first
    time in this process (numba's "numba:compile" events fire on cache misses only), then
    unregisters itself."""

    def on_start(self, ev):
        module = getattr(ev.data["dispatcher"].py_func, "__module__", "")
        if module.startswith(__package__ + "."):
            print(COMPILE_NOTICE, file=sys.stderr, flush=True)
            event.unregister("numba:compile", self)

    def on_end(self, ev):
        pass


if CACHE and not DISABLED and os.environ.get("PMP_QUIET", "0") != "1":
    event.register("numba:compile", _FirstCompileNotice())

if DISABLED:  # pragma: no cover - debugging aid

    def jit(func):
        return func

    jit_sum = jit_inline = jit

else:

    def jit(func):
        """Compile ``func`` with pmp's JIT options (lazily, on first call)."""
        return numba.njit(**OPTIONS)(func)

    def jit_sum(func):
        """:func:`jit` for a reduction loop and nothing else: its additions may be
        reassociated (vectorised) and fused with the multiplications."""
        return numba.njit(**SUM_OPTIONS)(func)

    def jit_inline(func):
        """:func:`jit` for a thin wrapper, inlined into its callers (see
        :data:`INLINE_OPTIONS`)."""
        return numba.njit(**INLINE_OPTIONS)(func)
