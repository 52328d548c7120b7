"""The public sweeps' checks of their input, the segmented gradient, and the sweeps' execution
engine (candidate sweeps, activations kept by row block, the costate sweep's statistics)."""
import numpy as np
import pytest

import naive
import pmp
from pmp.maximize import Maximizer
from pmp.sweeps import Need
from pmp_cases import X, Y, make_controls, make_problem, small_problem


# ------------------------------------------------------ shapes and dtypes of trajectories
def test_backward_rejects_states_of_wrong_shape():
    problem = pmp.Problem(X, Y, n_steps=4)
    controls = make_controls(problem)
    with pytest.raises(ValueError, match=r"states must have shape \(5, 5, 3\), got \(4, 5, 3\)"):
        pmp.backward(problem, controls, np.zeros((4, 5, 3)))


@pytest.mark.parametrize("bad", ["costates_one_step_short", "states_fewer_samples",
                                 "both_one_step_short"])
def test_hamiltonian_rejects_mismatched_shapes(bad):
    problem = make_problem("outer", "tanh", n_steps=4)
    controls = make_controls(problem)
    xs = pmp.forward(problem, controls)
    ps = pmp.backward(problem, controls, xs)
    states, costates = {
        "costates_one_step_short": (xs, ps[:-1]),  # a view: the over-read stays inside ps
        "states_fewer_samples": (np.ascontiguousarray(xs[:, :3]), ps),
        "both_one_step_short": (xs[:-1], ps[:-1]),
    }[bad]
    with pytest.raises(ValueError, match="shape"):
        pmp.hamiltonian(problem, controls, states, costates)


@pytest.mark.parametrize("func", ["losses_along", "hamiltonian"])
def test_float32_problem_accepts_float64_states(func):
    problem = make_problem("outer", "tanh", running=0.5, dtype="float32")
    controls = make_controls(problem)
    xs = pmp.forward(problem, controls)
    ps = pmp.backward(problem, controls, xs)
    xs64 = xs.astype(np.float64)
    if func == "losses_along":
        out = pmp.losses_along(problem, xs64)
        np.testing.assert_allclose(out, pmp.losses_along(problem, xs), rtol=1e-6)
    else:
        out = pmp.hamiltonian(problem, controls, xs64, ps)
        np.testing.assert_allclose(out, pmp.hamiltonian(problem, controls, xs, ps), rtol=1e-5)


# ------------------------------------------------ segmented (checkpointed-in-time) sweeps
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


# ---------------------------- the execution engine: buffers, kept activations, statistics
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
        oracle.candidate(v)
        np.testing.assert_array_equal(xs, xs_copy)
        np.testing.assert_array_equal(ps, ps_copy)
    candidate = oracle.candidate(v)
    point, xs_new, ps_new = oracle.sweep(v, candidate=candidate)  # accepted
    expected = pmp.evaluate(problem, v)
    np.testing.assert_array_equal(xs_new, expected[2])
    np.testing.assert_array_equal(ps_new, expected[3])
    assert candidate.parts["total"] == pytest.approx(expected[0]["total"], rel=1e-14)
    _, xs_u, _ = oracle.sweep(u)  # a full sweep after an accepted candidate
    np.testing.assert_array_equal(xs_u, xs_copy)
    np.testing.assert_array_equal(xs_new, expected[2])


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
        candidate = oracle.candidate(v)
    with pmp.threads(2):
        _, _, ps = oracle.sweep(v, candidate=candidate)
        expected = pmp.evaluate(problem, v)[3]
    np.testing.assert_allclose(ps, expected, rtol=1e-12, atol=1e-15)
    lean = Need(trajectories=False)
    with pmp.threads(3):  # the statistics-only path: the candidate keeps X_K only
        candidate = oracle.candidate(v, lean)
    with pmp.threads(2):
        point, _, _ = oracle.sweep(v, lean, candidate)
        fresh = Oracle(problem)
        expected_point, _, _ = fresh.sweep(v, lean)
    for lean, full in zip(oracle.statistics, fresh.statistics):
        np.testing.assert_array_equal(lean, full)
    assert point.parts == expected_point.parts


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


@pytest.mark.parametrize("running", [0.0, 0.5])
@pytest.mark.parametrize("method", ["msa", "emsa"])
def test_statistics_only_path_gives_the_same_iterates(method, running, monkeypatch):
    """Where the maximiser reads only the costate sweep's sums (small-d "outer", l2), the MSA
    trainers skip storing the states and costates of every step; their iterates are the
    same bit for bit as with the full trajectories."""
    rng = np.random.default_rng(6)
    lam = 2.0 if method == "msa" else 0.05  # plain MSA converges for T < 2 lam (docs/theory.md 7)
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
