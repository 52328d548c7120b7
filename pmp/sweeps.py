"""Forward and backward sweeps, the exact gradient and the cost of the discrete problem.

Conventions (docs/theory.md section 3): the costate is minus the derivative of the cost,
``p_k = -dJ/dX_k``, with ``p_K = -terminal grad Phi(X_K)``; the gradient of J with respect
to the control at step k is ``-grad_u H_k(X_k, p_{k+1}, u_k)`` plus the regulariser's. The
Riesz (L^2(0, T)) gradient is that divided by h (:func:`riesz_gradient`).
"""
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

import numpy as np

from ._controls import step_norms_squared
from ._kernels import lazy
from ._validation import finite_array, integer
from .problem import check_problem
from .threads import map_blocks, row_blocks

_ro = lazy("readout")
_sw = lazy("sweeps")


# -------------------------------------------------------------- buffers and row blocks
def buffer(buffers, name, shape, dtype):
    """``buffers[name]`` if it has this shape and dtype, else a new array stored there
    (``buffers`` None: a new array). Reusing the trajectories' buffers between iterations
    saves faulting in fresh pages of a large allocation at every sweep."""
    if buffers is None:
        return np.empty(shape, dtype=dtype)
    arr = buffers.get(name)
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        arr = buffers[name] = np.empty(shape, dtype=dtype)
    return arr


def _activation_store(field, xs, keep, buffers=None):
    """The array a sweep keeps activations in: (K, N, d) when ``keep`` and the field can
    reuse them (:attr:`pmp.fields.Field.stores_activations`), else (1, N, d) scratch."""
    K, n, d = xs.shape[0] - 1, xs.shape[1], xs.shape[2]
    shape = (K if keep and field.stores_activations else 1, n, d)
    return buffer(buffers, "activations", shape, xs.dtype)


def row_step_work(dim):
    """The work of one row and one step of a sweep (forward and costates) in the units of
    :data:`pmp.threads.MIN_BLOCK_WORK`: ``d^2 + 2 d + 60``, fitted to the gradient's time
    at d = 3, 16 and 64 (the constant is the per-row cost of the activation and the
    bookkeeping that small states do not amortise)."""
    return dim * dim + 2 * dim + 60


def _row_blocks(problem):
    """The row blocks of every sweep of ``problem`` (the same for all its sweeps: the
    segmented gradient and a candidate's kept activations rely on it)."""
    return row_blocks(problem.n_samples, problem.n_steps * row_step_work(problem.dim))


def _run_forward(field, xs, controls, h, store, bounds, final_only=False):
    """Fill ``xs[1:]`` from ``xs[0]``, one row block per thread (``bounds``, see
    :func:`_row_blocks`)."""
    h = xs.dtype.type(h)  # float32 sweeps stay in float32 arithmetic
    map_blocks(lambda r0, r1, i: field.forward_rows(xs, controls, h, store, r0, r1, final_only),
               bounds)


