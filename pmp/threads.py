"""Thread settings: how many cores pmp's matrix products (BLAS) may use.

The kernels call BLAS for their matrix products; BLAS threads that busy-wait on a shared,
loaded machine can make a sweep many times slower (measured: 10x on W2 with 2 threads while
another process held a core). pmp therefore uses, by default, the cores this process may run
on (its CPU affinity; ``PMP_THREADS`` overrides), never more, and lets you choose:

    pmp.set_threads(1)            # from now on
    with pmp.threads(2): ...      # inside the block only

The same thread count gives bitwise-identical results; different counts may differ in the
last bits (BLAS splits its sums differently). Sweeps run each point with one thread.
"""
import contextlib
import os

from threadpoolctl import threadpool_info, threadpool_limits

from ._validation import integer


def available_cores():
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def get_threads():
    """The largest thread count among the loaded BLAS libraries."""
    counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max(counts) if counts else 1


def set_threads(n=None):
    """Let BLAS use ``n`` threads (default: the available cores); returns ``n``."""
    n = available_cores() if n is None else integer(n, "threads", low=1)
    threadpool_limits(limits=n, user_api="blas")
    return n


@contextlib.contextmanager
def threads(n):
    """A block in which BLAS uses ``n`` threads (restored afterwards)."""
    n = integer(n, "threads", low=1)
    with threadpool_limits(limits=n, user_api="blas"):
        yield n


def _default():
    """At import: ``PMP_THREADS`` if set, else no more threads than the available cores."""
    wanted = os.environ.get("PMP_THREADS")
    if wanted:
        try:
            set_threads(int(wanted))
        except ValueError:
            raise ValueError(f"PMP_THREADS must be an int >= 1, got {wanted!r}") from None
    elif get_threads() > available_cores():
        set_threads(available_cores())
