"""Figures and animations of trajectories, costates, decay and training (matplotlib).

Inputs: every function that draws a run takes a run directory (str or Path), a
:class:`~pmp.batch.store.Run`, or a :class:`~pmp.TrainResult` with ``problem=`` (a result
holds the controls, not the problem); :func:`training_curves` also takes a history dict, and
several runs as a dict label -> any of these. The array functions (:func:`trajectories`,
:func:`states_and_costates`, :func:`decay`, :func:`control_heatmap`) take arrays or one of
those. Anything else is a ``TypeError`` that names the argument.

Every function takes ``ax=None`` (or ``axes=None``), draws on it (or on a new figure) and
returns the axes; none calls ``plt.show()``. :func:`figures` draws the standard figures of a
run, :func:`show` displays them in a notebook, :func:`plot_run` writes them to files, and
:func:`animate` returns a matplotlib animation (``HTML(anim.to_jshtml())`` in a notebook,
:func:`save_gif` for a file).

House style: the constants below (sizes, fonts, colour maps, colour-blind-safe palettes) are
the one place of the figure defaults; :func:`house_style` applies them (every function here
draws inside it).
"""
import contextlib
import functools
import os
from collections.abc import Mapping

import numpy as np

# ------------------------------------------------------------------ house style
SIZES = {  # inches
    "single": (6.4, 4.0), "decay": (8.0, 5.2), "pair": (11.5, 4.2), "square": (7.4, 5.4),
    "heatmap": (8.0, 4.2), "flow": (11.0, 4.6), "training_progress": (14.0, 4.2),
}
DPI = 150                 # PNG figures
ANIMATION_DPI = 72        # GIF and notebook animations
FRAMES = 40               # default frames of the flow animation
FPS = {"flow": 10, "training": 2}
MAX_ANIMATED = 300        # samples in an animation (the first ones stored)
# Okabe & Ito (2008), ordered for lines on white (yellow last)
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
             "#F0E442")
# Paul Tol's "muted" scheme (nine colour-blind-safe classes) and black
TOL_MUTED = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677",
             "#882255", "#AA4499", "#000000")
BINARY = ("#0072B2", "#D55E00")   # two classes: blue and vermillion
SEQUENTIAL = "viridis"            # heat maps and continuous targets
ZERO_COLOUR = "#C0C0C0"           # exact zeros on a log colour scale (masked cells)
REFERENCE_COLOUR = "0.35"         # reference slopes and guide lines
MAX_CLASSES = 12                  # more distinct target values: a continuous colour scale
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 8.5, "legend.title_fontsize": 9,
    "legend.framealpha": 0.92, "axes.spines.top": False, "axes.spines.right": False,
    "lines.linewidth": 1.6, "image.cmap": SEQUENTIAL, "savefig.dpi": DPI,
    "figure.dpi": 100, "axes.formatter.limits": (-3, 4),
}
COLUMN_LABELS = {
    "cost": "cost J", "loss": r"training error $\Phi(x(T))$", "terminal": "terminal cost",
    "running": "running cost", "regularization": "regularisation",
    "grad_norm": r"Riesz gradient norm $\max_k |g_k|$", "step_size": "step size",
    "rho": r"E-MSA penalty $\rho$", "elapsed": "wall-clock time (s)",
    "iteration": "iteration", "gain": "Hamiltonian gain",
}


@contextlib.contextmanager
def house_style():
    """Apply the house style (``STYLE`` and the Okabe-Ito line colours) inside a block."""
    import matplotlib
    from cycler import cycler

    with matplotlib.rc_context({**STYLE, "axes.prop_cycle": cycler(color=OKABE_ITO)}):
        yield


def _styled(func):
    @functools.wraps(func)
    def draw(*args, **kwargs):
        with house_style():
            return func(*args, **kwargs)
    return draw


def class_colours(n):
    """``n`` categorical colours: blue/vermillion for two classes, Okabe-Ito up to eight,
    Tol's muted scheme up to ten, matplotlib's tab20 beyond."""
    if n <= 2:
        return list(BINARY[:n])
    if n <= len(OKABE_ITO) - 1:  # without yellow
        return list(OKABE_ITO[:n])
    if n <= len(TOL_MUTED):
        return list(TOL_MUTED[:n])
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return [matplotlib.colors.to_hex(cmap(i % 20)) for i in range(n)]


def _colour(n):
    """The n-th line colour (a hex string: "C<n>" would be looked up when drawn, outside the
    house style)."""
    return OKABE_ITO[n % len(OKABE_ITO)]


def _axes(ax, n=1, size="single"):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    width, height = SIZES[size]
    _, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False, layout="constrained")
    return axes[0, 0] if n == 1 else axes[0]