def _run_backward(field, xs, ps, controls, h, readout, grads, gP, store, bounds, forward=False,
                  statistics=None, block_gP=None):
    """Fill ``ps`` and ``grads`` (Hamiltonian part) over the row blocks ``bounds``; return
    ``(Phi(X_K), sum_{k<K} Phi(X_k))``.

    ``ps`` is (K + 1, N, d), or (2, N, d) for two rolling slots. ``store`` holds the forward
    sweep's activations (reused, and may be overwritten) or is None. Each block sums its
    gradient in its own arrays and the blocks' sums are added in a fixed order, so a given
    thread count gives bitwise-reproducible results.

    ``forward=True`` runs the forward sweep first, block by block (``xs[0]`` set): a block's
    costates depend on its own rows only, so each thread runs both sweeps on its rows
    without waiting for the others. ``statistics`` (see
    :meth:`pmp.fields.Field.maximize_statistics`) receives the maximiser's sums over all
    rows. ``block_gP``, one array per row block, receives the blocks' readout gradients
    instead of ``gP``; the caller adds them up (a sweep in segments keeps
    them across its calls, so that its sum is the unsegmented one bit for bit).
    """
    stored = store is not None and store.shape[0] == xs.shape[0] - 1 \
        and field.stores_activations
    if store is None:
        store = _activation_store(field, xs, False)
    h = xs.dtype.type(h)
    n = xs.shape[1]
    own_gP = block_gP is None
    if own_gP:
        block_gP = [gP] + [np.zeros_like(gP) for _ in bounds[2:]]
    outputs = [(grads, block_gP[0])] + [({k: np.empty_like(v) for k, v in grads.items()},
                                         block_gP[i]) for i in range(1, len(bounds) - 1)]
    block_statistics = [statistics] + [tuple(np.empty_like(a) for a in statistics)
                                       for _ in bounds[2:]] if statistics else None
    # with stored activations the costate sweep reads no state but X_K, unless a running
    # cost needs them all
    final_only = stored and readout[5] == 0.0

    def block(r0, r1, i):
        if forward:
            field.forward_rows(xs, controls, h, store, r0, r1, final_only)
        weight = (r1 - r0) / n  # Phi is a mean over all rows: weigh the block's mean
        code, param, P, y, terminal, running, at_end = readout
        rows = (code, param, P, y[r0:r1], terminal * weight, running * weight, at_end)
        sums = None if statistics is None else block_statistics[i]
        phi, run = field.backward_rows(xs, ps, controls, h, rows, *outputs[i], store, stored,
                                       r0, r1, sums)
        return weight * phi, weight * run

    parts = map_blocks(block, bounds)
    _add_blocks(grads, gP if own_gP else None, statistics, outputs, block_gP,
                block_statistics)
    return (sum(p[0] for p in parts), sum(p[1] for p in parts)) if len(parts) > 1 \
        else parts[0]


def _add_blocks(grads, gP, statistics, outputs, block_gP, block_statistics):
    """Add the sums of the row blocks after the first to the first's, in block order."""
    for block_grads, _ in outputs[1:]:
        for name in grads:
            grads[name] += block_grads[name]
    if gP is not None:
        for part in block_gP[1:]:
            gP += part
    for sums in (block_statistics or [])[1:]:
        for total, part in zip(statistics, sums):
            total += part


def _prepare(problem, controls, validate):
    check_problem(problem)
    return problem.validate_controls(controls) if validate else controls


def _P(problem, controls):
    return controls["P"] if problem.trainable_readout else problem.P


def forward(problem, controls, *, validate=True):
    """States over the whole grid.

    Parameters
    ----------
    problem : Problem
    controls : dict
        name -> array of shape ``problem.control_shapes[name]``.

    Returns
    -------
    xs : ndarray, shape (n_steps + 1, n_samples, dim)
        ``xs[k]`` = states at ``t_k``; ``xs[0] = problem.x``.
    """
    controls = _prepare(problem, controls, validate)
    return _forward(problem, controls)[0]


def _forward(problem, controls, store=False, workspace=None, run=True, activations=None,
             final_only=False, x0=None):
    """States and the activation store (kept for the backward sweep when ``store``);
    ``run=False``: ``xs[0]`` set, the sweep left to the caller. The store's buffer comes
    from ``activations`` (a workspace dict) if given, else from ``workspace``.
    ``final_only``: only ``xs[0]`` and ``xs[K]`` need be valid. ``x0``: the initial states
    (default ``problem.x``; a stage of a staged problem starts where the previous ends)."""
    xs = buffer(workspace, "states", (problem.n_steps + 1, problem.n_samples, problem.dim),
                problem.dtype)
    xs[0] = problem.x if x0 is None else x0
    kept = _activation_store(problem.field, xs, store,
                             workspace if activations is None else activations)
    if run:
        _run_forward(problem.field, xs, controls, problem.h, kept, _row_blocks(problem),
                     final_only)
    return xs, kept


