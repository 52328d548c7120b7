"""Forward and backward sweeps, the exact gradient and the cost of the discrete problem.

Conventions (THEORY.md section 3): the costate is minus the derivative of the cost,
``p_k = -dJ/dX_k``, with ``p_K = -terminal grad Phi(X_K)``; the gradient of J with respect
to the control at step k is ``-grad_u H_k(X_k, p_{k+1}, u_k)`` plus the regulariser's. The
Riesz (L^2(0, T)) gradient is that divided by h (:func:`riesz_gradient`).
"""
import numpy as np

from ._kernels import readout as _ro
from ._kernels import sweeps as _sw
from .fields import buffer
from .threads import row_blocks


def _prepare(problem, controls, validate):
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
             final_only=False):
    """States and the activation store (kept for the backward sweep when ``store``);
    ``run=False``: ``xs[0]`` set, the sweep left to the caller. The store's buffer comes
    from ``activations`` (a workspace dict) if given, else from ``workspace``.
    ``final_only``: only ``xs[0]`` and ``xs[K]`` need be valid."""
    xs = buffer(workspace, "states", (problem.n_steps + 1, problem.n_samples, problem.dim),
                problem.dtype)
    xs[0] = problem.x
    kept = problem.field.activation_store(xs, store,
                                          workspace if activations is None else activations)
    if run:
        problem.field.forward(xs, controls, problem.h, kept, final_only)
    return xs, kept


def _backward(problem, controls, xs, store=None, costates=True, workspace=None,
              forward=False, statistics=None):
    """Costates (``costates=False``: the last two slots only), full gradient dict and
    (Phi(X_K), sum_{k<K} Phi(X_k)); ``forward``: run the forward sweep first, in the same
    row blocks; ``statistics``: filled for the maximiser (see
    :meth:`pmp.fields.Field.backward`)."""
    grads = {n: np.empty(problem.control_shapes[n], dtype=problem.dtype)
             for n in problem.control_names}
    P = _P(problem, controls)
    gP = np.zeros((P.shape[0] if problem.trainable_readout else 0, problem.dim),
                  dtype=problem.dtype)
    ps = buffer(workspace, "costates", (xs.shape[0] if costates else 2,) + xs.shape[1:],
                xs.dtype)
    phi, run = problem.field.backward(xs, ps, controls, problem.h, problem.readout_with(P),
                                      grads, gP, store, forward, statistics)
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
    """``arr`` as a C-contiguous (n_steps + 1, n_samples, dim) array of the problem's dtype."""
    arr = np.asarray(arr)
    shape = ((problem.n_steps if n_steps is None else n_steps) + 1, problem.n_samples,
             problem.dim)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=problem.dtype)


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
    parts, grads = (_segmented(problem, controls, int(segment), workspace)
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
    kept = field.activation_store(states, True, workspace)
    boundary[0] = problem.x
    for j in range(len(bounds) - 1):  # forward: keep the boundary states only
        k0, k1 = bounds[j], bounds[j + 1]
        xs = states[:k1 - k0 + 1]
        xs[0] = boundary[j]
        field.forward(xs, {n: controls[n][k0:k1] for n in names}, h)
        boundary[j + 1] = xs[-1]
    grads = {n: np.empty(problem.control_shapes[n], dtype=problem.dtype) for n in names}
    P = _P(problem, controls)
    gP = np.zeros((P.shape[0] if problem.trainable_readout else 0, problem.dim),
                  dtype=problem.dtype)
    # two rolling costate slots (the kernels index them by step % 2)
    ps = buffer(workspace, "costates", (2, *shape), problem.dtype)
    block_gP = [np.zeros_like(gP) for _ in row_blocks(problem.n_samples)[1:]]
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
        seg_phi, seg_run = field.backward(xs, ps, {n: controls[n][k0:k1] for n in names}, h,
                                          problem.readout_with(P, at_end),
                                          {n: grads[n][k0:k1] for n in names}, gP, store,
                                          forward=True, block_gP=block_gP)
        phi = seg_phi if at_end else phi
        run += seg_run
    for part in block_gP:  # in the unsegmented order: block by block, each over all steps
        gP += part
    _finish_gradient(problem, controls, grads, gP)
    return _total(problem, controls, phi, run), grads


def losses_along(problem, states, controls=None):
    """Training error ``Phi(X_k)`` at every step; ``states`` (K + 1, N, d) -> (K + 1,).

    ``controls`` is needed only for a trainable readout (its "P")."""
    states = _trajectory(problem, states, "states", n_steps=np.shape(states)[0] - 1)
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
    return {n: g / problem.riesz_weight(n) for n, g in grads.items()}


def grad_norm(problem, riesz):
    """``max_k |g_k|`` over the steps (all arrays of a step together), and ``|g_P|``."""
    step = np.sqrt(sum(np.sum(riesz[n].reshape(problem.n_steps, -1) ** 2, axis=1)
                       for n in problem.control_names))
    norm = float(np.max(step))
    if "P" in riesz:
        norm = max(norm, float(np.linalg.norm(riesz["P"])))
    return norm
