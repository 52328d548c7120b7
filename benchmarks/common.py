"""Shared pieces of the benchmark suite (``python benchmarks/run.py``).

The workloads W1-W3 of the performance issue, the flop and byte models, pmp's training
iteration, interleaved timing, straight-line fits, targets and Markdown tables.

Workloads (field "outer", ``x' = W tanh(x) + b``, ``lam = 1e-3``):

* W1: two rings lifted to R^3, N = 1024, d = 3, K = 100, T = 10, squared loss.
* W2: the 8x8 digits, N = 1797, d = 64, K = 50, T = 5, cross-entropy on the first 10
  coordinates.
* W3: Gaussian inputs and targets, N = 4096, d = 256, K = 20, T = 2, squared loss.

Flop model, N samples, dimension d, K steps: the forward sweep multiplies
``sigma(X_k) W_k^T`` (2 N d^2 per step), the backward sweep ``p W_k`` and ``p^T sigma(X_k)``
(4 N d^2 per step): 6 N d^2 K in all, plus O(N d K) elementwise work. Byte model: the states
and the costates, (K + 1) N d entries each, written once and read once.
"""
import os
import platform
import re
import time
from dataclasses import dataclass

import numpy as np

import pmp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

THREADS = 2  # pmp, BLAS and the peers use this many threads unless a section says otherwise

FLOP_MODEL = ("6 N d^2 K flops per iteration: forward sigma(X_k) W_k^T (2 N d^2 per step), "
              "backward p W_k and p^T sigma(X_k) (4 N d^2 per step); the O(N d K) "
              "elementwise work is not counted. Floor = flops / the dense GEMM rate "
              "(1024 x 1024 matrix product, on the suite's threads) measured interleaved "
              "with pmp.")
BYTE_MODEL = ("states + costates = 2 (K + 1) N d * itemsize bytes, each written once and "
              "read once: traffic 2 x that per iteration; implied bandwidth = traffic / "
              "pmp's time per iteration.")


@dataclass
class Options:
    """Settings shared by the sections.

    Attributes
    ----------
    quick : bool
        Fewer repeats, and the sections skip their slowest parts.
    repeat : int
        Timed calls per median.
    threads : int
        Threads of pmp, BLAS and the peers.
    """

    quick: bool = False
    repeat: int = 20
    threads: int = THREADS


# ----------------------------------------------------------------------------- workloads
def _cpu():
    """The CPU's model name, the CPU LLVM compiles pmp's kernels for, and the vector
    extensions that matter to them (AVX2, FMA, AVX-512: the vector width of the kernels and
    BLAS)."""
    import llvmlite.binding

    name, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    simd = [flag for flag in ("avx2", "fma", "avx512f") if flag in flags]
    return name, llvmlite.binding.get_host_cpu_name(), simd


def cpu_model():
    """The CPU as one line: its model, LLVM's name for it and its vector extensions."""
    name, target, simd = _cpu()
    return f"{name} (LLVM target {target}; {', '.join(simd) or 'no AVX2'})"


def machine_key():
    """A name for this kind of machine, for its folder of dated results: the CPU model and
    LLVM's name for it, e.g. ``intel-xeon-processor-rocketlake``."""
    name, target, _ = _cpu()
    words = re.sub(r"\((r|tm)\)|cpu|@.*$", " ", name.lower())
    return "-".join(re.findall(r"[a-z0-9]+", words) + [re.sub(r"[^a-z0-9]+", "", target)])


def workload(name, dtype="float64", *, n_samples=None, n_steps=None):
    """The problem of workload ``name``, optionally with another size.

    Parameters
    ----------
    name : {"W1", "W2", "W3"}
    dtype : {"float64", "float32"}
    n_samples : int, optional
        Number of samples (default: the workload's). W1 and W3 draw that many samples; W2
        repeats the 1797 digits rows cyclically (first ``n_samples`` rows of the repetition).
    n_steps : int, optional
        Number of steps K (default: the workload's).

    Returns
    -------
    pmp.Problem
    """
    if name == "W1":
        x, y = pmp.datasets.rings(n_samples or 1024, seed=0, lift=3)
        return pmp.Problem(x, y, T=10.0, n_steps=n_steps or 100, lam=1e-3, dtype=dtype)
    if name == "W2":
        x, y = pmp.datasets.digits()
        if n_samples is not None:
            rows = np.arange(n_samples) % len(x)
            x, y = x[rows], y[rows]
        return pmp.Problem(x, y, T=5.0, n_steps=n_steps or 50, loss="cross_entropy",
                           projection="first", lam=1e-3, dtype=dtype)
    if name == "W3":
        rng = np.random.default_rng(0)
        n = n_samples or 4096
        x = rng.normal(size=(n, 256))
        y = rng.normal(size=(n, 256))
        return pmp.Problem(x, y, T=2.0, n_steps=n_steps or 20, lam=1e-3,
                           projection=np.eye(256), dtype=dtype)
    raise ValueError(f"unknown workload {name!r}; one of W1, W2, W3")


