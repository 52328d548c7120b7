"""Staged problems (variable width): the data of a sequence of stages joined by transitions.

A staged problem runs stages ``j = 0..S-1`` on consecutive time intervals; stage ``j`` is an
ordinary :class:`pmp.Problem` (its own dimension ``d_j``, field, activation, ``T_j``,
``K_j`` steps, regulariser) and a linear transition ``A_j`` (shape ``(d_{j+1}, d_j)``) maps
its last states to the first of the next stage, ``X^{(j+1)}_0 = X^{(j)}_{K_j} A_j^T`` (batch
rows). Conventions: docs/theory.md section 13. The sweeps of a staged problem are in
:mod:`pmp.stages`; this module only holds what :class:`pmp.Problem` builds.
"""
import inspect
from collections.abc import Mapping

import numpy as np

from . import activations, objectives
from ._validation import check_shape, finite_array, fit, integer, real
from .fields import Field, field_class, make_field
from .meshes import as_mesh, interpolation_matrix, quadrature_regularizer
from .problem import Problem, init_controls

# the Problem keywords a Stage may override; the others (loss, p, n_classes, terminal,
# lift, dtype) are the whole problem's
STAGE_OPTIONS = ("field", "activation", "slope", "projection", "reg", "lam", "lam1", "bound",
                 "running", "width", "features", "bandwidth", "seed", "frozen")
TRANSITIONS = ("lift", "project", "interpolate", "trainable")
ENTER = "enter"  # the control of a trainable transition, in the dict of the stage it enters


class Stage:
    """One stage of a staged problem (``pmp.Problem(x, y, stages=[...])``).

    Parameters
    ----------
    T : float, optional
        Duration of the stage, > 0 (default: the problem's ``T``).
    n_steps : int, optional
        Euler steps of the stage, >= 1 (default: the problem's ``n_steps``).
    dim : int, optional
        State dimension of the stage (default: the previous stage's; the first stage's is
        that of ``x``, zero-padded when larger).
    enter : None, "lift", "project", "interpolate", "trainable" or array_like
        The transition from the previous stage into this one (not for the first stage):
        None keeps the state (same dimension), "lift" pads with zeros, "project" keeps the
        first coordinates, "interpolate" interpolates linearly between the ``mesh`` of the
        previous stage and this one's (bilinear between two grids), "trainable" is a
        matrix trained with the controls
        (control ``"enter"`` of this stage, shape ``(dim, previous dim)``, starting at the
        identity's first columns or rows), and an array of shape ``(dim, previous dim)`` is
        a fixed matrix.
    enter_lam : float, optional
        Weight ``lam_A`` of the trainable transition's regulariser ``lam_A |A|_F^2``
        (default: the stage's ``lam``).
    mesh : pmp.meshes.Mesh or array_like, shape (dim,), optional
        The mesh whose nodes the stage's coordinates sit at (:mod:`pmp.meshes`: an interval,
        the pixel grid of an image), or the increasing nodes of an interval (trapezoidal
        weights). Needed by "interpolate" and by a field on a mesh (``field="integral"``,
        whose quadrature weights it gives, and whose regulariser it weighs by them); ``dim``
        defaults to its number of nodes.
    **options
        Any of the problem's keywords in :data:`STAGE_OPTIONS` (field, activation, reg,
        lam, running, projection, frozen, ...) for this stage only.
    """

    def __init__(self, T=None, n_steps=None, *, dim=None, enter=None, enter_lam=None,
                 mesh=None, **options):
        unknown = sorted(set(options) - set(STAGE_OPTIONS))
        if unknown:
            raise TypeError(f"Stage got unknown keyword(s) {', '.join(map(repr, unknown))}; "
                            f"a stage takes T, n_steps, dim, enter, enter_lam, mesh and "
                            f"{', '.join(STAGE_OPTIONS)} (loss, p, n_classes, terminal, lift "
                            f"and dtype belong to the whole problem)")
        self.T, self.n_steps, self.dim = T, n_steps, dim
        self.enter, self.enter_lam, self.mesh = enter, enter_lam, mesh
        self.options = dict(options)

    def __repr__(self):
        enter = self.enter if self.enter is None or isinstance(self.enter, str) else "matrix"
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"Stage(T={self.T}, n_steps={self.n_steps}, dim={self.dim}, "
                f"enter={enter!r}{opts})")


