"""Section ``target``: wall-clock time to a target, pmp's methods against PyTorch's Adam.

Three problems (float64, field "outer", ``x' = W tanh(x) + b``, l2 regulariser):

* ``toy``: Li, Chen, Tai & E's toy (JMLR 2018), the 20-layer problem of notebook 02 and of
  :func:`benchmarks.bench_msa.li_toy` (field "outer"): to a training loss
  ``Phi(x(T)) <= 1e-3``.
* ``digits``: the 8x8 digits (all 1797, standardised), T = 5, 50 steps, cross-entropy on
  the first 10 coordinates, ``lam = 1e-3`` (the problem of ``runs/digits.toml``): to a
  training loss ``Phi(x(T)) <= 0.005``.
* ``rings``: the demo of ``pmp train`` (:func:`pmp.demo_config`): to the J (``cost["total"]``)
  that the E-MSA with its defaults reaches after 1000 iterations from seed 0, measured in
  the same run (100 iterations with ``--quick``).

The training loss is the cost part ``"loss"``, ``Phi(X_K)``; these problems have terminal
weight 1, so it is also the part ``"terminal"``.
For a target on the training loss the report also estimates the minimiser of J (pmp's
L-BFGS from seed 0 for up to the time limit, :func:`objective_minimum`) and gives the J at
which each method met the target: a method that decreases J meets a loss target only if the
minimiser's loss is below it (on the digits it is 0.995 times the target).

Methods: pmp's E-MSA with its defaults (:func:`pmp.iterate` ``"emsa"``), its other
maximiser (``exact=True`` when the default is inexact; recorded as not run when this pmp's
:class:`pmp.methods.EMSA` has no ``exact`` option) and without momentum (``momentum=0``,
where the option exists), pmp's L-BFGS and Adam, and PyTorch's
``torch.optim.Adam`` on the same discrete network and cost in float64 (the network of
:class:`benchmarks.peers.TorchPeer`; its cost parts are checked against :func:`pmp.cost`
to :data:`COST_TOLERANCE` relative at every seed's initial controls and where it stops, and
the run fails loudly otherwise). The learning rates of both Adams are chosen from
:data:`LR_GRID` on seed 0 (reached first, then the fewest iterations, else the lowest value
reached: see :func:`tune_key`); the grid and the choices are in the results.

Each run starts from ``pmp.init_controls(problem, scale=0.1, seed=s)`` (the initial controls
:func:`pmp.iterate` draws by default) for the seeds 0-4 and stops at the target or after the
time limit (60 s). Time is ``TrainState.elapsed`` (pmp) or the same clock around PyTorch's
loop: from the first evaluation to the evaluation that meets the target; every method runs
a few untimed iterations first (compilation, first allocations). The seeds are interleaved:
for each seed every method runs in turn (after a short pause), so a change of the machine's
load affects them alike; seed 0's runs of the two Adams at their chosen rates are those of
the tuning grid. pmp, BLAS and PyTorch use 2 threads. PyTorch's OpenMP threads spin while
they wait: on an oversubscribed machine (load average above the cores) its iterations can
take 10-100x longer than on a quiet one, so read its times with the load averages in the
report.

Targets (issue 17, item 2), per problem, on the medians over the seeds (a seed that misses
the target counts as beyond the time limit; a median beyond it gives a bound, and the
status is decided only where the bound decides it):

* E-MSA (defaults) time <= 1.5x the time of pmp's fastest gradient method (L-BFGS, Adam);
* pmp's fastest method <= 0.5x PyTorch Adam's time.

Run as a section of the suite, ``python benchmarks/run.py --only target`` (``--quick``:
seeds 0 and 1, 10 s per run, a smaller grid), or on its own::

    python benchmarks/bench_target.py [--quick] [--time-limit 60] [--seeds 0,1,2,3,4]
        [--problems toy,digits,rings] [--out benchmarks/results]

which writes ``target.json`` and ``target.md`` (with the machine) into ``--out``. The full
run takes 30-60 minutes on 2 cores (mostly runs that reach the time limit).
"""
import argparse
import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))

import pmp  # noqa: E402
from benchmarks.common import Options, log, measured, number, seconds, table, target  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

NAME = "target"
SEEDS = (0, 1, 2, 3, 4)
QUICK_SEEDS = (0, 1)
TIME_LIMIT = 60.0  # seconds per run
QUICK_TIME_LIMIT = 10.0
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # both Adams
QUICK_LR_GRID = (3e-3, 1e-2, 3e-2)
TUNE_SEED = 0
INIT_SCALE = 0.1  # pmp.iterate's default init_scale
RINGS_EMSA_ITERATIONS = 1000
QUICK_RINGS_EMSA_ITERATIONS = 100
WARMUP_ITERATIONS = 10  # untimed iterations of each method first, or fewer after
WARMUP_SECONDS = 2.0  # this many seconds (pmp's kernels compile at their first call)
PAUSE = 0.2  # seconds of sleep before each timed run
COST_TOLERANCE = 1e-12  # |PyTorch's cost part - pmp's| / max(1, |pmp's|)
EMSA_LIMIT = 1.5  # E-MSA (defaults) / pmp's fastest gradient method
PEER_LIMIT = 0.5  # pmp's fastest method / PyTorch Adam
PROBLEMS = ("toy", "digits", "rings")
GRADIENT_METHODS = ("lbfgs", "adam")
MAX_ITER = 10**9  # the runs stop at the target or the time limit


