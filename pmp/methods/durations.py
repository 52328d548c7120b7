"""Training the stage durations of a staged problem with its controls
(``pmp.train(problem, method, train_durations="fixed_horizon" | "free_horizon")``).

The durations ``T_j`` (the steps ``K_j`` fixed, ``h_j = T_j / K_j``) are kept in the set

* ``{T : sum_j T_j = T_0, T_j >= T_min}`` ("fixed_horizon", ``T_0`` the problem's horizon), or
* ``{T : T_j >= T_min}`` ("free_horizon"),

and every point the methods see has its durations in that set: the Euclidean projection
(:func:`pmp.stages.project_durations`) puts them there. Their gradient is the exact
``dJ/dT_j`` of :func:`pmp.stages.duration_gradient`, reported projected on the directions
they may move in (:func:`pmp.stages.projected_duration_gradient`: ``g - mean(g)`` inside the
set with the horizon fixed, zero exactly at a stationary point). docs/theory.md section 13.

How a method trains them is its :attr:`~pmp.methods.Method.duration_update`:

"joint" (the gradient family)
    The durations are one more entry of the iterate, ``"durations"``, with the metric weight
    ``1 / scale`` (a gradient step moves them by ``scale * lr * dJ/dT``); the oracle
    projects them at every evaluation, so GD is the projected gradient method and heavy
    ball, Nesterov and Adam their projected forms. L-BFGS bounds its line search by
    :meth:`DurationOracle.step_limit`, the step at which the first duration reaches
    ``T_min``.
"alternating" (MSA, E-MSA)
    After each iteration (a Hamiltonian maximisation, accepted or not), one projected
    gradient step ``T <- P(T - eta r)`` (``r`` the projected gradient) accepted only if J
    decreases by Armijo's test ``J(T_new) <= J(T) + c g . (T_new - T)``, ``eta`` divided by
    4 on a rejection, up to :data:`MAX_TRIALS` times: E-MSA stays monotone. The first
    ``eta`` is the Barzilai-Borwein step ``s.s / s.y`` of the last two duration steps
    (``s``, ``y``: the changes of the durations and of ``g``) where ``s.y > 0``, else twice
    the last accepted one: plain projected gradient steps zig-zag along the valleys of J.
"""
import dataclasses

import numpy as np

from .._validation import lookup, real
from ..stages import (_duration_gradient, _evaluate, _states, cost, grad_norm, is_staged,
                      project_durations, projected_duration_gradient, riesz_gradient)
from .base import Point
from .staged import StagedOracle

DURATIONS = "durations"  # the durations' entry among a "joint" method's controls
HORIZONS = {"fixed_horizon": True, "free_horizon": False}  # name -> horizon fixed
MIN_DURATION_FRACTION = 0.01  # default minimum: this fraction of the mean duration
ARMIJO = 1e-4  # the constant c of the alternating step's sufficient-decrease test
MAX_TRIALS = 12  # step sizes tried per alternating step
FIRST_MOVE = 0.1  # the first alternating step moves a duration by this fraction of the mean


@dataclasses.dataclass(frozen=True)
class DurationTraining:
    """What ``train_durations=`` asks for (:func:`duration_training` builds it).

    Attributes
    ----------
    fixed_horizon : bool
        Keep ``sum_j T_j`` at :attr:`total`.
    minimum : float
        ``T_min > 0``: no duration goes below it.
    scale : float
        The durations' step relative to a control's (the gradient methods).
    total : float
        The horizon of the problem being trained.
    """

    fixed_horizon: bool
    minimum: float
    scale: float
    total: float

    def project(self, durations):
        """The nearest feasible durations (:func:`pmp.stages.project_durations`)."""
        return project_durations(durations, self.minimum,
                                 self.total if self.fixed_horizon else None)

    def projected_gradient(self, gradient, durations):
        """:func:`pmp.stages.projected_duration_gradient` on this set."""
        return projected_duration_gradient(gradient, durations, self.minimum,
                                           self.fixed_horizon)