class Transition:
    """The linear map ``A`` (shape ``(d_out, d_in)``) from one stage's last states into the
    next stage's first: ``X_next = X A^T``; the costate goes back through ``p = p_next A``.

    Attributes
    ----------
    kind : {"identity", "lift", "project", "interpolate", "matrix", "trainable"}
    d_in, d_out : int
    matrix : ndarray, shape (d_out, d_in)
        The map (a trainable one's initial value).
    trainable : bool
    lam : float
        Weight of ``lam |A|_F^2`` (trainable only).
    frozen : ndarray of bool, shape (d_out, d_in), or None
        Entries of a trainable map kept at their value.
    """

    def __init__(self, kind, matrix, lam=0.0, frozen=None):
        self.kind = kind
        self.matrix = matrix
        self.d_out, self.d_in = matrix.shape
        self.trainable = kind == "trainable"
        self.lam = lam
        self.frozen = frozen

    def apply(self, X, A=None):
        """``X A^T``: X (N, d_in) -> (N, d_out); ``A`` the trainable map's current value."""
        if self.kind in ("identity", "lift"):  # zero padding, exactly
            out = np.zeros((X.shape[0], self.d_out), dtype=X.dtype)
            out[:, :self.d_in] = X
            return out
        if self.kind == "project":
            return np.ascontiguousarray(X[:, :self.d_out])
        return np.ascontiguousarray(X @ (self.matrix if A is None else A).T)

    def pull(self, p, A=None):
        """``p A``: the costate (N, d_out) at the next stage's start -> (N, d_in)."""
        if self.kind in ("identity", "lift"):
            return np.ascontiguousarray(p[:, :self.d_in])
        if self.kind == "project":
            out = np.zeros((p.shape[0], self.d_in), dtype=p.dtype)
            out[:, :self.d_out] = p
            return out
        return np.ascontiguousarray(p @ (self.matrix if A is None else A))

    def __repr__(self):
        return f"Transition({self.kind!r}, {self.d_in} -> {self.d_out})"