def _backward(problem, controls, xs, store=None, costates=True, workspace=None,
              forward=False, statistics=None, p_end=None):
    """Costates (``costates=False``: the last two slots only), full gradient dict and
    (Phi(X_K), sum_{k<K} Phi(X_k)); ``forward``: run the forward sweep first, in the same
    row blocks; ``statistics``: filled for the maximiser (see :func:`_run_backward`).
    ``p_end``: the last costate ``p_K`` (N, d) instead of the terminal loss's (a stage that
    a transition follows; Phi(X_K) is then 0)."""
    grads = {n: np.empty(problem.control_shapes[n], dtype=problem.dtype)
             for n in problem.control_names}
    P = _P(problem, controls)
    gP = np.zeros((P.shape[0] if problem.trainable_readout else 0, problem.dim),
                  dtype=problem.dtype)
    ps = buffer(workspace, "costates", (xs.shape[0] if costates else 2,) + xs.shape[1:],
                xs.dtype)
    if p_end is not None:  # the kernels read p_K in slot K % len(ps)
        ps[(xs.shape[0] - 1) % ps.shape[0]] = p_end
    phi, run = _run_backward(problem.field, xs, ps, controls, problem.h,
                             problem.readout_with(P, p_end is None), grads, gP, store,
                             _row_blocks(problem), forward, statistics)
    _finish_gradient(problem, controls, grads, gP)
    return ps, grads, (phi, run)


def _finish_gradient(problem, controls, grads, gP):
    """Add the regulariser's gradient, the readout's and zero the frozen entries."""
    problem.reg.add_grad(controls, problem.control_names, problem.h, grads)
    if problem.trainable_readout:
        grads["P"] = gP
    for name, mask in problem.frozen.items():
        grads[name][mask] = 0.0


def backward(problem, controls, states=None, *, validate=True):
    """Costates over the whole grid.

    Parameters
    ----------
    problem : Problem
    controls : dict
    states : ndarray, shape (n_steps + 1, n_samples, dim), optional
        Output of :func:`forward` for these controls (computed when omitted).

    Returns
    -------
    ps : ndarray, shape (n_steps + 1, n_samples, dim)
        ``p_K = -terminal grad Phi(X_K)``, ``p_k = grad_X H_k(X_k, p_{k+1}, u_k)``. The
        batch costate: it carries the 1/N of Phi.
    """
    controls = _prepare(problem, controls, validate)
    if states is None:
        states = forward(problem, controls, validate=False)
    return _backward(problem, controls, _trajectory(problem, states, "states"))[0]


def _trajectory(problem, arr, name, n_steps=None):
    """``arr`` as a finite, C-contiguous (n_steps + 1, n_samples, dim) array of the problem's
    dtype."""
    shape = ((problem.n_steps if n_steps is None else n_steps) + 1, problem.n_samples,
             problem.dim)
    arr = finite_array(arr, name, dtype=problem.dtype)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def _total(problem, controls, phi, run):
    reg = problem.reg.value(controls, problem.control_names, problem.h)
    terminal = problem.terminal * phi
    running = problem.h * problem.running * run
    return {"total": terminal + running + reg, "terminal": terminal, "running": running,
            "regularization": reg, "loss": phi}


def evaluate(problem, controls, *, states=None, validate=True):
    """Cost parts, gradient, states and costates in one forward and one backward sweep.

    ``states``, when given, are the output of :func:`forward` for these controls (the
    forward sweep is then skipped).

    Returns
    -------
    parts : dict
        See :func:`cost`.
    grads : dict
        name -> dJ/du (same shapes as the controls).
    xs, ps : ndarray, shape (n_steps + 1, n_samples, dim)
    """
    controls = _prepare(problem, controls, validate)
    xs = (_forward(problem, controls)[0] if states is None
          else _trajectory(problem, states, "states"))
    ps, grads, (phi, run) = _backward(problem, controls, xs)
    return _total(problem, controls, phi, run), grads, xs, ps


def value_and_grad(problem, controls, *, segment=None, workspace=None, validate=True):
    """The discrete cost J and its exact gradient.

    Parameters
    ----------
    problem : Problem
    controls : dict
    segment : int, optional
        Store only every ``segment``-th state in the forward sweep and recompute each
        segment's states during the costate sweep: memory ``O(K / segment + segment)``
        states instead of ``O(K)`` (``segment ~ sqrt(K)`` minimises it) for one extra
        forward sweep. The gradient is identical bit for bit to the unsegmented one; J
        agrees to rounding (the running-cost sum is added segment by segment).
    workspace : dict, optional
        Pass the same (initially empty) dict to successive calls to reuse the buffers of
        the trajectories instead of allocating them each time; the trainers do. It holds
        about states + costates of memory until you drop it.

    Returns
    -------
    J : float
    grads : dict
        name -> ``dJ/du`` with the shapes of the controls (for l1 regularisers, the gradient
        of the smooth part only; frozen entries are zero).
    """
    controls = _prepare(problem, controls, validate)
    if segment is not None:
        segment = integer(segment, "segment", low=1)
    if workspace is not None and not isinstance(workspace, MutableMapping):
        raise TypeError(f"workspace must be a dict (or None), got {type(workspace).__name__}")
    parts, grads = (_segmented(problem, controls, segment, workspace)
                    if segment is not None else _gradient(problem, controls, workspace))
    return parts["total"], grads


