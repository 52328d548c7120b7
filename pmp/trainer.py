"""The training loop: a generator of iterates (:func:`iterate`) and :func:`train`, which
consumes it into a :class:`TrainResult`.

::

    for state in pmp.iterate(problem, method="lbfgs", max_iter=200):
        print(state.iteration, state.cost["total"], state.grad_norm)
    # the last state has state.status set ("converged", "max_iter", ...)

Stopping (checked after every iterate, in this order): non-finite cost or a cost above
``1e6`` times the initial one ("diverged": the controls of the last finite iterate are
returned), Riesz gradient norm ``max_k |g_k| <= gtol`` ("converged"), ``max_iter`` updates
("max_iter"), ``time_limit`` seconds ("time_limit"), and a method that cannot go on
("stalled", e.g. a failed line search).
"""
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeResult

from ._validation import integer, lookup, real
from .methods import Oracle, extra_history_columns, make_method
from .problem import INIT_SCHEMES, init_controls
from .sweeps import cost
from .threads import serial_blas

DIVERGENCE_FACTOR = 1e6
BASE_COLUMNS = ("iteration", "cost", "terminal", "running", "regularization", "loss",
                "grad_norm", "step_size", "wall_time", "elapsed")


def history_columns():
    """The history columns: the common ones, then those the registered methods report."""
    return BASE_COLUMNS + extra_history_columns()


@dataclass
class TrainState:
    """One iterate of the training loop (what :func:`iterate` yields).

    Attributes
    ----------
    iteration : int
        Number of updates so far (0: the initial controls).
    controls : dict
    cost : dict
        Cost parts on the current batch: total, terminal, running, regularization, loss.
    grad_norm : float
        Riesz gradient norm ``max_k |g_k|`` (the gradient mapping's for "proximal").
    step_size : float
    wall_time : float
        Seconds spent on this iteration.
    elapsed : float
        Seconds since the start.
    n_evals : int
        Cost (and gradient) evaluations so far.
    status : str or None
        None while training goes on; on the last state the reason it stopped.
    message : str
    """

    iteration: int
    controls: dict
    cost: dict
    grad_norm: float
    step_size: float
    wall_time: float
    elapsed: float
    n_evals: int
    status: str | None = None
    message: str = ""
    extra: dict = field(default_factory=dict)
    resume: dict | None = None  # what a checkpoint stores to continue from here exactly


def iterate(problem, method="gd", *, max_iter=1000, controls=None, seed=0, gtol=1e-6,
            time_limit=None, batch_size=None, init="normal", init_scale=0.1, resume=None,
            segment=None, **options):
    """Train ``problem`` step by step: a generator of :class:`TrainState`.

    Parameters
    ----------
    problem : Problem
    method : str or Method
        One of :func:`pmp.methods.method_names`: "gd", "heavy_ball", "nesterov", "adam",
        "lbfgs", "proximal" (gradient family), "msa", "emsa", "discrete" (MSA family); see
        :mod:`pmp.methods`.
    max_iter : int
        Maximum number of updates.
    controls : dict, optional
        Initial controls; default ``init_controls(problem, init, init_scale, seed)``.
    seed : int
        Seed of the initial controls and of the mini-batch sampling.
    gtol : float
        Stop when the Riesz gradient norm ``max_k |g_k|`` is at most this.
    time_limit : float, optional
        Stop after this many seconds.
    batch_size : int, optional
        Mini-batch size (default: all samples).
    init, init_scale : str, float
        Scheme and scale of the default initial controls.
    segment : int, optional
        Gradient methods only: keep every ``segment``-th state and recompute the others in
        the costate sweep (``O(sqrt(n_steps))`` memory with ``segment ~ sqrt(n_steps)``;
        see :func:`pmp.value_and_grad`).
    resume : dict, optional
        ``state.resume`` of a :class:`TrainState` (as stored in a checkpoint): continue that
        run exactly; the first state yielded is the next iteration. Same problem, method and
        options as the run that produced it.
    **options
        The method's options (``lr``, ``momentum``, ...); unknown ones raise TypeError.

    Yields
    ------
    TrainState
        One per iterate; the last one has ``status`` set.
    """
    method, stop, oracle = _setup(problem, method, options, max_iter, gtol, time_limit,
                                  batch_size, segment, seed, init, init_scale)
    start = time.perf_counter()
    if resume is not None:
        oracle.set_state(resume["oracle"])
        start -= float(resume["elapsed"])
        controls = resume["controls"]
    elif controls is None:
        controls = init_controls(problem, init, init_scale, seed)
    controls = problem.validate_controls(controls)
    if resume is None:
        oracle.next_batch()
    steps = method.run(oracle, controls, None if resume is None else resume["method"])
    if method.blas_between_sweeps:
        steps = serial_blas(steps)
    yield from _loop(steps, method, oracle, stop, start, resume)


