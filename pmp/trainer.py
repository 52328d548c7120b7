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

The loop also keeps the best iterate (lowest cost; full batch only): every state's ``best``.
A run that ends above its initial cost says so in its message (and :func:`train` warns);
``keep_best=True`` returns the best iterate instead of the last one.
"""
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validation import integer, lookup, real
from .methods import Oracle, extra_history_columns, make_method
from .methods.durations import DurationOracle, duration_training
from .methods.staged import StagedOracle, check_staged
from .problem import INIT_SCHEMES
from .stages import cost, init_controls, is_staged
from .threads import serial_blas

DIVERGENCE_FACTOR = 1e6
# seconds between two refreshes of a progress bar (tqdm's mininterval): redrawing a terminal
# line every iteration costs more than an iteration of a small problem
PROGRESS_INTERVAL = 0.25
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
    best : TrainState or None
        The iterate of lowest cost so far (this one, or an earlier one); None with
        mini-batches, whose costs are on different samples.
    durations : ndarray, shape (n_stages,), or None
        The stage durations of this iterate when they are trained (``train_durations``),
        else None.
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
    best: "TrainState | None" = field(default=None, repr=False, compare=False)
    durations: np.ndarray | None = None


def iterate(problem, method="gd", *, max_iter=1000, controls=None, seed=0, gtol=1e-6,
            time_limit=None, batch_size=None, init="normal", init_scale=0.1, resume=None,
            segment=None, keep_best=False, train_durations=None, min_duration=None,
            duration_scale=1.0, **options):
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
    keep_best : bool
        The result is the best iterate (the last state's ``best``); full batch only.
    train_durations : {None, "fixed_horizon", "free_horizon"}
        Staged problems: train the stage durations ``T_j`` with the controls (``K_j`` kept),
        the horizon ``sum T_j`` fixed or free, each at least ``min_duration``; None keeps
        them (:mod:`pmp.methods.durations`). Every state's ``durations`` holds them.
    min_duration : float, optional
        The least duration, > 0 (default: 1% of the mean duration).
    duration_scale : float
        Gradient methods: a step moves the durations by ``duration_scale * lr * dJ/dT_j``.
    **options
        The method's options (``lr``, ``momentum``, ...); unknown ones raise TypeError.

    Yields
    ------
    TrainState
        One per iterate; the last one has ``status`` set.
    """
    durations = duration_training(problem, train_durations, min_duration, duration_scale)
    method, stop, oracle = _setup(problem, method, options, max_iter, gtol, time_limit,
                                  batch_size, segment, seed, init, init_scale, keep_best,
                                  durations)
    steps, start = _steps(problem, method, oracle, controls, resume, init, init_scale, seed)
    yield from _loop(steps, method, oracle, stop, start, resume, keep_best)


def _steps(problem, method, oracle, controls, resume, init, init_scale, seed):
    """The method's generator of points from the initial controls (or a checkpoint's), and
    the time the run started."""
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
    steps = oracle.run(method, controls, None if resume is None else resume["method"])
    if method.blas_between_sweeps:
        steps = serial_blas(steps)
    return steps, start


def check_options(problem, method="gd", *, max_iter=1000, seed=0, gtol=1e-6, time_limit=None,
                  batch_size=None, init="normal", init_scale=0.1, segment=None,
                  keep_best=False, train_durations=None, min_duration=None,
                  duration_scale=1.0, **options):
    """Raise the error :func:`iterate` would raise for these arguments, without training
    (a batch run checks its whole configuration before it writes anything)."""
    durations = duration_training(problem, train_durations, min_duration, duration_scale)
    _setup(problem, method, options, max_iter, gtol, time_limit, batch_size, segment, seed,
           init, init_scale, keep_best, durations)


def _setup(problem, method, options, max_iter, gtol, time_limit, batch_size, segment, seed,
           init, init_scale, keep_best=False, durations=None):
    """The method, the stop rules and the oracle of a run, every argument checked."""
    method = make_method(method, options)
    stop = _StopRules(max_iter, gtol, time_limit)
    seed = integer(seed, "seed", low=0)
    lookup({s: s for s in INIT_SCHEMES}, init, "init scheme")
    real(init_scale, "init_scale", low=0.0)
    if not isinstance(keep_best, (bool, np.bool_)):
        raise TypeError(f"keep_best must be True or False, got {type(keep_best).__name__} "
                        f"{keep_best!r}")
    oracle = _oracle(problem, method, batch_size, segment, seed, durations)
    if keep_best and oracle.batch_size is not None:
        raise ValueError(f"keep_best=True compares the costs of the iterates: it needs the full "
                         f"batch (batch_size=None), got batch_size={batch_size} (the costs of "
                         f"mini-batches are on different samples)")
    return method, stop, oracle


