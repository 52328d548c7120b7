"""Figures and animations (pmp.plots, `pmp plot`): the inputs a user has at hand, what a
teacher needs on a figure (axis labels, legends off the data and without duplicates, class
colours, exact zeros and checkpoint bands in the heat map, fits shaded only where something
decays, the read-out coordinate), animations as GIFs of a reasonable size. The figures are
checked through the returned axes (lines' data, collections, colour limits), not pixels."""
import io
import gc
import os
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402

import pmp  # noqa: E402
from pmp import analysis, plots  # noqa: E402
from pmp.batch.runner import train_run  # noqa: E402
from pmp_cases import ROOT, pmp_cli  # noqa: E402

PILLOW = pytest.importorskip("PIL.Image")
# an animation made to be inspected, not shown, warns when it is garbage-collected: here
pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


@pytest.fixture(autouse=True)
def _collect_animations():
    yield
    gc.collect()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo at its own sizes (256 samples, 100 steps), briefly trained, with unevenly
    spaced checkpoints (0, 10, 20, ..., 25)."""
    directory = tmp_path_factory.mktemp("plots") / "demo"
    config = pmp.parse_config(open(os.path.join(ROOT, "runs", "demo.toml")).read())
    config = config.with_overrides(["train.max_iter=25", "train.checkpoint_every=10"])
    train_run(config, directory, stream=io.StringIO())
    return directory


@pytest.fixture(scope="module")
def three_classes():
    """Three blobs in the plane lifted to R^4, cross-entropy on the last three coordinates,
    trained in memory: a TrainResult and its problem."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0], [-0.5, 0.9], [-0.5, -0.9]])
    y = np.arange(60) % 3
    x = centres[y] + 0.25 * rng.standard_normal((60, 2))
    problem = pmp.Problem(x, y, loss="cross_entropy", lift=4, T=2.0, n_steps=10, lam=1e-3)
    return pmp.train(problem, "lbfgs", max_iter=15), problem


@pytest.fixture(scope="module")
def demo_figures(demo_run):
    figs = plots.figures(demo_run)
    yield figs
    for fig in figs.values():
        plt.close(fig)


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _legend_labels(ax):
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _points_under_legend(ax):
    """Data points (of every line) that the legend's box covers, in display coordinates."""
    ax.figure.canvas.draw()
    box = ax.get_legend().get_window_extent()
    covered = 0
    for line in ax.get_lines():
        xy = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if len(xy):
            px = ax.transData.transform(xy)
            covered += int(np.sum((px[:, 0] > box.x0) & (px[:, 0] < box.x1) &
                                  (px[:, 1] > box.y0) & (px[:, 1] < box.y1)))
    return covered


# --------------------------------------------------------------- inputs at hand
def test_training_curves_take_a_history_a_result_a_run_or_its_directory(demo_run,
                                                                         three_classes):
    result, _ = three_classes
    with pmp.load_run(demo_run) as run:
        sources = [result.history, result, str(demo_run), demo_run, run,
                   {"lbfgs": result, "emsa": run.history}, [result, run]]
        for source in sources:
            ax = plots.training_curves(source)
            assert ax.get_ylabel() and ax.get_xlabel() == "iteration"
            assert all(len(line.get_xdata()) > 1 for line in ax.get_lines())
            plt.close(ax.figure)
    ax = plots.training_curves(result, x="elapsed", y=("cost", "loss"))
    assert len(ax.get_lines()) == 2 and "s)" in ax.get_xlabel()
    assert len(set(_legend_labels(ax))) == 2
    plt.close("all")