@dataclass
class TargetOptions(Options):
    """:class:`benchmarks.common.Options` with this section's own settings.

    Attributes
    ----------
    time_limit : float, optional
        Seconds per run (default :data:`TIME_LIMIT`, :data:`QUICK_TIME_LIMIT` with quick).
    seeds : tuple of int, optional
        Seeds of the initial controls (default :data:`SEEDS`, :data:`QUICK_SEEDS`).
    problems : tuple of str, optional
        Subset of :data:`PROBLEMS` (default all).
    lr_grid : tuple of float, optional
        Learning rates of both Adams (default :data:`LR_GRID`, :data:`QUICK_LR_GRID`).
    rings_iterations : int, optional
        E-MSA iterations that set the rings' target (default
        :data:`RINGS_EMSA_ITERATIONS`, :data:`QUICK_RINGS_EMSA_ITERATIONS`).
    pause : float, optional
        Seconds of sleep before each timed run (default :data:`PAUSE`).
    """

    time_limit: float | None = None
    seeds: tuple | None = None
    problems: tuple | None = None
    lr_grid: tuple | None = None
    rings_iterations: int | None = None
    pause: float | None = None


def settings_of(options):
    """The section's settings from ``options`` (any :class:`benchmarks.common.Options`).

    Returns
    -------
    dict
        ``seeds, time_limit, lr_grid, problems, rings_iterations, pause, tune_seed,
        init_scale, threads, quick``.
    """
    quick = options.quick

    def get(name, full, short):
        value = getattr(options, name, None)
        return (short if quick else full) if value is None else value

    return dict(seeds=[int(s) for s in get("seeds", SEEDS, QUICK_SEEDS)],
                time_limit=float(get("time_limit", TIME_LIMIT, QUICK_TIME_LIMIT)),
                lr_grid=[float(lr) for lr in get("lr_grid", LR_GRID, QUICK_LR_GRID)],
                problems=list(get("problems", PROBLEMS, PROBLEMS)),
                rings_iterations=int(get("rings_iterations", RINGS_EMSA_ITERATIONS,
                                         QUICK_RINGS_EMSA_ITERATIONS)),
                pause=float(get("pause", PAUSE, PAUSE)),
                tune_seed=TUNE_SEED, init_scale=INIT_SCALE, threads=options.threads,
                quick=quick)


# ------------------------------------------------------------------------------ problems
def toy_problem():
    """Li et al.'s toy with the field "outer" (:func:`benchmarks.bench_msa.li_toy`)."""
    from benchmarks.bench_msa import li_toy

    return li_toy("outer")


def digits_problem():
    """The digits problem of ``runs/digits.toml`` (all 1797 samples, standardised)."""
    x, y = pmp.datasets.digits()
    return pmp.Problem(x, y, field="outer", activation="tanh", T=5.0, n_steps=50,
                       projection="first", loss="cross_entropy", reg="l2", lam=1e-3)


def rings_problem():
    """The problem of the demo of ``pmp train`` (:func:`pmp.demo_config`)."""
    return pmp.demo_config().build_problem()


def problem_spec(name):
    """What is measured on problem ``name``.

    Parameters
    ----------
    name : {"toy", "digits", "rings"}

    Returns
    -------
    dict
        ``name, description, problem, quantity`` (the cost part compared with the target:
        ``"loss"`` or ``"total"``) and ``goal`` (None for the rings: set by the E-MSA run
        of :func:`rings_goal`).
    """
    if name == "toy":
        return dict(name=name, problem=toy_problem(), quantity="loss", goal=1e-3,
                    description="Li et al.'s toy (notebook 02, field \"outer\"): 100 points, "
                                "20 steps, T = 5")
    if name == "digits":
        return dict(name=name, problem=digits_problem(), quantity="loss", goal=0.005,
                    description="digits (runs/digits.toml): 1797 x 64, 50 steps, T = 5, "
                                "cross-entropy")
    if name == "rings":
        return dict(name=name, problem=rings_problem(), quantity="total", goal=None,
                    description="rings demo (pmp.demo_config()): 256 x 3, 100 steps, T = 10")
    raise ValueError(f"unknown problem {name!r}; one of {', '.join(PROBLEMS)}")


def initial_controls(problem, seed):
    """The initial controls of ``seed``: ``pmp.init_controls(problem, scale=0.1, seed=seed)``."""
    return pmp.init_controls(problem, scale=INIT_SCALE, seed=seed)


# ---------------------------------------------------------------------------- contestants
def emsa_variants():
    """The E-MSA variants to run: the defaults, the other maximiser if pmp has one, and no
    momentum if pmp's E-MSA has one.

    Returns
    -------
    variants : list of (key, label, options)
    info : dict
        ``exact_option`` (whether :class:`pmp.methods.EMSA` takes ``exact``) and
        ``default_exact`` (its default, None without the option).
    """
    parameters = inspect.signature(pmp.methods.EMSA.__init__).parameters
    if "exact" not in parameters:
        return ([("emsa", "E-MSA (defaults)", {})],
                dict(exact_option=False, default_exact=None,
                     note="this pmp's EMSA has no `exact` option: only its default (exact) "
                          "maximiser ran"))
    default_exact = bool(parameters["exact"].default)
    other = "inexact" if default_exact else "exact"
    variants = [("emsa", f"E-MSA (defaults: {'exact' if default_exact else 'inexact'})", {}),
                (f"emsa_{other}", f"E-MSA ({other})", {"exact": not default_exact})]
    note = f"the default maximiser is {'exact' if default_exact else 'inexact'}"
    if "momentum" in parameters:
        variants.append(("emsa_no_momentum", "E-MSA (no momentum: Li et al.)",
                         {"momentum": 0.0}))
        note += "; momentum=0 is Li et al.'s algorithm with the same maximiser"
    return variants, dict(exact_option=True, default_exact=default_exact, note=note)


