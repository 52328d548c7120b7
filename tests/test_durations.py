"""Training the stage durations with the controls (``pmp.train(..., train_durations=...)``,
docs/theory.md section 13): the projection onto ``{sum T_j = T, T_j >= T_min}`` against a
brute force over active sets and its KKT conditions, the projected gradient, switching times
against scans of J (controls fixed, and controls trained at every switching time), E-MSA's
monotonicity, the minimum, free against fixed horizon, resuming, and the errors."""
import itertools

import numpy as np
import pytest

import pmp
from pmp import stages as st

METHODS = ["gd", "heavy_ball", "nesterov", "adam", "lbfgs", "msa", "emsa"]


# ------------------------------------------------------------------ the projection
def brute_projection(z, m, total):
    """The Euclidean projection by enumeration: for every set A of durations at m, the others
    are z - nu with the nu that gives the sum; the nearest feasible candidate wins."""
    best, S = None, z.size
    for k in range(S):
        for A in itertools.combinations(range(S), k):
            free = np.setdiff1d(np.arange(S), A)
            nu = (z[free].sum() - (total - k * m)) / free.size
            y = np.full(S, m)
            y[free] = z[free] - nu
            if np.all(y >= m - 1e-12) and (best is None or
                                           np.sum((y - z) ** 2) < np.sum((best - z) ** 2)):
                best = y
    return best


@pytest.mark.parametrize("seed", range(8))
def test_the_projection_is_the_euclidean_one(seed):
    rng = np.random.default_rng(seed)
    S = 1 + seed % 5
    m = rng.uniform(0.05, 0.3)
    total = S * m + rng.uniform(0.0, 3.0)
    z = rng.normal(total / S, 1.5, size=S)
    y = st.project_durations(z, m, total)
    assert y.sum() == pytest.approx(total, rel=1e-14) and np.all(y >= m)
    np.testing.assert_allclose(y, brute_projection(z, m, total), rtol=1e-12, atol=1e-13)
    # KKT: z - y = nu on the free durations, <= nu (multiplier >= 0) on those at m
    free = y > m
    if np.any(free):
        nu = (z - y)[free]
        np.testing.assert_allclose(nu, nu[0], atol=1e-12)
        assert np.all((z - y)[~free] <= nu[0] + 1e-12)
    np.testing.assert_array_equal(st.project_durations(y, m, total), y)  # a projection
    np.testing.assert_array_equal(st.project_durations(z, m), np.maximum(z, m))  # free


def test_projection_edge_cases():
    np.testing.assert_array_equal(st.project_durations([5.0, -1.0, 0.2], 0.5, 3.0),
                                  [2.0, 0.5, 0.5])
    np.testing.assert_array_equal(st.project_durations([3.0, 0.0], 1.0, 2.0), [1.0, 1.0])
    np.testing.assert_array_equal(st.project_durations([1.0, 2.0], 0.1, 3.0), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"total must be >= 2 \* minimum = 2"):
        st.project_durations([1.0, 1.0], 1.0, 1.5)


def test_the_projected_gradient():
    g = np.array([1.0, 2.0, 4.0])
    inside = st.projected_duration_gradient(g, [1.0, 1.0, 1.0], 0.1)
    np.testing.assert_allclose(inside, g - g.mean(), atol=1e-15)
    # the first duration at its minimum: it may only grow; -r is the nearest such direction
    r = st.projected_duration_gradient(g[::-1], [0.1, 1.0, 1.9], 0.1)
    np.testing.assert_allclose(r, [0.0, 0.5, -0.5], atol=1e-15)
    assert st.projected_duration_gradient(g, [0.1, 1.0, 1.9], 0.1) @ np.ones(3) == \
        pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(st.projected_duration_gradient(g, [0.1, 1.0, 1.9], 0.1),
                               g - g.mean(), atol=1e-15)  # pushing it up: unconstrained
    # a stationary point on the bound: zero
    np.testing.assert_array_equal(st.projected_duration_gradient([3.0, 1.0, 1.0],
                                                                 [0.1, 1.0, 1.9], 0.1), 0.0)
    free = st.projected_duration_gradient([3.0, -1.0, 2.0], [0.1, 1.0, 1.9], 0.1,
                                          fixed_horizon=False)
    np.testing.assert_array_equal(free, [0.0, -1.0, 2.0])


