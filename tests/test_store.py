"""Run files (pmp.batch.store): the stored trajectory samples, and files that are not runs."""
import io

import h5py
import pytest

import pmp
from pmp.batch.config import parse_config
from pmp.batch.runner import train_run
from pmp_cases import SMALL


def test_trajectory_samples_limits_the_stored_states(tmp_path):
    config = parse_config(SMALL).with_overrides(["output.trajectory_samples=5",
                                                 "train.max_iter=3"])
    train_run(config, tmp_path / "r", stream=io.StringIO())
    with pmp.load_run(tmp_path / "r") as run:
        assert run.checkpoint()["states"].shape == (9, 5, 3)


def test_load_run_rejects_other_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not a pmp run file"):
        pmp.load_run(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError, match="no run file"):
        pmp.load_run(tmp_path / "missing")