def _outcome(reached, seconds_, iterations, value, status, total):
    return dict(reached=bool(reached), seconds=float(seconds_), iterations=int(iterations),
                value=float(value), status=status, total=float(total))


def pmp_run(problem, method, options, controls, quantity, goal, time_limit):
    """One pmp run from ``controls`` until ``cost[quantity] <= goal`` or the time limit.

    Parameters
    ----------
    problem : pmp.Problem
    method : str
        A method of :func:`pmp.methods.method_names`.
    options : dict
        The method's options.
    controls : dict
    quantity : {"loss", "total"}
    goal : float
    time_limit : float

    Returns
    -------
    dict
        ``reached, seconds`` (``TrainState.elapsed`` when the target was met, else at the
        last state), ``iterations``, ``value`` (the lowest ``cost[quantity]`` seen) and
        ``status`` ("target", or pmp's reason to stop: "time_limit", "stalled", ...) and
        ``total``, the J (``cost["total"]``) where the run stopped.
    """
    states = pmp.iterate(problem, method, controls=controls, max_iter=MAX_ITER, gtol=0.0,
                         time_limit=time_limit, **options)
    best, last = math.inf, None
    try:
        for state in states:
            last = state
            value = state.cost[quantity]
            best = min(best, value)
            if value <= goal:
                return _outcome(True, state.elapsed, state.iteration, value, "target",
                                state.cost["total"])
    finally:
        states.close()
    return _outcome(False, last.elapsed, last.iteration, best, last.status,
                    last.cost["total"])


class TorchTraining:
    """PyTorch's cost on a pmp problem (float64) and ``torch.optim.Adam`` on it.

    The network is :class:`benchmarks.peers.TorchPeer`'s (the forward Euler sweep
    ``X_{k+1} = X_k + h (tanh(X_k) W_k^T + 1 b_k^T)``, then ``z = X_K P^T``); the cost parts
    are pmp's (docs/theory.md section 2): ``loss = Phi(X_K)`` (mean squared
    ``|z - y|^2 / 2`` or cross-entropy), ``total = terminal * loss + h lam sum_k (|W_k|_F^2
    + |b_k|^2)``.

    Parameters
    ----------
    problem : pmp.Problem
        Float64, and what :class:`benchmarks.peers.TorchPeer` supports.
    threads : int
        ``torch.set_num_threads(threads)``.
    """

    def __init__(self, problem, threads):
        from benchmarks.peers import TorchPeer

        if problem.dtype != np.float64:
            raise ValueError("the time-to-target benchmark runs in float64")
        self.problem = problem
        self.peer = TorchPeer(problem, pmp.init_controls(problem, "zeros"), threads=threads)

    def tensors(self, controls):
        """``W, b`` as float64 leaf tensors that require gradients (copies)."""
        return tuple(torch.tensor(np.asarray(controls[n]), dtype=torch.float64)
                     .requires_grad_(True) for n in ("W", "b"))

    def parts(self, W, b):
        """``(loss, total)`` as 0-d tensors at the controls ``W, b``."""
        return self.peer.parts(W, b)

    def check(self, controls):
        """The relative errors of PyTorch's cost parts against :func:`pmp.cost`.

        Parameters
        ----------
        controls : dict

        Returns
        -------
        dict
            ``"loss"`` and ``"total"``: ``|torch - pmp| / max(1, |pmp|)``.

        Raises
        ------
        AssertionError
            If an error exceeds :data:`COST_TOLERANCE`.
        """
        reference = pmp.cost(self.problem, controls)
        with torch.no_grad():
            loss, total = self.parts(*self.tensors(controls))
        errors = {name: abs(value.item() - reference[name]) / max(1.0, abs(reference[name]))
                  for name, value in (("loss", loss), ("total", total))}
        worst = max(errors.values())
        assert worst <= COST_TOLERANCE, (
            f"PyTorch's cost differs from pmp's by {worst:.2e} relative (tolerance "
            f"{COST_TOLERANCE:g}): {errors}")
        return errors

    def adam(self, controls, lr, quantity, goal, time_limit, max_iter=MAX_ITER):
        """``torch.optim.Adam`` from ``controls`` until ``quantity <= goal`` or the limit.

        Each iteration evaluates the cost parts, compares ``quantity`` with ``goal``, then
        backpropagates and takes one Adam step; the clock runs from just before the first
        evaluation.

        Parameters
        ----------
        controls : dict
        lr : float
        quantity : {"loss", "total"}
        goal : float
        time_limit : float
        max_iter : int
            At most this many Adam steps (the warm-up's few).

        Returns
        -------
        outcome : dict
            As :func:`pmp_run`.
        controls : dict
            The controls where it stopped (NumPy arrays).
        """
        W, b = self.tensors(controls)
        optimizer = torch.optim.Adam([W, b], lr=lr)
        index = 0 if quantity == "loss" else 1
        best, iteration = math.inf, 0
        start = time.perf_counter()
        while True:
            optimizer.zero_grad(set_to_none=True)
            parts = self.parts(W, b)
            value = parts[index].item()
            elapsed = time.perf_counter() - start
            best = min(best, value)
            if value <= goal:
                status = "target"
                break
            if not math.isfinite(value):
                status = "diverged"
                break
            if elapsed >= time_limit:
                status = "time_limit"
                break
            if iteration >= max_iter:
                status = "max_iter"
                break
            parts[1].backward()
            optimizer.step()
            iteration += 1
        stopped = {"W": W.detach().numpy().copy(), "b": b.detach().numpy().copy()}
        return _outcome(status == "target", elapsed, iteration, value if status == "target"
                        else best, status, parts[1].item()), stopped


