"""iterate() and train() (pmp.trainer): the states, stop rules, history, mini-batches,
TrainResult, bad arguments, resuming a run in process, a run that ends above its initial cost,
keep_best, the progress bar and the compile notice."""
import io
import warnings

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
    null = io.StringIO()
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


# ------------------------------------------------- worse than the start, keep_best, progress
# heavy ball with a step far too long for the toy problem: J falls until iteration 15, then
# climbs to ~1.5e3 at iteration 30 (above the start, below the divergence threshold)
OVERSHOOT = dict(method="heavy_ball", max_iter=30, lr=1.0, momentum=0.9)


def test_result_J_is_the_final_total_cost(toy):
    result = pmp.train(toy, "gd", max_iter=5, lr=0.5)
    assert result.J == result.cost["total"] == result.history["cost"][-1]
    assert result.iteration == result.n_iter == 5 and result.worse_than_start is False


def test_a_run_that_ends_above_its_initial_cost_warns_and_says_so(toy):
    with pytest.warns(UserWarning, match="ended above its initial cost"):
        result = pmp.train(toy, **OVERSHOOT)
    cost = result.history["cost"]
    assert result.status == "max_iter" and result.worse_than_start is True
    assert result.J == cost[-1] > cost[0]
    assert "ended above its initial cost" in result.message
    assert f"the best iterate was iteration {np.argmin(cost)}" in result.message
    assert result.best_iteration == np.argmin(cost) == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that ends below its start: no warning
        assert pmp.train(toy, "gd", max_iter=20, lr=0.5).worse_than_start is False


def test_keep_best_returns_the_best_iterate(toy):
    with pytest.warns(UserWarning):
        result = pmp.train(toy, keep_best=True, **OVERSHOOT)
    cost = result.history["cost"]
    best = int(np.argmin(cost))
    assert result.iteration == result.best_iteration == best and result.n_iter == 30
    assert result.J == cost[best] < cost[0] < cost[-1]
    assert pmp.cost(toy, result.controls)["total"] == pytest.approx(cost[best], rel=1e-12)
    assert f"the best iterate, iteration {best}" in result.message
    # the same run by iterate(): the last state's best, whatever the consumer does
    states = list(pmp.iterate(toy, keep_best=True, **OVERSHOOT))
    assert states[-1].best.iteration == best
    assert controls_equal(states[-1].best.controls, result.controls)
    # after a divergence: the best iterate, not the last finite one
    with pytest.warns(UserWarning):
        last = pmp.train(toy, "gd", max_iter=200, lr=5.0)
        kept = pmp.train(toy, "gd", max_iter=200, lr=5.0, keep_best=True)
    assert last.status == kept.status == "diverged" and last.worse_than_start
    assert kept.J == np.min(last.history["cost"]) < last.J
    assert "the best iterate, iteration" in kept.message


def test_keep_best_survives_a_resume(toy):
    """A resumed run keeps the best iterate found before the checkpoint it resumes from."""
    states = list(pmp.iterate(toy, **OVERSHOOT))
    with pytest.warns(UserWarning):
        whole = pmp.train(toy, keep_best=True, **OVERSHOOT)
        resumed = pmp.train(toy, keep_best=True, resume=states[20].resume, **OVERSHOOT)
    assert resumed.iteration == whole.iteration == 15
    assert controls_equal(resumed.controls, whole.controls)


def test_keep_best_needs_the_full_batch_and_a_bool(toy):
    with pytest.raises(ValueError, match="keep_best=True .* full batch.*batch_size=8"):
        pmp.train(toy, "gd", batch_size=8, keep_best=True)
    with pytest.raises(TypeError, match="keep_best must be True or False"):
        pmp.train(toy, "gd", keep_best="yes")


class FakeBar:
    """Stands in for tqdm.auto.tqdm: records its keyword arguments and position."""

    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.n, self.closed = kwargs, kwargs.get("initial", 0), False
        FakeBar.made.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def close(self):
        self.closed = True


def test_progress_bar_is_one_keyword_away_and_refreshes_at_a_bounded_rate(toy, monkeypatch):
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    FakeBar.made = []
    pmp.train(toy, "gd", max_iter=7, lr=0.5)
    assert FakeBar.made == []  # off by default
    pmp.train(toy, "gd", max_iter=7, lr=0.5, progress=True)
    (bar,) = FakeBar.made
    assert bar.kwargs["mininterval"] == pmp.trainer.PROGRESS_INTERVAL >= 0.1
    assert bar.kwargs["total"] == 7 and bar.n == 7 and bar.closed
    assert bar.postfix.startswith("J=")
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        pmp.train(toy, "gd", progress="bar")
