"""Smoke tests of the benchmark suite's time-to-target section (benchmarks/bench_target.py) at
toy size: PyTorch's cost equals pmp's, a whole measurement runs and reports, and the ratio
targets bound what a missed median leaves open."""
import json
import os
import sys

import numpy as np
import pytest

import pmp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch = pytest.importorskip("torch")
bench_target = pytest.importorskip("benchmarks.bench_target")


def small_problems():
    """Small versions of the three problems: tracking through a fixed readout (the toy),
    cross-entropy on the first coordinates (the digits), the lifted rings (the demo)."""
    x = np.linspace(-np.pi, np.pi, 12)
    toy = pmp.Problem(np.repeat(x[:, None], 5, axis=1), np.sin(x), T=5.0, n_steps=4,
                      lam=1e-3, projection=np.ones((1, 5)))
    digits_x, digits_y = pmp.datasets.digits()
    digits = pmp.Problem(digits_x[:40], digits_y[:40], T=5.0, n_steps=3, projection="first",
                         loss="cross_entropy", lam=1e-3)
    rings_x, rings_y = pmp.datasets.rings(16, seed=0)
    rings = pmp.Problem(rings_x, rings_y, T=10.0, n_steps=5, lam=1e-3, lift=3)
    return {"toy": toy, "digits": digits, "rings": rings}


@pytest.mark.parametrize("name", ["toy", "digits", "rings"])
def test_torch_cost_equals_pmp(name):
    problem = small_problems()[name]
    training = bench_target.TorchTraining(problem, threads=1)
    controls = pmp.init_controls(problem, scale=1.0, seed=3)
    errors = training.check(controls)
    assert max(errors.values()) <= bench_target.COST_TOLERANCE
    reference = pmp.cost(problem, controls)
    loss, total = training.parts(*training.tensors(controls))
    assert loss.item() == pytest.approx(reference["loss"], rel=1e-12)
    assert total.item() == pytest.approx(reference["total"], rel=1e-12)


def test_torch_cost_check_fails_loudly():
    problem = small_problems()["rings"]
    training = bench_target.TorchTraining(problem, threads=1)
    training.peer.P = 2.0 * training.peer.P  # another readout than pmp's
    with pytest.raises(AssertionError, match="differs from pmp's"):
        training.check(pmp.init_controls(problem, seed=0))


def test_measure_problem_runs_and_reports():
    problem = small_problems()["rings"]
    spec = dict(name="small", problem=problem, quantity="total", goal=None,
                description="small rings")
    options = bench_target.TargetOptions(quick=True, threads=1, time_limit=2.0, seeds=(0, 1),
                                         lr_grid=(3e-2, 1e-1), rings_iterations=5,
                                         pause=0.0)
    settings = bench_target.settings_of(options)
    result = bench_target.measure_problem(spec, settings)
    assert result["goal"] == result["goal_run"]["goal"]
    keys = [row["key"] for row in result["rows"]]
    assert keys[0] == "emsa" and {"lbfgs", "adam", "torch_adam"} <= set(keys)
    emsa = result["rows"][0]
    assert emsa["summary"]["reached"] == 2  # its own J after 5 iterations, from seed 0 too
    assert emsa["runs"][0]["iterations"] <= 5
    for row in result["rows"]:
        assert [run["seed"] for run in row["runs"]] == [0, 1]
    assert set(result["chosen_lr"]) == {"adam", "torch_adam"}
    assert result["cost_errors"]["checks"] >= 4
    assert result["cost_errors"]["total"] <= bench_target.COST_TOLERANCE
    assert len(result["targets"]) == 2
    section = dict(settings=settings, torch=torch.__version__, problems=[result],
                   targets=result["targets"])
    json.dumps(section, allow_nan=False)
    text = "\n".join(bench_target.markdown(section))
    assert "PyTorch Adam" in text and "E-MSA" in text


def test_loss_target_reports_the_minimiser_of_J():
    problem = small_problems()["digits"]
    start = pmp.cost(problem, bench_target.initial_controls(problem, 0))
    spec = dict(name="small", problem=problem, quantity="loss", goal=0.5 * start["loss"],
                description="small digits")
    options = bench_target.TargetOptions(quick=True, threads=1, time_limit=2.0, seeds=(0,),
                                         lr_grid=(1e-1,), pause=0.0)
    result = bench_target.measure_problem(spec, bench_target.settings_of(options))
    minimum = result["minimum"]
    assert minimum["total"] < start["total"] and minimum["iterations"] > 0
    for row in result["rows"]:
        for run in row["runs"]:  # J where each run stopped: at least the minimiser's, roughly
            assert run["total"] >= minimum["total"] * (1.0 - 1e-6)
        if row["summary"]["reached"]:
            low, high = row["summary"]["total_at_target"][1:]
            assert low <= high and low == min(r["total"] for r in row["runs"] if r["reached"])
    lines = bench_target.problem_markdown(result, bench_target.settings_of(options))
    assert any(line.startswith("The minimiser of J") for line in lines)
    near = bench_target.minimum_sentence(dict(minimum, loss=0.95 * spec["goal"]), spec["goal"])
    assert "0.95x the target" in near and "J at the target" in near
    far = bench_target.minimum_sentence(dict(minimum, loss=0.1 * spec["goal"]), spec["goal"])
    assert far.endswith("0.1x the target.")