def describe(problem):
    """``{"n_samples", "dim", "n_steps", "dtype"}`` of ``problem`` (for the results)."""
    return dict(n_samples=problem.n_samples, dim=problem.dim, n_steps=problem.n_steps,
                dtype=problem.dtype.name)


def flops(problem):
    """Flops of one iteration by the flop model, ``6 N d^2 K``."""
    return 6.0 * problem.n_samples * problem.dim ** 2 * problem.n_steps


def trajectory_bytes(problem):
    """Bytes of the states and the costates, ``2 (K + 1) N d * itemsize``."""
    return 2 * (problem.n_steps + 1) * problem.n_samples * problem.dim * problem.dtype.itemsize


def control_bytes(problem):
    """Bytes of all the controls."""
    return sum(int(np.prod(shape)) for shape in problem.control_shapes.values()) \
        * problem.dtype.itemsize


# ----------------------------------------------------------------------------- iteration
def iteration(problem, controls, lr=1e-3, segment=None, workspace=None):
    """One training iteration of pmp: forward sweep, costate sweep, gradient of every
    control and the gradient-descent update ``u <- u - (lr / h) dJ/du``.

    Parameters
    ----------
    problem : pmp.Problem
    controls : dict
        name -> array.
    lr : float
        Step in the Riesz gradient.
    segment : int, optional
        Checkpointing segment of :func:`pmp.value_and_grad`.
    workspace : dict, optional
        Trajectory buffers reused across calls (:func:`pmp.value_and_grad`), as pmp's
        trainers do.

    Returns
    -------
    dict
        The updated controls (new arrays).
    """
    _, grads = pmp.value_and_grad(problem, controls, segment=segment, workspace=workspace,
                                  validate=False)
    return {n: controls[n] - (lr / problem.h) * grads[n] for n in controls}


class PmpIteration:
    """pmp's :func:`iteration` with the :meth:`step` interface of the peers; like pmp's
    trainers, it reuses the trajectory buffers from one iteration to the next.

    Parameters
    ----------
    problem : pmp.Problem
    controls : dict
        Initial controls (copied).
    lr : float
    segment : int, optional
    """

    def __init__(self, problem, controls, lr=1e-3, segment=None):
        self.problem = problem
        self.lr = lr
        self.segment = segment
        self.controls = {n: np.array(u) for n, u in controls.items()}
        self.workspace = {}

    def step(self):
        """One iteration from the current controls."""
        self.controls = iteration(self.problem, self.controls, self.lr, self.segment,
                                  self.workspace)


class Gemm:
    """A dense ``n x n`` matrix product: the reference rate of the flop floor.

    Parameters
    ----------
    dtype : numpy dtype
    n : int
    library : {"numpy", "torch", "pmp"}
        Whose BLAS multiplies: NumPy's, PyTorch's (MKL on x86, where NumPy's wheels carry
        OpenBLAS), or the one of pmp's kernels (``pmp._kernels.blas``: MKL where installed),
        on row blocks on pmp's threads as in its sweeps, so that a faster BLAS than pmp's
        sets the floor and pmp's own counts too.
    """

    def __init__(self, dtype, n=1024, library="numpy"):
        a = np.random.default_rng(0).normal(size=(n, n)).astype(dtype)
        if library == "torch":
            import torch

            a = torch.from_numpy(a)
            self.a, self.out = a, torch.empty_like(a)
            self.step = lambda: torch.mm(self.a, self.a, out=self.out)
        elif library == "pmp":
            from pmp._kernels.blas import matmul
            from pmp.threads import blocks, map_blocks

            self.a, self.out = a, np.empty_like(a)
            # the blocks of the thread count at the call (pmp.threads(1) in the profile)
            self.step = lambda: map_blocks(
                lambda r0, r1, _: matmul(self.a[r0:r1], self.a, self.out[r0:r1]), blocks(n))
        else:
            self.a, self.out = a, np.empty_like(a)
            self.step = lambda: np.matmul(self.a, self.a, out=self.out)
        self.library = library
        self.flops = 2.0 * n ** 3


