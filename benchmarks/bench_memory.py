"""Section ``memory``: peak memory of one iteration against the states + costates + controls.

Each case runs in a fresh process (``python -m benchmarks.bench_memory``, see :func:`main`):
build the problem and its initial controls, warm up (compile) on a tiny problem of the same
kind, then read the resident set size (baseline), reset the peak (``/proc/self/clear_refs``)
and run one iteration (:func:`benchmarks.common.iteration`) on the real problem; the peak
is ``VmHWM`` after it. The ratio
``(peak - baseline) / bytes(states + costates + controls)`` should stay <= 1.3
(``2 (K + 1) N d`` entries of states and costates, every control once).

Each case is also run with ``segment = round(sqrt(K))`` (checkpointing in time,
:func:`pmp.value_and_grad`): its memory ratio, against the same bytes, and its time per
iteration relative to the unsegmented one (measured interleaved in the parent process;
target <= 1.5x). The segmented gradient recomputes the states once more, so its time is
about one forward sweep more than the unsegmented one's: the report also gives
``1 + cost / unsegmented`` with the time of :func:`pmp.cost` (a forward sweep and the
terminal cost) measured interleaved with both, the ratio a segmented gradient with no other
overhead would have.
"""
import argparse
import gc
import json
import subprocess
import sys

import numpy as np

import pmp
from benchmarks.common import (ROOT, PmpIteration, control_bytes, describe,
                               interleaved_medians, iteration, log, seconds, table, target,
                               trajectory_bytes, workload)

NAME = "memory"
CASES = (("W3", None), ("W2", 400))  # workload and n_steps (None: the workload's)
TINY = dict(n_samples=256, n_steps=4)  # the warm-up problem (two row blocks of 128)
TINY_SEGMENT = 2
MEMORY_LIMIT = 1.3
TIME_LIMIT = 1.5


def _status_bytes(key):
    """A size from ``/proc/self/status``: ``"VmRSS"`` (resident set size) or ``"VmHWM"`` (its
    peak). Unlike ``getrusage``'s ``ru_maxrss``, the peak is this process's own: it neither
    inherits the parent's peak through exec nor keeps that of exited threads."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak():
    """Reset the peak RSS (Linux >= 4.0); False if not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak(name, n_steps=None, segment=None, threads=2):
    """Baseline and peak RSS around one iteration (run it in a fresh process).

    Parameters
    ----------
    name : str
        Workload.
    n_steps : int, optional
        Number of steps (default: the workload's).
    segment : int, optional
        Checkpointing segment.
    threads : int

    Returns
    -------
    dict
        ``baseline_bytes`` (after the problem, its controls and the warm-up),
        ``peak_bytes`` and ``peak_reset`` (False: the peak could not be reset and may
        include the compilation's).
    """
    pmp.set_threads(threads)
    problem = workload(name, n_steps=n_steps)
    controls = pmp.init_controls(problem, scale=0.1)
    tiny = workload(name, **TINY)
    iteration(tiny, pmp.init_controls(tiny, scale=0.1),
              segment=None if segment is None else TINY_SEGMENT)
    del tiny
    gc.collect()
    baseline = _status_bytes("VmRSS")
    reset = _reset_peak()
    controls = iteration(problem, controls, segment=segment)
    peak = _status_bytes("VmHWM")
    return dict(baseline_bytes=baseline, peak_bytes=peak, peak_reset=reset)


