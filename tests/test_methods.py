"""The methods' behaviour: the gradient family (gd, heavy_ball, nesterov, adam, lbfgs, proximal)
and MSA, E-MSA and the discrete method (docs/theory.md sections 4, 5, 7, 10, 11)."""
import numpy as np
import pytest

import pmp
from pmp.methods.base import Point


METHOD_OPTIONS = {
    "gd": dict(lr=0.5),
    "heavy_ball": dict(lr=0.2, momentum=0.8),
    "nesterov": dict(lr=0.2, momentum=0.8),
    "adam": dict(lr=0.02),
    "lbfgs": {},
    "proximal": {},
}


# -------------------------------------------------------------------- the gradient family
@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_each_method_decreases_the_cost(toy, method):
    result = pmp.train(toy, method, max_iter=60, **METHOD_OPTIONS[method])
    cost = result.history["cost"]
    assert result.cost["total"] < 0.7 * cost[0]
    assert np.all(np.isfinite(cost))
    assert set(result.controls) == set(toy.control_shapes)
    for name, shape in toy.control_shapes.items():
        assert result.controls[name].shape == shape


@pytest.mark.parametrize("method", ["gd", "lbfgs", "proximal"])
def test_monotone_methods_never_increase_the_cost(toy, method):
    cost = pmp.train(toy, method, max_iter=40, **METHOD_OPTIONS[method]).history["cost"]
    assert np.all(np.diff(cost) <= 1e-12 * np.abs(cost[:-1]))


def test_lbfgs_resolves_the_riesz_gradient_below_1e_8(toy):
    result = pmp.train(toy, "lbfgs", max_iter=5000, gtol=1e-9)
    assert result.status == "converged" and result.success
    assert result.grad_norm < 1e-8
    riesz = pmp.riesz_gradient(toy, pmp.value_and_grad(toy, result.controls)[1])
    assert pmp.grad_norm(toy, riesz) < 1e-8


def test_adam_approaches_the_lbfgs_optimum(toy):
    # fixed-step GD / heavy ball go unstable on this toy as |W| grows (the sensitivity of x(T)
    # to the controls grows like exp(|W| T)); Adam's normalised steps do not. With a constant
    # lr Adam does not settle: it reaches the optimum's neighbourhood and then hovers there
    # with bursts (relative 1e-5 here at lr = 0.005) whose timing changes with rounding.
    best = pmp.train(toy, "lbfgs", max_iter=5000, gtol=1e-9).cost["total"]
    got = pmp.train(toy, "adam", max_iter=6000, gtol=1e-7, lr=0.005)
    costs = np.asarray(got.history["cost"])
    assert best - 1e-12 <= costs.min() < best * (1 + 1e-6)
    assert got.cost["total"] < best * (1 + 1e-3)


def test_proximal_keeps_l1_bound_and_decreases():
    x, y = pmp.datasets.rings(24, seed=1)
    problem = pmp.Problem(x, y, T=2.0, n_steps=10, lam=1e-2, reg="l1", bound=0.8, lift=3)
    result = pmp.train(problem, "proximal", max_iter=100)
    norms = np.sqrt(sum(np.sum(u.reshape(10, -1) ** 2, axis=1)
                        for u in result.controls.values()))
    assert np.all(norms <= 0.8 * (1 + 1e-12))
    assert result.cost["total"] < result.history["cost"][0]


def test_proximal_elementwise_box():
    x, y = pmp.datasets.moons(20, seed=0)
    problem = pmp.Problem(x, y, field="diagonal", T=2.0, n_steps=8, lam=1e-3, reg="l1elem",
                          bound=0.3)
    result = pmp.train(problem, "proximal", max_iter=50)
    assert np.max(np.abs(result.controls["w"])) <= 0.3
    assert result.cost["total"] < result.history["cost"][0]