def check_options(problem, method="gd", *, max_iter=1000, seed=0, gtol=1e-6, time_limit=None,
                  batch_size=None, init="normal", init_scale=0.1, segment=None, **options):
    """Raise the error :func:`iterate` would raise for these arguments, without training
    (a batch run checks its whole configuration before it writes anything)."""
    _setup(problem, method, options, max_iter, gtol, time_limit, batch_size, segment, seed,
           init, init_scale)


def _setup(problem, method, options, max_iter, gtol, time_limit, batch_size, segment, seed,
           init, init_scale):
    """The method, the stop rules and the oracle of a run, every argument checked."""
    method = make_method(method, options)
    stop = _StopRules(max_iter, gtol, time_limit)
    seed = integer(seed, "seed", low=0)
    lookup({s: s for s in INIT_SCHEMES}, init, "init scheme")
    real(init_scale, "init_scale", low=0.0)
    return method, stop, _oracle(problem, method, batch_size, segment, seed)


def _oracle(problem, method, batch_size, segment, seed):
    """The :class:`~pmp.methods.Oracle` of a run, once the method has accepted its batch
    size (None or all samples: full batch) and segment."""
    if batch_size is not None:
        batch_size = integer(batch_size, "batch_size", low=1)
        batch_size = None if batch_size >= problem.n_samples else batch_size
    if segment is not None:
        segment = integer(segment, "segment", low=1)
    method.check(problem, batch_size, segment)
    return Oracle(problem, batch_size, seed, segment)


def _loop(steps, method, oracle, stop, start, resume):
    """Advance the method's generator, yield a :class:`TrainState` per iterate until a stop
    rule fires or the method gives up."""
    first, last, iteration = None, None, 0
    if resume is not None:  # the checkpointed iterate again: already recorded
        first, iteration = float(resume["first"]), int(resume["iteration"])
        point = next(steps)
        last = TrainState(iteration, point.controls, point.parts, point.grad_norm,
                          point.step_size, 0.0, time.perf_counter() - start, oracle.n_evals,
                          resume=resume)
        iteration += 1
        if iteration > stop.max_iter:  # resumed at max_iter (say, interrupted at the end)
            yield _state(last, "max_iter", f"reached max_iter = {stop.max_iter} iterations",
                         time.perf_counter(), start, oracle)
            return
        oracle.next_batch()
    for iteration in range(iteration, stop.max_iter + 1):
        tic = time.perf_counter()
        point = next(steps, None)
        now = time.perf_counter()
        if point is None:  # the method gave up
            yield _state(last, oracle.stop_status, oracle.stall_message or "the method stopped",
                         now, start, oracle)
            return
        first = point.parts["total"] if first is None else first
        state = TrainState(iteration, point.controls, point.parts, point.grad_norm,
                           point.step_size, now - tic, now - start, oracle.n_evals,
                           extra=dict(point.extra))
        state.resume = dict(controls=point.controls, method=method.state,
                            oracle=oracle.get_state(), first=first, iteration=iteration,
                            elapsed=now - start)
        stop.apply(state, first, last)
        yield state
        if state.status is not None:
            return
        last = state
        oracle.next_batch()


