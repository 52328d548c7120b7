"""Vector fields f(x, u) of the residual network ``x_{k+1} = x_k + h f(x_k, u_k)``.

=============  ================================  =====================================
name           f(x, u)                           controls (first axis: step k)
=============  ================================  =====================================
"outer"        W sigma(x) + b                    W (K, d, d), b (K, d)
"inner"        sigma(W x + b)                    W (K, d, d), b (K, d)
"diagonal"     diag(w) sigma(x)                  w (K, d)
"features"     A phi(Omega x + beta)             A (K, d, width); Omega, beta fixed
"perceptron"   V sigma(W x + c)                  V (K, d, width), W (K, width, d), c (K, width)
"integral"     sigma(W diag(q) x + b)            W (K, d, d), b (K, d); q the mesh's
=============  ================================  =====================================

"outer", "diagonal" and "features" are linear in the control (docs/theory.md section 8):
``f(x, U) = U psi(x)``. "features" draws ``Omega`` and ``beta`` once from a seed (Barboni,
Peyre, Vialard): random Fourier features ``phi = sqrt(2/width) cos`` with
``Omega ~ N(0, 1/bandwidth^2)``, ``beta ~ U[0, 2 pi)``, or random ReLU features
``phi = sqrt(2/width) max(., 0)`` with ``Omega ~ N(0, 1/d)``, ``beta ~ N(0, 1)``.
"integral" is the integro-differential field ``sigma(int w(t, x, xi) z(xi) dxi + b(t, x))``
on a mesh (:mod:`pmp.meshes`; docs/theory.md section 13): the state holds ``z`` at the nodes,
``q`` are the quadrature weights, and a stage on a mesh gives it them.

A field is one class that states its facts (:class:`Field` lists them) and runs its kernels on
a block of rows; the sweeps (:mod:`pmp.sweeps`) run the blocks, the maximiser
(:mod:`pmp.maximize`) reads the field's :meth:`Field.control_form`. Add one by subclassing
:class:`Field` and calling :func:`register_field`.
"""
import inspect
import math
from dataclasses import dataclass

import numpy as np

from ._kernels import codes, lazy
from ._validation import check_shape, finite_array, integer, lookup, lookup_class, real, register
from .meshes import Mesh

_sw = lazy("sweeps")


# ------------------------------------------------------------------- control forms
@dataclass(frozen=True)
class LinearForm:
    """``f(x, u_k) = U_k psi(x)``: the field is linear in its controls, packed as the columns
    of one matrix ``U_k`` of shape (d, q) per step.

    Attributes
    ----------
    names : tuple of str
        The controls packed into ``U``, in column order: a (K, d, c) control gives c columns,
        a (K, d) control one (``("W", "b")`` packs ``[W b]``).
    psi : {"activation_and_one", "random_features"}
        ``psi(x) = [sigma(x); 1]`` (``code``, ``param``: the activation), or
        ``psi(x) = param * phi(Omega x + beta)`` (``code``: the feature map ``phi``).
    code : int
        Kernel code of sigma or phi (:mod:`pmp._kernels.activations`).
    param : float
    omega : ndarray, shape (q, d), optional
    beta : ndarray, shape (q,), optional
    """

    names: tuple
    psi: str
    code: int
    param: float
    omega: np.ndarray | None = None
    beta: np.ndarray | None = None

    def pack(self, controls):
        """``U``, shape (K, d, q), from the controls ``names``."""
        columns = [controls[n] if controls[n].ndim == 3 else controls[n][..., None]
                   for n in self.names]
        return columns[0] if len(columns) == 1 else np.concatenate(columns, axis=2)

    def unpack(self, U, like):
        """The controls ``names`` (C-contiguous, dtypes of ``like``) from ``U`` (K, d, q)."""
        out, start = {}, 0
        for n in self.names:
            vector = like[n].ndim == 2
            width = 1 if vector else like[n].shape[2]
            block = U[:, :, start] if vector else U[:, :, start:start + width]
            out[n] = np.ascontiguousarray(block, dtype=like[n].dtype)
            start += width
        return out


