"""Section ``startup``: time from launching ``pmp train`` to its first iteration.

``python -m pmp train --out TMP --set train.max_iter=1 --print-every 1`` trains the built-in
demo (E-MSA on the lifted rings) for one iteration in a fresh process. The runner prints a
progress line per iteration when its output is not a terminal; the time to the line of
iteration 1 is interpreter start-up + imports + compilation (or loading the numba cache) +
the initial sweep + one E-MSA iteration. The process's total time (which adds writing the
run file) is reported too.

* cold: ``NUMBA_CACHE_DIR`` set to a new, empty directory (everything is compiled);
* warm: a second process with the same cache directory (everything is loaded).

With ``--quick`` the cold run is skipped and the warm run uses pmp's default cache, after
one untimed run that fills it if it is stale.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, log, seconds, table, target

NAME = "startup"
LIMITS = {"cold": 15.0, "warm": 1.5}  # seconds to the first iteration
IMPORT_LIMIT = 0.5  # seconds
FIRST_ITERATION = re.compile(r"^\s*iter\s+1\s")


def _user_environment():
    """This process's environment as a user's shell has it: without the settings that
    disable a cache (numba's, pmp's, Python's bytecode: a session that sets
    PYTHONDONTWRITEBYTECODE recompiles every module of pmp at every start)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("NUMBA_CACHE_DIR", "PMP_NO_CACHE", "PMP_DISABLE_JIT",
                         "NUMBA_DISABLE_JIT", "PYTHONDONTWRITEBYTECODE")}


def time_train(cache_dir=None):
    """Run the demo's first iteration in a fresh ``pmp train`` process.

    Parameters
    ----------
    cache_dir : str, optional
        ``NUMBA_CACHE_DIR`` of the process (default: pmp's own cache beside its sources).

    Returns
    -------
    dict
        ``first_iteration_s``: from launching the process to the progress line of
        iteration 1; ``total_s``: until the process exits.
    """
    env = _user_environment()
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    with tempfile.TemporaryDirectory(prefix="pmp-bench-run-") as out:
        command = [sys.executable, "-m", "pmp", "train", "--out", os.path.join(out, "run"),
                   "--set", "train.max_iter=1", "--print-every", "1"]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        first, output = None, []
        for line in process.stdout:
            output.append(line)
            if first is None and FIRST_ITERATION.match(line):
                first = time.perf_counter() - start
        process.wait()
        total = time.perf_counter() - start
    if process.returncode != 0 or first is None:
        raise RuntimeError(f"{' '.join(command)} failed (exit status {process.returncode}, "
                           f"first iteration {'not ' if first is None else ''}seen):\n"
                           + "".join(output[-20:]))
    return dict(first_iteration_s=first, total_s=total)


PROFILE_SCRIPT = """
import collections, json, sys, time
from numba.core import event

spans, totals, counts = [], collections.defaultdict(float), collections.Counter()


class Timer(event.Listener):
    # exclusive time of each compiled function: its own compilation minus its callees'
    def on_start(self, ev):
        spans.append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        start, callees = spans.pop()
        spent = time.perf_counter() - start
        if spans:
            spans[-1][1] += spent
        function = ev.data["dispatcher"].py_func
        name = function.__module__.rsplit(".", 1)[-1] + "." + function.__name__
        totals[name] += spent - callees
        counts[name] += 1


event.register("numba:compile", Timer())
from pmp.batch.cli import main
start = time.perf_counter()
try:
    main(["train", "--out", sys.argv[1], "--set", "train.max_iter=1", "--print-every", "1"])
except SystemExit:
    pass
print(json.dumps(dict(total_s=time.perf_counter() - start, functions=totals, counts=counts)))
"""


