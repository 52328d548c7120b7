"""pmp's jitted core: every ``@njit`` function lives in this package (policy: ``_jit``).

The rest of pmp reaches the kernel modules through :func:`lazy`, so that ``import pmp``
imports neither numba nor a kernel: they load when a kernel is first used. The integer
codes the kernels share with Python are in :mod:`pmp._kernels.codes`, which needs no numba.
"""
import importlib
import os
import types

BLAS_CHOICES = ("auto", "mkl", "scipy")


class _LazyModule(types.ModuleType):
    """A kernel module that is imported on first attribute access."""

    def __getattr__(self, attr):
        module = importlib.import_module(self.__name__)  # thread-safe: the import lock
        self.__dict__.update(vars(module))  # later lookups find the attributes directly
        return getattr(module, attr)


def lazy(name):
    """The kernel module ``pmp._kernels.<name>``, imported when first used."""
    return _LazyModule(f"{__name__}.{name}")


def lazy_module(name):
    """Any module ``name`` (e.g. h5py for the run store), imported when first used, so that
    ``import pmp`` does not pay for it."""
    return _LazyModule(name)


def blas_choice():
    """The BLAS ``PMP_BLAS`` asks the kernels to use (:mod:`pmp._kernels.blas`), checked
    without importing numba, so that a command can refuse a bad value before it starts."""
    wanted = os.environ.get("PMP_BLAS", "auto").strip().lower() or "auto"
    if wanted not in BLAS_CHOICES:
        raise ValueError(f"PMP_BLAS must be one of {', '.join(BLAS_CHOICES)}, got "
                         f"{os.environ['PMP_BLAS']!r}")
    return wanted