def _gradient(problem, controls, workspace=None):
    """Cost parts and gradient, the fast way: the forward sweep keeps the activations for
    the backward sweep (where the field allows it) and only two costate slots are kept, so
    memory stays at about states + costates."""
    xs, store = _forward(problem, controls, True, workspace, run=False)
    _, grads, (phi, run) = _backward(problem, controls, xs, store, False, workspace, True)
    return _total(problem, controls, phi, run), grads


def _segmented(problem, controls, segment, workspace=None):
    """Cost parts and gradient with states stored every ``segment`` steps (checkpointing in
    time); one Python iteration per segment, the steps stay in the kernels."""
    if segment < 1:
        raise ValueError(f"segment must be an int >= 1, got {segment}")
    K, field, h = problem.n_steps, problem.field, problem.h
    bounds = list(range(0, K, segment)) + [K]
    names = problem.control_names
    shape = (problem.n_samples, problem.dim)
    boundary = buffer(workspace, "boundary", (len(bounds), *shape), problem.dtype)
    states = buffer(workspace, "states", (segment + 1, *shape), problem.dtype)
    kept = _activation_store(field, states, True, workspace)
    scratch = _activation_store(field, states, False)
    boundary[0] = problem.x
    row_bounds = _row_blocks(problem)
    for j in range(len(bounds) - 1):  # forward: keep the boundary states only
        k0, k1 = bounds[j], bounds[j + 1]
        xs = states[:k1 - k0 + 1]
        xs[0] = boundary[j]
        _run_forward(field, xs, {n: controls[n][k0:k1] for n in names}, h, scratch, row_bounds)
        boundary[j + 1] = xs[-1]
    grads = {n: np.empty(problem.control_shapes[n], dtype=problem.dtype) for n in names}
    P = _P(problem, controls)
    gP = np.zeros((P.shape[0] if problem.trainable_readout else 0, problem.dim),
                  dtype=problem.dtype)
    # two rolling costate slots (the kernels index them by step % 2)
    ps = buffer(workspace, "costates", (2, *shape), problem.dtype)
    block_gP = [np.zeros_like(gP) for _ in row_bounds[1:]]
    phi, run = 0.0, 0.0
    for j in range(len(bounds) - 2, -1, -1):  # backward, recomputing each segment
        k0, k1 = bounds[j], bounds[j + 1]
        xs, store = states[:k1 - k0 + 1], kept[:k1 - k0]
        xs[0] = boundary[j]
        at_end = j == len(bounds) - 2
        if not at_end and (k1 - k0) % 2:  # p_{k1}, left in slot 0, starts this segment
            ps[1] = ps[0]
        # each thread recomputes its rows' states and runs their costates right after,
        # while they are in cache (one dispatch per segment, not two)
        seg_phi, seg_run = _run_backward(field, xs, ps, {n: controls[n][k0:k1] for n in names},
                                         h, problem.readout_with(P, at_end),
                                         {n: grads[n][k0:k1] for n in names}, gP, store,
                                         row_bounds, forward=True, block_gP=block_gP)
        phi = seg_phi if at_end else phi
        run += seg_run
    for part in block_gP:  # in the unsegmented order: block by block, each over all steps
        gP += part
    _finish_gradient(problem, controls, grads, gP)
    return _total(problem, controls, phi, run), grads


