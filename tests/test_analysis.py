"""Decay analysis (pmp.analysis) and figures (pmp.plots); `pmp analyze` / `pmp plot` are in
test_cli.py."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pmp  # noqa: E402
from pmp import analysis, plots  # noqa: E402


# -------------------------------------------------------------------- rate fits
@pytest.mark.parametrize("mu", [0.3, 1.0, 4.0])
def test_fit_recovers_a_known_rate(mu):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 10, 200)
    values = 3.0 * np.exp(-mu * t) * np.exp(0.01 * rng.normal(size=t.size))
    fit = analysis.fit_rate(t, values)
    assert fit.ci[0] <= mu <= fit.ci[1]
    assert abs(fit.mu - mu) < 0.01 * mu
    assert fit.r2 > 0.99 and fit.plateau is None
    assert fit.window[1] - fit.window[0] > 5
    assert fit.is_rate and fit.verdict.startswith("exponential decay")  # then rounding level


@pytest.mark.parametrize("noise, rel", [(0.05, 0.02), (0.3, 0.1)])
def test_fit_window_covers_the_whole_decay(noise, rel):
    # flat on [0, 1], exponential on [1, 9], flat on [9, 10], with noise: the window is the
    # decay (not three grid points somewhere in it, with R^2 = 0.9999 and any sign), and it
    # leaves out the flat ends where the noise lets it see them
    rng = np.random.default_rng(1)
    t = np.linspace(0, 10, 101)
    values = 3.0 * np.exp(-np.clip(t, 1, 9)) * np.exp(noise * rng.normal(size=t.size))
    fit = analysis.fit_rate(t, values)
    assert fit.window[0] <= 1.5 and fit.window[1] >= 8.5
    assert fit.mu == pytest.approx(1.0, rel=rel)
    assert fit.is_rate and fit.verdict == "exponential decay"


def test_automatic_window_has_the_minimum_size():
    # the noisy decay of a half-trained network: some three-point stretch is straight by chance
    rng = np.random.default_rng(2)
    t = np.linspace(0, 10, 101)
    values = np.exp(-0.4 * t) * np.exp(0.3 * rng.normal(size=t.size))
    fit = analysis.fit_rate(t, values)
    assert fit.n_points >= 8 and fit.window[1] - fit.window[0] >= 0.25 * 10
    assert (analysis.MIN_POINTS, analysis.MIN_FRACTION) == (8, 0.25)  # the documented defaults
    short = analysis.fit_rate(t, values, min_points=20, min_fraction=0.5)
    assert short.n_points >= 20 and short.window[1] - short.window[0] >= 5


def test_exponential_then_plateau():
    rng = np.random.default_rng(3)
    t = np.linspace(0, 10, 101)
    noise = np.exp(0.02 * rng.normal(size=t.size))
    fit = analysis.fit_rate(t, np.maximum(np.exp(-1.5 * t), 1e-3) * noise)
    assert fit.is_rate and fit.mu == pytest.approx(1.5, rel=0.02)
    assert fit.verdict.startswith("exponential decay, then plateau at 1.0e-3 from t = ")
    assert fit.window[1] < fit.plateau_start
    # a decay over less than a quarter of the horizon, then a plateau: a verdict, not a rate
    fast = analysis.fit_rate(t, (0.5 * np.exp(-3.0 * t) + 4.2e-3) * noise)
    assert not fast.is_rate
    assert fast.verdict == f"plateau at 4.2e-3 from t = {fast.plateau_start:.3g}"
    # a fit forced through the plateau is honoured, and judged
    forced = analysis.fit_rate(t, (0.5 * np.exp(-3.0 * t) + 4.2e-3) * noise, window=(0, 10))
    assert forced.window == (0.0, 10.0) and not forced.is_rate
    assert forced.verdict.startswith("no exponential decay detected")


def test_a_curve_that_rises_or_wanders_is_not_a_rate():
    rng = np.random.default_rng(4)
    t = np.linspace(0, 10, 101)
    rises = analysis.fit_rate(t, np.exp(0.3 * t) * np.exp(0.01 * rng.normal(size=t.size)))
    assert not rises.is_rate and rises.verdict == "no exponential decay detected (rises)"
    flat = analysis.fit_rate(t, np.exp(0.1 * rng.normal(size=t.size)))
    assert not flat.is_rate and flat.verdict.startswith("no exponential decay detected")
    # rises, then falls with a bend (the demo's training error along t): no rate either
    hump = analysis.fit_rate(t, 0.6 - 0.58 * ((t - 4) / 6) ** 2)
    assert not hump.is_rate and hump.verdict.startswith("no exponential decay detected")
    # a linear decline is not an exponential one, on any long stretch
    linear = analysis.fit_rate(t, 1.0001 - t / 10)
    assert not linear.is_rate


def test_a_three_point_curve_has_too_few_points():
    fit = analysis.fit_rate([0.7, 0.8, 0.9], [1.0, 0.8, 0.65])
    assert not fit.is_rate and fit.verdict == "too few points (3 < 8)"
    assert fit.r2 > 0.99  # a good R^2 through three points says nothing
    given = analysis.fit_rate(np.linspace(0, 1, 11), np.exp(-np.linspace(0, 1, 11)),
                              window=(0.7, 0.9))
    assert not given.is_rate and given.verdict == "too few points (3 < 8)"


def test_fit_of_controls_that_switch_off():
    t = np.linspace(0, 3, 61)[:-1]
    bang = analysis.fit_rate(t, np.where(t < 0.9, 1.0, 0.0))
    assert not bang.is_rate and bang.verdict == "zero from t = 0.9"


def test_fit_reports_a_plateau_instead_of_fitting_through_it():
    t = np.linspace(0, 20, 400)
    values = np.exp(-0.8 * t) + 1e-3
    fit = analysis.fit_rate(t, values)
    assert fit.plateau is not None and fit.plateau == pytest.approx(1e-3, rel=0.05)
    assert fit.window[1] <= fit.plateau_start
    assert fit.mu == pytest.approx(0.8, rel=0.05)
    assert "plateau" in str(fit)


def test_fit_leaves_out_values_at_the_rounding_floor():
    t = np.linspace(0, 10, 101)
    values = np.where(t < 6, np.exp(-2.0 * t), 0.0)
    fit = analysis.fit_rate(t, values)
    assert fit.window[1] < 6 and fit.mu == pytest.approx(2.0, rel=1e-9)
    assert fit.is_rate and fit.verdict == "exponential decay, then zero from t = 6"


def test_fit_on_a_given_window_and_bad_input():
    t = np.linspace(0, 10, 101)
    values = np.where(t < 5, np.exp(-1.0 * t), np.exp(-5.0 - 3.0 * (t - 5)))
    assert analysis.fit_rate(t, values, window=(6, 10)).mu == pytest.approx(3.0, rel=1e-9)
    assert analysis.fit_rate(t, values, window=(0, 4)).mu == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        analysis.fit_rate(t, values[:-1])
    with pytest.raises(ValueError, match="at least 3 positive"):
        analysis.fit_rate(t, np.zeros_like(t))


def test_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    fit = analysis.power_law(x, 5.0 * x**-1.5)
    assert fit["slope"] == pytest.approx(-1.5) and fit["r2"] == pytest.approx(1.0)
    assert fit["C"] == pytest.approx(5.0) and fit["n_points"] == 4


def test_power_law_through_two_points_has_no_statistics():
    fit = analysis.power_law([2.0, 8.0], [1.0, 0.25])
    assert np.isnan(fit["r2"]) and np.all(np.isnan(fit["ci"]))  # not R^2 = 1
    assert fit["slope"] == pytest.approx(-1.0) and fit["C"] == pytest.approx(2.0)
    assert fit["n_points"] == 2
    rows = [{"model.T": T, "loss": 1.0 / T, "cost": 0.5 / T, "status": "finished"}
            for T in (2.0, 8.0)]
    entry, = analysis.analyze_sweep(rows, "model.T")
    assert np.isnan(entry["slope_loss"]["r2"]) and entry["slope_loss"]["n_points"] == 2


# ------------------------------------------------------- the LQ case E2b (docs/theory.md 7)
def riccati_rate(lam, h):
    s = 1.0
    for _ in range(100000):
        g = s / (2 * lam + h * s)
        a = 2 * lam / (2 * lam + h * s)
        s_new = h + 2 * h * lam * g * g + s * a * a
        if abs(s_new - s) < 1e-15:
            break
        s = s_new
    return -np.log(a) / h


@pytest.fixture(scope="module")
def lq():
    lam, T, K = 0.5, 10.0, 200
    x0, y = np.array([[0.0, 0.0]]), np.array([[1.0, 0.5]])
    problem = pmp.Problem(x0, y, field="outer", activation="identity", T=T, n_steps=K,
                          projection=np.eye(2), lam=lam, running=1.0, terminal=1.0,
                          frozen={"W": True})
    start = {"W": np.zeros((K, 2, 2)), "b": np.zeros((K, 2))}
    result = pmp.train(problem, "lbfgs", controls=start, max_iter=5000, gtol=1e-11)
    assert result.status == "converged"
    return problem, result.controls, riccati_rate(lam, problem.h)


def test_lq_decay_rate_is_the_discrete_riccati_rate(lq):
    problem, controls, mu = lq
    c = analysis.curves(problem, controls)
    control = analysis.fit_rate(c["t"][:-1], c["control_norm"])
    error = analysis.fit_rate(c["t"], c["error"])
    assert abs(control.mu - mu) < 1e-2
    assert abs(error.mu - 2 * mu) < 2e-2
    assert abs(mu - 1.0) < 1e-3  # the continuous rate 1/sqrt(2 lam)


def test_curves_have_documented_shapes(lq):
    problem, controls, _ = lq
    c = analysis.curves(problem, controls)
    K = problem.n_steps
    assert c["t"].shape == c["error"].shape == c["costate_norm"].shape == (K + 1,)
    assert c["control_norm"].shape == c["hamiltonian"].shape == (K,)
    np.testing.assert_allclose(c["control_norm"], np.linalg.norm(controls["b"], axis=1))


# ------------------------------------------------------------- other analyses
def test_time_scaling_equivalence_holds_exactly():
    x, y = pmp.datasets.rings(16, seed=0, lift=3)
    problem = pmp.Problem(x, y, T=7.0, n_steps=12, lam=0.01)
    controls = pmp.init_controls(problem, scale=0.5, seed=1)
    J_T, J_1, rel = analysis.time_scaling_equivalence(problem, controls)
    assert rel < 1e-12 and J_T == pytest.approx(J_1, rel=1e-12)
    with pytest.raises(ValueError, match="not 1-homogeneous"):
        analysis.time_scaling_equivalence(pmp.Problem(x, y, field="inner", n_steps=3),
                                          pmp.init_controls(pmp.Problem(x, y, field="inner",
                                                                        n_steps=3)))


def test_switching_of_bang_bang_controls():
    x0, y = np.array([[0.0, 0.0]]), np.array([[1.0, 0.5]])
    T, K, M = 4.0, 40, 1.0
    problem = pmp.Problem(x0, y, field="outer", activation="identity", T=T, n_steps=K,
                          projection=np.eye(2), reg="l1", lam=0.1, bound=M, running=1.0,
                          terminal=0.0, frozen={"W": True})
    result = pmp.train(problem, "emsa", controls={"W": np.zeros((K, 2, 2)),
                                                  "b": np.zeros((K, 2))},
                       max_iter=5000, gtol=1e-9)
    s = analysis.switching(problem, result.controls)
    assert s.bang_bang and s.intermediate_steps <= 1
    assert 0.5 < s.switching_time < T
    assert 0 < s.error_after < 0.05  # smooth loss: small but not zero after T*
    assert s.travelled_time == pytest.approx(
        problem.h * analysis.step_norms(problem, result.controls).sum() / M)
    assert s.switching_time - problem.h <= s.travelled_time <= s.switching_time
    b = np.zeros((K, 2))
    b[:10] = [M, 0.0]
    s2 = analysis.switching(problem, {"W": np.zeros((K, 2, 2)), "b": b})
    assert s2.switching_time == pytest.approx(problem.t[10]) and s2.intermediate_steps == 0
    assert s2.travelled_time == pytest.approx(problem.t[10])


@pytest.mark.parametrize("M", [1.0, 50.0])
def test_switching_tolerance_is_relative_to_the_bound(M):
    # the same bang-bang control, left by a solver that converged to 1e-6 M or to 1e-4 M on the
    # steps after the switch: the same T*, bang-bang both times
    x0, y = np.array([[0.0, 0.0]]), np.array([[1.0, 0.5]])
    K = 40
    problem = pmp.Problem(x0, y, field="outer", activation="identity", T=4.0, n_steps=K,
                          projection=np.eye(2), reg="l1", lam=0.1, bound=M, running=1.0,
                          terminal=0.0, frozen={"W": True})
    rng = np.random.default_rng(5)
    wiggle = rng.uniform(0.5, 1.0, size=(K - 10, 1)) * np.array([[0.6, 0.8]])
    found = []
    for residual in (1e-6, 1e-4):
        b = np.zeros((K, 2))
        b[:10] = [M, 0.0]
        b[10:] = residual * M * wiggle
        found.append(analysis.switching(problem, {"W": np.zeros((K, 2, 2)), "b": b}))
    assert [s.switching_time for s in found] == [pytest.approx(problem.t[10])] * 2
    for s, residual in zip(found, (1e-6, 1e-4)):
        assert s.bang_bang and s.intermediate_steps == 0 and s.tol == 1e-3
        assert s.travelled_time == pytest.approx(problem.t[10], rel=2 * residual * K)


def test_increments_resampling_and_distance():
    x, y = pmp.datasets.rings(8, seed=0, lift=3)
    fine = pmp.Problem(x, y, n_steps=8, T=1.0)
    coarse = pmp.Problem(x, y, n_steps=4, T=1.0)
    u = {"W": np.repeat(np.arange(4.0)[:, None, None] * np.ones((1, 3, 3)), 2, axis=0),
         "b": np.zeros((8, 3))}
    assert analysis.increments(fine, u) == pytest.approx(3.0)  # |[1]*9| = 3
    v = {"W": np.arange(4.0)[:, None, None] * np.ones((1, 3, 3)), "b": np.zeros((4, 3))}
    assert analysis.distance_to_reference(coarse, v, u, 8) == pytest.approx(0.0)
    np.testing.assert_array_equal(analysis.resample(v, ["W"], 8)["W"], u["W"])


def test_displacement_bound_holds_on_a_trained_network():
    x, y = pmp.datasets.rings(32, seed=0, lift=3)
    problem = pmp.Problem(x, y, T=4.0, n_steps=20, lam=1e-3)
    result = pmp.train(problem, "lbfgs", max_iter=200)
    bound = analysis.displacement_bound(problem, result.controls)
    assert bound["ratio"] >= 1.0 and bound["bound"] > 0
    assert bound["l2_squared"] >= bound["l2_bound"]


# --------------------------------------------------------------------- figures


def test_every_plot_function_draws_on_a_run(trained_run):
    with pmp.load_run(trained_run) as run:
        problem = run.problem()
        controls = run.controls()
        xs, ps, t = run.states(), run.costates(), run.t
        c = analysis.curves(problem, controls)
        axes = [
            plots.trajectories(xs, problem.y, times=(0, 5, 10), t=t),
            plots.decision_regions(problem, controls, resolution=30),
            *plots.states_and_costates(t, xs, ps, samples=(0, 1)),
            plots.decay(t[:-1], c["control_norm"], analysis.fit_rate(t[:-1],
                                                                    c["control_norm"])),
            plots.control_heatmap(t, run.checkpoints,
                                  [analysis.step_norms(problem, run.controls(i))
                                   for i in run.checkpoints]),
            plots.training_curves({"emsa": run.history}, x="elapsed"),
            plots.scaling([1, 2, 4], [1.0, 0.5, 0.25], slopes=(-1, -2)),
        ]
        for ax in axes:
            assert ax.has_data()
        fig, ax = plt.subplots()
        assert plots.decay(t, c["error"], ax=ax) is ax
        plt.close("all")
