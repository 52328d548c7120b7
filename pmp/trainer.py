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

import inspect

from . import msa, optimizers
from ._validation import integer, lookup, real
from .optimizers import Method, Point
from .problem import init_controls
from .sweeps import (_backward, _cost_of_states, _forward, _gradient, _segmented, _total,
                     _trajectory, cost, grad_norm, riesz_gradient)
from .threads import row_blocks, serial_blas

METHODS = {cls.name: cls for cls in optimizers.GRADIENT_METHODS + msa.MSA_METHODS}
METHOD_NAMES = tuple(sorted(METHODS))


def make_method(method, options):
    """A :class:`~pmp.optimizers.Method` from a name (with its keyword options) or an instance."""
    if isinstance(method, Method):
        if options:
            raise TypeError(f"options {sorted(options)} given with a Method instance; set them "
                            f"on the instance")
        return method
    cls = method if isinstance(method, type) and issubclass(method, Method) else None
    if cls is None:
        cls = lookup(METHODS, method, "method")
    valid = list(inspect.signature(cls.__init__).parameters)[1:]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                        f"{cls.name!r}; valid options: {', '.join(valid)}")
    return cls(**options)

DIVERGENCE_FACTOR = 1e6
HISTORY_COLUMNS = ("iteration", "cost", "terminal", "running", "regularization", "loss",
                   "grad_norm", "step_size", "wall_time", "elapsed", "rho", "accepted", "gain",
                   "nonzero")
EXTRA_COLUMNS = HISTORY_COLUMNS[-4:]  # NaN for the methods that do not report them