def compile_profile(cache_dir):
    """Where the cold start's compilation goes: ``pmp train`` as in :func:`time_train`,
    with numba's compile events timed. Returns ``total_s`` (the training command) and
    ``functions``: each compiled function's own time (its callees' excluded) and number of
    specialisations, longest first."""
    env = dict(_user_environment(), NUMBA_CACHE_DIR=cache_dir, PMP_QUIET="1")
    with tempfile.TemporaryDirectory(prefix="pmp-bench-run-") as out:
        done = subprocess.run([sys.executable, "-c", PROFILE_SCRIPT, os.path.join(out, "run")],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    profile = json.loads(done.stdout.strip().splitlines()[-1])
    functions = sorted(([name, seconds_, profile["counts"][name]]
                        for name, seconds_ in profile["functions"].items()),
                       key=lambda row: -row[1])
    return dict(total_s=profile["total_s"], functions=functions)


def time_import(repeat=5):
    """Seconds that ``import pmp`` takes in a fresh interpreter (measured inside it, so the
    interpreter's own start is not counted): the median of ``repeat`` processes."""
    code = "import time; t = time.perf_counter(); import pmp; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                 env=_user_environment(), capture_output=True,
                                 text=True).stdout)
            for _ in range(repeat + 1)]
    times = sorted(runs[1:])  # the first one writes the bytecode if it is stale
    return times[len(times) // 2]


def python_reference(repeat=3):
    """Seconds of a fixed pure-Python loop (10^7 additions), the best of ``repeat``: numba's
    compiler is Python, so a cold start scales with this, which varies with the machine's
    speed at the time (the same virtual machine measured 12.7 s and 19.2 s an hour apart)."""
    code = ("import time\nt = time.perf_counter()\ns = 0\nfor i in range(10**7):\n    s += i\n"
            "print(time.perf_counter() - t)")
    return min(float(subprocess.run([sys.executable, "-c", code], check=True,
                                     capture_output=True, text=True).stdout)
               for _ in range(repeat))


def run(options):
    """The section (see :mod:`benchmarks.run`; ``options.quick`` skips the cold run):
    ``rows`` (``run`` "cold" or "warm", ``cache``, ``first_iteration_s``, ``total_s``,
    ``limit_s``), ``profile`` (:func:`compile_profile`; None with quick), ``import_s`` and
    ``targets``."""
    rows, profile = [], None
    reference_s = python_reference()

    def measure(kind, cache, cache_dir):
        row = dict(run=kind, cache=cache, **time_train(cache_dir), limit_s=LIMITS[kind])
        log(NAME, f"{kind}: first iteration after {seconds(row['first_iteration_s'])}, "
                  f"process {seconds(row['total_s'])}")
        rows.append(row)

    if options.quick:
        time_train()  # fills pmp's default cache if it is stale
        measure("warm", "pmp's default cache, filled by a previous run", None)
    else:
        with tempfile.TemporaryDirectory(prefix="pmp-bench-numba-") as cache_dir:
            measure("cold", "empty (new NUMBA_CACHE_DIR)", cache_dir)
            measure("warm", "the cold run's NUMBA_CACHE_DIR", cache_dir)
        with tempfile.TemporaryDirectory(prefix="pmp-bench-numba-") as cache_dir:
            profile = compile_profile(cache_dir)
    import_s = time_import()
    log(NAME, f"import pmp: {seconds(import_s)}")
    targets = [target(NAME, f"{r['run']} start: time to first iteration",
                      r["first_iteration_s"], r["limit_s"]) for r in rows]
    targets.append(target(NAME, "import pmp", import_s, IMPORT_LIMIT))
    return dict(rows=rows, profile=profile, import_s=import_s,
                python_reference_s=reference_s, targets=targets)


def markdown(result):
    """The section's report."""
    lines = ["`python -m pmp train --set train.max_iter=1` on the built-in demo (E-MSA, rings "
             "lifted to R^3, N = 256, K = 100) in a fresh process: time from the launch to "
             "the progress line of iteration 1, and to the process's exit.", ""]
    lines += table(
        ["run", "numba cache", "time to first iteration", "process total", "target"],
        [[r["run"], r["cache"], seconds(r["first_iteration_s"]), seconds(r["total_s"]),
          f"<= {r['limit_s']:g} s"] for r in result["rows"]])
    if "python_reference_s" in result:
        lines += ["", f"The machine's Python speed at the time, which a cold start (numba's "
                      f"compiler is Python) scales with: a loop of 10^7 additions took "
                      f"{seconds(result['python_reference_s'])} (best of 3)."]
    if "import_s" in result:
        lines += ["", f"`import pmp` in a fresh interpreter, timed inside it (median of 5 "
                      f"processes): {seconds(result['import_s'])} (target <= {IMPORT_LIMIT:g} s)."]
    profile = result.get("profile")
    if profile:
        functions = profile["functions"]
        compiled = sum(row[1] for row in functions)
        lines += ["", f"Where a cold start goes (a third run with numba's compile events timed; "
                      f"the training command took {seconds(profile['total_s'])}): "
                      f"{sum(row[2] for row in functions)} compilations of {len(functions)} "
                      f"functions, {seconds(compiled)} in all, in the training process (the "
                      f"E-MSA's maximiser compiles meanwhile in a second process: "
                      f"`pmp._kernels.ahead`). Each function's own time, its callees' "
                      f"excluded, the 12 longest:", ""]
        lines += table(["function", "own compile time", "share", "specialisations"],
                       [[f"`{name}`", seconds(spent), f"{spent / compiled:.0%}", count]
                        for name, spent, count in functions[:12]])
    return lines