class Contestant:
    """One method on one problem: an untimed warm-up and timed runs to the target.

    Parameters
    ----------
    key : str
        Key in the results ("emsa", "emsa_exact", "lbfgs", "adam", "torch_adam").
    label : str
    family : {"emsa", "gradient", "peer"}
    method : str, optional
        pmp's method (None for PyTorch).
    options : dict
        The method's options (pmp) or ``{"lr": ...}`` (PyTorch).
    torch_training : TorchTraining, optional
        For PyTorch's Adam.
    """

    def __init__(self, key, label, family, method=None, options=None, torch_training=None):
        self.key, self.label, self.family = key, label, family
        self.method = method
        self.options = dict(options or {})
        self.torch_training = torch_training
        self.cost_errors = []  # PyTorch's: at each run's start and end

    def with_options(self, **options):
        """A copy with other options (an Adam of another learning rate); it records its
        cost checks into this contestant's :attr:`cost_errors`."""
        copy = Contestant(self.key, self.label, self.family, self.method,
                          {**self.options, **options}, self.torch_training)
        copy.cost_errors = self.cost_errors
        return copy

    def warm_up(self, problem, controls, quantity):
        """Untimed iterations (:data:`WARMUP_ITERATIONS`, or fewer after
        :data:`WARMUP_SECONDS`): compiles the kernels this method runs."""
        if self.torch_training is not None:
            self.torch_training.adam(controls, self.options.get("lr", 1e-3), quantity,
                                     -math.inf, WARMUP_SECONDS, max_iter=WARMUP_ITERATIONS)
            return
        states = pmp.iterate(problem, self.method, controls=controls,
                             max_iter=WARMUP_ITERATIONS, gtol=0.0, time_limit=WARMUP_SECONDS,
                             **self.options)
        for _ in states:
            pass

    def run(self, problem, seed, quantity, goal, time_limit, pause=PAUSE):
        """One timed run from the controls of ``seed``; see :func:`pmp_run`.

        It starts after a pause of ``pause`` seconds, in which the idle threads of the
        previous run (BLAS, OpenMP) stop spinning."""
        controls = initial_controls(problem, seed)
        if self.torch_training is None:
            time.sleep(pause)
            outcome = pmp_run(problem, self.method, self.options, controls, quantity, goal,
                              time_limit)
        else:
            training = self.torch_training
            self.cost_errors.append(training.check(controls))
            time.sleep(pause)
            outcome, stopped = training.adam(controls, self.options["lr"], quantity, goal,
                                             time_limit)
            self.cost_errors.append(training.check(stopped))
        return dict(seed=seed, **outcome)


# ------------------------------------------------------------------------------ summaries
def summary(runs, time_limit):
    """Median and spread over the seeds of the runs of one method.

    A seed that misses the target counts as ``+inf`` seconds for the median.

    Returns
    -------
    dict
        ``reached, seeds, per_iteration_s`` (the median over all runs of seconds per
        iteration), ``median_s`` (None when the median misses), ``min_s, max_s``
        (over all seeds; ``max_s`` None when a seed misses), ``iterations``: ``[median,
        min, max]`` over the seeds that reach (None if none), ``total_at_target``: the J
        where they reached it, ``[median, min, max]`` (None if none), ``missed_values``: the
        lowest value each missing seed reached.
    """
    times = [r["seconds"] if r["reached"] else math.inf for r in runs]
    done = [r for r in runs if r["reached"]]
    median = float(np.median(times)) if runs else math.inf
    iterations = [r["iterations"] for r in done]
    totals = [r["total"] for r in done]
    per_iteration = [r["seconds"] / r["iterations"] for r in runs if r["iterations"] > 0]
    return dict(reached=len(done), seeds=len(runs),
                per_iteration_s=float(np.median(per_iteration)) if per_iteration else None,
                median_s=median if math.isfinite(median) else None,
                min_s=min(times) if done else None,
                max_s=max(times) if len(done) == len(runs) and runs else None,
                iterations=[float(np.median(iterations)), min(iterations), max(iterations)]
                if done else None,
                total_at_target=[float(np.median(totals)), min(totals), max(totals)]
                if done else None,
                missed_values=[r["value"] for r in runs if not r["reached"]],
                time_limit=time_limit)


def tune_key(outcome):
    """Sort key of a grid point: reached first, then the fewest iterations (an Adam
    iteration costs the same at every learning rate, and the count does not depend on the
    machine's load), then the shortest time; else the lowest value reached."""
    if outcome["reached"]:
        return (0, outcome["iterations"], outcome["seconds"])
    return (1, outcome["value"], 0.0)


