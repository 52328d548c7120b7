"""FISTA with the proximal map of the regulariser (for l1 and box constraints)."""
import numpy as np

from .._controls import axpy, lincomb
from .._validation import boolean, real
from .base import Method, Point


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
        reg, names = problem.reg, problem.control_names

        def smooth(parts):
            return parts["total"] - (0.0 if reg.smooth else parts["regularization"])

        def prox_step(y, g, step):
            out = reg.prox(axpy(-step, g, y), names, step)
            for name, mask in problem.frozen.items():
                out[name] = np.where(mask, y[name], out[name])
            return out

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
            y, g, f_y = y_point.controls, y_point.riesz, smooth(y_point.parts)
            while True:
                step = 1.0 / L
                new = prox_step(y, g, step)
                parts = oracle.value(new)
                if self.lr is not None or not np.isfinite(parts["total"]):
                    break
                diff = {n: new[n] - y[n] for n in y}
                bound = f_y + inner(g, diff) + 0.5 * L * inner(diff, diff)
                if smooth(parts) <= bound + 1e-12 * abs(bound):
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
