"""The method of successive approximations (docs/theory.md sections 4, 10, 11).

One iteration: a forward sweep of the states, a backward sweep of the costates, and the
maximisation of the (augmented) Hamiltonian at every step (:mod:`pmp.maximize`).

=============  =====================================================================
"msa"          plain MSA (Chernousko & Lyubushin; Li et al. Alg. 1): ``rho = 0``. It has
               no step-size control and diverges when the control-to-costate
               sensitivity exceeds ``2 lam`` (E4 of docs/theory.md: error factor
               ``-T / (2 lam)``); the trainer then stops with status "diverged".
"emsa"         extended MSA (Li, Chen, Tai, E): the augmented Hamiltonian with penalty
               ``rho``, maximised inexactly by default (a few inner iterations per
               step; ``exact=True`` solves to ``tol``). Adaptive by default
               (docs/theory.md 10): a candidate is accepted only
               if ``J(u_new) <= J(u) - sufficient * h sum_k gain_k`` and
               ``J(u_new) < J(u)``, then ``rho /= 2``;
               otherwise it is rejected and ``rho *= 4``. Monotone by construction.
               With a differentiable regulariser the candidate first tried is the
               maximiser's plus a momentum times the last accepted step (heavy
               ball, docs/theory.md 10); ``momentum=0`` is Li et al.'s algorithm.
               ``adaptive=False`` keeps ``rho`` fixed.
"discrete"     binary ``s {-1, +1}`` or ternary ``s {-1, 0, +1}`` weights (Li & Hao):
               an exponential moving average of ``G = d<p, F>/du`` decides the sign; an
               entry changes only where its evidence exceeds ``flip`` times the largest
               evidence among the entries of its step that want to change. Biases, a
               trainable readout and a staged problem's trainable transition keep a
               gradient step.
=============  =====================================================================

History columns: ``rho``, ``accepted`` (1 or 0), ``gain`` (``h sum_k`` of the Hamiltonian
gain of the last maximisation, in units of J) and, for "discrete", ``nonzero`` (the
fraction of non-zero discrete weights).
"""
import numpy as np

from .._validation import boolean, lookup, real
from ..maximize import Maximizer
from ..stages import is_staged
from .base import Method, Point
from .staged import stagewise


class MSA(Method):
    """Plain MSA: ``u_k <- argmax_u H_k(X_k, p_{k+1}, u)``.

    Parameters
    ----------
    n_direct, tol, max_inner
        Options of :class:`pmp.maximize.Maximizer`.
    xtol : float
        Stop ("converged") when the maximisation moves no entry by more than
        ``xtol * max(1, max |u|)``: a fixed point of the MSA.
    """

    name = "msa"
    needs_smooth = False
    accepts_segment = False  # the maximisation reads the whole trajectory
    history_columns = ("rho", "accepted", "gain")
    supports_stages = True  # a staged problem's maximiser works stage by stage
    duration_update = "alternating"  # a projected gradient step after each iteration

    def __init__(self, n_direct=256, tol=1e-10, max_inner=500, xtol=1e-12):
        self.n_direct, self.tol, self.max_inner = n_direct, tol, max_inner
        self.xtol = real(xtol, "xtol", low=0.0)
        self.rho = 0.0

    def _maximizer(self, problem):
        return Maximizer(problem, self.n_direct, self.tol, self.max_inner)

    def check(self, problem, batch_size=None, segment=None):
        super().check(problem, batch_size, segment)
        self._maximizer(problem).check(self.rho)  # a maximisation with no solution

    def _candidate(self, maximizer, oracle, point, xs, ps, rho):
        """The maximiser's controls and history extras; None at a fixed point."""
        old = point.controls
        new, info = maximizer.maximize(oracle.batch, old, xs, ps, rho,
                                       statistics=oracle.statistics)
        step = max(float(np.max(np.abs(new[n] - old[n]))) for n in old)
        size = max(1.0, max(float(np.max(np.abs(old[n]))) for n in old))
        if step <= self.xtol * size:
            oracle.stall(f"fixed point: the maximisation moves the controls by {step:.3g} <= "
                         f"xtol * max(1, max |u|)", status="converged")
            return None, None
        extra = dict(rho=rho, gain=oracle.problem.h * float(np.sum(info.gain)),
                     residual=float(np.max(info.residual)))
        return new, extra

    def run(self, oracle, u, state=None):
        maximizer = self._maximizer(oracle.problem)
        maximizer.memory = (state or {}).get("maximizer")
        rho = self._initial_rho(state)
        maximizer.check(rho)
        # on an empty numba cache the maximiser's kernel compiles while the sweeps do
        maximizer.compile_ahead(oracle.batch, u, rho)
        need = maximizer.need(oracle.problem)
        point, xs, ps = oracle.sweep(u, need)
        point.extra = dict(rho=rho, accepted=1.0)
        batch = oracle.batch_id
        while True:
            self.state = self._state(rho, maximizer)
            yield point
            if oracle.batch_id != batch:  # a new mini-batch: sweep it at the current controls
                point, xs, ps = oracle.sweep(point.controls, need)
                batch = oracle.batch_id
            new, extra = self._candidate(maximizer, oracle, point, xs, ps, rho)
            if new is not None:
                step = self._step(oracle, point, xs, ps, new, extra, rho, need)
                if step is None:
                    return
                point, xs, ps, rho = step
            # trained durations: a step on them (J decreasing) after the maximisation
            moved = oracle.duration_step(point, xs, ps, need)
            if moved is not None:
                point, xs, ps = moved
            elif new is None:  # a fixed point of the maximisation, the durations too
                return

    def _initial_rho(self, state):
        return self.rho

    def _state(self, rho, maximizer):
        """What a checkpoint keeps to continue exactly (plain MSA: what the maximiser keeps
        between calls)."""
        return {"maximizer": maximizer.memory}

    def _step(self, oracle, point, xs, ps, new, extra, rho, need):
        """Move to the candidate ``new``: ``(point, xs, ps, rho)`` of the next iterate, or
        None to stop. Plain MSA accepts every candidate."""
        point, xs, ps = oracle.sweep(new, need)
        point.extra = dict(extra, accepted=1.0)
        return point, xs, ps, rho