def _legend(ax, outside=None, handles=None, title=None, **kwargs):
    """A legend without duplicate entries: inside at ``loc="best"`` (matplotlib places it
    where it covers the fewest data) when short, else outside, to the right of the axes
    (``outside="below"``: under them, in two columns)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    else:
        labels = [h.get_label() for h in handles]
    seen = {}
    for h, label in zip(handles, labels):
        seen.setdefault(label, h)
    if not seen:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        return None
    if outside is None:  # short: inside, unless even the best place covers data
        outside = len(seen) > 3 or _covers_data(ax, ax.legend(list(seen.values()), list(seen),
                                                              title=title, **kwargs))
    where = {False: dict(loc="best"),
             True: dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0),
             "below": dict(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2,
                           borderaxespad=0.0)}[outside]
    return ax.legend(list(seen.values()), list(seen), title=title, **where, **kwargs)


def _covers_data(ax, legend):
    """Whether ``legend`` (placed) hides a data point of a line or a scatter of ``ax``."""
    try:
        renderer = ax.figure.canvas.get_renderer()
    except AttributeError:  # a canvas that cannot render: keep matplotlib's choice
        return False
    box = legend.get_window_extent(renderer)
    points = [np.column_stack([np.asarray(line.get_xdata(), float),
                               np.asarray(line.get_ydata(), float)]) for line in ax.get_lines()]
    points += [np.asarray(c.get_offsets(), float) for c in ax.collections
               if hasattr(c, "get_offsets") and c.get_offsets() is not None]
    points = [p for p in points if p.ndim == 2 and p.shape[1] == 2 and len(p)]
    if not points:
        return False
    xy = np.concatenate(points)
    xy = ax.transData.transform(xy[np.all(np.isfinite(xy), axis=1)])
    return bool(np.any((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) &
                       (xy[:, 1] < box.y1)))


def _plain(v, _=None):
    return f"{v:g}"


def _log_ticks(axis, values=None):
    """Readable log-axis ticks: the data values themselves when there are few (a sweep's T),
    else 1, 2, 5 per decade on ranges under two decades (plain numbers between 1e-4 and
    1e5); minor ticks are never labelled (no crowded "3x10^0 4x10^0")."""
    from matplotlib import ticker

    axis.set_minor_formatter(ticker.NullFormatter())
    if values is not None and 1 < len(np.unique(values)) <= 8:
        axis.set_major_locator(ticker.FixedLocator(np.unique(values)))
        axis.set_major_formatter(ticker.FuncFormatter(_plain))
        return
    lo, hi = sorted(axis.get_view_interval())
    if not lo > 0:
        return
    plain = 1e-4 <= lo and hi <= 1e5
    if hi / lo < 100:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(_plain) if plain else
                             ticker.LogFormatterSciNotation(labelOnlyBase=hi / lo >= 100))


# ------------------------------------------------------------------ inputs
class Figures(dict):
    """name -> Figure (what :func:`figures` and :func:`show` return), with a short repr."""

    def __repr__(self):
        return f"Figures({', '.join(self)})"


class _RunData:
    """What the figures of one run need, from a Run or a TrainResult, read once."""

    def __init__(self, problem, t, history, label, checkpoints, read, directory=None):
        self.problem, self.t, self.history, self.label = problem, np.asarray(t), history, label
        self.checkpoints, self._read, self.directory = list(checkpoints), read, directory
        self._cache = {}

    def iteration(self, iteration=None):
        """The checkpoint to draw (default: the last one)."""
        if not self.checkpoints:
            raise ValueError("the run has no checkpoint yet: nothing to draw")
        if iteration is None:
            return self.checkpoints[-1]
        if int(iteration) not in self.checkpoints:
            raise ValueError(f"iteration must be a stored checkpoint, got {iteration}; "
                             f"stored: {self.checkpoints}")
        return int(iteration)

    def _get(self, what, iteration):
        key = (what, self.iteration(iteration))
        if key not in self._cache:
            self._cache[key] = self._read(what, key[1])
        return self._cache[key]

    def controls(self, iteration=None):
        return self._get("controls", iteration)

    def states(self, iteration=None):
        return self._get("states", iteration)

    def costates(self, iteration=None):
        """Per-sample costates ``N p`` (the batch costate carries the 1/N of Phi); a list
        per stage for a staged run."""
        ps = self._get("costates", iteration)
        if isinstance(ps, list):
            return [self.problem.n_samples * p for p in ps]
        return self.problem.n_samples * ps

    @property
    def staged(self):
        return _is_staged(self.problem)

    def problem_at(self, iteration=None):
        """The problem of a checkpoint: a staged run's with the durations of that checkpoint
        (they change when they are trained)."""
        if not self.staged:
            return self.problem
        durations = self._get("durations", iteration)
        if durations is None or np.array_equal(durations, self.problem.durations):
            return self.problem
        return self.problem.with_durations([float(T) for T in durations])

    def y(self, n=None):
        """Targets of the first ``n`` samples (the stored trajectories)."""
        return self.problem.y[:n]


_ACCEPTED = ("a run directory (str or Path), a pmp Run, or a TrainResult with problem= "
             "(a TrainResult holds the controls, not the problem)")


def _is_history(obj):
    return isinstance(obj, Mapping) and "controls" not in obj and (
        "iteration" in obj or "cost" in obj) and not isinstance(obj, _RunData)


@contextlib.contextmanager
def _opened(source, name, problem=None):
    """A :class:`_RunData` of ``source`` (a path is opened and closed again)."""
    from .batch.store import Run, load_run
    from .trainer import TrainResult

    if isinstance(source, _RunData):
        yield source
    elif isinstance(source, (str, os.PathLike)):
        with load_run(source) as run:
            yield _from_run(run)
    elif isinstance(source, Run):
        yield _from_run(source)
    elif isinstance(source, TrainResult):
        if problem is None:
            raise TypeError(f"{name}: a TrainResult needs problem= (the Problem it was "
                            f"trained on); a result holds the controls, not the problem")
        yield _from_result(source, problem)
    elif _is_history(source):
        raise TypeError(f"{name} must be {_ACCEPTED}; a history holds only the training "
                        f"curves (draw it with pmp.plots.training_curves)")
    else:
        raise TypeError(f"{name} must be {_ACCEPTED}, got {type(source).__name__}")


def _from_run(run):
    problem = run.problem()

    def read(what, iteration):
        return getattr(run, what)(iteration)
    return _RunData(problem, run.t, run.history, str(run.attrs.get("method", "run")),
                    run.checkpoints, read, run.directory)


def _is_staged(problem):
    from .stages import is_staged

    return is_staged(problem)


def _from_result(result, problem):
    from .stages import backward, forward

    def read(what, iteration):
        if what == "controls":
            return result.controls
        if what == "durations":
            return getattr(result, "durations", None)
        xs = data._get("states", iteration) if what == "costates" else None
        return forward(problem, result.controls) if xs is None else \
            backward(problem, result.controls, xs)
    data = _RunData(problem, problem.t, result.history, str(result.get("method", "result")),
                    [int(result.n_iter)], read)
    return data


def _is_source(obj):
    from .batch.store import Run
    from .trainer import TrainResult

    return isinstance(obj, (str, os.PathLike, Run, TrainResult, _RunData)) or _is_history(obj)


def _array(value, name, ndim=None, sources=False):
    """``value`` as a float array of ``ndim`` dimensions (``sources``: the argument may also
    be a run, and the error says so)."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        also = f", or {_ACCEPTED}" if sources else ""
        raise TypeError(f"{name} must be an array of numbers{also}; got "
                        f"{type(value).__name__}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


# ------------------------------------------------------------------ classes, read-out
class _Classes:
    """Categorical targets: ``index`` (n,) into ``names`` and ``colours``."""

    def __init__(self, index, names):
        self.index, self.names = np.asarray(index, int), list(names)
        self.colours = class_colours(len(self.names))

    def colour_of(self, samples=None):
        index = self.index if samples is None else self.index[samples]
        return [self.colours[i] for i in index]

    def handles(self, marker="o"):
        from matplotlib.lines import Line2D

        return [Line2D([], [], ls="", marker=marker, color=c, markeredgecolor="k",
                       markeredgewidth=0.3, label=n) for c, n in zip(self.colours, self.names)]


def _value_name(v, binary_pm1):
    if binary_pm1:
        return f"y = {v:+g}"
    return f"class {int(v)}" if float(v).is_integer() and v >= 0 else f"y = {v:g}"


def _classes(y, n_classes=None):
    """The classes of targets ``y`` (labels, +-1, one-hot rows), or None for real-valued
    targets with more than ``MAX_CLASSES`` distinct values."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot rows are classes, real rows are not
        one_hot = np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)
        return _Classes(np.argmax(y, axis=1), [f"class {k}" for k in range(y.shape[1])]) \
            if one_hot else None
    y = y.reshape(len(y))
    values = np.arange(n_classes) if n_classes else np.unique(y)
    if len(values) > MAX_CLASSES:
        return None
    binary_pm1 = len(values) == 2 and set(values.tolist()) == {-1.0, 1.0}
    return _Classes(np.searchsorted(values, y), [_value_name(v, binary_pm1) for v in values])


def _problem_classes(problem, n=None):
    return _classes(problem.y[:n], getattr(problem, "n_classes", None))


def _readout(problem, controls=None):
    if controls is not None and "P" in controls:
        return np.asarray(controls["P"], float)
    return np.asarray(problem.P, float)


def readout_coordinates(P):
    """The coordinates a read-out matrix ``P`` (m, dim) uses."""
    weight = np.abs(np.asarray(P, float)).sum(axis=0)
    return np.flatnonzero(weight > 1e-9 * weight.max()) if weight.max() > 0 else \
        np.array([], int)


def choose_dims(states, P=None):
    """Two coordinates for a plane figure of ``states`` (n_steps + 1, n, dim): the read-out
    coordinate vertical and the other coordinate of largest variance horizontal (one
    output), or the two read-out coordinates of largest spread at ``t = T`` (several)."""
    states = np.asarray(states, float)
    d = states.shape[-1]
    if d == 1:
        return (0,)
    spread = states.reshape(-1, d).std(axis=0)
    spread_T = states[-1].std(axis=0)
    read = readout_coordinates(P) if P is not None else np.array([], int)
    if len(read) == 1:
        j = int(read[0])
        return (next(int(k) for k in np.argsort(-spread, kind="stable") if k != j), j)
    if len(read) >= 2:
        weight = np.abs(np.asarray(P, float)).sum(axis=0)
        ranked = read[np.argsort(-(weight[read] * spread_T[read]), kind="stable")]
        return (int(ranked[1]), int(ranked[0]))
    ranked = np.argsort(-spread, kind="stable")
    return (int(ranked[1]), int(ranked[0]))


def _check_dims(dims, states, P=None):
    """``dims`` as a pair of coordinates (one given: the other chosen by variance)."""
    d = np.shape(states)[-1]
    if dims is None:
        return choose_dims(states, P)
    try:
        dims = tuple(int(i) for i in (dims if np.ndim(dims) else [dims]))
    except (TypeError, ValueError):
        raise TypeError(f"dims must be one or two coordinates, got {dims!r}") from None
    if not 1 <= len(dims) <= 2 or len(set(dims)) != len(dims) or \
            any(not 0 <= i < d for i in dims):
        raise ValueError(f"dims must be one or two distinct coordinates in 0..{d - 1}, got "
                         f"{dims}")
    if len(dims) == 1 and d > 1:
        spread = np.asarray(states, float).reshape(-1, d).std(axis=0)
        dims = (next(int(k) for k in np.argsort(-spread, kind="stable") if k != dims[0]),
                dims[0])
    return dims


def _boundary(problem, P, dims):
    """``(w_a, w_b, c)``: the read-out's decision line ``w_a x_a + w_b x_b = c`` in the plane
    ``dims``, where there is one (one output between two target values, or two outputs),
    else None."""
    if problem is None or len(dims) != 2:
        return None
    classes = _problem_classes(problem)
    if P.shape[0] == 1 and classes is not None and len(classes.names) == 2 and \
            np.ndim(problem.y) == 1:
        w, c = P[0], float(np.mean(np.unique(problem.y)))
    elif P.shape[0] == 2 and classes is not None and len(classes.names) == 2:
        w, c = P[0] - P[1], 0.0  # class 0 where (P x)_0 > (P x)_1
    else:
        return None
    if np.any(np.abs(np.delete(w, dims)) > 1e-12 * np.abs(w).max()):
        return None  # the read-out looks at coordinates outside the plane
    return float(w[dims[0]]), float(w[dims[1]]), c


def _draw_boundary(ax, line, **kwargs):
    wa, wb, c = line
    if wa == 0 and wb == 0:
        return None
    p0 = (c / wa, 0.0) if wb == 0 else (0.0, c / wb)
    p1 = (p0[0], p0[1] + 1.0) if wb == 0 else (1.0, (c - wa) / wb)
    return ax.axline(p0, p1, color="k", ls="--", lw=1.0, zorder=1.5, **kwargs)


def _coordinate_label(j, P=None, symbol="x", suffix=""):
    read = readout_coordinates(P) if P is not None else ()
    return f"{symbol}[{j}]{suffix}" + (" (read-out)" if j in read else "")


# ------------------------------------------------------------------ figures
def _scatter_classes(ax, xy, classes, values=None, **kwargs):
    """Samples coloured by class (or by a continuous target ``values``)."""
    if classes is not None:
        return ax.scatter(xy[:, 0], xy[:, 1], c=classes.colour_of(), **kwargs)
    if values is not None:
        return ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap=SEQUENTIAL, **kwargs)
    return ax.scatter(xy[:, 0], xy[:, 1], color=OKABE_ITO[0], **kwargs)


def _paths(ax, states, dims, classes, max_paths, alpha=0.35):
    from matplotlib.collections import LineCollection

    n = min(states.shape[1], max_paths)
    segments = np.transpose(states[:, :n][:, :, list(dims)], (1, 0, 2))
    colours = classes.colour_of(np.arange(n)) if classes is not None else "0.6"
    lines = LineCollection(segments, colors=colours, linewidths=0.5, alpha=alpha, zorder=1)
    ax.add_collection(lines)
    return lines


@_styled
def trajectories(states, y=None, *, times=None, t=None, dims=None, ax=None, max_paths=200,
                 problem=None, iteration=None):
    """Samples in the plane of coordinates ``dims`` at chosen times, with their paths.

    Parameters
    ----------
    states : ndarray, shape (n_steps + 1, n_samples, dim), or a run
        A run directory, Run, or TrainResult (with ``problem=``): its states at checkpoint
        ``iteration`` (default: the last), coloured by its targets.
    y : array_like, shape (n_samples,), optional
        Targets: class colours (categorical palette and a legend) or, for real values, a
        colour scale.
    times : sequence of float, optional
        Times at which the samples are drawn (default: 0, T/2, T); needs ``t``.
    t : ndarray, shape (n_steps + 1,), optional
    dims : (int, int), optional
        Horizontal and vertical coordinate. Default: with a problem, the read-out coordinate
        vertical and the other coordinate of largest variance horizontal
        (:func:`choose_dims`); else the two of largest variance.
    problem : Problem, optional
        Read-out (axis labels, the decision line ``P x = c`` where it applies) and classes.
    """
    if _is_source(states):
        with _opened(states, "states", problem) as data:
            k = data.iteration(iteration)
            return trajectories(data.states(k), data.y(data.states(k).shape[1]),
                                times=times, t=data.t, dims=dims, ax=ax,
                                max_paths=max_paths, problem=data.problem)
    states = _array(states, "states", ndim=3, sources=True)
    P = _readout(problem) if problem is not None else None
    dims = _check_dims(dims, states, P)
    if len(dims) < 2:
        raise ValueError("trajectories need states with at least two coordinates")
    ax = _axes(ax, size="square")
    K = states.shape[0] - 1
    if t is None:
        index = [0, K // 2, K] if times is None else [int(s) for s in times]
    else:
        t = _array(t, "t", ndim=1)
        times = (t[0], t[K // 2], t[-1]) if times is None else times
        index = [int(np.argmin(np.abs(t - s))) for s in times]
    n_classes = getattr(problem, "n_classes", None)
    classes = _classes(y, n_classes) if y is not None else None
    values = None if y is None or classes is not None else np.asarray(y, float).reshape(
        len(y), -1)[:, 0]
    _paths(ax, states, dims, classes, max_paths, alpha=0.3)
    handles = _time_markers(ax, states, index, t, dims, classes, values)
    line = _boundary(problem, P, dims) if problem is not None else None
    if line is not None:
        handles.append(_draw_boundary(ax, line, label="read-out boundary (at t = T)"))
    ax.autoscale_view()
    ax.set_xlabel(_coordinate_label(dims[0], P))
    ax.set_ylabel(_coordinate_label(dims[1], P))
    handles += classes.handles() if classes is not None else []
    _legend(ax, outside=True, handles=handles)
    return ax


def _time_markers(ax, states, index, t, dims, classes, values):
    from matplotlib.lines import Line2D

    markers = "o^s*DvP"
    mappable, handles = None, []
    for j, k in enumerate(index):
        m = markers[j % len(markers)]
        mappable = _scatter_classes(ax, states[k][:, list(dims)], classes, values, s=14,
                                    marker=m, edgecolors="k", linewidths=0.25, zorder=2)
        label = f"t = {t[k]:.3g}" if t is not None else f"step {k}"
        handles.append(Line2D([], [], ls="", marker=m, color="0.55", markeredgecolor="k",
                              markeredgewidth=0.3, label=label))
    if classes is None and values is not None:
        ax.figure.colorbar(mappable, ax=ax, label="target y")
    return handles


@_styled
def decision_regions(problem, controls=None, *, resolution=150, margin=0.3, ax=None,
                     iteration=None):
    """Decision regions of a trained network over the plane of the (2-D) inputs.

    ``problem`` and ``controls`` (a dict, or a TrainResult), or a run as ``problem`` (its
    controls at checkpoint ``iteration``). Grid points are lifted like the data (zero
    padding) and pushed through the network; the colour is the predicted class (the target
    value nearest to the output, or the argmax of several outputs).
    """
    from .problem import Problem
    from .trainer import TrainResult

    if not isinstance(problem, Problem) and not _is_staged(problem):
        with _opened(problem, "problem") as data:
            return decision_regions(data.problem, data.controls(iteration),
                                    resolution=resolution, margin=margin, ax=ax)
    if isinstance(controls, TrainResult):
        controls = controls.controls
    if _is_staged(problem):
        controls = problem.validate_controls(controls)
    elif not isinstance(controls, Mapping):
        raise TypeError(f"controls must be a dict of control arrays or a TrainResult, got "
                        f"{type(controls).__name__}")
    ax = _axes(ax, size="square")
    gx, gy, z = _grid_outputs(problem, controls, resolution, margin)
    classes = _problem_classes(problem)
    x2 = problem.x[:, :2]
    if classes is None:
        mesh = ax.pcolormesh(gx, gy, z[:, 0].reshape(gx.shape), cmap=SEQUENTIAL,
                             shading="auto", alpha=0.6)
        ax.figure.colorbar(mesh, ax=ax, label="network output P x(T)")
        _scatter_classes(ax, x2, None, np.asarray(problem.y, float).reshape(len(x2), -1)[:, 0],
                         s=14, edgecolors="k", linewidths=0.25)
    else:
        _class_regions(ax, gx, gy, _predict(problem, z), classes)
        _scatter_classes(ax, x2, classes, s=14, edgecolors="k", linewidths=0.25)
        _legend(ax, handles=classes.handles(), title="class")
    ax.set_xlabel("x[0] (input)")
    ax.set_ylabel("x[1] (input)")
    return ax


def _grid_outputs(problem, controls, resolution, margin):
    from .sweeps import forward

    x2 = problem.x[:, :2]
    lo, hi = x2.min(axis=0) - margin, x2.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.zeros((gx.size, problem.x.shape[1]))
    grid[:, 0], grid[:, 1] = gx.ravel(), gy.ravel()
    y_dummy = np.zeros(len(grid), dtype=int) if problem.loss == "cross_entropy" \
        else np.ones((len(grid),) + np.shape(problem.y)[1:])
    if not _is_staged(problem):
        grid_problem = problem.replace(grid, y_dummy)
        z = forward(grid_problem, controls)[-1] @ _readout(problem, controls).T
        return gx, gy, z
    X = grid  # a staged network: stage after stage, through the transitions
    for j, stage in enumerate(problem.stages):
        if j:
            X = problem.transitions[j - 1].apply(X, controls[j].get("enter"))
        own = {n: a for n, a in controls[j].items() if n != "enter"}
        X = forward(stage.replace(X, y_dummy), own)[-1]
    return gx, gy, X @ _readout(problem.stages[-1], controls[-1]).T


def _predict(problem, z):
    """Predicted class index of outputs ``z``: argmax of several, else the nearest target."""
    if z.shape[1] > 1:
        return np.argmax(z, axis=1)
    values = np.unique(problem.y)
    return np.argmin(np.abs(z[:, :1] - values[None, :]), axis=1)


def _class_regions(ax, gx, gy, predicted, classes):
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(classes.names)
    cmap = ListedColormap(classes.colours)
    norm = BoundaryNorm(np.arange(n + 1) - 0.5, n)
    field = predicted.reshape(gx.shape)
    ax.pcolormesh(gx, gy, field, cmap=cmap, norm=norm, shading="auto", alpha=0.22,
                  linewidth=0, rasterized=True)
    if n <= 12:
        ax.contour(gx, gy, field, levels=np.arange(n - 1) + 0.5, colors="k",
                   linewidths=0.6, alpha=0.6)


@_styled
def states_and_costates(t, states=None, costates=None, *, samples=None, coordinate=None,
                        y=None, axes=None, problem=None, iteration=None, costate_label=None):
    """One coordinate of the states and of the costates over t, side by side (two axes).

    ``t, states, costates`` as arrays, or a run as ``t`` (its states and per-sample costates
    ``N p``; the read-out coordinate by default). ``samples``: indices (default: up to four,
    balanced over the classes); ``y`` colours them by class.
    """
    if _is_source(t):
        with _opened(t, "t", problem) as data:
            k = data.iteration(iteration)
            xs, ps = data.states(k), data.costates(k)
            if coordinate is None:
                coordinate = _check_dims(None, xs, _readout(data.problem))[-1]
            return states_and_costates(
                data.t, xs, ps, samples=samples, coordinate=coordinate,
                y=data.y(xs.shape[1]), axes=axes, problem=data.problem,
                costate_label=costate_label or f"per-sample costate N p[{coordinate}](t)")
    t = _array(t, "t", ndim=1, sources=True)
    states, costates = _array(states, "states", ndim=3), _array(costates, "costates", ndim=3)
    coordinate = 0 if coordinate is None else int(coordinate)
    classes = _classes(y, getattr(problem, "n_classes", None)) if y is not None else None
    samples = _pick_samples(states.shape[1], classes) if samples is None else list(samples)
    axes = _axes(axes, 2, size="pair")
    styles = ("-", "--", "-.", ":")
    for n, i in enumerate(samples):
        colour = classes.colours[classes.index[i]] if classes is not None else _colour(n)
        name = f"sample {i}" + (f" ({classes.names[classes.index[i]]})" if classes else "")
        for ax, arr in zip(axes, (states, costates)):
            ax.plot(t, arr[:, i, coordinate], color=colour, ls=styles[n % 4], label=name)
    P = _readout(problem) if problem is not None else None
    axes[0].set_ylabel(f"state {_coordinate_label(coordinate, P, suffix='(t)')}")
    axes[1].set_ylabel(costate_label or f"costate p[{coordinate}](t)")
    axes[0].set_title("states, forward from t = 0")
    axes[1].set_title("costates, backward from t = T")
    for ax in axes:
        ax.set_xlabel("t")
    _legend(axes[1], outside=True)
    return axes


def _pick_samples(n, classes, count=4):
    if classes is None:
        return list(range(min(n, count)))
    picked, k = [], 0
    groups = [np.flatnonzero(classes.index == c) for c in range(len(classes.names))]
    groups = [g for g in groups if len(g)]
    while len(picked) < min(n, count):
        g = groups[k % len(groups)]
        if k // len(groups) < len(g):
            picked.append(int(g[k // len(groups)]))
        k += 1
    return picked


def fit_decays(fit, n_points=None):
    """Whether a :class:`~pmp.analysis.RateFit` reports a decay: its ``is_rate`` (or
    ``verdict``) when it has one, else a positive rate whose 95% interval excludes 0,
    ``R^2 >= 0.9`` and a window of at least 5 points (and a tenth of the ``n_points`` of the
    curve)."""
    verdict = getattr(fit, "verdict", None)
    for holder in ((verdict, fit) if verdict is not None else (fit,)):
        for attr in ("is_rate", "decays", "decay", "is_decay"):
            value = holder.get(attr) if isinstance(holder, Mapping) else \
                getattr(holder, attr, None)
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
    if isinstance(verdict, (bool, np.bool_)):
        return bool(verdict)
    if isinstance(verdict, str):
        text = verdict.lower()
        return "decay" in text and not any(w in text for w in ("no ", "not", "none", "non-"))
    need = max(5, (n_points or 0) // 10)
    return bool(fit.mu > 0 and fit.ci[0] > 0 and fit.r2 >= 0.9 and fit.n_points >= need)


def _draw_fit(ax, t, fit, colour, line):
    """The fitted exponential and a band around it on its window only, when the fit reports
    a decay; the plateau from where it starts."""
    drawn = []
    if fit_decays(fit, len(t)):
        inside = (t >= fit.window[0]) & (t <= fit.window[1])
        predicted = fit.predict(t[inside])
        drawn += ax.plot(t[inside], predicted, "--", color=colour, lw=1.3,
                         label=fr"fit on [{fit.window[0]:.3g}, {fit.window[1]:.3g}]: "
                               fr"$\mu$ = {fit.mu:.3g}, $R^2$ = {fit.r2:.3f}")
        ax.fill_between(t[inside], predicted / 1.3, predicted * 1.3, color=colour,
                        alpha=0.15, lw=0, zorder=0)
    elif fit.plateau is None or not str(getattr(fit, "verdict", "")).startswith("plateau"):
        verdict = str(getattr(fit, "verdict", "") or "no exponential decay").split(" (")[0]
        name = line.get_label()
        line.set_label(verdict if name.startswith("_") else f"{name}: {verdict}")
    if fit.plateau is not None:
        start = fit.plateau_start if fit.plateau_start is not None else t[0]
        drawn.append(ax.hlines(fit.plateau, start, t[-1], color=colour, ls=":", lw=1.2,
                               label=f"plateau {fit.plateau:.2g} from t = {start:.3g}"))
    return drawn


@_styled
def decay(t, values=None, fit=None, *, label=None, ax=None, ylabel=None, problem=None,
          iteration=None):
    """A curve on a log axis, with its fitted exponential on the fit window (and plateau).

    ``decay(t, values, fit)``; or ``decay(run)`` for the training error, ``|u(t)|`` and
    ``|p(t)|`` of a run's checkpoint with their fits (:func:`pmp.analysis.fit_rate`). A fit
    is drawn (dashed, with a band on its window) only where it reports a decay
    (:func:`fit_decays`); values <= 0 are left out of the log axis.
    """
    if values is None and _is_source(t):
        return _decay_of_run(t, problem, iteration, ax)
    t, values = _array(t, "t", ndim=1, sources=True), _array(values, "values", ndim=1)
    if t.shape != values.shape:
        raise ValueError(f"t and values must have the same shape, got {t.shape} and "
                         f"{values.shape}")
    ax = _axes(ax, size="decay")
    line, = ax.plot(t, np.where(values > 0, values, np.nan), label=label)
    ax.set_yscale("log")
    drawn = _draw_fit(ax, t, fit, line.get_color(), line) if fit is not None else []
    ax._pmp_decay_groups = getattr(ax, "_pmp_decay_groups", []) + [[line] + drawn]
    ax.set_xlabel("t")
    ax.autoscale_view()
    _log_ticks(ax.yaxis)
    curves = getattr(ax, "_pmp_decay_labels", []) + [label]
    ax._pmp_decay_labels = curves
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    elif not ax.get_ylabel() or getattr(ax, "_pmp_auto_ylabel", False):
        ax.set_ylabel(f"{label} (log scale)" if len(curves) == 1 and label else
                      "value (log scale)")
        ax._pmp_auto_ylabel = True
    _legend(ax)
    return ax


def _decay_of_run(source, problem, iteration, ax):
    from .analysis import curves, fit_rate

    with _opened(source, "t", problem) as data:
        k = data.iteration(iteration)
        c = curves(data.problem, data.controls(k))
    ax = _axes(ax, size="decay")
    for key, t, label in (("error", c["t"], r"training error $\Phi(x(t))$"),
                          ("control_norm", c["t"][:-1], r"control $|u(t)|$"),
                          ("costate_norm", c["t"], r"costate $|p(t)|$")):
        try:
            fit = fit_rate(t, c[key])
        except ValueError:
            fit = None
        decay(t, c[key], fit, label=label, ax=ax,
              ylabel=r"$\Phi(x(t))$, $|u(t)|$, $|p(t)|$ (log scale)")
    _grouped_legend(ax, ax._pmp_decay_groups[-3:])
    ax.set_title(f"decay in t (iteration {k})")
    return ax


def _grouped_legend(ax, groups):
    """A legend under the axes, one row per curve: the curve, then its fit and plateau."""
    from matplotlib.lines import Line2D

    width = max(len(g) for g in groups)
    blank = Line2D([], [], ls="", label=" ")
    rows = [g + [blank] * (width - len(g)) for g in groups]
    handles = [row[c] for c in range(width) for row in rows]  # legends fill by column
    return ax.legend(handles, [h.get_label() for h in handles], loc="upper center",
                     bbox_to_anchor=(0.5, -0.14), ncols=width, borderaxespad=0.0)


@_styled
def control_heatmap(t, iterations=None, norms=None, *, ax=None, problem=None, upto=None):
    """``|u(t)|`` over (t, training iteration) as a heat map.

    ``norms`` (n_checkpoints, n_steps) at the (increasing) ``iterations``; or a run as ``t``
    (all its checkpoints up to ``upto``). Each checkpoint is a band centred on its
    iteration (edges half-way to its neighbours, so unevenly spaced checkpoints stay at
    their ticks); exact zeros, which a log scale cannot show, get their own grey.
    """
    if _is_source(t):
        from .analysis import step_norms

        with _opened(t, "t", problem) as data:
            its = [i for i in data.checkpoints if upto is None or i <= upto]
            norms = [step_norms(data.problem, data.controls(i)) for i in its]
            return control_heatmap(data.t, its, norms, ax=ax)
    t = _array(t, "t", ndim=1, sources=True)
    norms = _array(norms, "norms", ndim=2)
    its = _array(iterations, "iterations", ndim=1)
    if len(its) != norms.shape[0] or norms.shape[1] > len(t) - 1 or np.any(np.diff(its) <= 0):
        raise ValueError(f"iterations must increase and match norms' rows, and norms' columns "
                         f"the steps of t: got {len(its)} iterations, norms {norms.shape}, "
                         f"{len(t)} times")
    ax = _axes(ax, size="heatmap")
    mesh = _heat_mesh(ax, t[:norms.shape[1] + 1], _band_edges(its), norms)
    if len(its) <= 12:
        ax.set_yticks(its, _spaced_labels(its))
    ax.set_xlabel("t")
    ax.set_ylabel("training iteration (checkpoints)")
    bar = ax.figure.colorbar(mesh, ax=ax, label=r"$|u(t)|$ (log scale)")
    _log_ticks(bar.ax.yaxis)
    if np.any(norms <= 0):
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor=ZERO_COLOUR, label="u = 0 exactly")],
                  loc="upper right", bbox_to_anchor=(1.0, -0.08), borderaxespad=0.0)
    return ax


def _spaced_labels(its, fraction=0.04):
    """Tick labels of the checkpoints ``its``: a label closer than ``fraction`` of the range
    to the one before is left blank (the tick stays), so that a best iterate a few
    iterations before the last (1414 and 1423) does not print on top of it; the last
    checkpoint is always labelled, in place of a neighbour that is too close."""
    span = float(its[-1] - its[0])
    labels, last = [], None
    for i in its:
        if last is None or i - last >= fraction * span:
            labels.append(f"{int(i)}")
            last = i
        else:
            labels.append("")
    if not labels[-1]:
        labels[[n for n, text in enumerate(labels) if text][-1]] = ""
        labels[-1] = f"{int(its[-1])}"
    return labels


def _band_edges(its):
    """Band edges: half-way between neighbouring iterations, the ends at the first and last
    iteration (one iteration: a band of height 1)."""
    if len(its) == 1:
        return np.array([its[0] - 0.5, its[0] + 0.5])
    return np.concatenate([[its[0]], (its[1:] + its[:-1]) / 2, [its[-1]]])


def _heat_mesh(ax, t_edges, y_edges, norms):
    import matplotlib
    from matplotlib.colors import LogNorm

    positive = norms[norms > 0]
    cmap = matplotlib.colormaps[SEQUENTIAL].with_extremes(bad=ZERO_COLOUR)
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-6), vmax=positive.max()) \
        if positive.size else None
    return ax.pcolormesh(t_edges, y_edges, np.ma.masked_less_equal(norms, 0.0), cmap=cmap,
                         norm=norm, shading="flat", rasterized=True)


def _histories(histories, label=None):
    """[(label, history)] of one run or result or history, or of a dict or list of them."""
    from .batch.store import Run, load_run
    from .trainer import TrainResult

    if _is_history(histories):
        return [(label, histories)]
    if isinstance(histories, TrainResult):
        return [(label or str(histories.get("method", "")), histories.history)]
    if isinstance(histories, Run):
        return [(label or str(histories.attrs.get("method", "")), histories.history)]
    if isinstance(histories, (str, os.PathLike)):
        with load_run(histories) as run:
            return _histories(run, label)
    if isinstance(histories, _RunData):
        return [(label or histories.label, histories.history)]
    if isinstance(histories, Mapping):
        return [pair for name, h in histories.items() for pair in _histories(h, str(name))]
    if isinstance(histories, (list, tuple)):
        return [pair for h in histories for pair in _histories(h)]
    raise TypeError(f"histories must be a history dict (result.history, run.history), a "
                    f"TrainResult, a Run or run directory, or a dict or list of them; got "
                    f"{type(histories).__name__}")


@_styled
def training_curves(histories, *, x="iteration", y="cost", ax=None, mark=None):
    """Training curves of one or several runs on one axis.

    ``histories``: a history (``result.history``, ``run.history``), a TrainResult, a Run or
    run directory, or a dict label -> any of these (a list: labelled by method). ``x`` is
    "iteration" or "elapsed" (seconds); ``y`` a column or a list of columns (log axis when
    positive). ``mark``: an iteration to mark (the checkpoint a figure shows).
    """
    runs = _histories(histories)
    if not runs:
        raise ValueError("histories is empty: nothing to draw")
    columns = [y] if isinstance(y, str) else list(y)
    for name, hist in runs:
        if not len(hist.get(x, ())):
            raise ValueError(f"the history of {name or 'the run'} is empty or has no column "
                             f"{x!r}; columns: {sorted(hist)}")
        missing = [c for c in columns if c not in hist]
        if missing:
            raise ValueError(f"the history of {name or 'the run'} has no column "
                             f"{missing[0]!r}; columns: {sorted(hist)}")
    ax = _axes(ax)
    positive = True
    for n, (name, hist) in enumerate(runs):
        for m, column in enumerate(columns):
            values = np.asarray(hist[column], float)
            positive &= bool(np.all(values[np.isfinite(values)] > 0))
            parts = [p for p in (name if len(runs) > 1 else None,
                                 COLUMN_LABELS.get(column, column) if len(columns) > 1
                                 else None) if p]
            ax.plot(hist[x], values, color=_colour(n if len(runs) > 1 else m),
                    ls=("-", "--", "-.", ":")[m % 4], label=", ".join(parts) or None)
    if positive:
        ax.set_yscale("log")
        ax.autoscale_view()
        _log_ticks(ax.yaxis)
    if mark is not None:
        ax.axvline(mark, color=REFERENCE_COLOUR, ls=":", lw=1, label=f"iteration {mark}")
    ax.set_xlabel(COLUMN_LABELS.get(x, x))
    ax.set_ylabel(" and ".join(COLUMN_LABELS.get(c, c) for c in columns) +
                  (" (log scale)" if positive else ""))
    _legend(ax)
    return ax


@_styled
def scaling(x, values, *, slopes=(-1.0,), label="J", xlabel="T", ylabel=None, ax=None,
            color=None):
    """A log-log plot of ``values`` against ``x`` with reference slopes through the first
    point (grey, one legend entry per slope however many curves share the axes; ``slopes=()``
    for none)."""
    x, values = _array(x, "x", ndim=1), _array(values, "values", ndim=1)
    ax = _axes(ax)
    line, = ax.loglog(x, values, "o-", label=label, color=color, ms=4)
    styles = (":", "-.", (0, (5, 2, 1, 2)), "--")
    for n, s in enumerate(slopes):
        ax.loglog(x, values[0] * (x / x[0]) ** s, ls=styles[n % 4], color=REFERENCE_COLOUR,
                  lw=1, label=f"slope {s:g} (reference)")
    ax.set_xlabel(xlabel)
    if ylabel is not None or not ax.get_ylabel():
        ax.set_ylabel(ylabel or f"{label} (log scale)")
    ticks = np.concatenate([drawn.get_xdata() for drawn in ax.get_lines()])
    _log_ticks(ax.xaxis, ticks)
    ax.autoscale_view()
    _log_ticks(ax.yaxis)
    handles = ax.get_legend_handles_labels()[0]
    _legend(ax, handles=sorted(handles, key=lambda h: "(reference)" in h.get_label()))
    return ax


# ------------------------------------------------------------------ a run's figures
@_styled
def figures(source, *, problem=None, iteration=None, dims=None):
    """The standard figures of a run (a :class:`Figures` dict name -> Figure).

    "decay" (error, ``|u(t)|``, ``|p(t)|`` in t, with fits), "states_costates" (one
    coordinate: the read-out by default), "trajectories" (the plane ``dims``: by default the
    read-out coordinate and the coordinate of largest variance), "decision_regions" (inputs
    in a plane, zero-padded), "control_heatmap" (two or more checkpoints up to
    ``iteration``) and "training". ``iteration``: the checkpoint drawn (default: the last).

    A staged run (variable width) gives the same names and one more: "decay" on the whole
    horizon (``|u(t)|`` and ``|p(t)|`` stage by stage), "states_costates" (the last stage's
    read-out coordinate, shaded where a stage lacks it), "trajectories" and
    "control_heatmap" with one panel per stage (the heat map's widths in proportion to the
    durations, on one colour scale, the time axes those of the checkpoint drawn), and
    "hamiltonian": the Hamiltonian per unit time of every stage, both sides of every switch
    marked, ``dJ/dT_j`` in the legend. Every curve over t marks the switching times.
    """
    import matplotlib.pyplot as plt

    out = Figures()
    with _opened(source, "source", problem) as data:
        if data.staged:
            return _staged_figures(data, data.iteration(iteration), dims)
        k = data.iteration(iteration)
        xs, p = data.states(k), data.problem
        dims = _check_dims(dims, xs, _readout(p, data.controls(k)))
        fig, ax = plt.subplots(figsize=SIZES["decay"], layout="constrained")
        out["decay"] = decay(data, iteration=k, ax=ax).figure
        fig, axes = plt.subplots(1, 2, figsize=SIZES["pair"], layout="constrained")
        states_and_costates(data, iteration=k, coordinate=dims[-1], axes=axes)
        fig.suptitle(f"iteration {k}")
        out["states_costates"] = fig
        if len(dims) == 2:
            fig, ax = plt.subplots(figsize=SIZES["square"], layout="constrained")
            trajectories(data, iteration=k, dims=dims, ax=ax)
            ax.set_title(f"states x(t), iteration {k}")
            out["trajectories"] = fig
        if p.dim >= 2 and np.all(p.x[:, 2:] == 0):
            fig, ax = plt.subplots(figsize=SIZES["square"], layout="constrained")
            decision_regions(p, data.controls(k), resolution=120, ax=ax)
            ax.set_title(f"decision regions over the inputs, iteration {k}")
            out["decision_regions"] = fig
        if len([i for i in data.checkpoints if i <= k]) > 1:
            fig, ax = plt.subplots(figsize=SIZES["heatmap"], layout="constrained")
            control_heatmap(data, upto=k, ax=ax)
            ax.set_title("controls over training")
            out["control_heatmap"] = fig
        out["training"] = _training_figure(data, k)
    return out


# ------------------------------------------------------------------ a staged run
STAGE_LINE = dict(color=REFERENCE_COLOUR, ls=":", lw=1.0, zorder=0.5)


def _switch_lines(ax, times, label=True):
    """Vertical lines at the switching times (one legend entry)."""
    for n, t in enumerate(times):
        ax.axvline(t, label=("switching time" + ("s" if len(times) > 1 else ""))
                   if label and n == 0 else None, **STAGE_LINE)


def _stage_title(problem, j):
    tr = problem.enter_transition(j)
    return f"stage {j} (d = {problem.dims[j]}" + (f", {tr.kind}" if tr is not None else "") + ")"


def _staged_figures(data, k, dims):
    """:func:`figures` of a staged run: the whole horizon with the switching times marked,
    the plane figures and the heat map stage by stage, and the Hamiltonian per unit time."""
    import matplotlib.pyplot as plt

    from .analysis import fit_rate, stage_curves, switching_report

    out = Figures()
    problem, controls = data.problem_at(k), data.controls(k)
    c = stage_curves(problem, controls)
    fig, ax = plt.subplots(figsize=SIZES["decay"], layout="constrained")
    out["decay"] = _staged_decay(ax, problem, c, fit_rate, k)
    fig, axes = plt.subplots(1, 2, figsize=SIZES["pair"], layout="constrained")
    _staged_states_costates(axes, data, problem, k, dims)
    fig.suptitle(f"iteration {k}")
    out["states_costates"] = fig
    out["trajectories"] = _staged_trajectories(data, problem, k, dims)
    if problem.dims[0] >= 2 and np.all(problem.x[:, 2:] == 0):
        fig, ax = plt.subplots(figsize=SIZES["square"], layout="constrained")
        decision_regions(problem, controls, resolution=120, ax=ax)
        ax.set_title(f"decision regions over the inputs, iteration {k}")
        out["decision_regions"] = fig
    if len([i for i in data.checkpoints if i <= k]) > 1:
        out["control_heatmap"] = _staged_heatmap(data, problem, k)
    fig, ax = plt.subplots(figsize=SIZES["single"], layout="constrained")
    out["hamiltonian"] = _staged_hamiltonian(ax, problem, c, switching_report(problem,
                                                                              controls), k)
    out["training"] = _training_figure(data, k)
    return out


def _training_figure(data, k):
    """The cost and the loss over the iterations of a run, iteration ``k`` marked (unless
    it is the last)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZES["single"], layout="constrained")
    training_curves({data.label: data.history}, y=("cost", "loss"), ax=ax,
                    mark=k if k != data.checkpoints[-1] else None)
    ax.set_title(f"training ({data.label})")
    return fig


def _staged_decay(ax, problem, c, fit_rate, k):
    """The error on the whole horizon (with its fit), ``|u(t)|`` and ``|p(t)|`` stage by
    stage, on a log axis, the switching times marked."""
    try:
        fit = fit_rate(c["t"], c["error"])
    except ValueError:
        fit = None
    decay(c["t"], c["error"], fit, label=r"training error $\Phi(x(t))$", ax=ax,
          ylabel=r"$\Phi(x(t))$, $|u(t)|$, $|p(t)|$ (log scale)")
    for n, (key, steps, label) in enumerate((
            ("control_norm", True, r"control $|u(t)|$ (per stage)"),
            ("costate_norm", False, r"costate $|p(t)|$ (per stage)"))):
        for j, part in enumerate(c["per_stage"]):
            t = part["t"][:-1] if steps else part["t"]
            values = np.where(part[key] > 0, part[key], np.nan)
            ax.plot(t, values, color=_colour(n + 1), ls=("-", "--")[j % 2],
                    label=label if j == 0 else None)
    _switch_lines(ax, problem.switch_times)
    ax.autoscale_view()
    _log_ticks(ax.yaxis)
    _legend(ax, outside="below")
    ax.set_title(f"decay in t (iteration {k}; stages alternate solid and dashed)")
    return ax.figure


def _staged_states_costates(axes, data, problem, k, dims):
    """One coordinate of the states and the costates over the whole horizon: the last
    stage's read-out coordinate (or ``dims[-1]``), on every stage that has it."""
    xs, ps = data.states(k), data.costates(k)
    last = problem.stages[-1]
    c = _check_dims(dims, xs[-1], _readout(last, data.controls(k)[-1]))[-1]
    classes = _problem_classes(problem, xs[0].shape[1])
    samples = _pick_samples(xs[0].shape[1], classes)
    styles = ("-", "--", "-.", ":")
    for ax, arrays in zip(axes, (xs, ps)):
        for j, (t, arr) in enumerate(zip(problem.t, arrays)):
            if c >= arr.shape[2]:
                continue
            for n, i in enumerate(samples):
                colour = classes.colours[classes.index[i]] if classes else _colour(n)
                name = f"sample {i}" + (f" ({classes.names[classes.index[i]]})"
                                        if classes else "")
                ax.plot(t, arr[:, i, c], color=colour, ls=styles[n % 4], label=name)
        _switch_lines(ax, problem.switch_times)
        for j, t in enumerate(problem.t):
            if c >= problem.dims[j]:  # the coordinate does not exist on this stage
                ax.axvspan(t[0], t[-1], color="0.93", zorder=0,
                           label=f"no x[{c}] (stage of width < {c + 1})")
        ax.set_xlim(problem.t[0][0], problem.t[-1][-1])
        ax.set_xlabel("t")
    missing = [j for j, d in enumerate(problem.dims) if c >= d]
    note = f" (from stage {max(missing) + 1} on)" if missing else ""
    axes[0].set_ylabel(f"state x[{c}](t){note}")
    axes[1].set_ylabel(f"per-sample costate N p[{c}](t){note}")
    axes[0].set_title("states, forward from t = 0")
    axes[1].set_title("costates, backward from t = T")
    _legend(axes[1], outside=True)


def _staged_trajectories(data, problem, k, dims):
    """The samples in a plane, one panel per stage (each in its own coordinates)."""
    import matplotlib.pyplot as plt

    xs, S = data.states(k), len(problem.stages)
    width, height = SIZES["square"]
    fig, axes = plt.subplots(1, S, figsize=(min(5.2 * S + 1.8, 18.0), height * 0.85),
                             layout="constrained", squeeze=False)
    y = data.y(xs[0].shape[1])
    for j, (ax, stage, states) in enumerate(zip(axes[0], problem.stages, xs)):
        if states.shape[2] < 2:
            ax.set_axis_off()
            ax.set_title(f"{_stage_title(problem, j)}: one coordinate")
            continue
        own = dims if dims is not None and len(dims) == 2 and max(dims) < stage.dim else None
        last = j == S - 1
        trajectories(states, y, t=problem.t[j], dims=own, ax=ax, max_paths=120,
                     problem=stage if last else None)
        if not last:  # its own time markers under it (the classes: in the last legend)
            handles = [h for h in ax.get_legend().legend_handles
                       if h.get_label().startswith("t = ")]
            ax.get_legend().remove()
            ax.legend(handles, [h.get_label() for h in handles], loc="upper center",
                      bbox_to_anchor=(0.5, -0.13), ncols=len(handles), borderaxespad=0.0)
        ax.set_title(f"{_stage_title(problem, j)}, t in [{problem.t[j][0]:.3g}, "
                     f"{problem.t[j][-1]:.3g}]")
    fig.suptitle(f"states x(t) stage by stage, iteration {k}")
    return fig


def _staged_heatmap(data, problem, k):
    """``|u(t)|`` over (t, iteration), one panel per stage, their widths in proportion to
    the durations, on one colour scale."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from .analysis import step_norms

    its = [i for i in data.checkpoints if i <= k]
    norms = [[step_norms(stage, {n: a for n, a in data.controls(i)[j].items() if n != "enter"})
              for i in its] for j, stage in enumerate(problem.stages)]
    fig, axes = plt.subplots(1, len(norms), figsize=SIZES["heatmap"], sharey=True,
                             layout="constrained", squeeze=False,
                             width_ratios=list(problem.durations))
    positive = np.concatenate([np.ravel(n) for n in norms])
    positive = positive[positive > 0]
    for j, (ax, stage_norms) in enumerate(zip(axes[0], norms)):
        mesh = _heat_mesh(ax, problem.t[j], _band_edges(np.asarray(its, float)),
                          np.asarray(stage_norms))
        if positive.size:
            mesh.set_norm(LogNorm(vmin=max(positive.min(), positive.max() * 1e-6),
                                  vmax=positive.max()))
        ax.set_title(_stage_title(problem, j), fontsize=9)
        ax.set_xlabel("t")
    if len(its) <= 12:
        axes[0, 0].set_yticks(its, _spaced_labels(np.asarray(its)))
    axes[0, 0].set_ylabel("training iteration (checkpoints)")
    bar = fig.colorbar(mesh, ax=list(axes[0]), label=r"$|u(t)|$ (log scale)")
    _log_ticks(bar.ax.yaxis)
    fig.suptitle("controls over training, stage by stage")
    return fig


def _staged_hamiltonian(ax, problem, c, report, k):
    """The Hamiltonian per unit time ``Hbar_k`` of every stage over t, both sides of every
    switch marked, with ``dJ/dT_j`` in the legend."""
    g = report["duration_gradient"]
    for j, part in enumerate(c["per_stage"]):
        ax.plot(part["t"][:-1], part["hamiltonian_rate"], color=_colour(j), marker=".",
                ms=3, label=rf"stage {j}: $dJ/dT_{j}$ = {g[j]:.3g}")
    for j, t in enumerate(problem.switch_times):
        before, after = report["switch_hamiltonians"][j]
        left, right = c["per_stage"][j]["t"][-2], c["per_stage"][j + 1]["t"][0]
        ax.plot([left, right], [before, after], "o", mfc="none", color="k", ms=6,
                label="both sides of a switch" if j == 0 else None)
    _switch_lines(ax, problem.switch_times)
    ax.set_xlabel("t")
    ax.set_ylabel(r"Hamiltonian per unit time $\bar H_k$")
    rates = ", ".join(f"{r:.3g}" for r in report["switch_rate"])
    ax.set_title(f"Hamiltonian (iteration {k}); switch later: dJ/dt = {rates}")
    _legend(ax, outside="below")
    return ax.figure


def show(source, **kwargs):
    """Show a run's figures (:func:`figures`, same arguments) in a notebook: each is
    displayed once, then closed. Outside a notebook kernel they are returned open (call
    ``plt.show()``). Returns the :class:`Figures`."""
    import matplotlib.pyplot as plt

    out = figures(source, **kwargs)
    try:
        from IPython import get_ipython
        from IPython.display import display
        kernel = getattr(get_ipython(), "kernel", None) is not None
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        kernel = False
    if kernel:
        for fig in out.values():
            display(fig)
            plt.close(fig)
    return out


FORMATS = ("png", "pdf", "svg")


def _formats(formats):
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be some of {', '.join(FORMATS)}, got "
                         f"{', '.join(map(str, formats)) or 'none'}")
    return formats


def plot_run(source, directory=None, formats=("png", "pdf"), *, problem=None,
             iteration=None, dims=None, animate=False, frames=None):
    """Write the standard figures of a run (:func:`figures`) into ``directory`` (default:
    the run's), in each of ``formats``; with ``animate`` also ``flow.gif`` and (two or more
    checkpoints) ``training_progress.gif`` (:func:`animate`, ``frames`` frames at most).
    ``source``: a run directory or Run, or a TrainResult with ``problem=`` and
    ``directory``. Returns the written paths."""
    formats = _formats(formats)
    with _opened(source, "source", problem) as data:
        directory = directory or data.directory
        if directory is None:
            raise TypeError("plot_run needs directory= for a TrainResult (it has no run "
                            "directory)")
        if animate and data.staged:
            raise ValueError("--animate (animate=True) is not available for a staged run yet: "
                             "its stages have different widths; draw its figures without it")
        written = _save(figures(data, iteration=iteration, dims=dims), directory, formats)
        if animate:
            kinds = ["flow"] + (["training"] if len(data.checkpoints) > 1 else [])
            for kind in kinds:
                anim = _animation(data, kind, iteration, dims, frames, None, ANIMATION_DPI)
                path = os.path.join(directory, f"{GIF_NAMES[kind]}.gif")
                written.append(save_gif(anim, path))
    return written


def _save(figs, directory, formats):
    """Write each figure (name -> Figure) in each format; close them; return the paths."""
    import matplotlib.pyplot as plt

    written = []
    for name, fig in figs.items():
        for ext in formats:
            path = os.path.join(directory, f"{name}.{ext}")
            fig.savefig(path, dpi=DPI)
            written.append(path)
        plt.close(fig)
    return written


@_styled
def plot_sweep(rows, key, directory, formats=("png", "pdf")):
    """Log-log plots of the final error and J against ``key`` (one line per group of the
    other keys), with reference slopes through the first group's first point (-1 and -2
    against T, 1 against lam)."""
    import matplotlib.pyplot as plt

    from .analysis import analyze_sweep

    formats = _formats(formats)
    parts = key.split(".")
    name = parts[-1] if parts[0] != "stages" else f"stage{parts[1]}_{parts[-1]}"
    shown = name if parts[0] != "stages" else f"{parts[-1]} of stage {parts[1]}"
    fig, axes = plt.subplots(1, 2, figsize=SIZES["pair"], layout="constrained")
    # the horizon's laws (a stage's duration is only a part of the horizon: no reference)
    slopes = (-1.0, -2.0) if key.endswith(".T") and parts[0] != "stages" else \
        () if parts[0] == "stages" else (1.0,)
    for n, entry in enumerate(analyze_sweep(rows, key)):
        group = ", ".join(f"{k.split('.')[-1]} = {entry[k]}" for k in entry
                          if "." in k and k != key) or "runs"
        scaling(entry["values"], entry["loss"], slopes=slopes if n == 0 else (), label=group,
                xlabel=shown, ylabel=r"final training error $\Phi(x(T))$ (log scale)",
                ax=axes[0], color=_colour(n))
        scaling(entry["values"], entry["cost"], slopes=slopes[:1] if n == 0 else (),
                label=group, xlabel=shown,
                ylabel="final cost J (log scale)", ax=axes[1], color=_colour(n))
    axes[0].set_title(f"training error against {shown}")
    axes[1].set_title(f"cost J against {shown}")
    return _save({f"scaling_{name}": fig}, directory, formats)


# ------------------------------------------------------------------ animations
GIF_NAMES = {"flow": "flow", "training": "training_progress"}


def animate(source, kind="flow", *, problem=None, iteration=None, dims=None, frames=None,
            fps=None, dpi=ANIMATION_DPI):
    """An animation of a run (a matplotlib ``FuncAnimation``).

    kind="flow": the samples flowing forward through the network (states from t = 0 to T in
    the plane ``dims``, coloured by class, with the read-out's decision line where there is
    one) beside the per-sample costates ``N p`` flowing backward from T to 0 (arrows at the
    states); ``frames`` times (default ``FRAMES``, at most the number of steps + 1).
    kind="training": the checkpoints one after the other (at most ``frames``): the states,
    the ``|u(t)|`` heat map up to the checkpoint and the training curve.

    ``source``: a run directory, Run, or TrainResult with ``problem=`` ("flow" only).
    The figure is not registered with pyplot: show the animation in a notebook with
    ``IPython.display.HTML(anim.to_jshtml())``, write it with :func:`save_gif`.
    """
    with _opened(source, "source", problem) as data:
        return _animation(data, kind, iteration, dims, frames, fps, dpi)


def _animation(data, kind, iteration, dims, frames, fps, dpi):
    makers = {"flow": _animate_flow, "training": _animate_training}
    if kind not in makers:
        raise ValueError(f"kind must be one of {', '.join(makers)}, got {kind!r}")
    frames = FRAMES if frames is None else frames
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise ValueError(f"frames must be an int >= 2, got {frames!r}")
    with house_style():
        anim = makers[kind](data, data.iteration(iteration), dims, int(frames), dpi)
    anim.fps = FPS[kind] if fps is None else fps
    anim.event_source.interval = 1000.0 / anim.fps
    return anim


def save_gif(anim, path, fps=None):
    """Write an animation as a GIF with pillow (no ffmpeg needed); returns ``path``."""
    from matplotlib.animation import PillowWriter

    anim.save(path, writer=PillowWriter(fps=fps or getattr(anim, "fps", 10)))
    return path


def _plane_limits(points, margin=0.06):
    lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
    pad = np.maximum((hi - lo) * margin, 1e-9)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def _new_figure(size, dpi, n):
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZES[size], dpi=dpi, layout="constrained")
    return fig, fig.subplots(1, n)


def _frame_index(n, frames):
    return np.unique(np.round(np.linspace(0, n - 1, min(frames, n))).astype(int))


def _animate_flow(data, k, dims, frames, dpi):
    from matplotlib.animation import FuncAnimation

    n = min(data.states(k).shape[1], MAX_ANIMATED)  # bounds the GIF's size
    xs, ps, p = data.states(k)[:, :n], data.costates(k)[:, :n], data.problem
    P = _readout(p, data.controls(k))
    dims = list(_check_dims(dims, xs, P))
    if len(dims) < 2:
        raise ValueError("the flow animation needs states with at least two coordinates")
    classes = _problem_classes(p, xs.shape[1])
    xy, uv, t = xs[:, :, dims], ps[:, :, dims], data.t
    index = _frame_index(len(t), frames)
    fig, (left, right) = _new_figure("flow", dpi, 2)
    xlim, ylim = _plane_limits(xy.reshape(-1, 2))
    colours = classes.colour_of() if classes is not None else OKABE_ITO[0]
    for ax in (left, right):
        _paths(ax, xs, dims, classes, 200, alpha=0.12)
        ax.set(xlim=xlim, ylim=ylim, xlabel=_coordinate_label(dims[0], P),
               ylabel=_coordinate_label(dims[1], P))
    forward = left.scatter(*xy[0].T, c=colours, s=16, edgecolors="k", linewidths=0.25,
                           zorder=3)
    backward = right.scatter(*xy[-1].T, c=colours, s=8, alpha=0.5, zorder=3, lw=0)
    length = np.linalg.norm(uv, axis=-1)
    scale = max(np.quantile(length, 0.95), 1e-300) / (0.12 * max(np.ptp(xlim), np.ptp(ylim)))
    arrows = right.quiver(*xy[-1].T, *uv[-1].T, color=colours, angles="xy",
                          scale_units="xy", scale=scale, width=0.004, zorder=4)
    handles = classes.handles() if classes is not None else []
    line = _boundary(p, P, dims)
    if line is not None:
        handles.append(_draw_boundary(left, line, label="read-out boundary (at t = T)"))
    if handles:
        fig.legend(handles=handles, loc="outside right upper")

    def update(f):
        i, j = index[f], index[len(index) - 1 - f]
        forward.set_offsets(xy[i])
        backward.set_offsets(xy[j])
        arrows.set_offsets(xy[j])
        arrows.set_UVC(uv[j, :, 0], uv[j, :, 1])
        left.set_title(f"forward: states x(t), t = {t[i]:.2f}")
        right.set_title(f"backward: costates N p(t) at x(t), t = {t[j]:.2f}")
        return forward, backward, arrows

    update(0)
    anim = FuncAnimation(fig, update, frames=len(index), blit=False)
    anim.n_frames = len(index)
    return anim


def _animate_training(data, k, dims, frames, dpi):
    from matplotlib.animation import FuncAnimation
    from matplotlib.patches import Rectangle

    from .analysis import step_norms

    its = [i for i in data.checkpoints if i <= k]
    if len(its) < 2:
        raise ValueError(f"the training animation needs a run with two or more checkpoints, "
                         f"got {its}")
    its = [its[i] for i in _frame_index(len(its), frames)]
    p = data.problem
    P = _readout(p, data.controls(k))
    dims = list(_check_dims(dims, data.states(k), P))
    paths = {i: data.states(i)[:, :MAX_ANIMATED, dims] for i in its}
    norms = [step_norms(p, data.controls(i)) for i in its]
    fig, (a, b, c) = _new_figure("training_progress", dpi, 3)
    classes = _problem_classes(p, paths[its[0]].shape[1])
    colours = classes.colour_of() if classes is not None else OKABE_ITO[0]
    xlim, ylim = _plane_limits(np.concatenate([v.reshape(-1, 2) for v in paths.values()]))
    a.set(xlim=xlim, ylim=ylim, xlabel=_coordinate_label(dims[0], P),
          ylabel=_coordinate_label(dims[1], P))
    lines = _paths(a, data.states(its[0])[:, :MAX_ANIMATED], dims, classes, 200, alpha=0.3)
    points = a.scatter(*paths[its[0]][-1].T, c=colours, s=14, edgecolors="k", lw=0.25,
                       zorder=3)
    control_heatmap(data.t, its, norms, ax=b)
    edges = _band_edges(np.asarray(its, float))
    cover = b.add_patch(Rectangle((data.t[0], edges[1]), data.t[-1] - data.t[0],
                                  edges[-1] - edges[1], color="white", zorder=3))
    training_curves({data.label: data.history}, y="cost", ax=c)
    marker = c.axvline(its[0], color=REFERENCE_COLOUR, ls=":", lw=1.2)
    if classes is not None:
        fig.legend(handles=classes.handles(), loc="outside right upper")

    def update(f):
        i = its[f]
        lines.set_segments(np.transpose(paths[i][:, :200], (1, 0, 2)))
        points.set_offsets(paths[i][-1])
        cover.set_y(edges[f + 1])
        cover.set_height(max(edges[-1] - edges[f + 1], 0.0))
        marker.set_xdata([i, i])
        a.set_title(f"states x(t), iteration {i}")
        b.set_title(f"|u(t)| up to iteration {i}")
        c.set_title(f"cost J, iteration {i}")
        return lines, points, cover, marker

    update(0)
    anim = FuncAnimation(fig, update, frames=len(its), blit=False)
    anim.n_frames = len(its)
    return anim