def test_plot_run_and_figures_take_a_directory_a_run_or_a_result(demo_run, three_classes,
                                                                 tmp_path):
    result, problem = three_classes
    written = plots.plot_run(str(demo_run), tmp_path / "a", formats=("png",)) \
        if os.makedirs(tmp_path / "a") is None else None
    assert {os.path.basename(p) for p in written} >= {
        "decay.png", "states_costates.png", "trajectories.png", "control_heatmap.png",
        "training.png"}
    os.makedirs(tmp_path / "b")
    written = plots.plot_run(result, tmp_path / "b", formats="png", problem=problem)
    assert all(os.path.getsize(p) > 1000 for p in written)
    with pmp.load_run(demo_run) as run:
        figs = plots.figures(run, iteration=10)
    assert set(figs) >= {"decay", "states_costates", "trajectories", "training"}
    assert "iteration 10" in figs["decay"].axes[0].get_title()
    plt.close("all")


@pytest.mark.parametrize("call,argument", [
    (lambda: plots.training_curves(42), "histories"),
    (lambda: plots.plot_run(42), "source"),
    (lambda: plots.figures([1, 2]), "source"),
    (lambda: plots.animate(3.0), "source"),
    (lambda: plots.trajectories(object()), "states"),
    (lambda: plots.states_and_costates(object(), None, None), "t"),
    (lambda: plots.decay(object(), [1.0]), "t"),
    (lambda: plots.control_heatmap([0, 1], [0], object()), "norms"),
    (lambda: plots.decision_regions(object()), "problem"),
])
def test_other_inputs_are_a_type_error_that_names_the_argument(call, argument):
    with pytest.raises(TypeError, match=rf"^{argument} must be"):
        call()
    plt.close("all")


def test_a_result_without_its_problem_or_a_history_says_what_is_missing(three_classes):
    result, _ = three_classes
    with pytest.raises(TypeError, match="problem="):
        plots.figures(result)
    with pytest.raises(TypeError, match="training_curves"):
        plots.plot_run(result.history)
    with pytest.raises(ValueError, match="no column 'nope'"):
        plots.training_curves(result, y="nope")


def test_show_displays_each_figure_once_in_a_notebook(demo_run, monkeypatch):
    IPython = pytest.importorskip("IPython")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": 1})())
    monkeypatch.setattr(IPython.display, "display", shown.append)
    figs = plots.show(demo_run)
    assert shown == list(figs.values()) and "decay" in repr(figs)
    assert not any(plt.fignum_exists(f.number) for f in figs.values())  # closed after
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    figs = plots.show(demo_run)  # a script: returned open
    assert all(plt.fignum_exists(f.number) for f in figs.values())
    plt.close("all")


# --------------------------------------------------------------- what a teacher shows
def test_every_axes_of_a_run_has_labels_and_legends_without_duplicates(demo_figures):
    for name, fig in demo_figures.items():
        for ax in _data_axes(fig):
            assert ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())
            # blank entries fill the grid of a grouped legend (a curve without a fit)
            labels = [label for label in _legend_labels(ax) if label.strip()]
            assert len(labels) == len(set(labels)), (name, labels)


def test_decay_labels_its_y_axis_and_keeps_its_legend_off_the_data(demo_run):
    with pmp.load_run(demo_run) as run:
        c = analysis.curves(run.problem(), run.controls())
    ax = plots.decay(c["t"], c["error"])
    assert ax.get_ylabel()  # one curve without a label (04_plateau.png)
    plt.close(ax.figure)
    _, ax = plt.subplots()
    for key, t in (("error", c["t"]), ("control_norm", c["t"][:-1]),
                   ("costate_norm", c["t"])):
        plots.decay(t, c[key], analysis.fit_rate(t, c[key]), label=key, ax=ax)
    assert ax.get_ylabel()
    labels = _legend_labels(ax)
    assert len(labels) == len(set(labels)) >= 3
    assert _points_under_legend(ax) == 0
    plt.close("all")


def test_the_run_decay_figure_keeps_its_legend_outside_the_axes(demo_figures):
    ax = demo_figures["decay"].axes[0]
    legend = ax.get_legend()
    ax.figure.canvas.draw()
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    assert _points_under_legend(ax) == 0


