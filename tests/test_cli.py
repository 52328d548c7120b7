"""The `pmp` command (pmp.batch.cli): train, info, resume, analyze and plot, the runs it writes,
one-line errors, Ctrl-C, kill -9 and resume."""
import io
import os
import signal
import time

import numpy as np
import pytest

import pmp
from pmp.batch.config import parse_config
from pmp.batch.runner import train_run
from pmp_cases import ROOT, SMALL, controls_equal, one_line_error, pmp_cli, spawn


# ------------------------------------------------------------------------- train and info
def test_demo_trains_prints_and_writes_a_run(tmp_path):
    out = pmp_cli("train", "--set", "train.max_iter=20", "--print-every", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "iter     20" in out.stdout and "final cost J =" in out.stdout
    path = tmp_path / "runs" / "demo" / "run.h5"
    assert path.exists()
    with pmp.load_run(tmp_path / "runs" / "demo") as run:
        assert run.attrs["status"] == "finished"
        assert run.attrs["format"] == "pmp-run"
        hist = run.history
        assert len(hist["cost"]) == 21 and np.all(np.diff(hist["cost"]) <= 1e-12)
        final = run.checkpoint()
        problem = run.problem()
        K = problem.n_steps
        assert final["states"].shape == (K + 1, 256, 3)
        assert final["costates"].shape == (K + 1, 256, 3)
        assert final["states"].dims[0][0].name == "/t"
        # the stored trajectories are those of the stored controls
        np.testing.assert_array_equal(run.x, problem.x)
        controls = run.controls()
        np.testing.assert_array_equal(pmp.forward(problem, controls), final["states"][()])
        assert final.attrs["cost"] == pytest.approx(hist["cost"][-1], rel=1e-12)
    # a second demo run does not touch the first one
    again = pmp_cli("train", "--set", "train.max_iter=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "runs" / "demo-2" / "run.h5").exists()


def test_cli_train_writes_the_documented_run_file(tmp_path):
    (tmp_path / "small.toml").write_text(SMALL)
    out = pmp_cli("train", "small.toml", "--set", "train.max_iter=25", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "final cost J" in out.stdout
    run_dir = tmp_path / "runs" / "small"
    os.chdir(ROOT)  # external links resolve relative to run.h5, not to the cwd
    with pmp.load_run(run_dir) as run:
        a = run.attrs
        assert a["format"] == "pmp-run" and a["format_version"] == 1
        assert a["status"] == "finished" and a["method"] == "emsa"
        assert "max_iter = 25" in a["config"]
        assert run.checkpoints == [0, 10, 20, 25]
        np.testing.assert_array_equal(run.history["iteration"], np.arange(26))
        for column in ("cost", "terminal", "running", "regularization", "grad_norm", "rho",
                       "accepted", "wall_time"):
            assert len(run.history[column]) == 26
        final = run.checkpoint()
        assert final.attrs["iteration"] == 25
        assert final["states"].shape == (9, 48, 3) == final["costates"].shape
        assert final["states"].dims[0][0][()].shape == (9,)
        assert run.file["data/x"].shape == (48, 3)
        problem = run.problem()
        controls = run.controls()
        np.testing.assert_array_equal(pmp.forward(problem, controls), final["states"][()])
        assert final.attrs["cost"] == pytest.approx(pmp.cost(problem, controls)["total"],
                                                    rel=1e-12)
    info = pmp_cli("info", str(run_dir), cwd=tmp_path)
    assert info.returncode == 0 and "status     finished" in info.stdout


# ------------------------------------------------------------------------------ bad input
def test_existing_output_is_refused_in_one_line(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "run.h5").write_bytes(b"precious")
    out = pmp_cli("train", "--out", str(target), "--set", "train.max_iter=1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "already holds a run" in out.stderr
    assert "Traceback" not in out.stderr
    assert (target / "run.h5").read_bytes() == b"precious"
    ok = pmp_cli("train", "--out", str(target), "--set", "train.max_iter=1", "--overwrite",
                 cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_bad_method_and_bad_arguments_are_one_line(tmp_path):
    out = pmp_cli("train", "--set", "train.method=sgd", "--out", str(tmp_path / "x"),
                  cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("pmp: error: unknown method 'sgd'")
    assert "Traceback" not in out.stderr
    for args in (["train", "--no-such-flag"], ["frobnicate"], []):
        out = pmp_cli(*args, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("pmp: error: ")


def test_bad_input_is_one_line_and_touches_nothing(tmp_path):
    (tmp_path / "small.toml").write_text(SMALL)
    one_line_error(pmp_cli("train", "missing.toml", cwd=tmp_path), "missing.toml",
                   "does not exist")
    one_line_error(pmp_cli("train", "small.toml", "--set", "model.actvation=relu",
                           cwd=tmp_path), "did you mean 'activation'")
    one_line_error(pmp_cli("train", "small.toml", "--set", "model.T=-1", cwd=tmp_path),
                   "T must be > 0.0, got -1.0")
    one_line_error(pmp_cli("train", "small.toml", "--set", "output.name='../../escape'",
                           cwd=tmp_path), "output.name")
    x, y = pmp.datasets.rings(10, seed=0)
    x[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    bad_data = SMALL.replace('name = "rings"\nn_samples = 48\nseed = 1\nlift = 3',
                             'path = "nan.npz"')
    (tmp_path / "nan.toml").write_text(bad_data)
    one_line_error(pmp_cli("train", "nan.toml", cwd=tmp_path), "x must be finite, got nan")
    # an existing run is never overwritten without --overwrite
    assert pmp_cli("train", "small.toml", "--set", "train.max_iter=3",
                   cwd=tmp_path).returncode == 0
    index = tmp_path / "runs" / "small" / "run.h5"
    before = index.read_bytes()
    one_line_error(pmp_cli("train", "small.toml", cwd=tmp_path), "already holds a run",
                   "--overwrite")
    assert index.read_bytes() == before
    (tmp_path / "runs" / "small" / "notes.txt").write_text("mine")
    assert pmp_cli("train", "small.toml", "--set", "train.max_iter=2", "--overwrite",
                   cwd=tmp_path).returncode == 0
    assert (tmp_path / "runs" / "small" / "notes.txt").read_text() == "mine"
    # corrupt and truncated run files
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.h5").write_bytes(b"not hdf5 at all")
    one_line_error(pmp_cli("info", "junk", cwd=tmp_path), "not a readable HDF5 file")
    one_line_error(pmp_cli("resume", "junk", cwd=tmp_path), "not a readable HDF5 file")
    truncated = tmp_path / "trunc"
    truncated.mkdir()
    (truncated / "run.h5").write_bytes(index.read_bytes()[:1000])
    one_line_error(pmp_cli("info", "trunc", cwd=tmp_path), "trunc")
    one_line_error(pmp_cli("resume", "nowhere", cwd=tmp_path), "no run directory nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_resume_refuses_a_changed_config_and_a_finished_run(tmp_path):
    config = parse_config(SMALL).with_overrides(["train.max_iter=12"])
    train_run(config, tmp_path / "r", stream=io.StringIO())
    out = pmp_cli("resume", str(tmp_path / "r"), cwd=tmp_path)
    one_line_error(out, "finished; nothing to resume")
    path = tmp_path / "r" / "config.toml"
    path.write_text(path.read_text().replace("lam = 0.01", "lam = 0.02"))
    one_line_error(pmp_cli("resume", str(tmp_path / "r"), cwd=tmp_path),
                   "differs from the configuration the run started with")


# ------------------------------------------------------------------- crash safety, resume
def long_config(tmp_path, max_iter=6000):
    text = SMALL.replace("max_iter = 40", f"max_iter = {max_iter}").replace(
        "checkpoint_every = 10", "checkpoint_every = 200")
    (tmp_path / "long.toml").write_text(text)
    return text


def wait_for_checkpoints(run_dir, count, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with pmp.load_run(run_dir) as run:
                if len(run.checkpoints) >= count:
                    return run.checkpoints
        except (FileNotFoundError, OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("no checkpoints appeared")


def test_kill_9_then_resume_is_bitwise_identical(tmp_path):
    long_config(tmp_path)
    process = spawn("train", "long.toml", "--out", "killed", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "killed", 4, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with pmp.load_run(tmp_path / "killed") as run:  # opens, last checkpoint intact
        assert run.attrs["status"] == "running"
        last = run.checkpoints[-1]
        assert last < 6000
        controls = run.controls()
        assert all(np.all(np.isfinite(v)) for v in controls.values())
        assert run.checkpoint().attrs["iteration"] == last
    resumed = pmp_cli("resume", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    full = pmp_cli("train", "long.toml", "--out", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    with pmp.load_run(tmp_path / "killed") as a, pmp.load_run(tmp_path / "full") as b:
        assert a.attrs["status"] == b.attrs["status"] == "finished"
        assert controls_equal(a.controls(), b.controls())
        np.testing.assert_array_equal(a.history["cost"], b.history["cost"])
        assert a.checkpoints == b.checkpoints


def test_a_reader_can_follow_a_training_run(tmp_path):
    long_config(tmp_path, max_iter=4000)
    process = spawn("train", "long.toml", "--out", "live", cwd=tmp_path)
    try:
        wait_for_checkpoints(tmp_path / "live", 1, process)
        seen = set()
        while process.poll() is None:
            with pmp.load_run(tmp_path / "live") as run:  # a notebook's view
                iteration = run.checkpoints[-1]
                states = run.states()
                assert states.shape == (9, 48, 3) and np.all(np.isfinite(states))
                assert len(run.history["cost"]) == iteration + 1
                seen.add(iteration)
            time.sleep(0.05)
        assert process.returncode == 0
        assert len(seen) >= 2
    finally:
        if process.poll() is None:
            process.kill()


def test_ctrl_c_checkpoints_says_how_to_resume_and_exits_130(tmp_path):
    long_config(tmp_path, max_iter=200000)
    process = spawn("train", "long.toml", "--out", "inter", cwd=tmp_path, interruptible=True)
    wait_for_checkpoints(tmp_path / "inter", 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "pmp resume inter" in err
    with pmp.load_run(tmp_path / "inter") as run:
        assert run.attrs["status"] == "interrupted"
        assert run.checkpoints[-1] == len(run.history["cost"]) - 1


# ----------------------------------------------------------------------- analyze and plot
def test_analyze_and_plot_a_run(trained_run):
    out = pmp_cli("analyze", str(trained_run), cwd=trained_run.parent)
    assert out.returncode == 0, out.stderr
    assert "fits of exp(-mu t)" in out.stdout and "|u(t)|" in out.stdout
    assert "J_(T,lam)(u)" in out.stdout
    with pmp.load_run(trained_run) as run:
        stored = run.analysis()  # analysis.h5: the trainer never writes it
        assert "analysis" not in run.file
    # a verdict column; a rate only where the verdict is exponential decay; 100 columns
    assert "verdict" in out.stdout
    fit, row = stored["fit_control"], out.stdout.split("|u(t)|")[1].splitlines()[0]
    assert fit["verdict"].split(" (")[0].split(",")[0] in row
    if fit["is_rate"]:
        assert fit["verdict"].startswith("exponential decay")
        assert fit["mu"] == pytest.approx(float(row.split()[0]), rel=1e-3)
    else:
        assert row.split()[0] == "-"
    assert max(len(line) for line in out.stdout.splitlines() if line.startswith("  ")) <= 100
    assert stored["curves"]["t"].shape == (21,)
    plot = pmp_cli("plot", str(trained_run), cwd=trained_run.parent)
    assert plot.returncode == 0, plot.stderr
    for name in ("decay", "states_costates", "trajectories", "decision_regions",
                 "control_heatmap", "training"):
        for ext in ("png", "pdf"):
            assert (trained_run / f"{name}.{ext}").stat().st_size > 1000
            assert f"{name}.{ext}" in plot.stdout
    assert not list(trained_run.glob("*.gif"))  # animations only with --animate


def test_analyze_and_plot_a_T_sweep(tmp_path):
    config = """
[data]
name = "rings"
n_samples = 24
lift = 3
[model]
T = 1.0
n_steps = 10
[objective]
lam = 0.01
[train]
method = "lbfgs"
max_iter = 200
gtol = 1e-9
checkpoint_every = 1000
"""
    (tmp_path / "t.toml").write_text(config)
    out = pmp_cli("sweep", "t.toml", "--grid", "model.T=1,2,4,8", "--out", "sw", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = pmp_cli("analyze", "sw", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "power laws against model.T" in out.stdout and "T*J" in out.stdout
    assert "R^2" in out.stdout and "(4 points)" in out.stdout
    assert (tmp_path / "sw" / "analysis.h5").exists()
    out = pmp_cli("plot", "sw", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "sw" / "scaling_T.png").exists()
    assert (tmp_path / "sw" / "scaling_T.pdf").exists()
    out = pmp_cli("plot", "sw", "--animate", cwd=tmp_path)  # a sweep has no trajectories
    assert out.returncode == 2 and "apply to a run" in out.stderr


def test_version_and_help_of_every_argument(capsys):
    from pmp.batch.cli import build_parser, main
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"pmp {pmp.__version__}"
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"train", "resume", "sweep", "info", "analyze", "plot"}
    for name, sub in commands.items():
        assert "example:\n  pmp " + name in sub.format_help()
        for action in sub._actions:
            assert action.help, f"pmp {name}: {action.dest} has no help"