def _oracle(problem, method, batch_size, segment, seed, durations=None):
    """The :class:`~pmp.methods.Oracle` of a run, once the method has accepted its batch
    size (None or all samples: full batch) and segment (and, with ``durations``, a
    :class:`~pmp.methods.durations.DurationTraining`, to train the durations)."""
    if batch_size is not None:
        batch_size = integer(batch_size, "batch_size", low=1)
        batch_size = None if batch_size >= problem.n_samples else batch_size
    if segment is not None:
        segment = integer(segment, "segment", low=1)
    if is_staged(problem):  # the controls as one dict for the method (pmp.methods.staged)
        check_staged(method, problem, batch_size, segment)
        if durations is not None:
            if method.duration_update is None:
                raise ValueError(f"method {method.name!r} cannot train the durations "
                                 f"(train_durations=...)")
            return DurationOracle(problem, durations, method.duration_update == "joint",
                                  batch_size, seed)
        return StagedOracle(problem, batch_size, seed)
    method.check(problem, batch_size, segment)
    return Oracle(problem, batch_size, seed, segment)


def _loop(steps, method, oracle, stop, start, resume, keep_best=False):
    """Advance the method's generator, yield a :class:`TrainState` per iterate until a stop
    rule fires or the method gives up; keep the best iterate (full batch)."""
    first, last, iteration, best = None, None, 0, None
    track = oracle.batch_size is None  # mini-batch costs are on different samples
    if resume is not None:  # the checkpointed iterate again: already recorded
        first, iteration = float(resume["first"]), int(resume["iteration"])
        point = next(steps)
        last = TrainState(iteration, point.controls, point.parts, point.grad_norm,
                          point.step_size, 0.0, time.perf_counter() - start, oracle.n_evals,
                          resume=resume, durations=point.durations)
        best = last.best = _restored_best(resume.get("best"), last) if track else None
        iteration += 1
        if iteration > stop.max_iter:  # resumed at max_iter (say, interrupted at the end)
            yield _conclude(_state(last, "max_iter", f"reached max_iter = {stop.max_iter} "
                                   f"iterations", time.perf_counter(), start, oracle),
                            first, keep_best)
            return
        oracle.next_batch()
    for iteration in range(iteration, stop.max_iter + 1):
        tic = time.perf_counter()
        point = next(steps, None)
        now = time.perf_counter()
        if point is None:  # the method gave up
            yield _conclude(_state(last, oracle.stop_status,
                                   oracle.stall_message or "the method stopped", now, start,
                                   oracle), first, keep_best)
            return
        first = point.parts["total"] if first is None else first
        state = TrainState(iteration, point.controls, point.parts, point.grad_norm,
                           point.step_size, now - tic, now - start, oracle.n_evals,
                           extra=dict(point.extra), durations=point.durations)
        total = state.cost["total"]  # on ties the later one (a rejected step repeats it)
        if track and np.isfinite(total) and (best is None or total <= best.cost["total"]):
            best = state
        state.best = best
        state.resume = dict(controls=point.controls, method=method.state,
                            oracle=oracle.get_state(), first=first, iteration=iteration,
                            elapsed=now - start, best=_best_record(best, iteration))
        stop.apply(state, first, last)
        if state.status is not None:
            yield _conclude(state, first, keep_best)
            return
        yield state
        last = state
        oracle.next_batch()


def _best_record(best, iteration):
    """What a checkpoint keeps of the best iterate (its iteration alone when it is the
    checkpointed one), so that a resumed run keeps the same best."""
    if best is None:
        return None
    if best.iteration == iteration:
        return {"iteration": iteration}
    record = dict(iteration=best.iteration, cost=dict(best.cost), grad_norm=best.grad_norm,
                  step_size=best.step_size, controls=best.controls)
    if best.durations is not None:
        record["durations"] = best.durations
    return record


