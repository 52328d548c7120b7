"""Statements of THEORY.md checked on tiny problems, and the validation of bad input."""
import re

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


# --------------------------------------------------------------------------- bad input
X = np.random.default_rng(0).normal(size=(5, 3))
Y = np.random.default_rng(1).normal(size=(5, 2))


def names_listed(names):
    """A regex requiring every name in ``names`` (in any order)."""
    return "".join(f"(?=.*{re.escape(n)})" for n in names)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=np.zeros(3)), ValueError, r"x must be 2-dimensional, got shape \(3,\)"),
    (dict(x=np.zeros((2, 3, 1))), ValueError, r"x .*shape \(2, 3, 1\)"),
    (dict(y=np.zeros(4)), ValueError, r"y must have shape \(5,\).*got \(4,\)"),
    (dict(y=np.zeros((6, 2))), ValueError, r"y .*\(5,\).*got \(6, 2\)"),
    (dict(x=np.where(np.arange(15).reshape(5, 3) == 4, np.nan, X)), ValueError,
     r"x must be finite, got nan at index"),
    (dict(x=np.where(np.arange(15).reshape(5, 3) == 7, -np.inf, X)), ValueError,
     r"x must be finite, got -inf at index"),
    (dict(T=0.0), ValueError, r"T must be > 0.*got 0\.0"),
    (dict(T=-2.5), ValueError, r"T must be > 0.*got -2\.5"),
    (dict(T=np.nan), ValueError, r"T must be finite, got nan"),
    (dict(n_steps=0), ValueError, r"n_steps must be >= 1, got 0"),
    (dict(n_steps=-3), ValueError, r"n_steps must be >= 1, got -3"),
    (dict(n_steps=2.5), TypeError, r"n_steps must be an int, got float 2\.5"),
    (dict(n_steps=4.0), TypeError, r"n_steps must be an int, got float 4\.0"),
    (dict(n_steps="4"), TypeError, r"n_steps must be an int, got str '4'"),
    (dict(lam=-0.1), ValueError, r"lam must be >= 0.*got -0\.1"),
    (dict(reg="h1", lam1=-1.0), ValueError, r"lam1 must be >= 0.*got -1\.0"),
    (dict(field="outr"), ValueError,
     r"unknown field 'outr'.*" + names_listed(pmp.fields.field_names())),
    (dict(activation="swish"), ValueError,
     r"unknown activation 'swish'.*" + names_listed(pmp.activations.NAMES)),
    (dict(loss="hinge"), ValueError,
     r"unknown loss 'hinge'.*" + names_listed(pmp.objectives.LOSS_NAMES)),
    (dict(reg="l3"), ValueError,
     r"unknown regularizer 'l3'.*" + names_listed(pmp.objectives.REG_NAMES)),
    (dict(loss="logistic", y=np.array([1, -1, 0.5, 1, -1])), ValueError,
     r"y must be -1 or \+1 for loss 'logistic', got 0\.5"),
    (dict(loss="logistic", y=np.array([1, -1, 1, 1, 0])), ValueError,
     r"y must be -1 or \+1 for loss 'logistic', got 0"),
    (dict(loss="cross_entropy", y=np.array([0, 1, 2, 1.5, 0])), ValueError,
     r"y must be integer class labels.*cross_entropy.*got shape \(5,\)"),
    (dict(loss="cross_entropy", y=np.array([0, 1, -1, 1, 0])), ValueError,
     r"y must be integer class labels >= 0.*-1"),
    (dict(field="perceptron"), ValueError,
     r"width must be given for field 'perceptron'.*got None"),
    (dict(field="features"), ValueError, r"width must be given for field 'features'.*got None"),
    (dict(projection=np.eye(3)), ValueError, r"projection must have shape \(2, 3\), got \(3, 3\)"),
    (dict(projection="middle"), ValueError, r"unknown projection 'middle'"),
    (dict(p=0.5, loss="lp"), ValueError, r"p must be >= 1.*got 0\.5"),
    (dict(frozen={"V": True}), ValueError, r"frozen names unknown control 'V'"),
])
def test_problem_rejects_bad_input(kwargs, error, match):
    args = dict(x=X, y=Y, n_steps=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pmp.Problem(args.pop("x"), args.pop("y"), **args)


def test_problem_accepts_numpy_integers_and_floats():
    problem = pmp.Problem(X, Y, T=np.float32(2.0), n_steps=np.int64(4), lam=np.float64(0.1))
    assert problem.n_steps == 4 and problem.h == pytest.approx(0.5)


def test_activation_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"unknown activation 'tan'.*" +
                       names_listed(pmp.activations.NAMES)):
        pmp.activations.Activation("tan")


