"""Meshes of a domain Omega (an interval, or a rectangle such as the pixel grid of an image):
nodes, quadrature weights and the linear interpolation between two meshes.

A function ``z`` on Omega is held by its values at the nodes, ``z_i = z(xi_i)``, and its
integral by a quadrature, ``int_Omega z dx ~ sum_i q_i z_i``. The "integral" field
(:class:`pmp.fields.Integral`) uses it for ``dz/dt(x) = sigma(int w(t, x, xi) z(xi) dxi +
b(t, x))``: on a mesh its step is ``sigma(W diag(q) z + b)`` with ``W_il = w(t, xi_i, xi_l)``,
and the regulariser weighs every control entry with the quadrature
(:class:`QuadratureL2`). Conventions: docs/theory.md section 13.

======================================  ===========================  ===================  =====
mesh                                    nodes                        weights              order
======================================  ===========================  ===================  =====
``interval(n, a, b)``                   n equispaced, ends included  trapezoid            2
``interval(n, a, b, rule="midpoint")``  the n cell centres           ``(b - a) / n``      2
``grid((n0, n1), extent)``              the pixel centres            the pixel area       2
``grid(..., rule="trapezoid")``         the corners, edges included  tensor trapezoid     2
``Mesh(axes, weights)``                 given nodes per axis         given, or trapezoid  2
======================================  ===========================  ===================  =====

The nodes of a 2-D mesh are numbered row by row (C order: node ``i0 * n1 + i1`` is
``(axes[0][i0], axes[1][i1])``), as ``image.reshape(-1)`` numbers the pixels of an image
(``pmp.datasets.digits()`` rows are 8 x 8 images flattened so).
"""
from dataclasses import dataclass, field

import numpy as np

from ._validation import finite_array, integer, real
from .objectives import H1, L2

RULES = ("trapezoid", "midpoint")


