"""The gradient-family trainers, the iterate() generator and TrainResult."""
import numpy as np
import pytest

import pmp


@pytest.fixture(scope="module")
def toy():
    x, y = pmp.datasets.rings(24, seed=1)
    return pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=1e-2, lift=3)


METHOD_OPTIONS = {
    "gd": dict(lr=0.5),
    "heavy_ball": dict(lr=0.2, momentum=0.8),
    "nesterov": dict(lr=0.2, momentum=0.8),
    "adam": dict(lr=0.02),
    "lbfgs": {},
    "proximal": {},
}


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


def test_history_columns_and_result_fields(toy):
    result = pmp.train(toy, "gd", max_iter=5, lr=0.5)
    hist = result.history
    for column in ("iteration", "cost", "terminal", "running", "regularization", "grad_norm",
                   "wall_time", "step_size", "loss", "elapsed"):
        assert len(hist[column]) == 6
    np.testing.assert_array_equal(hist["iteration"], np.arange(6))
    np.testing.assert_allclose(hist["cost"], hist["terminal"] + hist["running"]
                               + hist["regularization"], rtol=1e-14)
    assert result.status == "max_iter" and not result.success
    text = repr(result)
    assert "method='gd'" in text and "status='max_iter'" in text and "J=" in text
    assert result.cost["total"] == pytest.approx(pmp.cost(toy, result.controls)["total"],
                                                 rel=1e-14)


def test_iterate_is_a_generator_ending_with_a_status(toy):
    states = list(pmp.iterate(toy, "adam", max_iter=4, lr=0.01))
    assert [s.iteration for s in states] == [0, 1, 2, 3, 4]
    assert all(s.status is None for s in states[:-1])
    assert states[-1].status == "max_iter"
    # a consumer may stop early: nothing more happens
    gen = pmp.iterate(toy, "gd", max_iter=100, lr=0.1)
    first = next(gen)
    gen.close()
    assert first.iteration == 0


def test_time_limit_stops(toy):
    result = pmp.train(toy, "gd", max_iter=10**7, lr=0.1, time_limit=0.2)
    assert result.status == "time_limit"
    assert result.wall_time < 5.0


def test_divergence_is_detected_and_last_finite_controls_returned(toy):
    result = pmp.train(toy, "gd", max_iter=200, lr=1e4)
    assert result.status == "diverged" and not result.success
    assert "diverged" in result.message
    assert all(np.all(np.isfinite(u)) for u in result.controls.values())
    assert np.isfinite(result.cost["total"])


def test_minibatch_is_seeded_and_reproducible(toy):
    a = pmp.train(toy, "adam", max_iter=20, batch_size=8, seed=3, lr=0.02)
    b = pmp.train(toy, "adam", max_iter=20, batch_size=8, seed=3, lr=0.02)
    c = pmp.train(toy, "adam", max_iter=20, batch_size=8, seed=4, lr=0.02)
    for n in a.controls:
        np.testing.assert_array_equal(a.controls[n], b.controls[n])
    assert not np.array_equal(a.controls["W"], c.controls["W"])
    # the final cost is on all samples, the history on the batches
    assert a.cost["total"] == pytest.approx(pmp.cost(toy, a.controls)["total"], rel=1e-14)


def test_minibatch_sgd_decreases_the_full_cost(toy):
    start = pmp.cost(toy, pmp.init_controls(toy, scale=0.1))["total"]
    result = pmp.train(toy, "gd", max_iter=300, batch_size=8, lr=0.2)
    assert result.cost["total"] < 0.7 * start


def test_full_batch_training_is_deterministic(toy):
    a = pmp.train(toy, "lbfgs", max_iter=30)
    b = pmp.train(toy, "lbfgs", max_iter=30)
    for n in a.controls:
        np.testing.assert_array_equal(a.controls[n], b.controls[n])


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


def test_trainable_readout_and_float32():
    x, y = pmp.datasets.rings(24, seed=1)
    problem = pmp.Problem(x, y, T=2.0, n_steps=10, lam=1e-2, lift=3, projection="trainable",
                          dtype="float32")
    result = pmp.train(problem, "adam", max_iter=50, lr=0.02)
    assert result.controls["P"].shape == (1, 3)
    assert result.controls["W"].dtype == np.float32
    assert result.cost["total"] < result.history["cost"][0]


def test_bad_trainer_arguments(toy):
    with pytest.raises(ValueError, match="unknown method 'sgd'.*adam, discrete, emsa, gd, heavy_ball"):
        pmp.train(toy, "sgd")
    with pytest.raises(TypeError, match="unknown option.*'momentum'.*method 'gd'.*lr"):
        pmp.train(toy, "gd", momentum=0.9)
    with pytest.raises(ValueError, match="lr must be > 0.0, got -1.0"):
        pmp.train(toy, "gd", lr=-1.0)
    with pytest.raises(ValueError, match="max_iter must be >= 0, got -3"):
        pmp.train(toy, "gd", max_iter=-3)
    with pytest.raises(ValueError, match="needs the full batch.*batch_size=4"):
        pmp.train(toy, "lbfgs", batch_size=4)
    x, y = pmp.datasets.rings(24, seed=1)
    l1 = pmp.Problem(x, y, T=2.0, n_steps=10, reg="l1", bound=1.0, lift=3)
    with pytest.raises(ValueError, match="reg='l1'; use method='proximal'"):
        pmp.train(l1, "adam")
    with pytest.raises(ValueError, match=r"controls must have keys \['W', 'b'\], got \['W'\]"):
        pmp.train(toy, "gd", controls={"W": np.zeros((10, 3, 3))})