def _restored_best(record, state):
    """The best iterate of a resumed run: ``state`` (the resumed one) or the record's."""
    if record is None or int(record["iteration"]) == state.iteration:
        return state
    best = TrainState(int(record["iteration"]), record["controls"],
                      {k: float(v) for k, v in record["cost"].items()},
                      float(record["grad_norm"]), float(record["step_size"]), float("nan"),
                      float("nan"), 0, durations=record.get("durations"))
    best.best = best
    return best


def _conclude(state, first, keep_best):
    """Finish the last state's message: which iterate the run returns (``extra["returned"]``:
    the last finite one, or the best with ``keep_best``) and whether the run ended above its
    initial cost (``extra["worse_than_start"]``; None with mini-batches, whose costs are on
    different samples: :func:`train` compares on all samples)."""
    end = state.extra.get("last_finite") or state
    best = state.best
    returned = best if keep_best and best is not None else end
    worse = None
    if best is not None and first is not None and np.isfinite(first):
        worse = bool(end.cost["total"] > first)
    notes = []
    if state.status == "diverged" and returned is end:
        above = ", above the initial cost" if worse else ""
        notes.append(f"the controls of iteration {end.iteration} (J = "
                     f"{end.cost['total']:.6g}{above}) are returned")
    elif worse:
        notes.append(f"the run ended above its initial cost (J = {end.cost['total']:.6g} > "
                     f"{first:.6g})")
    if best is not None and best.iteration != end.iteration:
        where = f"iteration {best.iteration} (J = {best.cost['total']:.6g})"
        notes.append(f"the best iterate, {where}, is returned" if returned is best else
                     f"the best iterate was {where}: keep_best=True returns it")
    if notes:
        state.message = "; ".join([state.message] + notes)
    state.extra.update(returned=returned, worse_than_start=worse)
    return state


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
            state.message = f"diverged at iteration {iteration}: J = {total:.6g} (initial " \
                            f"{first:.6g})"
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
                       resume=last.resume, best=last.best, durations=last.durations)
    if last.best is last:
        state.best = state
    state.extra["repeat"] = True
    return state