def test_a_fit_is_shaded_on_its_window_only_and_only_where_it_decays():
    t = np.linspace(0.0, 10.0, 101)
    decaying = np.exp(-0.8 * t) * (1.0 + 0.01 * np.sin(7 * t))
    fit = analysis.fit_rate(t, decaying, window=(2.0, 6.0))
    ax = plots.decay(t, decaying, fit, label="decays")
    assert not ax.patches  # no full-height span
    (band,) = [c for c in ax.collections if c.get_paths()]
    x, y = np.concatenate([p.vertices for p in band.get_paths()]).T
    assert x.min() >= 2.0 - 1e-9 and x.max() <= 6.0 + 1e-9
    assert y.max() < 2.0 * fit.predict(2.0) and y.min() > 0.4 * fit.predict(6.0)
    plt.close(ax.figure)
    flat = 1.0 + 0.3 * np.random.default_rng(0).standard_normal(len(t)) ** 2
    fit = analysis.fit_rate(t, flat)
    assert not plots.fit_decays(fit, len(t))
    ax = plots.decay(t, flat, fit, label="flat")
    assert not ax.patches and not [c for c in ax.collections if c.get_paths()]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-"]  # no fitted line
    plt.close("all")


def test_scaling_has_one_entry_per_reference_slope_and_readable_ticks():
    _, ax = plt.subplots()
    T = np.array([1.0, 2.0, 4.0, 8.0])
    plots.scaling(T, 0.1 / T, slopes=(-1.0, -2.0), label="lam = 0.01", ax=ax)
    plots.scaling(T, 0.03 / T, slopes=(-1.0, -2.0), label="lam = 0.001", ax=ax)
    labels = _legend_labels(ax)
    assert sorted(labels) == sorted(set(labels)) and len(labels) == 4
    assert ax.get_ylabel()
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    for axis in (ax.xaxis, ax.yaxis):
        assert isinstance(axis.get_minor_formatter(), ticker.NullFormatter)
    plt.close("all")


def test_heat_map_draws_exact_zeros_and_aligns_uneven_checkpoints():
    t = np.linspace(0.0, 2.0, 11)
    iterations = [0, 500, 1000, 1200]
    norms = np.full((4, 10), 0.5)
    norms[2:, 7:] = 0.0  # l1 controls switched off after t = 1.4
    ax = plots.control_heatmap(t, iterations, norms)
    (mesh,) = [c for c in ax.collections if hasattr(c, "get_coordinates")]
    bad = to_rgba(mesh.get_cmap().get_bad())
    assert bad[3] == 1.0 and to_hex(bad) != "#ffffff"  # zeros are drawn, not holes
    np.testing.assert_array_equal(np.ma.getmaskarray(mesh.get_array()).reshape(4, 10),
                                  norms == 0.0)
    edges = mesh.get_coordinates()[:, 0, 1]
    for k, it in enumerate(iterations):
        assert edges[k] <= it <= edges[k + 1]
    assert ax.get_ylim() == (0.0, 1200.0)
    assert list(ax.get_yticks()) == iterations
    assert "u = 0" in _legend_labels(ax)[0]
    plt.close("all")


def test_more_than_two_classes_get_a_categorical_palette_and_a_legend(three_classes):
    result, problem = three_classes
    ax = plots.trajectories(result, problem=problem)
    colours = {to_hex(c) for coll in ax.collections if hasattr(coll, "get_offsets")
               and len(coll.get_offsets()) == problem.n_samples
               for c in coll.get_facecolors()}
    assert colours == {to_hex(c) for c in plots.class_colours(3)}
    assert {"class 0", "class 1", "class 2"} <= set(_legend_labels(ax))
    plt.close(ax.figure)
    y10 = np.arange(50) % 10
    ax = plots.trajectories(np.random.default_rng(0).standard_normal((3, 50, 2)), y10)
    assert len(set(_legend_labels(ax)) & {f"class {k}" for k in range(10)}) == 10
    assert len(set(plots.class_colours(10))) == 10
    ax = plots.decision_regions(problem, result, resolution=20)
    assert len(_legend_labels(ax)) == 3
    plt.close("all")