@dataclass(frozen=True)
class DiagonalForm:
    """``f(x, u_k) = diag(w_k) sigma(x)``: linear in the control, coordinate by coordinate.

    Attributes
    ----------
    name : str
        The control ``w``, shape (K, d).
    code, param
        The activation sigma.
    """

    name: str
    code: int
    param: float


@dataclass(frozen=True)
class TwoLayerForm:
    """``f(x, u_k) = V sigma(W x + c)`` (``V`` the identity when ``outer`` is None): not
    linear in the control; maximised by an iterative solver.

    Attributes
    ----------
    outer : str or None
        Name of ``V`` (K, d, m), or None for ``V = I``.
    weight, bias : str
        Names of ``W`` (K, m, d) and ``c`` (K, m).
    code, param
        The activation sigma.
    columns : ndarray, shape (d,), optional
        The weight matrix acts as ``W diag(columns)``: ``f = V sigma(W diag(columns) x + c)``
        (the quadrature weights of the "integral" field); None for ``W`` itself.
    """

    outer: str | None
    weight: str
    bias: str
    code: int
    param: float
    columns: np.ndarray | None = None


# ------------------------------------------------------------------------- the base
class Field:
    """Base class of the vector fields; its subclass contract.

    A subclass must provide

    1. ``name`` (the registry key) and ``control_names``, the controls of one step;
    2. :meth:`step_shapes`: name -> shape of one step's control (without the step axis);
    3. :meth:`forward_rows`: the forward sweep on the rows ``r0:r1`` of the states;
    4. :meth:`backward_rows`: the costate sweep, the gradient and the readout on those
       rows, returning ``(Phi(X_K), sum_{k<K} Phi(X_k))`` over them;
    5. :meth:`control_form`: how the field depends on its controls (a :class:`LinearForm`,
       :class:`DiagonalForm` or :class:`TwoLayerForm`), which the MSA's maximiser reads.

    and may override

    6. :attr:`stores_activations`: the forward sweep can keep the activations for the
       costate sweep (default False: it recomputes them);
    7. :attr:`homogeneous`: ``f(x, c u) = c f(x, u)`` for ``c > 0`` (default False);
    8. :attr:`discrete_controls`: the controls the discrete (Li & Hao) method may binarise
       (default: every matrix-valued control);
    9. :meth:`fan_in` (initialisation), :meth:`speed_bound` (the displacement bound of
       :func:`pmp.analysis.displacement_bound`), :meth:`options` (its keyword arguments
       beyond ``dim`` and ``activation``, for :meth:`pmp.Problem.config`) and
       :meth:`maximize_statistics` (per-step sums the costate sweep hands the maximiser);
    10. :attr:`uses_mesh` (default False): the field lives on a mesh (:mod:`pmp.meshes`),
        its constructor takes ``mesh``, a stage with ``mesh=`` builds it, and
        :meth:`control_weights` gives the quadrature weight of every control entry, by which
        the stage's regulariser is weighted.

    The kernels write into the arrays they are given and never allocate the trajectories;
    a given thread count gives bitwise-reproducible results because the sweeps add the
    blocks' sums in a fixed order.
    """

    name = ""
    control_names = ()
    stores_activations = False
    uses_mesh = False

    def __init__(self, dim, activation):
        self.dim = dim
        self.activation = activation

    def step_shapes(self):
        """dict name -> shape of one step's control (without the step axis)."""
        raise NotImplementedError

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        """Fill ``xs[1:, r0:r1]`` from ``xs[0, r0:r1]``; xs (K + 1, N, d).

        ``store`` (K, N, d) receives the activations when :attr:`stores_activations`, else it
        is (1, N, d) scratch. ``final_only``: only ``xs[K]`` is wanted (a kernel may leave
        the other steps unset). ``h`` is a scalar of the states' dtype."""
        raise NotImplementedError

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        """The costate sweep on the rows ``r0:r1``: fill ``ps[:, r0:r1]`` (all K + 1 steps, or
        two rolling slots indexed by step % 2), add the rows' Hamiltonian gradient to
        ``grads`` and their readout gradient to ``gP``; return ``(Phi(X_K), sum_{k<K}
        Phi(X_k))`` over the rows (``readout`` holds their targets).

        ``stored``: ``store`` holds the activations of this forward sweep. ``statistics``:
        arrays of :meth:`maximize_statistics`' shapes to fill, when the field has them."""
        raise NotImplementedError

    def control_form(self):
        """How f depends on the controls: :class:`LinearForm`, :class:`DiagonalForm` or
        :class:`TwoLayerForm`."""
        raise NotImplementedError

    @property
    def homogeneous(self):
        """True when ``f(x, c u) = c f(x, u)`` for ``c > 0`` (docs/theory.md section 6)."""
        return False

    @property
    def discrete_controls(self):
        """The controls that may take discrete values (Li & Hao): the matrices."""
        return tuple(n for n, s in self.step_shapes().items() if len(s) == 2)

    def fan_in(self, name):
        """Number of inputs one entry of control ``name`` multiplies (for initialisation)."""
        shape = self.step_shapes()[name]
        return shape[-1] if len(shape) == 2 else 1

    def speed_bound(self):
        """A constant ``c`` with ``|f(x, u)| <= c |u|`` for every x, or None."""
        return None

    def options(self):
        """The keyword arguments (besides dim and activation) that rebuild this field."""
        return {}

    def maximize_statistics(self, n_steps):
        """Shapes of the arrays the costate sweep can fill with what the MSA's maximisation
        needs (:meth:`backward_rows`), or None where the maximiser reads the trajectories."""
        return None

    def control_weights(self):
        """name -> the quadrature weight of every entry of one step's control (an array
        broadcastable to :meth:`step_shapes`), for a field on a mesh; None otherwise."""
        return None

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim}, activation={self.activation.name!r})"


