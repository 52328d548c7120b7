"""Statements of docs/theory.md checked on tiny problems: closed-form cases and identities."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import naive
import pmp
from pmp_cases import make_controls, make_problem, smooth_case

FIELDS = ("outer", "inner", "diagonal", "features", "perceptron")


# ------------------------------------------------------- costates are -dJ/dX_k (section 3)
def cost_from_step(problem, controls, k, X):
    """J as a function of the state at step k: ``terminal Phi(X_K) + h running
    sum_{j=k}^{K-1} Phi(X_j)`` with ``X_j`` re-run by the naive Euler sweep from ``X_k = X``."""
    xs = naive.forward(problem, controls, x0=X, k0=k)
    P = naive.readout_matrix(problem, controls)
    phis = [naive.mean_loss(problem, Xj, P)[0] for Xj in xs]
    return problem.terminal * phis[-1] + problem.h * problem.running * sum(phis[:-1])


@pytest.mark.parametrize("field, activation, loss, p", [
    ("outer", "tanh", "squared", 2.0),
    ("inner", "softplus", "lp", 3.0),
    ("diagonal", "sigmoid", "logistic", 2.0),
    ("features", "tanh", "cross_entropy", 2.0),
    ("perceptron", "gelu", "squared", 2.0),
    ("inner", "leaky_relu", "cross_entropy", 2.0),
])
@pytest.mark.parametrize("running, terminal", [(0.0, 1.0), (0.7, 1.0), (0.7, 0.0)])
def test_costates_are_minus_state_derivatives(field, activation, loss, p, running, terminal):
    problem, controls = smooth_case(field, activation, loss, p, running=running,
                                    terminal=terminal, projection="trainable", min_margin=3e-3)
    xs = pmp.forward(problem, controls)
    ps = pmp.backward(problem, controls, xs)
    eps = 1e-4
    for k in range(problem.n_steps + 1):
        fd = np.zeros_like(xs[k])
        for index in np.ndindex(xs[k].shape):
            values = []
            for s in (-2.0, -1.0, 1.0, 2.0):
                X = xs[k].copy()
                X[index] += s * eps
                values.append(cost_from_step(problem, controls, k, X))
            fd[index] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * eps)
        scale = np.max(np.abs(ps[k]))
        if terminal == 0.0 and k == problem.n_steps:
            assert scale == 0.0
        assert np.max(np.abs(fd + ps[k])) <= 1e-6 * max(scale, 1e-12), k


# ------------------------------------------------------------------------- E4 (section 7)
@pytest.mark.parametrize("T", [0.5, 3.0, 20.0])
@pytest.mark.parametrize("lam", [0.01, 0.3, 2.0])
@pytest.mark.parametrize("n_steps", [1, 3, 6])
def test_e4_closed_form(T, lam, n_steps):
    d = 2
    x0 = np.array([[0.3, -1.2]])
    y = np.array([[1.1, 0.4]])
    problem = pmp.Problem(x0, y, field="outer", activation="identity", T=T, n_steps=n_steps,
                          loss="squared", projection=np.eye(d), reg="l2", lam=lam,
                          frozen={"W": True})
    D2 = float(np.sum((y - x0) ** 2))
    b_star = (y[0] - x0[0]) / (T + 2 * lam)
    controls = {"W": np.zeros((n_steps, d, d)), "b": np.tile(b_star, (n_steps, 1))}
    J, grads = pmp.value_and_grad(problem, controls)
    assert np.max(np.abs(grads["b"])) < 1e-10
    assert np.all(grads["W"] == 0.0)
    parts = pmp.cost(problem, controls)
    assert J == pytest.approx(lam * D2 / (T + 2 * lam), rel=1e-10)
    assert parts["loss"] == pytest.approx(2 * lam**2 * D2 / (T + 2 * lam) ** 2, rel=1e-10)
    xs = pmp.forward(problem, controls)
    np.testing.assert_allclose(xs[-1, 0], x0[0] + T * b_star, rtol=1e-12)
    # away from the optimum the gradient is not zero (the check above is not vacuous)
    _, grads = pmp.value_and_grad(problem, {**controls, "b": 1.5 * controls["b"]})
    assert np.max(np.abs(grads["b"])) > 1e-3 * problem.h * np.sqrt(D2)


# ------------------------------------------------------------------ time scaling (section 6)
@pytest.mark.parametrize("field, activation", [("outer", "tanh"), ("inner", "relu"),
                                               ("inner", "leaky_relu"), ("inner", "identity"),
                                               ("diagonal", "tanh"), ("features", "tanh")])
@pytest.mark.parametrize("T, lam, n_steps", [(3.0, 0.05, 4), (10.0, 0.2, 6), (0.4, 0.01, 3)])
def test_time_scaling(field, activation, T, lam, n_steps):
    kwargs = dict(field=field, activation=activation, loss="squared", reg="l2",
                  n_steps=n_steps, n=6, d=3, seed=3)
    long = make_problem(T=T, lam=lam, **kwargs)
    unit = make_problem(T=1.0, lam=lam / T, **kwargs)
    assert long.field.homogeneous
    controls = make_controls(long)
    scaled = {n: T * u for n, u in controls.items()}
    J_long, g_long = pmp.value_and_grad(long, controls)
    J_unit, g_unit = pmp.value_and_grad(unit, scaled)
    assert J_long == pytest.approx(J_unit, rel=1e-12)
    # J_T(u) = J_1(T u)  =>  grad J_T(u) = T grad J_1(T u)
    for name in controls:
        np.testing.assert_allclose(g_long[name], T * g_unit[name], rtol=1e-10,
                                   atol=1e-12 * np.max(np.abs(g_long[name])))


# ------------------------------------------------- first order of the Euler sweep (section 1)
def smooth_controls(problem, seed=0):
    """Controls as fixed smooth functions of t: ``u(t) = a + c sin(omega t + phase)``."""
    rng = np.random.default_rng(seed)
    coef = {}
    for name, shape in problem.control_shapes.items():
        s = shape[1:]
        coef[name] = (0.5 * rng.normal(size=s), 0.5 * rng.normal(size=s),
                      rng.uniform(1.0, 4.0, size=s), rng.uniform(0, 2 * np.pi, size=s))

    def u(t):
        return {n: a + c * np.sin(w * t + ph) for n, (a, c, w, ph) in coef.items()}

    return u


@pytest.mark.parametrize("field, activation", [("outer", "tanh"), ("inner", "tanh"),
                                               ("diagonal", "sigmoid"), ("features", "tanh"),
                                               ("perceptron", "gelu")])
def test_forward_is_first_order(field, activation):
    T = 1.0
    base = make_problem(field, activation, n=4, d=3, n_steps=1, T=T, seed=1)
    u = smooth_controls(base)
    N, d = base.x.shape

    def rhs(t, z):
        X = z.reshape(N, d)
        ut = u(t)
        return np.concatenate([naive.sample_field(base, x, ut) for x in X])

    ref = solve_ivp(rhs, (0.0, T), base.x.ravel(), method="DOP853", rtol=1e-13,
                    atol=1e-13).y[:, -1].reshape(N, d)
    steps = np.array([16, 32, 64, 128, 256])
    errors = []
    for K in steps:
        problem = make_problem(field, activation, n=4, d=3, n_steps=int(K), T=T, seed=1)
        np.testing.assert_array_equal(problem.x, base.x)
        values = [u(t) for t in problem.t[:-1]]  # left endpoints
        controls = {n: np.array([v[n] for v in values]) for n in problem.control_names}
        errors.append(np.max(np.abs(pmp.forward(problem, controls)[-1] - ref)))
    slope = np.polyfit(np.log(T / steps), np.log(errors), 1)[0]
    assert 0.9 <= slope <= 1.1, (slope, errors)
