"""Staged problems (variable width): sweeps, exact gradients and the switching-time gradient.

``pmp.Problem(x, y, stages=[pmp.Stage(...), ...], **defaults)`` builds a
:class:`StagedProblem`: stages ``j = 0..S-1`` on consecutive intervals, each an ordinary
problem of its own dimension, field, ``T_j`` and ``K_j`` steps (``h_j = T_j / K_j``), joined by
linear transitions ``X^{(j+1)}_0 = X^{(j)}_{K_j} A_j^T``. Conventions (docs/theory.md
section 13):

* the cost is the last stage's terminal loss, every stage's running cost on its own grid
  (the state before a transition carries none) and regulariser, and ``lam_A |A_j|_F^2`` for a
  trainable transition;
* inside a stage the costates follow section 3 with ``h_j``; across a transition
  ``p^{(j)}_{K_j} = p^{(j+1)}_0 A_j`` (batch rows), and a trainable transition has the exact
  gradient ``dJ/dA_j = -(p^{(j+1)}_0)^T X^{(j)}_{K_j} + 2 lam_A A_j``;
* with ``K_j`` fixed, ``dJ/dT_j = -(1/K_j) sum_k Hbar^{(j)}_k`` (minus the H^1 term), where
  ``Hbar_k = <p_{k+1}, F(X_k, u_k)> - running Phi(X_k) - R(u_k)`` is the Hamiltonian per
  unit time (:func:`duration_gradient`, :func:`stage_hamiltonians`).

Controls are a list of one dict per stage; a trainable transition into stage ``j`` is the
entry ``"enter"`` of ``controls[j]``, shape ``(d_j, d_{j-1})``. The functions below take a
staged problem or an unstaged :class:`pmp.Problem` (then they are those of
:mod:`pmp.sweeps`, result for result); ``pmp.forward``, ``pmp.value_and_grad``, ... are these.
"""
from collections.abc import Mapping

import numpy as np

from . import sweeps
from ._controls import step_norms_squared
from ._staged import (ENTER, STAGE_OPTIONS, TRANSITIONS, Stage, StagedProblem, Transition,
                      init_stage_controls, interpolation_matrix)
from .problem import Problem
from .problem import init_controls as _init_unstaged

__all__ = ["Stage", "StagedProblem", "Transition", "STAGE_OPTIONS", "TRANSITIONS", "ENTER",
           "is_staged", "init_controls", "forward", "backward", "evaluate", "value_and_grad",
           "cost", "hamiltonian", "losses_along", "riesz_gradient", "grad_norm",
           "duration_gradient", "stage_hamiltonians", "switch_hamiltonians",
           "project_durations", "projected_duration_gradient", "interpolation_matrix"]


def is_staged(problem):
    """True for a :class:`StagedProblem`."""
    return isinstance(problem, StagedProblem)


def _own(u):
    """A stage's controls without its transition's (what the stage's problem takes)."""
    return {n: a for n, a in u.items() if n != ENTER}


def _prepare(problem, controls, validate):
    return problem.validate_controls(controls) if validate else controls


def _enter(problem, j, X, controls):
    """The first states of stage ``j`` from the last ones ``X`` of stage ``j - 1``."""
    return problem.transitions[j - 1].apply(X, controls[j].get(ENTER))


# ---------------------------------------------------------------------- the sweeps
def _states(problem, controls, store=False):
    """Every stage's states (K_j + 1, N, d_j) and activation stores (forward sweeps)."""
    xs_all, kept_all, x0 = [], [], None
    for j, (stage, u) in enumerate(zip(problem.stages, controls)):
        if j:
            x0 = _enter(problem, j, xs_all[-1][-1], controls)
        xs, kept = sweeps._forward(stage, _own(u), store, x0=x0)
        xs_all.append(xs)
        kept_all.append(kept)
    return xs_all, kept_all


def _transition_gradient(tr, A, p0, X):
    """``dJ/dA = -p0^T X + 2 lam A`` (p0: the next stage's first costates, X: the last
    states before the transition), frozen entries zero."""
    g = -(p0.T @ X) + (2.0 * tr.lam) * A
    if tr.frozen is not None:
        g[tr.frozen] = 0.0
    return g