def _scratch(xs, rows, *cols):
    """Work arrays of shape (rows, c) in the dtype of the states."""
    return [np.empty((rows, c), dtype=xs.dtype) for c in cols]


def _readout_scratch(xs, rows, readout):
    m = readout[2].shape[0]
    return _scratch(xs, rows, m, m)


# ------------------------------------------------------------------------ the fields
class _MatrixAndBias(Field):
    """The fields with controls ``W`` (d, d) and ``b`` (d,) per step, whose costate kernels
    take the same arguments: :class:`Outer` and :class:`Inner`."""

    control_names = ("W", "b")
    _backward_kernel = None  # name of the large-d costate kernel in pmp._kernels.sweeps

    def step_shapes(self):
        d = self.dim
        return {"W": (d, d), "b": (d,)}

    @property
    def stores_activations(self):
        return self.activation.code in codes.SLOPE_FROM_VALUE

    def _kernel_args(self, xs, ps, controls, h, readout, grads, gP, store, stored):
        a = self.activation
        return (xs, ps, controls["W"], controls["b"], h, a.code, a.param, readout, grads["W"],
                grads["b"], gP, store, stored)

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        rows = r1 - r0
        return getattr(_sw, self._backward_kernel)(
            *self._kernel_args(xs, ps, controls, h, readout, grads, gP, store, stored),
            *_scratch(xs, rows, self.dim), *_readout_scratch(xs, rows, readout), r0, r1)


class Outer(_MatrixAndBias):
    """``f(x, u) = W sigma(x) + b`` (nODE2 of Esteve et al.)."""

    name = "outer"
    _backward_kernel = "outer_backward"

    @property
    def homogeneous(self):
        return True

    def control_form(self):
        a = self.activation
        return LinearForm(("W", "b"), "activation_and_one", a.code, a.param)

    def speed_bound(self):
        # |W sigma(x) + b| <= |[W b]| |[sigma(x); 1]| <= sqrt(d + 1) |u| when |sigma| <= 1
        return math.sqrt(self.dim + 1.0) if self.activation.bounded else None

    @property
    def _small(self):
        """Transposed small-dimension kernels (:data:`pmp._kernels.codes.SMALL_DIM`)."""
        return self.dim <= codes.SMALL_DIM

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        a, d = self.activation, self.dim
        if self._small:
            _sw.outer_forward_small(xs, controls["W"], controls["b"], h, a.code, a.param, store,
                                    np.empty((2, d, r1 - r0), xs.dtype),
                                    *_scratch(xs, d, r1 - r0), final_only, r0, r1)
        else:
            _sw.outer_forward(xs, controls["W"], controls["b"], h, a.code, a.param, store,
                              final_only, r0, r1)

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        if not self._small:
            return super().backward_rows(xs, ps, controls, h, readout, grads, gP, store, stored,
                                         r0, r1)
        d, rows = self.dim, r1 - r0
        if statistics is None:
            statistics = tuple(np.empty(shape, xs.dtype)
                               for shape in self.maximize_statistics(0))
        scratch = (*_scratch(xs, d, rows, rows, rows, rows),
                   *_readout_scratch(xs, rows, readout))
        return _sw.outer_backward_small(
            *self._kernel_args(xs, ps, controls, h, readout, grads, gP, store, stored),
            scratch, statistics, r0, r1)

    def maximize_statistics(self, n_steps):
        """For small d, the shapes of ``G_k``, ``S_k`` and the costate Gram blocks ``Q_k``
        (see :func:`pmp._kernels.sweeps.outer_backward_small`): they spare the maximiser
        its own pass over the trajectories."""
        if not self._small:
            return None
        d = self.dim
        return (n_steps, d, d + 1), (n_steps, d + 1, d + 1), (n_steps, d, d, d)