class StagedProblem:
    """A problem in stages: what ``pmp.Problem(x, y, stages=[...], **defaults)`` returns.

    Every keyword of :class:`pmp.Problem` is the default of every stage; a :class:`Stage`
    overrides the ones in :data:`STAGE_OPTIONS` and ``T``, ``n_steps``. The cost is the sum
    of the stages' running and regularisation parts, the last stage's terminal loss and the
    trainable transitions' ``lam_A |A|_F^2`` (docs/theory.md section 13).

    Controls are a list with one dict per stage (the stage's controls; a trainable
    transition into stage ``j`` is the entry ``"enter"`` of ``controls[j]``).

    Attributes
    ----------
    stages : tuple of Problem
        One problem per stage. Stage 0 starts at the data; the ``x`` of a later stage is a
        placeholder (zeros): it starts at the transition's image of the previous stage.
    transitions : tuple of Transition
        ``transitions[j]`` maps stage ``j`` into stage ``j + 1`` (length S - 1).
    meshes : tuple
        Each stage's mesh (:class:`pmp.meshes.Mesh`) or None.
    x : ndarray, shape (n_samples, dims[0])
    dims, n_steps : tuple of int
    durations : tuple of float
        ``T_j``.
    starts : ndarray, shape (S,)
        Start time of every stage; ``switch_times = starts[1:]``.
    T : float
        The whole horizon ``sum T_j``.
    t : list of ndarray
        Stage j's time grid on the whole horizon, shape (n_steps[j] + 1,).
    control_shapes : list of dict
        name -> shape, per stage (with "enter" for a trainable transition).
    """

    def __init__(self, x, y, *, stages, **kwargs):
        defaults = _problem_defaults()
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise TypeError(f"Problem got unexpected keyword(s) {', '.join(map(repr, unknown))}")
        defaults.update(kwargs)
        if isinstance(stages, (str, bytes, Mapping)) or not hasattr(stages, "__len__") \
                or len(stages) < 1:
            raise TypeError(f"stages must be a non-empty list of pmp.Stage, got {stages!r}")
        stages = list(stages)
        for j, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise TypeError(f"stages[{j}] must be a pmp.Stage, got {type(stage).__name__}")
        self._spec = (x, y, stages, kwargs)
        built, transitions, meshes = [], [], []
        for j, stage in enumerate(stages):
            problem, mesh = _stage_problem(x, y, j, stage, defaults, built)
            if j:
                transitions.append(_transition(j, stage, built[-1], problem, meshes[-1], mesh))
            built.append(problem)
            meshes.append(mesh)
        self.stages, self.transitions, self.meshes = tuple(built), tuple(transitions), \
            tuple(meshes)
        first = self.stages[0]
        self.x, self.y, self.dtype, self.n_samples = first.x, first.y, first.dtype, \
            first.n_samples
        self.loss, self.terminal, self.lift = first.loss, first.terminal, first.lift
        self.dims = tuple(s.dim for s in self.stages)
        self.n_steps = tuple(s.n_steps for s in self.stages)
        self.durations = tuple(s.T for s in self.stages)
        self.starts = np.concatenate([[0.0], np.cumsum(self.durations)[:-1]])
        self.T = float(np.sum(self.durations))
        self.t = [start + s.t for start, s in zip(self.starts, self.stages)]
        self.control_shapes = [dict(s.control_shapes) for s in self.stages]
        for j, tr in enumerate(self.transitions):
            if tr.trainable:
                self.control_shapes[j + 1][ENTER] = tr.matrix.shape

    @property
    def h(self):
        """The mean step ``T / sum_j n_steps[j]``: the unit in which the MSA reports a staged
        problem's Hamiltonian gains (each stage steps with its own ``stages[j].h``)."""
        return self.T / sum(self.n_steps)

    @property
    def switch_times(self):
        """ndarray, shape (S - 1,): the times at which a stage ends and the next begins."""
        return self.starts[1:].copy()

    def enter_transition(self, j):
        """The transition into stage ``j`` (None for the first stage)."""
        return self.transitions[j - 1] if j else None

    def validate_controls(self, controls):
        """Check a list of one dict per stage; return it with validated C-contiguous arrays."""
        if isinstance(controls, Mapping) or not isinstance(controls, (list, tuple)):
            raise TypeError(f"controls of a staged problem must be a list of {len(self.stages)} "
                            f"dicts (one per stage), got {type(controls).__name__}")
        if len(controls) != len(self.stages):
            raise ValueError(f"controls must hold one dict per stage ({len(self.stages)}), got "
                             f"{len(controls)}")
        out = []
        for j, (stage, u) in enumerate(zip(self.stages, controls)):
            if not isinstance(u, Mapping):
                raise TypeError(f"controls[{j}] must be a dict name -> array, got "
                                f"{type(u).__name__}")
            tr = self.enter_transition(j)
            own = {n: a for n, a in u.items() if n != ENTER or not (tr and tr.trainable)}
            try:
                checked = stage.validate_controls(own)
            except (TypeError, ValueError) as err:
                raise type(err)(f"controls[{j}]: {err}") from None
            if tr is not None and tr.trainable:
                if ENTER not in u:
                    raise ValueError(f"controls[{j}] must hold {ENTER!r}, the trainable "
                                     f"transition into stage {j}, shape {tr.matrix.shape}")
                A = finite_array(u[ENTER], f"controls[{j}][{ENTER!r}]", dtype=self.dtype)
                check_shape(A, tr.matrix.shape, f"controls[{j}][{ENTER!r}]")
                checked[ENTER] = A
            out.append(checked)
        return out

    # ---------------------------------------- the controls as one dict (for the methods)
    def flatten_controls(self, controls):
        """The list of dicts as one dict ``"j.name" -> array`` (the same arrays)."""
        return {f"{j}.{n}": a for j, u in enumerate(controls) for n, a in u.items()}

    def unflatten_controls(self, flat):
        """The inverse of :meth:`flatten_controls` (the same arrays)."""
        out = [{} for _ in self.stages]
        for key, a in flat.items():
            j, n = key.split(".", 1)
            out[int(j)][n] = a
        return out

    def riesz_weight(self, name):
        """Weight of the flat control ``"j.name"`` in the L^2 inner product: stage j's
        ``h`` per step, 1 for a readout or a transition."""
        j, n = name.split(".", 1)
        return 1.0 if n == ENTER else self.stages[int(j)].riesz_weight(n)

    def subset(self, index):
        """The same problem on the samples ``index`` (a mini-batch)."""
        sub = object.__new__(StagedProblem)
        sub.__dict__.update(self.__dict__)
        sub.stages = tuple(s.subset(index) for s in self.stages)
        sub.x, sub.y, sub.n_samples = sub.stages[0].x, sub.stages[0].y, sub.stages[0].n_samples
        return sub

    def config(self):
        """The keyword arguments that rebuild this problem (without x and y), as
        :meth:`pmp.Problem.config` gives an unstaged problem's.

        Returns
        -------
        dict
            The keywords of :class:`pmp.Problem` the problem was built with (the defaults of
            every stage; the keywords left out take their defaults) and ``"stages"``, a list
            with one dict per stage of the arguments of :class:`pmp.Stage` that were given
            (``T``, ``n_steps``, ``dim``, ``enter``, ``enter_lam``, ``mesh`` and the
            per-stage options), values as given (a mesh as a :class:`pmp.meshes.Mesh` or
            its nodes, a matrix as an array). The dicts are new; the values are not copied.
            ``pmp.Problem(x, y, **dict(cfg, stages=[pmp.Stage(**s) for s in
            cfg["stages"]]))`` builds the same problem again, and
            :meth:`pmp.RunConfig.from_objects` writes it as a configuration.
        """
        _, _, stages, kwargs = self._spec
        out = dict(kwargs)
        out["stages"] = []
        for stage in stages:
            given = dict(T=stage.T, n_steps=stage.n_steps, dim=stage.dim, enter=stage.enter,
                         enter_lam=stage.enter_lam, mesh=stage.mesh)
            given = {k: v for k, v in given.items() if v is not None}
            given.update(stage.options)
            out["stages"].append(given)
        return out

    def with_durations(self, durations):
        """The same problem with stage durations ``durations`` (the steps kept)."""
        if len(durations) != len(self.stages):
            raise ValueError(f"durations must have one entry per stage ({len(self.stages)}), "
                             f"got {len(durations)}")
        x, y, stages, kwargs = self._spec
        new = []
        for j, (stage, T) in enumerate(zip(stages, durations)):
            copy = Stage(real(T, f"durations[{j}]", low=0.0, low_open=True), stage.n_steps,
                         dim=stage.dim, enter=stage.enter, enter_lam=stage.enter_lam,
                         mesh=stage.mesh, **stage.options)
            new.append(copy)
        return StagedProblem(x, y, stages=new, **kwargs)

    def __repr__(self):
        parts = ", ".join(f"[d={s.dim}, T={s.T:g}, K={s.n_steps}, {s.field.name}]"
                          for s in self.stages)
        kinds = ", ".join(t.kind for t in self.transitions)
        return (f"StagedProblem(n_samples={self.n_samples}, stages: {parts}; transitions: "
                f"{kinds or 'none'}; loss={self.loss!r})")


