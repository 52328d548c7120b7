"""A run directory that no command can lose or silently change: locks, validation before
writing, resume from the stored data, damaged checkpoints, extended runs, sweeps into one
directory, a full disk, and bad command lines (each checked against a digest of the files)."""
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import pmp
from pmp.batch import cli, store
from pmp.batch.config import parse_config
from pmp.batch.lock import DirectoryLock
from pmp.batch.runner import resume_run, train_run
from pmp.batch.store import RunWriter
from pmp_cases import ROOT, SMALL, controls_equal, one_line_error, pmp_cli, spawn

QUIET = io.StringIO()  # progress lines nobody reads
# a small full-batch run: E-MSA is deterministic, so runs can be compared bit for bit
BASE = SMALL.replace("batch_size = 16\n", "").replace("max_iter = 40", "max_iter = 20")


def config(text=BASE, *assignments):
    return parse_config(text).with_overrides(list(assignments))


def digest(directory):
    """relative path -> sha256 of every file below ``directory`` (the lock files, which only
    mark who writes, excepted)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if not name.startswith(".lock-"):
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def run_main(*args, capsys):
    """``pmp ARGS`` in this process: (exit status, stdout, stderr)."""
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def check_one_line(status, err, *fragments):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmp: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (20 iterations, checkpoints 0, 10, 20) to copy."""
    directory = tmp_path_factory.mktemp("template") / "run"
    train_run(config(), directory, stream=QUIET)
    return directory