def ratio_target(label, numerator, denominator, limit, time_limit, names):
    """A target on the ratio of two median times, either of which may miss.

    A median beyond the time limit (None) bounds the ratio: ``time_limit / denominator``
    from below, ``numerator / time_limit`` from above. The status is PASS or MISS where the
    value (or the bound) decides it, else "n/a".

    Parameters
    ----------
    label : str
    numerator, denominator : float or None
        Median seconds (None: beyond the time limit).
    limit : float
    time_limit : float
    names : tuple of str
        What the numerator and the denominator are (for the note).

    Returns
    -------
    dict
        :func:`benchmarks.common.target`, plus ``bound`` (None, "lower" or "upper").
    """
    if numerator is not None and denominator is not None:
        row = target(NAME, label, numerator / denominator, limit,
                     note=f"{names[0]} / {names[1]}")
        row["bound"] = None
        return row
    if numerator is None and denominator is None:
        row = target(NAME, label, None, limit,
                     note=f"the medians of {names[0]} and of {names[1]} are beyond the "
                          f"{time_limit:g} s limit")
        row["bound"] = None
        return row
    if numerator is None:
        bound = time_limit / denominator
        row = target(NAME, label, bound, limit,
                     note=f"{names[0]}'s median beyond the time limit: the ratio is at "
                          f"least this ({names[1]})")
        row["bound"] = "lower"
        if bound <= limit:
            row["status"] = "n/a"
        return row
    bound = numerator / time_limit
    row = target(NAME, label, bound, limit,
                 note=f"{names[1]}'s median beyond the time limit: the ratio is at most "
                      f"this ({names[0]})")
    row["bound"] = "upper"
    if bound > limit:
        row["status"] = "n/a"
    return row


def targets_of(result, time_limit):
    """The two targets of one problem's result (see :func:`measure_problem`)."""
    by_key = {row["key"]: row for row in result["rows"]}
    median = {key: row["summary"]["median_s"] for key, row in by_key.items()}
    name = result["name"]

    def fastest(keys, anyone):
        """``(median, label)`` of the fastest of ``keys`` by median; ``(None, anyone)`` when
        every median misses."""
        timed = [k for k in keys if median[k] is not None]
        if not timed:
            return None, anyone
        best = min(timed, key=lambda k: median[k])
        return median[best], by_key[best]["label"]

    out = []
    gradient = [k for k in by_key if by_key[k]["family"] == "gradient"]
    if "emsa" in by_key and gradient:
        gradient_s, gradient_label = fastest(gradient, "every pmp gradient method")
        out.append(ratio_target(f"{name}: E-MSA (defaults) / pmp's fastest gradient method",
                                median["emsa"], gradient_s, EMSA_LIMIT, time_limit,
                                ("E-MSA", gradient_label)))
    own = [k for k in by_key if by_key[k]["family"] != "peer"]
    if "torch_adam" in by_key and own:
        best_s, best_label = fastest(own, "every pmp method")
        out.append(ratio_target(f"{name}: pmp's fastest method / PyTorch Adam", best_s,
                                median["torch_adam"], PEER_LIMIT, time_limit,
                                (best_label, "PyTorch Adam")))
    elif "torch_adam" not in by_key:
        out.append(target(NAME, f"{name}: pmp's fastest method / PyTorch Adam", None,
                          PEER_LIMIT, note="PyTorch is not installed"))
    return out


# ----------------------------------------------------------------------------- measuring
def rings_goal(problem, iterations, seed=TUNE_SEED):
    """The J (``cost["total"]``) the E-MSA with its defaults reaches after ``iterations``.

    Returns
    -------
    dict
        ``goal`` (J at the last iterate), ``iterations`` (run; fewer if the E-MSA stopped
        earlier), ``seconds``, ``status``, ``seed``.
    """
    last = None
    for last in pmp.iterate(problem, "emsa", controls=initial_controls(problem, seed),
                            max_iter=iterations, gtol=0.0):
        pass
    return dict(goal=float(last.cost["total"]), iterations=int(last.iteration),
                seconds=float(last.elapsed), status=last.status, seed=seed)


def objective_minimum(problem, time_limit, seed=TUNE_SEED, gtol=1e-9):
    """The minimiser of J, estimated by pmp's L-BFGS from the controls of ``seed``.

    A target on the training loss alone is met by a method that decreases J only if the
    loss at the minimiser of J is below it; this run says where that loss is.

    Returns
    -------
    dict
        ``total`` and ``loss`` (``cost["total"]``, ``cost["loss"]`` at the last iterate),
        ``iterations``, ``seconds``, ``grad_norm``, ``status`` (L-BFGS's reason to stop:
        "converged" at ``grad_norm <= gtol``, else "time_limit", "stalled", ...), ``seed``.
    """
    last = None
    for last in pmp.iterate(problem, "lbfgs", controls=initial_controls(problem, seed),
                            max_iter=MAX_ITER, gtol=gtol, time_limit=time_limit):
        pass
    return dict(total=float(last.cost["total"]), loss=float(last.cost["loss"]),
                iterations=int(last.iteration), seconds=float(last.elapsed),
                grad_norm=float(last.grad_norm), status=last.status, seed=seed)