def test_ratio_target_bounds():
    ratio = bench_target.ratio_target
    exact = ratio("r", 1.0, 4.0, 0.5, 60.0, ("a", "b"))
    assert exact["value"] == 0.25 and exact["status"] == "PASS" and exact["bound"] is None
    slow = ratio("r", None, 1.0, 1.5, 60.0, ("a", "b"))  # a misses: ratio >= 60
    assert slow["bound"] == "lower" and slow["status"] == "MISS"
    open_ = ratio("r", None, 50.0, 1.5, 60.0, ("a", "b"))  # >= 1.2 decides nothing
    assert open_["status"] == "n/a"
    fast = ratio("r", 1.0, None, 0.5, 60.0, ("a", "b"))  # b misses: ratio <= 1/60
    assert fast["bound"] == "upper" and fast["status"] == "PASS"
    assert ratio("r", None, None, 0.5, 60.0, ("a", "b"))["status"] == "n/a"


def test_emsa_explanation_splits_the_ratio():
    def row(key, family, median, iterations, per_iteration):
        return dict(key=key, label=key, family=family, summary=dict(
            median_s=median, per_iteration_s=per_iteration,
            iterations=None if iterations is None else [iterations, iterations, iterations]))

    reached = dict(rows=[row("emsa", "emsa", 3.0, 300, 0.01), row("adam", "gradient", 0.5, 100,
                                                                 0.005)])
    text = bench_target.emsa_explanation(reached, 60.0)
    assert "300 iterations" in text and "3x as many" in text and "2x the time per" in text
    missed = dict(rows=[row("emsa", "emsa", None, None, 0.4), row("adam", "gradient", 1.0, 20,
                                                                  0.05)])
    text = bench_target.emsa_explanation(missed, 60.0)
    assert "about 150 iterations" in text and "8x the time" in text and "20 iterations" in text
    assert bench_target.emsa_explanation(dict(rows=[row("adam", "gradient", 1.0, 20, 0.05)]),
                                         60.0) == ""


def test_msa_report_shows_where_the_emsa_iteration_goes():
    from benchmarks import bench_msa

    rows = [dict(workload="W1", gd_s=0.002, emsa_s=0.003, ratio=1.5, accepted=0.66,
                 final_rho=16.0),
            dict(workload="W2", gd_s=0.05, emsa_s=0.25, ratio=5.0, accepted=0.67,
                 final_rho=0.5, maximize_s=0.2)]
    text = "\n".join(bench_msa.markdown(dict(rows=rows)))
    assert "| W2 | 200.00 ms | 4.00 | 80% |" in text
    assert "| W1 | " in text and text.count("| W1 |") == 1  # no maximisation row for W1
    assert "maximisation alone" not in "\n".join(bench_msa.markdown(dict(rows=rows[:1])))


def test_thread_report_gives_the_machines_own_speedup():
    # a missed thread speed-up is read against a GEMM's on the same threads (older records
    # without it still render)
    from benchmarks import bench_scaling

    fit = dict(intercept_s=0.0, slope_s=1e-3, r2=1.0)
    threads = [dict(workload="W2", one_thread_s=0.08, threads=2, many_threads_s=0.05,
                    speedup=1.6, gemm_speedup=1.62),
               dict(workload="W3", one_thread_s=0.8, threads=2, many_threads_s=0.5,
                    speedup=1.6)]
    text = "\n".join(bench_scaling.markdown(dict(rows=[], fits={"n_steps": fit},
                                                 threads=threads)))
    assert "| W2 | 80.00 ms | 2: 50.00 ms | 1.60x | 1.62x |" in text
    assert "| W3 | 800.00 ms | 2: 500.00 ms | 1.60x | - |" in text


def test_segment_report_gives_one_more_forward_sweep():
    from benchmarks import bench_memory

    common = dict(case="W2", n_samples=10, dim=2, n_steps=4, model_bytes=1e6,
                  baseline_bytes=1e8, peak_bytes=1.5e8, peak_reset=True, ratio=0.5)
    rows = [dict(common, segment=None, median_s=0.1, time_ratio=1.0),
            dict(common, segment=2, median_s=0.14, time_ratio=1.4, forward_ratio=1.35)]
    text = "\n".join(bench_memory.markdown(dict(rows=rows)))
    assert "| 140.00 ms | 1.40x | 1.35x |" in text
    assert "| 100.00 ms | - | - |" in text
