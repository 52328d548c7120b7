"""The discrete optimal-control problem of training a residual network.

``X_{k+1} = X_k + h F(X_k, u_k)``, ``k = 0..K-1``, ``h = T / K``, cost

``J(u) = terminal * Phi(X_K) + h sum_{k<K} [running * Phi(X_k) + R(u_k)]``

with ``Phi(X) = (1/N) sum_i l(P x_i, y_i)``. Conventions: docs/theory.md sections 1-3.
"""
import inspect
import sys
import warnings
from collections.abc import Mapping

import numpy as np

from . import activations, objectives
from ._validation import check_shape, finite_array, fit, integer, real
from .fields import make_field

_PROJECTIONS = ("last", "first", "trainable")
INIT_SCHEMES = ("normal", "uniform", "zeros", "smooth")
_DTYPES = {"float64": np.float64, "float32": np.float32}
# the step h must have a normal float64 square (the maximisers divide by h^2)
_H_MIN = sys.float_info.min ** 0.5
_H_MAX = sys.float_info.max ** 0.5


class Problem:
    """Data, grid, vector field, loss and regulariser of one training problem.

    Parameters
    ----------
    x : array_like, shape (n_samples, n_features)
        Inputs, one sample per row.
    y : array_like, shape (n_samples,) or (n_samples, m)
        Targets: real vectors ("squared", "lp"), +-1 ("logistic"), class indices
        ("cross_entropy").
    field : str or Field
        Vector field, one of ``pmp.fields.field_names()``: "outer" ``W sigma(x) + b``, "inner"
        ``sigma(W x + b)``, "diagonal" ``diag(w) sigma(x)``, "features"
        ``A phi(Omega x + beta)``, "perceptron" ``V sigma(W x + c)``.
    activation : str or Activation
        One of ``pmp.activations.NAMES``.
    T : float
        Final time, > 0.
    n_steps : int
        Number of Euler steps (residual layers) K >= 1. The step ``h = T / n_steps`` must
        have a normal float64 square: about ``1.5e-154 <= h <= 1.3e154``.
    loss : {"squared", "lp", "logistic", "cross_entropy"}
    p : float
        Exponent of the "lp" loss ``|z - y|_p^p``, >= 1.
    projection : None, "last", "first", "trainable" or array_like, shape (m, dim)
        Readout ``P``: the last (default) or first m coordinates, a given matrix, or a
        trainable matrix (control "P", initialised to the last m coordinates).
    reg : {"l2", "h1", "l1", "l1elem"}
    lam : float
        Regularisation weight, >= 0.
    lam1 : float
        Weight of the H^1 term (reg="h1").
    bound : float, optional
        Bound M of "l1" (ball ``|u_k| <= M``) and "l1elem" (box ``|u_j| <= M``).
    running, terminal : float
        Weights of the running (tracking) and terminal loss.
    width : int, optional
        Hidden width of "perceptron", number of features of "features".
    features : {"fourier", "relu"}
        Feature map of "features".
    bandwidth : float
        Length scale of the Fourier features.
    seed : int
        Seed of the fixed random features (>= 0).
    lift : int, optional
        Pad x with zero columns up to this dimension.
    n_classes : int, optional
        Number of classes of "cross_entropy" (default: largest label + 1); only for that
        loss.
    slope : float
        Negative slope of "leaky_relu".
    frozen : dict, optional
        name -> True (freeze the whole control) or a boolean mask broadcastable to the
        control's shape; frozen entries get zero gradient and keep their value.
    dtype : {"float64", "float32"}
        x, y and a given projection must lie within its range.
    stages : list of pmp.Stage, optional
        A problem in stages of varying width (docs/theory.md section 13): ``Problem`` then
        returns a :class:`pmp.stages.StagedProblem`, whose stages take the other keywords
        as defaults.

    Attributes
    ----------
    x : ndarray, shape (n_samples, dim)
        Inputs after lifting.
    h : float
        Step ``T / n_steps``.
    t : ndarray, shape (n_steps + 1,)
        Time grid ``t_k = k h``.
    P : ndarray, shape (m, dim)
        Readout (the initial one when trainable).
    control_shapes : dict
        name -> shape of every control array.
    """

    def __new__(cls, *args, stages=None, **kwargs):
        if stages is None:
            return super().__new__(cls)
        from ._staged import StagedProblem  # same layer; imported here to avoid a cycle

        return StagedProblem(*args, stages=stages, **kwargs)

    def __init__(self, x, y, *, field="outer", activation="tanh", T=10.0, n_steps=100,
                 loss="squared", p=2.0, projection=None, reg="l2", lam=1e-3, lam1=0.0,
                 bound=None, running=0.0, terminal=1.0, width=None, features="fourier",
                 bandwidth=1.0, seed=0, lift=None, n_classes=None, slope=0.1, frozen=None,
                 dtype="float64", stages=None):
        self.dtype = _float_dtype(dtype)
        x = finite_array(x, "x", ndim=2)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must have shape (n_samples >= 1, n_features >= 1), got {x.shape}")
        if lift is not None:
            lift = integer(lift, "lift", low=x.shape[1])
            x = np.hstack([x, np.zeros((x.shape[0], lift - x.shape[1]))])
        self.lift = lift
        self.x = fit(x, self.dtype, "x")
        self.n_samples, self.dim = x.shape

        self.T = real(T, "T", low=0.0, low_open=True)
        self.n_steps = integer(n_steps, "n_steps", low=1)
        self.h = self.T / self.n_steps
        if not sys.float_info.min <= self.h * self.h <= sys.float_info.max:
            raise ValueError(
                f"the step h = T / n_steps = {self.h:g} must have a normal float64 square "
                f"({_H_MIN:.3g} <= h <= {_H_MAX:.3g}); got T={self.T}, n_steps={self.n_steps}"
            )
        self.t = np.linspace(0.0, self.T, self.n_steps + 1)

        self.loss = loss
        self.loss_code = objectives.loss_code(loss)
        self.p = real(p, "p", low=1.0)
        self.y = np.asarray(y)
        y_kernel, m = objectives.prepare_targets(loss, y, self.n_samples, n_classes)
        self.n_classes = m if loss == "cross_entropy" else None
        fit(y_kernel, self.dtype, "y")  # within the dtype's range
        self.y_kernel = y_kernel.astype(self.dtype)  # a copy: y_kernel may view y
        self.n_outputs = m

        self.projection = projection
        self.trainable_readout = isinstance(projection, str) and projection == "trainable"
        self.P = self._readout(projection, m)

        if seed is not None:  # used by "features" only; None: the field's default
            seed = integer(seed, "seed", low=0)
        self.activation = activations.get(activation, slope)
        self.slope = self.activation.slope
        self.field = make_field(field, self.dim, self.activation, width=width,
                                features=features, bandwidth=bandwidth, seed=seed)

        self.reg = objectives.make_regularizer(reg, lam, lam1, bound)
        self.lam, self.lam1, self.bound = self.reg.lam, getattr(self.reg, "lam1", 0.0), bound
        self.running = real(running, "running", low=0.0)
        self.terminal = real(terminal, "terminal", low=0.0)

        K = self.n_steps
        self.control_names = tuple(self.field.control_names)
        self.control_shapes = {n: (K, *s) for n, s in self.field.step_shapes().items()}
        if self.trainable_readout:
            self.control_shapes["P"] = self.P.shape
        self.frozen = self._masks(frozen)

    # ----------------------------------------------------------------- construction
    def _readout(self, projection, m):
        d = self.dim
        if isinstance(projection, str) or projection is None:
            kind = "last" if projection in (None, "trainable") else projection
            if kind not in _PROJECTIONS:
                raise ValueError(
                    f"unknown projection {projection!r}; expected None, one of: "
                    f"{', '.join(_PROJECTIONS)}, or an array of shape ({m}, {d})"
                )
            if m > d:
                raise ValueError(
                    f"the loss needs m = {m} outputs but x has dim = {d} coordinates; lift the "
                    f"data (lift >= {m}) or pass projection as an ({m}, {d}) matrix"
                )
            P = np.zeros((m, d))
            cols = np.arange(d - m, d) if kind in ("last", "trainable") else np.arange(m)
            P[np.arange(m), cols] = 1.0
        else:
            P = finite_array(projection, "projection", ndim=2)
            check_shape(P, (m, d), "projection")
        return fit(P, self.dtype, "projection")

    def _masks(self, frozen):
        if frozen is None:
            return {}
        if not isinstance(frozen, Mapping):
            raise TypeError(f"frozen must be a dict name -> True or a boolean mask, got "
                            f"{type(frozen).__name__}")
        masks = {}
        for name, mask in frozen.items():
            if name not in self.control_shapes:
                raise ValueError(f"frozen names unknown control {name!r}; controls are: "
                                 f"{', '.join(self.control_shapes)}")
            shape = self.control_shapes[name]
            mask = np.ones(shape, bool) if mask is True else _boolean_mask(mask, name)
            try:
                masks[name] = np.broadcast_to(mask, shape)
            except ValueError:
                raise ValueError(f"frozen[{name!r}] must broadcast to {shape}, got shape "
                                 f"{mask.shape}") from None
        return masks

    # --------------------------------------------------------------------- helpers
    @property
    def width(self):
        """Hidden width of "perceptron" or number of features of "features" (else None)."""
        return self.field.options().get("width")

    @property
    def readout(self):
        """The readout tuple passed to the kernels (with the fixed P)."""
        return self.readout_with(self.P)

    def readout_with(self, P, at_end=True):
        """The kernels' readout tuple with readout ``P``; ``at_end=False`` for a segment of a
        segmented sweep whose last costate is given."""
        return (self.loss_code, self.p, P, self.y_kernel, self.terminal, self.running, at_end)

    def validate_controls(self, controls):
        """Check names, shapes and values; return a dict of C-contiguous arrays in ``dtype``."""
        if not hasattr(controls, "keys"):
            raise TypeError(f"controls must be a mapping name -> array, got "
                            f"{type(controls).__name__}")
        expected, given = set(self.control_shapes), set(controls)
        if expected != given:
            raise ValueError(f"controls must have keys {sorted(expected)}, got {sorted(given)}")
        out = {}
        for name, shape in self.control_shapes.items():
            arr = finite_array(controls[name], f"controls[{name!r}]", dtype=self.dtype)
            check_shape(arr, shape, f"controls[{name!r}]")
            out[name] = arr
        return out

    def riesz_weight(self, name):
        """Weight of control ``name`` in the L^2(0, T) inner product: h per step, 1 for P."""
        return 1.0 if name == "P" else self.h

    def subset(self, index):
        """The same problem on the samples ``index`` (a mini-batch); shares everything else."""
        sub = object.__new__(Problem)
        sub.__dict__.update(self.__dict__)
        sub.x = np.ascontiguousarray(self.x[index])
        sub.y = self.y[index]
        sub.y_kernel = np.ascontiguousarray(self.y_kernel[index])
        sub.n_samples = sub.x.shape[0]
        return sub

    def config(self):
        """The keyword arguments that rebuild this problem (without x and y)."""
        proj = self.projection if (self.projection is None or isinstance(self.projection, str)) \
            else self.P.tolist()
        return dict(field=self.field.name, activation=self.activation.name, T=self.T,
                    n_steps=self.n_steps, loss=self.loss, p=self.p, projection=proj,
                    reg=self.reg.name, lam=self.lam, lam1=self.lam1, bound=self.bound,
                    running=self.running, terminal=self.terminal, lift=self.lift,
                    n_classes=self.n_classes, slope=self.slope, dtype=self.dtype.name,
                    **self.field.options())

    def replace(self, x=None, y=None, **changes):
        """A problem like this one with ``changes`` to its keyword arguments (and x, y when
        given; a lifted x is taken as it is, so ``lift`` is not applied twice). Frozen
        entries are not carried over."""
        kwargs = self.config()
        kwargs.update(lift=None)
        if changes.get("loss", self.loss) != "cross_entropy":
            kwargs.update(n_classes=None)  # only for cross_entropy
        kwargs.update(changes)
        if getattr(self.field, "uses_mesh", False) and "field" not in changes:
            # a field built on a mesh (a stage's) and its quadrature-weighted regulariser
            # are objects that config() can only name: keep the field, weigh the regulariser
            from .meshes import quadrature_regularizer

            kwargs["field"] = self.field
            reg = objectives.make_regularizer(kwargs["reg"], kwargs["lam"], kwargs["lam1"],
                                              kwargs["bound"])
            kwargs["reg"] = quadrature_regularizer(reg, self.field.control_weights())
        if isinstance(kwargs["projection"], list):
            kwargs["projection"] = np.asarray(kwargs["projection"])
        return Problem(self.x if x is None else x, self.y if y is None else y, **kwargs)

    def __repr__(self):
        return (f"Problem(n_samples={self.n_samples}, dim={self.dim}, field={self.field!r}, "
                f"T={self.T}, n_steps={self.n_steps}, loss={self.loss!r}, "
                f"reg={self.reg.name!r}, lam={self.lam}, running={self.running}, "
                f"terminal={self.terminal})")