def duration_training(problem, train_durations, min_duration=None, duration_scale=1.0):
    """The validated :class:`DurationTraining` of the trainer's keywords, or None.

    Parameters
    ----------
    problem : Problem or StagedProblem
    train_durations : {None, "fixed_horizon", "free_horizon"}
    min_duration : float, optional
        Default: ``MIN_DURATION_FRACTION`` of the mean duration.
    duration_scale : float
    """
    if train_durations is None:
        if min_duration is not None or duration_scale != 1.0:
            given = "min_duration" if min_duration is not None else "duration_scale"
            raise ValueError(f"{given} is an option of train_durations, which is None (the "
                             f"durations are not trained); set train_durations="
                             f"'fixed_horizon' or 'free_horizon'")
        return None
    fixed = lookup(HORIZONS, train_durations, "value", param="train_durations")
    if not is_staged(problem):
        raise ValueError(f"train_durations={train_durations!r} trains the durations of the "
                         f"stages of a staged problem (pmp.Problem(x, y, stages=[pmp.Stage("
                         f"...), ...])); this problem has no stages")
    T = np.asarray(problem.durations, float)
    if min_duration is None:
        min_duration = MIN_DURATION_FRACTION * float(np.mean(T))
    minimum = real(min_duration, "min_duration", low=0.0, low_open=True)
    scale = real(duration_scale, "duration_scale", low=0.0, low_open=True)
    if np.any(T < minimum * (1.0 - 1e-12)):
        raise ValueError(f"min_duration must be <= every stage's duration (the trainer starts "
                         f"from them), got min_duration={minimum:g} and durations "
                         f"{[float(t) for t in T]}")
    return DurationTraining(fixed, minimum, scale, float(np.sum(T)))