def test_frozen_controls_do_not_move(toy):
    x, y = pmp.datasets.rings(24, seed=1)
    problem = pmp.Problem(x, y, T=2.0, n_steps=10, lam=1e-2, lift=3, frozen={"b": True})
    start = pmp.init_controls(problem, scale=0.1)
    for method in ("gd", "adam", "lbfgs"):
        result = pmp.train(problem, method, max_iter=10, controls=start,
                           **METHOD_OPTIONS[method])
        np.testing.assert_array_equal(result.controls["b"], start["b"])
        assert not np.array_equal(result.controls["W"], start["W"])


def test_methods_with_blas_between_sweeps_run_it_on_one_thread(monkeypatch):
    """L-BFGS's inner products run with BLAS at one thread (OpenBLAS threads spinning after a
    call slow the next sweep down); the caller's code between iterations keeps the setting."""
    from threadpoolctl import threadpool_info

    from pmp import methods as optimizers

    def blas_threads():
        return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

    seen = []
    two_loop = optimizers.LBFGS._two_loop
    monkeypatch.setattr(optimizers.LBFGS, "_two_loop", staticmethod(
        lambda *args: seen.append(blas_threads()) or two_loop(*args)))
    x, y = pmp.datasets.rings(40, seed=0)
    problem = pmp.Problem(x, y, T=1.0, n_steps=4, lam=1e-2, lift=3)
    with pmp.threads(2):
        outside = blas_threads()
        for state in pmp.iterate(problem, "lbfgs", max_iter=3):
            assert blas_threads() == outside
    assert seen and set(seen) == {1}
    assert not optimizers.GradientDescent.blas_between_sweeps


# -------------------------------------------------------------------------- E4 (docs/theory.md 7)
def e4_problem(T, lam, n_steps=8):
    x0, y = np.array([[0.3, -0.2]]), np.array([[1.1, 0.4]])
    return pmp.Problem(x0, y, field="outer", activation="identity", T=T, n_steps=n_steps,
                       projection=np.eye(2), lam=lam, frozen={"W": True}), x0[0], y[0]


def e4_errors(method, T, lam, n_iter, **options):
    problem, x0, y = e4_problem(T, lam)
    b_star = (y - x0) / (T + 2 * lam)
    start = {"W": np.zeros((8, 2, 2)), "b": np.tile([0.05, -0.3], (8, 1))}
    errors = []
    for state in pmp.iterate(problem, method, controls=start, max_iter=n_iter, gtol=0.0,
                             **options):
        b = state.controls["b"]
        np.testing.assert_allclose(b, b[:1].repeat(8, axis=0), rtol=0, atol=1e-13)
        errors.append(b[0] - b_star)
    return np.array(errors)


@pytest.mark.parametrize("T,lam", [(1.0, 2.0), (3.0, 1.0), (0.5, 0.1)])
def test_e4_plain_msa_error_factor(T, lam):
    errors = e4_errors("msa", T, lam, 3)
    np.testing.assert_allclose(errors[1:] / errors[:-1], -T / (2 * lam), rtol=1e-6)


@pytest.mark.parametrize("T,lam,rho", [(1.0, 0.2, 0.5), (4.0, 0.5, 1.0), (2.0, 0.1, 8.0)])
def test_e4_extended_msa_error_factor(T, lam, rho):
    errors = e4_errors("emsa", T, lam, 3, rho=rho, adaptive=False)
    np.testing.assert_allclose(errors[1:] / errors[:-1], (rho - T) / (2 * lam + rho), rtol=1e-6)


def test_e4_rho_equal_T_is_exact_in_one_step():
    errors = e4_errors("emsa", 3.0, 0.25, 1, rho=3.0, adaptive=False)
    assert np.max(np.abs(errors[1])) < 1e-14 * np.max(np.abs(errors[0])) + 1e-15


@pytest.mark.parametrize("momentum", [0.0, 0.99, pmp.methods.EMSA.DEFAULT_MOMENTUM])
def test_e4_adaptive_emsa_reaches_the_closed_form_optimum(momentum):
    # b* = (y - x0) / (T + 2 lam): the adaptive E-MSA, with and without momentum, from a
    # start where plain MSA diverges (T / (2 lam) = 25); both stop at a fixed point (xtol)
    errors = e4_errors("emsa", 5.0, 0.1, 400, momentum=momentum)
    assert np.max(np.abs(errors[-1])) < 1e-8 * np.max(np.abs(errors[0]))