def _problem_defaults():
    """The keyword defaults of :class:`pmp.Problem` (but stages)."""
    params = inspect.signature(Problem.__init__).parameters
    return {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY
            and n != "stages"}


def _stage_problem(x, y, j, stage, defaults, built):
    """The :class:`Problem` of stage ``j`` and its mesh (or None)."""
    kwargs = dict(defaults)
    kwargs.update(stage.options)
    for key in ("T", "n_steps"):
        if getattr(stage, key) is not None:
            kwargs[key] = getattr(stage, key)
    frozen = kwargs.get("frozen")
    if isinstance(frozen, Mapping) and ENTER in frozen:  # the transition's, not the stage's
        kwargs["frozen"] = {n: m for n, m in frozen.items() if n != ENTER} or None
    mesh = None if stage.mesh is None else as_mesh(stage.mesh, f"stages[{j}].mesh")
    dim = None if stage.dim is None else integer(stage.dim, f"stages[{j}].dim", low=1)
    if mesh is not None and dim is not None and dim != mesh.size:
        raise ValueError(f"stages[{j}].dim must equal the {mesh.size} nodes of its mesh, "
                         f"got {dim}")
    dim = mesh.size if dim is None and mesh is not None else dim
    if isinstance(frozen, Mapping) and ENTER in frozen and (j == 0 or not (
            isinstance(stage.enter, str) and stage.enter == "trainable")):
        raise ValueError(f"stages[{j}].frozen names 'enter', but stage {j} has no trainable "
                         f"transition (enter={stage.enter!r})")
    try:
        _meshed_field(j, kwargs, mesh)
        if j == 0:
            return _first_stage(x, y, stage, dim, kwargs), mesh
        n = built[0].n_samples
        dim = built[-1].dim if dim is None else dim
        kwargs["lift"] = None
        return Problem(np.zeros((n, dim)), y, **kwargs), mesh
    except (TypeError, ValueError) as err:
        raise type(err)(f"stages[{j}]: {err}") from None


