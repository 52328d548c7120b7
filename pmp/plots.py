"""Figures of trajectories, costates, decay and training (matplotlib).

Every function takes ``ax=None`` (or ``axes=None``), draws on it (or on a new figure) and
returns the axes; none calls ``plt.show()``.
"""
import numpy as np


def _axes(ax, n=1, width=5.0, height=4.0):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return axes[0, 0] if n == 1 else axes[0]


def _labels(y):
    y = np.asarray(y)
    return y if y.ndim == 1 else np.argmax(y, axis=1)


def trajectories(states, y=None, *, times=None, t=None, dims=(0, 1), ax=None, max_paths=200):
    """Samples in the plane of coordinates ``dims`` at chosen times, with their paths.

    Parameters
    ----------
    states : ndarray, shape (n_steps + 1, n_samples, dim)
    y : array_like, shape (n_samples,), optional
        Labels (colours).
    times : sequence of float, optional
        Times at which the samples are drawn (default: start and end); needs ``t``.
    t : ndarray, shape (n_steps + 1,), optional
    """
    ax = _axes(ax)
    states = np.asarray(states)
    K = states.shape[0] - 1
    index = [0, K] if times is None else [int(np.argmin(np.abs(np.asarray(t) - s)))
                                           for s in times]
    colour = None if y is None else _labels(y)
    a, b = dims
    for i in range(min(states.shape[1], max_paths)):
        ax.plot(states[:, i, a], states[:, i, b], color="0.8", lw=0.5, zorder=1)
    markers = "os^vD<>p*h"
    for j, k in enumerate(index):
        label = f"t = {t[k]:.3g}" if t is not None else f"step {k}"
        ax.scatter(states[k, :, a], states[k, :, b], c=colour, cmap="coolwarm", s=12,
                   marker=markers[j % len(markers)], edgecolors="k", linewidths=0.2,
                   label=label, zorder=2)
    ax.set_xlabel(f"x[{a}]")
    ax.set_ylabel(f"x[{b}]")
    ax.legend(fontsize="small")
    return ax


def decision_regions(problem, controls, *, resolution=150, margin=0.3, ax=None):
    """Decision regions of a trained network over the plane of the (2-D) inputs.

    Grid points are lifted like the data (zero padding) and pushed through the network;
    the colour is the sign of the output (one output) or its argmax (several).
    """
    from .sweeps import forward

    ax = _axes(ax)
    x2 = problem.x[:, :2]
    lo, hi = x2.min(axis=0) - margin, x2.max(axis=0) + margin
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.zeros((gx.size, problem.dim))
    grid[:, 0], grid[:, 1] = gx.ravel(), gy.ravel()
    y_dummy = np.zeros(len(grid), dtype=int) if problem.loss == "cross_entropy" \
        else np.ones((len(grid),) + np.shape(problem.y)[1:])
    grid_problem = problem.replace(grid, y_dummy)
    P = controls["P"] if problem.trainable_readout else problem.P
    z = forward(grid_problem, controls)[-1] @ np.asarray(P).T
    value = np.sign(z[:, 0]) if z.shape[1] == 1 else np.argmax(z, axis=1)
    ax.contourf(gx, gy, value.reshape(gx.shape), cmap="coolwarm", alpha=0.3)
    ax.scatter(x2[:, 0], x2[:, 1], c=_labels(problem.y), cmap="coolwarm", s=12,
               edgecolors="k", linewidths=0.2)
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    return ax


def states_and_costates(t, states, costates, *, samples=(0,), coordinate=0, axes=None):
    """One coordinate of the states and of the costates over t, side by side (two axes)."""
    axes = _axes(axes, 2)
    for i in samples:
        axes[0].plot(t, states[:, i, coordinate], label=f"sample {i}")
        axes[1].plot(t, costates[:, i, coordinate], label=f"sample {i}")
    axes[0].set_title(f"state x[{coordinate}](t)")
    axes[1].set_title(f"costate p[{coordinate}](t)")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend(fontsize="small")
    return axes


def decay(t, values, fit=None, *, label=None, ax=None):
    """A curve on a log axis, with its fitted exponential over the fit window (and plateau)."""
    ax = _axes(ax)
    t = np.asarray(t, float)
    line, = ax.semilogy(t, values, label=label)
    if fit is not None:
        inside = (t >= fit.window[0]) & (t <= fit.window[1])
        ax.semilogy(t[inside], fit.predict(t[inside]), "--", color=line.get_color(),
                    label=f"fit mu = {fit.mu:.3g} (R^2 {fit.r2:.3f})")
        ax.axvspan(*fit.window, color=line.get_color(), alpha=0.08)
        if fit.plateau is not None:
            ax.axhline(fit.plateau, color=line.get_color(), ls=":", lw=1,
                       label=f"plateau {fit.plateau:.2g}")
    ax.set_xlabel("t")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize="small")
    return ax