# __new__ only picks the class (with stages, a staged problem): Problem(...) has __init__'s
# signature
Problem.__signature__ = inspect.Signature(
    list(inspect.signature(Problem.__init__).parameters.values())[1:])


def _float_dtype(dtype):
    """``dtype`` (a name, type or np.dtype of float32 or float64) as an np.dtype."""
    name = None
    if isinstance(dtype, (str, type, np.dtype)):
        error = ValueError
        try:
            with warnings.catch_warnings():  # numpy deprecates some aliases ('a')
                warnings.simplefilter("ignore")
                name = np.dtype(dtype).name
        except (TypeError, ValueError):
            pass
    else:
        error = TypeError
    if name not in _DTYPES:
        raise error(f"dtype must be one of: float32, float64; got {dtype!r}")
    return np.dtype(name)


def _boolean_mask(mask, name):
    """``frozen[name]`` as a bool array: booleans, or numbers that are all 0 or 1."""
    try:
        arr = None if mask is None or isinstance(mask, str) else np.asarray(mask)
    except ValueError:  # ragged nested lists
        arr = np.asarray(None)
    if arr is None or arr.dtype.kind not in "biuf":
        shown = f"{type(mask).__name__} {mask!r}" if arr is None or arr.ndim == 0 \
            else f"{type(mask).__name__} of dtype {arr.dtype}"
        raise TypeError(f"frozen[{name!r}] must be True or a boolean mask, got {shown}")
    if arr.dtype.kind != "b":
        off = (arr != 0) & (arr != 1)
        if np.any(off):
            bad = tuple(int(i) for i in np.argwhere(off)[0]) if arr.ndim else ()
            raise ValueError(f"frozen[{name!r}] must be True or a mask of booleans (or of 0 "
                             f"and 1), got {arr[bad]} at index {bad}")
    return arr.astype(bool)


