"""Staged problems (variable width, docs/theory.md section 13): the sweeps against a plain
NumPy reference, the exact gradient against central finite differences through every kind of
transition, the costates as -dJ/dX on both sides of a switch, the lift equivalence, one stage
as the unstaged problem bit for bit, the switching-time gradient, and training."""
import numpy as np
import pytest

import naive
import pmp
from pmp import stages as st

EPS = 1e-4  # 4-point central stencil: truncation O(EPS^4), rounding O(1e-16 / EPS)
RTOL = 1e-6
N = 5


# ------------------------------------------------------------------ the test problems
def _data(d, m=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, d)), rng.normal(size=(N, m))


def _matrix(d_out, d_in, seed=7):
    return np.random.default_rng(seed).normal(size=(d_out, d_in)) / np.sqrt(d_in)


def _hat_matrix(nodes_in, nodes_out):
    """Linear interpolation written out: each output node between two input nodes."""
    M = np.zeros((nodes_out.size, nodes_in.size))
    for i, t in enumerate(nodes_out):
        r = np.clip(np.searchsorted(nodes_in, t), 1, nodes_in.size - 1)
        w = (t - nodes_in[r - 1]) / (nodes_in[r] - nodes_in[r - 1])
        M[i, r - 1], M[i, r] = 1.0 - w, w
    return M


MESH_IN, MESH_OUT = np.array([0.0, 0.4, 1.0]), np.linspace(0.0, 1.0, 4)

# kind -> (x dim, stages, the fixed matrix of each transition (None: trainable), problem kwargs)
CASES = {
    "lift": (2, [pmp.Stage(0.6, 3), pmp.Stage(0.5, 4, dim=3, enter="lift")],
             [np.eye(3, 2)], {}),
    "project": (3, [pmp.Stage(0.6, 3), pmp.Stage(0.5, 4, dim=2, enter="project")],
                [np.eye(2, 3)], dict(running=0.4)),
    "matrix": (2, [pmp.Stage(0.6, 3), pmp.Stage(0.5, 4, dim=3, enter=_matrix(3, 2))],
               [_matrix(3, 2)], dict(field="inner", activation="sigmoid")),
    "trainable": (3, [pmp.Stage(0.6, 3), pmp.Stage(0.5, 4, dim=2, enter="trainable",
                                                   enter_lam=0.1)],
                  [None], dict(running=0.3)),
    "interpolate": (3, [pmp.Stage(0.6, 3, mesh=MESH_IN),
                        pmp.Stage(0.5, 4, mesh=MESH_OUT, enter="interpolate")],
                    [_hat_matrix(MESH_IN, MESH_OUT)], {}),
    # three stages, each with its own field, activation, regulariser and weights
    "mixed": (2, [pmp.Stage(0.4, 2),
                  pmp.Stage(0.5, 3, dim=3, enter="lift", field="inner", activation="tanh",
                            reg="h1", lam1=0.2, running=0.5),
                  pmp.Stage(0.3, 3, enter="trainable", enter_lam=0.05, lam=0.02,
                            activation="sigmoid")],
              [np.eye(3, 2), None], dict(running=0.2)),
}
ENTER_LAM = {"trainable": [0.1], "mixed": [None, 0.05]}


def make_case(kind, **changes):
    d, stages, mats, kwargs = CASES[kind]
    x, y = _data(d)
    kwargs = dict(dict(field="outer", activation="tanh", lam=0.05), **kwargs)
    kwargs.update(changes)
    return pmp.Problem(x, y, stages=stages, **kwargs), mats


def make_stage_controls(problem, seed=0, scale=0.6):
    rng = np.random.default_rng(100 + seed)
    out = []
    for shapes in problem.control_shapes:
        out.append({n: (np.eye(*s) + 0.3 * rng.normal(size=s)) if n == "enter"
                    else scale * rng.normal(size=s) for n, s in shapes.items()})
    return out


# ------------------------------------------------------ the plain NumPy reference
def _A(controls, mats, j):
    """The transition into stage j."""
    return controls[j]["enter"] if mats[j - 1] is None else mats[j - 1]