class DurationOracle(StagedOracle):
    """The :class:`~pmp.methods.staged.StagedOracle` of a run that trains the durations:
    the problem (and batch) at the current durations, rebuilt when they change
    (:meth:`pmp.stages.StagedProblem.with_durations`), every point with its durations and
    their projected gradient (module docstring).

    Parameters
    ----------
    problem : StagedProblem
        At the initial durations.
    training : DurationTraining
    joint : bool
        The method takes the durations as coordinates ("joint"), else it calls
        :meth:`duration_step` ("alternating").
    batch_size, seed
        As :class:`~pmp.methods.Oracle`.
    """

    def __init__(self, problem, training, joint, batch_size=None, seed=0):
        super().__init__(problem, batch_size, seed)
        self.base, self.training, self.joint = problem, training, joint
        self.durations = np.array(problem.durations, np.float64)
        self.eta = None  # the alternating step's size (None: not chosen yet)
        self.previous = None  # (durations, gradient) where the last alternating step began
        self._built = {self.durations.tobytes(): problem}

    # ------------------------------------------------------------ the current durations
    def set_durations(self, durations):
        """Move the problem (and the current batch) to ``durations``."""
        durations = np.asarray(durations, np.float64)
        if np.array_equal(durations, self.durations):
            return
        key = durations.tobytes()
        problem = self._built.pop(key, None) or self.base.with_durations(durations)
        self._built[key] = problem  # the last few, newest last (a rejected step goes back)
        while len(self._built) > 4:
            self._built.pop(next(iter(self._built)))
        self.durations, self.problem = durations.copy(), problem
        self.batch = self.problem if self._index is None else self.problem.subset(self._index)

    def get_state(self):
        nan = np.full((2, self.durations.size), np.nan)
        return dict(super().get_state(), durations=self.durations.copy(),
                    eta=np.nan if self.eta is None else self.eta,
                    previous=nan if self.previous is None else np.array(self.previous))

    def set_state(self, state):
        self.set_durations(state["durations"])
        self.eta = None if np.isnan(state["eta"]) else float(state["eta"])
        previous = np.asarray(state["previous"], np.float64)
        self.previous = None if np.isnan(previous).any() else (previous[0], previous[1])
        super().set_state(state)

    def _split(self, controls):
        """The flat controls without the durations, the problem moved to theirs."""
        if self.joint and DURATIONS in controls:
            self.set_durations(self.training.project(controls[DURATIONS]))
            return {n: a for n, a in controls.items() if n != DURATIONS}
        return controls

    # ----------------------------------------------------------------- the oracle
    def run(self, method, u, state=None):
        """``method.run`` on the flat controls (with ``"durations"`` for a "joint" method);
        yields its points with the list of dicts and the durations."""
        flat = self.problem.flatten_controls(u)
        if self.joint:
            flat[DURATIONS] = self.durations.copy()
        for point in method.run(self, flat, state):
            own = {n: a for n, a in point.controls.items() if n != DURATIONS}
            durations = point.controls.get(DURATIONS, point.durations)
            yield dataclasses.replace(
                point, controls=self.problem.unflatten_controls(own),
                durations=np.array(self.durations if durations is None else durations,
                                   np.float64))

    def evaluate(self, controls, step_size=float("nan")):
        point, _, _ = self.sweep(controls, step_size=step_size)
        return point

    def sweep(self, controls, need=None, candidate=None, step_size=float("nan")):
        """Cost, gradients (the durations' too), states and costates at ``controls``."""
        self.n_evals += 1
        own = self._split(controls)
        u = self.problem.unflatten_controls(own)
        xs = _states(self.batch, u)[0] if candidate is None else candidate.xs
        parts, grads, ps = _evaluate(self.batch, u, xs)
        self.statistics = None
        g = _duration_gradient(self.batch.stages, u, xs, ps)
        return self._duration_point(own, parts, grads, g, step_size), xs, ps

    def _duration_point(self, own, parts, grads, g, step_size):
        """The point: its Riesz gradient in the metric of the initial durations (fixed
        through the run, as L-BFGS needs), its norm in that of the current ones."""
        riesz = riesz_gradient(self.base, grads)
        r = self.training.projected_gradient(g, self.durations)
        flat, controls = self.problem.flatten_controls(riesz), dict(own)
        if self.joint:
            controls[DURATIONS] = self.durations.copy()
            flat[DURATIONS] = self.training.scale * r
        norm = max(grad_norm(self.problem, riesz_gradient(self.problem, grads)),
                   float(np.max(np.abs(r))))
        return Point(controls, parts, flat, norm, step_size, durations=self.durations.copy())

    def value(self, controls):
        self.n_evals += 1
        own = self._split(controls)
        return cost(self.batch, self.problem.unflatten_controls(own), validate=False)

    def norm(self, riesz):
        return super().norm({n: a for n, a in riesz.items() if n != DURATIONS})

    def riesz_weight(self, name):
        """The metric's weight: the initial problem's for a control, ``1 / scale`` for the
        durations."""
        return 1.0 / self.training.scale if name == DURATIONS else \
            self.base.riesz_weight(name)

    def step_limit(self, controls, direction):
        """The largest ``a`` keeping ``durations + a direction["durations"] >= T_min``."""
        if not self.joint or DURATIONS not in direction:
            return np.inf
        T = np.asarray(controls[DURATIONS], np.float64)
        d = np.asarray(direction[DURATIONS], np.float64)
        down = d < 0.0
        if not np.any(down):
            return np.inf
        return max(0.0, float(np.min((T[down] - self.training.minimum) / -d[down])))

    def duration_step(self, point, xs, ps, need=None):
        """One projected gradient step on the durations at ``point`` with backtracking, kept
        only if J decreases (module docstring): the new ``(point, xs, ps)``, or None."""
        u = self.problem.unflatten_controls(point.controls)
        g = _duration_gradient(self.batch.stages, u, xs, ps)
        T, f = self.durations.copy(), point.parts["total"]
        r = self.training.projected_gradient(g, T)
        size = float(np.max(np.abs(r)))
        if not size > 0.0:
            return None
        eta = self._first_step(T, g, size)
        self.previous = (T, g)
        for _ in range(MAX_TRIALS):
            new = self.training.project(T - eta * r)
            if np.array_equal(new, T):
                break
            self.set_durations(new)
            total = cost(self.batch, u, validate=False)["total"]
            self.n_evals += 1
            if total < f and total <= f + ARMIJO * float(g @ (new - T)):
                self.eta = 2.0 * eta
                moved, xs, ps = self.sweep(point.controls, need, step_size=point.step_size)
                moved.extra = dict(point.extra)
                return moved, xs, ps
            eta /= 4.0
        self.set_durations(T)
        self.eta = eta
        return None

    def _first_step(self, T, g, size):
        """The first ``eta`` an alternating step tries (module docstring)."""
        if self.previous is not None:
            s, y = T - self.previous[0], g - self.previous[1]
            if s @ y > 0.0:
                return float(s @ s) / float(s @ y)
        return self.eta if self.eta is not None else FIRST_MOVE * float(np.mean(T)) / size


__all__ = ["DurationTraining", "DurationOracle", "duration_training", "DURATIONS", "HORIZONS"]