def _back(problem, controls, xs_all, kept_all, last, costates=True, workspaces=None):
    """The costate sweeps of the stages before the last, given the last's
    ``(ps, grads, (phi, run))``: lists of costates, gradients and each stage's cost parts."""
    S = len(problem.stages)
    ps_all, grads_all, parts = [None] * S, [None] * S, [None] * S
    ps, grads_all[-1], (phi, run) = last
    ps_all[-1] = ps
    parts[-1] = sweeps._total(problem.stages[-1], _own(controls[-1]), phi, run)
    for j in range(S - 2, -1, -1):
        stage, tr, p0 = problem.stages[j], problem.transitions[j], ps_all[j + 1][0]
        A = controls[j + 1][ENTER] if tr.trainable else None
        if tr.trainable:
            grads_all[j + 1][ENTER] = _transition_gradient(tr, A, p0, xs_all[j][-1])
        ps, grads_all[j], (_, run) = sweeps._backward(
            stage, _own(controls[j]), xs_all[j], kept_all[j], costates,
            None if workspaces is None else workspaces[j], p_end=tr.pull(p0, A))
        ps_all[j] = ps
        parts[j] = sweeps._total(stage, _own(controls[j]), 0.0, run)
    return ps_all, grads_all, _combine(problem, controls, parts)


def _combine(problem, controls, parts):
    """The cost parts of the whole problem from the stages' (:func:`pmp.cost`'s keys)."""
    running = sum(p["running"] for p in parts)
    reg = sum(p["regularization"] for p in parts)
    for tr, u in zip(problem.transitions, controls[1:]):
        if tr.trainable:
            reg += tr.lam * float(np.einsum("ij,ij->", u[ENTER], u[ENTER]))
    terminal = parts[-1]["terminal"]
    return {"total": terminal + running + reg, "terminal": terminal, "running": running,
            "regularization": reg, "loss": parts[-1]["loss"]}


def _gradient(problem, controls, workspace=None):
    """Cost parts and gradient list: the last stage runs as :func:`pmp.sweeps._gradient`
    (fused sweeps, two costate slots), so one stage is the unstaged problem bit for bit."""
    S = len(problem.stages)
    ws = [None if workspace is None else workspace.setdefault(("stage", j), {})
          for j in range(S)]
    xs_all, kept_all, x0 = [], [], None
    for j in range(S - 1):
        if j:
            x0 = _enter(problem, j, xs_all[-1][-1], controls)
        xs, kept = sweeps._forward(problem.stages[j], _own(controls[j]), True, ws[j], x0=x0)
        xs_all.append(xs)
        kept_all.append(kept)
    last, u = problem.stages[-1], _own(controls[-1])
    x0 = _enter(problem, S - 1, xs_all[-1][-1], controls) if S > 1 else None
    xs, kept = sweeps._forward(last, u, True, ws[-1], run=False, x0=x0)
    result = sweeps._backward(last, u, xs, kept, False, ws[-1], True)
    _, grads, parts = _back(problem, controls, xs_all + [xs], kept_all + [kept], result,
                            costates=False, workspaces=ws)
    return parts, grads


def _evaluate(problem, controls, xs_all):
    """Cost parts, gradients and costates from the states (full trajectories)."""
    last = sweeps._backward(problem.stages[-1], _own(controls[-1]), xs_all[-1])
    ps_all, grads, parts = _back(problem, controls, xs_all, [None] * len(xs_all), last)
    return parts, grads, ps_all


def _cost_of_states(problem, controls, xs_all):
    """Cost parts from the states of the forward sweeps."""
    parts = []
    for j, (stage, u, xs) in enumerate(zip(problem.stages, controls, xs_all)):
        u = _own(u)
        if j == len(problem.stages) - 1:
            parts.append(sweeps._cost_of_states(stage, u, xs))
            continue
        run = 0.0  # the state before a transition carries no running cost
        if stage.running != 0.0:
            run = float(np.sum(sweeps.losses_with(stage, xs[:-1], sweeps._P(stage, u))))
        parts.append(sweeps._total(stage, u, 0.0, run))
    return _combine(problem, controls, parts)