def test_plain_msa_divergence_is_detected():
    problem, _, _ = e4_problem(5.0, 0.1)
    with pytest.warns(UserWarning, match="above the initial cost"):
        result = pmp.train(problem, "msa", max_iter=100,
                           controls={"W": np.zeros((8, 2, 2)), "b": np.full((8, 2), 0.1)})
    assert result.status == "diverged" and not result.success
    assert "diverged" in result.message and result.worse_than_start
    assert all(np.all(np.isfinite(u)) for u in result.controls.values())


# ----------------------------------------------------------------- MSA on the toy problem
@pytest.fixture(scope="module")
def toy_optimum():
    """A 12-sample toy problem and its optimal cost (by L-BFGS)."""
    x, y = pmp.datasets.rings(12, seed=0)
    problem = pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=0.05, lift=3)
    best = pmp.train(problem, "lbfgs", max_iter=5000, gtol=1e-10)
    assert best.status == "converged"
    return problem, best.cost["total"]


def test_adaptive_emsa_is_monotone_and_reaches_the_lbfgs_optimum(toy_optimum):
    problem, best = toy_optimum
    result = pmp.train(problem, "emsa", max_iter=3000, gtol=1e-9)
    hist = result.history
    accepted = hist["accepted"] == 1.0
    costs = hist["cost"][accepted]
    assert np.all(np.diff(costs) < 0.0)  # every accepted J below the previous one
    assert np.all(np.diff(hist["cost"]) <= 0.0)  # rejected iterates repeat the cost
    assert abs(result.cost["total"] - best) / best < 1e-4
    assert np.any(~accepted)  # the adaptive rule was exercised
    assert set(hist) >= {"rho", "accepted", "gain"}


@pytest.mark.parametrize("exact", [False, True])
def test_emsa_through_conjugate_gradients_reaches_the_lbfgs_optimum(toy_optimum, exact):
    # n_direct=0: every step through CG; the default (inexact) stops it after 1 iteration
    problem, best = toy_optimum
    method = pmp.methods.EMSA(n_direct=0, exact=exact)
    assert method._maximizer(problem).max_inner == (500 if exact else 1)
    result = pmp.train(problem, method, max_iter=3000, gtol=1e-9)
    assert np.all(np.diff(result.history["cost"]) <= 0.0)
    assert abs(result.cost["total"] - best) / best < 1e-4


def test_emsa_momentum_reaches_the_lbfgs_optimum_in_fewer_iterations(toy_optimum):
    # the heavy-ball candidate passes the same acceptance test: monotone, the same optimum
    problem, best = toy_optimum
    start = pmp.init_controls(problem, seed=1)
    runs = {m: pmp.train(problem, "emsa", controls=start, momentum=m, max_iter=3000,
                         gtol=1e-9) for m in (0.0, 0.999)}
    for result in runs.values():
        assert result.status == "converged"
        assert np.all(np.diff(result.history["cost"]) <= 0.0)
        assert abs(result.cost["total"] - best) / best < 1e-4
    assert runs[0.999].iteration < 0.5 * runs[0.0].iteration
    assert pmp.methods.EMSA().momentum is None and pmp.methods.EMSA.DEFAULT_MOMENTUM == 0.999


@pytest.mark.parametrize("accepted, cap, beta", [(0, 0.999, 0.0), (1, 0.999, 0.25),
                                                 (297, 0.999, 0.99), (3000, 0.999, 0.999),
                                                 (3000, 0.9, 0.9)])
