"""Training a staged problem (:mod:`pmp.stages`): the methods that declare
:attr:`~pmp.methods.Method.supports_stages` (the gradient family, "proximal" and
"discrete", whose regulariser's prox and per-step rule run stage by stage through
:func:`stagewise`, and the MSA / E-MSA, whose maximiser works stage by stage:
:mod:`pmp.maximize.staged`) see its controls as one dict.

The list of one dict per stage is presented to a method as one dict ``"j.name" -> array``
(:meth:`pmp.stages.StagedProblem.flatten_controls`; a trainable transition into stage ``j``
is ``"j.enter"``), with the L^2 weights of :meth:`~pmp.stages.StagedProblem.riesz_weight`
(``h_j`` per step of stage j, 1 for a readout or a transition). The iterates the trainer
sees carry the list again.
"""
import dataclasses

from ..stages import (_cost_of_states, _evaluate, _gradient, _own, _states, cost, grad_norm,
                      riesz_gradient)
from .base import Oracle, Point


def check_staged(method, problem, batch_size=None, segment=None):
    """Raise ``ValueError`` if ``method`` cannot train the staged ``problem`` (the method's
    own checks run on every stage)."""
    if not method.supports_stages:
        from . import METHODS  # the registry, in this layer's package

        able = ", ".join(sorted(n for n, cls in METHODS.items() if cls.supports_stages))
        raise ValueError(f"method {method.name!r} cannot train a staged problem (stages=...) "
                         f"yet; methods that can: {able}")
    if segment is not None:
        raise ValueError(f"segment is not available for a staged problem, got "
                         f"segment={segment}")
    for j, stage in enumerate(problem.stages):
        try:
            method.check(stage, batch_size, None)
        except ValueError as err:
            raise ValueError(f"stages[{j}]: {err}") from None


def stage_values(problem, rule, *flats):
    """``[rule(stage, *own) for every stage]``: ``own`` is the stage's part of each flat
    dict of ``flats`` (:meth:`~pmp.stages.StagedProblem.flatten_controls`) under the
    stage's own names, a trainable transition's ``"enter"`` left out. What an unstaged
    problem's rule takes (a regulariser's value or prox, the discrete method's levels), run
    with the stage's own field, regulariser and step."""
    parts = [problem.unflatten_controls(flat) for flat in flats]
    return [rule(stage, *(_own(u[j]) for u in parts)) for j, stage in enumerate(problem.stages)]


def stagewise(problem, rule, *flats):
    """:func:`stage_values` of a ``rule`` that returns a dict of its stage's own names,
    joined into one flat dict ``"j.name"`` (a trainable transition is the caller's to
    treat)."""
    return problem.flatten_controls(stage_values(problem, rule, *flats))


class StagedOracle(Oracle):
    """The :class:`~pmp.methods.Oracle` of a staged problem: cost, Riesz gradient and (for
    the MSA family) the trajectories, as lists per stage, of the controls as one flat dict
    (see the module's docstring)."""

    def __init__(self, problem, batch_size=None, seed=0):
        super().__init__(problem, batch_size, seed)
        self._workspace = {}

    def run(self, method, u, state=None):
        """``method.run`` on the flat controls; yields its points with the list of dicts."""
        flat = self.problem.flatten_controls(u)
        for point in method.run(self, flat, state):
            yield dataclasses.replace(point,
                                      controls=self.problem.unflatten_controls(point.controls))

    def evaluate(self, controls, step_size=float("nan")):
        self.n_evals += 1
        parts, grads = _gradient(self.batch, self.problem.unflatten_controls(controls),
                                 self._workspace)
        return self._flat_point(controls, parts, grads, step_size)

    def _flat_point(self, controls, parts, grads, step_size):
        riesz = riesz_gradient(self.problem, grads)
        return Point(controls, parts, self.problem.flatten_controls(riesz),
                     grad_norm(self.problem, riesz), step_size)

    def value(self, controls):
        self.n_evals += 1
        return cost(self.batch, self.problem.unflatten_controls(controls), validate=False)

    def norm(self, riesz):
        return grad_norm(self.problem, self.problem.unflatten_controls(riesz))

    def sweep(self, controls, need=None, candidate=None, step_size=float("nan")):
        """:meth:`evaluate` and every stage's states and costates (lists); ``candidate``, from
        :meth:`candidate` at these controls, spares the forward sweeps."""
        self.n_evals += 1
        u = self.problem.unflatten_controls(controls)
        xs = _states(self.batch, u)[0] if candidate is None else candidate.xs
        parts, grads, ps = _evaluate(self.batch, u, xs)
        self.statistics = None  # the stages' maximisers read the trajectories
        return self._flat_point(controls, parts, grads, step_size), xs, ps

    def candidate(self, controls, need=None):
        """The cost parts and states of ``controls`` (forward sweeps only)."""
        self.n_evals += 1
        u = self.problem.unflatten_controls(controls)
        xs = _states(self.batch, u)[0]
        return StagedCandidate(_cost_of_states(self.batch, u, xs), xs)


@dataclasses.dataclass
class StagedCandidate:
    """A candidate of :meth:`StagedOracle.candidate`: cost parts and every stage's states."""

    parts: dict
    xs: list


__all__ = ["StagedOracle", "StagedCandidate", "check_staged", "stage_values",
           "stagewise"]