class Oracle:
    """Cost and Riesz gradient on the current (mini-)batch, for the methods.

    Parameters
    ----------
    problem : Problem
    batch_size : int or None
        Samples per iteration (None: full batch). Batches are drawn without replacement
        from seeded permutations of the samples (one permutation per epoch).
    seed : int
    """

    def __init__(self, problem, batch_size=None, seed=0, segment=None):
        self.problem = problem
        self.segment = segment
        self.batch = problem
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._order, self._cursor = np.empty(0, int), 0
        self.batch_id = 0
        self.n_evals = 0
        self.stall_message = None
        self.stop_status = "stalled"
        self.workspace = {}  # trajectory buffers reused by every gradient evaluation
        # states and costates of the MSA family: the current point's and a candidate's,
        # swapped when a candidate becomes the current point; one activation store, kept
        # from a forward sweep for the costate sweep that follows it
        self._trajectories, self._spare = ({}, {}), 1
        self._activations, self._kept = {}, None
        self.statistics = None

    def get_state(self):
        """The sampling state (to checkpoint): RNG, current permutation and position."""
        return dict(rng=self._rng.bit_generator.state, order=self._order, cursor=self._cursor,
                    batch_id=self.batch_id)

    def set_state(self, state):
        """Restore :meth:`get_state`, including the current batch."""
        self._rng.bit_generator.state = state["rng"]
        self._order, self._cursor = np.asarray(state["order"], int), int(state["cursor"])
        self.batch_id = int(state["batch_id"])
        if self.batch_size is not None and self._cursor > 0:
            index = np.sort(self._order[self._cursor - self.batch_size:self._cursor])
            self.batch = self.problem.subset(index)

    def next_batch(self):
        """Draw the samples of the next iteration (no-op for full batch)."""
        if self.batch_size is None:
            return
        if self._cursor + self.batch_size > len(self._order):
            self._order, self._cursor = self._rng.permutation(self.problem.n_samples), 0
        index = np.sort(self._order[self._cursor:self._cursor + self.batch_size])
        self._cursor += self.batch_size
        self.batch = self.problem.subset(index)
        self.batch_id += 1

    def evaluate(self, controls, step_size=float("nan")):
        """A :class:`Point`: cost parts and Riesz gradient at ``controls``."""
        self.n_evals += 1
        parts, grads = (_gradient(self.batch, controls, self.workspace) if self.segment is None
                        else _segmented(self.batch, controls, self.segment, self.workspace))
        return self._point(controls, parts, grads, step_size)

    def sweep(self, controls, states=None, step_size=float("nan"), trajectories=True):
        """:meth:`evaluate` and the states and costates (``states`` given: no forward).

        They become the current trajectories: valid until the next call of :meth:`sweep`
        (with :meth:`value_and_states` in between, whose states are a candidate's).
        :attr:`statistics` then holds what the maximiser needs of them, where the field's
        costate sweep computes it (:meth:`pmp.fields.Field.maximize_statistics`).

        ``trajectories=False``, for a caller that reads only :attr:`statistics` and the
        arrays' shapes (:meth:`pmp.maximize.Maximizer.reads_trajectories`): the costates
        come as the last two slots only, the states need not be set but at the first and
        last step, and without ``states`` both sweeps run in one pass of the row blocks.
        Skipping the stores of every step saves about 15% of an E-MSA iteration on W1.
        """
        self.n_evals += 1
        workspace = self._trajectories[self._spare]
        # the candidate's store serves if its layout (which follows the row blocks) still fits
        reuse = self._kept is not None and states is self._kept[0] \
            and self._kept[2] == row_blocks(self.batch.n_samples)
        if not (trajectories or reuse):
            states = None  # a candidate's states without their activations may be incomplete
        fused = states is None and not trajectories
        if states is None:
            xs, kept = _forward(self.batch, controls, True, workspace,
                                activations=self._activations, run=not fused)
        elif reuse:
            xs, kept = self._kept[:2]
        else:
            xs, kept = _trajectory(self.batch, states, "states"), None
        self._kept = None  # the costate sweep may overwrite the store
        shapes = self.batch.field.maximize_statistics(self.batch.n_steps)
        self.statistics = None if shapes is None else \
            tuple(np.empty(shape, self.batch.dtype) for shape in shapes)
        ps, grads, (phi, run) = _backward(self.batch, controls, xs, kept, trajectories,
                                          workspace, forward=fused, statistics=self.statistics)
        self._spare = 1 - self._spare
        parts = _total(self.batch, controls, phi, run)
        return self._point(controls, parts, grads, step_size), xs, ps

    def _point(self, controls, parts, grads, step_size):
        riesz = riesz_gradient(self.problem, grads)
        return Point(controls, parts, riesz, grad_norm(self.problem, riesz), step_size)

    def value(self, controls):
        """Cost parts only (one forward sweep)."""
        self.n_evals += 1
        return cost(self.batch, controls, validate=False)

    def value_and_states(self, controls, trajectories=True):
        """Cost parts and states (one forward sweep) of a candidate: the current trajectories
        of :meth:`sweep` stay valid; pass the states to :meth:`sweep` to accept it
        (``trajectories=False``: as in :meth:`sweep`, the states may be set at the first
        and last step only)."""
        self.n_evals += 1
        final_only = not trajectories and self.batch.running == 0.0  # else the cost reads all
        xs, kept = _forward(self.batch, controls, True, self._trajectories[self._spare],
                            activations=self._activations, final_only=final_only)
        self._kept = (xs, kept, row_blocks(self.batch.n_samples))
        return _cost_of_states(self.batch, controls, xs), xs

    def norm(self, riesz):
        return grad_norm(self.problem, riesz)

    def stall(self, message, status="stalled"):
        """Called by a method that stops by itself (cannot go on, or has converged by its own
        criterion), before it returns."""
        self.stall_message = message
        self.stop_status = status


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
        One of :data:`METHOD_NAMES`: "gd", "heavy_ball", "nesterov", "adam", "lbfgs",
        "proximal" (gradient family, :mod:`pmp.optimizers`), "msa", "emsa", "discrete"
        (:mod:`pmp.msa`).
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
    method = make_method(method, options)
    max_iter = integer(max_iter, "max_iter", low=0)
    gtol = real(gtol, "gtol", low=0.0)
    if time_limit is not None:
        time_limit = real(time_limit, "time_limit", low=0.0, low_open=True)
    if batch_size is not None:
        batch_size = integer(batch_size, "batch_size", low=1)
        if batch_size >= problem.n_samples:
            batch_size = None
    if method.needs_smooth and not problem.reg.smooth:
        raise ValueError(f"method {method.name!r} needs a differentiable regularizer, got "
                         f"reg={problem.reg.name!r}; use method='proximal'")
    if batch_size is not None and (method.full_batch_only or
                                   (method.name == "proximal" and method.lr is None)):
        raise ValueError(f"method {method.name!r} needs the full batch (batch_size=None), got "
                         f"batch_size={batch_size}" +
                         ("; give a fixed lr for mini-batches" if method.name == "proximal"
                          else ""))
    if segment is not None:
        segment = integer(segment, "segment", low=1)
        if method.name in ("msa", "emsa", "discrete"):
            raise ValueError(f"segment={segment} is for the gradient methods; method "
                             f"{method.name!r} maximises the Hamiltonian on the full trajectory")
    oracle = Oracle(problem, batch_size, seed, segment)
    first, last, start_iteration, method_state = None, None, 0, None
    start = time.perf_counter()
    if resume is not None:
        controls = resume["controls"]
        oracle.set_state(resume["oracle"])
        first, start_iteration = float(resume["first"]), int(resume["iteration"])
        method_state = resume["method"]
        start -= float(resume["elapsed"])
    elif controls is None:
        controls = init_controls(problem, init, init_scale, seed)
    controls = problem.validate_controls(controls)
    if resume is None:
        oracle.next_batch()
    steps = method.run(oracle, controls, method_state)
    if method.blas_between_sweeps:
        steps = serial_blas(steps)
    if resume is not None:  # the checkpointed iterate again: already recorded
        point = next(steps)
        last = TrainState(start_iteration, point.controls, point.parts, point.grad_norm,
                          point.step_size, 0.0, time.perf_counter() - start, oracle.n_evals)
        start_iteration += 1
        oracle.next_batch()
    for iteration in range(start_iteration, max_iter + 1):
        tic = time.perf_counter()
        point = next(steps, None)
        now = time.perf_counter()
        if point is None:  # the method gave up
            yield _state(last, oracle.stop_status, oracle.stall_message or "the method stopped",
                         now, start, oracle)
            return
        total = point.parts["total"]
        first = total if first is None else first
        state = TrainState(iteration, point.controls, point.parts, point.grad_norm,
                           point.step_size, now - tic, now - start, oracle.n_evals,
                           extra=dict(point.extra))
        state.resume = dict(controls=point.controls, method=method.state,
                            oracle=oracle.get_state(), first=first, iteration=iteration,
                            elapsed=now - start)
        if not np.isfinite(total) or total > DIVERGENCE_FACTOR * max(abs(first), 1e-300):
            state.status = "diverged"
            state.message = (f"diverged at iteration {iteration}: J = {total:.6g} (initial "
                             f"{first:.6g}); the controls of iteration "
                             f"{last.iteration if last else 0} are returned")
            state.extra["last_finite"] = last
        elif point.grad_norm <= gtol:
            state.status = "converged"
            state.message = f"Riesz gradient norm {point.grad_norm:.3g} <= gtol = {gtol:.3g}"
        elif iteration == max_iter:
            state.status = "max_iter"
            state.message = f"reached max_iter = {max_iter} iterations"
        elif time_limit is not None and now - start >= time_limit:
            state.status = "time_limit"
            state.message = f"reached the time limit of {time_limit:g} s"
        yield state
        if state.status is not None:
            return
        last = state
        oracle.next_batch()


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
            *(float(state.extra.get(k, np.nan)) for k in EXTRA_COLUMNS))


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
    history = {c: np.asarray(v) for c, v in zip(HISTORY_COLUMNS, zip(*rows))}
    return TrainResult(controls=final.controls, cost=parts, grad_norm=final.grad_norm,
                       history=history, success=state.status == "converged",
                       status=state.status, message=state.message,
                       method=getattr(method, "name", method), n_iter=final.iteration,
                       n_evals=state.n_evals, wall_time=state.elapsed)