def test_emsa_momentum_factor_is_nesterovs_sequence_capped(accepted, cap, beta):
    # the heavy-ball candidate u_new + beta (u - u_prev), beta = min(cap, m / (m + 3)) after
    # m accepted steps, is tried first (rho kept), then the maximiser's own (rho halved)
    method = pmp.methods.EMSA()
    method._largest, method._accepted = cap, accepted
    method._previous = {"W": np.zeros((2, 3))}
    point = Point({"W": np.ones((2, 3))}, {}, None, 0.0)
    new = {"W": np.full((2, 3), 5.0)}
    (heavy, keep), (plain, halve) = method._candidates(point, new)
    np.testing.assert_allclose(heavy["W"], 5.0 + beta, rtol=1e-15)
    assert plain is new and (keep, halve) == (1.0, 0.5)


def test_emsa_momentum_default_follows_the_regulariser():
    # 0.999 where J is differentiable; 0 for l1 (the maximiser's zeros and bound are kept)
    # and for the fixed rho (no acceptance test)
    x, y = pmp.datasets.rings(12, seed=0)
    smooth = pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=0.05, lift=3)
    rough = pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=0.05, lift=3, reg="l1",
                        bound=2.0)
    method = pmp.methods.EMSA()
    assert method._momentum_for(smooth) == 0.999 and method._momentum_for(rough) == 0.0
    assert pmp.methods.EMSA(adaptive=False)._momentum_for(smooth) == 0.0
    assert pmp.methods.EMSA(momentum=0.5)._momentum_for(smooth) == 0.5
    start = pmp.init_controls(rough, seed=2)
    default = pmp.train(rough, "emsa", controls=start, max_iter=40, gtol=0.0)
    plain = pmp.train(rough, "emsa", controls=start, momentum=0.0, max_iter=40, gtol=0.0)
    assert np.array_equal(default.history["cost"], plain.history["cost"])


def test_emsa_momentum_on_a_staged_problem_reaches_the_lbfgs_optimum():
    x, y = pmp.datasets.rings(12, seed=0)
    problem = pmp.Problem(x, y, field="outer", lam=0.05,
                          stages=[pmp.Stage(1.0, 4), pmp.Stage(1.0, 4, dim=3, enter="lift")])
    best = pmp.train(problem, "lbfgs", max_iter=5000, gtol=1e-10)
    result = pmp.train(problem, "emsa", max_iter=3000, gtol=1e-9)
    assert np.all(np.diff(result.history["cost"]) <= 0.0)
    assert abs(result.cost["total"] - best.cost["total"]) / best.cost["total"] < 1e-4


def test_emsa_through_conjugate_gradients_resumes_bit_for_bit(toy_optimum, tmp_path):
    # the maximiser keeps its preconditioner's bases between iterations (refreshed every
    # BASES_REFRESH calls): the checkpoint state carries them, also through HDF5
    import h5py

    from pmp.batch.store import read_tree, write_tree
    from pmp.maximize.linear import BASES_REFRESH

    problem, _ = toy_optimum
    kw = dict(n_direct=0, controls=pmp.init_controls(problem, seed=3))
    total = 2 * BASES_REFRESH + 3
    full = [s.cost["total"] for s in pmp.iterate(problem, "emsa", max_iter=total, **kw)]
    part = list(pmp.iterate(problem, "emsa", max_iter=BASES_REFRESH - 2, **kw))
    memory = part[-1].resume["method"]["maximizer"]
    assert memory["calls"] >= 1 and memory["E"].shape == (10, 4, 4)
    with h5py.File(tmp_path / "state.h5", "w") as f:
        write_tree(f, "method", part[-1].resume["method"])
    with h5py.File(tmp_path / "state.h5", "r") as f:
        method_state = read_tree(f["method"])
    for resume in (part[-1].resume, dict(part[-1].resume, method=method_state)):
        rest = pmp.iterate(problem, "emsa", max_iter=total, resume=resume, **kw)
        assert [s.cost["total"] for s in part] + [s.cost["total"] for s in rest] == full