class Inner(_MatrixAndBias):
    """``f(x, u) = sigma(W x + b)`` (nODE of Esteve et al.)."""

    name = "inner"
    _backward_kernel = "inner_backward"

    @property
    def homogeneous(self):
        return self.activation.homogeneous

    def control_form(self):
        a = self.activation
        return TwoLayerForm(None, "W", "b", a.code, a.param)

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        # the costate sweep reads every state (the gradient is p sigma' x^T): all are kept
        a = self.activation
        _sw.inner_forward(xs, controls["W"], controls["b"], h, a.code, a.param, store,
                          np.zeros(self.dim, dtype=xs.dtype), r0, r1)


class Integral(Inner):
    """``f(z, u) = sigma(W diag(q) z + b)``: the integro-differential field
    ``dz/dt(x) = sigma(int_Omega w(t, x, xi) z(xi) dxi + b(t, x))`` on a mesh of Omega.

    The state holds ``z`` at the mesh's nodes, ``W[i, l] = w(t, xi_i, xi_l)``,
    ``b[i] = b(t, xi_i)`` and ``q`` are the mesh's quadrature weights (docs/theory.md
    section 13). It runs the kernels of "inner" with ``W diag(q)`` and scales their gradient
    of ``W diag(q)`` by ``q`` (the chain rule); a stage on a mesh weights its regulariser by
    :meth:`control_weights` (:class:`pmp.meshes.QuadratureL2`).

    Parameters
    ----------
    dim : int
        Number of nodes of the mesh.
    activation : Activation
    mesh : pmp.meshes.Mesh or array_like, shape (dim,)
        The mesh, or its quadrature weights ``q`` (each > 0). Give a stage the mesh
        (``pmp.Stage(mesh=...)``) and it builds the field and weighs the regulariser; an
        instance given to a problem directly keeps that problem's regulariser as it is.
    """

    name = "integral"
    uses_mesh = True

    def __init__(self, dim, activation, mesh=None):
        super().__init__(dim, activation)
        if mesh is None:
            raise ValueError("field 'integral' needs the mesh it integrates over: give it "
                             "through a stage, pmp.Problem(x, y, field='integral', stages="
                             "[pmp.Stage(mesh=pmp.meshes.interval(n))]), got mesh=None")
        q = mesh.weights if isinstance(mesh, Mesh) else finite_array(mesh, "mesh", ndim=1)
        check_shape(q, (dim,), "the mesh's weights (one per node, dim)")
        if np.any(q <= 0.0):
            raise ValueError(f"the mesh's weights must be > 0 for field 'integral', got "
                             f"{q[q <= 0.0][0]} at node {int(np.argmax(q <= 0.0))}")
        self.mesh = mesh if isinstance(mesh, Mesh) else None
        self.weights = np.array(q, dtype=np.float64)
        self._typed = {}

    def _q(self, dtype):
        """The weights in the states' dtype (cached)."""
        if dtype not in self._typed:
            self._typed[dtype] = self.weights.astype(dtype)
        return self._typed[dtype]

    def _effective(self, controls, dtype):
        """The controls of "inner": ``W diag(q)`` and ``b``."""
        return {"W": controls["W"] * self._q(dtype), "b": controls["b"]}

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        super().forward_rows(xs, self._effective(controls, xs.dtype), h, store, r0, r1,
                             final_only)

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        out = super().backward_rows(xs, ps, self._effective(controls, xs.dtype), h, readout,
                                    grads, gP, store, stored, r0, r1, statistics)
        grads["W"] *= self._q(grads["W"].dtype)  # d/dW = (d/d(W diag(q))) diag(q)
        return out

    def control_form(self):
        a = self.activation
        return TwoLayerForm(None, "W", "b", a.code, a.param, columns=self.weights)

    def control_weights(self):
        """``{"W": q q^T, "b": q}``: the quadrature of ``int int w^2 dx dxi`` and
        ``int b^2 dx``."""
        return {"W": np.outer(self.weights, self.weights), "b": self.weights.copy()}

    def fan_in(self, name):
        """1: every entry is the sample of a function (``init_controls`` draws them with
        the variance ``scale^2``)."""
        return 1

    def __repr__(self):
        where = repr(self.mesh) if self.mesh is not None else f"{self.dim} weights"
        return f"Integral(dim={self.dim}, mesh={where}, activation={self.activation.name!r})"


