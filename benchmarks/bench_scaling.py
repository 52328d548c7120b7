"""Section ``scaling``: time per iteration against the problem size, and against threads.

* Sizes: W2-like problems (digits, field "outer", cross-entropy, float64) with N in
  :data:`N_SIZES` samples (the digits rows repeated) at K = 50, and K in :data:`K_SIZES`
  steps at N = 1797. All eight are timed interleaved; a least-squares line
  ``time = a + b * size`` is fitted to each sweep (target R^2 >= 0.99: the cost is linear
  in N and in K).
* Threads: W2 and W3 (float64) with ``pmp.threads(1)`` against ``pmp.threads(2)``,
  interleaved (target speed-up >= 1.7x). Interleaved with them, the same thread counts on
  a 1024 x 1024 GEMM of pmp's kernels' BLAS on row blocks, as in the sweeps
  (:class:`benchmarks.common.Gemm`): the speed-up the machine itself gives at that moment,
  which a sweep of products cannot exceed.
"""
import pmp
from benchmarks.common import (Gemm, PmpIteration, describe, fit_line, interleaved_medians,
                               log, seconds, table, target, workload)

NAME = "scaling"
UNITS = {"n_samples": "sample", "n_steps": "step"}
N_SIZES = (512, 1024, 2048, 4096)
K_SIZES = (25, 50, 100, 200)
R2_LIMIT = 0.99
THREAD_WORKLOADS = ("W2", "W3")
SPEEDUP_LIMIT = 1.7


def _stepper(problem):
    return PmpIteration(problem, pmp.init_controls(problem, scale=0.1))


def sizes(options):
    """Median iteration of the W2-like problems of every size, interleaved, and the fits.

    Parameters
    ----------
    options : benchmarks.common.Options

    Returns
    -------
    dict
        ``rows`` (``variable`` "n_samples" or "n_steps", ``size``, the problem's sizes,
        ``median_s``) and ``fits``: variable -> :func:`benchmarks.common.fit_line`.
    """
    problems = {("n_samples", n): workload("W2", n_samples=n) for n in N_SIZES}
    problems.update({("n_steps", k): workload("W2", n_steps=k) for k in K_SIZES})
    steppers = {key: _stepper(problem) for key, problem in problems.items()}
    medians = interleaved_medians({key: s.step for key, s in steppers.items()}, options.repeat,
                                  progress=lambda message: log(NAME, f"sizes: {message}"))
    rows = [dict(variable=variable, size=size, **describe(problems[variable, size]),
                 median_s=medians[variable, size]) for variable, size in problems]
    fits = {}
    for variable in ("n_samples", "n_steps"):
        picked = [r for r in rows if r["variable"] == variable]
        fits[variable] = fit_line([r["size"] for r in picked], [r["median_s"] for r in picked])
        log(NAME, f"{variable}: " + ", ".join(f"{r['size']}: {seconds(r['median_s'])}"
                                              for r in picked)
            + f"; R^2 = {fits[variable]['r2']:.4f}")
    return dict(rows=rows, fits=fits)


def speedup(name, options):
    """Median iteration of workload ``name`` (float64) on 1 and on ``options.threads``
    threads, interleaved.

    Parameters
    ----------
    name : str
        Workload.
    options : benchmarks.common.Options

    Returns
    -------
    dict
        ``workload, one_thread_s, threads, many_threads_s, speedup`` and
        ``gemm_speedup``, the GEMM's (the machine's ceiling at the time).
    """
    problem = workload(name)

    def in_threads(n, step_of):
        def step():
            with pmp.threads(n):
                step_of()
        return step

    stepper, gemm = _stepper(problem), Gemm("float64", library="pmp")
    n = options.threads
    medians = interleaved_medians({"one": in_threads(1, stepper.step),
                                   "many": in_threads(n, stepper.step),
                                   "gemm_one": in_threads(1, gemm.step),
                                   "gemm_many": in_threads(n, gemm.step)}, options.repeat)
    row = dict(workload=name, one_thread_s=medians["one"], threads=n,
               many_threads_s=medians["many"], speedup=medians["one"] / medians["many"],
               gemm_speedup=medians["gemm_one"] / medians["gemm_many"])
    log(NAME, f"{name}: 1 thread {seconds(row['one_thread_s'])}, {n} threads "
              f"{seconds(row['many_threads_s'])}: speed-up {row['speedup']:.2f}x (a GEMM: "
              f"{row['gemm_speedup']:.2f}x)")
    return row


def run(options):
    """The section (see :mod:`benchmarks.run`): ``rows`` and ``fits`` (see :func:`sizes`),
    ``threads`` (see :func:`speedup`), ``targets``."""
    result = sizes(options)
    result["threads"] = [speedup(name, options) for name in THREAD_WORKLOADS]
    result["targets"] = (
        [target(NAME, f"time linear in {variable}: R^2", fit["r2"], R2_LIMIT, ">=")
         for variable, fit in result["fits"].items()]
        + [target(NAME, f"{r['workload']}: speed-up {r['threads']} threads / 1", r["speedup"],
                  SPEEDUP_LIMIT, ">=") for r in result["threads"]])
    return result


def markdown(result):
    """The section's report: the sizes with their fits, then the threads."""
    lines = ["W2-like problems (digits rows repeated to N samples; float64), median time per "
             "iteration, all sizes interleaved; least-squares line time = a + b * size per "
             "sweep.", ""]
    rows = []
    for variable, fit in result["fits"].items():
        for r in (r for r in result["rows"] if r["variable"] == variable):
            rows.append([variable, r["size"], f"{r['n_samples']} x {r['dim']} x {r['n_steps']}",
                         seconds(r["median_s"]),
                         seconds(fit["intercept_s"] + fit["slope_s"] * r["size"])])
        rows.append([f"**fit {variable}**", "", "",
                     f"a = {seconds(fit['intercept_s'])}, "
                     f"b = {fit['slope_s'] * 1e6:.3g} us / {UNITS[variable]}",
                     f"R^2 = {fit['r2']:.4f}"])
    lines += table(["varied", "size", "N x d x K", "median / iteration", "line fit"], rows)
    lines += ["", "Threads (float64, median time per iteration, interleaved), and the "
              "speed-up of a 1024 x 1024 GEMM of pmp's BLAS on row blocks on the same "
              "threads, interleaved with them: what the machine gives at the time, the "
              "ceiling of a sweep of products.", ""]
    lines += table(["workload", "1 thread", "n threads", "speed-up", "GEMM speed-up"],
                   [[r["workload"], seconds(r["one_thread_s"]),
                     f"{r['threads']}: {seconds(r['many_threads_s'])}", f"{r['speedup']:.2f}x",
                     _gemm_cell(r)] for r in result["threads"]])
    return lines


def _gemm_cell(row):
    """The GEMM's speed-up (not measured in records older than it)."""
    return f"{row['gemm_speedup']:.2f}x" if "gemm_speedup" in row else "-"