@pytest.mark.parametrize("field, reg, n_direct, solver, cap", [
    ("outer", "l2", 256, None, 1),  # Cholesky: the cap is unused
    ("outer", "l2", 0, "cg", 1),
    ("outer", "l1", 256, "fista", 3),
    ("diagonal", "l2", 256, None, 1),
    ("diagonal", "l1", 256, "fista", 3),
    ("inner", "l2", 256, "lbfgs", 3),
])
def test_the_inexact_emsa_caps_each_inner_solver(field, reg, n_direct, solver, cap):
    x, y = pmp.datasets.rings(12, seed=0, lift=3)
    bound = dict(bound=1.0) if reg == "l1" else {}
    problem = pmp.Problem(x, y, field=field, reg=reg, lam=0.01, T=1.0, n_steps=4,
                          projection="first", **bound)
    maximizer = pmp.methods.EMSA(n_direct=n_direct)._maximizer(problem)
    assert maximizer.inner_solver() == solver
    assert maximizer.max_inner == cap
    assert pmp.methods.EMSA(n_direct=n_direct, max_inner=7)._maximizer(problem).max_inner == 7


def test_an_inexact_maximisation_gains_less_than_the_exact_one_but_gains(toy_optimum):
    problem, _ = toy_optimum
    controls = pmp.init_controls(problem, seed=3)
    xs = pmp.forward(problem, controls)
    ps = pmp.backward(problem, controls, xs)
    gains = {}
    for cap in (1, 500):
        maximizer = pmp.maximize.Maximizer(problem, n_direct=0, max_inner=cap)
        _, info = maximizer.maximize(problem, controls, xs, ps, rho=1.0)
        gains[cap] = info.gain
        assert np.all(info.iterations <= cap)
    assert np.all(gains[1] > 0.0) and np.all(gains[1] <= gains[500] * (1 + 1e-12))
    assert np.any(gains[1] < 0.99 * gains[500])


def test_msa_history_columns_and_gain(toy_optimum):
    problem, _ = toy_optimum
    result = pmp.train(problem, "emsa", max_iter=20, rho=2.0, adaptive=False)
    hist = result.history
    assert np.all(hist["rho"] == 2.0) and np.all(hist["accepted"] == 1.0)
    assert np.all(hist["gain"][1:] >= 0.0) and np.isnan(hist["gain"][0])


def test_h1_fixed_point_satisfies_the_discrete_euler_lagrange_equation():
    x, y = pmp.datasets.rings(12, seed=0)
    problem = pmp.Problem(x, y, field="outer", T=1.0, n_steps=6, lam=0.1, reg="h1", lam1=0.01,
                          lift=3)
    result = pmp.train(problem, "emsa", max_iter=20000, gtol=1e-10)
    assert result.success
    # dJ/du_k = 0 for the full H^1-regularised discrete cost (gradient incl. coupling)
    _, grads = pmp.value_and_grad(problem, result.controls)
    assert pmp.grad_norm(problem, pmp.riesz_gradient(problem, grads)) < 1e-7


def test_l1_with_bound_gives_bang_bang_controls_and_a_switching_time():
    # E3a of docs/theory.md 7: x' = b, |b| <= M, tracking cost, l1: full speed, then rest
    x0, y = np.array([[0.0, 0.0]]), np.array([[1.0, 0.5]])
    T, n_steps, M, lam = 4.0, 40, 1.0, 0.1
    problem = pmp.Problem(x0, y, field="outer", activation="identity", T=T, n_steps=n_steps,
                          projection=np.eye(2), reg="l1", lam=lam, bound=M, running=1.0,
                          terminal=0.0, frozen={"W": True})
    start = {"W": np.zeros((n_steps, 2, 2)), "b": np.zeros((n_steps, 2))}
    result = pmp.train(problem, "emsa", controls=start, max_iter=5000, gtol=1e-9)
    norms = np.linalg.norm(result.controls["b"], axis=1)
    off_bound = ~(np.isclose(norms, M, atol=1e-6) | (norms < 1e-6))
    assert np.count_nonzero(off_bound) <= 1
    on = np.flatnonzero(norms > 1e-6)
    switch = on[-1] + 1
    assert np.all(norms[switch:] < 1e-6) and np.all(norms[:on[0] + 1] > 1e-6)
    D = np.linalg.norm(y - x0)
    t_s = ((T + D / M) - np.sqrt((T - D / M) ** 2 + 4 * lam / M)) / 2  # (T-t)(D-Mt) = lam
    assert abs(switch * problem.h - t_s) <= 2 * problem.h