# --------------------------------------------------- a switching time known by a scan
rng = np.random.default_rng(0)
X1 = rng.normal(size=(8, 1))
# controls fixed: stage 1 pushes right, stage 2 pulls back; the best switch is interior
FIXED_U = [{"W": np.full((10, 1, 1), 0.5), "b": np.full((10, 1), 1.0)},
           {"W": np.full((10, 1, 1), -0.8), "b": np.full((10, 1), -0.5)}]


def fixed_problem(T1, T2=None, T=2.0):
    return pmp.Problem(X1, X1 + 0.6, stages=[
        pmp.Stage(T=T1, n_steps=10), pmp.Stage(T=T - T1 if T2 is None else T2, n_steps=10,
                                               activation="sigmoid")],
        field="outer", activation="tanh", loss="squared", lam=1e-3,
        frozen={"W": True, "b": True})


def fixed_scan():
    """The minimiser of J(t_s) (T = 2, controls fixed): the least of a grid of step 4e-3 on
    [0.2, 1.8], refined by the parabola through it and its neighbours."""
    grid = np.arange(0.2, 1.8, 4e-3)
    J = [pmp.cost(fixed_problem(t), FIXED_U)["total"] for t in grid]
    i = int(np.argmin(J))
    assert 0 < i < grid.size - 1  # interior
    c = np.polyfit(grid[i - 1:i + 2] - grid[i], J[i - 1:i + 2], 2)
    return grid[i] - c[1] / (2 * c[0])


SCAN = {}
ITERS = {"gd": 150, "heavy_ball": 200, "nesterov": 200, "adam": 200, "lbfgs": 30,
         "msa": 60, "emsa": 60}
TOL = {"heavy_ball": 1e-3, "nesterov": 1e-3, "adam": 1e-3}  # first-order with momentum


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_scanned_switching_time_with_fixed_controls(method):
    if "fixed" not in SCAN:
        SCAN["fixed"] = fixed_scan()  # 1.1707 (measured)
    result = pmp.train(fixed_problem(1.0), method, controls=FIXED_U, max_iter=ITERS[method],
                       gtol=1e-9, train_durations="fixed_horizon", progress=False)
    T = result.durations
    assert T[0] == pytest.approx(SCAN["fixed"], abs=TOL.get(method, 2e-4)), (method, T)
    assert T.sum() == pytest.approx(2.0, rel=1e-13)
    history = result.history
    assert history["durations"].shape == (len(history["cost"]), 2)
    np.testing.assert_array_equal(history["switch_times"], history["durations"][:, :1])
    np.testing.assert_allclose(history["durations"].sum(axis=1), 2.0, rtol=1e-13)
    assert result.J == pytest.approx(
        pmp.cost(fixed_problem(T[0], T[1]), result.controls)["total"], rel=1e-12)
    assert result.J < history["cost"][0]


def trained_problem(T1, T=2.0):
    """x -> 2 x + 1: stage 1 can only scale (x' = w x), stage 2 only shift (x' = b): the
    cost of each part falls with its duration, so the best switch is interior (about
    T ln 2 / (1 + ln 2) = 0.82 for a vanishing lam; 0.91 here)."""
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(8, 1))
    return pmp.Problem(x, 2 * x + 1, stages=[
        pmp.Stage(T=T1, n_steps=10, field="diagonal"),
        pmp.Stage(T=T - T1, n_steps=10, frozen={"W": True})],
        field="outer", activation="identity", loss="squared", lam=1e-2)


