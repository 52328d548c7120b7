"""The method of successive approximations: per-step maximisers and the msa / emsa / discrete
trainers (THEORY.md sections 4, 5, 7, 10, 11)."""
import numpy as np
import pytest
from scipy.optimize import minimize

import naive
import pmp
from pmp.maximize import Maximizer
from pmp.sweeps import Need

FIELDS = [("outer", {}), ("features", {"width": 4}), ("diagonal", {}), ("inner", {}),
          ("perceptron", {"width": 3})]
LINEAR = {"outer", "features", "diagonal"}


def small_problem(field, kw, reg="l2", **extra):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    options = dict(T=1.0, n_steps=3, lam=0.3, reg=reg)
    options.update(extra)
    return pmp.Problem(x, y, field=field, **kw, **options)


def naive_psi(problem, u, old, xs, ps, k, rho):
    """Psi~_k of THEORY 4d (+ the h1 Jacobi terms of section 5) from the NumPy twins."""
    N = problem.n_samples
    names = problem.control_names
    step = {n: np.asarray(u[n][k], float) for n in names}
    step_old = {n: np.asarray(old[n][k], float) for n in names}
    X, p = np.asarray(xs[k], float), np.asarray(ps[k + 1], float)
    value = 0.0
    for x_i, p_i in zip(X, p):
        f = naive.sample_field(problem, x_i, step)
        f_old = naive.sample_field(problem, x_i, step_old)
        J = naive.sample_field_vjp(problem, x_i, step, N * p_i)[0]
        J_old = naive.sample_field_vjp(problem, x_i, step_old, N * p_i)[0]
        value += p_i @ f - rho / (2 * N) * (np.sum((f - f_old) ** 2) + np.sum((J - J_old) ** 2))
    norm2 = sum(np.sum(step[n] ** 2) for n in names)
    reg = problem.reg
    if reg.name in ("l2", "h1"):
        value -= reg.lam * norm2
    elif reg.name == "l1":
        value -= reg.lam * np.sqrt(norm2)
    else:
        value -= reg.lam * sum(np.sum(np.abs(step[n])) for n in names)
    lam1 = getattr(reg, "lam1", 0.0)
    for nb in (k - 1, k + 1):
        if 0 <= nb < problem.n_steps:
            value -= lam1 / problem.h**2 * sum(np.sum((step[n] - old[n][nb]) ** 2) for n in names)
    return value


def with_step(controls, k, flat, names):
    out = {n: np.array(a, dtype=float) for n, a in controls.items()}
    offset = 0
    for n in names:
        size = out[n][k].size
        out[n][k] = flat[offset:offset + size].reshape(out[n][k].shape)
        offset += size
    return out


def sweeps(problem, controls):
    xs = pmp.forward(problem, controls)
    return xs, pmp.backward(problem, controls, xs)


@pytest.mark.parametrize("reg", ["l2", "h1"])
@pytest.mark.parametrize("rho", [0.0, 0.7])
@pytest.mark.parametrize("field,kw", FIELDS, ids=[f for f, _ in FIELDS])
def test_maximizer_is_the_argmax_of_the_augmented_hamiltonian(field, kw, rho, reg):
    problem = small_problem(field, kw, reg=reg, lam1=0.02 if reg == "h1" else 0.0)
    old = pmp.init_controls(problem, scale=0.5, seed=2)
    xs, ps = sweeps(problem, old)
    new, info = Maximizer(problem).maximize(problem, old, xs, ps, rho)
    names = problem.control_names
    for k in range(problem.n_steps):
        start = np.concatenate([new[n][k].ravel() for n in names])

        def negative(v, k=k):
            return -naive_psi(problem, with_step(new, k, v, names), old, xs, ps, k, rho)

        # stationarity: central differences of the naive Psi~ vanish at the returned control
        eps = 1e-6
        grad = np.array([(negative(start + eps * e) - negative(start - eps * e)) / (2 * eps)
                         for e in np.eye(start.size)])
        assert np.max(np.abs(grad)) < (1e-7 if field in LINEAR else 1e-6)
        # brute force from a perturbed start finds nothing better
        rng = np.random.default_rng(k)
        brute = minimize(negative, start + 0.1 * rng.normal(size=start.size), method="BFGS",
                         options=dict(gtol=1e-10))
        assert negative(start) <= brute.fun + 1e-10
        # the reported gain is Psi~(new) - Psi~(old)
        gain = naive_psi(problem, new, old, xs, ps, k, rho) - naive_psi(problem, old, old, xs,
                                                                          ps, k, rho)
        assert info.gain[k] == pytest.approx(gain, rel=1e-9, abs=1e-12)
        assert info.gain[k] >= -1e-12
        assert info.residual[k] < (1e-9 if field in LINEAR else 1e-6)