def control_heatmap(t, iterations, norms, *, ax=None):
    """``|u(t)|`` over (t, iteration) as a heat map; ``norms`` (n_iterations, n_steps)."""
    import matplotlib.colors as colors

    ax = _axes(ax)
    norms = np.asarray(norms, float)
    positive = norms[norms > 0]
    norm = colors.LogNorm(vmin=max(positive.min(), positive.max() * 1e-8), vmax=positive.max()) \
        if positive.size else None
    mesh = ax.pcolormesh(np.asarray(t)[:norms.shape[1] + 1], np.arange(len(iterations) + 1),
                         np.where(norms > 0, norms, np.nan), norm=norm, shading="flat")
    ax.set_yticks(np.arange(len(iterations)) + 0.5, [str(i) for i in iterations])
    ax.set_xlabel("t")
    ax.set_ylabel("iteration")
    ax.figure.colorbar(mesh, ax=ax, label="|u(t)|")
    return ax


def training_curves(histories, *, x="iteration", y="cost", ax=None):
    """Training curves of several runs on one axis.

    ``histories``: dict label -> history (``result.history`` or ``run.history``); ``x`` is
    "iteration" or "elapsed" (seconds).
    """
    ax = _axes(ax)
    for label, hist in histories.items():
        ax.semilogy(hist[x], hist[y], label=label)
    ax.set_xlabel("seconds" if x == "elapsed" else x)
    ax.set_ylabel(y)
    ax.legend(fontsize="small")
    return ax


def scaling(x, values, *, slopes=(-1.0,), label="J", xlabel="T", ax=None):
    """A log-log plot of ``values`` against ``x`` with reference slopes through the first
    point."""
    ax = _axes(ax)
    x = np.asarray(x, float)
    values = np.asarray(values, float)
    ax.loglog(x, values, "o-", label=label)
    for s in slopes:
        ax.loglog(x, values[0] * (x / x[0]) ** s, ":", color="0.5", label=f"slope {s:g}")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize="small")
    return ax


def plot_run(run, directory=None, formats=("png", "pdf")):
    """The standard figures of a run into ``directory`` (default: the run's); returns the
    written paths. Uses the final checkpoint and, for the heat map, all checkpoints."""
    import matplotlib.pyplot as plt

    from .analysis import analyze_run, step_norms

    directory = directory or run.directory
    problem = run.problem()
    result = analyze_run(run)
    c = result["curves"]
    figures = {}

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, t, label in (("error", c["t"], "training error phi(x(t))"),
                          ("control_norm", c["t"][:-1], "|u(t)|"),
                          ("costate_norm", c["t"], "|p(t)|")):
        decay(t, c[key], result["fit_" + {"error": "error", "control_norm": "control",
                                           "costate_norm": "costate"}[key]],
              label=label, ax=ax)
    ax.set_title(f"decay in t (iteration {result['iteration']})")
    figures["decay"] = fig

    xs, ps = run.states(), run.costates()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    states_and_costates(run.t, xs, ps, samples=range(min(3, xs.shape[1])),
                        coordinate=problem.dim - 1, axes=axes)
    figures["states_costates"] = fig

    if problem.dim >= 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        T = problem.T
        trajectories(xs, problem.y[:xs.shape[1]] if np.ndim(problem.y) == 1 else None,
                     times=(0.0, T / 2, T), t=run.t, ax=ax)
        figures["trajectories"] = fig

    if len(run.checkpoints) > 1:
        norms = [step_norms(problem, run.controls(i)) for i in run.checkpoints]
        fig, ax = plt.subplots(figsize=(7, 4))
        control_heatmap(run.t, run.checkpoints, norms, ax=ax)
        figures["control_heatmap"] = fig

    fig, ax = plt.subplots(figsize=(6, 4))
    training_curves({str(run.attrs["method"]): run.history}, ax=ax)
    figures["training"] = fig

    return _save(figures, directory, formats)


def _save(figures, directory, formats):
    """Write each figure (name -> Figure) in each format; close them; return the paths."""
    import os

    import matplotlib.pyplot as plt

    written = []
    for name, fig in figures.items():
        fig.tight_layout()
        for ext in formats:
            path = os.path.join(directory, f"{name}.{ext}")
            fig.savefig(path, dpi=120)
            written.append(path)
        plt.close(fig)
    return written


def plot_sweep(rows, key, directory, formats=("png", "pdf")):
    """Log-log plots of the final error and J against ``key`` (one line per group)."""
    import matplotlib.pyplot as plt

    from .analysis import analyze_sweep

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for entry in analyze_sweep(rows, key):
        label = ", ".join(f"{k.split('.')[-1]}={entry[k]}" for k in entry
                          if "." in k and k != key) or "runs"
        slopes = (-1.0, -2.0) if key.endswith(".T") else (1.0,)
        scaling(entry["values"], entry["loss"], slopes=slopes, label=f"error ({label})",
                xlabel=key, ax=axes[0])
        scaling(entry["values"], entry["cost"], slopes=slopes[:1], label=f"J ({label})",
                xlabel=key, ax=axes[1])
    return _save({f"scaling_{key.split('.')[-1]}": fig}, directory, formats)