def trained_cost(t_s):
    problem = trained_problem(t_s)
    return pmp.train(problem, "lbfgs", controls=pmp.init_controls(problem, scale=0.0),
                     max_iter=500, gtol=1e-11, progress=False).J


def test_lbfgs_finds_the_scanned_switching_time_with_trained_controls():
    """The scan: J*(t_s) = min_u J(u, t_s) on a grid of step 0.1, refined by a bounded
    scalar search to 1e-6; L-BFGS on the controls and durations together lands on it."""
    from scipy.optimize import minimize_scalar

    grid = np.arange(0.3, 1.75, 0.1)
    J = [trained_cost(t) for t in grid]
    i = int(np.argmin(J))
    assert 0 < i < grid.size - 1  # an interior minimum
    scan = minimize_scalar(trained_cost, bounds=(grid[i - 1], grid[i + 1]), method="bounded",
                           options=dict(xatol=1e-6)).x
    problem = trained_problem(1.5)
    result = pmp.train(problem, "lbfgs", controls=pmp.init_controls(problem, scale=0.0),
                       max_iter=200, gtol=1e-10, train_durations="fixed_horizon",
                       progress=False)
    assert result.status == "converged"
    assert result.durations[0] == pytest.approx(scan, abs=1e-5)  # measured: 2e-9
    assert result.J == pytest.approx(trained_cost(scan), rel=1e-8)


def test_emsa_with_durations_is_monotone_and_moves_towards_the_switch():
    """E-MSA's controls converge slowly on this problem, and the durations follow them
    (t_s 1.29 after 80 iterations, 0.94 after 300; the scan's 0.910): J decreases at every
    iterate and ends below E-MSA's with the switch kept at 1.5."""
    problem = trained_problem(1.5)
    u = pmp.init_controls(problem, scale=0.0)
    result = pmp.train(problem, "emsa", controls=u, max_iter=80,
                       train_durations="fixed_horizon", progress=False)
    costs, T = result.history["cost"], result.history["durations"]
    assert np.all(np.diff(costs) <= 0.0)
    assert len(np.unique(T[:, 0])) > 10  # the durations moved at many iterations
    fixed = pmp.train(problem, "emsa", controls=u, max_iter=80, progress=False)
    assert result.J < fixed.J  # the switch at 1.5 is a bad one
    assert result.durations[0] < 1.4


# ------------------------------------------------- the minimum and the free horizon
@pytest.mark.parametrize("method", METHODS)
def test_the_minimum_duration_holds(method):
    """With T_2 >= 0.9 the best switch (1.17 unconstrained) is at t_s = 1.1."""
    result = pmp.train(fixed_problem(1.0), method, controls=FIXED_U, max_iter=ITERS[method],
                       gtol=1e-9, train_durations="fixed_horizon", min_duration=0.9,
                       progress=False)
    assert np.all(result.history["durations"] >= 0.9)
    assert result.durations[1] == pytest.approx(0.9, abs=TOL.get(method, 1e-9))
    assert result.durations.sum() == pytest.approx(2.0, rel=1e-13)


def test_free_horizon_against_a_bounded_minimisation():
    from scipy.optimize import minimize

    def J(T):
        return pmp.cost(fixed_problem(T[0], T[1]), FIXED_U)["total"]

    best = minimize(J, [1.0, 1.0], method="L-BFGS-B", bounds=[(0.05, 5.0)] * 2,
                    options=dict(ftol=1e-15, gtol=1e-12)).x
    for method in ("lbfgs", "emsa"):
        result = pmp.train(fixed_problem(1.0), method, controls=FIXED_U, max_iter=100,
                           gtol=1e-9, train_durations="free_horizon", min_duration=0.05,
                           progress=False)
        np.testing.assert_allclose(result.durations, best, atol=1e-4)
        assert np.all(result.history["durations"] >= 0.05)
    assert abs(best.sum() - 2.0) > 0.1  # the horizon moved; fixed, it stays (tests above)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_a_free_horizon(method):
    result = pmp.train(fixed_problem(1.0), method, controls=FIXED_U, max_iter=20,
                       train_durations="free_horizon", min_duration=0.05, progress=False)
    T = result.history["durations"]
    assert np.all(T >= 0.05) and result.J < result.history["cost"][0]
    assert abs(T[-1].sum() - 2.0) > 1e-6  # the horizon moves (to 0.574 at the optimum)