@pytest.mark.parametrize("frozen", [False, True], ids=["free", "frozen"])
@pytest.mark.parametrize("field,kw", [f for f in FIELDS if f[0] in LINEAR],
                         ids=[f for f, _ in FIELDS if f in LINEAR])
def test_direct_and_conjugate_gradient_solves_agree(field, kw, frozen):
    problem = small_problem(field, kw, n_steps=5)
    if frozen:  # a random pattern of frozen entries in the first control
        name = problem.control_names[0]
        mask = np.random.default_rng(1).random(problem.control_shapes[name]) < 0.3
        problem = small_problem(field, kw, n_steps=5, frozen={name: mask})
    old = pmp.init_controls(problem, scale=0.5, seed=2)
    xs, ps = sweeps(problem, old)
    direct, _ = Maximizer(problem, n_direct=10**6).maximize(problem, old, xs, ps, 0.9)
    cg, info = Maximizer(problem, n_direct=0, tol=1e-13).maximize(problem, old, xs, ps, 0.9)
    for n in direct:
        np.testing.assert_allclose(cg[n], direct[n], rtol=1e-9, atol=1e-12)
    for n, mask in problem.frozen.items():  # frozen entries keep their value
        np.testing.assert_array_equal(cg[n][mask], old[n][mask])
        np.testing.assert_array_equal(direct[n][mask], old[n][mask])
    if field != "diagonal":
        assert np.all(info.iterations >= 1)
    # the steps are solved in blocks on threads: the same result bitwise for any count
    for n_direct in (0, 10**6):
        with pmp.threads(1):
            one, _ = Maximizer(problem, n_direct=n_direct).maximize(problem, old, xs, ps, 0.9)
        with pmp.threads(3):
            three, _ = Maximizer(problem, n_direct=n_direct).maximize(problem, old, xs, ps, 0.9)
        for n in one:
            np.testing.assert_array_equal(one[n], three[n])


@pytest.mark.parametrize("reg", ["l1", "l1elem"])
@pytest.mark.parametrize("field,kw", [("outer", {}), ("features", {"width": 4}),
                                      ("diagonal", {})], ids=["outer", "features", "diagonal"])
def test_bang_bang_closed_form(field, kw, reg):
    problem = small_problem(field, kw, reg=reg, lam=0.05, bound=0.8)
    old = pmp.init_controls(problem, scale=0.5, seed=2)
    xs, ps = sweeps(problem, old)
    new, info = Maximizer(problem).maximize(problem, old, xs, ps, 0.0)
    names = problem.control_names
    rng = np.random.default_rng(0)
    for k in range(problem.n_steps):
        values = np.concatenate([new[n][k].ravel() for n in names])
        if reg == "l1":  # the switching law: |u_k| in {0, M}, on the side of |G_k| vs lam
            norm = np.linalg.norm(values)
            expected = 0.8 if info.switching[k] > 0.05 else 0.0
            assert norm == pytest.approx(expected, abs=1e-12)
        else:
            assert np.all(np.isclose(np.abs(values), 0.8) | (values == 0.0))
        best = naive_psi(problem, new, old, xs, ps, k, 0.0)
        for _ in range(200):  # random feasible controls never do better
            trial = rng.normal(size=values.size)
            if reg == "l1":
                trial *= rng.uniform(0, 0.8) / np.linalg.norm(trial)
            else:
                trial = np.clip(trial, -0.8, 0.8)
            assert naive_psi(problem, with_step(new, k, trial, names), old, xs, ps, k, 0.0) \
                <= best + 1e-12


@pytest.mark.parametrize("reg", ["l1", "l1elem"])
def test_l1_with_rho_is_optimal_among_feasible_points(reg):
    problem = small_problem("outer", {}, reg=reg, lam=0.05, bound=0.8)
    old = pmp.init_controls(problem, scale=0.3, seed=2)
    xs, ps = sweeps(problem, old)
    new, info = Maximizer(problem, tol=1e-12, max_inner=20000).maximize(problem, old, xs, ps,
                                                                         0.5)
    assert np.all(info.residual < 1e-9)
    names = problem.control_names
    rng = np.random.default_rng(1)
    for k in range(problem.n_steps):
        values = np.concatenate([new[n][k].ravel() for n in names])
        best = naive_psi(problem, new, old, xs, ps, k, 0.5)
        for _ in range(200):  # small feasible perturbations never do better
            trial = values + 1e-3 * rng.normal(size=values.size)
            if reg == "l1":
                trial *= min(1.0, 0.8 / np.linalg.norm(trial))
            else:
                trial = np.clip(trial, -0.8, 0.8)
            assert naive_psi(problem, with_step(new, k, trial, names), old, xs, ps, k, 0.5) \
                <= best + 1e-12