@pytest.fixture
def run_dir(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


# -------------------------------------------------------------- validation before writing
BAD_TRAIN = [
    ("train.max_iter=-5", "max_iter"), ("train.gtol=-1.0", "gtol"), ("train.init='foo'", "init"),
    ("train.init_scale=-1", "init_scale"), ("train.batch_size=0", "batch_size"),
    ("train.time_limit=0", "time_limit"), ("train.segment=0", "segment"),
    ("train.seed=-1", "seed"), ("train.seed='x'", "seed"), ("train.threads=0", "threads"),
    ("train.threads='two'", "threads"), ("train.checkpoint_every='two'", "checkpoint_every"),
    ("train.checkpoint_every=0", "checkpoint_every"),
    ("train.checkpoint_every=2.5", "checkpoint_every"),
    ("output.trajectory_samples='all'", "trajectory_samples"),
    ("output.trajectory_samples=0", "trajectory_samples"), ("output.dir=5", "output.dir"),
    ("train.method='gd'|objective.reg='l1'", "differentiable"),
    ("train.segment=2", "segment"),  # with emsa
    ("train.method='lbfgs'|train.batch_size=8", "full batch"),
    ("train.method='msa'|objective.reg='l1'", "bound"),
]


@pytest.mark.parametrize("assignments,name", BAD_TRAIN, ids=[b[0] for b in BAD_TRAIN])
def test_a_bad_option_writes_nothing(assignments, name, tmp_path, capsys):
    args = ["train", "--out", str(tmp_path / "r")]
    for item in assignments.split("|"):
        args += ["--set", item]
    status, out, err = run_main(*args, capsys=capsys)
    check_one_line(status, err, name)
    assert out == ""  # the whole terminal shows the one line
    assert not (tmp_path / "r").exists()


def test_a_bad_option_keeps_the_run_it_would_replace(run_dir, capsys):
    """--overwrite with a bad option: the finished run is left as it was."""
    before = digest(run_dir)
    status, _, err = run_main("train", "--out", str(run_dir), "--overwrite",
                              "--set", "train.gtol=-1.0", capsys=capsys)
    check_one_line(status, err, "gtol")
    assert digest(run_dir) == before


def test_overwrite_removes_only_what_pmp_wrote(run_dir, capsys):
    (run_dir / "checkpoints" / "notes.txt").write_text("mine")
    (run_dir / "plot.py").write_text("mine")
    status, _, err = run_main("train", "--out", str(run_dir), "--overwrite",
                              "--set", "train.max_iter=3", capsys=capsys)
    assert status == 0, err
    assert (run_dir / "checkpoints" / "notes.txt").read_text() == "mine"
    assert (run_dir / "plot.py").read_text() == "mine"
    with pmp.load_run(run_dir) as run:
        assert run.checkpoints == [0, 3]


def test_a_sweep_with_one_bad_point_runs_none(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(BASE)
    status, _, err = run_main("sweep", str(tmp_path / "c.toml"), "--out", str(tmp_path / "s"),
                              "--grid", "train.gtol=1e-6,-1", capsys=capsys)
    check_one_line(status, err, "gtol")
    assert not (tmp_path / "s").exists()


BAD_COMMANDS = [
    (["train", "--print-every", "0"], "print_every"),
    (["resume", "{run}", "--print-every", "0"], "print_every"),
    (["resume", "{run}", "--max-iter", "-3"], "max_iter"),
    (["resume", "{run}", "--time-limit", "-1"], "time_limit"),
    (["resume", "{run}"], "finished; nothing to resume"),
    (["train", "--out", "{run}"], "already holds a run"),
    (["train", "--out", "{run}", "--overwrite", "--set", "model.T=1e-320"], "T"),
    (["info", "{run}/nothing"], "no run file"),
    (["analyze", "{run}", "--iteration", "7"], "no checkpoint at iteration 7"),
]


@pytest.mark.parametrize("args,fragment", BAD_COMMANDS, ids=[" ".join(c[0]) for c in BAD_COMMANDS])
def test_bad_command_lines_are_one_line_and_change_nothing(args, fragment, run_dir, capsys,
                                                           tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = digest(tmp_path)
    status, out, err = run_main(*(a.format(run=run_dir) for a in args), capsys=capsys)
    check_one_line(status, err, fragment)
    assert out == ""
    assert digest(tmp_path) == before


def test_a_data_file_whose_x_is_a_group_is_named(tmp_path, capsys):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_group("x")
        f["y"] = np.ones(5)
    text = BASE.replace('name = "rings"\nn_samples = 48\nseed = 1\nlift = 3',
                        f'path = "{tmp_path / "d.h5"}"')
    (tmp_path / "c.toml").write_text(text)
    status, _, err = run_main("train", str(tmp_path / "c.toml"), "--out",
                              str(tmp_path / "r"), capsys=capsys)
    check_one_line(status, err, "'x' must be an array", "d.h5")
    assert not (tmp_path / "r").exists()


def test_a_bad_thread_setting_is_one_line_and_writes_nothing(tmp_path):
    env = dict(os.environ, PMP_THREADS="abc",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "pmp", "train", "--out", "r"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    one_line_error(out, "PMP_THREADS")
    assert not (tmp_path / "r").exists()


def test_a_closed_pipe_is_not_an_error(run_dir, monkeypatch):
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["info", str(run_dir)]) == 0


# -------------------------------------------------------------------------- locks
def test_a_second_writer_is_refused_naming_the_first(run_dir, capsys):
    with DirectoryLock(run_dir, "run"):
        before = digest(run_dir)
        status, _, err = run_main("resume", str(run_dir), "--max-iter", "30", capsys=capsys)
        check_one_line(status, err, "in use by process", str(os.getpid()))
        status, _, err = run_main("train", "--out", str(run_dir), "--overwrite", capsys=capsys)
        check_one_line(status, err, "in use by process")
        assert digest(run_dir) == before
    status, _, err = run_main("resume", str(run_dir), "--max-iter", "21", capsys=capsys)
    assert status == 0, err  # the lock went with its holder


def test_analysis_beside_training_leaves_the_run_intact(tmp_path):
    """`pmp analyze` while the run trains: the trainer finishes, its index is complete and
    the analysis is in its own file."""
    (tmp_path / "c.toml").write_text(config(BASE, "train.max_iter=3000", "train.gtol=0.0",
                                            "train.checkpoint_every=25").to_toml())
    trainer = spawn("train", "c.toml", "--out", "cc", cwd=tmp_path, interruptible=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "cc" / "run.h5").exists() or count(tmp_path / "cc") < 2:
            assert time.time() < deadline and trainer.poll() is None
            time.sleep(0.2)
        for _ in range(3):
            out = pmp_cli("analyze", "cc", cwd=tmp_path)
            assert out.returncode == 0, out.stderr
    finally:
        trainer.send_signal(signal.SIGINT)
        _, err = trainer.communicate(timeout=120)
    assert trainer.returncode in (0, 130), err
    assert "Error" not in err and "Traceback" not in err
    with pmp.load_run(tmp_path / "cc") as run:
        iterations = run.history["iteration"]
        np.testing.assert_array_equal(iterations, np.arange(len(iterations)))
        assert run.analysis() is not None
        last = run.checkpoints[-1]
    assert not [n for n in os.listdir(tmp_path / "cc") if n.endswith(".tmp")]
    out = pmp_cli("resume", "cc", "--max-iter", str(last + 5), cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def count(directory):
    with pmp.load_run(directory) as run:
        return len(run.checkpoints)


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed_or_retrained(tmp_path,
                                                                              capsys):
    cfg = config()
    problem = cfg.validate()
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    for target in ("resume", "train"):
        directory = tmp_path / target
        RunWriter(directory, problem, cfg.to_toml(), cfg.method)  # what a kill -9 leaves
        args = ["resume", str(directory)] if target == "resume" else \
            ["train", str(tmp_path / "c.toml"), "--out", str(directory)]
        status, _, err = run_main(*args, capsys=capsys)
        assert status == 0, err
        with pmp.load_run(directory) as run:
            assert run.checkpoints == [0, 10, 20] and run.attrs["status"] == "finished"


def test_info_says_when_no_process_trains_a_running_run(tmp_path, capsys):
    cfg = config()
    RunWriter(tmp_path / "r", cfg.validate(), cfg.to_toml(), cfg.method)  # then kill -9
    status, out, _ = run_main("info", str(tmp_path / "r"), capsys=capsys)
    assert status == 0 and "no process trains it now" in out
    with DirectoryLock(tmp_path / "r", "run"):
        status, out, _ = run_main("info", str(tmp_path / "r"), capsys=capsys)
        assert status == 0 and "no process trains it now" not in out


@pytest.mark.parametrize("when", ["checkpoint file", "final index"])
def test_interrupted_inside_a_write_then_resume(tmp_path, monkeypatch, when):
    """A stop inside the writing of a checkpoint file or of the final index: nothing half
    written is published, and resume finishes the run as if nothing happened."""
    if when == "checkpoint file":
        real = store.create_dataset

        def failing(group, name, *args, **kwargs):
            if "00000010.h5" in group.file.filename and name == "costates":
                raise KeyboardInterrupt  # inside the second checkpoint's file
            return real(group, name, *args, **kwargs)

        monkeypatch.setattr(store, "create_dataset", failing)
    else:
        real = RunWriter._write_index

        def failing(self):
            if self.attrs["status"] == "finished":
                raise KeyboardInterrupt
            real(self)

        monkeypatch.setattr(RunWriter, "_write_index", failing)
    with pytest.raises(KeyboardInterrupt):
        train_run(config(), tmp_path / "r", stream=QUIET)
    monkeypatch.undo()
    assert not [n for _, _, files in os.walk(tmp_path) for n in files if n.endswith(".tmp")]
    resume_run(tmp_path / "r", stream=QUIET)
    with pmp.load_run(tmp_path / "r") as run:
        assert run.attrs["status"] == "finished"
        assert controls_equal(run.controls(), reference(tmp_path, 20))


def test_ctrl_c_between_an_iterate_and_its_history_row(tmp_path, monkeypatch):
    """Ctrl-C after the trainer yields iteration 7 but before its history row is recorded:
    the interrupted checkpoint and the history still agree, and resume finishes the run."""
    from pmp.batch import runner

    real, raised = runner.history_row, []

    def interrupted_once(state):
        if state.iteration == 7 and not raised:
            raised.append(state.iteration)
            raise KeyboardInterrupt
        return real(state)

    monkeypatch.setattr(runner, "history_row", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        train_run(config(), tmp_path / "r", stream=QUIET)
    with pmp.load_run(tmp_path / "r") as run:
        assert run.checkpoints[-1] == 7
        np.testing.assert_array_equal(run.history["iteration"], np.arange(8))
    monkeypatch.undo()
    resume_run(tmp_path / "r", stream=QUIET)
    with pmp.load_run(tmp_path / "r") as run:
        assert controls_equal(run.controls(), reference(tmp_path, 20))


def test_what_a_killed_writer_left_half_written_is_removed(run_dir):
    stale = [run_dir / ".run.h5.x1y2.tmp", run_dir / "checkpoints" / ".00000030.h5.ab.tmp"]
    mine = run_dir / "checkpoints" / ".notes.tmp"
    for path in stale + [mine]:
        path.write_bytes(b"half")
    resume_run(run_dir, max_iter=21, stream=QUIET)
    assert not any(path.exists() for path in stale) and mine.exists()


# -------------------------------------------------------------- resume and extension
def reference(tmp_path, max_iter):
    """Final controls of an uninterrupted run of ``max_iter`` iterations."""
    directory = tmp_path / f"reference-{max_iter}"
    train_run(config(BASE, f"train.max_iter={max_iter}"), directory, stream=QUIET)
    with pmp.load_run(directory) as run:
        return run.controls()


def test_extending_a_finished_run_equals_a_longer_run(run_dir, tmp_path, capsys):
    status, _, err = run_main("resume", str(run_dir), "--max-iter", "35", capsys=capsys)
    assert status == 0, err
    with pmp.load_run(run_dir) as run:
        assert run.checkpoints == [0, 10, 20, 30, 35]
        assert run.attrs["status"] == "finished"
        np.testing.assert_array_equal(run.history["iteration"], np.arange(36))
        assert controls_equal(run.controls(), reference(tmp_path, 35))
    assert "max_iter = 35" in (run_dir / "config.toml").read_text()


def test_resume_trains_on_the_stored_data_from_any_directory(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    x, y = pmp.datasets.moons(40, seed=3)
    np.savez(data / "d.npz", x=x, y=y)
    text = BASE.replace('name = "rings"\nn_samples = 48\nseed = 1\nlift = 3',
                        'path = "d.npz"\nlift = 3')
    monkeypatch.chdir(data)
    train_run(config(text, "train.max_iter=10"), tmp_path / "short", stream=QUIET)
    train_run(config(text, "train.max_iter=25"), tmp_path / "long", stream=QUIET)
    np.savez(data / "d.npz", x=x + 1.0, y=y)  # the user regenerates the file
    monkeypatch.chdir(tmp_path)  # and resumes from elsewhere: d.npz is not here
    resume_run(tmp_path / "short", max_iter=25, stream=QUIET)
    with pmp.load_run(tmp_path / "short") as short, pmp.load_run(tmp_path / "long") as long:
        assert controls_equal(short.controls(), long.controls())
        np.testing.assert_array_equal(short.x, long.x)


def test_ctrl_c_on_the_final_iteration_then_resume(tmp_path, monkeypatch):
    from pmp.batch import runner

    update = runner.Progress.update

    def interrupt_at_the_end(self, state):
        update(self, state)
        if state.status is not None:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.Progress, "update", interrupt_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        train_run(config(), tmp_path / "r", stream=QUIET)
    monkeypatch.undo()
    with pmp.load_run(tmp_path / "r") as run:
        assert run.attrs["status"] == "interrupted" and run.checkpoints[-1] == 20
    state, _ = resume_run(tmp_path / "r", stream=QUIET)
    assert state.status == "max_iter"
    with pmp.load_run(tmp_path / "r") as run:
        assert run.attrs["status"] == "finished"
        assert controls_equal(run.controls(), reference(tmp_path, 20))


# -------------------------------------------------------------- damaged files
def last_checkpoint_file(directory):
    with pmp.load_run(directory) as run:
        return directory / "checkpoints" / f"{run.checkpoints[-1]:08d}.h5"


def test_changed_controls_are_detected_and_the_run_falls_back(run_dir, tmp_path, capsys):
    """Controls rewritten through HDF5 (checksums valid): the stored cost gives it away."""
    with h5py.File(last_checkpoint_file(run_dir), "r+") as f:
        W = f["checkpoint/controls/W"]
        W[0, 0, :] = 0.0
    stream = io.StringIO()
    resume_run(run_dir, max_iter=30, stream=stream)
    assert "checkpoint 20" in stream.getvalue() and "set aside" in stream.getvalue()
    assert (run_dir / "checkpoints" / "00000020.h5.damaged").exists()
    with pmp.load_run(run_dir) as run:
        assert controls_equal(run.controls(), reference(tmp_path, 30))


def test_damaged_bytes_are_detected_by_the_checksums(run_dir, tmp_path):
    path = last_checkpoint_file(run_dir)
    with h5py.File(path, "r") as f:
        offset = f["checkpoint/controls/W"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:  # 20 values of W zeroed behind HDF5's back
        f.seek(offset)
        f.write(bytes(160))
    with pmp.load_run(run_dir) as run:
        with pytest.raises(store.RunFileError, match="00000020.h5"):
            run.controls()
    resume_run(run_dir, max_iter=30, stream=QUIET)
    with pmp.load_run(run_dir) as run:
        assert controls_equal(run.controls(), reference(tmp_path, 30))


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_a_missing_or_damaged_data_file_is_refused(run_dir, capsys, damage):
    if damage == "delete":
        os.remove(run_dir / "data.h5")
    else:
        (run_dir / "data.h5").write_bytes(b"not hdf5" * 100)
    before = digest(run_dir)
    status, _, err = run_main("resume", str(run_dir), "--max-iter", "30", capsys=capsys)
    check_one_line(status, err, "data.h5")
    assert digest(run_dir) == before


# -------------------------------------------------------------------------- sweeps
def test_a_second_sweep_keeps_the_earlier_points(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(config(BASE, "train.max_iter=3").to_toml())
    sweep = ["sweep", str(tmp_path / "c.toml"), "--out", str(tmp_path / "s")]
    assert run_main(*sweep, "--grid", "model.T=1,2", capsys=capsys)[0] == 0
    assert run_main(*sweep, "--grid", "model.T=3", capsys=capsys)[0] == 0
    lines = (tmp_path / "s" / "sweep.csv").read_text().splitlines()
    assert len(lines) == 4 and {line.split(",")[0] for line in lines[1:]} == {"1.0", "2.0", "3"}
    before = digest(tmp_path / "s")
    status, _, err = run_main(*sweep, "--grid", "objective.lam=0.1", capsys=capsys)
    check_one_line(status, err, "holds a sweep over model.T")
    assert digest(tmp_path / "s") == before


# ------------------------------------------------------------------------ a full disk
def test_a_full_disk_ends_in_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    """The free space runs out after the first checkpoint: one line, the checkpoint intact,
    no temporary file left; once space is back, resume finishes the run."""
    real = shutil.disk_usage
    writes = []

    def filling(path):
        usage = real(path)
        writes.append(path)
        return usage._replace(free=0) if len(writes) > 5 else usage

    monkeypatch.setattr(store.shutil, "disk_usage", filling)
    (tmp_path / "c.toml").write_text(config().to_toml())
    status, _, err = run_main("train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r"),
                              capsys=capsys)
    check_one_line(status, err, "no space left on device", "the last checkpoint (iteration 0) "
                   "is intact", "pmp resume")
    assert not [n for _, _, files in os.walk(tmp_path) for n in files if n.endswith(".tmp")]
    monkeypatch.undo()
    status, _, err = run_main("resume", str(tmp_path / "r"), capsys=capsys)
    assert status == 0, err
    with pmp.load_run(tmp_path / "r") as run:
        assert controls_equal(run.controls(), reference(tmp_path, 20))


def test_a_real_full_disk(tmp_path):
    """The same on a 2 MB tmpfs, where this machine lets the test mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        (mount / "c.toml").write_text(config(BASE, "train.max_iter=400", "train.gtol=0.0",
                                             "train.checkpoint_every=1").to_toml())
        out = pmp_cli("train", "c.toml", "--out", "r", cwd=mount)
        one_line_error(out, "no space left on device")
        assert not [n for _, _, files in os.walk(mount) for n in files if n.endswith(".tmp")]
        with pmp.load_run(mount / "r") as run:
            run.controls()  # the last checkpoint reads back
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
