"""Meshes and the integro-differential field (docs/theory.md section 13): the quadratures and
the (bi)linear interpolation between meshes, the "integral" field's cost against plain NumPy,
its exact gradient through "interpolate" transitions (intervals and pixel grids, nested and
not), the regulariser weighted by the quadrature, E-MSA on it, bad input, and the convergence
of the cost at the quadrature's order as the mesh is refined at fixed smooth controls."""
import numpy as np
import pytest

import naive
import pmp
from pmp import meshes
from pmp.fields import TwoLayerForm

EPS = 1e-4  # 4-point central stencil, as tests/test_stages.py
RTOL = 1e-6
N = 4


# ------------------------------------------------------------------ quadrature
@pytest.mark.parametrize("make", [lambda n: meshes.interval(n, -1.0, 2.0),
                                  lambda n: meshes.interval(n, -1.0, 2.0, rule="midpoint")])
def test_interval_quadrature_is_of_order_two(make):
    m = make(9)
    assert m.weights.sum() == pytest.approx(3.0, rel=1e-14)
    assert m.integrate(m.sample(lambda x: 2.0 * x + 1.0)) == pytest.approx(6.0, rel=1e-13)
    exact = np.cos(-1.0) - np.cos(2.0)
    errors = [abs(make(n).integrate(make(n).sample(np.sin)) - exact) for n in (32, 64, 128)]
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all(np.abs(orders - 2.0) < 0.1), orders


@pytest.mark.parametrize("rule", ["midpoint", "trapezoid"])
def test_grid_quadrature_and_node_order(rule):
    g = meshes.grid((3, 4), ((0.0, 2.0), (1.0, 2.0)), rule=rule)
    assert g.size == 12 and g.shape == (3, 4) and g.ndim == 2
    assert g.weights.sum() == pytest.approx(2.0, rel=1e-14)
    # node i0 * n1 + i1 is (axes[0][i0], axes[1][i1]): an image flattened row by row
    for i0 in range(3):
        for i1 in range(4):
            np.testing.assert_array_equal(g.nodes[i0 * 4 + i1], [g.axes[0][i0], g.axes[1][i1]])
    np.testing.assert_array_equal(g.sample(lambda a, b: a + 10 * b).reshape(3, 4),
                                  g.axes[0][:, None] + 10 * g.axes[1][None, :])
    # both rules integrate a bilinear function exactly
    assert g.integrate(g.sample(lambda a, b: 1.0 + a * b)) == pytest.approx(2.0 + 3.0, rel=1e-13)
    P = g.readout([lambda a, b: np.ones_like(a), lambda a, b: a])
    np.testing.assert_allclose(P @ np.ones(12), [2.0, 2.0], rtol=1e-13)


@pytest.mark.parametrize("mesh", [meshes.interval(5, -1.0, 1.0, rule="midpoint"),
                                  meshes.grid((3, 4), ((0, 2), (1, 3)), rule="trapezoid"),
                                  meshes.Mesh([[0.0, 0.1, 0.5, 1.0]])])
def test_a_mesh_rebuilds_from_its_dict(mesh):
    import json

    again = meshes.from_dict(json.loads(json.dumps(mesh.to_dict())))
    for name in ("shape", "bounds", "rule"):
        assert getattr(again, name) == getattr(mesh, name)
    for name in ("nodes", "weights"):
        np.testing.assert_array_equal(getattr(again, name), getattr(mesh, name))
    assert repr(again) == repr(mesh)


# --------------------------------------------------------------- interpolation
def _bilinear_reference(m_in, m_out):
    """Bilinear weights written out node by node (clamped to the input's hull)."""
    M = np.zeros((m_out.size, m_in.size))
    n1 = m_in.shape[1]
    for i, point in enumerate(m_out.nodes):
        parts = []
        for axis, t in zip(m_in.axes, point):
            t = min(max(t, axis[0]), axis[-1])
            r = min(max(np.searchsorted(axis, t, side="right"), 1), axis.size - 1)
            w = (t - axis[r - 1]) / (axis[r] - axis[r - 1])
            parts.append(((r - 1, 1.0 - w), (r, w)))
        for a, wa in parts[0]:
            for b, wb in parts[1]:
                M[i, a * n1 + b] += wa * wb
    return M