# --------------------------------------------------------------------- E4 (THEORY 7)
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


def test_plain_msa_divergence_is_detected():
    problem, _, _ = e4_problem(5.0, 0.1)
    result = pmp.train(problem, "msa", max_iter=100,
                       controls={"W": np.zeros((8, 2, 2)), "b": np.full((8, 2), 0.1)})
    assert result.status == "diverged" and not result.success
    assert "diverged" in result.message
    assert all(np.all(np.isfinite(u)) for u in result.controls.values())


# ------------------------------------------------------------------ the toy problem
@pytest.fixture(scope="module")
def toy():
    x, y = pmp.datasets.rings(12, seed=0)
    problem = pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=0.05, lift=3)
    best = pmp.train(problem, "lbfgs", max_iter=5000, gtol=1e-10)
    assert best.status == "converged"
    return problem, best.cost["total"]


def test_adaptive_emsa_is_monotone_and_reaches_the_lbfgs_optimum(toy):
    problem, best = toy
    result = pmp.train(problem, "emsa", max_iter=3000, gtol=1e-9)
    hist = result.history
    accepted = hist["accepted"] == 1.0
    costs = hist["cost"][accepted]
    assert np.all(np.diff(costs) < 0.0)  # every accepted J below the previous one
    assert np.all(np.diff(hist["cost"]) <= 0.0)  # rejected iterates repeat the cost
    assert abs(result.cost["total"] - best) / best < 1e-4
    assert np.any(~accepted)  # the adaptive rule was exercised
    assert set(hist) >= {"rho", "accepted", "gain"}


def test_msa_history_columns_and_gain(toy):
    problem, _ = toy
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
    # E3a of THEORY 7: x' = b, |b| <= M, tracking cost, l1: full speed, then rest
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


def test_switching_function_ignores_frozen_entries():
    x0, y = np.array([[0.0, 0.0]]), np.array([[1.0, 0.5]])
    problem = pmp.Problem(x0, y, field="outer", activation="identity", T=2.0, n_steps=5,
                          projection=np.eye(2), reg="l1", lam=0.1, bound=1.0, running=1.0,
                          terminal=0.0, frozen={"W": True})
    controls = {"W": np.zeros((5, 2, 2)), "b": np.full((5, 2), 0.1)}
    xs, ps = sweeps(problem, controls)
    _, info = Maximizer(problem).maximize(problem, controls, xs, ps, 0.0)
    # G for b is the sum of the costates p_{k+1}; W's entries are frozen
    np.testing.assert_allclose(info.switching, np.linalg.norm(ps[1:, 0], axis=1), rtol=1e-12)