@pytest.mark.parametrize("func", [pmp.forward, pmp.backward, pmp.value_and_grad, pmp.cost,
                                  pmp.evaluate])
def test_controls_rejected(func):
    problem = pmp.Problem(X, Y, field="outer", n_steps=4)
    good = make_controls(problem)
    with pytest.raises(ValueError, match=re.escape("controls must have keys ['W', 'b'], got "
                                                   "['W']")):
        func(problem, {"W": good["W"]})
    with pytest.raises(ValueError, match=re.escape("got ['W', 'b', 'c']")):
        func(problem, {**good, "c": good["b"]})
    with pytest.raises(ValueError, match=re.escape("controls['W'] must have shape (4, 3, 3), "
                                                   "got (4, 3, 2)")):
        func(problem, {**good, "W": np.zeros((4, 3, 2))})
    with pytest.raises(ValueError, match=re.escape("controls['b'] must have shape (4, 3), "
                                                   "got (3, 3)")):
        func(problem, {**good, "b": np.zeros((3, 3))})
    bad = good["b"].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"controls\['b'\] must be finite, got nan at index"):
        func(problem, {**good, "b": bad})
    with pytest.raises(TypeError, match=r"controls must be a mapping.*list"):
        func(problem, [good["W"], good["b"]])


def test_trainable_readout_is_a_required_control():
    problem = pmp.Problem(X, Y, projection="trainable", n_steps=4)
    good = make_controls(problem)
    with pytest.raises(ValueError, match=re.escape("controls must have keys ['P', 'W', 'b']")):
        pmp.forward(problem, {"W": good["W"], "b": good["b"]})
    with pytest.raises(ValueError, match=re.escape("controls['P'] must have shape (2, 3)")):
        pmp.forward(problem, {**good, "P": np.zeros((3, 3))})


def test_backward_rejects_states_of_wrong_shape():
    problem = pmp.Problem(X, Y, n_steps=4)
    controls = make_controls(problem)
    with pytest.raises(ValueError, match=r"states must have shape \(5, 5, 3\), got \(4, 5, 3\)"):
        pmp.backward(problem, controls, np.zeros((4, 5, 3)))


@pytest.mark.parametrize("where", ["x", "controls"])
def test_non_finite_index_is_printed_plainly(where):
    problem = pmp.Problem(X, Y, n_steps=4)
    bad = X.copy()
    bad[1, 1] = np.nan
    if where == "x":
        call = lambda: pmp.Problem(bad, Y, n_steps=4)  # noqa: E731
        match = r"x must be finite, got nan at index \(1, 1\)"
    else:
        controls = make_controls(problem)
        controls["b"][2, 1] = np.nan
        call = lambda: pmp.forward(problem, controls)  # noqa: E731
        match = r"controls\['b'\] must be finite, got nan at index \(2, 1\)"
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------- segmented (checkpointed-in-time) sweeps
@pytest.mark.parametrize("field", ["outer", "inner", "diagonal", "features", "perceptron"])
@pytest.mark.parametrize("n_samples, dim, running", [(7, 3, 0.5), (300, 3, 0.0),
                                                     (300, 10, 0.0), (300, 10, 0.5)])
def test_segmented_gradient_is_bitwise_identical(field, n_samples, dim, running):
    """Also with two row blocks on two threads (the readout's gradient, a sum over all
    steps, is added block by block as in one sweep), and without a running cost (then the
    segments' recomputed forward sweeps keep only their last state)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n_samples, dim)), rng.normal(size=n_samples)
    width = {"features": 5, "perceptron": 4}.get(field)
    problem = pmp.Problem(x, y, field=field, width=width, n_steps=17, T=2.0, running=running,
                          projection="trainable")
    controls = pmp.init_controls(problem, scale=0.5, seed=1)
    with pmp.threads(2):
        J, grads = pmp.value_and_grad(problem, controls)
    for segment in (1, 4, 5, 17, 40):
        with pmp.threads(2):
            J_s, grads_s = pmp.value_and_grad(problem, controls, segment=segment)
        assert J_s == pytest.approx(J, rel=1e-14)
        for name in grads:
            np.testing.assert_array_equal(grads_s[name], grads[name])


def test_segmented_training_matches_and_is_refused_for_msa():
    x, y = pmp.datasets.rings(16, seed=0, lift=3)
    problem = pmp.Problem(x, y, n_steps=16, T=2.0)
    a = pmp.train(problem, "lbfgs", max_iter=20)
    b = pmp.train(problem, "lbfgs", max_iter=20, segment=4)
    for name in a.controls:
        np.testing.assert_allclose(b.controls[name], a.controls[name], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="gradient methods"):
        pmp.train(problem, "emsa", segment=4)