def ref_forward(problem, controls, mats):
    xs_all = []
    for j, stage in enumerate(problem.stages):
        x0 = None if j == 0 else xs_all[-1][-1] @ _A(controls, mats, j).T
        xs_all.append(naive.forward(stage, controls[j], x0=x0))
    return xs_all


def ref_costates(problem, controls, mats, xs_all):
    S = len(problem.stages)
    ps_all = [None] * S
    for j in range(S - 1, -1, -1):
        stage, xs, u = problem.stages[j], xs_all[j], controls[j]
        P, K, h = naive.readout_matrix(stage, u), stage.n_steps, stage.h
        ps = np.zeros_like(xs)
        ps[K] = (-stage.terminal * naive.mean_loss(stage, xs[K], P)[1] if j == S - 1
                 else ps_all[j + 1][0] @ _A(controls, mats, j + 1))
        for k in range(K - 1, -1, -1):
            step = {n: u[n][k] for n in stage.control_names}
            vjp = np.array([naive.sample_field_vjp(stage, x, step, p)[0]
                            for x, p in zip(xs[k], ps[k + 1])])
            ps[k] = ps[k + 1] + h * vjp - h * stage.running * naive.mean_loss(stage, xs[k], P)[1]
        ps_all[j] = ps
    return ps_all


def ref_gradients(problem, controls, mats, enter_lam):
    xs_all = ref_forward(problem, controls, mats)
    ps_all = ref_costates(problem, controls, mats, xs_all)
    out = []
    for j, (stage, u, xs, ps) in enumerate(zip(problem.stages, controls, xs_all, ps_all)):
        g = naive.hamiltonian_gradients(stage, u, xs, ps)
        for n in stage.control_names:
            g[n] += 2.0 * stage.h * stage.lam * u[n]
            du = np.diff(u[n], axis=0)
            g[n][1:] += 2.0 * stage.lam1 / stage.h * du
            g[n][:-1] -= 2.0 * stage.lam1 / stage.h * du
        if j and mats[j - 1] is None:
            lam = enter_lam[j - 1] if enter_lam[j - 1] is not None else stage.lam
            g["enter"] = -ps[0].T @ xs_all[j - 1][-1] + 2.0 * lam * u["enter"]
        out.append(g)
    return out, xs_all, ps_all


def ref_cost(problem, controls, mats, enter_lam):
    xs_all = ref_forward(problem, controls, mats)
    J = 0.0
    for j, (stage, u, xs) in enumerate(zip(problem.stages, controls, xs_all)):
        P, K, h = naive.readout_matrix(stage, u), stage.n_steps, stage.h
        J += h * stage.running * sum(naive.mean_loss(stage, X, P)[0] for X in xs[:K])
        J += h * float(np.sum(naive.reg_step_values(stage, u)))
        J += stage.lam1 / h * sum(float(np.sum(np.diff(u[n], axis=0) ** 2))
                                  for n in stage.control_names)
        if j and mats[j - 1] is None:
            lam = enter_lam[j - 1] if enter_lam[j - 1] is not None else stage.lam
            J += lam * float(np.sum(u["enter"] ** 2))
    last = problem.stages[-1]
    return J + last.terminal * naive.mean_loss(last, xs_all[-1][-1],
                                               naive.readout_matrix(last, controls[-1]))[0]


# --------------------------------------------------------------------- helpers
def inner(a, b):
    return sum(float(np.sum(u[n] * v[n])) for u, v in zip(a, b) for n in u)


def shifted(controls, direction, s):
    return [{n: u[n] + s * v[n] for n in u} for u, v in zip(controls, direction)]


def directional_fd(f, eps=EPS):
    values = [f(s * eps) for s in (-2.0, -1.0, 1.0, 2.0)]
    return (values[0] - 8.0 * values[1] + 8.0 * values[2] - values[3]) / (12.0 * eps)