@pytest.mark.parametrize("levels", ["binary", "ternary"])
def test_discrete_weights_stay_in_the_set_and_the_cost_decreases(levels):
    x, y = pmp.datasets.rings(24, seed=1)
    problem = pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=1e-3, lift=3)
    result = pmp.train(problem, "discrete", max_iter=60, levels=levels, scale=0.5, lr=0.2)
    allowed = {-0.5, 0.5} if levels == "binary" else {-0.5, 0.0, 0.5}
    assert set(np.unique(result.controls["W"])) <= allowed
    assert result.cost["total"] < 0.8 * result.history["cost"][0]
    nonzero = result.history["nonzero"]
    assert np.all((nonzero >= 0) & (nonzero <= 1))
    if levels == "binary":
        assert np.all(nonzero == 1.0)


@pytest.mark.filterwarnings("ignore:.*ended above its initial cost:UserWarning")
@pytest.mark.parametrize("method,options", [("msa", {}), ("emsa", {}), ("discrete", {})])
def test_minibatch_msa_is_seeded(method, options):
    x, y = pmp.datasets.rings(32, seed=1)
    problem = pmp.Problem(x, y, field="outer", T=1.0, n_steps=5, lam=0.5, lift=3)
    a = pmp.train(problem, method, max_iter=8, batch_size=8, seed=5, **options)
    b = pmp.train(problem, method, max_iter=8, batch_size=8, seed=5, **options)
    for n in a.controls:
        np.testing.assert_array_equal(a.controls[n], b.controls[n])
    assert np.isfinite(a.cost["total"])


def test_msa_errors_are_clear():
    x, y = pmp.datasets.rings(12, seed=0)
    free = pmp.Problem(x, y, lam=0.0, lift=3)
    with pytest.raises(ValueError, match="needs lam > 0"):
        pmp.train(free, "msa", max_iter=1)
    unbounded = pmp.Problem(x, y, reg="l1", lam=0.1, lift=3)
    with pytest.raises(ValueError, match="needs a finite bound"):
        pmp.train(unbounded, "msa", max_iter=1)
    general = pmp.Problem(x, y, field="inner", reg="l1", lam=0.1, bound=1.0, lift=3)
    with pytest.raises(ValueError, match="general fields handles 'l2' and 'h1'"):
        pmp.train(general, "emsa", max_iter=1)
    with pytest.raises(ValueError, match="rho must be > 0 for the adaptive"):
        pmp.train(free, "emsa", rho=0.0)


# --------------------------------------------------------- defaults on the README's example
@pytest.fixture(scope="module")
def readme_problem():
    """The example of README's "Python API" section (T = 10: the curvature of J grows like
    exp(2 |W| T), which long fixed steps and large binary weights do not survive)."""
    x, y = pmp.datasets.rings(256, seed=0, lift=3)
    return pmp.Problem(x, y, field="outer", activation="tanh", T=10.0, n_steps=100,
                       loss="squared", reg="l2", lam=1e-3)


@pytest.mark.parametrize("method,options", [("heavy_ball", {}), ("nesterov", {}),
                                            ("discrete", {"scale": 1 / (np.sqrt(3) * 10)})])
def test_defaults_do_not_end_above_the_start_on_the_readme_example(readme_problem, method,
                                                                  options):
    """With lr=0.1 heavy ball and Nesterov ended at 0.45 and 0.77 after 300 iterations
    (Nesterov above its start); the discrete method needs weights of 1/(sqrt(3) T) there."""
    start = pmp.cost(readme_problem, pmp.init_controls(readme_problem))["total"]  # 0.514
    result = pmp.train(readme_problem, method, max_iter=300, **options)
    assert result.worse_than_start is False
    assert result.J < 0.9 * min(start, result.history["cost"][0])
    if method != "discrete":
        assert result.J < 0.05