def test_the_coordinates_drawn_include_the_read_out(demo_figures, three_classes):
    ax = demo_figures["trajectories"].axes[0]
    assert ax.get_ylabel() == "x[2] (read-out)" and ax.get_xlabel() in ("x[0]", "x[1]")
    left, right = _data_axes(demo_figures["states_costates"])
    assert "x[2]" in left.get_ylabel() and "p[2]" in right.get_ylabel()
    states = np.random.default_rng(1).standard_normal((5, 30, 64))
    P = np.eye(64)[:10]  # digits: the first ten coordinates are read out
    assert all(d < 10 for d in plots.choose_dims(states, P))
    P = np.eye(3)[2:]
    states[..., 0] *= 10
    assert plots.choose_dims(states[..., :3], P) == (0, 2)
    result, problem = three_classes
    ax = plots.trajectories(result, problem=problem, dims=(0, 3))
    assert ax.get_xlabel() == "x[0]" and ax.get_ylabel() == "x[3] (read-out)"
    with pytest.raises(ValueError, match="dims"):
        plots.trajectories(result, problem=problem, dims=(0, 9))
    plt.close("all")


# --------------------------------------------------------------- animations
def test_flow_animation_default_frames_fit_in_a_small_gif(demo_run, tmp_path):
    anim = plots.animate(demo_run)
    assert anim.n_frames == plots.FRAMES == 40
    path = plots.save_gif(anim, tmp_path / "flow.gif")
    assert os.path.getsize(path) < 5e6
    with PILLOW.open(path) as gif:
        assert gif.n_frames == 40
    anim = plots.animate(demo_run, frames=3)
    assert anim.n_frames == 3 and "<script" in anim.to_jshtml()
    with pytest.raises(ValueError, match="frames"):
        plots.animate(demo_run, frames=1)


def test_training_animation_steps_through_the_checkpoints(demo_run, three_classes):
    with pmp.load_run(demo_run) as run:
        n = len(run.checkpoints)  # 0, 10, 20, ..., 25
    anim = plots.animate(demo_run, "training")
    assert anim.n_frames == n >= 4
    assert plots.animate(demo_run, "training", frames=2).n_frames == 2
    result, problem = three_classes
    assert plots.animate(result, problem=problem, frames=4).n_frames == 4
    with pytest.raises(ValueError, match="two or more checkpoints"):
        plots.animate(result, "training", problem=problem)
    with pytest.raises(ValueError, match="kind"):
        plots.animate(demo_run, "spin")


# --------------------------------------------------------------- pmp plot
def test_pmp_plot_dims_format_iteration(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    for f in run.glob("*.p*"):
        f.unlink()
    out = pmp_cli("plot", str(run), "--dims", "1,2", "--format", "png", "--iteration", "10",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (run / "trajectories.png").stat().st_size > 1000
    assert not list(run.glob("*.pdf"))
    for args, message in ((["--dims", "0,7"], "dims"), (["--format", "gif"], "formats"),
                          (["--iteration", "7"], "7")):
        out = pmp_cli("plot", str(run), *args, cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_pmp_plot_animate_writes_gifs(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    out = pmp_cli("plot", str(run), "--animate", "--frames", "6", "--format", "svg",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "flow.gif" in out.stdout and (run / "decay.svg").exists()
    with PILLOW.open(run / "flow.gif") as gif:
        assert gif.n_frames == 6
    with PILLOW.open(run / "training_progress.gif") as gif, pmp.load_run(run) as r:
        assert gif.n_frames == min(6, len(r.checkpoints))
    assert (run / "flow.gif").stat().st_size < 5e6