def check_problem(problem):
    """``problem`` if it is a :class:`Problem`, else a TypeError (the public sweeps)."""
    if not isinstance(problem, Problem):
        if hasattr(problem, "stages"):  # a StagedProblem: the functions of pmp.stages
            raise TypeError("this function takes an unstaged pmp.Problem, got a staged one; "
                            "use the functions of pmp (pmp.forward, pmp.value_and_grad, ...) "
                            "or of pmp.stages")
        raise TypeError(f"problem must be a pmp.Problem, got {type(problem).__name__}")
    return problem


def init_controls(problem, scheme="normal", scale=1.0, seed=0):
    """Initial controls for ``problem``.

    Parameters
    ----------
    problem : Problem
    scheme : {"normal", "uniform", "zeros", "smooth"}
        "normal": iid ``N(0, scale^2 / fan_in)``; "uniform": iid
        ``U(-a, a)`` with the same variance; "zeros"; "smooth": every entry a random smooth
        function of t (a few low-frequency Fourier modes), with the variance of "normal" -
        the smooth initialisation of Marion et al.
    scale : float
        Overall scale (>= 0); the drawn controls must be finite in the problem's dtype.
    seed : int
        Seed of the random draws (>= 0).

    Returns
    -------
    dict
        name -> ndarray of shape ``problem.control_shapes[name]``; a trainable readout starts
        at ``problem.P``.
    """
    check_problem(problem)
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of: "
                         f"{', '.join(INIT_SCHEMES)}")
    scale = real(scale, "scale", low=0.0)
    seed = integer(seed, "seed", low=0)
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in problem.control_shapes.items():
        if name == "P":
            out[name] = problem.P.copy()
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            try:
                u = _draw(problem, rng, scheme, scale, name, shape)
            except OverflowError:  # uniform's range beyond float64
                u = np.full(shape, np.inf)
            u = np.ascontiguousarray(u, dtype=problem.dtype)
        if not np.all(np.isfinite(u)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(u))[0])
            raise ValueError(f"scale must keep the drawn controls finite in "
                             f"{problem.dtype.name}, got scale={scale} (controls[{name!r}] "
                             f"has {u[bad]} at index {bad})")
        out[name] = u
    return out


def _draw(problem, rng, scheme, scale, name, shape):
    """One control of :func:`init_controls`, in float64."""
    std = scale / np.sqrt(problem.field.fan_in(name))
    if scheme == "zeros":
        return np.zeros(shape)
    if scheme == "normal":
        return rng.normal(0.0, std, size=shape)
    if scheme == "uniform":
        a = std * np.sqrt(3.0)
        return rng.uniform(-a, a, size=shape)
    n_modes = 4  # "smooth"
    s = (problem.t[:-1] + 0.5 * problem.h) / problem.T  # midpoints in [0, 1)
    coef = rng.normal(0.0, std / np.sqrt(n_modes), size=(n_modes, *shape[1:]))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_modes, *shape[1:]))
    modes = np.arange(n_modes).reshape((-1, 1) + (1,) * (len(shape) - 1))
    return np.sqrt(2.0) * np.sum(
        coef[:, None] * np.cos(np.pi * modes * s.reshape((1, -1) + (1,) * (len(shape) - 1))
                               + phase[:, None]), axis=0)