def contestants_for(problem, threads):
    """The methods of the benchmark on ``problem`` (Adams at no learning rate yet).

    Returns
    -------
    contestants : list of Contestant
    emsa_info : dict
        See :func:`emsa_variants`.
    """
    variants, emsa_info = emsa_variants()
    out = [Contestant(key, label, "emsa", "emsa", options) for key, label, options in variants]
    out += [Contestant("lbfgs", "pmp L-BFGS", "gradient", "lbfgs"),
            Contestant("adam", "pmp Adam", "gradient", "adam")]
    if torch is not None:
        out.append(Contestant("torch_adam", "PyTorch Adam", "peer",
                              torch_training=TorchTraining(problem, threads)))
    return out, emsa_info


def measure_problem(spec, settings):
    """The time to target of every method on one problem.

    Parameters
    ----------
    spec : dict
        See :func:`problem_spec`; a ``goal`` of None is set by :func:`rings_goal`.
    settings : dict
        See :func:`settings_of`.

    Returns
    -------
    dict
        ``name, description, n_samples, dim, n_steps, quantity, goal, goal_run`` (the rings'
        E-MSA run, else None), ``minimum`` (for a target on the loss,
        :func:`objective_minimum`, else None), ``emsa`` (see :func:`emsa_variants`),
        ``grid``: per Adam the
        seed-0 outcome of every learning rate, ``chosen_lr``, ``rows``: per method ``key,
        label, family, options, runs, summary``, ``cost_errors`` (PyTorch against pmp, the
        largest), ``load`` and ``targets``.
    """
    problem, quantity = spec["problem"], spec["quantity"]
    time_limit, seeds = settings["time_limit"], settings["seeds"]
    name = spec["name"]
    load = os.getloadavg()[0]
    contestants, emsa_info = contestants_for(problem, settings["threads"])
    warm_controls = initial_controls(problem, settings["tune_seed"])
    for contestant in contestants:
        contestant.warm_up(problem, warm_controls, quantity)
    goal, goal_run = spec["goal"], None
    if goal is None:
        goal_run = rings_goal(problem, settings["rings_iterations"], settings["tune_seed"])
        goal = goal_run["goal"]
        log(NAME, f"{name}: target J = {goal:.6g} (E-MSA, {goal_run['iterations']} "
                  f"iterations from seed {goal_run['seed']}, {goal_run['seconds']:.2f} s)")
    minimum = None
    if quantity == "loss":
        minimum = objective_minimum(problem, time_limit, settings["tune_seed"])
        log(NAME, f"{name}: minimiser of J (L-BFGS, {minimum['iterations']} iterations, "
                  f"{minimum['status']}): J = {minimum['total']:.6g}, training loss = "
                  f"{minimum['loss']:.6g}")
    # the Adams' learning rates: every grid point on the tuning seed, interleaved
    adams = [c for c in contestants if c.key in ("adam", "torch_adam")]
    grid = {c.key: [] for c in adams}
    for lr in settings["lr_grid"]:
        for contestant in adams:
            outcome = contestant.with_options(lr=lr).run(problem, settings["tune_seed"],
                                                         quantity, goal, time_limit,
                                                         settings["pause"])
            grid[contestant.key].append(dict(lr=lr, **outcome))
            log(NAME, f"{name}: {contestant.label} lr = {lr:g}: {_describe(outcome)}")
    chosen = {key: min(points, key=tune_key)["lr"] for key, points in grid.items()}
    runs = {c.key: [] for c in contestants}
    reuse = settings["tune_seed"] in seeds  # the chosen rate's tuning run is that seed's run
    for c in adams:
        c.options["lr"] = chosen[c.key]
        if reuse:
            point = next(p for p in grid[c.key] if p["lr"] == chosen[c.key])
            runs[c.key].append({k: v for k, v in point.items() if k != "lr"})
    for seed in seeds:
        for contestant in contestants:
            if reuse and seed == settings["tune_seed"] and contestant.key in chosen:
                continue  # measured while tuning
            outcome = contestant.run(problem, seed, quantity, goal, time_limit,
                                     settings["pause"])
            runs[contestant.key].append(outcome)
            log(NAME, f"{name} seed {seed}: {contestant.label}: {_describe(outcome)}")
    rows = []
    for contestant in contestants:
        ordered = sorted(runs[contestant.key], key=lambda r: r["seed"])
        rows.append(dict(key=contestant.key, label=contestant.label, family=contestant.family,
                         options=contestant.options, runs=ordered,
                         summary=summary(ordered, time_limit)))
    errors = [e for c in contestants for e in c.cost_errors]
    result = dict(name=name, description=spec["description"], n_samples=problem.n_samples,
                  dim=problem.dim, n_steps=problem.n_steps, quantity=quantity, goal=goal,
                  goal_run=goal_run, minimum=minimum, emsa=emsa_info, grid=grid,
                  chosen_lr=chosen, rows=rows,
                  cost_errors=dict(checks=len(errors),
                                   loss=max((e["loss"] for e in errors), default=None),
                                   total=max((e["total"] for e in errors), default=None)),
                  load=dict(start=load, end=os.getloadavg()[0]))
    result["targets"] = targets_of(result, time_limit)
    return result


def _describe(outcome):
    if outcome["reached"]:
        return (f"target in {outcome['seconds']:.3g} s, {outcome['iterations']} iterations")
    return (f"missed ({outcome['status']} after {outcome['seconds']:.3g} s, "
            f"{outcome['iterations']} iterations, best {outcome['value']:.4g})")


