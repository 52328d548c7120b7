"""The teaching notebooks: lint (stripped outputs, a title, valid Python) and execution with
PMP_QUICK=1 (small sizes; each notebook should run in about a minute)."""
import ast
import glob
import os
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_nine_notebooks():
    assert len(NOTEBOOKS) == 9, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                "outputs must be stripped (diff-friendly notebooks)"
            ast.parse(cell.source)
            assert "plt.show()" not in cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PMP_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()
    assert time.perf_counter() - start < 240, "PMP_QUICK=1 should keep a notebook short"


def test_executed_notebooks_keep_their_figures(tmp_path):
    """notebooks/run.py writes executed copies that hold the figures (image/png outputs)."""
    import subprocess
    import sys

    env = dict(os.environ, MPLBACKEND="Agg")  # run.py must not pass this on to the kernel
    out = subprocess.run([sys.executable, os.path.join(ROOT, "notebooks", "run.py"), "01",
                          "--quick", "--out", str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    nb = nbformat.read(tmp_path / "01_pmp_step_by_step.ipynb", as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3


def test_saving_figures_rewrites_only_the_figures_whose_pixels_changed(tmp_path):
    """notebooks/run.py --save-figures: a figure drawn again with the same pixels leaves the
    tracked file as it is (whatever its metadata), a changed or new one is written."""
    import importlib.util

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = importlib.util.spec_from_file_location("notebooks_run",
                                                  os.path.join(ROOT, "notebooks", "run.py"))
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)

    def draw(path, slope, software):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, slope])
        fig.savefig(path, dpi=50, metadata={"Software": software})
        plt.close(fig)

    scratch, tracked = tmp_path / "scratch", tmp_path / "tracked"
    scratch.mkdir()
    tracked.mkdir()
    draw(tracked / "same.png", 1, "an older matplotlib")
    draw(tracked / "changed.png", 1, "an older matplotlib")
    before = (tracked / "same.png").read_bytes()
    draw(scratch / "same.png", 1, "a newer matplotlib")
    draw(scratch / "changed.png", 2, "a newer matplotlib")
    draw(scratch / "new.png", 1, "a newer matplotlib")
    assert (scratch / "same.png").read_bytes() != before   # the bytes differ, not the pixels
    written, unchanged = run.update_figures(scratch, tracked)
    assert unchanged == ["same.png"] and written == ["changed.png", "new.png"]
    assert (tracked / "same.png").read_bytes() == before
    assert (tracked / "changed.png").read_bytes() == (scratch / "changed.png").read_bytes()
    assert (tracked / "new.png").exists()
