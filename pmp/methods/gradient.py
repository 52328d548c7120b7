"""Gradient-family optimisers on the exact discrete gradient (docs/theory.md section 9).

Every method works in the L^2(0, T) metric: it is given the Riesz gradient
``g_k = (dJ/du_k) / h``, whose size does not depend on h, so step sizes carry over between
grids. A method is a class with its options as keyword arguments and a generator
:meth:`Method.run` that yields one :class:`Point` per iteration (iteration 0 is the
starting point); the trainer (:mod:`pmp.trainer`) decides when to stop.

=============  =====================================================================
"gd"           ``u <- u - lr g``
"heavy_ball"   ``u <- u - lr g + momentum (u - u_prev)`` (Polyak)
"nesterov"     gradient at the look-ahead point; the iterates reported are the
               look-ahead points ``u + momentum v`` (Bengio et al.'s equivalent form)
"adam"         Adam with bias correction
"lbfgs"        limited-memory BFGS with scipy's strong-Wolfe line search
               (``scipy.optimize.line_search``) on the Riesz-scaled controls
               ``sqrt(h) u``; full batch only
=============  =====================================================================

The proximal method for non-smooth regularisers is in :mod:`pmp.methods.proximal`.
"""
import warnings

import numpy as np

from .._controls import Flattener, axpy, lincomb
from .._validation import integer, real
from .base import Method


class GradientDescent(Method):
    """Gradient descent ``u <- u - lr g`` on the Riesz gradient ``g``.

    Parameters
    ----------
    lr : float
        Step size, > 0 (in units of time: the same on every grid).
    """

    name = "gd"
    supports_stages = True
    duration_update = "joint"

    def __init__(self, lr=0.1):
        self.lr = real(lr, "lr", low=0.0, low_open=True)

    def run(self, oracle, u, state=None):
        point = oracle.evaluate(u)
        self.state = {}
        while True:
            yield point
            point = oracle.evaluate(axpy(-self.lr, point.riesz, point.controls), self.lr)


class HeavyBall(Method):
    """Polyak's heavy ball (and, by inheritance, Nesterov's options).

    The default step: with ``momentum=0.9`` a step ``lr`` moves like plain gradient descent
    with ``lr / (1 - momentum) = 10 lr`` in the long run. ``lr=0.02`` (0.2 in GD terms)
    takes the README's example problem (T = 10, where the curvature of J grows like
    ``exp(2 |W| T)``) from J = 0.514 to about 0.02 in 300 iterations; with ``lr=0.1``
    Nesterov ended at 0.77, above its start, and heavy ball at 0.45.
    """

    name = "heavy_ball"
    supports_stages = True
    duration_update = "joint"

    def __init__(self, lr=0.02, momentum=0.9):
        self.lr = real(lr, "lr", low=0.0, low_open=True)
        # 1 never damps the velocity: the iterates oscillate around a minimum for any lr
        self.momentum = real(momentum, "momentum", low=0.0, high=1.0, high_open=True)

    def run(self, oracle, u, state=None):
        point, previous = oracle.evaluate(u), (state or {}).get("previous", u)
        while True:
            self.state = {"previous": previous}
            yield point
            u = point.controls
            new = lincomb((1.0, u), (-self.lr, point.riesz), (self.momentum, u),
                           (-self.momentum, previous))
            previous, point = u, oracle.evaluate(new, self.lr)


class Nesterov(HeavyBall):
    """Nesterov's accelerated gradient with a fixed momentum: the gradient is taken at the
    look-ahead point, which is also the iterate reported.

    Parameters
    ----------
    lr : float
        Step size, > 0.
    momentum : float
        Momentum factor in [0, 1).
    """

    name = "nesterov"

    def run(self, oracle, u, state=None):
        point = oracle.evaluate(u)  # the look-ahead point y = u + momentum v, with v = 0
        velocity = (state or {}).get("velocity") or {n: np.zeros_like(a) for n, a in u.items()}
        while True:
            self.state = {"velocity": velocity}
            yield point
            g = point.riesz
            velocity = lincomb((self.momentum, velocity), (-self.lr, g))
            y = lincomb((1.0, point.controls), (self.momentum, velocity), (-self.lr, g))
            point = oracle.evaluate(y, self.lr)


