"""The dated results of every machine (benchmarks/history.py): records, loading and the
tables of the documentation's benchmarks page."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import history, run as run_module  # noqa: E402
from benchmarks.common import machine_key, target  # noqa: E402


def results(started, quick, value, key="amd-epyc-zen3"):
    """A run's results as benchmarks/run.py writes them, with one target."""
    return dict(settings=dict(started=started, quick=quick),
                machine=dict(key=key, cpu="AMD EPYC (LLVM target znver3; avx2, fma)",
                             cores_available=2, blas=[dict(internal_api="openblas",
                                                           version="0.3.30",
                                                           architecture="Haswell")]),
                targets=[target("iteration", "W2 float64: pmp / best peer", value, 0.5)])


def test_machine_key_is_a_folder_name():
    key = machine_key()
    assert key and all(c.isalnum() or c == "-" for c in key)


def test_runs_are_recorded_and_tabulated_oldest_first(tmp_path):
    root = str(tmp_path)
    first = history.record(results("2026-11-30 10:00:00 UTC", False, 0.68), "# one\n", root)
    history.record(results("2026-12-02 09:30:00 UTC", True, 0.45), "# two\n", root)
    history.record(results("2026-12-01 08:00:00 UTC", True, 0.7, key="intel-xeon"), "#\n",
                   root)
    assert first[0].endswith(os.path.join("amd-epyc-zen3", "2026-11-30_1000-full.json"))
    machines = history.load(root)
    assert list(machines) == ["amd-epyc-zen3", "intel-xeon"]
    assert [r["settings"]["started"][:10] for _, r in machines["amd-epyc-zen3"]] == \
        ["2026-11-30", "2026-12-02"]
    table = history.machine_markdown(machines["amd-epyc-zen3"])
    assert table[0] == ("| section | target | limit | 2026-11-30 10:00 (full) "
                        "| 2026-12-02 09:30 (quick) |")
    assert table[2] == "| iteration | W2 float64: pmp / best peer | <= 0.5 | 0.68 MISS | 0.45 PASS |"
    page = "\n".join(history.markdown(root, include_from=os.path.join(root, "docs")))
    assert "### amd-epyc-zen3" in page and "### intel-xeon" in page
    assert "```{include} ../amd-epyc-zen3/2026-12-02_0930-quick.md" in page


def test_a_rewritten_record_replaces_the_run_and_a_new_target_gets_a_row(tmp_path):
    root = str(tmp_path)
    run = results("2026-12-02 09:30:00 UTC", True, 0.45)
    history.record(run, "# first section\n", root)
    run["targets"].append(target("startup", "cold start", 21.0, 15.0))
    history.record(run, "# two sections\n", root)
    (runs,) = history.load(root).values()
    assert len(runs) == 1
    table = history.machine_markdown(runs)
    assert table[-1] == "| startup | cold start | <= 15 | 21 MISS |"


def test_a_bound_is_shown_as_one(tmp_path):
    # a method beyond the time limit bounds the ratio from below: the tables say ">= 66"
    root = str(tmp_path)
    run = results("2026-12-02 09:30:00 UTC", True, 0.45)
    bounded = dict(target("target", "digits: E-MSA / fastest", 66.0, 1.5), bound="lower")
    run["targets"] += [bounded, target("target", "not measured", None, 1.5)]
    history.record(run, "# report\n", root)
    (runs,) = history.load(root).values()
    table = history.machine_markdown(runs)
    assert table[-2] == "| target | digits: E-MSA / fastest | <= 1.5 | >= 66 MISS |"
    assert table[-1] == "| target | not measured | <= 1.5 | - n/a |"
    lines = run_module.targets_markdown(run["targets"])
    assert "| target | digits: E-MSA / fastest | >= 66 | <= 1.5 | **MISS** |  |" in lines


def test_no_history_says_how_to_make_one(tmp_path):
    assert "benchmarks/run.py" in history.markdown(str(tmp_path / "none"))[0]