def run(options):
    """The section (see :mod:`benchmarks.run`).

    Parameters
    ----------
    options : benchmarks.common.Options
        Or :class:`TargetOptions` (its own settings).

    Returns
    -------
    dict
        ``settings`` (see :func:`settings_of`), ``torch`` (its version or None),
        ``problems`` (see :func:`measure_problem`) and ``targets``.
    """
    settings = settings_of(options)
    pmp.set_threads(settings["threads"])
    log(NAME, f"seeds {settings['seeds']}, {settings['time_limit']:g} s per run, Adam "
              f"learning rates {settings['lr_grid']}")
    problems = []
    for name in settings["problems"]:
        problems.append(measure_problem(problem_spec(name), settings))
    return dict(settings=settings, torch=None if torch is None else torch.__version__,
                problems=problems, targets=[t for p in problems for t in p["targets"]])


# ------------------------------------------------------------------------------ Markdown
def _spread(median, low, high, fmt):
    return f"{fmt(median)} [{fmt(low)}, {fmt(high)}]"


def _time_cell(s, time_limit):
    beyond = f"> {time_limit:g} s"
    median = beyond if s["median_s"] is None else seconds(s["median_s"])
    low = beyond if s["min_s"] is None else seconds(s["min_s"])
    high = beyond if s["max_s"] is None else seconds(s["max_s"])
    return f"{median} [{low}, {high}]"


def _options_cell(options):
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in options.items()) or "defaults"


def emsa_explanation(result, time_limit):
    """Where the E-MSA's time to the target goes against pmp's fastest gradient method: the
    ratio of the medians is about the ratio of the iterations times the ratio of the times
    per iteration. One sentence, or "" when there is nothing to compare."""
    rows = {r["key"]: r for r in result["rows"]}
    gradient = [r for r in result["rows"] if r["family"] == "gradient"
                and r["summary"]["median_s"] is not None]
    if "emsa" not in rows or not gradient:
        return ""
    emsa = rows["emsa"]["summary"]
    best = min(gradient, key=lambda r: r["summary"]["median_s"])
    other = best["summary"]
    if emsa["per_iteration_s"] is None or other["per_iteration_s"] is None:
        return ""
    per_iteration = emsa["per_iteration_s"] / other["per_iteration_s"]
    if emsa["iterations"] is not None and emsa["median_s"] is not None:
        count = emsa["iterations"][0] / other["iterations"][0]
        return (f"Why: the E-MSA takes {emsa['iterations'][0]:.0f} iterations (median) to "
                f"the target against {other['iterations'][0]:.0f} for {best['label']}, "
                f"{count:.2g}x as many, and {per_iteration:.2g}x the time per iteration.")
    done = time_limit / emsa["per_iteration_s"]
    return (f"Why: in the {time_limit:g} s limit the E-MSA runs about {done:.0f} iterations "
            f"({per_iteration:.2g}x the time per iteration of {best['label']}) and does not "
            f"reach the target, which {best['label']} reaches in "
            f"{other['iterations'][0]:.0f} iterations (median).")


def minimum_sentence(minimum, goal):
    """What the minimiser of J says about a target ``goal`` on the training loss."""
    text = (f"The minimiser of J, estimated by pmp's L-BFGS from seed {minimum['seed']} "
            f"({minimum['iterations']} iterations, {minimum['seconds']:.1f} s, "
            f"{minimum['status']}, |g| = {minimum['grad_norm']:.1e}): J = "
            f"{minimum['total']:.5g}, training loss {minimum['loss']:.5g}")
    ratio = minimum["loss"] / goal
    if ratio >= 0.9:
        return (text + f", {ratio:.3g}x the target. A method that decreases J approaches "
                "the target's level only near the minimiser (or not at all); one that reaches "
                "it sooner does so at a larger J (the column \"J at the target\").")
    return text + f", {ratio:.3g}x the target."


def problem_markdown(result, settings):
    """The report of one problem (list of lines)."""
    time_limit = settings["time_limit"]
    quantity = "training loss Phi(x(T))" if result["quantity"] == "loss" else "J"
    text = f"Target: {quantity} <= {result['goal']:.6g}"
    if result["goal_run"] is not None:
        g = result["goal_run"]
        text += (f", the J of the E-MSA with its defaults after {g['iterations']} iterations "
                 f"from seed {g['seed']} ({g['seconds']:.2f} s, {g['status']})")
    note = result["emsa"]["note"]
    text += (f". Load average (1 min) {result['load']['start']:.1f} at the start, "
             f"{result['load']['end']:.1f} at the end. E-MSA: {note}.")
    lines = [f"### {result['name']}: {result['description']}", "", text, ""]
    minimum = result.get("minimum")
    if minimum is not None:
        lines += [minimum_sentence(minimum, result["goal"]), ""]
    lines += table(
        ["method", "options", "seeds reaching", "time: median [min, max]",
         "iterations: median [min, max] (reaching)", "time / iteration",
         "J at the target: median [min, max]", "lowest value of the misses"],
        [[r["label"], _options_cell(r["options"]),
          f"{r['summary']['reached']} of {r['summary']['seeds']}",
          _time_cell(r["summary"], time_limit),
          "-" if r["summary"]["iterations"] is None else
          _spread(*r["summary"]["iterations"], lambda v: f"{v:.0f}"),
          seconds(r["summary"]["per_iteration_s"]),
          "-" if r["summary"].get("total_at_target") is None else
          _spread(*r["summary"]["total_at_target"], lambda v: f"{v:.4g}"),
          ", ".join(f"{v:.3g}" for v in r["summary"]["missed_values"]) or "-"]
         for r in result["rows"]])
    why = emsa_explanation(result, time_limit)
    if why:
        lines += ["", why]
    labels = {r["key"]: r["label"] for r in result["rows"]}
    lines += ["", f"Adam learning rates on seed {settings['tune_seed']} (the chosen one in "
                  f"bold):", ""]
    lines += table(
        ["method"] + [f"lr = {lr:g}" for lr in settings["lr_grid"]],
        [[labels[key]] + [("**" if p["lr"] == result["chosen_lr"][key] else "")
                          + (f"{seconds(p['seconds'])}, {p['iterations']} it."
                             if p["reached"] else f"missed ({p['value']:.3g})")
                          + ("**" if p["lr"] == result["chosen_lr"][key] else "")
                          for p in points]
         for key, points in result["grid"].items()])
    errors = result["cost_errors"]
    if errors["checks"]:
        lines += ["", f"PyTorch's cost against pmp's ({errors['checks']} checks: every seed's "
                      f"initial controls and where PyTorch stopped): largest relative error "
                      f"{number(errors['loss'], '.1e')} (loss), "
                      f"{number(errors['total'], '.1e')} (J); tolerance "
                      f"{COST_TOLERANCE:g}."]
    return lines