class _StopRules:
    """The stop rules of :func:`iterate`, checked in the order of its docstring."""

    def __init__(self, max_iter, gtol, time_limit):
        self.max_iter = integer(max_iter, "max_iter", low=0)
        self.gtol = real(gtol, "gtol", low=0.0)
        self.time_limit = None if time_limit is None else \
            real(time_limit, "time_limit", low=0.0, low_open=True)

    def apply(self, state, first, last):
        """Set ``state.status`` and ``state.message`` when a rule fires."""
        total, iteration = state.cost["total"], state.iteration
        if not np.isfinite(total) or total > DIVERGENCE_FACTOR * max(abs(first), 1e-300):
            state.status = "diverged"
            state.message = (f"diverged at iteration {iteration}: J = {total:.6g} (initial "
                             f"{first:.6g}); the controls of iteration "
                             f"{last.iteration if last else 0} are returned")
            state.extra["last_finite"] = last
        elif state.grad_norm <= self.gtol:
            state.status = "converged"
            state.message = f"Riesz gradient norm {state.grad_norm:.3g} <= gtol = {self.gtol:.3g}"
        elif iteration == self.max_iter:
            state.status = "max_iter"
            state.message = f"reached max_iter = {self.max_iter} iterations"
        elif self.time_limit is not None and state.elapsed >= self.time_limit:
            state.status = "time_limit"
            state.message = f"reached the time limit of {self.time_limit:g} s"


def _state(last, status, message, now, start, oracle):
    state = TrainState(last.iteration, last.controls, last.cost, last.grad_norm,
                       last.step_size, 0.0, now - start, oracle.n_evals, status, message,
                       resume=last.resume)
    state.extra["repeat"] = True
    return state


class TrainResult(OptimizeResult):
    """Result of :func:`train` (a ``scipy.optimize.OptimizeResult``).

    Attributes
    ----------
    controls : dict
        Final controls (same keys and shapes as the problem's).
    cost : dict
        Final cost parts on all samples: total, terminal, running, regularization, loss.
    grad_norm : float
    history : dict
        column -> ndarray, one entry per iterate: iteration, cost, terminal, running,
        regularization, loss, grad_norm, step_size, wall_time, elapsed.
    success : bool
        True when the method converged (the gradient criterion, or a method's own step
        criterion).
    status : str
        "converged", "max_iter", "time_limit", "diverged" or "stalled".
    message : str
    method : str
    n_iter, n_evals : int
    wall_time : float
    """

    def __repr__(self):
        c = self.cost
        return (f"TrainResult(method={self.method!r}, status={self.status!r}, "
                f"success={self.success}, n_iter={self.n_iter}, J={c['total']:.6g} "
                f"(terminal={c['terminal']:.4g}, running={c['running']:.4g}, "
                f"regularization={c['regularization']:.4g}), grad_norm={self.grad_norm:.3g}, "
                f"wall_time={self.wall_time:.3g}s)\n  message: {self.message}")

    __str__ = __repr__


def history_row(state):
    """The history columns of one :class:`TrainState`."""
    c = state.cost
    return (state.iteration, c["total"], c["terminal"], c["running"], c["regularization"],
            c["loss"], state.grad_norm, state.step_size, state.wall_time, state.elapsed,
            *(float(state.extra.get(k, np.nan)) for k in extra_history_columns()))


def train(problem, method="gd", *, max_iter=1000, controls=None, seed=0, **kwargs):
    """Train ``problem``: consume :func:`iterate` and return a :class:`TrainResult`.

    Parameters are those of :func:`iterate`. Example::

        result = pmp.train(problem, method="lbfgs", max_iter=500, gtol=1e-8)
        result.history["cost"]     # one entry per iterate
    """
    rows, state = [], None
    for state in iterate(problem, method, max_iter=max_iter, controls=controls, seed=seed,
                         **kwargs):
        if not state.extra.get("repeat"):
            rows.append(history_row(state))
    batch_size = kwargs.get("batch_size")
    final = state.extra.get("last_finite") or state
    if batch_size is not None and batch_size < problem.n_samples:
        parts = cost(problem, final.controls)  # the history holds mini-batch costs
    else:
        parts = final.cost
    history = {c: np.asarray(v) for c, v in zip(history_columns(), zip(*rows))}
    return TrainResult(controls=final.controls, cost=parts, grad_norm=final.grad_norm,
                       history=history, success=state.status == "converged",
                       status=state.status, message=state.message,
                       method=getattr(method, "name", method), n_iter=final.iteration,
                       n_evals=state.n_evals, wall_time=state.elapsed)