def _trajectories(problem, arrays, name):
    """``arrays`` as a list of one valid (K_j + 1, N, d_j) array per stage."""
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)) \
            or len(arrays) != len(problem.stages):
        raise TypeError(f"{name} of a staged problem must be a list of {len(problem.stages)} "
                        f"arrays (one per stage), got {type(arrays).__name__}")
    return [sweeps._trajectory(stage, a, f"{name}[{j}]")
            for j, (stage, a) in enumerate(zip(problem.stages, arrays))]


# ---------------------------------------------------------- the public functions
def init_controls(problem, scheme="normal", scale=1.0, seed=0):
    """:func:`pmp.problem.init_controls`; for a staged problem a list of one dict per stage
    (stage 0 drawn as the unstaged problem would be, the later stages from seeds derived
    from ``seed``; a trainable transition starts at its initial matrix)."""
    if is_staged(problem):
        return init_stage_controls(problem, scheme, scale, seed)
    return _init_unstaged(problem, scheme, scale, seed)


def forward(problem, controls, *, validate=True):
    """States over the whole grid: :func:`pmp.sweeps.forward`, or for a staged problem a
    list of one array (n_steps[j] + 1, n_samples, dims[j]) per stage (``xs[j][0]`` is the
    transition's image of ``xs[j - 1][-1]``)."""
    if not is_staged(problem):
        return sweeps.forward(problem, controls, validate=validate)
    return _states(problem, _prepare(problem, controls, validate))[0]


def backward(problem, controls, states=None, *, validate=True):
    """Costates: :func:`pmp.sweeps.backward`, or for a staged problem a list of one array
    (n_steps[j] + 1, n_samples, dims[j]) per stage, ``ps[j][-1] = ps[j + 1][0] A_j``
    (``states``: the list :func:`forward` returns, computed when omitted)."""
    if not is_staged(problem):
        return sweeps.backward(problem, controls, states, validate=validate)
    controls = _prepare(problem, controls, validate)
    xs_all = _states(problem, controls)[0] if states is None else \
        _trajectories(problem, states, "states")
    return _evaluate(problem, controls, xs_all)[2]


def evaluate(problem, controls, *, states=None, validate=True):
    """Cost parts, gradient, states and costates (:func:`pmp.sweeps.evaluate`); for a staged
    problem the gradient, states and costates are lists with one entry per stage."""
    if not is_staged(problem):
        return sweeps.evaluate(problem, controls, states=states, validate=validate)
    controls = _prepare(problem, controls, validate)
    xs_all = _states(problem, controls)[0] if states is None else \
        _trajectories(problem, states, "states")
    parts, grads, ps_all = _evaluate(problem, controls, xs_all)
    return parts, grads, xs_all, ps_all


def value_and_grad(problem, controls, *, segment=None, workspace=None, validate=True):
    """The discrete cost J and its exact gradient (:func:`pmp.sweeps.value_and_grad`); for a
    staged problem the gradient is a list of one dict per stage, with ``"enter"`` the
    gradient of a trainable transition. ``segment`` is for unstaged problems only."""
    if not is_staged(problem):
        return sweeps.value_and_grad(problem, controls, segment=segment, workspace=workspace,
                                     validate=validate)
    controls = _prepare(problem, controls, validate)
    if segment is not None:
        raise ValueError(f"segment is not available for a staged problem (its stages keep "
                         f"all their states), got segment={segment!r}")
    if workspace is not None and not isinstance(workspace, dict):
        raise TypeError(f"workspace must be a dict (or None), got {type(workspace).__name__}")
    parts, grads = _gradient(problem, controls, workspace)
    return parts["total"], grads


def cost(problem, controls, *, validate=True):
    """The parts of the discrete cost (:func:`pmp.sweeps.cost`); for a staged problem
    "terminal" and "loss" are the last stage's, "running" and "regularization" the sums over
    the stages (with the trainable transitions' ``lam_A |A|^2``)."""
    if not is_staged(problem):
        return sweeps.cost(problem, controls, validate=validate)
    controls = _prepare(problem, controls, validate)
    return _cost_of_states(problem, controls, _states(problem, controls)[0])


