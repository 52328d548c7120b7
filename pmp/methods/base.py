"""What every training method builds on: :class:`Point` (one iterate), :class:`Method` (the
base class and its contract) and :class:`Oracle` (cost and gradient on the current batch)."""
from dataclasses import dataclass, field

import numpy as np

from ..sweeps import Engine, Need, cost, grad_norm, riesz_gradient


@dataclass
class Point:
    """One iterate: controls, cost parts, Riesz gradient and the step that led there."""

    controls: dict
    parts: dict
    riesz: dict | None  # None where only the cost was evaluated
    grad_norm: float
    step_size: float = float("nan")
    extra: dict = field(default_factory=dict)  # method-specific history columns
    durations: np.ndarray | None = None  # the stage durations, when they are trained


class Method:
    """Base class of the training methods: what a subclass provides and declares.

    A subclass

    1. sets :attr:`name` (the registry key, see :func:`pmp.methods.register_method`);
    2. takes its options as keyword arguments of ``__init__`` (validated there);
    3. implements :meth:`run`, a generator that yields one :class:`Point` per iteration
       (iteration 0 is the starting point) and sets :attr:`state` before every ``yield``;
    4. declares what it supports where the default does not hold: :attr:`needs_smooth`,
       :attr:`full_batch_only`, :attr:`accepts_segment`, :attr:`blas_between_sweeps` and
       :attr:`history_columns` and :attr:`duration_update`. The trainer asks these
       (:meth:`check`), never the name.

    The arguments of :meth:`run`:

    oracle : Oracle
        ``oracle.evaluate(u, step_size) -> Point`` (cost parts and Riesz gradient on the
        current batch), ``oracle.value(u) -> parts``, ``oracle.sweep(u, ...)`` (also the
        trajectories), ``oracle.norm(riesz)``, ``oracle.stall(message)`` and
        ``oracle.problem``.
    u : dict
        Starting controls.
    state : dict, optional
        The method's :attr:`state` saved at a checkpoint: with it, ``run`` continues exactly
        (bitwise) where the checkpointed run was when it yielded ``u``.

    Attributes
    ----------
    state : dict
        Set before every ``yield``: what the method needs besides the controls to continue
        (momenta, curvature pairs, rho, ...): arrays, dicts and lists of arrays, scalars.
    needs_smooth : bool
        It needs a differentiable regulariser (the gradient of J).
    full_batch_only : bool
        It cannot train on mini-batches.
    accepts_segment : bool
        Its gradient may come from a segmented sweep (``segment=``): it reads no trajectory.
    blas_between_sweeps : bool
        Its own vector algebra between the sweeps calls BLAS: the trainer runs it with BLAS
        at one thread (:func:`pmp.threads.serial_blas`).
    history_columns : tuple of str
        The entries of ``Point.extra`` it reports, as history columns.
    supports_stages : bool
        It trains staged problems (:mod:`pmp.stages`) given their controls as one dict
        (:mod:`pmp.methods.staged`): it reads the cost and the gradient only.
    duration_update : {None, "joint", "alternating"}
        How it trains the stage durations of a staged problem (``train_durations=``,
        :mod:`pmp.methods.durations`): "joint" takes them as more coordinates of its iterate
        (the oracle projects them onto their constraints and reports their projected
        gradient), "alternating" calls ``oracle.duration_step`` after each of its
        iterations; None cannot.
    """

    name = ""
    needs_smooth = True
    full_batch_only = False
    accepts_segment = True
    blas_between_sweeps = False
    history_columns = ()
    supports_stages = False
    duration_update = None
    state = None
    _full_batch_hint = ""  # appended to the error of a mini-batch it cannot take

    def run(self, oracle, u, state=None):
        raise NotImplementedError

    def check(self, problem, batch_size=None, segment=None):
        """Raise ``ValueError`` if this method cannot train ``problem`` with mini-batches of
        ``batch_size`` samples (None: full batch) or gradients in segments of ``segment``."""
        if self.needs_smooth and not problem.reg.smooth:
            raise ValueError(f"method {self.name!r} needs a differentiable regularizer, got "
                             f"reg={problem.reg.name!r}; use method='proximal'")
        if batch_size is not None and self.full_batch_only:
            raise ValueError(f"method {self.name!r} needs the full batch (batch_size=None), "
                             f"got batch_size={batch_size}{self._full_batch_hint}")
        if segment is not None and not self.accepts_segment:
            raise ValueError(f"segment={segment} is for the gradient methods; method "
                             f"{self.name!r} maximises the Hamiltonian on the full trajectory")

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "state")
        return f"{type(self).__name__}({opts})"