class Diagonal(Field):
    """``f(x, u) = diag(w) sigma(x)`` (the controllability example of Esteve et al.)."""

    name = "diagonal"
    control_names = ("w",)

    def step_shapes(self):
        return {"w": (self.dim,)}

    @property
    def homogeneous(self):
        return True

    @property
    def discrete_controls(self):
        return ("w",)

    def control_form(self):
        return DiagonalForm("w", self.activation.code, self.activation.param)

    def speed_bound(self):
        # |w * sigma(x)| <= |w| when |sigma| <= 1
        return 1.0 if self.activation.bounded else None

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        a = self.activation
        (s,) = _scratch(xs, r1 - r0, self.dim)
        zero = np.zeros(self.dim, dtype=xs.dtype)
        _sw.diagonal_forward(xs, controls["w"], h, a.code, a.param, s, zero, r0, r1)

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        a = self.activation
        rows = r1 - r0
        return _sw.diagonal_backward(
            xs, ps, controls["w"], h, a.code, a.param, readout, grads["w"], gP,
            *_scratch(xs, rows, self.dim, self.dim), *_readout_scratch(xs, rows, readout),
            r0, r1,
        )


FEATURE_MAPS = {"fourier": codes.COS, "relu": codes.SCALED_RELU}


class Features(Field):
    """``f(x, u) = A phi(Omega x + beta)`` over fixed random features (Barboni et al.).

    Parameters
    ----------
    dim : int
    activation : Activation
        Unused by the dynamics (the feature map is ``features``); kept for a uniform API.
    width : int
        Number of features ``q``.
    features : {"fourier", "relu"}
    bandwidth : float
        Length scale of the Fourier features: ``Omega ~ N(0, 1/bandwidth^2)``.
    seed : int
        Seed of ``Omega`` and ``beta`` (>= 0).
    """

    name = "features"
    control_names = ("A",)

    def __init__(self, dim, activation, width, features="fourier", bandwidth=1.0, seed=0):
        super().__init__(dim, activation)
        self.width = integer(width, "width", low=1)
        self.feature_code = lookup(FEATURE_MAPS, features, "feature map", "features")
        self.features = features
        self.bandwidth = real(bandwidth, "bandwidth", low=0.0, low_open=True)
        self.seed = integer(seed, "seed", low=0)
        rng = np.random.default_rng(seed)
        if features == "fourier":
            self.omega = rng.normal(0.0, 1.0 / bandwidth, size=(width, dim))
            self.beta = rng.uniform(0.0, 2.0 * math.pi, size=width)
        else:
            self.omega = rng.normal(0.0, 1.0 / math.sqrt(dim), size=(width, dim))
            self.beta = rng.normal(0.0, 1.0, size=width)
        if not np.all(np.isfinite(self.omega)):  # 1 / bandwidth overflows
            raise ValueError(f"bandwidth must be large enough for finite features "
                             f"(Omega ~ N(0, 1/bandwidth^2)), got {self.bandwidth}")
        self.amplitude = math.sqrt(2.0 / width)

    def step_shapes(self):
        return {"A": (self.dim, self.width)}

    @property
    def homogeneous(self):
        return True

    def options(self):
        return dict(width=self.width, features=self.features, bandwidth=self.bandwidth,
                    seed=self.seed)

    def control_form(self):
        return LinearForm(("A",), "random_features", self.feature_code, self.amplitude,
                          self.omega, self.beta)

    def _fixed(self, xs):
        return self.omega.astype(xs.dtype), self.beta.astype(xs.dtype)

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        (phi,) = _scratch(xs, r1 - r0, self.width)
        zero = np.zeros(self.dim, dtype=xs.dtype)
        _sw.features_forward(xs, controls["A"], *self._fixed(xs), h, self.feature_code,
                             self.amplitude, phi, zero, r0, r1)

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        q, rows = self.width, r1 - r0
        return _sw.features_backward(
            xs, ps, controls["A"], *self._fixed(xs), h, self.feature_code, self.amplitude,
            readout, grads["A"], gP, *_scratch(xs, rows, q, q, q, self.dim),
            *_readout_scratch(xs, rows, readout), r0, r1,
        )

    def __repr__(self):
        return (f"Features(dim={self.dim}, width={self.width}, features={self.features!r}, "
                f"seed={self.seed})")