def markdown(result):
    """The section's report."""
    settings = result["settings"]
    lines = [f"Wall-clock time to a target from `pmp.init_controls(problem, "
             f"scale={settings['init_scale']:g}, seed=s)`, seeds "
             f"{', '.join(map(str, settings['seeds']))}, interleaved seed by seed; each run "
             f"stops at the target or after {settings['time_limit']:g} s. Times exclude "
             f"compilation (untimed warm-up runs first); a seed that misses counts as beyond "
             f"the limit in the median. Both Adams' learning rates are chosen from "
             f"{', '.join(f'{lr:g}' for lr in settings['lr_grid'])} on seed "
             f"{settings['tune_seed']} (fewest iterations to the target, else the lowest "
             f"value reached). PyTorch "
             f"{result['torch'] or 'not installed'}, float64, "
             f"{settings['threads']} threads everywhere.", ""]
    for problem in result["problems"]:
        lines += problem_markdown(problem, settings) + [""]
    lines += table(["target", "measured", "limit", "result", "note"],
                   [[t["target"], measured(t), f"{t['op']} {t['limit']:g}", f"**{t['status']}**",
                    t["note"]]
                    for t in result["targets"]])
    return lines


# ---------------------------------------------------------------------------- standalone
def write(section, directory, command):
    """``target.json`` and ``target.md`` (with the machine) into ``directory``."""
    from benchmarks.run import machine, machine_markdown

    os.makedirs(directory, exist_ok=True)
    info = machine()
    load = section.pop("_load")
    results = dict(command=command, started=section.pop("_started"), machine=info, load=load,
                   section=section)
    with open(os.path.join(directory, "target.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = ["# pmp time-to-target benchmark", "",
             f"`{command}` on {results['started']}, {section['duration_s'] / 60:.1f} min.", "",
             "## Machine", ""] + machine_markdown(info, load) + ["", "## Results", ""]
    lines += markdown(section)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(directory, "target.md"), "w") as f:
        f.write(text)
    return text


def main(argv=None):
    """Run the section on its own (command line ``argv``); see the module's docstring."""
    parser = argparse.ArgumentParser(description="Time to target: pmp's methods and "
                                                 "PyTorch's Adam.")
    parser.add_argument("--quick", action="store_true",
                        help=f"seeds {QUICK_SEEDS}, {QUICK_TIME_LIMIT:g} s per run, learning "
                             f"rates {QUICK_LR_GRID}, rings target after "
                             f"{QUICK_RINGS_EMSA_ITERATIONS} E-MSA iterations")
    parser.add_argument("--time-limit", type=float, help=f"seconds per run (default "
                                                         f"{TIME_LIMIT:g})")
    parser.add_argument("--seeds", help="seeds of the initial controls, comma-separated "
                                        "(default 0,1,2,3,4)")
    parser.add_argument("--problems", help=f"comma-separated subset of {','.join(PROBLEMS)}")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="directory of target.json and target.md")
    args = parser.parse_args(argv)
    problems = None
    if args.problems:
        problems = tuple(p.strip() for p in args.problems.split(",") if p.strip())
        unknown = sorted(set(problems) - set(PROBLEMS))
        if unknown:
            parser.error(f"unknown problems {', '.join(unknown)}; one of {', '.join(PROBLEMS)}")
    options = TargetOptions(
        quick=args.quick, time_limit=args.time_limit, problems=problems,
        seeds=None if args.seeds is None else tuple(int(s) for s in args.seeds.split(",")))
    command = " ".join(["python benchmarks/bench_target.py"]
                       + (sys.argv[1:] if argv is None else list(argv)))
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_start = os.getloadavg()
    start = time.perf_counter()
    section = run(options)
    section["duration_s"] = time.perf_counter() - start
    section["_started"] = started
    section["_load"] = dict(start=load_start, end=os.getloadavg())
    print(write(section, args.out, command))
    print(f"written: {os.path.join(args.out, 'target.json')} and target.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
