"""Shared fixtures of pmp's tests.

This directory is on ``sys.path`` while the tests run (pytest puts a conftest's directory
there), so the tests import their helpers by name: :mod:`naive` (the NumPy twins of the
kernels) and :mod:`pmp_cases` (the small problems they are compared on).
"""
import importlib
import io
import os

import pytest

import pmp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# no notice on stderr when a test process (or a command it starts) compiles the kernels:
# tests compare stderr; tests/test_kernels.py checks the notice itself
os.environ["PMP_QUIET"] = "1"
# the kernels' products in SciPy's BLAS, the one every installation has (the default when
# MKL is not installed); tests/test_blas.py compares MKL's results with it
os.environ["PMP_BLAS"] = "scipy"


@pytest.fixture(autouse=True)
def split_small_work(monkeypatch):
    """Split sweeps and maximisations into blocks on threads however little their work, so
    that the suite's small problems run every multi-block path (pmp keeps work below
    MIN_BLOCK_WORK in one block; tests/test_threads.py checks that rule)."""
    monkeypatch.setattr(importlib.import_module("pmp.threads"), "MIN_BLOCK_WORK", 0.0)


@pytest.fixture
def rings():
    """The demo's data: two rings lifted to R^3, 64 samples."""
    return pmp.datasets.rings(64, seed=0, lift=3)


@pytest.fixture(scope="module")
def toy():
    """Two rings lifted to R^3, 24 samples: the gradient methods' and the trainer's problem."""
    x, y = pmp.datasets.rings(24, seed=1)
    return pmp.Problem(x, y, field="outer", T=2.0, n_steps=10, lam=1e-2, lift=3)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from pmp.batch.runner import train_run

    directory = tmp_path_factory.mktemp("runs") / "r"
    config = pmp.parse_config(open(os.path.join(ROOT, "runs", "demo.toml")).read())
    config = config.with_overrides(["data.n_samples=40", "model.n_steps=20",
                                    "train.max_iter=30", "train.checkpoint_every=10"])
    train_run(config, directory, stream=io.StringIO())
    return directory