class Mesh:
    """A tensor-product mesh of an interval (one axis) or a rectangle (two axes) with its
    quadrature.

    Parameters
    ----------
    axes : sequence of array_like
        The nodes along each axis, one increasing 1-D array per axis (1 axis: an interval,
        2 axes: a rectangle).
    weights : sequence of array_like, optional
        The 1-D quadrature weights along each axis (each >= 0, one per node); the mesh's
        weights are their tensor product. Default: the trapezoidal rule over the nodes
        (the domain from the first to the last node of each axis).
    bounds : sequence of (float, float), optional
        The domain ``[a, b]`` of each axis, containing its nodes (default: the first and the
        last node).
    rule : str, optional
        The name of the quadrature, for display (default "trapezoid" when ``weights`` is
        omitted, else "given").

    Attributes
    ----------
    ndim : int
        1 (an interval) or 2 (a rectangle).
    shape : tuple of int
        Nodes per axis.
    size : int
        Number of nodes ``n = prod(shape)``: the state dimension of a stage on this mesh.
    axes : tuple of ndarray
        The nodes along each axis.
    nodes : ndarray, shape (size, ndim)
        The nodes, row by row for a rectangle (C order).
    weights : ndarray, shape (size,)
        The quadrature weights ``q``: ``int_Omega z dx ~ weights @ z``.
    axis_weights : tuple of ndarray
        The 1-D weights along each axis (``weights`` is their tensor product).
    bounds : tuple of (float, float)
    rule : str
    order : int
        Order of the quadrature on smooth functions (2: the trapezoidal and midpoint rules
        have an error ``O(h^2)`` in the largest spacing h).
    """

    order = 2

    def __init__(self, axes, weights=None, bounds=None, rule=None):
        if isinstance(axes, np.ndarray) or not isinstance(axes, (list, tuple)) \
                or len(axes) not in (1, 2):
            shown = f"{len(axes)} axes" if isinstance(axes, (list, tuple)) \
                else type(axes).__name__
            raise ValueError(f"axes must be a list of 1 or 2 arrays of nodes (an interval or "
                             f"a rectangle), got {shown}")
        self.axes = tuple(_axis(a, f"axes[{i}]") for i, a in enumerate(axes))
        self.ndim = len(self.axes)
        self.shape = tuple(a.size for a in self.axes)
        self.size = int(np.prod(self.shape))
        self.bounds = _bounds(self.axes, bounds)
        if weights is None:
            per_axis = [_trapezoid(a) for a in self.axes]
            self.rule = "trapezoid" if rule is None else str(rule)
        else:
            per_axis = _axis_weights(weights, self.shape)
            self.rule = "given" if rule is None else str(rule)
        self.axis_weights = tuple(per_axis)
        self.weights = per_axis[0] if self.ndim == 1 else np.outer(*per_axis).reshape(-1)
        grids = np.meshgrid(*self.axes, indexing="ij")
        self.nodes = np.stack([g.reshape(-1) for g in grids], axis=1)

    # ------------------------------------------------------------ functions on the mesh
    def coordinates(self):
        """The nodes' coordinates, one array of shape (size,) per axis."""
        return tuple(self.nodes[:, i] for i in range(self.ndim))

    def sample(self, f):
        """``f`` at the nodes: ``f(*x)`` with ``x`` the coordinate arrays (size,) of the nodes
        (``f(x)`` on an interval, ``f(x0, x1)`` on a rectangle); returns shape (size,)."""
        return _evaluated(f(*self.coordinates()), (self.size,), "f")

    def integrate(self, values):
        """The quadrature ``sum_i q_i values[..., i]``; values of shape (..., size)."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim < 1 or values.shape[-1] != self.size:
            raise ValueError(f"values must have shape (..., {self.size}) (one value per node), "
                             f"got {values.shape}")
        return values @ self.weights

    def controls(self, t, w, b):
        """The controls of the "integral" field sampled from functions of (t, x, xi).

        Parameters
        ----------
        t : array_like, shape (K,)
            The time of every step (for a stage, its left endpoints ``problem.t[:-1]``).
        w : callable
            ``w(t, *x, *xi)``: the kernel at time t between the points x and xi, called once
            with broadcasting arrays (t of shape (K, 1, 1), each coordinate of x (1, size, 1)
            and of xi (1, 1, size)): ``w(t, x, xi)`` on an interval, ``w(t, x0, x1, xi0,
            xi1)`` on a rectangle.
        b : callable
            ``b(t, *x)`` (t of shape (K, 1), each coordinate of x (1, size)).

        Returns
        -------
        dict
            ``{"W": (K, size, size), "b": (K, size)}`` with ``W[k, i, l] = w(t_k, xi_i,
            xi_l)`` and ``b[k, i] = b(t_k, xi_i)``.
        """
        t = finite_array(t, "t", ndim=1)
        K, n = t.size, self.size
        x = self.coordinates()
        W = w(t[:, None, None], *(c[None, :, None] for c in x), *(c[None, None, :] for c in x))
        bias = b(t[:, None], *(c[None, :] for c in x))
        return {"W": _evaluated(W, (K, n, n), "w"), "b": _evaluated(bias, (K, n), "b")}

    def readout(self, functions=None):
        """The readout of quadratures against test functions: ``P[c, i] = q_i phi_c(xi_i)``,
        so that ``P z ~ (int_Omega phi_c z dx)_c``.

        Parameters
        ----------
        functions : sequence of callable, optional
            ``phi_c(*x)`` as in :meth:`sample` (default: the one function 1, so that
            ``P z`` is the integral of z).

        Returns
        -------
        ndarray, shape (len(functions), size)
        """
        if functions is None:
            return self.weights[None, :].copy()
        rows = [self.weights * self.sample(f) for f in functions]
        if not rows:
            raise ValueError("functions must hold at least one test function, got none")
        return np.stack(rows)

    def to_dict(self):
        """The mesh as plain lists (TOML- and JSON-ready): ``{"axes", "weights", "bounds",
        "rule"}``; :func:`from_dict` rebuilds it exactly."""
        return {"axes": [a.tolist() for a in self.axes],
                "weights": [w.tolist() for w in self.axis_weights],
                "bounds": [list(b) for b in self.bounds], "rule": self.rule}

    def interpolation_to(self, other):
        """:func:`interpolation_matrix` from this mesh to ``other``: shape (other.size,
        size)."""
        return interpolation_matrix(self, other)

    def __repr__(self):
        dom = " x ".join(f"[{a:g}, {b:g}]" for a, b in self.bounds)
        nodes = " x ".join(map(str, self.shape))
        kind = "interval" if self.ndim == 1 else "grid"
        return f"Mesh({kind} {dom}, {nodes} nodes, {self.rule})"


# ------------------------------------------------------------------------ constructors
def interval(n, a=0.0, b=1.0, *, rule="trapezoid"):
    """A uniform mesh of the interval ``[a, b]``.

    Parameters
    ----------
    n : int
        Number of nodes (>= 2 for the trapezoidal rule, >= 1 for the midpoint rule).
    a, b : float
        The interval, ``a < b``.
    rule : {"trapezoid", "midpoint"}
        "trapezoid": the nodes ``a + i h``, ``h = (b - a) / (n - 1)``, weights ``h`` and
        ``h / 2`` at the ends; "midpoint": the cell centres ``a + (i + 1/2) h``,
        ``h = (b - a) / n``, weights ``h``. Both of order 2.

    Returns
    -------
    Mesh
    """
    nodes, weights = _uniform(n, a, b, rule, "n", "a", "b")
    return Mesh([nodes], [weights], [(float(a), float(b))], rule)


def grid(shape, extent=((0.0, 1.0), (0.0, 1.0)), *, rule="midpoint"):
    """A uniform mesh of a rectangle: the pixel grid of an image.

    Parameters
    ----------
    shape : (int, int)
        Nodes per axis ``(n0, n1)`` (rows, columns of the image).
    extent : ((float, float), (float, float))
        The rectangle ``[a0, b0] x [a1, b1]`` (default the unit square).
    rule : {"midpoint", "trapezoid"}
        "midpoint" (default): the pixel centres, each weighted by the pixel area (the image
        as cell averages); "trapezoid": nodes on the pixel corners including the edges,
        the tensor-product trapezoidal weights. Both of order 2.

    Returns
    -------
    Mesh
        Nodes numbered row by row (node ``i0 * n1 + i1``), as ``image.reshape(-1)``.
    """
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise ValueError(f"shape must be a pair of ints (n0, n1), got {shape!r}")
    if isinstance(extent, (str, bytes)) or np.shape(extent) != (2, 2):
        raise ValueError(f"extent must be ((a0, b0), (a1, b1)), got {extent!r}")
    axes, weights = [], []
    for i in range(2):
        nodes, w = _uniform(shape[i], extent[i][0], extent[i][1], rule, f"shape[{i}]",
                            f"extent[{i}][0]", f"extent[{i}][1]")
        axes.append(nodes)
        weights.append(w)
    return Mesh(axes, weights, [tuple(map(float, e)) for e in extent], rule)


def from_dict(spec):
    """The :class:`Mesh` of :meth:`Mesh.to_dict` (keys "axes", and optionally "weights",
    "bounds", "rule")."""
    if not isinstance(spec, dict) or "axes" not in spec:
        raise ValueError(f"spec must be a dict with the key 'axes' (and optionally 'weights', "
                         f"'bounds', 'rule'), got {spec!r}")
    unknown = sorted(set(spec) - {"axes", "weights", "bounds", "rule"})
    if unknown:
        raise ValueError(f"spec has unknown key(s) {', '.join(map(repr, unknown))}; expected "
                         f"axes, weights, bounds, rule")
    return Mesh(list(spec["axes"]), spec.get("weights"), spec.get("bounds"), spec.get("rule"))


def as_mesh(value, name="mesh"):
    """A :class:`Mesh` from a mesh (returned as it is) or an increasing 1-D array of nodes
    (an interval with the trapezoidal weights; a single node has weight 0)."""
    if isinstance(value, Mesh):
        return value
    nodes = finite_array(value, name, ndim=1)
    if nodes.size < 1 or np.any(np.diff(nodes) <= 0):
        raise ValueError(f"{name} must be a non-empty increasing array of nodes (or a "
                         f"pmp.meshes.Mesh), got {nodes}")
    return Mesh([nodes])


def interpolation_matrix(mesh_in, mesh_out):
    """Linear (1-D) or bilinear (2-D) interpolation from the nodes of one mesh to those of
    another, constant beyond the first and last nodes of each axis.

    Row ``i`` holds the weights of the nodes of ``mesh_in`` that give the value at node i of
    ``mesh_out``: on each axis the two hat-function weights of the enclosing interval, and
    their products on a rectangle (the Kronecker product of the two axes' matrices). The
    meshes may be nested or not: a node of ``mesh_out`` that is a node of ``mesh_in`` gets
    that node's value exactly.

    Parameters
    ----------
    mesh_in, mesh_out : Mesh or array_like
        Meshes of the same dimension (a 1-D array is an interval's increasing nodes).

    Returns
    -------
    ndarray, shape (mesh_out.size, mesh_in.size)
    """
    mesh_in, mesh_out = as_mesh(mesh_in, "mesh_in"), as_mesh(mesh_out, "mesh_out")
    if mesh_in.ndim != mesh_out.ndim:
        raise ValueError(f"mesh_out must have the dimension of mesh_in ({mesh_in.ndim}), got "
                         f"{mesh_out.ndim} ({mesh_in!r} -> {mesh_out!r})")
    out = np.ones((1, 1))
    for a_in, a_out in zip(mesh_in.axes, mesh_out.axes):
        out = np.kron(out, _linear(a_in, a_out))
    return out


# --------------------------------------------------------------- the regulariser
def weighted_step_squares(controls, names, weights):
    """``sum_e omega_e u_e^2`` over the entries of the arrays ``names`` of every step.

    Parameters
    ----------
    controls : dict
        name -> array of shape (K, ...).
    names : iterable of str
    weights : dict
        name -> ``omega``, broadcastable to one step's control (shape ``controls[n][0]``).

    Returns
    -------
    ndarray, shape (K,)
    """
    return sum(np.sum((np.square(controls[n], dtype=np.float64) * weights[n])
                      .reshape(len(controls[n]), -1), axis=1) for n in names)


class _Weighted:
    """The weighted l2 part shared by :class:`QuadratureL2` and :class:`QuadratureH1`."""

    def step_values(self, controls, names):
        """``R(u_k) = lam sum_e omega_e u_{k,e}^2`` for every step, shape (K,)."""
        return self.lam * weighted_step_squares(controls, names, self.weights)

    def _l2_value(self, controls, names, h):
        return h * float(np.sum(self.step_values(controls, names)))

    def _l2_grad(self, controls, names, h, grads):
        for n in names:
            grads[n] += (2.0 * h * self.lam) * (self.weights[n] * controls[n])


@dataclass
class QuadratureL2(_Weighted, L2):
    """``R(u) = lam sum_e omega_e u_e^2``: "l2" with the quadrature weight ``omega_e`` of
    every control entry, so that R approximates the continuum's norm (for the "integral"
    field ``omega = q_i q_l`` for ``W_il`` and ``q_i`` for ``b_i``: ``R ~ lam (||w(t)||^2 +
    ||b(t)||^2)`` in ``L^2``).

    Attributes
    ----------
    lam : float
    weights : dict
        name -> ``omega``, broadcastable to one step's control (without the step axis).
    """

    weights: dict = field(default=None, compare=False, repr=False)
    name = "l2"

    def value(self, controls, names, h):
        return self._l2_value(controls, names, h)

    def add_grad(self, controls, names, h, grads):
        self._l2_grad(controls, names, h, grads)


@dataclass
class QuadratureH1(_Weighted, H1):
    """The "h1" regulariser with the quadrature weights: ``R(u) = lam sum_e omega_e u_e^2``
    and the coupling ``(lam1 / h) sum_k sum_e omega_e (u_{k+1,e} - u_{k,e})^2`` (see
    :class:`QuadratureL2`).

    Attributes
    ----------
    lam, lam1 : float
    weights : dict
        name -> ``omega``, broadcastable to one step's control (without the step axis).
    """

    weights: dict = field(default=None, compare=False, repr=False)
    name = "h1"

    def value(self, controls, names, h):
        diffs = {n: np.diff(controls[n], axis=0) for n in names}
        coupling = float(np.sum(weighted_step_squares(diffs, names, self.weights))) \
            if names else 0.0
        return self._l2_value(controls, names, h) + self.lam1 / h * coupling

    def add_grad(self, controls, names, h, grads):
        self._l2_grad(controls, names, h, grads)
        c = 2.0 * self.lam1 / h
        for n in names:
            du = self.weights[n] * np.diff(controls[n], axis=0)
            grads[n][1:] += c * du
            grads[n][:-1] -= c * du


def quadrature_regularizer(reg, weights):
    """The quadrature-weighted version of the regulariser ``reg`` ("l2" or "h1").

    Parameters
    ----------
    reg : pmp.objectives.Regularizer
    weights : dict
        name -> the quadrature weight of every entry of one step's control.

    Returns
    -------
    QuadratureL2 or QuadratureH1
    """
    if isinstance(reg, (QuadratureL2, QuadratureH1)):
        return reg
    if type(reg) is L2:
        return QuadratureL2(reg.lam, weights=weights)
    if type(reg) is H1:
        return QuadratureH1(reg.lam, reg.lam1, weights=weights)
    raise ValueError(f"reg must be 'l2' or 'h1' for a field on a mesh (the regulariser is "
                     f"weighted by the quadrature), got {reg.name!r}")


# ---------------------------------------------------------------------------- helpers
def _axis(value, name):
    nodes = finite_array(value, name, ndim=1)
    if nodes.size < 1 or np.any(np.diff(nodes) <= 0):
        raise ValueError(f"{name} must be a non-empty increasing array of nodes, got {nodes}")
    return nodes


def _bounds(axes, bounds):
    if bounds is None:
        return tuple((float(a[0]), float(a[-1])) for a in axes)
    if isinstance(bounds, (str, bytes)) or np.shape(bounds) != (len(axes), 2):
        raise ValueError(f"bounds must hold one (a, b) per axis, shape ({len(axes)}, 2), got "
                         f"{bounds!r}")
    out = []
    for i, (a, b) in enumerate(bounds):
        a, b = real(a, f"bounds[{i}][0]"), real(b, f"bounds[{i}][1]")
        if not a <= axes[i][0] <= axes[i][-1] <= b:
            raise ValueError(f"bounds[{i}] must contain the nodes of axis {i} "
                             f"[{axes[i][0]:g}, {axes[i][-1]:g}], got ({a:g}, {b:g})")
        out.append((a, b))
    return tuple(out)


def _axis_weights(weights, shape):
    if isinstance(weights, np.ndarray) and weights.ndim == 1 and len(shape) == 1:
        weights = [weights]
    if not isinstance(weights, (list, tuple)) or len(weights) != len(shape):
        raise ValueError(f"weights must hold one array per axis ({len(shape)}), got "
                         f"{weights!r}")
    out = []
    for i, (w, n) in enumerate(zip(weights, shape)):
        w = finite_array(w, f"weights[{i}]", ndim=1)
        if w.shape != (n,) or np.any(w < 0):
            raise ValueError(f"weights[{i}] must be {n} weights >= 0 (one per node of axis "
                             f"{i}), got {w}")
        out.append(w)
    return out


def _trapezoid(nodes):
    """Trapezoidal weights on (possibly non-uniform) nodes; one node has weight 0."""
    w = np.zeros(nodes.size)
    gaps = np.diff(nodes)
    w[:-1] += 0.5 * gaps
    w[1:] += 0.5 * gaps
    return w


def _uniform(n, a, b, rule, n_name, a_name, b_name):
    """Nodes and weights of the uniform rule ``rule`` on [a, b]."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    n = integer(n, n_name, low=2 if rule == "trapezoid" else 1)
    a, b = real(a, a_name), real(b, b_name)
    if not a < b:
        raise ValueError(f"{b_name} must be > {a_name} = {a:g}, got {b:g}")
    if rule == "trapezoid":
        nodes = np.linspace(a, b, n)
        return nodes, _trapezoid(nodes)
    h = (b - a) / n
    return a + h * (np.arange(n) + 0.5), np.full(n, h)


def _linear(nodes_in, nodes_out):
    """1-D linear interpolation, constant beyond the ends: shape (n_out, n_in)."""
    n = nodes_in.size
    M = np.zeros((nodes_out.size, n))
    if n == 1:
        M[:, 0] = 1.0
        return M
    t = np.clip(nodes_out, nodes_in[0], nodes_in[-1])
    r = np.clip(np.searchsorted(nodes_in, t, side="right"), 1, n - 1)
    w = (t - nodes_in[r - 1]) / (nodes_in[r] - nodes_in[r - 1])
    rows = np.arange(nodes_out.size)
    M[rows, r - 1] = 1.0 - w
    M[rows, r] += w
    return M


def _evaluated(value, shape, name):
    """A function's values broadcast to ``shape``, finite, float64."""
    try:
        out = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except ValueError:
        raise ValueError(f"{name} must return values broadcastable to {shape}, got shape "
                         f"{np.shape(value)}") from None
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must return finite values, got NaN or inf")
    return np.array(out)