class Adam(Method):
    """Adam (Kingma & Ba) with bias correction, on the Riesz gradient.

    Parameters
    ----------
    lr : float
        Step size, > 0.
    beta1, beta2 : float
        Decay factors of the first and second moment averages, in [0, 1].
    eps : float
        Added to the root of the second moment, > 0.
    """

    name = "adam"
    supports_stages = True
    duration_update = "joint"

    def __init__(self, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr = real(lr, "lr", low=0.0, low_open=True)
        # 1 would zero the bias corrections 1 - beta^t (a division by zero)
        self.beta1 = real(beta1, "beta1", low=0.0, high=1.0, high_open=True)
        self.beta2 = real(beta2, "beta2", low=0.0, high=1.0, high_open=True)
        self.eps = real(eps, "eps", low=0.0, low_open=True)

    def run(self, oracle, u, state=None):
        point = oracle.evaluate(u)
        if state:
            m, v, t = state["m"], state["v"], int(state["t"])
        else:
            m = {n: np.zeros_like(a) for n, a in u.items()}
            v = {n: np.zeros_like(a) for n, a in u.items()}
            t = 0
        while True:
            self.state = {"m": m, "v": v, "t": t}
            yield point
            t += 1
            g = point.riesz
            m = lincomb((self.beta1, m), (1.0 - self.beta1, g))
            v = {n: self.beta2 * v[n] + (1.0 - self.beta2) * g[n] ** 2 for n in v}
            c1, c2 = 1.0 - self.beta1**t, 1.0 - self.beta2**t
            new = {n: a - self.lr * (m[n] / c1) / (np.sqrt(v[n] / c2) + self.eps)
                   for n, a in point.controls.items()}
            point = oracle.evaluate(new, self.lr)


class LBFGS(Method):
    """L-BFGS (two-loop recursion) with scipy's strong-Wolfe line search.

    The quasi-Newton model lives on ``v = sqrt(w) u`` (``w = h`` per step, 1 for a trainable
    readout), where the Euclidean metric is the L^2(0, T) metric, so iterates do not depend
    on the grid; the iterates themselves are kept in ``u`` (frozen entries stay bitwise).
    """

    name = "lbfgs"
    supports_stages = True
    duration_update = "joint"
    blas_between_sweeps = True
    full_batch_only = True

    def __init__(self, memory=10, c1=1e-4, c2=0.9, max_line_search=40):
        self.memory = integer(memory, "memory", low=1)
        self.c1 = real(c1, "c1", low=0.0, low_open=True, high=1.0)
        self.c2 = real(c2, "c2", low=self.c1, high=1.0)
        self.max_line_search = integer(max_line_search, "max_line_search", low=1)

    def run(self, oracle, u, state=None):
        problem = oracle.problem
        layout = Flattener(u, list(u), problem.dtype)
        sqrt_w = np.concatenate([np.full(u[n].size, np.sqrt(oracle.riesz_weight(n)))
                                 for n in layout.names])

        def gradient(point):  # dJ/du = w * (Riesz gradient)
            return sqrt_w**2 * layout.flatten(point.riesz)

        cache = {}

        def evaluate(flat):
            key = flat.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = oracle.evaluate(layout.unflatten(flat))
            return cache[key]

        x = layout.flatten(u)
        s_hist, y_hist, old_f = [], [], None
        if state:  # x in float64 may be finer than float32 controls
            x, s_hist, y_hist = state["x"], list(state["s"]), list(state["y"])
            old_f = None if np.isnan(state["old_f"]) else float(state["old_f"])
        point = evaluate(x)
        g = gradient(point)
        while True:
            self.state = {"x": x, "s": np.array(s_hist).reshape(len(s_hist), x.size),
                          "y": np.array(y_hist).reshape(len(y_hist), x.size),
                          "old_f": np.nan if old_f is None else old_f}
            yield point
            direction = -self._two_loop(g / sqrt_w, s_hist, y_hist) / sqrt_w
            limit = oracle.step_limit(layout.unflatten(x), layout.unflatten(direction))
            if not (g @ direction < 0 and limit > 0):  # not a (feasible) descent direction:
                s_hist, y_hist, direction = [], [], -g / sqrt_w**2  # restart, steepest descent
                limit = oracle.step_limit(layout.unflatten(x), layout.unflatten(direction))
            f = point.parts["total"]
            alpha = self._wolfe(evaluate, gradient, x, direction, g, f, old_f, limit)
            if alpha is None and s_hist:  # retry once along steepest descent
                s_hist, y_hist, direction = [], [], -g / sqrt_w**2
                limit = oracle.step_limit(layout.unflatten(x), layout.unflatten(direction))
                alpha = self._wolfe(evaluate, gradient, x, direction, g, f, None, limit)
            if alpha is None:
                oracle.stall("the line search found no step satisfying the Wolfe conditions "
                             "or the slope condition (the cost is flat to rounding along "
                             "the search direction)")
                return
            x_new = x + alpha * direction
            new_point = evaluate(x_new)
            g_new = gradient(new_point)
            s, y = sqrt_w * (x_new - x), (g_new - g) / sqrt_w
            if s @ y > 1e-12 * np.sqrt((s @ s) * (y @ y)):  # keep the curvature pair
                s_hist.append(s)
                y_hist.append(y)
                if len(s_hist) > self.memory:
                    s_hist.pop(0)
                    y_hist.pop(0)
            old_f, x, g = f, x_new, g_new
            new_point.step_size = float(alpha * np.linalg.norm(sqrt_w * direction))
            point = new_point

    def _wolfe(self, evaluate, gradient, v, direction, g, f, old_f, limit=np.inf):
        """Step length along ``direction``, at most ``limit`` (where a constraint begins):
        strong Wolfe (scipy), else a slope search."""
        # imported here: scipy.optimize takes most of a second to import
        from scipy.optimize import line_search
        from scipy.optimize._linesearch import LineSearchWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LineSearchWarning)
            alpha, *_ = line_search(lambda z: evaluate(z).parts["total"],
                                    lambda z: gradient(evaluate(z)), v, direction, g, f,
                                    old_f, c1=self.c1, c2=self.c2,
                                    amax=None if np.isinf(limit) else limit,
                                    maxiter=self.max_line_search)
        if alpha is not None:
            return alpha
        return self._slope_search(evaluate, gradient, v, direction, g, f, limit)

    def _slope_search(self, evaluate, gradient, v, direction, g, f, limit=np.inf):
        """Near the optimum cost differences drown in rounding while slopes stay accurate:
        find a step where the slope ``phi'(a) = <grad J(v + a d), d>`` has risen to
        ``c2 |phi'(0)|`` in size (bracketing, then bisection), the cost not increasing
        beyond rounding; or, still descending at the step ``limit`` where a constraint
        begins, that step if it decreases J enough (Armijo)."""
        slope0 = g @ direction

        def slope(a):
            return gradient(evaluate(v + a * direction)) @ direction

        lo, hi, a = 0.0, np.inf, min(1.0, limit)
        for _ in range(self.max_line_search):
            s = slope(a)
            if abs(s) <= self.c2 * abs(slope0) or (s < 0 and a >= limit):
                bound = f + (self.c1 * a * slope0 if a >= limit else 1e-12 * abs(f))
                return a if evaluate(v + a * direction).parts["total"] <= bound else None
            if s < 0:
                lo = a
            else:
                hi = a
            a = min(2.0 * a, limit) if np.isinf(hi) else 0.5 * (lo + hi)
        return None

    @staticmethod
    def _two_loop(g, s_hist, y_hist):
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist)):
            a = (s @ q) / (y @ s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += (a - (y @ q) / (y @ s)) * s
        return q