class EMSA(MSA):
    """Extended MSA with the augmented Hamiltonian, adaptive ``rho`` by default.

    Parameters
    ----------
    rho : float
        Initial (or fixed) penalty, >= 0. It scales like T for a terminal cost and like T^2
        for a tracking cost (docs/theory.md 10).
    adaptive : bool
        Accept / reject with the sufficient-decrease test and adapt ``rho``.
    sufficient : float
        The constant ``c`` of the test ``J(u_new) <= J(u) - c * gain``, in (0, 1].
    rho_min, rho_max : float
        Bounds of the adaptive ``rho``; above ``rho_max`` the method stalls (no ascent step
        decreases J any more: converged to rounding, or a bad model).
    momentum : float, optional
        The largest momentum factor, in [0, 1). Each iteration first tries the heavy-ball
        candidate ``u_new + beta (u - u_prev)`` (``u_new`` the maximiser's controls,
        ``u_prev`` those before the last accepted step, ``beta = min(momentum, m / (m + 3))``
        after ``m`` steps accepted since the last rejection) under the same acceptance
        test, then, if it fails, ``u_new`` as without momentum (one more forward sweep).
        An accepted heavy-ball step keeps ``rho``; a rejection restarts the momentum
        (docs/theory.md 10). Default: 0.999 where every regulariser is differentiable
        ("l2", "h1"), else 0 (the maximiser's exact zeros and bounds of "l1" are kept);
        it needs ``adaptive=True``. 0 is the algorithm of Li, Chen, Tai and E.
    exact : bool
        Maximise every step's augmented Hamiltonian to the tolerance ``tol``. The default,
        inexact, stops the iterative inner solvers (conjugate gradients, FISTA, L-BFGS)
        after ``max_inner`` iterations started at ``u_old``: the acceptance test keeps the
        method monotone, and its fixed points are those of the exact maximiser
        (docs/theory.md 10). Direct solves (at most ``n_direct`` unknowns per step) and
        closed forms are exact either way.
    max_inner : int or dict, optional
        Iteration cap of the inner solvers, or a cap per solver (see
        :meth:`pmp.maximize.Maximizer.inner_solver`). Default: 500 when ``exact``, else
        :attr:`INEXACT_MAX_INNER`: one conjugate-gradient iteration (a preconditioned
        steepest ascent step with its exact line search on the quadratic), 3 of FISTA or
        L-BFGS.
    n_direct, tol, xtol
        As :class:`MSA`.
    """

    name = "emsa"
    INEXACT_MAX_INNER = {"cg": 1, "fista": 3, "lbfgs": 3}
    DEFAULT_MOMENTUM = 0.999

    def __init__(self, rho=1.0, adaptive=True, sufficient=0.1, rho_min=1e-8, rho_max=1e12,
                 momentum=None, exact=False, n_direct=256, tol=1e-10, max_inner=None,
                 xtol=1e-12):
        self.exact = boolean(exact, "exact")
        if max_inner is None:
            max_inner = 500 if self.exact else dict(self.INEXACT_MAX_INNER)
        super().__init__(n_direct, tol, max_inner, xtol)
        self.rho = real(rho, "rho", low=0.0)
        self.adaptive = boolean(adaptive, "adaptive")
        self.sufficient = real(sufficient, "sufficient", low=0.0, low_open=True, high=1.0)
        self.rho_min = real(rho_min, "rho_min", low=0.0)
        self.rho_max = real(rho_max, "rho_max", low=self.rho_min, allow_inf=True)
        if self.adaptive and self.rho == 0.0:
            raise ValueError("rho must be > 0 for the adaptive E-MSA (it is multiplied and "
                             "divided), got 0.0; use method='msa' for rho = 0")
        if momentum is not None:
            momentum = real(momentum, "momentum", low=0.0, high=1.0, high_open=True)
            if momentum > 0.0 and not self.adaptive:
                raise ValueError(f"momentum > 0 needs the acceptance test (adaptive=True), "
                                 f"got momentum={momentum} with adaptive=False")
        self.momentum = momentum
        self._largest = 0.0  # the run's momentum cap, resolved for its problem by run()
        # the controls before the last accepted step (None: no momentum yet), and the
        # steps accepted since the last rejection
        self._previous, self._accepted = None, 0

    def check(self, problem, batch_size=None, segment=None):
        super().check(problem, batch_size, segment)
        if self.momentum and not problem.reg.smooth:
            raise ValueError(f"momentum > 0 needs a differentiable regularizer (the "
                             f"maximiser's zeros and bounds of l1 are not kept), got "
                             f"momentum={self.momentum} with reg={problem.reg.name!r}")

    def _momentum_for(self, problem):
        """The momentum cap of a run on ``problem``: the option, or its default."""
        if self.momentum is not None:
            return self.momentum
        stages = problem.stages if is_staged(problem) else (problem,)
        smooth = all(stage.reg.smooth for stage in stages)
        return self.DEFAULT_MOMENTUM if self.adaptive and smooth else 0.0

    def run(self, oracle, u, state=None):
        self._largest = self._momentum_for(oracle.problem)
        state = state or {}
        self._previous, self._accepted = state.get("previous"), int(state.get("accepted", 0))
        return super().run(oracle, u, state)

    def _initial_rho(self, state):
        return float(state["rho"]) if state and self.adaptive else self.rho

    def _state(self, rho, maximizer):
        state = super()._state(rho, maximizer)
        if self.adaptive:
            state["rho"] = rho
        if self._largest:
            state.update(previous=self._previous, accepted=self._accepted)
        return state

    def _candidates(self, point, new):
        """``(controls, rho factor on acceptance)`` to test in turn: the heavy ball's (rho
        kept) when there is a last step to continue, then the maximiser's (rho halved)."""
        tries = [(new, 0.5)]
        if self._largest and self._previous is not None:
            # Nesterov's sequence m / (m + 3) after m accepted steps, capped
            beta = min(self._largest, self._accepted / (self._accepted + 3.0))
            u, previous = point.controls, self._previous
            tries.insert(0, ({n: new[n] + beta * (u[n] - previous[n]) for n in new}, 1.0))
        return tries

    def _step(self, oracle, point, xs, ps, new, extra, rho, need):
        """Adaptive: accept the first candidate of :meth:`_candidates` with a sufficient
        decrease; if none, keep the current point, restart the momentum and ``rho *= 4``;
        stop above ``rho_max``."""
        if not self.adaptive:
            return super()._step(oracle, point, xs, ps, new, extra, rho, need)
        current = point.parts["total"]
        target = current - self.sufficient * extra["gain"]
        for controls, factor in self._candidates(point, new):
            candidate = oracle.candidate(controls, need)
            value = candidate.parts["total"]
            if np.isfinite(value) and value <= target and value < current:
                self._previous, self._accepted = point.controls, self._accepted + 1
                point, xs, ps = oracle.sweep(controls, need, candidate)
                rho = max(rho * factor, self.rho_min)
                point.extra = dict(extra, accepted=1.0)
                break
        else:
            self._previous, self._accepted = None, 0
            rho *= 4.0
            if rho > self.rho_max:
                oracle.stall(f"rho exceeded rho_max = {self.rho_max:g}: no maximisation "
                             "step decreases J any more")
                return None
            point = Point(point.controls, point.parts, point.riesz, point.grad_norm,
                          extra=dict(extra, accepted=0.0))
        point.extra["rho"] = rho
        return point, xs, ps, rho


