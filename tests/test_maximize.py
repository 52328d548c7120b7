"""The per-step maximiser of the augmented Hamiltonian (pmp.maximize) against naive.psi: argmax,
direct and CG solves, bang-bang controls, the switching function (docs/theory.md sections 4, 5, 7)."""
import numpy as np
import pytest
from scipy.optimize import minimize

import naive
import pmp
from pmp.maximize import Maximizer
from pmp_cases import small_problem


FIELDS = [("outer", {}), ("features", {"width": 4}), ("diagonal", {}), ("inner", {}),
          ("perceptron", {"width": 3})]

LINEAR = {"outer", "features", "diagonal"}


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
            return -naive.psi(problem, with_step(new, k, v, names), old, xs, ps, k, rho)

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
        gain = naive.psi(problem, new, old, xs, ps, k, rho) - naive.psi(problem, old, old, xs,
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
        best = naive.psi(problem, new, old, xs, ps, k, 0.0)
        for _ in range(200):  # random feasible controls never do better
            trial = rng.normal(size=values.size)
            if reg == "l1":
                trial *= rng.uniform(0, 0.8) / np.linalg.norm(trial)
            else:
                trial = np.clip(trial, -0.8, 0.8)
            assert naive.psi(problem, with_step(new, k, trial, names), old, xs, ps, k, 0.0) \
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
        best = naive.psi(problem, new, old, xs, ps, k, 0.5)
        for _ in range(200):  # small feasible perturbations never do better
            trial = values + 1e-3 * rng.normal(size=values.size)
            if reg == "l1":
                trial *= min(1.0, 0.8 / np.linalg.norm(trial))
            else:
                trial = np.clip(trial, -0.8, 0.8)
            assert naive.psi(problem, with_step(new, k, trial, names), old, xs, ps, k, 0.5) \
                <= best + 1e-12


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


@pytest.mark.parametrize("field,kw", [("outer", {}), ("features", {"width": 4})],
                         ids=["outer", "features"])
def test_conjugate_gradients_keep_their_bases_between_calls(field, kw):
    # the preconditioner's bases are computed on every BASES_REFRESH-th call and kept in
    # between: any basis gives the same solution to the tolerance, and kept arrays are
    # never written again (a checkpoint's state may hold them)
    from pmp.maximize.linear import BASES_REFRESH

    problem = small_problem(field, kw, n_steps=5)
    kept = Maximizer(problem, n_direct=0, tol=1e-13)
    first = None
    for call in range(BASES_REFRESH + 2):
        old = pmp.init_controls(problem, scale=0.5, seed=call)
        xs, ps = sweeps(problem, old)
        new, info = kept.maximize(problem, old, xs, ps, 0.9)
        fresh, _ = Maximizer(problem, n_direct=0, tol=1e-13).maximize(problem, old, xs, ps, 0.9)
        for n in new:
            np.testing.assert_allclose(new[n], fresh[n], rtol=1e-9, atol=1e-12)
        memory = kept.memory
        assert memory["calls"] == call + 1
        if first is None:
            first = memory
            saved = {k: np.copy(v) for k, v in memory.items()}
            for E in memory["E"]:  # orthonormal eigenbases of the first call's matrices
                np.testing.assert_allclose(E.T @ E, np.eye(E.shape[0]), atol=1e-12)
        else:
            same = memory["E"] is first["E"]
            assert same == (call < BASES_REFRESH)  # refreshed into new arrays
    for k, v in saved.items():
        np.testing.assert_array_equal(first[k], v)


def test_kept_bases_make_a_worse_but_valid_preconditioner():
    # far from the matrices it was computed for, a kept basis (here the identity) costs
    # conjugate gradients more iterations to the same solution
    problem = small_problem("outer", {}, n_steps=5)
    old = pmp.init_controls(problem, scale=0.5, seed=2)
    xs, ps = sweeps(problem, old)
    exact = Maximizer(problem, n_direct=0, tol=1e-13)
    new, info = exact.maximize(problem, old, xs, ps, 0.9)
    identity = Maximizer(problem, n_direct=0, tol=1e-13)
    identity.memory = {k: (np.broadcast_to(np.eye(v.shape[1]), v.shape).copy()
                           if k != "calls" else 1) for k, v in exact.memory.items()}
    other, worse = identity.maximize(problem, old, xs, ps, 0.9)
    for n in new:
        np.testing.assert_allclose(other[n], new[n], rtol=1e-9, atol=1e-12)
    assert np.sum(worse.iterations) > np.sum(info.iterations)