# ------------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind", list(CASES))
def test_sweeps_match_the_numpy_reference(kind):
    problem, mats = make_case(kind)
    u = make_stage_controls(problem)
    lam = ENTER_LAM.get(kind, [None] * len(mats))
    grads_ref, xs_ref, ps_ref = ref_gradients(problem, u, mats, lam)
    parts, grads, xs, ps = pmp.evaluate(problem, u)
    for a, b in zip(xs + ps, xs_ref + ps_ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for g, g_ref in zip(grads, grads_ref):
        assert set(g) == set(g_ref)
        for n in g:
            np.testing.assert_allclose(g[n], g_ref[n], rtol=1e-11, atol=1e-14)
    J_ref = ref_cost(problem, u, mats, lam)
    assert parts["total"] == pytest.approx(J_ref, rel=1e-13)
    J, grads2 = pmp.value_and_grad(problem, u)
    assert J == pytest.approx(J_ref, rel=1e-13)
    assert pmp.cost(problem, u)["total"] == pytest.approx(J_ref, rel=1e-13)
    for g, g2 in zip(grads, grads2):
        for n in g:
            np.testing.assert_allclose(g2[n], g[n], rtol=1e-12, atol=1e-15)
    for a, b in zip(pmp.forward(problem, u) + pmp.backward(problem, u), xs + ps):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", list(CASES))
def test_gradient_against_central_differences(kind):
    problem, _ = make_case(kind)
    u = make_stage_controls(problem, seed=1)
    J, grads = pmp.value_and_grad(problem, u)
    rng = np.random.default_rng(2)
    gnorm = np.sqrt(inner(grads, grads))
    directions = [[{n: g[n] / gnorm for n in g} for g in grads]]
    directions += [[{n: rng.normal(size=a.shape) for n, a in v.items()} for v in u]
                   for _ in range(2)]
    if kind in ("trainable", "mixed"):  # the transitions' entries alone
        directions.append([{n: (rng.normal(size=a.shape) if n == "enter" else 0 * a)
                            for n, a in v.items()} for v in u])
    for v in directions:
        exact = inner(grads, v)
        fd = directional_fd(lambda s: pmp.cost(problem, shifted(u, v, s))["total"])
        assert abs(fd - exact) <= RTOL * max(abs(exact), 1e-3 * gnorm), (fd, exact)


def _rest_cost(problem, controls, mats, j, k, X):
    """The cost after (and including the running cost at) step k of stage j, from X_k = X:
    what the costate p^{(j)}_k is minus the derivative of."""
    total = 0.0
    for i in range(j, len(problem.stages)):
        stage, u = problem.stages[i], controls[i]
        if i > j:
            X, k = X @ _A(controls, mats, i).T, 0
        xs = naive.forward(stage, u, x0=X, k0=k)
        P = naive.readout_matrix(stage, u)
        total += stage.h * stage.running * sum(naive.mean_loss(stage, Z, P)[0] for Z in xs[:-1])
        X = xs[-1]
    last = problem.stages[-1]
    return total + last.terminal * naive.mean_loss(last, X, naive.readout_matrix(last,
                                                                                 controls[-1]))[0]


@pytest.mark.parametrize("kind", ["lift", "project", "trainable", "mixed"])
def test_costate_is_minus_dJ_dX_on_both_sides_of_a_switch(kind):
    problem, mats = make_case(kind)
    u = make_stage_controls(problem, seed=3)
    xs, ps = pmp.forward(problem, u), pmp.backward(problem, u)
    rng = np.random.default_rng(4)
    K0 = problem.n_steps[0]
    # inside the first stage, just before the transition, just after it, at the end
    for j, k in [(0, 1), (0, K0), (1, 0), (1, 1), (len(xs) - 1, problem.n_steps[-1])]:
        V = rng.normal(size=xs[j][k].shape)
        fd = directional_fd(lambda s: _rest_cost(problem, u, mats, j, k, xs[j][k] + s * V))
        assert fd == pytest.approx(-float(np.sum(ps[j][k] * V)), rel=1e-7, abs=1e-12), (j, k)


@pytest.mark.parametrize("field", ["outer", "inner"])
def test_a_lift_is_one_wide_problem_with_the_padded_entries_frozen_before_the_switch(field):
    """Lift 2 -> 3 at t_s = 0.6 (h = 0.2 on both stages) against one width-3 problem whose
    entries acting on or feeding the third coordinate are frozen at zero on the first 3
    steps (tanh(0) = 0: the padded coordinate stays 0 there)."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    kw = dict(field=field, activation="tanh", projection="first", running=0.3, lam=0.05)
    staged = pmp.Problem(x, y, stages=[pmp.Stage(0.6, 3), pmp.Stage(0.8, 4, dim=3,
                                                                      enter="lift")], **kw)
    W_mask, b_mask = np.zeros((7, 3, 3), bool), np.zeros((7, 3), bool)
    W_mask[:3, 2, :] = W_mask[:3, :, 2] = b_mask[:3, 2] = True
    wide = pmp.Problem(x, y, T=1.4, n_steps=7, lift=3, frozen={"W": W_mask, "b": b_mask}, **kw)
    u = make_stage_controls(staged, seed=6)
    W, b = np.zeros((7, 3, 3)), np.zeros((7, 3))
    W[:3, :2, :2], W[3:], b[:3, :2], b[3:] = u[0]["W"], u[1]["W"], u[0]["b"], u[1]["b"]
    parts, grads, xs, _ = pmp.evaluate(staged, u)
    parts_w, grads_w, xs_w, _ = pmp.evaluate(wide, {"W": W, "b": b})
    assert parts_w["total"] == pytest.approx(parts["total"], rel=1e-13)
    np.testing.assert_array_equal(xs_w[:4, :, 2], 0.0)
    np.testing.assert_allclose(xs_w[:4, :, :2], xs[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(xs_w[3:], xs[1], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grads_w["W"][:3, :2, :2], grads[0]["W"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads_w["b"][:3, :2], grads[0]["b"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads_w["W"][3:], grads[1]["W"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads_w["b"][3:], grads[1]["b"], rtol=1e-12, atol=1e-15)


ONE_STAGE = [dict(field="outer", activation="tanh", T=1.0, n_steps=5),
             dict(field="inner", activation="relu", reg="h1", lam1=0.3, running=0.5,
                  projection="trainable", T=2.0, n_steps=6),
             dict(field="perceptron", activation="tanh", width=4, loss="cross_entropy",
                  T=1.0, n_steps=4),
             dict(field="features", width=5, T=1.5, n_steps=4, lift=4)]


@pytest.mark.parametrize("kwargs", ONE_STAGE, ids=lambda k: k["field"])
def test_one_stage_is_the_unstaged_problem_bit_for_bit(kwargs):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(7, 3))
    y = rng.integers(0, 3, size=7) if kwargs.get("loss") == "cross_entropy" \
        else rng.normal(size=(7, 2))
    plain = pmp.Problem(x, y, **kwargs)
    staged = pmp.Problem(x, y, stages=[pmp.Stage()], **kwargs)
    u = pmp.init_controls(plain, scale=0.8, seed=3)
    us = pmp.init_controls(staged, scale=0.8, seed=3)
    for n in u:
        np.testing.assert_array_equal(us[0][n], u[n])
    J, g = pmp.value_and_grad(plain, u)
    Js, gs = pmp.value_and_grad(staged, [u])
    assert Js == J
    parts, grads, xs, ps = pmp.evaluate(plain, u)
    parts_s, grads_s, xs_s, ps_s = pmp.evaluate(staged, [u])
    assert parts_s == parts and pmp.cost(staged, [u]) == pmp.cost(plain, u)
    for a, b in [(gs[0], g), (grads_s[0], grads)]:
        assert set(a) == set(b) and all(np.array_equal(a[n], b[n]) for n in a)
    for a, b in [(xs_s[0], xs), (ps_s[0], ps), (pmp.forward(staged, [u])[0], xs),
                 (pmp.backward(staged, [u])[0], ps)]:
        np.testing.assert_array_equal(a, b)
    r = pmp.train(plain, method="lbfgs", max_iter=4, progress=False)
    rs = pmp.train(staged, method="lbfgs", max_iter=4, progress=False)
    np.testing.assert_array_equal(rs.history["cost"], r.history["cost"])
    assert all(np.array_equal(rs.controls[0][n], r.controls[n]) for n in r.controls)


@pytest.mark.parametrize("kind,changes", [("lift", {}), ("mixed", {}),
                                          ("lift", dict(reg="h1", lam1=0.3, running=0.4))],
                         ids=["lift", "mixed", "lift-h1-running"])
def test_duration_gradient_against_central_differences(kind, changes):
    problem, _ = make_case(kind, **changes)
    u = make_stage_controls(problem, seed=9)
    g = st.duration_gradient(problem, u)
    assert g.shape == (len(problem.stages),)
    for j, T in enumerate(problem.durations):
        def J(s, j=j):
            durations = list(problem.durations)
            durations[j] += s * T
            return pmp.cost(problem.with_durations(durations), u)["total"]
        fd = directional_fd(J) / T
        assert g[j] == pytest.approx(fd, rel=1e-7, abs=1e-11), (j, g[j], fd)


def test_duration_gradient_of_an_unstaged_problem_and_the_switch_hamiltonians():
    x, y = _data(3)
    plain = pmp.Problem(x, y, T=1.3, n_steps=6, running=0.3, lam=0.05)
    u = pmp.init_controls(plain, scale=0.7)
    fd = directional_fd(lambda s: pmp.cost(plain.replace(T=1.3 + s), u)["total"])
    assert st.duration_gradient(plain, u)[0] == pytest.approx(fd, rel=1e-7)
    problem, _ = make_case("mixed")
    u = make_stage_controls(problem, seed=10)
    hbar = st.stage_hamiltonians(problem, u)
    assert [h.shape for h in hbar] == [(K,) for K in problem.n_steps]
    sides = st.switch_hamiltonians(problem, u)
    np.testing.assert_array_equal(sides, [[hbar[0][-1], hbar[1][0]], [hbar[1][-1], hbar[2][0]]])
    g = st.duration_gradient(problem, u)  # without H^1 coupling: minus the mean Hamiltonian
    assert g[0] == pytest.approx(-np.mean(hbar[0]), rel=1e-14)
    np.testing.assert_allclose(problem.switch_times, [0.4, 0.9])
    parts, _, xs, ps = pmp.evaluate(problem, u)
    H = pmp.hamiltonian(problem, u, xs, ps)  # H_k = <p_{k+1}, X_{k+1}> - h (running + R)
    for j, stage in enumerate(problem.stages):  # H_k - <p_{k+1}, X_k> = h Hbar_k
        np.testing.assert_allclose(H[j] - np.einsum("knd,knd->k", ps[j][1:], xs[j][:-1]),
                                   stage.h * hbar[j], rtol=1e-9, atol=1e-13)
    losses = pmp.losses_along(problem, xs)
    assert [a.shape for a in losses] == [(K + 1,) for K in problem.n_steps]
    assert losses[-1][-1] == pytest.approx(parts["loss"], rel=1e-13)


def test_train_two_stage_rings_lifted_at_the_switch():
    """The two rings in the plane, lifted to R^3 at t_s = 2: L-BFGS and E-MSA decrease J at
    every iterate; Adam on mini-batches trains it too."""
    x, y = pmp.datasets.rings(256, seed=0)
    problem = pmp.Problem(x, y, stages=[pmp.Stage(T=2.0, n_steps=20),
                                        pmp.Stage(T=3.0, n_steps=30, dim=3, enter="lift")],
                          field="outer", activation="tanh", loss="squared", reg="l2", lam=1e-3)
    result = pmp.train(problem, method="lbfgs", max_iter=25, progress=False)
    costs = result.history["cost"]
    assert np.all(np.diff(costs) <= 0.0) and costs[-1] < 0.6 * costs[0]
    assert [set(c) for c in result.controls] == [{"W", "b"}, {"W", "b"}]
    assert result.J == pytest.approx(pmp.cost(problem, result.controls)["total"], rel=1e-12)
    emsa = pmp.train(problem, method="emsa", max_iter=6, progress=False)
    assert np.all(np.diff(emsa.history["cost"]) <= 0.0) and emsa.J < costs[0]
    adam = pmp.train(problem, method="adam", max_iter=5, batch_size=64, progress=False)
    assert adam.J < costs[0]


def test_trainable_transition_trains():
    problem, _ = make_case("trainable")
    result = pmp.train(problem, method="lbfgs", max_iter=10, progress=False)
    assert result.J < result.history["cost"][0]
    assert result.controls[1]["enter"].shape == (2, 3)
    assert not np.array_equal(result.controls[1]["enter"], np.eye(2, 3))


@pytest.mark.parametrize("make,error,match", [
    (lambda x, y: pmp.Stage(T=1.0, loss="squared"), TypeError, "unknown keyword.*'loss'"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=4)]), ValueError,
     r"stages\[1\].enter must be given.*from 2 to 4"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=1, enter="lift")]),
     ValueError, r"stages\[1\].enter='lift' needs dim >= 2.*got dim=1"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=3, enter="project")]),
     ValueError, r"stages\[1\].enter='project' needs dim <= 2"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=3,
                                                                     enter=np.ones((2, 3)))]),
     ValueError, r"stages\[1\].enter must have shape \(3, 2\), got \(2, 3\)"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(enter="spline")]),
     ValueError, r"stages\[1\].enter must be one of lift, project, interpolate, trainable"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(enter="interpolate")]),
     ValueError, r"needs a mesh on stages\[0\] and stages\[1\], got none on stages\[0\]"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(enter="lift")]), ValueError,
     r"stages\[0\]: enter must be None for the first stage"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(T=-1.0)]), ValueError,
     r"stages\[0\]: T must be > 0.0, got -1.0"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=0, enter="lift")]),
     ValueError, r"stages\[1\].dim must be >= 1, got 0"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(mesh=[0.0, 0.0])]),
     ValueError, r"stages\[1\].mesh must be a non-empty increasing array"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=3, enter="lift",
                                                                     frozen={"enter": True})]),
     ValueError, r"stages\[1\].frozen names 'enter', but stage 1 has no trainable transition"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(
        dim=3, enter="trainable", frozen={"enter": np.ones((2, 2), bool)})]),
     ValueError, r"stages\[1\].frozen\['enter'\] must be True or a boolean mask broadcastable "
                 r"to \(3, 2\), got ndarray of shape \(2, 2\)"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(enter_lam=0.1)]),
     ValueError, r"stages\[1\].enter_lam is the weight of a trainable transition"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage(), pmp.Stage(dim=3, mesh=[0.0, 1.0])]),
     ValueError, r"stages\[1\].dim must equal the 2 nodes of its mesh, got 3"),
    (lambda x, y: pmp.Problem(x, y, stages=[pmp.Stage()], foo=1), TypeError,
     "unexpected keyword.*'foo'"),
    (lambda x, y: pmp.Problem(x, y, stages=[]), TypeError, "stages must be a non-empty list"),
    (lambda x, y: pmp.Problem(x, y, stages=[{"T": 1.0}]), TypeError,
     r"stages\[0\] must be a pmp.Stage, got dict"),
])
def test_bad_stages(make, error, match):
    x, y = _data(2, m=1)
    with pytest.raises(error, match=match):
        make(x, y)


def test_bad_staged_controls():
    problem, _ = make_case("trainable")
    u = make_stage_controls(problem)
    with pytest.raises(TypeError, match="must be a list of 2 dicts"):
        pmp.value_and_grad(problem, u[0])
    with pytest.raises(ValueError, match=r"one dict per stage \(2\), got 1"):
        pmp.cost(problem, u[:1])
    with pytest.raises(ValueError, match=r"controls\[1\] must hold 'enter'.*shape \(2, 3\)"):
        pmp.forward(problem, [u[0], {n: a for n, a in u[1].items() if n != "enter"}])
    with pytest.raises(ValueError, match=r"controls\[1\]\['enter'\] must have shape \(2, 3\)"):
        pmp.forward(problem, [u[0], dict(u[1], enter=np.eye(3))])
    with pytest.raises(ValueError, match=r"controls\[0\]: controls\['W'\] must have shape"):
        pmp.forward(problem, [dict(u[0], W=np.zeros((2, 3, 3))), u[1]])
    with pytest.raises(ValueError, match="segment is not available for a staged problem"):
        pmp.value_and_grad(problem, u, segment=2)
    with pytest.raises(TypeError, match="takes an unstaged pmp.Problem, got a staged one"):
        pmp.sweeps.forward(problem, u)


def test_emsa_trains_a_staged_problem_stage_by_stage():
    """Each stage maximised by its own field's maximiser ("outer": closed form, "inner":
    L-BFGS), the trainable transition by its Sylvester equation: E-MSA stays monotone."""
    x, y = pmp.datasets.rings(64, seed=1)
    problem = pmp.Problem(x, y, stages=[pmp.Stage(T=1.0, n_steps=8),
                                        pmp.Stage(T=1.0, n_steps=8, dim=3, enter="trainable",
                                                  field="inner", enter_lam=0.01)],
                          activation="tanh", lam=1e-2)
    result = pmp.train(problem, method="emsa", max_iter=8, progress=False)
    costs = result.history["cost"]
    assert np.all(np.diff(costs) <= 0.0) and costs[-1] < costs[0]
    assert np.sum(result.history["accepted"]) >= 3
    assert not np.array_equal(result.controls[1]["enter"], np.eye(3, 2))


def test_one_stage_emsa_is_the_unstaged_emsa():
    x, y = _data(3)
    kw = dict(field="outer", activation="tanh", T=1.0, n_steps=6, lam=0.05)
    plain, staged = pmp.Problem(x, y, **kw), pmp.Problem(x, y, stages=[pmp.Stage()], **kw)
    r = pmp.train(plain, method="emsa", max_iter=6, progress=False)
    rs = pmp.train(staged, method="emsa", max_iter=6, progress=False)
    np.testing.assert_allclose(rs.history["cost"], r.history["cost"], rtol=1e-10)
    np.testing.assert_array_equal(rs.history["accepted"], r.history["accepted"])


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_the_transition_maximiser_is_stationary(rho):
    from pmp.maximize.staged import _transition

    problem, _ = make_case("trainable")
    tr = problem.transitions[0]
    rng = np.random.default_rng(11)
    A_old, p0, X = rng.normal(size=(2, 3)), rng.normal(size=(N, 2)), rng.normal(size=(N, 3))
    A, gain = _transition(tr, A_old, p0, X, rho)
    D, Ph = A - A_old, N * p0
    residual = p0.T @ X - 2 * tr.lam * A - rho / N * (D @ X.T @ X + Ph.T @ Ph @ D)
    np.testing.assert_allclose(residual, 0.0, atol=1e-12)
    assert gain > 0.0


def test_frozen_transition_entries_and_float32():
    x, y = _data(2)
    mask = np.eye(3, 2, dtype=bool)
    problem = pmp.Problem(x, y, dtype="float32", stages=[
        pmp.Stage(0.5, 3), pmp.Stage(0.5, 3, dim=3, enter="trainable", frozen={"enter": mask})])
    u = pmp.init_controls(problem, scale=0.5)
    assert all(a.dtype == np.float32 for v in u for a in v.values())
    J, grads = pmp.value_and_grad(problem, u)
    assert grads[1]["enter"].dtype == np.float32
    np.testing.assert_array_equal(grads[1]["enter"][mask], 0.0)
    assert np.all(grads[1]["enter"][~mask] != 0.0)
    result = pmp.train(problem, method="emsa", max_iter=3, progress=False)
    np.testing.assert_array_equal(result.controls[1]["enter"][mask], 1.0)


def test_a_staged_run_resumes_exactly():
    problem, _ = make_case("trainable")
    full = [s.cost["total"] for s in pmp.iterate(problem, method="lbfgs", max_iter=6)]
    part = list(pmp.iterate(problem, method="lbfgs", max_iter=3))
    rest = pmp.iterate(problem, method="lbfgs", max_iter=6, resume=part[-1].resume)
    assert [s.cost["total"] for s in part] + [s.cost["total"] for s in rest] == full



# ------------------------------------------- "discrete" and "proximal", stage by stage
def _small_rings(reg="l2", lam=1e-3, /, **second):
    """The rings, lifted 2 -> 3 at t = 1: 24 samples, 5 + 4 steps (``second``: the second
    stage's own options)."""
    x, y = pmp.datasets.rings(24, seed=0)
    second = dict(dict(T=1.0, n_steps=4, dim=3, enter="lift"), **second)
    return pmp.Problem(x, y, stages=[pmp.Stage(T=1.0, n_steps=5), pmp.Stage(**second)],
                       field="outer", activation="tanh", loss="squared", reg=reg, lam=lam)


@pytest.mark.parametrize("levels", ["binary", "ternary"])
def test_discrete_trains_every_stage_in_its_levels(levels):
    problem = _small_rings()
    result = pmp.train(problem, "discrete", max_iter=12, levels=levels, lr=0.2,
                       progress=False)
    assert result.J < result.history["cost"][0]
    for j, u in enumerate(result.controls):  # each stage's own scale 1 / sqrt(fan_in)
        s = 1.0 / np.sqrt(problem.dims[j])
        allowed = {-s, s} if levels == "binary" else {-s, 0.0, s}
        assert set(np.unique(u["W"])) <= allowed, j
        assert np.any(u["b"] != 0.0)  # the biases take gradient steps
    if levels == "binary":
        assert np.all(result.history["nonzero"] == 1.0)


def test_discrete_keeps_a_trainable_transition_real():
    """A transition has no levels: a real matrix moved by gradient steps (its frozen entries
    kept), the stages' weights in their levels."""
    mask = np.zeros((3, 2), bool)
    mask[0, 0] = True
    problem = _small_rings(enter="trainable", enter_lam=1e-3, frozen={"enter": mask})
    result = pmp.train(problem, "discrete", max_iter=8, scale=0.5, progress=False)
    A = result.controls[1]["enter"]
    assert result.J < result.history["cost"][0]
    assert A[0, 0] == 1.0 and not np.array_equal(A, np.eye(3, 2))
    assert len(np.unique(A)) > 3  # real values, not levels
    assert all(set(np.unique(u["W"])) <= {-0.5, 0.5} for u in result.controls)


def test_proximal_trains_a_staged_problem_with_each_stages_regulariser():
    """l1 on both stages: FISTA with restart never rises. A strong l1 on stage 0, l2 on
    stage 1 with a trainable transition (its regulariser smooth, in the gradient): the prox
    of stage 0's l1 sets its controls to exactly zero, stage 1's stay."""
    result = pmp.train(_small_rings("l1", 2e-2), "proximal", max_iter=10, progress=False)
    costs = result.history["cost"]
    assert np.all(np.diff(costs) <= 0.0) and costs[-1] < 0.9 * costs[0]
    mixed = _small_rings("l1", 0.3, enter="trainable", reg="l2")
    result = pmp.train(mixed, "proximal", max_iter=20, progress=False)
    assert result.J < 0.5 * result.history["cost"][0]
    assert result.J == pytest.approx(pmp.cost(mixed, result.controls)["total"], rel=1e-12)
    assert all(np.all(a == 0.0) for a in result.controls[0].values())
    assert all(np.any(a != 0.0) for a in result.controls[1].values())


@pytest.mark.parametrize("method,reg,options", [
    ("discrete", "l2", dict(levels="ternary", lr=0.2)),
    ("proximal", "l1", {}), ("proximal", "l1elem", dict(lr=0.5))])
def test_one_stage_discrete_and_proximal_are_the_unstaged_runs(method, reg, options):
    x, y = _data(3)
    kw = dict(field="outer", activation="tanh", T=1.0, n_steps=6, reg=reg, lam=0.05)
    plain, staged = pmp.Problem(x, y, **kw), pmp.Problem(x, y, stages=[pmp.Stage()], **kw)
    r = pmp.train(plain, method, max_iter=6, progress=False, **options)
    rs = pmp.train(staged, method, max_iter=6, progress=False, **options)
    np.testing.assert_array_equal(rs.history["cost"], r.history["cost"])
    assert all(np.array_equal(rs.controls[0][n], r.controls[n]) for n in r.controls)


def test_a_method_without_stages_is_refused_by_name():
    class Plain(pmp.methods.GradientDescent):
        name = "plain_gd"
        supports_stages = False

    with pytest.raises(ValueError, match=r"method 'plain_gd' cannot train a staged problem "
                                         r"\(stages=\.\.\.\) yet; methods that can: .*discrete.*"
                                         r"proximal"):
        pmp.train(_small_rings(), Plain(), max_iter=2)