def hamiltonian(problem, controls, states, costates):
    """Per-step ``H_k`` (:func:`pmp.sweeps.hamiltonian`); a list per stage when staged."""
    if not is_staged(problem):
        return sweeps.hamiltonian(problem, controls, states, costates)
    controls = problem.validate_controls(controls)
    xs_all = _trajectories(problem, states, "states")
    ps_all = _trajectories(problem, costates, "costates")
    return [sweeps.hamiltonian(s, _own(u), xs, ps)
            for s, u, xs, ps in zip(problem.stages, controls, xs_all, ps_all)]


def losses_along(problem, states, controls=None):
    """``Phi(X_k)`` along the grid (:func:`pmp.sweeps.losses_along`); for a staged problem
    a list per stage, each with its stage's readout."""
    if not is_staged(problem):
        return sweeps.losses_along(problem, states, controls)
    xs_all = _trajectories(problem, states, "states")
    controls = [None] * len(xs_all) if controls is None else \
        [_own(u) for u in problem.validate_controls(controls)]
    return [sweeps.losses_along(s, xs, u)
            for s, xs, u in zip(problem.stages, xs_all, controls)]


def riesz_gradient(problem, grads):
    """The L^2 (Riesz) gradient (:func:`pmp.sweeps.riesz_gradient`): per stage ``dJ/du / h_j``;
    a readout's and a transition's are left as they are."""
    if not is_staged(problem):
        return sweeps.riesz_gradient(problem, grads)
    _check_list(problem, grads, "grads")
    out = []
    for stage, g in zip(problem.stages, grads):
        r = sweeps.riesz_gradient(stage, _own(g))
        if ENTER in g:
            r[ENTER] = g[ENTER]
        out.append(r)
    return out


def grad_norm(problem, riesz):
    """``max_k |g_k|`` (:func:`pmp.sweeps.grad_norm`); for a staged problem the largest over
    the stages and the trainable transitions (Frobenius norm)."""
    if not is_staged(problem):
        return sweeps.grad_norm(problem, riesz)
    _check_list(problem, riesz, "riesz")
    norm = 0.0
    for stage, r in zip(problem.stages, riesz):
        norm = max(norm, sweeps.grad_norm(stage, _own(r)))
        if ENTER in r:
            norm = max(norm, float(np.linalg.norm(r[ENTER])))
    return norm


def _check_list(problem, value, name):
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)) \
            or len(value) != len(problem.stages):
        raise TypeError(f"{name} of a staged problem must be a list of {len(problem.stages)} "
                        f"dicts (one per stage), got {type(value).__name__}")


# ------------------------------------------------------------- switching times
def _trajectories_of(problem, controls, states, costates):
    """(stages, controls, states, costates) as lists with one entry per stage, of a staged
    or an unstaged problem (one stage); the trajectories computed where None."""
    if is_staged(problem):
        controls = problem.validate_controls(controls)
        xs = _states(problem, controls)[0] if states is None else \
            _trajectories(problem, states, "states")
        ps = _evaluate(problem, controls, xs)[2] if costates is None else \
            _trajectories(problem, costates, "costates")
        return problem.stages, controls, xs, ps
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a pmp.Problem, got {type(problem).__name__}")
    controls = problem.validate_controls(controls)
    xs = sweeps.forward(problem, controls, validate=False) if states is None else \
        sweeps._trajectory(problem, states, "states")
    ps = sweeps.backward(problem, controls, xs, validate=False) if costates is None else \
        sweeps._trajectory(problem, costates, "costates")
    return (problem,), [controls], [xs], [ps]


def _hamiltonians(stages, controls, xs_all, ps_all):
    """``Hbar_k`` per stage (see :func:`stage_hamiltonians`)."""
    out = []
    for stage, u, xs, ps in zip(stages, controls, xs_all, ps_all):
        u = _own(u)
        flow = np.einsum("knd,knd->k", ps[1:].astype(np.float64),
                         (xs[1:].astype(np.float64) - xs[:-1]) / stage.h)
        run = stage.running * sweeps.losses_with(stage, xs[:-1], sweeps._P(stage, u)) \
            if stage.running != 0.0 else 0.0
        out.append(flow - run - np.asarray(stage.reg.step_values(u, stage.control_names),
                                           np.float64))
    return out


