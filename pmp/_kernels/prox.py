"""What the maximisers of the fields linear in the control (:mod:`.maximize_linear`) and of
the diagonal field (:mod:`.maximize_diagonal`) share: the regulariser codes, the prox of the
l1 terms with their bound, the switching function and one step of FISTA."""
import math

from ._jit import jit

from .codes import L1_ELEMENTWISE, L1_GROUP


@jit
def vdot(a, b):
    """``sum_rc a_rc b_rc`` of two 2-D arrays."""
    acc = 0.0
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            acc += a[r, c] * b[r, c]
    return acc


@jit
def soft_clip(v, t, m, bound):
    """``sign(v) min(max(|v| - t, 0) / m, bound)``: the maximiser of
    ``v w - t |w| - (m/2) w^2`` over ``|w| <= bound``; with ``m = 1`` the prox of ``t |.|``
    at ``v``, clipped to the box (division by 1 is exact)."""
    return math.copysign(min(max(abs(v) - t, 0.0) / m, bound), v)


@jit
def prox(kind, v, t, bound, free, U_old, out):
    """Prox of ``t |.|`` (group or elementwise) with the ball / box of radius ``bound``."""
    if kind == L1_GROUP:
        norm = math.sqrt(vdot(v, v))
        target = min(bound, max(0.0, norm - t))
        scale = target / norm if norm > 0.0 else 0.0
        for r in range(v.shape[0]):
            for c in range(v.shape[1]):
                out[r, c] = scale * v[r, c]
    else:
        for r in range(v.shape[0]):
            for c in range(v.shape[1]):
                out[r, c] = soft_clip(v[r, c], t, 1.0, bound)
    for r in range(v.shape[0]):
        for c in range(v.shape[1]):
            if not free[r, c]:
                out[r, c] = U_old[r, c]


@jit
def switching(reg, G, free):
    """``|G|`` over the free entries (max |G_j| for the elementwise l1)."""
    acc = 0.0
    for r in range(G.shape[0]):
        for c in range(G.shape[1]):
            if free[r, c]:
                acc = max(acc, abs(G[r, c])) if reg == L1_ELEMENTWISE else acc + G[r, c] ** 2
    return acc if reg == L1_ELEMENTWISE else math.sqrt(acc)


@jit
def fista_step(l1, L, t, tol, scale, free, U_old, iterate):
    """One step of FISTA on ``f(U) + lam r(U)`` over the ball / box, ``f`` smooth with the
    Lipschitz constant ``L`` of its gradient, ``l1 = (reg, lam, bound)``.

    ``iterate = (x, y, grad, trial, x_prev)``, 2-D arrays: the iterate, the extrapolated
    point, the gradient of ``f`` at ``y`` (the caller's) and two scratch arrays. Sets
    ``x = prox(y - grad / L)`` (frozen entries at ``U_old``) and, unless the prox residual
    ``L |x - y|`` is at most ``tol * scale``, the next ``y``. Returns (residual, the next
    ``t``, whether converged).
    """
    reg, lam, bound = l1
    x, y, grad, trial, x_prev = iterate
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            trial[r, c] = y[r, c] - grad[r, c] / L
    x_prev[:, :] = x
    prox(reg, trial, lam / L, bound, free, U_old, x)
    step = 0.0
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            step += (x[r, c] - y[r, c]) ** 2
    resid = L * math.sqrt(step)
    if resid <= tol * scale:
        return resid, t, True
    t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            y[r, c] = x[r, c] + (t - 1.0) / t_next * (x[r, c] - x_prev[r, c])
    return resid, t_next, False