class Oracle:
    """Cost and Riesz gradient on the current (mini-)batch, for the methods.

    Parameters
    ----------
    problem : Problem
    batch_size : int or None
        Samples per iteration (None: full batch). Batches are drawn without replacement
        from seeded permutations of the samples (one permutation per epoch).
    seed : int
    """

    def __init__(self, problem, batch_size=None, seed=0, segment=None):
        self.problem = problem
        self.segment = segment
        self.batch = problem
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._order, self._cursor = np.empty(0, int), 0
        self._index = None  # the samples of the current mini-batch (None: all)
        self.batch_id = 0
        self.n_evals = 0
        self.stall_message = None
        self.stop_status = "stalled"
        self.engine = Engine()
        self.statistics = None

    def get_state(self):
        """The sampling state (to checkpoint): RNG, current permutation and position."""
        return dict(rng=self._rng.bit_generator.state, order=self._order, cursor=self._cursor,
                    batch_id=self.batch_id)

    def set_state(self, state):
        """Restore :meth:`get_state`, including the current batch."""
        self._rng.bit_generator.state = state["rng"]
        self._order, self._cursor = np.asarray(state["order"], int), int(state["cursor"])
        self.batch_id = int(state["batch_id"])
        if self.batch_size is not None and self._cursor > 0:
            index = np.sort(self._order[self._cursor - self.batch_size:self._cursor])
            self.batch, self._index = self.problem.subset(index), index

    def next_batch(self):
        """Draw the samples of the next iteration (no-op for full batch)."""
        if self.batch_size is None:
            return
        if self._cursor + self.batch_size > len(self._order):
            self._order, self._cursor = self._rng.permutation(self.problem.n_samples), 0
        index = np.sort(self._order[self._cursor:self._cursor + self.batch_size])
        self._cursor += self.batch_size
        self.batch, self._index = self.problem.subset(index), index
        self.batch_id += 1

    def run(self, method, u, state=None):
        """``method.run(self, u, state)``: the iterates of ``method`` on this oracle."""
        return method.run(self, u, state)

    def evaluate(self, controls, step_size=float("nan")):
        """A :class:`Point`: cost parts and Riesz gradient at ``controls``."""
        self.n_evals += 1
        parts, grads = self.engine.gradient(self.batch, controls, self.segment)
        return self._point(controls, parts, grads, step_size)

    def sweep(self, controls, need=Need(), candidate=None, step_size=float("nan")):
        """:meth:`evaluate` and the trajectories :class:`~pmp.sweeps.Need` asks for
        (``candidate``, from :meth:`candidate` at these controls: no forward sweep).

        Returns the :class:`Point`, the states and the costates. They stay valid until the
        next call of :meth:`sweep`; :attr:`statistics` then holds what the maximiser needs
        of them, where the field's costate sweep computes it.
        """
        self.n_evals += 1
        result = self.engine.sweep(self.batch, controls, need, candidate)
        self.statistics = result.statistics
        return self._point(controls, result.parts, result.grads, step_size), result.xs, \
            result.ps

    def _point(self, controls, parts, grads, step_size):
        riesz = riesz_gradient(self.problem, grads)
        return Point(controls, parts, riesz, grad_norm(self.problem, riesz), step_size)

    def value(self, controls):
        """Cost parts only (one forward sweep)."""
        self.n_evals += 1
        return cost(self.batch, controls, validate=False)

    def candidate(self, controls, need=Need()):
        """A :class:`~pmp.sweeps.Candidate`: the cost parts of ``controls`` (one forward
        sweep), to pass to :meth:`sweep` to accept them; the current trajectories of
        :meth:`sweep` stay valid."""
        self.n_evals += 1
        return self.engine.candidate(self.batch, controls, need)

    def norm(self, riesz):
        return grad_norm(self.problem, riesz)

    def riesz_weight(self, name):
        """The weight of the control ``name`` in the L^2 inner product (the problem's)."""
        return self.problem.riesz_weight(name)

    def step_limit(self, controls, direction):
        """The largest ``a`` with ``controls + a direction`` feasible (inf: no constraint;
        a trainer of durations bounds them below)."""
        return np.inf

    def duration_step(self, point, xs, ps, need=None):
        """A step on the durations after a method's iteration at ``point`` (its states and
        costates ``xs``, ``ps``): the new ``(point, xs, ps)``, or None when the durations
        did not move (always, unless they are trained: :mod:`pmp.methods.durations`)."""
        return None

    def stall(self, message, status="stalled"):
        """Called by a method that stops by itself (cannot go on, or has converged by its own
        criterion), before it returns."""
        self.stall_message = message
        self.stop_status = status