def stage_hamiltonians(problem, controls, states=None, costates=None):
    """The Hamiltonian per unit time of every step of every stage,
    ``Hbar_k = <p_{k+1}, F(X_k, u_k)> - running Phi(X_k) - R(u_k)`` (batch costates: the
    inner product is summed over the samples).

    ``F(X_k, u_k)`` is read as ``(X_{k+1} - X_k) / h`` from the states (exact up to the
    rounding of that difference, about ``eps |X| / h``).

    Parameters
    ----------
    problem : StagedProblem or Problem
    controls : list of dict (dict for an unstaged problem)
    states, costates : list of ndarray (ndarray for an unstaged problem), optional
        Of :func:`forward` and :func:`backward` at these controls (computed when omitted).

    Returns
    -------
    list of ndarray, shape (n_steps[j],)
        One per stage (one for an unstaged problem). On a solution of the continuous problem
        ``Hbar`` is constant on each stage (the fields are autonomous).
    """
    return _hamiltonians(*_trajectories_of(problem, controls, states, costates))


def duration_gradient(problem, controls, *, states=None, costates=None):
    """``dJ/dT_j`` for every stage, the steps ``K_j`` kept (``h_j = T_j / K_j``): exact for
    the discrete problem (docs/theory.md section 13),

    ``dJ/dh_j = -sum_k Hbar^{(j)}_k - (lam1 / h_j^2) sum_k |u_{k+1} - u_k|^2``,
    ``dJ/dT_j = (1 / K_j) dJ/dh_j``

    with ``Hbar`` of :func:`stage_hamiltonians` (the H^1 term for reg="h1" only).

    Parameters
    ----------
    problem : StagedProblem or Problem
        An unstaged problem is one stage (``dJ/dT`` at fixed ``n_steps``).
    controls : list of dict (dict for an unstaged problem)
    states, costates : list of ndarray, optional
        Of :func:`forward` and :func:`backward` at these controls (computed when omitted).

    Returns
    -------
    ndarray, shape (n_stages,)
        With the horizon ``sum T_j`` held fixed, the gradient on that constraint is
        ``g - g.mean()``; moving the switch between stages j and j + 1 later changes J at
        the rate ``g[j] - g[j + 1]``.
    """
    return _duration_gradient(*_trajectories_of(problem, controls, states, costates))


def _duration_gradient(stages, controls, xs_all, ps_all):
    """:func:`duration_gradient` of validated lists (one entry per stage)."""
    hbar = _hamiltonians(stages, controls, xs_all, ps_all)
    out = np.empty(len(stages))
    for j, (stage, u, hb) in enumerate(zip(stages, controls, hbar)):
        dh = -float(np.sum(hb))
        if stage.lam1 != 0.0:
            u = _own(u)
            diffs = {n: np.diff(np.asarray(u[n], np.float64), axis=0) for n in stage.control_names}
            dh -= stage.lam1 / stage.h**2 * float(np.sum(step_norms_squared(
                diffs, stage.control_names)))
        out[j] = dh / stage.n_steps
    return out


def switch_hamiltonians(problem, controls, states=None, costates=None):
    """The Hamiltonian per unit time on both sides of every switch: at the last step of
    stage j and at the first of stage j + 1 (:func:`stage_hamiltonians`).

    Returns
    -------
    ndarray, shape (n_stages - 1, 2)
        ``[Hbar^{(j)}_{K_j - 1}, Hbar^{(j+1)}_0]`` per switch; their difference is the jump
        of the Hamiltonian at the switching time ``problem.switch_times[j]``.
    """
    if not is_staged(problem):
        raise TypeError(f"problem must be a staged pmp.Problem (with stages), got "
                        f"{type(problem).__name__}")
    hbar = stage_hamiltonians(problem, controls, states, costates)
    return np.array([[left[-1], right[0]] for left, right in zip(hbar[:-1], hbar[1:])]
                    ).reshape(-1, 2)