def test_candidate_sweeps_leave_the_current_trajectories_intact():
    """The MSA oracle reuses two sets of trajectory buffers: a candidate's forward sweep must
    not touch the current point's states and costates, which a rejection goes on using."""
    from pmp.methods import Oracle
    problem = small_problem("outer", {})
    u = pmp.init_controls(problem, scale=0.5, seed=2)
    v = pmp.init_controls(problem, scale=0.5, seed=3)
    oracle = Oracle(problem)
    _, xs, ps = oracle.sweep(u)
    xs_copy, ps_copy = xs.copy(), ps.copy()
    for _ in range(2):  # two rejected candidates
        parts, candidate = oracle.value_and_states(v)
        np.testing.assert_array_equal(xs, xs_copy)
        np.testing.assert_array_equal(ps, ps_copy)
    parts, candidate = oracle.value_and_states(v)
    point, xs_new, ps_new = oracle.sweep(v, candidate=candidate)  # accepted
    expected = pmp.evaluate(problem, v)
    np.testing.assert_array_equal(xs_new, expected[2])
    np.testing.assert_array_equal(ps_new, expected[3])
    assert parts["total"] == pytest.approx(expected[0]["total"], rel=1e-14)
    _, xs_u, _ = oracle.sweep(u)  # a full sweep after an accepted candidate
    np.testing.assert_array_equal(xs_u, xs_copy)
    np.testing.assert_array_equal(xs_new, expected[2])


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("running", [0.0, 0.5])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus"])
def test_costate_sweep_statistics_for_the_maximiser(activation, running, threads):
    """For "outer" with small d the costate sweep sums what the maximiser needs (G_k, S_k and
    the costate Gram blocks); they match NumPy on the trajectories, and the maximiser gives
    the same controls with them as from its own pass over the trajectories."""
    from pmp.methods import Oracle
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(200, 3)), rng.normal(size=200)
    problem = pmp.Problem(x, y, field="outer", activation=activation, T=1.0, n_steps=4,
                          lam=0.3, running=running)
    u = pmp.init_controls(problem, scale=0.5, seed=2)
    with pmp.threads(threads):
        oracle = Oracle(problem)
        _, xs, ps = oracle.sweep(u)
        G, S, Q = oracle.statistics
        for k in range(problem.n_steps):
            s, ds = naive.sigma(problem, xs[k])
            psi = np.hstack([s, np.ones((len(s), 1))])
            p = ps[k + 1]
            np.testing.assert_allclose(G[k], p.T @ psi, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(S[k], psi.T @ psi, rtol=1e-12)
            for c in range(problem.dim):
                np.testing.assert_allclose(Q[k, c], (p * ds[:, c:c + 1] ** 2).T @ p,
                                           rtol=1e-12, atol=1e-18)
        for rho in (0.0, 0.7):
            own, _ = Maximizer(problem).maximize(problem, u, xs, ps, rho)
            swept, info = Maximizer(problem).maximize(problem, u, xs, ps, rho,
                                                      statistics=oracle.statistics)
            for n in own:
                np.testing.assert_allclose(swept[n], own[n], rtol=1e-11, atol=1e-14)
            assert np.all(info.residual < 1e-9)


def test_kept_activations_follow_the_row_blocks():
    """The small-d "outer" store holds each row block's activations transposed: a costate
    sweep run with other row blocks (another thread count) than the candidate's forward
    sweep must not read it, and gives the same costates as a fresh evaluation."""
    from pmp.methods import Oracle
    rng = np.random.default_rng(5)
    problem = pmp.Problem(rng.normal(size=(300, 3)), rng.normal(size=300), field="outer",
                          T=1.0, n_steps=5, lam=0.1)
    v = pmp.init_controls(problem, scale=0.5, seed=3)
    oracle = Oracle(problem)
    with pmp.threads(3):
        _, candidate = oracle.value_and_states(v)
    with pmp.threads(2):
        _, _, ps = oracle.sweep(v, candidate=candidate)
        expected = pmp.evaluate(problem, v)[3]
    np.testing.assert_allclose(ps, expected, rtol=1e-12, atol=1e-15)
    lean = Need(trajectories=False)
    with pmp.threads(3):  # the statistics-only path: the candidate keeps X_K only
        _, candidate = oracle.value_and_states(v, lean)
    with pmp.threads(2):
        point, _, _ = oracle.sweep(v, lean, candidate)
        fresh = Oracle(problem)
        expected_point, _, _ = fresh.sweep(v, lean)
    for lean, full in zip(oracle.statistics, fresh.statistics):
        np.testing.assert_array_equal(lean, full)
    assert point.parts == expected_point.parts


@pytest.mark.parametrize("running", [0.0, 0.5])
@pytest.mark.parametrize("method", ["msa", "emsa"])
def test_statistics_only_path_gives_the_same_iterates(method, running, monkeypatch):
    """Where the maximiser reads only the costate sweep's sums (small-d "outer", l2), the MSA
    trainers skip storing the states and costates of every step; their iterates are the
    same bit for bit as with the full trajectories."""
    rng = np.random.default_rng(6)
    lam = 2.0 if method == "msa" else 0.05  # plain MSA converges for T < 2 lam (THEORY 7)
    problem = pmp.Problem(rng.normal(size=(150, 3)), rng.normal(size=150), field="outer",
                          T=2.0, n_steps=6, lam=lam, running=running)
    assert not Maximizer(problem).need(problem).trajectories
    assert Maximizer(problem, n_direct=11).need(problem).trajectories  # CG: d q = 12
    options = dict(controls=pmp.init_controls(problem, scale=0.5, seed=1), max_iter=12,
                   gtol=0.0)
    lean = pmp.train(problem, method, **options)
    monkeypatch.setattr(Maximizer, "need", lambda self, problem: Need())
    full = pmp.train(problem, method, **options)
    assert lean.history["cost"].size == full.history["cost"].size > 3
    np.testing.assert_array_equal(lean.history["cost"], full.history["cost"])
    for n in full.controls:
        np.testing.assert_array_equal(lean.controls[n], full.controls[n])