# -------------------------------------------------------------------------------- timing
def interleaved_medians(steps, repeat, *, rounds=4, pause=0.2, warmup=0.2, progress=None):
    """Median wall time of each callable, measured interleaved.

    Each callable is called once untimed (compilation, first allocations), then ``repeat``
    times timed, in ``min(rounds, repeat)`` blocks; the callables take turns block by
    block, so a change of the machine's load affects them alike. A pause before each block
    lets the idle threads of the previous one (BLAS, OpenMP) stop spinning; untimed calls
    for ``warmup`` seconds (at least one) after it bring the callable back to the steady
    state of a training loop, whose iterations run back to back (measured on W1: the first
    calls after a pause run up to 2.5x slower, and the median of 20 calls comes within 5% of
    the steady state only after about 0.2 s of calls).

    Parameters
    ----------
    steps : dict
        name -> callable without arguments.
    repeat : int
        Timed calls of each callable.
    rounds : int
        Number of blocks per callable.
    pause : float
        Seconds of sleep before each block.
    warmup : float
        Seconds of untimed calls (at least one) after the pause.
    progress : callable, optional
        Called with a short message after every round.

    Returns
    -------
    dict
        name -> median seconds per call.
    """
    for step in steps.values():
        step()
    times = {name: [] for name in steps}
    n_rounds = max(1, min(rounds, repeat))
    for r in range(n_rounds):
        count = repeat * (r + 1) // n_rounds - repeat * r // n_rounds
        for name, step in steps.items():
            time.sleep(pause)
            warm = time.perf_counter() + warmup
            step()
            while time.perf_counter() < warm:
                step()
            for _ in range(count):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
        if progress is not None:
            progress(f"round {r + 1}/{n_rounds}")
    return {name: float(np.median(t)) for name, t in times.items()}


def fit_line(sizes, seconds):
    """Least-squares line ``seconds = a + b * size``.

    Returns
    -------
    dict
        ``intercept_s`` (a), ``slope_s`` (b, seconds per unit of size) and ``r2``.
    """
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(seconds, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual ** 2) / total if total > 0 else 1.0
    return dict(intercept_s=float(intercept), slope_s=float(slope), r2=float(r2))


# ------------------------------------------------------------------------------- targets
def target(section, label, value, limit, op="<=", note=""):
    """One target of the issue and whether the measured ``value`` meets it.

    Parameters
    ----------
    section : str
    label : str
        What is compared, e.g. ``"W1 float64: pmp / JAX"``.
    value : float or None
        Measured value; None if it could not be measured (status "n/a", see ``note``).
    limit : float
    op : {"<=", ">="}
    note : str

    Returns
    -------
    dict
        ``section, target, value, op, limit, status, note``; status "PASS", "MISS" or "n/a".
    """
    if value is None:
        status = "n/a"
    elif op == "<=":
        status = "PASS" if value <= limit else "MISS"
    elif op == ">=":
        status = "PASS" if value >= limit else "MISS"
    else:
        raise ValueError(f"op must be '<=' or '>=', got {op!r}")
    return dict(section=section, target=label, value=value, op=op, limit=limit,
                status=status, note=note)


# ------------------------------------------------------------------------------ Markdown
def seconds(value):
    """A duration for a table: ``"12.34 ms"``, ``"1.23 s"`` or ``"-"`` for None."""
    if value is None:
        return "-"
    return f"{value * 1e3:.2f} ms" if value < 1.0 else f"{value:.2f} s"


def number(value, spec=".3g", suffix=""):
    """``format(value, spec) + suffix``, or ``"-"`` for None."""
    return "-" if value is None else f"{format(value, spec)}{suffix}"


def measured(target):
    """A target's measured value for a table: ``"-"`` if not measured, and ``">= "`` or
    ``"<= "`` before a bound (a run beyond its time limit bounds the ratio, see
    :func:`benchmarks.bench_target.ratio_target`)."""
    prefix = {"lower": ">= ", "upper": "<= "}.get(target.get("bound"), "")
    return "-" if target["value"] is None else prefix + number(target["value"], ".3g")


def table(header, rows):
    """A Markdown table (list of lines) from a header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def log(section, message):
    """A progress line ``[section] message``, flushed."""
    print(f"[{section}] {message}", flush=True)