# --------------------------------------------------------------- the execution engine
@dataclass(frozen=True)
class Need:
    """What an :class:`Engine` sweep must produce besides the cost and the gradient.

    Attributes
    ----------
    trajectories : bool
        Every state and costate (True), or only what the maximiser's sums need (False): the
        states at the first and last step and two rolling costate slots, both sweeps run in
        one pass of the row blocks.
    statistics : bool
        The per-step sums the field's costate sweep can hand the maximiser
        (:meth:`pmp.fields.Field.maximize_statistics`), where it has them.
    """

    trajectories: bool = True
    statistics: bool = True


@dataclass
class Sweep:
    """The result of :meth:`Engine.sweep`: cost parts, gradient, trajectories and sums.

    ``xs`` and ``ps`` live in the engine's buffers: valid until the next call of
    :meth:`Engine.sweep` (a :meth:`Engine.candidate` in between leaves them valid)."""

    parts: dict
    grads: dict
    xs: np.ndarray
    ps: np.ndarray
    statistics: tuple | None


@dataclass
class Candidate:
    """The cost and states of a candidate control (:meth:`Engine.candidate`); pass it to
    :meth:`Engine.sweep` to accept it without a second forward sweep."""

    parts: dict
    xs: np.ndarray
    _store: np.ndarray
    _blocks: list
    _current: bool = True  # False once the engine reuses its buffers


class Engine:
    """Runs the sweeps of one training run (its problem and mini-batches) and keeps their
    buffers between iterations: the gradient's, and the trajectories of the current
    iterate and of a candidate, swapped when the candidate is accepted.

    The methods ask for what they need (:meth:`gradient`, :meth:`sweep` with a
    :class:`Need`, :meth:`candidate`); which arrays are kept, in which buffers, and whether
    a forward sweep can be skipped is decided here.
    """

    def __init__(self):
        self._gradient_buffers = {}
        self._trajectories, self._spare = ({}, {}), 1
        self._activations = {}
        self._candidate = None

    def gradient(self, problem, controls, segment=None):
        """Cost parts and gradient (states kept every ``segment`` steps when given)."""
        if segment is None:
            return _gradient(problem, controls, self._gradient_buffers)
        return _segmented(problem, controls, segment, self._gradient_buffers)

    def sweep(self, problem, controls, need=Need(), candidate=None):
        """A forward and a costate sweep at ``controls`` (the forward sweep is skipped for
        the accepted ``candidate`` of these controls); returns a :class:`Sweep`."""
        buffers = self._trajectories[self._spare]
        reuse = self._usable(candidate, problem)
        if candidate is not None and not (reuse or need.trajectories):
            candidate = None  # its states without its activations may be incomplete
        fused = candidate is None and not need.trajectories
        if candidate is None:
            xs, kept = _forward(problem, controls, True, buffers,
                                activations=self._activations, run=not fused)
        else:
            xs, kept = candidate.xs, (candidate._store if reuse else None)
        self._release()  # the costate sweep may overwrite the activations
        shapes = problem.field.maximize_statistics(problem.n_steps) if need.statistics \
            else None
        statistics = None if shapes is None else \
            tuple(np.empty(shape, problem.dtype) for shape in shapes)
        ps, grads, (phi, run) = _backward(problem, controls, xs, kept, need.trajectories,
                                          buffers, forward=fused, statistics=statistics)
        self._spare = 1 - self._spare
        return Sweep(_total(problem, controls, phi, run), grads, xs, ps, statistics)

    def candidate(self, problem, controls, need=Need()):
        """The cost of ``controls`` (one forward sweep, into the spare buffers: the current
        trajectories stay valid); returns a :class:`Candidate`."""
        self._release()
        final_only = not need.trajectories and problem.running == 0.0  # else the cost reads all
        xs, kept = _forward(problem, controls, True, self._trajectories[self._spare],
                            activations=self._activations, final_only=final_only)
        self._candidate = Candidate(_cost_of_states(problem, controls, xs), xs, kept,
                                    _row_blocks(problem))
        return self._candidate

    def _usable(self, candidate, problem):
        """Whether the candidate's activations serve the costate sweep: it is the latest,
        and their layout (which follows the row blocks) still fits."""
        if candidate is None:
            return False
        if not candidate._current:
            raise ValueError("this candidate's buffers were reused by a later sweep; "
                             "accept a candidate before computing another")
        return candidate._blocks == _row_blocks(problem)

    def _release(self):
        if self._candidate is not None:
            self._candidate._current = False
            self._candidate = None


