"""iterate() and train() (pmp.trainer): the states, stop rules, history, mini-batches,
TrainResult, bad arguments, and resuming a run in process."""
import os

import numpy as np
import pytest

import pmp
from pmp.batch.config import parse_config
from pmp.batch.runner import resume_run, train_run
from pmp_cases import SMALL, controls_equal


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


def test_resume_in_process_equals_uninterrupted(tmp_path):
    config = parse_config(SMALL).with_overrides(["train.max_iter=30"])
    null = open(os.devnull, "w")
    train_run(config, tmp_path / "full", stream=null)
    short = config.with_overrides(["train.max_iter=30"])
    # a run stopped at a checkpoint: rewrite its status as if it had been interrupted
    train_run(short, tmp_path / "cut", stream=null)
    with pmp.load_run(tmp_path / "cut") as run:
        assert 20 in run.checkpoints
    from pmp.batch.store import RunWriter
    problem = short.validate()
    writer = RunWriter(tmp_path / "cut", problem, short.to_toml(), "emsa", resume=True)
    writer.checkpoints = [0, 10, 20]
    writer.truncate(20)
    writer.set_status("interrupted")
    resume_run(tmp_path / "cut", stream=null)
    with pmp.load_run(tmp_path / "cut") as a, pmp.load_run(tmp_path / "full") as b:
        assert controls_equal(a.controls(), b.controls())
