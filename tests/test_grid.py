"""Sweeps of runs over a grid of config values (pmp.batch.grid, run by `pmp sweep`): in process
and on a dask cluster, re-running a sweep, bad grids."""
import os

import h5py
import numpy as np

import pmp
from pmp.batch.config import parse_config
from pmp_cases import SMALL, controls_equal, one_line_error, pmp_cli


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
