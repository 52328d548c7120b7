"""Running a configuration (pmp.batch.runner): the progress lines and bar, the best iterate
in the run file."""
import pytest

from pmp_cases import SMALL


def test_progress_lines_give_the_rate_since_the_last_line():
    """The first iterations of a process include the kernels' compilation: each plain progress
    line gives the rate since the line before, so later lines show the steady speed."""
    import io
    from types import SimpleNamespace

    from pmp.batch.runner import Progress

    out = io.StringIO()
    progress = Progress(100, stream=out, every=50)
    for iteration, elapsed in ((0, 0.0), (50, 10.0), (100, 10.5)):
        progress.update(SimpleNamespace(
            iteration=iteration, elapsed=elapsed, status="", grad_norm=1.0, step_size=0.1,
            extra={}, cost={"total": 1.0, "loss": 1.0}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "it/s" not in lines[0]
    assert lines[1].endswith("(5.0 it/s)") and lines[2].endswith("(100.0 it/s)")


# -------------------------------------------------------------- the bar and the best iterate
class Terminal:
    """A text stream that says it is a terminal and counts the bar's redraws."""

    def __init__(self):
        import io

        self.text = io.StringIO()

    def isatty(self):
        return True

    def write(self, text):
        return self.text.write(text)

    def flush(self):
        pass

    @property
    def redraws(self):
        return self.text.getvalue().count("\r")


def fake_state(iteration, elapsed=0.0):
    from types import SimpleNamespace

    return SimpleNamespace(iteration=iteration, elapsed=elapsed, status="", grad_norm=1.0,
                           step_size=0.1, extra={}, cost={"total": 1.0, "loss": 1.0})


def test_the_terminal_bar_redraws_a_few_times_per_second_not_every_iteration():
    import time

    from pmp.batch.runner import Progress

    terminal = Terminal()
    progress = Progress(500, stream=terminal)
    tic = time.perf_counter()
    for iteration in range(501):
        progress.update(fake_state(iteration))
    seconds = time.perf_counter() - tic
    progress.close()
    assert terminal.redraws <= 3 + seconds / 0.1 < 100  # 0.1 s: tqdm's default
    assert "500/500" in terminal.text.getvalue()


# heavy ball with a far too long step on a small rings problem: J overshoots
OVERSHOOT = ["data.n_samples=24", "model.n_steps=10", "train.method='heavy_ball'",
             "train.lr=1.0", "train.momentum=0.9", "train.max_iter=30",
             "train.checkpoint_every=10", "train.batch_size=24"]


def test_the_run_file_records_the_best_iterate(tmp_path):
    """Heavy ball with a far too long step: J is lowest at iteration 15, ends far above its
    start at 30. The run file names the best iterate and stores its checkpoint; with
    [train] keep_best = true, /final is the best iterate too (and the last is kept)."""
    import io

    import numpy as np

    import pmp
    from pmp.batch.config import parse_config
    from pmp.batch.runner import train_run

    for keep in ("false", "true"):
        directory = tmp_path / keep
        config = parse_config(SMALL).with_overrides(OVERSHOOT + [f"train.keep_best={keep}"])
        _, parts = train_run(config, directory, stream=io.StringIO())
        with pmp.load_run(directory) as run:
            cost = run.history["cost"]
            best = int(np.argmin(cost))
            assert best == 15 and cost[-1] > cost[0]
            assert run.attrs["best_iteration"] == best and run.attrs["best_cost"] == cost[best]
            assert run.checkpoints == [0, 10, 15, 20, 30]
            assert run.file["best"].attrs["iteration"] == best
            final = best if keep == "true" else 30
            assert run.checkpoint().attrs["iteration"] == final
            assert parts["total"] == pytest.approx(cost[final], rel=1e-12)
            assert "ended above its initial cost" in run.attrs["message"]
            problem = run.problem()
            assert pmp.cost(problem, run.controls(best))["total"] == \
                pytest.approx(cost[best], rel=1e-12)


def test_a_resumed_run_keeps_the_best_iterate_of_before_its_checkpoint(tmp_path):
    import io

    import pmp
    from pmp.batch.config import parse_config
    from pmp.batch.runner import resume_run, train_run
    from pmp.batch.store import RunWriter
    from pmp_cases import controls_equal

    config = parse_config(SMALL).with_overrides(OVERSHOOT + ["train.keep_best=true"])
    train_run(config, tmp_path / "full", stream=io.StringIO())
    train_run(config, tmp_path / "cut", stream=io.StringIO())
    # what an interruption after the checkpoint of iteration 20 leaves
    writer = RunWriter(tmp_path / "cut", config.validate(), config.to_toml(), "heavy_ball",
                       resume=True)
    writer.checkpoints = [0, 10, 20]
    writer.truncate(20)
    writer.set_status("interrupted")
    resume_run(tmp_path / "cut", stream=io.StringIO())
    with pmp.load_run(tmp_path / "cut") as a, pmp.load_run(tmp_path / "full") as b:
        assert a.attrs["best_iteration"] == b.attrs["best_iteration"] == 15
        assert a.checkpoint().attrs["iteration"] == 15
        assert controls_equal(a.controls(), b.controls())


# ------------------------------------------------------------------ the shipped configs
def test_the_bang_bang_config_gives_bang_bang_controls_at_the_analytic_switching_time(
        tmp_path):
    """runs/bang_bang.toml (a few seconds): E-MSA converges, every step is at the bound or
    zero but the one the switch falls in, and the travelled time h sum|w_k| / M is the root
    of the switching law (T - t) |Phi'(s(t))| = lam, s = log|x[1]| moving at speed M, that
    its comment states (docs/theory.md 7, E3a in log coordinates)."""
    import io
    import os

    import numpy as np
    from scipy.optimize import brentq

    import pmp
    from pmp.batch.runner import train_run
    from pmp_cases import ROOT

    config = pmp.load_config(os.path.join(ROOT, "runs", "bang_bang.toml"))
    state, _ = train_run(config, tmp_path / "bang_bang", stream=io.StringIO())
    assert state.status == "converged"
    with pmp.load_run(tmp_path / "bang_bang") as run:
        problem, controls = run.problem(), run.controls()
    sw = pmp.analysis.switching(problem, controls)
    assert sw.bang_bang and sw.intermediate_steps == 1
    # the law: a = P x(0), Phi(s) = mean (a e^s - y)^2 / 2, s(t) = -M t until the switch
    a, y = (problem.x @ problem.P.T)[:, 0], np.ravel(problem.y)
    M, lam, T = problem.bound, problem.lam, problem.T
    s_best = np.log(np.sum(a * y) / np.sum(a * a))   # the least-squares scale, log
    assert s_best < 0                                 # the read-out has to shrink

    def dphi(s):
        return np.mean((a * np.exp(s) - y) * a * np.exp(s))

    t_s = brentq(lambda t: (T - t) * abs(dphi(-M * t)) - lam, 0.0, -s_best / M)
    assert abs(sw.travelled_time - t_s) <= problem.h
    assert abs(sw.switching_time - t_s) <= 2 * problem.h
    assert np.all(np.abs(controls["w"][:, 0]) < 1e-8)   # no signal on x[0]


def test_the_turnpike_config_decays_exponentially_and_its_heat_map_labels_do_not_collide(
        tmp_path):
    """runs/turnpike.toml (a few seconds): |u(t)| and the error decay exponentially, the error
    at twice the rate of the control (as its comment states); the heat map keeps a tick at
    every checkpoint but prints no label on top of another (the best iterate 1414 and the
    last 1423 are 9 iterations apart)."""
    import io
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import pmp
    from pmp.batch.runner import train_run
    from pmp_cases import ROOT

    config = pmp.load_config(os.path.join(ROOT, "runs", "turnpike.toml"))
    state, _ = train_run(config, tmp_path / "turnpike", stream=io.StringIO())
    assert state.status == "converged"
    with pmp.load_run(tmp_path / "turnpike") as run:
        analysis = pmp.analysis.analyze_run(run)
        control, error = analysis["fit_control"], analysis["fit_error"]
        assert control.is_rate and error.is_rate
        assert control.r2 > 0.999 and error.r2 > 0.999
        assert control.window[1] - control.window[0] > 0.5 * run.problem().T
        assert abs(error.mu / control.mu - 2.0) < 0.02
        ax = pmp.plots.control_heatmap(run)
        checkpoints = run.checkpoints
    ticks = list(ax.get_yticks())
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert ticks == checkpoints and labels[-1] == str(checkpoints[-1])
    shown = [tick for tick, label in zip(ticks, labels) if label]
    assert min(b - a for a, b in zip(shown, shown[1:])) >= 0.04 * (ticks[-1] - ticks[0])
    plt.close("all")
