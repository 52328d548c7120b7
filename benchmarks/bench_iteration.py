"""Time one training iteration of pmp on the workloads W1-W3 of the performance issue.

One iteration = forward sweep + costate sweep + gradient of every control + a gradient-
descent update. Prints, per workload and dtype: the first-call time in a fresh process with
an empty compilation cache (compile + one call), the median over >= 20 iterations, the flop
model and the floor (flops / this machine's measured dense GEMM rate), and writes
benchmarks/results/iteration.json and a Markdown table.

    python benchmarks/bench_iteration.py [--only W1,W2] [--repeat 20]

Flop model for "outer" (x' = W sigma(x) + b), N samples, dim d, K steps:
forward  X_k -> sigma(X_k) W_k^T: 2 N d^2 per step; backward p W_k and p^T sigma(X_k):
4 N d^2 per step; total 6 N d^2 K (+ O(N d K) elementwise, 2 activation evaluations per
entry and step). Bytes: states and costates, (K + 1) N d each, written once and read once.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pmp  # noqa: E402


def workload(name, dtype):
    rng = np.random.default_rng(0)
    if name == "W1":
        x, y = pmp.datasets.rings(1024, seed=0, lift=3)
        return pmp.Problem(x, y, T=10.0, n_steps=100, lam=1e-3, dtype=dtype)
    if name == "W2":
        x, y = pmp.datasets.digits()
        return pmp.Problem(x, y, T=5.0, n_steps=50, loss="cross_entropy", projection="first",
                           lam=1e-3, dtype=dtype)
    if name == "W3":
        x = rng.normal(size=(4096, 256))
        y = rng.normal(size=(4096, 256))
        return pmp.Problem(x, y, T=2.0, n_steps=20, lam=1e-3, projection=np.eye(256),
                           dtype=dtype)
    raise ValueError(name)


def flops(problem):
    N, d, K = problem.n_samples, problem.dim, problem.n_steps
    return 6.0 * N * d * d * K


def gemm_rate(dtype, n=1024, repeat=5):
    a = np.random.default_rng(0).normal(size=(n, n)).astype(dtype)
    a @ a
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def iteration(problem, controls, lr=1e-3):
    _, grads = pmp.value_and_grad(problem, controls, validate=False)
    return {n: controls[n] - (lr / problem.h) * grads[n] for n in controls}


def time_iterations(problem, repeat):
    controls = pmp.init_controls(problem, scale=0.1)
    controls = iteration(problem, controls)  # warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        controls = iteration(problem, controls)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def first_call(name, dtype):
    """Compile + first iteration in a fresh process with an empty numba cache."""
    code = (f"import time, sys; sys.path.insert(0, {os.path.dirname(HERE)!r}); "
            f"t = time.perf_counter(); import pmp; "
            f"from benchmarks.bench_iteration import workload, iteration; "
            f"p = workload({name!r}, {dtype!r}); "
            f"iteration(p, pmp.init_controls(p, scale=0.1)); "
            f"print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PMP_NO_CACHE="0")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=os.path.dirname(HERE))
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="W1,W2,W3")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-first-call", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for dtype in ("float64", "float32"):
        rate = gemm_rate(np.dtype(dtype))
        for name in args.only.split(","):
            problem = workload(name, dtype)
            first = None if args.no_first_call else first_call(name, dtype)
            median = time_iterations(problem, args.repeat)
            floor = flops(problem) / rate
            rows.append(dict(workload=name, dtype=dtype, n_samples=problem.n_samples,
                             dim=problem.dim, n_steps=problem.n_steps,
                             median_s=median, first_call_s=first, gflop=flops(problem) / 1e9,
                             gemm_gflops=rate / 1e9, floor_s=floor, ratio_to_floor=median / floor))
            r = rows[-1]
            print(f"{name} {dtype}: median {median * 1e3:9.3f} ms  first call "
                  f"{'-' if first is None else f'{first:6.2f} s'}  flops {r['gflop']:.3g} G  "
                  f"floor {floor * 1e3:8.3f} ms  (x{r['ratio_to_floor']:.2f})", flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "iteration.json"), "w") as f:
        json.dump(dict(machine=dict(cores=os.cpu_count()), rows=rows), f, indent=1)
    table = ["| workload | dtype | median / iteration | first call (compile) | GFLOP | "
             "floor | ratio to floor |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        first = "-" if r["first_call_s"] is None else f"{r['first_call_s']:.1f} s"
        table.append(f"| {r['workload']} | {r['dtype']} | {r['median_s'] * 1e3:.2f} ms | {first} | "
                     f"{r['gflop']:.3g} | {r['floor_s'] * 1e3:.2f} ms | {r['ratio_to_floor']:.1f}x |")
    with open(os.path.join(HERE, "results", "iteration.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