def _meshed_field(j, kwargs, mesh):
    """For a field on a mesh (:attr:`pmp.fields.Field.uses_mesh`): build it on the stage's
    mesh and weigh the regulariser by the quadrature (in ``kwargs``, in place)."""
    field = kwargs["field"]
    if not field_class(field).uses_mesh:
        return
    if mesh is None:
        raise ValueError(f"field {field_class(field).name!r} integrates over a mesh: "
                         f"stages[{j}].mesh must be a pmp.meshes.Mesh (or the nodes of an "
                         f"interval), got None")
    if not isinstance(field, Field):
        activation = activations.get(kwargs["activation"], kwargs["slope"])
        field = make_field(field, mesh.size, activation, mesh=mesh)
    elif field.dim != mesh.size:
        raise ValueError(f"field {field!r} must have the dimension of stages[{j}].mesh "
                         f"({mesh.size} nodes), got {field.dim}")
    reg = objectives.make_regularizer(kwargs["reg"], kwargs["lam"], kwargs["lam1"],
                                      kwargs["bound"])
    kwargs["field"] = field
    kwargs["reg"] = quadrature_regularizer(reg, field.control_weights())


def _first_stage(x, y, stage, dim, kwargs):
    if stage.enter is not None:
        raise ValueError(f"enter must be None for the first stage (it starts at the data), "
                         f"got {stage.enter!r}")
    if dim is not None:
        n_features = np.shape(x)[1] if np.ndim(x) == 2 else None
        lift = kwargs.get("lift")
        if lift is not None and lift != dim:
            raise ValueError(f"dim={dim} and the problem's lift={lift} disagree")
        if n_features is not None and dim < n_features:
            raise ValueError(f"dim must be >= the {n_features} features of x, got {dim}")
        kwargs["lift"] = dim if n_features is not None and dim > n_features else lift
    return Problem(x, y, **kwargs)


