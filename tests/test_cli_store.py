"""The `pmp train` demo command, run files, and the compilation cache."""
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import pmp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pmp(*args, cwd, env=None):
    env = dict(os.environ, **(env or {}))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pmp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_demo_trains_prints_and_writes_a_run(tmp_path):
    out = run_pmp("train", "--set", "train.max_iter=20", "--print-every", "5", cwd=tmp_path)
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
    again = run_pmp("train", "--set", "train.max_iter=2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "runs" / "demo-2" / "run.h5").exists()


def test_existing_output_is_refused_in_one_line(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "run.h5").write_bytes(b"precious")
    out = run_pmp("train", "--out", str(target), "--set", "train.max_iter=1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "already holds a run" in out.stderr
    assert "Traceback" not in out.stderr
    assert (target / "run.h5").read_bytes() == b"precious"
    ok = run_pmp("train", "--out", str(target), "--set", "train.max_iter=1", "--overwrite",
                 cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_bad_method_and_bad_arguments_are_one_line(tmp_path):
    out = run_pmp("train", "--set", "train.method=sgd", "--out", str(tmp_path / "x"),
                  cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("pmp: error: unknown method 'sgd'")
    assert "Traceback" not in out.stderr
    for args in (["train", "--no-such-flag"], ["frobnicate"], []):
        out = run_pmp(*args, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("pmp: error: ")


def test_load_run_rejects_other_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(ValueError, match="not a pmp run file"):
        pmp.load_run(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError, match="no run file"):
        pmp.load_run(tmp_path / "missing")


def test_a_warm_process_loads_kernels_from_the_cache(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, pmp
        from pmp._kernels import activations, readout, sweeps
        x, y = pmp.datasets.rings(16, seed=0, lift=3)
        for field, kw in [("outer", {}), ("perceptron", {"width": 4})]:
            problem = pmp.Problem(x, y, field=field, T=1.0, n_steps=4, **kw)
            pmp.value_and_grad(problem, pmp.init_controls(problem))
        kernels = [getattr(m, n) for m in (activations, readout, sweeps) for n in dir(m)]
        stats = [k.stats for k in kernels if hasattr(k, "stats")]
        print(sum(sum(s.cache_misses.values()) for s in stats),
              sum(sum(s.cache_hits.values()) for s in stats))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=600, check=True) for _ in range(2)]
    cold_misses, _ = map(int, runs[0].stdout.split())
    warm_misses, warm_hits = map(int, runs[1].stdout.split())
    assert cold_misses > 0
    assert warm_misses == 0 and warm_hits > 0


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