class Perceptron(Field):
    """``f(x, u) = V sigma(W x + c)``: a two-layer residual block (Marion et al.)."""

    name = "perceptron"
    control_names = ("V", "W", "c")

    def __init__(self, dim, activation, width):
        super().__init__(dim, activation)
        self.width = integer(width, "width", low=1)

    def step_shapes(self):
        d, m = self.dim, self.width
        return {"V": (d, m), "W": (m, d), "c": (m,)}

    def options(self):
        return dict(width=self.width)

    def control_form(self):
        a = self.activation
        return TwoLayerForm("V", "W", "c", a.code, a.param)

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        a = self.activation
        (s,) = _scratch(xs, r1 - r0, self.width)
        zero = np.zeros(self.dim, dtype=xs.dtype)
        _sw.perceptron_forward(xs, controls["V"], controls["W"], controls["c"], h, a.code,
                               a.param, s, zero, r0, r1)

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        a = self.activation
        m, rows = self.width, r1 - r0
        return _sw.perceptron_backward(
            xs, ps, controls["V"], controls["W"], controls["c"], h, a.code, a.param, readout,
            grads["V"], grads["W"], grads["c"], gP, *_scratch(xs, rows, m, m, m, self.dim),
            *_readout_scratch(xs, rows, readout), r0, r1,
        )

    def __repr__(self):
        return (f"Perceptron(dim={self.dim}, width={self.width}, "
                f"activation={self.activation.name!r})")


# ---------------------------------------------------------------------- the registry
FIELDS = {}


def register_field(cls):
    """Make the :class:`Field` subclass ``cls`` available by its ``name``; returns ``cls``."""
    return register(FIELDS, cls, Field, "field")


for _cls in (Outer, Inner, Diagonal, Features, Perceptron, Integral):
    register_field(_cls)


def field_names():
    """The registered fields' names, sorted."""
    return tuple(sorted(FIELDS))


def field_class(field):
    """The :class:`Field` subclass of a name, a class or an instance."""
    return lookup_class(FIELDS, Field, field, "field")


def make_field(field, dim, activation, **options):
    """A :class:`Field` from a name, a class or an instance.

    ``options`` (``width``, ``features``, ``bandwidth``, ``seed``, ...) are passed to the
    field's constructor where it takes them; a required one that is None is an error."""
    if isinstance(field, Field):
        return field
    cls = field if isinstance(field, type) and issubclass(field, Field) else None
    if cls is None:
        cls = lookup(FIELDS, field, "field")
    kwargs = {}
    for key, param in list(inspect.signature(cls.__init__).parameters.items())[3:]:
        value = options.get(key)
        if value is None and param.default is inspect.Parameter.empty:
            raise ValueError(f"{key} must be given for field {cls.name!r}, got None")
        if value is not None:
            kwargs[key] = value
    return cls(dim, activation, **kwargs)
