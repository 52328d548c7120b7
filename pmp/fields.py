"""Vector fields f(x, u) of the residual network ``x_{k+1} = x_k + h f(x_k, u_k)``.

=============  ================================  =====================================
name           f(x, u)                           controls (first axis: step k)
=============  ================================  =====================================
"outer"        W sigma(x) + b                    W (K, d, d), b (K, d)
"inner"        sigma(W x + b)                    W (K, d, d), b (K, d)
"diagonal"     diag(w) sigma(x)                  w (K, d)
"features"     A phi(Omega x + beta)             A (K, d, width); Omega, beta fixed
"perceptron"   V sigma(W x + c)                  V (K, d, width), W (K, width, d), c (K, width)
=============  ================================  =====================================

"outer", "diagonal" and "features" are linear in the control (THEORY.md section 8):
``f(x, U) = U psi(x)``. "features" draws ``Omega`` and ``beta`` once from a seed (Barboni,
Peyre, Vialard): random Fourier features ``phi = sqrt(2/width) cos`` with
``Omega ~ N(0, 1/bandwidth^2)``, ``beta ~ U[0, 2 pi)``, or random ReLU features
``phi = sqrt(2/width) max(., 0)`` with ``Omega ~ N(0, 1/d)``, ``beta ~ N(0, 1)``.

A field is one small class: its control shapes and two kernel calls. Add one by subclassing
:class:`Field` and registering it in :data:`FIELDS`.
"""
import math

import numpy as np

from ._kernels import activations as _act
from ._kernels import sweeps as _sw
from ._validation import integer, lookup, real
from .threads import map_blocks, row_blocks


class Field:
    """Base class of the vector fields.

    Subclasses define ``name``, ``control_names``, ``linear_in_control``,
    :meth:`step_shapes` and the two kernel calls :meth:`forward` and :meth:`backward`.
    """

    name = ""
    control_names = ()
    linear_in_control = False

    def __init__(self, dim, activation):
        self.dim = dim
        self.activation = activation

    def step_shapes(self):
        """dict name -> shape of one step's control (without the step axis)."""
        raise NotImplementedError

    @property
    def homogeneous(self):
        """True when ``f(x, c u) = c f(x, u)`` for ``c > 0`` (THEORY.md section 6)."""
        return False

    def fan_in(self, name):
        """Number of inputs one entry of control ``name`` multiplies (for initialisation)."""
        shape = self.step_shapes()[name]
        return shape[-1] if len(shape) == 2 else 1

    # activations the forward sweep can hand to the backward sweep (None: it recomputes them)
    stores_activations = False

    def activation_store(self, xs, store, workspace=None):
        """The array the sweeps keep activations in: (K, N, d) when ``store`` and the field
        can reuse them (:attr:`stores_activations`), else (1, N, d) scratch; taken from
        ``workspace`` (see :func:`pmp.value_and_grad`) when given."""
        K, n, d = xs.shape[0] - 1, xs.shape[1], xs.shape[2]
        shape = (K if store and self.stores_activations else 1, n, d)
        return buffer(workspace, "activations", shape, xs.dtype)

    def forward(self, xs, controls, h, store=None, final_only=False):
        """Fill ``xs[1:]`` from ``xs[0]``; xs (K + 1, N, d).

        ``store``, from :meth:`activation_store`, receives what the backward sweep can reuse.
        ``final_only``: only ``xs[K]`` is wanted (a kernel may leave the other steps unset).
        Row blocks run on :func:`pmp.get_threads` threads.
        """
        if store is None:
            store = self.activation_store(xs, False)
        h = xs.dtype.type(h)  # float32 sweeps stay in float32 arithmetic
        map_blocks(lambda r0, r1, i: self._forward_rows(xs, controls, h, store, r0, r1,
                                                        final_only),
                   row_blocks(xs.shape[1]))

    def backward(self, xs, ps, controls, h, readout, grads, gP, store=None, forward=False,
                 statistics=None, block_gP=None):
        """Fill ``ps`` and ``grads`` (dict, Hamiltonian part); return ``(Phi(X_K), sum_{k<K}
        Phi(X_k))``.

        ``ps`` is (K + 1, N, d), or (2, N, d) when only the gradient is wanted (two rolling
        slots). ``store`` is the forward sweep's (its stored activations are reused and may be
        overwritten) or None. Row blocks run on separate threads; each block sums its
        gradient in its own arrays and the blocks' sums are added in a fixed order, so a
        given thread count gives bitwise-reproducible results.

        ``forward=True`` runs :meth:`forward` first, block by block (``xs[0]`` set, ``store``
        from :meth:`activation_store`): a block's costates depend on its own rows only, so
        each thread runs both sweeps on its rows without waiting for the others.

        ``statistics``, a tuple of arrays (see :meth:`maximize_statistics`), receives the sums
        over the rows that the MSA's maximisation needs, computed on the way.

        ``block_gP``, one array per row block, receives the blocks' readout gradients instead
        of ``gP``; the caller adds them up. A sweep in segments keeps them across its calls,
        so that its sum is the unsegmented one bit for bit.
        """
        stored = store is not None and store.shape[0] == xs.shape[0] - 1 \
            and self.stores_activations
        if store is None:
            store = self.activation_store(xs, False)
        h = xs.dtype.type(h)
        n = xs.shape[1]
        bounds = row_blocks(n)
        own_gP = block_gP is None
        if own_gP:
            block_gP = [gP] + [np.zeros_like(gP) for _ in bounds[2:]]
        outputs = [(grads, block_gP[0])] + [({k: np.empty_like(v) for k, v in grads.items()},
                                             block_gP[i]) for i in range(1, len(bounds) - 1)]
        block_statistics = [statistics] + [tuple(np.empty_like(a) for a in statistics)
                                           for _ in bounds[2:]] if statistics else None

        # the backward sweep with stored activations reads no state but X_K, unless a
        # running cost needs them all
        final_only = stored and readout[5] == 0.0

        def block(r0, r1, i):
            if forward:
                self._forward_rows(xs, controls, h, store, r0, r1, final_only)
            weight = (r1 - r0) / n  # Phi is a mean over all rows: weigh the block's mean
            code, param, P, y, terminal, running, at_end = readout
            rows = (code, param, P, y[r0:r1], terminal * weight, running * weight, at_end)
            extra = {} if statistics is None else {"statistics": block_statistics[i]}
            phi, run = self._backward_rows(xs, ps, controls, h, rows, *outputs[i], store,
                                           stored, r0, r1, **extra)
            return weight * phi, weight * run

        parts = map_blocks(block, bounds)
        for block_grads, _ in outputs[1:]:
            for name in grads:
                grads[name] += block_grads[name]
        if own_gP:
            for part in block_gP[1:]:
                gP += part
        for sums in (block_statistics or [])[1:]:
            for total, part in zip(statistics, sums):
                total += part
        return (sum(p[0] for p in parts), sum(p[1] for p in parts)) if len(parts) > 1 \
            else parts[0]

    def _forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        """The forward kernel on the rows ``r0:r1``; ``final_only``: only ``X_K`` is needed
        (a kernel may skip writing the other states)."""
        raise NotImplementedError

    def _backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1):
        """The backward kernel on the rows ``r0:r1`` (``readout`` holds their targets)."""
        raise NotImplementedError

    def maximize_statistics(self, n_steps):
        """Shapes of the arrays the costate sweep can fill with what the MSA's maximisation
        needs (:meth:`backward`), or None where the maximiser reads the trajectories."""
        return None

    def __repr__(self):
        return f"{type(self).__name__}(dim={self.dim}, activation={self.activation.name!r})"