def test_linear_interpolation_on_intervals():
    coarse, fine = meshes.interval(5), meshes.interval(9)
    A = meshes.interpolation_matrix(coarse, fine)
    np.testing.assert_array_equal(A[::2], np.eye(5))       # nested: the shared nodes exactly
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=1e-15)
    f = lambda x: 3.0 * x - 1.0                             # noqa: E731
    other = meshes.interval(7, rule="midpoint")             # not nested
    np.testing.assert_allclose(coarse.interpolation_to(other) @ coarse.sample(f),
                               other.sample(f), rtol=1e-14)
    # the former np.interp construction, with nodes beyond the ends (constant there)
    nodes_in, nodes_out = np.array([0.0, 0.3, 0.45, 1.0]), np.linspace(-0.2, 1.3, 11)
    former = np.stack([np.interp(nodes_out, nodes_in, e) for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(meshes.interpolation_matrix(nodes_in, nodes_out), former,
                               rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("m_in,m_out", [
    (meshes.grid((3, 3), rule="trapezoid"), meshes.grid((5, 5), rule="trapezoid")),  # nested
    (meshes.grid((3, 4), rule="trapezoid"), meshes.grid((5, 7), rule="trapezoid")),
    (meshes.grid((4, 4)), meshes.grid((6, 3))),                  # pixel centres: not nested
    (meshes.grid((8, 8)), meshes.grid((4, 4))),                  # coarsening
])
def test_bilinear_interpolation_between_pixel_grids(m_in, m_out):
    A = meshes.interpolation_matrix(m_in, m_out)
    assert A.shape == (m_out.size, m_in.size)
    np.testing.assert_allclose(A, _bilinear_reference(m_in, m_out), rtol=1e-14, atol=1e-15)
    f = lambda a, b: 1.0 + 2.0 * a - b + 3.0 * a * b        # noqa: E731
    inside = np.all([(c >= a[0]) & (c <= a[-1]) for c, a in zip(m_out.nodes.T, m_in.axes)],
                    axis=0)
    np.testing.assert_allclose((A @ m_in.sample(f))[inside], m_out.sample(f)[inside],
                               rtol=1e-13)
    if m_in.rule == "trapezoid" and (m_out.shape[0] - 1) % (m_in.shape[0] - 1) == 0 \
            and (m_out.shape[1] - 1) % (m_in.shape[1] - 1) == 0:
        s0, s1 = (m_out.shape[0] - 1) // (m_in.shape[0] - 1), \
            (m_out.shape[1] - 1) // (m_in.shape[1] - 1)
        shared = (np.arange(m_out.size) // m_out.shape[1] % s0 == 0) & \
            (np.arange(m_out.size) % m_out.shape[1] % s1 == 0)
        np.testing.assert_array_equal(A[shared], np.eye(m_in.size))


# ------------------------------------------------------ the field against NumPy
def _problem(mesh_list, enters, *, x=None, seed=0, **kwargs):
    """A staged "integral" problem on the meshes, readout: the integral of z (and of x z)."""
    rng = np.random.default_rng(seed)
    first = mesh_list[0]
    x = rng.normal(size=(N, first.size)) if x is None else x
    y = rng.normal(size=(N, 2))
    tests = [lambda *c: np.ones_like(c[0]), lambda *c: c[0] - 0.5]
    stages = [pmp.Stage(0.5, 3 + j, mesh=m, enter=e, projection=m.readout(tests))
              for j, (m, e) in enumerate(zip(mesh_list, [None] + list(enters)))]
    kwargs = dict(dict(field="integral", activation="tanh", lam=0.05), **kwargs)
    return pmp.Problem(x, y, stages=stages, **kwargs)


def _controls(problem, seed=0, scale=0.7):
    rng = np.random.default_rng(100 + seed)
    return [{n: scale * rng.normal(size=s) for n, s in shapes.items()}
            for shapes in problem.control_shapes]


def _reference_cost(problem, controls):
    """J written out: Euler steps of sigma(W diag(q) z + b), the transitions' matrices, the
    quadrature-weighted l2 (and h1) regulariser, running and terminal losses."""
    X, J = np.array(problem.x), 0.0
    for j, (stage, u) in enumerate(zip(problem.stages, controls)):
        if j:
            X = X @ problem.transitions[j - 1].matrix.T
        q, h = problem.meshes[j].weights, stage.h
        omega = {"W": np.outer(q, q), "b": q}
        for k in range(stage.n_steps):
            J += h * stage.running * naive.mean_loss(stage, X, stage.P)[0]
            J += h * stage.lam * sum(np.sum(omega[n] * u[n][k] ** 2) for n in omega)
            X = X + h * naive.sigma(stage, X @ (u["W"][k] * q).T + u["b"][k])[0]
        J += stage.lam1 / h * sum(np.sum(omega[n] * np.diff(u[n], axis=0) ** 2) for n in omega)
    return J + problem.terminal * naive.mean_loss(problem.stages[-1], X, problem.stages[-1].P)[0]


CASES = {  # meshes, transitions, problem keywords
    "interval, nested": ([meshes.interval(5), meshes.interval(9)], ["interpolate"],
                         dict(running=0.3)),
    "interval, not nested": ([meshes.interval(4), meshes.interval(7, rule="midpoint"),
                              meshes.interval(5)], ["interpolate", "interpolate"],
                             dict(reg="h1", lam1=0.2, activation="sigmoid")),
    "grid, nested": ([meshes.grid((3, 3), rule="trapezoid"),
                      meshes.grid((5, 5), rule="trapezoid")], ["interpolate"], {}),
    "grid, not nested": ([meshes.grid((4, 4)), meshes.grid((3, 5))], ["interpolate"],
                         dict(running=0.2, reg="h1", lam1=0.1)),
    "digits grid, coarsened": ([meshes.grid((8, 8)), meshes.grid((4, 4))], ["interpolate"],
                               dict(activation="relu")),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_cost_matches_the_numpy_reference(kind):
    problem = _problem(*CASES[kind][:2], **CASES[kind][2])
    u = _controls(problem)
    J, _ = pmp.value_and_grad(problem, u)
    assert J == pytest.approx(_reference_cost(problem, u), rel=1e-12)
    assert pmp.cost(problem, u)["total"] == pytest.approx(J, rel=1e-13)


def _inner(a, b):
    return sum(float(np.sum(u[n] * v[n])) for u, v in zip(a, b) for n in u)


def _fd(f):
    values = [f(s * EPS) for s in (-2.0, -1.0, 1.0, 2.0)]
    return (values[0] - 8.0 * values[1] + 8.0 * values[2] - values[3]) / (12.0 * EPS)


@pytest.mark.parametrize("kind", list(CASES))
def test_gradient_against_central_differences(kind):
    problem = _problem(*CASES[kind][:2], **CASES[kind][2])
    u = _controls(problem, seed=1)
    _, grads = pmp.value_and_grad(problem, u)
    gnorm = np.sqrt(_inner(grads, grads))
    rng = np.random.default_rng(2)
    directions = [[{n: g[n] / gnorm for n in g} for g in grads]]
    directions += [[{n: rng.normal(size=a.shape) for n, a in v.items()} for v in u]
                   for _ in range(2)]
    for v in directions:
        exact = _inner(grads, v)
        fd = _fd(lambda s: pmp.cost(problem, [{n: a[n] + s * b[n] for n in a}
                                              for a, b in zip(u, v)])["total"])
        assert abs(fd - exact) <= RTOL * max(abs(exact), 1e-3 * gnorm), (kind, fd, exact)


def test_one_stage_on_a_mesh_and_float32():
    m = meshes.interval(6)
    problem = _problem([m], [], running=0.1)
    u = _controls(problem)
    J, g = pmp.value_and_grad(problem, u)
    assert J == pytest.approx(_reference_cost(problem, u), rel=1e-12)
    single = _problem([m], [], running=0.1, dtype="float32")
    J32, g32 = pmp.value_and_grad(single, u)
    assert J32 == pytest.approx(J, rel=1e-5)
    np.testing.assert_allclose(g32[0]["W"], g[0]["W"], rtol=1e-3,
                               atol=1e-5 * np.abs(g[0]["W"]).max())
    assert pmp.stages.stage_hamiltonians(problem, u)[0].shape == (3,)


def test_the_regulariser_is_the_quadrature_of_the_continuum_norm():
    """R = lam (sum q_i q_l W_il^2 + sum q_i b_i^2) -> lam (int int w^2 + int b^2), order 2."""
    w = lambda t, x, xi: np.cos(t + 2.0 * x - xi)            # noqa: E731
    b = lambda t, x: np.sin(np.pi * x) + 0.0 * t              # noqa: E731
    values = []
    for n in (9, 17, 33):
        m = meshes.interval(n)
        problem = _problem([m], [], x=np.zeros((N, n)), lam=1.0)
        stage = problem.stages[0]
        values.append(pmp.cost(problem, [m.controls(stage.t[:-1], w, b)])["regularization"])
    exact = stage.h * sum(_w2(t) + 0.5 for t in stage.t[:-1])  # int sin^2(pi x) = 1/2
    errors = np.abs(np.array(values) - exact)
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - 2.0) < 0.1), (values, exact, orders)


def _w2(t):
    """int_0^1 int_0^1 cos(t + 2 x - xi)^2 dx dxi, by a 40-point Gauss-Legendre rule."""
    nodes, weights = np.polynomial.legendre.leggauss(40)
    s, ws = 0.5 * (nodes + 1.0), 0.5 * weights
    return float(ws @ np.cos(t + 2.0 * s[:, None] - s[None, :]) ** 2 @ ws)


def test_emsa_is_monotone_on_an_integral_field():
    m1, m2 = meshes.interval(6), meshes.interval(9)
    x = np.stack([m1.sample(lambda s, a=a: np.sin(np.pi * a * s)) for a in (1, 2, 3, 4)])
    problem = _problem([m1, m2], ["interpolate"], x=x, reg="h1", lam1=0.01, lam=0.02)
    result = pmp.train(problem, method="emsa", max_iter=8, progress=False)
    costs = result.history["cost"]
    assert np.all(np.diff(costs) <= 0.0) and costs[-1] < costs[0], costs
    assert np.sum(result.history["accepted"]) >= 3


def test_the_weighted_maximiser_objective_has_its_gradient():
    """The general maximiser's Psi~ with the field's columns q and the weighted h1 terms:
    its gradient against central differences (the function L-BFGS maximises)."""
    from pmp.maximize.general import _PerStep

    problem = _problem([meshes.interval(5)], [], reg="h1", lam1=0.3)
    stage = problem.stages[0]
    u = _controls(problem)[0]
    old = _controls(problem, seed=4)[0]
    xs = pmp.forward(problem, [old])[0]
    ps = pmp.backward(problem, [old])[0]
    form = stage.field.control_form()
    assert isinstance(form, TwoLayerForm) and form.columns is not None
    per_step = _PerStep(stage, form, old, xs, ps, rho=0.7)
    _, grads = per_step(u)
    v = {n: np.random.default_rng(5).normal(size=a.shape) for n, a in u.items()}
    exact = sum(float(np.sum(grads[n] * v[n])) for n in u)
    fd = _fd(lambda s: float(np.sum(per_step({n: u[n] + s * v[n] for n in u})[0])))
    assert fd == pytest.approx(exact, rel=1e-7)


# ------------------------------------------------------------------ bad input
BAD = [
    (lambda: pmp.Problem(np.zeros((2, 3)), np.zeros(2), field="integral"),
     ValueError, r"field 'integral' needs the mesh it integrates over"),
    (lambda: pmp.Problem(np.zeros((2, 3)), np.zeros(2), field="integral",
                         stages=[pmp.Stage()]),
     ValueError, r"stages\[0\]: field 'integral' integrates over a mesh: stages\[0\].mesh must"),
    (lambda: pmp.Problem(np.zeros((2, 3)), np.zeros(2), field="integral",
                         stages=[pmp.Stage(mesh=meshes.interval(4), dim=5)]),
     ValueError, r"stages\[0\].dim must equal the 4 nodes of its mesh, got 5"),
    (lambda: pmp.Problem(np.zeros((2, 5)), np.zeros(2), field="integral",
                         stages=[pmp.Stage(mesh=meshes.interval(4))]),
     ValueError, r"dim must be >= the 5 features of x, got 4"),
    (lambda: pmp.Problem(np.zeros((2, 4)), np.zeros(2), field="integral",
                         stages=[pmp.Stage(mesh=meshes.interval(4)),
                                 pmp.Stage(mesh=meshes.grid((2, 2)), enter="interpolate")]),
     ValueError, r"stages\[1\].mesh must be 1-D like stages\[0\].mesh"),
    (lambda: pmp.Problem(np.zeros((2, 4)), np.zeros(2), field="integral", reg="l1", bound=1.0,
                         stages=[pmp.Stage(mesh=meshes.interval(4))]),
     ValueError, r"reg must be 'l2' or 'h1' for a field on a mesh .* got 'l1'"),
    (lambda: pmp.Problem(np.zeros((2, 2)), np.zeros(2), field="integral",
                         stages=[pmp.Stage(mesh=[0.0, 0.0])]),
     ValueError, r"stages\[0\].mesh must be a non-empty increasing array"),
    (lambda: pmp.fields.Integral(3, pmp.activations.get("tanh"), mesh=[0.5, 0.5]),
     ValueError, r"the mesh's weights \(one per node, dim\) must have shape \(3,\), got \(2,\)"),
    (lambda: pmp.fields.Integral(2, pmp.activations.get("tanh"), mesh=[0.5, 0.0]),
     ValueError, r"the mesh's weights must be > 0 for field 'integral', got 0.0 at node 1"),
    (lambda: meshes.interval(1), ValueError, r"n must be >= 2, got 1"),
    (lambda: meshes.interval(4, 1.0, 0.0), ValueError, r"b must be > a = 1, got 0"),
    (lambda: meshes.interval(4, rule="simpson"), ValueError,
     r"rule must be one of trapezoid, midpoint, got 'simpson'"),
    (lambda: meshes.grid((8,)), ValueError, r"shape must be a pair of ints \(n0, n1\), got \(8,\)"),
    (lambda: meshes.grid((8, 8), ((0, 1),)), ValueError,
     r"extent must be \(\(a0, b0\), \(a1, b1\)\)"),
    (lambda: meshes.grid((8, 0)), ValueError, r"shape\[1\] must be >= 1, got 0"),
    (lambda: meshes.Mesh([[0.0, 1.0]] * 3), ValueError, r"axes must be a list of 1 or 2 arrays"),
    (lambda: meshes.Mesh([[0.0, 1.0]], weights=[[0.5]]), ValueError,
     r"weights\[0\] must be 2 weights >= 0 \(one per node of axis 0\)"),
    (lambda: meshes.Mesh([[0.0, 1.0]], bounds=[(0.2, 1.0)]), ValueError,
     r"bounds\[0\] must contain the nodes of axis 0 \[0, 1\], got \(0.2, 1\)"),
    (lambda: meshes.interpolation_matrix(meshes.interval(3), meshes.grid((2, 2))), ValueError,
     r"mesh_out must have the dimension of mesh_in \(1\), got 2"),
    (lambda: meshes.from_dict({"nodes": [0.0, 1.0]}), ValueError,
     r"spec must be a dict with the key 'axes'"),
    (lambda: meshes.from_dict({"axes": [[0.0, 1.0]], "kind": "interval"}), ValueError,
     r"spec has unknown key\(s\) 'kind'; expected axes, weights, bounds, rule"),
    (lambda: meshes.interval(3).integrate(np.ones(4)), ValueError,
     r"values must have shape \(\.\.\., 3\) \(one value per node\), got \(4,\)"),
    (lambda: meshes.interval(3).controls([0.0], lambda t, x, xi: np.ones(2), lambda t, x: t),
     ValueError, r"w must return values broadcastable to \(1, 3, 3\), got shape \(2,\)"),
]


@pytest.mark.parametrize("make,error,match", BAD, ids=range(len(BAD)))
def test_bad_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ------------------------------------------------------------------ convergence
def _w(t, x, xi):
    return 1.5 * np.cos(t + 2.0 * x - xi) * np.exp(-(x - xi) ** 2)


def _b(t, x):
    return 0.3 * np.sin(np.pi * x + t) - 0.2


def _w_grid(t, x0, x1, xi0, xi1):
    return 2.0 * np.cos(t + x0 - 2.0 * xi1) * np.exp(-(x0 - xi0) ** 2 - (x1 - xi1) ** 2)


def _b_grid(t, x0, x1):
    return 0.3 * np.sin(np.pi * x0 + t) * np.cos(x1) - 0.1


def _meshed_cost(mesh_list, w, b, initial):
    """J at the controls sampled from (w, b) on each stage's mesh, a fixed time grid."""
    first = mesh_list[0]
    x = np.stack([first.sample(f) for f in initial])
    y = np.array([[0.3, -0.1], [0.1, 0.2], [-0.2, 0.4]])[:len(initial)]
    problem = pmp.Problem(x, y, stages=[
        pmp.Stage(0.6, 6, mesh=m, enter=None if j == 0 else "interpolate",
                  projection=m.readout([lambda *c: np.ones_like(c[0]),
                                        lambda *c: np.cos(np.pi * c[-1])]))
        for j, m in enumerate(mesh_list)], field="integral", activation="tanh", running=0.5,
        lam=0.05)
    controls = [m.controls(t[:-1], w, b) for m, t in zip(mesh_list, problem.t)]
    return pmp.cost(problem, controls)["total"]


def _order(sizes, values):
    """The slope of log |J(n_i) - J(n_{i+1})| against log h_i (least squares), h ~ 1 / n."""
    diffs = np.abs(np.diff(values))
    return -np.polyfit(np.log(sizes[:-1]), np.log(diffs), 1)[0]


INITIAL_1D = [lambda s: np.sin(np.pi * s), lambda s: np.cos(2.0 * s) - s ** 2,
              lambda s: np.exp(-4.0 * (s - 0.3) ** 2)]


@pytest.mark.parametrize("staged", [False, True])
def test_the_cost_converges_at_the_trapezoid_order_on_an_interval(staged):
    """Trapezoidal meshes with n - 1 = 8, 16, ..., 128 intervals; with ``staged`` a second
    stage on the mesh with twice the intervals, entered by (nested) interpolation."""
    sizes = np.array([8, 16, 32, 64, 128])
    values = []
    for s in sizes:
        mesh_list = [meshes.interval(s + 1)] + ([meshes.interval(2 * s + 1)] if staged else [])
        values.append(_meshed_cost(mesh_list, _w, _b, INITIAL_1D))
    order = _order(sizes, values)
    assert abs(order - 2.0) < 0.1, (values, order)


@pytest.mark.parametrize("rule", ["midpoint", "trapezoid"])
def test_the_cost_converges_at_the_quadrature_order_on_a_pixel_grid(rule):
    """Grids of the unit square with 4, 8, 16, 32 pixels a side: their centres (midpoint
    rule, n x n nodes) or their corners (tensor trapezoid, (n + 1) x (n + 1) nodes)."""
    sizes = np.array([4, 8, 16, 32])
    initial = [lambda a, c: np.sin(np.pi * a) * np.cos(c), lambda a, c: a * c - 0.5,
               lambda a, c: np.exp(-4.0 * ((a - 0.3) ** 2 + (c - 0.6) ** 2))]
    extra = int(rule == "trapezoid")
    values = [_meshed_cost([meshes.grid((n + extra, n + extra), rule=rule)], _w_grid, _b_grid,
                           initial) for n in sizes]
    order = _order(sizes, values)
    assert abs(order - 2.0) < 0.1, (values, order)


def test_replace_keeps_a_stage_field_on_its_mesh():
    """A stage's problem on a mesh keeps its field and its quadrature-weighted regulariser
    through replace (new samples: the decision-region plots do this); the cost is the same."""
    x, y = pmp.datasets.digits()
    problem = pmp.Problem(x[:30], y[:30], field="integral", loss="cross_entropy",
                          projection="first", lam=1e-3,
                          stages=[pmp.Stage(T=1.0, n_steps=3, mesh=pmp.meshes.grid((8, 8)))])
    stage = problem.stages[0]
    controls = pmp.init_controls(problem, seed=0)[0]
    again = stage.replace(x[:30], y[:30])
    assert again.field is stage.field and type(again.reg) is type(stage.reg)
    assert pmp.cost(again, controls)["total"] == pmp.cost(stage, controls)["total"]
    heavier = stage.replace(lam=2e-3)  # a new weight: the regulariser is weighted again
    assert type(heavier.reg) is type(stage.reg)
    parts, heavier_parts = pmp.cost(stage, controls), pmp.cost(heavier, controls)
    assert heavier_parts["regularization"] == pytest.approx(2 * parts["regularization"],
                                                            rel=1e-12)