# ------------------------------------------------- training the durations (projections)
# a duration within ACTIVE_TOL * (the horizon) of the minimum is at the minimum
ACTIVE_TOL = 1e-12


def project_durations(durations, minimum, total=None):
    """The Euclidean projection of ``durations`` onto the durations a trainer may take.

    With ``total`` (the horizon fixed) the set is ``{T : sum_j T_j = total, T_j >= minimum}``
    and the projection is ``T_j = max(z_j - nu, minimum)`` with the one ``nu`` that makes the
    sum ``total`` (found exactly by sorting, as for the projection onto a simplex); without
    it (the horizon free) the set is ``{T_j >= minimum}`` and the projection a clip
    (docs/theory.md section 13).

    Parameters
    ----------
    durations : array_like, shape (S,)
        The point to project (any reals).
    minimum : float
        The least duration, >= 0.
    total : float, optional
        The horizon ``sum_j T_j``, >= ``S * minimum``.

    Returns
    -------
    ndarray, shape (S,), float64
        The nearest point of the set in the Euclidean norm.
    """
    z = np.asarray(durations, np.float64).ravel()
    minimum = float(minimum)
    if total is None:
        return np.maximum(z, minimum)
    if total < z.size * minimum:
        raise ValueError(f"total must be >= {z.size} * minimum = {z.size * minimum:g} (every "
                         f"duration at least minimum), got {total:g}")
    if np.all(z >= minimum) and abs(np.sum(z) - total) <= 8 * np.finfo(float).eps * total:
        return z.copy()  # feasible to rounding: kept as it is (a projection is idempotent)
    return _project_sum(z, np.full(z.size, minimum), float(total))


def _project_sum(z, lower, total):
    """``argmin |y - z|`` subject to ``y >= lower`` (entries may be -inf) and
    ``sum y = total``: ``y = max(z - nu, lower)``. ``nu`` is that of the n largest
    breakpoints ``z - lower`` left free, n the largest count whose own ``nu`` keeps them
    free."""
    if np.all(np.isfinite(lower)) and np.sum(lower) >= total:
        return lower.copy()  # the set is one point (validated: sum(lower) <= total)
    order = np.argsort(lower - z, kind="stable")  # breakpoints z - lower, largest first
    zs, ls = z[order], lower[order]
    breaks = zs - ls
    tail = np.concatenate([np.cumsum(ls[::-1])[::-1][1:], [0.0]])  # sum of ls after n
    n = np.arange(1, z.size + 1)
    with np.errstate(invalid="ignore"):
        nus = (np.cumsum(zs) + tail - total) / n
        free = breaks > nus
    nu = nus[np.flatnonzero(free)[-1]]
    return np.maximum(z - nu, lower)


def projected_duration_gradient(gradient, durations, minimum, fixed_horizon=True):
    """``dJ/dT`` projected on the directions the durations may move in: minus the
    projection of ``-gradient`` onto the tangent cone of the set of
    :func:`project_durations` at ``durations``,
    ``{d : sum d = 0 (fixed horizon), d_j >= 0 where T_j = minimum}``.

    It is zero exactly at a stationary (KKT) point of J over the durations; with no
    duration at its minimum and the horizon fixed it is ``g - mean(g)``.

    Parameters
    ----------
    gradient : array_like, shape (S,)
        ``dJ/dT_j`` (:func:`duration_gradient`).
    durations : array_like, shape (S,)
        A point of the set.
    minimum : float
    fixed_horizon : bool

    Returns
    -------
    ndarray, shape (S,)
        Its negative is the steepest feasible descent direction.
    """
    g = np.asarray(gradient, np.float64).ravel()
    T = np.asarray(durations, np.float64).ravel()
    active = T <= minimum + ACTIVE_TOL * np.sum(T)
    if not fixed_horizon:
        return np.where(active, np.minimum(g, 0.0), g)
    lower = np.where(active, 0.0, -np.inf)
    return -_project_sum(-g, lower, 0.0)