def buffer(workspace, name, shape, dtype):
    """``workspace[name]`` if it has this shape and dtype, else a new array stored there
    (``workspace`` None: a new array). Reusing the trajectories' buffers between iterations
    saves faulting in fresh pages of a 50-200 MB allocation each time (measured: a large
    part of an iteration on W2 and W3)."""
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    arr = workspace.get(name)
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        arr = workspace[name] = np.empty(shape, dtype=dtype)
    return arr


def _scratch(xs, rows, *cols):
    """Work arrays of shape (rows, c) in the dtype of the states."""
    return [np.empty((rows, c), dtype=xs.dtype) for c in cols]


def _readout_scratch(xs, rows, readout):
    m = readout[2].shape[0]
    return _scratch(xs, rows, m, m)


class Outer(Field):
    """``f(x, u) = W sigma(x) + b`` (nODE2 of Esteve et al.)."""

    name = "outer"
    control_names = ("W", "b")
    linear_in_control = True

    def step_shapes(self):
        d = self.dim
        return {"W": (d, d), "b": (d,)}

    @property
    def homogeneous(self):
        return True

    # Inner reuses everything but its forward sweep and this kernel (same arguments)
    _backward_kernel = staticmethod(_sw.outer_backward)

    @property
    def stores_activations(self):
        return self.activation.code in _sw.SLOPE_FROM_VALUE

    def _forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        a, d = self.activation, self.dim
        if self._small:
            _sw.outer_forward_small(xs, controls["W"], controls["b"], h, a.code, a.param, store,
                                    np.empty((2, d, r1 - r0), xs.dtype), *_scratch(xs, d, r1 - r0),
                                    final_only, r0, r1)
            return
        _sw.outer_forward(xs, controls["W"], controls["b"], h, a.code, a.param, store,
                          final_only, r0, r1)

    def _backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                       statistics=None):
        a, d, rows = self.activation, self.dim, r1 - r0
        args = (xs, ps, controls["W"], controls["b"], h, a.code, a.param, readout, grads["W"],
                grads["b"], gP, store, stored)
        if self._small:
            if statistics is None:
                statistics = tuple(np.empty(shape, xs.dtype)
                                   for shape in self.maximize_statistics(0))
            return _sw.outer_backward_small(*args, *_scratch(xs, d, rows, rows, rows, rows),
                                            *_readout_scratch(xs, rows, readout), *statistics,
                                            r0, r1)
        return self._backward_kernel(*args, *_scratch(xs, rows, d),
                                     *_readout_scratch(xs, rows, readout), r0, r1)

    @property
    def _small(self):
        """Transposed small-dimension kernels (:data:`pmp._kernels.sweeps.SMALL_DIM`)."""
        return type(self) is Outer and self.dim <= _sw.SMALL_DIM

    def maximize_statistics(self, n_steps):
        """For small d, the shapes of ``G_k``, ``S_k`` and the costate Gram blocks ``Q_k``
        (see :func:`pmp._kernels.sweeps.outer_backward_small`): they spare the maximiser
        its own pass over the trajectories."""
        if not self._small:
            return None
        d = self.dim
        return (n_steps, d, d + 1), (n_steps, d + 1, d + 1), (n_steps, d, d, d)


