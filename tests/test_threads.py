"""Thread settings (pmp.threads): set_threads, get_threads, threads() and PMP_THREADS."""
import os
import subprocess
import sys

import pytest

import pmp
from pmp.batch.config import parse_config
from pmp_cases import ROOT, SMALL


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


def test_pmp_threads_environment_variable(tmp_path):
    code = "import pmp; print(pmp.get_threads())"
    env = dict(os.environ, PMP_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr


def test_the_kernels_blas_is_among_the_controlled_libraries():
    # numba's products call scipy's BLAS; importing pmp no longer loads scipy, so the
    # controller must load it before it lists the libraries it limits inside row blocks
    code = ("import sys, pmp, threadpoolctl; threads = sys.modules['pmp.threads']; "
            "x, y = pmp.datasets.rings(64, seed=0, lift=3); "
            "pmp.value_and_grad(pmp.Problem(x, y, T=1.0, n_steps=4), "
            "{'W': __import__('numpy').zeros((4, 3, 3)), 'b': __import__('numpy').zeros((4, 3))}); "
            "controlled = {lib.filepath for lib in threads._controller().lib_controllers}; "
            "loaded = {i['filepath'] for i in threadpoolctl.threadpool_info() "
            "if i['user_api'] == 'blas'}; "
            "print(len(loaded), sorted(loaded - controlled))")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n_loaded, missing = out.stdout.split(" ", 1)
    assert int(n_loaded) >= 1 and missing.strip() == "[]", out.stdout


def test_little_work_stays_on_one_thread(monkeypatch):
    # waking a thread costs more than a small sweep or maximisation saves: the demo's
    # 256 x 3 rings run in one block, W1's 1024 rows in two, W2's maximisation in two
    import importlib

    from pmp.maximize import linear
    from pmp.sweeps import _row_blocks

    monkeypatch.undo()  # the suite's conftest splits everything
    threads = importlib.import_module("pmp.threads")
    assert threads.MIN_BLOCK_WORK > 0
    used = []
    monkeypatch.setattr(linear, "map_blocks",
                        lambda func, bounds: used.append(bounds) or threads.map_blocks(func,
                                                                                       bounds))
    rings = pmp.demo_config().build_problem()
    x, y = pmp.datasets.rings(1024, seed=0, lift=3)
    w1 = pmp.Problem(x, y, field="outer", T=10.0, n_steps=100, lam=1e-3)
    x, y = pmp.datasets.digits()
    w2 = pmp.Problem(x, y, field="outer", T=5.0, n_steps=50, projection="first",
                     loss="cross_entropy", lam=1e-3)
    with pmp.threads(2):
        assert (rings.n_samples, rings.dim, rings.n_steps) == (256, 3, 100)
        assert _row_blocks(rings) == [0, 256]
        assert _row_blocks(w1) == [0, 512, 1024]
        for problem in (rings, w2):
            u = pmp.init_controls(problem, seed=0)
            xs = pmp.forward(problem, u)
            ps = pmp.backward(problem, u, xs)
            pmp.maximize.Maximizer(problem, max_inner=3).maximize(problem, u, xs, ps, 1.0)
    assert [len(bounds) - 1 for bounds in used] == [1, 2]
