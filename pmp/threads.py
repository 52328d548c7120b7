"""Thread settings: how many cores pmp may use, and the row-block runner of the sweeps.

Samples evolve independently through the sweeps, so the kernels sweep blocks of rows
(samples) on separate threads (they release the GIL) and the per-block gradients are summed.
While they run, BLAS is held at one thread: pmp never stacks its threads on BLAS threads.
Outside the sweeps (your own NumPy code) BLAS uses the same count, except in the methods
whose vector algebra between sweeps calls BLAS (:func:`serial_blas`).

pmp uses, by default, the cores this process may run on (its CPU affinity;
``PMP_THREADS`` overrides), never more, because busy-waiting threads on a shared, loaded
machine are many times slower (a thread that waits for a core held by another process
holds up all the others). Choose with

    pmp.set_threads(1)            # from now on
    with pmp.threads(2): ...      # inside the block only

The same thread count gives bitwise-identical results; different counts may differ in the
last bits (the gradient is summed block by block). Sweeps run each point with one thread.
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

from ._validation import integer

# rows per block below which splitting a sweep costs more than it saves
MIN_ROWS_PER_BLOCK = 64
# Work per block below which a thread costs more than it saves, in the units of the callers'
# estimates (:func:`pmp.sweeps.row_step_work`: about one multiply-add of a d x d product
# per unit). Waking a parked thread and waiting for it costs about as much as 3e6 units of
# a sweep: on 2-core virtual machines a W1-sized gradient (1024 x 3, K = 100) gains 1.3x
# from a second thread, one of 256 rows loses 1.6x. 0 splits whatever the work.
MIN_BLOCK_WORK = 3e6

_state = threading.local()
_count = None  # the process-wide setting; None until first read
_defaults_applied = False
_pool = None
_pool_lock = threading.Lock()
_blas = None
_blas_libraries = None


def available_cores():
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _controller():
    global _blas
    if _blas is None:  # inspecting the loaded libraries takes milliseconds: do it once
        # load SciPy's BLAS, which the kernels' products call unless MKL runs them (single
        # threaded: pmp._kernels.blas), so that it is among the libraries controlled: pmp
        # no longer imports scipy at import time
        import scipy.linalg.cython_blas  # noqa: F401

        _blas = ThreadpoolController()
    return _blas


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS at one thread inside the block: threadpoolctl's ``limit`` without its
    bookkeeping, whose cost would be paid again at every sweep."""
    global _blas_libraries
    if _blas_libraries is None:
        _blas_libraries = _controller().select(user_api="blas").lib_controllers
    libraries = _blas_libraries
    previous = [lib.num_threads for lib in libraries]
    for lib, count in zip(libraries, previous):
        if count != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, count in zip(libraries, previous):
            if count != 1:
                lib.set_num_threads(count)


def get_threads():
    """The number of threads pmp uses (``threads`` block, else the process setting)."""
    _apply_defaults()
    local = getattr(_state, "count", None)
    if local is not None:
        return local
    return _count if _count is not None else available_cores()


def set_threads(n=None):
    """Let pmp (and BLAS) use ``n`` threads (default: the available cores); returns ``n``."""
    global _count, _defaults_applied
    n = available_cores() if n is None else integer(n, "threads", low=1)
    _defaults_applied = True  # an explicit setting replaces the defaults
    _count = n
    _controller().limit(limits=n, user_api="blas")
    return n


@contextlib.contextmanager
def threads(n):
    """A block in which pmp and BLAS use ``n`` threads (restored afterwards)."""
    n = integer(n, "threads", low=1)
    _apply_defaults()  # before the block's limit, which they must not override
    previous = getattr(_state, "count", None)
    _state.count = n
    try:
        with _controller().limit(limits=n, user_api="blas"):
            yield n
    finally:
        _state.count = previous


def row_blocks(n_rows, work_per_row=None):
    """Bounds ``[0, ..., n_rows]`` of the row blocks a sweep is split into: one per thread,
    at least :data:`MIN_ROWS_PER_BLOCK` rows each (and :data:`MIN_BLOCK_WORK` of work, given
    ``work_per_row``)."""
    return blocks(n_rows, MIN_ROWS_PER_BLOCK, work_per_row)


def blocks(n_items, min_size=1, work_per_item=None):
    """Bounds ``[0, ..., n_items]`` of at most one block per thread, at least ``min_size``
    items each, and at least :data:`MIN_BLOCK_WORK` of work if ``work_per_item`` is given."""
    count = min(get_threads(), n_items // min_size)
    if work_per_item is not None and MIN_BLOCK_WORK > 0:
        count = min(count, int(n_items * work_per_item // MIN_BLOCK_WORK))
    count = max(1, count)
    return [n_items * i // count for i in range(count + 1)]


def _executor(n):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="pmp")
        return _pool


def map_blocks(func, bounds):
    """``[func(r0, r1, i) for each block i]``, blocks on separate threads, BLAS at one thread.

    ``func`` must release the GIL for the work to overlap (pmp's kernels do)."""
    n = len(bounds) - 1
    if n == 1:
        return [func(bounds[0], bounds[1], 0)]
    with _one_blas_thread():
        futures = [_executor(n - 1).submit(func, bounds[i], bounds[i + 1], i)
                   for i in range(1, n)]
        first = func(bounds[0], bounds[1], 0)  # the calling thread takes the first block
        return [first] + [f.result() for f in futures]


def serial_blas(steps):
    """The generator ``steps``, advanced with BLAS at one thread (the caller's code between
    two items runs with the usual setting).

    For methods whose own vector algebra between sweeps calls BLAS (L-BFGS's inner products,
    scipy's line search): vector operations gain nothing from BLAS threads, and OpenBLAS's
    threads keep spinning for a while after a call, beside the next sweep's threads, which
    they slow down."""
    while True:
        with _one_blas_thread():
            item = next(steps, _END)
        if item is _END:
            return
        yield item


_END = object()


def _apply_defaults():
    """Once per process, when pmp first needs its thread count (never at import):
    ``PMP_THREADS`` if set, else no more BLAS threads than the available cores."""
    global _defaults_applied
    if _defaults_applied:
        return
    _defaults_applied = True
    wanted = os.environ.get("PMP_THREADS")
    if wanted:
        try:
            set_threads(int(wanted))
        except (TypeError, ValueError):
            _defaults_applied = False  # the next call says it again
            raise ValueError(f"PMP_THREADS must be an int >= 1, got {wanted!r}") from None
    else:
        blas = [lib["num_threads"] for lib in _controller().info() if lib["user_api"] == "blas"]
        if blas and max(blas) > available_cores():
            set_threads(available_cores())
