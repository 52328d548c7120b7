"""FISTA with the proximal map of the regulariser (for l1 and box constraints).

A staged problem (:mod:`pmp.stages`) is trained with each stage's own regulariser: the prox
of every stage's regulariser on its controls with its own ``lam`` (and ``bound``), the
smooth part of J without the l1 stages' regularisation; a trainable transition's
``enter_lam |A|^2`` is smooth, in the gradient (its prox is the identity).
"""
import numpy as np

from .._controls import axpy, lincomb
from .._validation import boolean, real
from ..stages import is_staged
from .base import Method, Point
from .staged import stage_values, stagewise


def _stage_prox(problem, y, z, step):
    """The prox of ``step * R`` of an unstaged problem at ``z``, its frozen entries kept at
    their values in ``y``."""
    out = problem.reg.prox(z, problem.control_names, step)
    for name, mask in problem.frozen.items():
        out[name] = np.where(mask, y[name], out[name])
    return out


def _rough(problem, controls):
    """The non-differentiable regularisation of an unstaged problem (0 if smooth)."""
    if problem.reg.smooth:
        return 0.0
    return problem.reg.value(controls, problem.control_names, problem.h)


def _regulariser(problem):
    """``(smooth, prox)``: ``smooth(parts, controls)`` is J without its non-differentiable
    regularisation, ``prox(y, z, step)`` the regulariser's proximal map at ``z`` (frozen
    entries keep their values in ``y``); stage by stage for a staged problem."""
    if not is_staged(problem):
        def smooth(parts, controls):
            return parts["total"] - (0.0 if problem.reg.smooth else parts["regularization"])

        return smooth, lambda y, z, step: _stage_prox(problem, y, z, step)

    def staged_smooth(parts, controls):
        return parts["total"] - sum(stage_values(problem, _rough, controls))

    def staged_prox(y, z, step):
        out = dict(z)  # a trainable transition: its smooth regulariser is in the gradient
        out.update(stagewise(problem, lambda stage, ys, zs: _stage_prox(stage, ys, zs, step),
                             y, z))
        return out

    return staged_smooth, staged_prox


class Proximal(Method):
    """FISTA (Beck & Teboulle) with the regulariser's proximal map and adaptive restart.

    The smooth part is ``J - h sum_k R(u_k)`` for l1 regularisers and all of J otherwise.
    With ``lr=None`` the step ``1/L`` is found by backtracking (``L`` doubles until the
    quadratic upper bound holds, and is tried 1.5x smaller at the next iteration); a given
    ``lr`` is used as a fixed step (needed for mini-batches).
    """

    name = "proximal"
    blas_between_sweeps = True
    needs_smooth = False
    supports_stages = True  # each stage's regulariser's prox (module docstring)

    _full_batch_hint = "; give a fixed lr for mini-batches"

    @property
    def full_batch_only(self):
        """Backtracking compares costs across iterations: only on the full batch."""
        return self.lr is None

    def __init__(self, lr=None, lipschitz=1.0, restart=True):
        self.lr = None if lr is None else real(lr, "lr", low=0.0, low_open=True)
        self.lipschitz = real(lipschitz, "lipschitz", low=0.0, low_open=True)
        self.restart = boolean(restart, "restart")

    def run(self, oracle, u, state=None):
        problem = oracle.problem
        smooth, prox = _regulariser(problem)

        def prox_step(y, g, step):
            return prox(y, axpy(-step, g, y), step)

        def inner(a, b):  # the L^2(0, T) inner product
            return sum(problem.riesz_weight(n) * float(np.vdot(a[n], b[n])) for n in a)

        def mapping_norm(y, new, step):  # size of the gradient mapping (y - new) / step
            return oracle.norm({n: (y[n] - new[n]) / step for n in y})

        L = 1.0 / self.lr if self.lr is not None else self.lipschitz
        x_point = oracle.evaluate(u)
        y_point, t = x_point, 1.0
        if state:
            L, t = float(state["L"]), float(state["t"])
            y_point = oracle.evaluate(state["y"])
        x_point.grad_norm = mapping_norm(u, prox_step(u, x_point.riesz, 1.0 / L), 1.0 / L)
        while True:
            self.state = {"y": y_point.controls, "t": t, "L": L}
            yield x_point
            y, g = y_point.controls, y_point.riesz
            f_y = smooth(y_point.parts, y)
            while True:
                step = 1.0 / L
                new = prox_step(y, g, step)
                parts = oracle.value(new)
                if self.lr is not None or not np.isfinite(parts["total"]):
                    break
                diff = {n: new[n] - y[n] for n in y}
                bound = f_y + inner(g, diff) + 0.5 * L * inner(diff, diff)
                if smooth(parts, new) <= bound + 1e-12 * abs(bound):
                    break
                L *= 2.0
            gnorm = mapping_norm(y, new, step)
            if self.restart and parts["total"] > x_point.parts["total"]:
                # adaptive restart: reject the step, drop the momentum, retry from x
                t = 1.0
                y_point = x_point if x_point.riesz is not None else oracle.evaluate(
                    x_point.controls)
                x_point = Point(y_point.controls, y_point.parts, y_point.riesz, gnorm, step)
            else:
                t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
                beta = (t - 1.0) / t_next
                y_point = oracle.evaluate(lincomb((1.0 + beta, new), (-beta, x_point.controls)))
                x_point = Point(new, parts, y_point.riesz if beta == 0.0 else None, gnorm, step)
                t = t_next
            if self.lr is None:
                L /= 1.5
