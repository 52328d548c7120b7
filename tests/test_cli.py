"""Configs, the pmp command, run files, crash-safe resume and sweeps (the runs issue)."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import pmp
from pmp.batch.config import ConfigError, RunConfig, parse_config
from pmp.batch.runner import resume_run, train_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = """\
[data]
name = "rings"
n_samples = 48
seed = 1
lift = 3

[model]
field = "outer"
activation = "tanh"
T = 2.0
n_steps = 8

[objective]
loss = "squared"
reg = "l2"
lam = 0.01

[train]
method = "emsa"
max_iter = 40
checkpoint_every = 10
batch_size = 16

[output]
dir = "runs"
name = "small"
"""


def pmp_cli(*args, cwd, timeout=600, **popen):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pmp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def spawn(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "pmp", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line_error(out, *fragments):
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmp: error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def controls_equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[n], b[n]) for n in a)


# ------------------------------------------------------------------------- configs
def test_config_round_trip_rebuilds_the_same_problem():
    x, y = pmp.datasets.moons(40, seed=2, lift=4)
    problem = pmp.Problem(x, y, field="perceptron", width=5, activation="leaky_relu",
                          slope=0.2, T=3.0, n_steps=7, loss="logistic", reg="h1", lam=0.01,
                          lam1=0.002, running=0.5, projection="trainable")
    config = RunConfig.from_objects(problem, "adam", data=dict(name="moons", n_samples=40,
                                                               seed=2, lift=4),
                                    max_iter=5, lr=0.01)
    again = parse_config(config.to_toml())
    rebuilt = again.build_problem()
    assert rebuilt.config() == problem.config()
    np.testing.assert_array_equal(rebuilt.x, problem.x)
    assert again.method == "adam" and again.train_options == dict(max_iter=5, lr=0.01)
    assert parse_config(again.to_toml()).sections == again.sections


def test_matrix_projection_and_data_file_round_trip(tmp_path):
    x, y = pmp.datasets.rings(20, seed=0)
    np.savez(tmp_path / "points.npz", x=x, y=y)
    P = np.array([[0.3, -0.7]])
    problem = pmp.Problem(x, y, projection=P, n_steps=4)
    config = RunConfig.from_objects(problem, "gd", data=dict(path=str(tmp_path / "points.npz")))
    rebuilt = parse_config(config.to_toml()).build_problem()
    np.testing.assert_array_equal(rebuilt.P, P)
    np.testing.assert_array_equal(rebuilt.x, x)


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "runs"))
                                         if f.endswith(".toml")))
def test_every_shipped_config_is_valid(name):
    config = pmp.load_config(os.path.join(ROOT, "runs", name))
    problem = config.validate()
    assert problem.n_steps >= 1
    assert parse_config(config.to_toml()).sections == config.sections


def test_demo_config_is_valid_and_shipped():
    demo = pmp.demo_config()
    assert demo.validate().n_samples == 256
    shipped = pmp.load_config(os.path.join(ROOT, "runs", "demo.toml"))
    assert shipped.sections == demo.sections


@pytest.mark.parametrize("text,fragment", [
    ("[model]\nactvation = 'tanh'", "did you mean 'activation'?"),
    ("[modle]\nT = 1.0", "unknown section [modle]"),
    ("[train]\nmethod = 'gd'\nmomentum = 0.9", "unknown key 'train.momentum'"),
    ("[train]\nmethod = 'heavy_ball'\nmomentm = 0.9", "did you mean 'momentum'?"),
    ("[data]\nname = 'rings'\npath = 'x.npz'", "exactly one of 'name'"),
    ("[data\nname = 'rings'", "is not valid TOML"),
])
def test_bad_keys_are_named_with_a_suggestion(text, fragment):
    base = "" if "[data" in text else "[data]\nname = 'rings'\n"
    with pytest.raises((ConfigError, ValueError), match=None) as err:
        parse_config(base + text).validate()
    assert fragment in str(err.value)


def test_values_are_checked_by_the_api():
    config = parse_config(SMALL)
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        config.with_overrides(["model.n_steps=0"]).validate()
    with pytest.raises(TypeError, match="T must be a real number, got str 'ten'"):
        config.with_overrides(["model.T=ten"]).validate()
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        config.with_overrides(["train.method=sgd"]).validate()


# ------------------------------------------------------------------------ the command
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


def test_trajectory_samples_limits_the_stored_states(tmp_path):
    config = parse_config(SMALL).with_overrides(["output.trajectory_samples=5",
                                                 "train.max_iter=3"])
    train_run(config, tmp_path / "r", stream=open(os.devnull, "w"))
    with pmp.load_run(tmp_path / "r") as run:
        assert run.checkpoint()["states"].shape == (9, 5, 3)


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
    one_line_error(pmp_cli("resume", "nowhere", cwd=tmp_path), "no run file")


def test_resume_refuses_a_changed_config_and_a_finished_run(tmp_path):
    config = parse_config(SMALL).with_overrides(["train.max_iter=12"])
    train_run(config, tmp_path / "r", stream=open(os.devnull, "w"))
    out = pmp_cli("resume", str(tmp_path / "r"), cwd=tmp_path)
    one_line_error(out, "finished; nothing to resume")
    path = tmp_path / "r" / "config.toml"
    path.write_text(path.read_text().replace("lam = 0.01", "lam = 0.02"))
    one_line_error(pmp_cli("resume", str(tmp_path / "r"), cwd=tmp_path),
                   "differs from the configuration the run started with")


# --------------------------------------------------------------- crash safety, resume
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
    process = spawn("train", "long.toml", "--out", "inter", cwd=tmp_path)
    wait_for_checkpoints(tmp_path / "inter", 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "pmp resume inter" in err
    with pmp.load_run(tmp_path / "inter") as run:
        assert run.attrs["status"] == "interrupted"
        assert run.checkpoints[-1] == len(run.history["cost"]) - 1


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


# --------------------------------------------------------------------------- sweeps
SWEEP = SMALL.replace("max_iter = 40", "max_iter = 15")


def test_sweep_in_process_and_on_a_local_dask_cluster_agree(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    grid = ["--grid", "model.T=1.0,2.0", "--grid", "objective.lam=0.01,0.1"]
    local = pmp_cli("sweep", "s.toml", *grid, "--out", "inproc", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    dask = pmp_cli("sweep", "s.toml", *grid, "--out", "dask", "--workers", "2", cwd=tmp_path)
    assert dask.returncode == 0, dask.stderr
    names = sorted(os.listdir(tmp_path / "inproc"))
    assert names == sorted(os.listdir(tmp_path / "dask"))
    assert "T=1.0,lam=0.01" in names and "sweep.csv" in names and "sweep.h5" in names
    for name in names:
        if name.startswith("T="):
            with pmp.load_run(tmp_path / "inproc" / name) as a, \
                    pmp.load_run(tmp_path / "dask" / name) as b:
                assert controls_equal(a.controls(), b.controls())
    with h5py.File(tmp_path / "inproc" / "sweep.h5") as a, \
            h5py.File(tmp_path / "dask" / "sweep.h5") as b:
        np.testing.assert_array_equal(a["cost"][()], b["cost"][()])
        np.testing.assert_array_equal(a["model.T"][()], [1.0, 1.0, 2.0, 2.0])
    csv_text = (tmp_path / "inproc" / "sweep.csv").read_text().splitlines()
    assert csv_text[0].startswith("model.T,objective.lam,status,iterations,cost")
    assert len(csv_text) == 5


def test_rerunning_a_sweep_skips_finished_and_resumes_interrupted(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    grid = ["--grid", "model.T=1.0,2.0"]
    assert pmp_cli("sweep", "s.toml", *grid, "--out", "sw", cwd=tmp_path).returncode == 0
    first = tmp_path / "sw" / "T=1.0" / "run.h5"
    stamp = first.stat().st_mtime_ns
    reference = pmp.load_run(tmp_path / "sw" / "T=2.0").controls()
    # make the second point look interrupted at its checkpoint 10
    from pmp.batch.store import RunWriter
    config = parse_config(SWEEP).with_overrides(["model.T=2.0"])
    writer = RunWriter(tmp_path / "sw" / "T=2.0", config.validate(), config.to_toml(), "emsa",
                       resume=True)
    writer.checkpoints = [0, 10]
    writer.truncate(10)
    writer.set_status("interrupted")
    again = pmp_cli("sweep", "s.toml", *grid, "--out", "sw", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert first.stat().st_mtime_ns == stamp  # finished: not touched
    with pmp.load_run(tmp_path / "sw" / "T=2.0") as run:
        assert run.attrs["status"] == "finished"
        assert controls_equal(run.controls(), reference)


def test_bad_sweep_arguments(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP)
    one_line_error(pmp_cli("sweep", "s.toml", cwd=tmp_path), "at least one --grid")
    one_line_error(pmp_cli("sweep", "s.toml", "--grid", "T=1,2", cwd=tmp_path),
                   "section.key")
    one_line_error(pmp_cli("sweep", "s.toml", "--grid", "model.Tt=1,2", cwd=tmp_path),
                   "did you mean 'T'")
    one_line_error(pmp_cli("sweep", "s.toml", "--grid", "model.T=1,-2", cwd=tmp_path),
                   "T must be > 0.0")


# --------------------------------------------------------------------------- threads
def test_thread_settings():
    before = pmp.get_threads()
    assert 1 <= before <= pmp.available_cores()
    with pmp.threads(1):
        assert pmp.get_threads() == 1
    assert pmp.get_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        pmp.set_threads(0)
    config = parse_config(SMALL).with_overrides(["train.threads=1", "train.max_iter=3"])
    assert config.threads == 1 and "threads" not in config.train_options


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


def test_pmp_threads_environment_variable(tmp_path):
    code = "import pmp; print(pmp.get_threads())"
    env = dict(os.environ, PMP_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