class TrainResult(dict):
    """Result of :func:`train`: a dict whose keys are also attributes, like scipy's
    ``OptimizeResult``.

    Attributes
    ----------
    controls : dict
        Final controls (same keys and shapes as the problem's): those of the last iterate,
        the last finite one after a divergence, or the best one with ``keep_best=True``.
    cost : dict
        Final cost parts on all samples: total, terminal, running, regularization, loss.
    J : float
        ``cost["total"]``.
    iteration : int
        The iterate whose controls are returned.
    best_iteration : int or None
        The iterate of lowest cost (None with mini-batches).
    worse_than_start : bool or None
        The run ended above its initial cost (the last finite iterate against iteration 0,
        on all samples; also with ``keep_best=True``, which then returns a better iterate).
        :func:`train` warns and the message says so. None when not known (a mini-batch run
        resumed from a checkpoint).
    grad_norm : float
    history : dict
        column -> ndarray, one entry per iterate: iteration, cost, terminal, running,
        regularization, loss, grad_norm, step_size, wall_time, elapsed (and the method's
        own columns). With ``train_durations`` also "durations", shape (n_iterates,
        n_stages), and "switch_times", shape (n_iterates, n_stages - 1).
    durations : ndarray, shape (n_stages,), or None
        With ``train_durations``: the durations of the returned iterate (its controls are
        those of ``problem.with_durations(result.durations)``); None otherwise.
    success : bool
        True when the method converged (the gradient criterion, or a method's own step
        criterion).
    status : str
        "converged", "max_iter", "time_limit", "diverged" or "stalled".
    message : str
    method : str
    n_iter : int
        Updates made (the number of the last iterate).
    n_evals : int
    wall_time : float
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self))

    def __repr__(self):
        c = self.cost
        durations = "" if self.get("durations") is None else \
            f", durations={np.array2string(np.asarray(self.durations), precision=4)}"
        return (f"TrainResult(method={self.method!r}, status={self.status!r}, "
                f"success={self.success}, n_iter={self.n_iter}, J={c['total']:.6g} "
                f"(terminal={c['terminal']:.4g}, running={c['running']:.4g}, "
                f"regularization={c['regularization']:.4g}), grad_norm={self.grad_norm:.3g}"
                f"{durations}, wall_time={self.wall_time:.3g}s)\n  message: {self.message}")

    __str__ = __repr__


def history_row(state):
    """The history columns of one :class:`TrainState`."""
    c = state.cost
    return (state.iteration, c["total"], c["terminal"], c["running"], c["regularization"],
            c["loss"], state.grad_norm, state.step_size, state.wall_time, state.elapsed,
            *(float(state.extra.get(k, np.nan)) for k in extra_history_columns()))


def train(problem, method="gd", *, max_iter=1000, controls=None, seed=0, keep_best=False,
          progress=None, **kwargs):
    """Train ``problem``: consume :func:`iterate` and return a :class:`TrainResult`.

    Parameters are those of :func:`iterate`, and

    keep_best : bool
        Return the best iterate (lowest cost) instead of the last one; full batch only.
    progress : bool or None
        True: a progress bar (``tqdm.auto``: a widget in Jupyter, text on a terminal,
        refreshed every ``PROGRESS_INTERVAL`` s at most). None (the default) or False: no
        bar. Whatever it is, a process that compiles pmp's kernels (the first run of an
        installation: tens of seconds) says so in one line on stderr (``PMP_QUIET=1``
        silences it).

    A run that ends above its initial cost warns (``UserWarning``) and sets
    ``result.worse_than_start``. Example::

        result = pmp.train(problem, method="lbfgs", max_iter=500, gtol=1e-8)
        result.J                   # the final cost; result.history["cost"]: one per iterate
    """
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None, got "
                        f"{type(progress).__name__} {progress!r}")
    name = getattr(method, "name", method)
    resume = kwargs.get("resume")
    bar = _progress_bar(progress, max_iter, 0 if resume is None else int(resume["iteration"]),
                        name)
    history, start, state = _consume(iterate(problem, method, max_iter=max_iter,
                                             controls=controls, seed=seed,
                                             keep_best=keep_best, **kwargs), bar)
    final = state.extra.get("returned") or state
    worse, message = state.extra.get("worse_than_start"), state.message
    batch_size = kwargs.get("batch_size")
    if batch_size is not None and batch_size < problem.n_samples:
        parts = cost(_at(problem, final), final.controls)  # the history: mini-batch costs
        if resume is None:  # compare on all samples
            initial = cost(_at(problem, start), start.controls)["total"]
            worse = bool(parts["total"] > initial)
            if worse:
                message += (f"; the run ended above its initial cost on all samples (J = "
                            f"{parts['total']:.6g} > {initial:.6g})")
    else:
        parts = final.cost
    if worse:
        warnings.warn(f"pmp.train, method {name!r}: {message}", UserWarning, stacklevel=2)
    best = None if state.best is None else state.best.iteration
    return TrainResult(controls=final.controls, cost=parts, J=parts["total"],
                       grad_norm=final.grad_norm, history=history,
                       success=state.status == "converged", status=state.status,
                       message=message, method=name, n_iter=state.iteration,
                       iteration=final.iteration, best_iteration=best,
                       worse_than_start=worse, n_evals=state.n_evals, wall_time=state.elapsed,
                       durations=final.durations)


def _at(problem, state):
    """``problem`` at the durations of ``state`` (when they are trained)."""
    return problem if state.durations is None else problem.with_durations(state.durations)


def _consume(states, bar):
    """Run :func:`iterate`'s generator: the history, the first and the last state."""
    rows, durations, first, state = [], [], None, None
    try:
        for state in states:
            first = first or state
            if not state.extra.get("repeat"):
                rows.append(history_row(state))
                if state.durations is not None:
                    durations.append(state.durations)
                if bar is not None:
                    bar.set_postfix_str(f"J={state.cost['total']:.6g}", refresh=False)
                    bar.update(state.iteration - bar.n)
    finally:
        if bar is not None:
            bar.close()
    history = {c: np.asarray(v) for c, v in zip(history_columns(), zip(*rows))}
    if durations:
        history["durations"] = np.array(durations)
        history["switch_times"] = np.cumsum(history["durations"], axis=1)[:, :-1]
    return history, first, state


def _progress_bar(progress, total, initial, name):
    """The bar of :func:`train` (None without one)."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=str(name), unit="it",
                mininterval=PROGRESS_INTERVAL, dynamic_ncols=True)