# ------------------------------------------------------ the API around it
def test_mini_batches_scale_and_resume():
    problem = trained_problem(1.0)
    adam = pmp.train(problem, "adam", max_iter=20, batch_size=4, lr=0.05,
                     train_durations="fixed_horizon", progress=False)
    at = problem.with_durations(adam.durations)
    assert adam.J == pytest.approx(pmp.cost(at, adam.controls)["total"], rel=1e-12)
    # the durations' first GD step is duration_scale * lr * (g - mean g)
    u = pmp.init_controls(problem, scale=0.1)
    g = st.duration_gradient(problem, u)
    for scale in (1.0, 3.0):
        steps = list(pmp.iterate(problem, "gd", controls=u, max_iter=1, lr=0.01,
                                 train_durations="fixed_horizon", duration_scale=scale))
        np.testing.assert_allclose(steps[1].durations - steps[0].durations,
                                   -scale * 0.01 * (g - g.mean()), rtol=1e-10)
    for method in ("lbfgs", "emsa"):
        kw = dict(train_durations="fixed_horizon", controls=u)
        full = [(s.cost["total"], tuple(s.durations))
                for s in pmp.iterate(problem, method, max_iter=6, **kw)]
        part = list(pmp.iterate(problem, method, max_iter=3, **kw))
        rest = pmp.iterate(problem, method, max_iter=6, resume=part[-1].resume, **kw)
        assert [(s.cost["total"], tuple(s.durations)) for s in part + list(rest)] == full


def test_keep_best_returns_the_durations_of_the_best_iterate():
    result = pmp.train(fixed_problem(1.0), "heavy_ball", controls=FIXED_U, max_iter=30,
                       lr=0.5, keep_best=True, train_durations="fixed_horizon", progress=False)
    best = int(np.argmin(result.history["cost"]))
    assert result.iteration == best and 0 < best < 30  # it overshoots: best at 8
    np.testing.assert_array_equal(result.durations, result.history["durations"][best])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(problem="plain", train_durations="fixed_horizon"), ValueError,
     r"train_durations='fixed_horizon' trains the durations of the stages.*has no stages"),
    (dict(train_durations="fixed"), ValueError,
     r"unknown value 'fixed' \(parameter train_durations\).*fixed_horizon, free_horizon"),
    (dict(min_duration=0.1), ValueError, r"min_duration is an option of train_durations"),
    (dict(duration_scale=2.0), ValueError, r"duration_scale is an option of train_durations"),
    (dict(train_durations="free_horizon", min_duration=1.5), ValueError,
     r"min_duration must be <= every stage's duration.*1.5"),
    (dict(train_durations="free_horizon", min_duration=0.0), ValueError,
     r"min_duration must be > 0.0, got 0.0"),
    (dict(train_durations="free_horizon", duration_scale=-1.0), ValueError,
     r"duration_scale must be > 0.0"),
])
def test_bad_duration_options(kwargs, error, match):
    kwargs = dict(kwargs)
    problem = fixed_problem(1.0)
    if kwargs.pop("problem", None) == "plain":
        problem = pmp.Problem(X1, X1, T=1.0, n_steps=4)
    with pytest.raises(error, match=match):
        pmp.train(problem, "gd", max_iter=1, progress=False, **kwargs)
    with pytest.raises(error, match=match):  # a batch run's check, before it trains
        pmp.trainer.check_options(problem, "gd", **kwargs)
