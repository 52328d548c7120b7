"""Compiling kernels in a second process while this one compiles others.

On an empty cache (a new machine, a new numba, changed kernels) a method's first iteration
compiles its kernels one after the other: the MSA's forward and costate sweeps, then its
maximiser, each for seconds. The maximiser's argument types are known before the sweeps
run, so a second process can compile it into numba's cache meanwhile; when the method
reaches it, it loads from the cache instead of compiling. On two cores this takes the
maximiser's compilation off the critical path.

:func:`start` does this only where it can help: with numba's cache on, at least two pmp
threads allowed (:func:`pmp.threads.get_threads`), and for calls whose signature is neither
compiled in this process nor in the cache. ``PMP_COMPILE_AHEAD=0`` turns it off. The second
process only writes numba's cache (its files are written whole and renamed into place, so a
process never reads half of one); if it fails or is killed, this process compiles as usual.
"""
import importlib
import os
import pickle
import subprocess
import sys

from ._jit import CACHE, DISABLED


def signature(dispatcher, args):
    """The argument types numba's dispatcher gives ``args`` (a tuple of numba types)."""
    return tuple(dispatcher.typeof_pyval(a) for a in args)


def is_cold(dispatcher, types):
    """Whether calling ``dispatcher`` with arguments of ``types`` would compile: not yet
    compiled in this process and not in numba's cache. False where that cannot be told
    (no cache, or numba's cache internals changed)."""
    if types in dispatcher.overloads:
        return False
    try:
        cache = dispatcher._cache
        key = cache._index_key(types, dispatcher.targetctx.codegen())
        return key not in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - a numba without these internals: compile here
        return False


# seconds to wait for the second process; past them (a process that hangs) it is stopped
# and the kernels compile here, as without it
WAIT_LIMIT = 600.0


class Ahead:
    """The second process compiling some kernels (see :func:`start`)."""

    def __init__(self, process):
        self.process = process

    def wait(self):
        """Wait until the second process has finished (its kernels are then in the cache).
        Returns whether it succeeded; if not, the kernels compile here when called."""
        try:
            return self.process.wait(WAIT_LIMIT) == 0
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False


def wanted(threads):
    """Whether compiling ahead can help: numba's cache on, not turned off
    (``PMP_COMPILE_AHEAD=0``), an interpreter to start, and ``threads`` >= 2."""
    return (CACHE and not DISABLED and os.environ.get("PMP_COMPILE_AHEAD", "1") != "0"
            and bool(sys.executable) and threads >= 2)


def start(calls, threads):
    """Compile the kernels of ``calls`` in a second process, where they are cold.

    Parameters
    ----------
    calls : list of (dispatcher, tuple)
        Kernels and arguments of the types they will be called with (the values do not
        matter: nothing runs).
    threads : int
        The threads pmp may use (:func:`pmp.threads.get_threads`): below 2, nothing starts.

    Returns
    -------
    Ahead or None
        None where nothing is compiled ahead (all warm, no cache, one thread, or off).
    """
    if not wanted(threads):
        return None
    jobs = []
    for dispatcher, args in calls:
        if not hasattr(dispatcher, "typeof_pyval"):  # not a numba dispatcher (e.g. wrapped)
            continue
        types = signature(dispatcher, args)
        if is_cold(dispatcher, types):
            function = dispatcher.py_func
            jobs.append((function.__module__, function.__name__, types))
    if not jobs:
        return None
    # the second process imports this very pmp, wherever it was imported from
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PMP_QUIET="1", PYTHONPATH=path))
    try:
        process.stdin.write(pickle.dumps(jobs))
        process.stdin.close()
    except OSError:  # it died at start: this process compiles
        process.kill()
    return Ahead(process)


def _compile(jobs):
    """The second process: compile each ``(module, function, types)`` of ``jobs``."""
    for module, name, types in jobs:
        getattr(importlib.import_module(module), name).compile(types)


if __name__ == "__main__":
    _compile(pickle.loads(sys.stdin.buffer.read()))