def losses_along(problem, states, controls=None):
    """Training error ``Phi(X_k)`` at every step; ``states`` (K + 1, N, d) -> (K + 1,).

    ``controls`` is needed only for a trainable readout (its "P")."""
    check_problem(problem)
    states = finite_array(states, "states", ndim=3, dtype=problem.dtype)
    states = _trajectory(problem, states, "states", n_steps=states.shape[0] - 1)
    P = problem.P if controls is None else _P(problem, problem.validate_controls(controls))
    return losses_with(problem, states, P)


def losses_with(problem, states, P):
    out = np.empty(states.shape[0])
    z = np.empty((states.shape[1], P.shape[0]), dtype=states.dtype)
    _ro.losses_along(problem.loss_code, problem.p, states, P, problem.y_kernel, out, z)
    return out


def cost(problem, controls, *, validate=True):
    """The parts of the discrete cost (one forward sweep).

    Returns
    -------
    dict
        "terminal" ``terminal * Phi(X_K)``, "running" ``h running sum_{k<K} Phi(X_k)``,
        "regularization" ``h sum_k R(u_k)`` (+ the H^1 term), "total" their sum, and
        "loss" the training error ``Phi(X_K)``.
    """
    return cost_and_states(problem, controls, validate=validate)[0]


def cost_and_states(problem, controls, *, validate=True):
    """:func:`cost` and the states of the forward sweep.

    Returns
    -------
    parts : dict
        As :func:`cost`.
    xs : ndarray, shape (n_steps + 1, n_samples, dim)
    """
    controls = _prepare(problem, controls, validate)
    xs = _forward(problem, controls)[0]
    return _cost_of_states(problem, controls, xs), xs


def _cost_of_states(problem, controls, xs):
    """Cost parts from the states of the forward sweep."""
    P = _P(problem, controls)
    if problem.running != 0.0:
        phis = losses_with(problem, xs, P)
        phi, run = phis[-1], float(np.sum(phis[:-1]))
    else:
        phi, run = losses_with(problem, xs[-1:], P)[0], 0.0
    return _total(problem, controls, float(phi), run)


def hamiltonian(problem, controls, states, costates):
    """Per-step Hamiltonian ``H_k(X_k, p_{k+1}, u_k)``, shape (n_steps,).

    ``states`` must be the forward sweep of these ``controls``: ``X_k + h F(X_k, u_k)`` is
    read as the stored ``X_{k+1}``. To evaluate ``H_k`` at another control, use
    :class:`pmp.maximize.Maximizer` (its gains) or a one-step problem started at ``X_k``.
    """
    check_problem(problem)
    controls = problem.validate_controls(controls)
    states = _trajectory(problem, states, "states")
    costates = _trajectory(problem, costates, "costates")
    phis = (losses_with(problem, states, _P(problem, controls)) if problem.running != 0.0
            else np.zeros(states.shape[0]))
    reg_values = problem.reg.step_values(controls, problem.control_names)
    return _sw.hamiltonians(states, costates, phis, np.asarray(reg_values, float), problem.h,
                            problem.running)


def riesz_gradient(problem, grads):
    """The L^2(0, T) (Riesz) gradient: ``dJ/du_k / h`` (a trainable P is left as is)."""
    check_problem(problem)
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a mapping name -> array, got {type(grads).__name__}")
    return {n: g / problem.riesz_weight(n) for n, g in grads.items()}


def grad_norm(problem, riesz):
    """``max_k |g_k|`` over the steps (all arrays of a step together), and ``|g_P|``."""
    check_problem(problem)
    if not isinstance(riesz, Mapping):
        raise TypeError(f"riesz must be a mapping name -> array, got {type(riesz).__name__}")
    missing = [n for n in problem.control_names if n not in riesz]
    if missing:
        raise ValueError(f"riesz must hold the controls {list(problem.control_names)}, "
                         f"missing {missing}")
    norm = float(np.max(np.sqrt(step_norms_squared(riesz, problem.control_names))))
    if "P" in riesz:
        norm = max(norm, float(np.linalg.norm(riesz["P"])))
    return norm