class Discrete(Method):
    """Binary or ternary weights trained by the MSA rule of Li & Hao (docs/theory.md 11).

    Parameters
    ----------
    levels : {"binary", "ternary"}
    scale : float, optional
        The weight magnitude ``s`` (default ``1 / sqrt(fan_in)`` per control). On long
        horizons a smaller one keeps the flow's expansion ``exp(|W| T)`` in check: on the
        README's example (T = 10) the default ends above its initial cost (flagged
        ``worse_than_start``), ``scale = 1 / (sqrt(3) T)`` does not.
    threshold : float, optional
        Ternary: ``|G| <= threshold`` sets a weight to 0 (default: the problem's ``lam``).
    ema : float
        Moving-average factor of ``G`` in [0, 1) (0: no averaging).
    flip : float
        Relative threshold in (0, 1]: an entry changes only where its evidence is at least
        ``flip`` times the largest among the entries of its step that want to change.
    lr : float
        Gradient step of the continuous controls (biases, readout).

    Notes
    -----
    A staged problem (:mod:`pmp.stages`) is trained stage by stage: each stage's field names
    its discrete controls, its ``fan_in`` their default scale, its ``lam`` the default
    threshold, its regulariser and step the evidence ``G``. A trainable transition
    (``"enter"``) is a real matrix with no levels: it stays real and takes the gradient
    step ``lr`` of the continuous controls (its ``enter_lam |A|^2`` in that gradient).
    """

    name = "discrete"
    needs_smooth = True
    accepts_segment = False
    history_columns = ("accepted", "nonzero")
    supports_stages = True  # the rule runs on every stage's own controls (docstring)

    def __init__(self, levels="binary", scale=None, threshold=None, ema=0.9, flip=0.9,
                 lr=0.1):
        self.levels = lookup({"binary": "binary", "ternary": "ternary"}, levels, "levels")
        self.scale = None if scale is None else real(scale, "scale", low=0.0, low_open=True)
        self.threshold = None if threshold is None else real(threshold, "threshold", low=0.0)
        # 1 would never update the average
        self.ema = real(ema, "ema", low=0.0, high=1.0, high_open=True)
        self.flip = real(flip, "flip", low=0.0, low_open=True, high=1.0)
        self.lr = real(lr, "lr", low=0.0)

    def _project(self, u, s):
        if self.levels == "binary":
            return np.where(u >= 0.0, s, -s)
        return np.where(np.abs(u) > 0.5 * s, np.sign(u) * s, 0.0)

    def _levels(self, problem):
        """name -> (scale ``s``, ternary threshold) of every discrete control (flat names,
        each stage's own, for a staged problem)."""
        if is_staged(problem):
            return stagewise(problem, self._levels)
        threshold = problem.lam if self.threshold is None else self.threshold
        return {n: (self.scale if self.scale is not None
                    else 1.0 / np.sqrt(problem.field.fan_in(n)), threshold)
                for n in problem.field.discrete_controls}

    @staticmethod
    def _reg_grad(problem, controls):
        """The gradient of the (smooth) regulariser per control, zero where it has none
        (stage by stage for a staged problem; a transition's is not needed)."""
        if is_staged(problem):
            return stagewise(problem, Discrete._reg_grad, controls)
        out = {n: np.zeros_like(a) for n, a in controls.items()}
        problem.reg.add_grad(controls, problem.control_names, problem.h, out)
        return out

    def run(self, oracle, u, state=None):
        problem = oracle.problem
        levels = self._levels(problem)
        names = tuple(levels)
        u = dict(u)
        for n in names:
            u[n] = self._project(u[n], levels[n][0]).astype(problem.dtype)
        point = oracle.evaluate(u)  # the rule reads the gradient only
        average = (state or {}).get("average")
        while True:
            point.extra = dict(accepted=1.0, nonzero=self._nonzero(point.controls, names))
            self.state = {"average": average}
            yield point
            # G = d<p, F>/du per unit time: minus the Riesz gradient of the data part
            controls = point.controls
            reg_grad = self._reg_grad(problem, controls)
            G = {n: -(point.riesz[n] - reg_grad[n] / problem.riesz_weight(n)) for n in names}
            average = G if average is None else {
                n: self.ema * average[n] + (1.0 - self.ema) * G[n] for n in names}
            new = {n: (a - self.lr * point.riesz[n] if n not in names else a)
                   for n, a in controls.items()}
            for n in names:
                new[n] = self._flip(controls[n], average[n], *levels[n])
            point = oracle.evaluate(new)

    def _flip(self, current, g, s, threshold):
        if self.levels == "binary":
            target = np.where(g > 0.0, s, np.where(g < 0.0, -s, current))
            evidence = np.abs(g)
        else:
            target = np.where(np.abs(g) > threshold, np.sign(g) * s, 0.0)
            evidence = np.abs(np.abs(g) - threshold)
        wants = target != current
        K = current.shape[0]
        strongest = np.max(np.where(wants, evidence, 0.0).reshape(K, -1), axis=1)
        bar = (self.flip * strongest).reshape((K,) + (1,) * (current.ndim - 1))
        change = wants & (evidence >= bar) & (evidence > 0.0)
        return np.where(change, target, current).astype(current.dtype)

    @staticmethod
    def _nonzero(controls, names):
        total = sum(controls[n].size for n in names)
        return sum(np.count_nonzero(controls[n]) for n in names) / total