class Inner(Outer):
    """``f(x, u) = sigma(W x + b)`` (nODE of Esteve et al.)."""

    name = "inner"
    linear_in_control = False

    @property
    def homogeneous(self):
        return self.activation.homogeneous

    _backward_kernel = staticmethod(_sw.inner_backward)

    def _forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        # the costate sweep reads every state (the gradient is p sigma' x^T): all are kept
        a = self.activation
        _sw.inner_forward(xs, controls["W"], controls["b"], h, a.code, a.param, store,
                          np.zeros(self.dim, dtype=xs.dtype), r0, r1)


class Diagonal(Field):
    """``f(x, u) = diag(w) sigma(x)`` (the controllability example of Esteve et al.)."""

    name = "diagonal"
    control_names = ("w",)
    linear_in_control = True

    def step_shapes(self):
        return {"w": (self.dim,)}

    @property
    def homogeneous(self):
        return True

    def _forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        a = self.activation
        (s,) = _scratch(xs, r1 - r0, self.dim)
        zero = np.zeros(self.dim, dtype=xs.dtype)
        _sw.diagonal_forward(xs, controls["w"], h, a.code, a.param, s, zero, r0, r1)

    def _backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1):
        a = self.activation
        rows = r1 - r0
        return _sw.diagonal_backward(
            xs, ps, controls["w"], h, a.code, a.param, readout, grads["w"], gP,
            *_scratch(xs, rows, self.dim, self.dim), *_readout_scratch(xs, rows, readout),
            r0, r1,
        )


FEATURE_MAPS = ("fourier", "relu")


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
        Seed of ``Omega`` and ``beta``.
    """

    name = "features"
    control_names = ("A",)
    linear_in_control = True

    def __init__(self, dim, activation, width, features="fourier", bandwidth=1.0, seed=0):
        super().__init__(dim, activation)
        self.width = integer(width, "width", low=1)
        self.features = lookup({f: f for f in FEATURE_MAPS}, features, "feature map")
        self.bandwidth = real(bandwidth, "bandwidth", low=0.0, low_open=True)
        self.seed = seed
        rng = np.random.default_rng(seed)
        if features == "fourier":
            self.omega = rng.normal(0.0, 1.0 / bandwidth, size=(width, dim))
            self.beta = rng.uniform(0.0, 2.0 * math.pi, size=width)
            self.feature_code = _act.COS
        else:
            self.omega = rng.normal(0.0, 1.0 / math.sqrt(dim), size=(width, dim))
            self.beta = rng.normal(0.0, 1.0, size=width)
            self.feature_code = _act.SCALED_RELU
        self.amplitude = math.sqrt(2.0 / width)

    def step_shapes(self):
        return {"A": (self.dim, self.width)}

    @property
    def homogeneous(self):
        return True

    def _fixed(self, xs):
        return self.omega.astype(xs.dtype), self.beta.astype(xs.dtype)

    def _forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        (phi,) = _scratch(xs, r1 - r0, self.width)
        zero = np.zeros(self.dim, dtype=xs.dtype)
        _sw.features_forward(xs, controls["A"], *self._fixed(xs), h, self.feature_code,
                             self.amplitude, phi, zero, r0, r1)

    def _backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1):
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

    def _forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        a = self.activation
        (s,) = _scratch(xs, r1 - r0, self.width)
        zero = np.zeros(self.dim, dtype=xs.dtype)
        _sw.perceptron_forward(xs, controls["V"], controls["W"], controls["c"], h, a.code,
                               a.param, s, zero, r0, r1)

    def _backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1):
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


FIELDS = {cls.name: cls for cls in (Outer, Inner, Diagonal, Features, Perceptron)}
NAMES = tuple(sorted(FIELDS))


def make_field(field, dim, activation, *, width=None, features="fourier", bandwidth=1.0,
               seed=0):
    """A :class:`Field` from a name, a class or an instance."""
    if isinstance(field, Field):
        return field
    cls = field if isinstance(field, type) and issubclass(field, Field) else None
    if cls is None:
        cls = lookup(FIELDS, field, "field")
    if cls in (Features, Perceptron):
        if width is None:
            raise ValueError(f"width must be given for field {cls.name!r} (an int >= 1), got None")
        if cls is Features:
            return cls(dim, activation, width, features=features, bandwidth=bandwidth, seed=seed)
        return cls(dim, activation, width)
    return cls(dim, activation)
