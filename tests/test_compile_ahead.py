"""Compiling the maximiser's kernel ahead, in a second process (pmp._kernels.ahead): the
argument types it is compiled for are those of the calls the method then makes, and the
kernel compiled by the second process loads from numba's cache instead of compiling."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pmp
from pmp._kernels import _LazyModule, ahead
from pmp.maximize import Maximizer
from pmp_cases import ROOT
from test_stages import make_case

# (field, problem options, method options): each of the linear maximiser's kernels (the
# sweep's sums, the direct solve from the trajectories, conjugate gradients, FISTA for l1)
# and the diagonal one
CASES = {
    "sums": ("outer", {}, {}),
    "direct": ("features", dict(width=4), {}),
    "cg": ("outer", {}, dict(n_direct=0)),
    "l1": ("outer", dict(reg="l1", lam=0.01, bound=2.0), {}),
    "diagonal": ("diagonal", {}, {}),
    "float32": ("outer", dict(dtype="float32"), {}),
}


def _record_kernel_calls(monkeypatch, maximizers):
    """Wrap every kernel the maximisers' solvers reach through their lazy kernel modules;
    returns the list that receives ``(kernel name, argument types)`` of each call."""
    seen = []
    for solver in {m.solver for m in maximizers}:
        for module in [v for v in vars(solver).values() if isinstance(v, _LazyModule)]:
            for name, kernel in list(vars(module).items()):
                if hasattr(kernel, "py_func"):
                    def record(*args, _kernel=kernel, _name=name):
                        seen.append((_name, ahead.signature(_kernel, args)))
                        return _kernel(*args)

                    monkeypatch.setattr(module, name, record)
    return seen


def _planned(calls):
    return {(kernel.py_func.__name__, ahead.signature(kernel, args)) for kernel, args in calls}


@pytest.mark.parametrize("case", list(CASES))
def test_the_kernel_compiled_ahead_is_the_one_the_method_calls(monkeypatch, case):
    field, options, method_options = CASES[case]
    x, y = pmp.datasets.rings(16, seed=0)
    problem = pmp.Problem(x, y, field=field, T=1.0, n_steps=5, lift=3,
                          **dict(dict(lam=0.05), **options))
    controls = pmp.init_controls(problem, scale=0.5, seed=1)
    maximizer = Maximizer(problem, **method_options)
    planned = _planned(maximizer.kernel_calls(problem, controls, 1.0))
    memory = maximizer.memory
    assert len(planned) == 1 and maximizer.memory is memory  # not counted as a call
    # the E-MSA builds its own maximiser: record the kernels of the solver module
    seen = _record_kernel_calls(monkeypatch, [maximizer])
    pmp.train(problem, "emsa", max_iter=2, controls=controls, rho=1.0, **method_options)
    assert seen and set(seen) == planned


def test_the_kernels_of_a_staged_problem(monkeypatch):
    problem, _ = make_case("mixed")
    controls = pmp.init_controls(problem, scale=0.5, seed=1)
    maximizer = Maximizer(problem)
    staged_calls = [call for stage, m, u in zip(problem.stages, maximizer.maximizers,
                                                controls)
                    for call in m.kernel_calls(stage, {n: a for n, a in u.items()
                                                       if n != "enter"}, 1.0, False)]
    planned = _planned(staged_calls)
    seen = _record_kernel_calls(monkeypatch, maximizer.maximizers)
    pmp.train(problem, "emsa", max_iter=2, controls=controls, rho=1.0)
    # two stages with "outer" (one kernel and signature); the one with "inner" has none to
    # compile ahead (SciPy's L-BFGS calls its kernel)
    assert len(staged_calls) == 2
    assert planned == {call for call in seen if call[0] != "augmented_general"}


COMPILE_AHEAD = """
import numpy as np
from numba.core import event
import pmp
from pmp._kernels import ahead, reductions

x = np.ones(3, np.float32)
types = ahead.signature(reductions.dot, (x, x))
assert ahead.is_cold(reductions.dot, types)
handle = ahead.start([(reductions.dot, (x, x))], 2)
assert handle is not None and handle.wait()
assert not ahead.is_cold(reductions.dot, types)
assert ahead.start([(reductions.dot, (x, x))], 2) is None  # nothing left to compile
compiled = []


class Compiled(event.Listener):  # numba's compile events fire on cache misses only
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__name__)

    def on_end(self, ev):
        pass


event.register("numba:compile", Compiled())
assert reductions.dot(x, x) == 3.0
print(compiled)
"""


def test_a_second_process_compiles_into_the_cache(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", COMPILE_AHEAD], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # loaded from the cache the second process wrote


def test_nothing_is_compiled_ahead_where_it_cannot_help(monkeypatch):
    x = np.ones(3)
    from pmp._kernels import reductions

    calls = [(reductions.vector_sum, (x,))]
    monkeypatch.setenv("PMP_COMPILE_AHEAD", "0")
    assert ahead.start(calls, 2) is None
    monkeypatch.delenv("PMP_COMPILE_AHEAD")
    assert ahead.start(calls, 1) is None


def test_a_second_process_that_hangs_is_stopped(monkeypatch):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(ahead, "WAIT_LIMIT", 0.5)
    assert not ahead.Ahead(process).wait()  # the caller then compiles the kernels itself
    assert process.returncode is not None