def _transition(j, stage, before, after, mesh_before, mesh):
    """The :class:`Transition` into stage ``j`` from the problem ``before``."""
    d_in, d_out = before.dim, after.dim
    enter, where = stage.enter, f"stages[{j}].enter"
    eye = np.eye(d_out, d_in)
    trainable = isinstance(enter, str) and enter == "trainable"
    if stage.enter_lam is not None and not trainable:
        raise ValueError(f"stages[{j}].enter_lam is the weight of a trainable transition, got "
                         f"enter_lam={stage.enter_lam} with enter={enter!r}")
    if enter is None:
        if d_in != d_out:
            raise ValueError(f"{where} must be given: stage {j} changes the dimension from "
                             f"{d_in} to {d_out}; expected one of {', '.join(TRANSITIONS)} or "
                             f"an array of shape ({d_out}, {d_in}), got None")
        return Transition("identity", eye)
    if not isinstance(enter, str):
        A = finite_array(enter, where, ndim=2)
        check_shape(A, (d_out, d_in), where)
        return Transition("matrix", fit(A, after.dtype, where))
    if enter not in TRANSITIONS:
        raise ValueError(f"{where} must be one of {', '.join(TRANSITIONS)} or an array of shape "
                         f"({d_out}, {d_in}), got {enter!r}")
    if enter == "lift" and d_out < d_in or enter == "project" and d_out > d_in:
        raise ValueError(f"{where}={enter!r} needs dim {'>=' if enter == 'lift' else '<='} "
                         f"{d_in} (the previous stage's), got dim={d_out}")
    if enter == "interpolate":
        if mesh_before is None or mesh is None:
            missing = j - 1 if mesh_before is None else j
            raise ValueError(f"{where}='interpolate' needs a mesh on stages[{j - 1}] and "
                             f"stages[{j}], got none on stages[{missing}]")
        if mesh_before.ndim != mesh.ndim:
            raise ValueError(f"{where}='interpolate' needs meshes of one dimension: "
                             f"stages[{j}].mesh must be {mesh_before.ndim}-D like "
                             f"stages[{j - 1}].mesh ({mesh_before!r}), got {mesh!r}")
        return Transition("interpolate", fit(interpolation_matrix(mesh_before, mesh),
                                             after.dtype, where))
    if enter == "trainable":
        lam = after.lam if stage.enter_lam is None else \
            real(stage.enter_lam, f"stages[{j}].enter_lam", low=0.0)
        frozen = (stage.options.get("frozen") or {}).get(ENTER)
        if frozen is not None:
            mask = np.asarray(frozen)
            try:
                fits = np.broadcast_shapes(mask.shape, eye.shape) == eye.shape
            except ValueError:
                fits = False
            if mask.dtype.kind != "b" or not fits:
                raise ValueError(f"stages[{j}].frozen['enter'] must be True or a boolean mask "
                                 f"broadcastable to {eye.shape}, got {type(frozen).__name__} "
                                 f"of shape {mask.shape} and dtype {mask.dtype}")
            frozen = np.broadcast_to(mask, eye.shape)
        return Transition("trainable", eye.astype(after.dtype), lam, frozen)
    return Transition(enter, eye.astype(after.dtype))


def init_stage_controls(problem, scheme="normal", scale=1.0, seed=0):
    """:func:`pmp.init_controls` of a :class:`StagedProblem`: one dict per stage (stage 0
    drawn with ``seed`` itself, as the unstaged problem), a trainable transition at its
    initial matrix."""
    seed = integer(seed, "seed", low=0)
    out = []
    for j, stage in enumerate(problem.stages):
        # independent streams for the later stages (seed + j would repeat another seed's)
        own = seed if j == 0 else int(np.random.SeedSequence([seed, j]).generate_state(1)[0])
        u = init_controls(stage, scheme, scale, own)
        tr = problem.enter_transition(j)
        if tr is not None and tr.trainable:
            u[ENTER] = tr.matrix.copy()
        out.append(u)
    return out