def _in_child(name, n_steps, segment, threads):
    command = [sys.executable, "-m", "benchmarks.bench_memory", name, "--threads", str(threads)]
    if n_steps is not None:
        command += ["--n-steps", str(n_steps)]
    if segment is not None:
        command += ["--segment", str(segment)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name, n_steps, options):
    """Both rows (unsegmented, segmented) of one case.

    Parameters
    ----------
    name : str
        Workload.
    n_steps : int or None
        Number of steps (None: the workload's).
    options : benchmarks.common.Options

    Returns
    -------
    list of dict
        ``case, segment``, the sizes, ``model_bytes`` (states + costates + controls), the
        child's :func:`measure_peak`, ``ratio`` (peak - baseline over the model bytes),
        ``median_s`` and ``time_ratio`` (to the unsegmented row); the segmented row also
        ``forward_ratio``, ``1 + (time of pmp.cost) / unsegmented``.
    """
    problem = workload(name, n_steps=n_steps)
    case = name if n_steps is None else f"{name}, K = {n_steps}"
    segment = max(1, round(np.sqrt(problem.n_steps)))
    model = trajectory_bytes(problem) + control_bytes(problem)
    controls = pmp.init_controls(problem, scale=0.1)
    steppers = {s: PmpIteration(problem, controls, segment=s) for s in (None, segment)}
    steps = {("full" if s is None else "segmented"): stepper.step
             for s, stepper in steppers.items()}
    steps["forward"] = lambda: pmp.cost(problem, controls)
    medians = interleaved_medians(steps, options.repeat)
    rows = []
    for s, key in ((None, "full"), (segment, "segmented")):
        peak = _in_child(name, n_steps, s, options.threads)
        ratio = (peak["peak_bytes"] - peak["baseline_bytes"]) / model
        rows.append(dict(case=case, segment=s, **describe(problem), model_bytes=model, **peak,
                         ratio=ratio, median_s=medians[key],
                         time_ratio=medians[key] / medians["full"]))
        if s is not None:
            rows[-1]["forward_ratio"] = 1.0 + medians["forward"] / medians["full"]
        log(NAME, f"{case}, segment {s}: peak - baseline "
                  f"{(peak['peak_bytes'] - peak['baseline_bytes']) / 1e6:.1f} MB = "
                  f"{ratio:.2f} x model ({model / 1e6:.1f} MB); {seconds(medians[key])} per "
                  f"iteration (x{rows[-1]['time_ratio']:.2f})")
    return rows


def run(options):
    """The section (see :mod:`benchmarks.run`): ``rows`` (see :func:`measure`), ``targets``."""
    rows = [row for name, n_steps in CASES for row in measure(name, n_steps, options)]
    targets = []
    for row in rows:
        if row["segment"] is None:
            targets.append(target(NAME, f"{row['case']}: (peak - baseline) / bytes",
                                  row["ratio"], MEMORY_LIMIT))
        else:
            targets.append(target(NAME, f"{row['case']}: time segment={row['segment']} / "
                                        f"unsegmented", row["time_ratio"], TIME_LIMIT))
    return dict(rows=rows, targets=targets)


def markdown(result):
    """The section's report."""
    lines = ["One iteration of `pmp.value_and_grad` + update (float64) in a fresh process: "
             "baseline RSS after imports, the problem, its controls and a warm-up on a tiny "
             "problem; peak RSS (reset before) after the iteration. Model bytes = states + "
             "costates + controls. Times per iteration are medians, measured interleaved in "
             "the parent process, with a forward sweep alone (`pmp.cost`): the segmented "
             "gradient recomputes the states once, so one forward sweep more than the "
             "unsegmented time is what it costs with no other overhead.", ""]
    rows = [[r["case"], f"{r['n_samples']} x {r['dim']} x {r['n_steps']}",
             r["segment"] or "-", f"{r['model_bytes'] / 1e6:.1f} MB",
             f"{r['baseline_bytes'] / 1e6:.1f} MB", f"{r['peak_bytes'] / 1e6:.1f} MB",
             f"{(r['peak_bytes'] - r['baseline_bytes']) / 1e6:.1f} MB",
             f"{r['ratio']:.2f}" + ("" if r["peak_reset"] else " (peak not reset)"),
             seconds(r["median_s"]),
             "-" if r["segment"] is None else f"{r['time_ratio']:.2f}x",
             f"{r['forward_ratio']:.2f}x" if "forward_ratio" in r else "-"]
            for r in result["rows"]]
    return lines + table(["case", "N x d x K", "segment", "model bytes", "baseline RSS",
                          "peak RSS", "peak - baseline", "ratio", "time / iteration",
                          "time / unsegmented", "1 + forward sweep / unsegmented"], rows)


def main(argv=None):
    """Child process: print :func:`measure_peak` of one case as a JSON line."""
    parser = argparse.ArgumentParser(description="Peak RSS of one iteration (child process).")
    parser.add_argument("workload")
    parser.add_argument("--n-steps", type=int)
    parser.add_argument("--segment", type=int)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(measure_peak(args.workload, args.n_steps, args.segment, args.threads)))


if __name__ == "__main__":
    main()
