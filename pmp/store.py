"""HDF5 run files: ``DIR/run.h5``.

Layout (format "pmp-run", version 1)::

    /                      attrs: format, format_version, pmp_version, created, status,
                                  method, problem (JSON of Problem.config()), options (JSON)
    /t                     (n_steps + 1,) time grid, a dimension scale
    /data/x                (n_samples, dim) inputs after lifting
    /data/y                targets as given
    /history/<column>      one entry per iterate (resizable): iteration, cost, terminal,
                           running, regularization, loss, grad_norm, step_size, wall_time,
                           elapsed
    /checkpoints/<iteration, 8 digits>/
                           attrs: iteration, cost
                           states, costates (n_steps + 1, n_stored, dim), with /t attached
                           to their first axis; controls/<name>
    /final                 a soft link to the last checkpoint

Files are created with mode ``"w-"``: an existing file is never overwritten.
"""
import json
import os
from datetime import datetime, timezone

import h5py
import numpy as np

from .sweeps import evaluate

FORMAT = "pmp-run"
FORMAT_VERSION = 1


class RunWriter:
    """Write one run file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create; it must not exist.
    problem : Problem
    method : str
    options : dict
        Trainer options (JSON-serialisable), stored for the record.
    trajectory_samples : int, optional
        Store states and costates of the first this many samples only (default: all).
    """

    def __init__(self, path, problem, method, options=None, trajectory_samples=None):
        from . import __version__

        self.problem = problem
        self.n_stored = problem.n_samples if trajectory_samples is None else min(
            int(trajectory_samples), problem.n_samples)
        self.file = h5py.File(path, "w-")
        f = self.file
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, pmp_version=__version__,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       status="running", method=str(method),
                       problem=json.dumps(problem.config()),
                       options=json.dumps(options or {}, default=str))
        t = f.create_dataset("t", data=problem.t)
        t.make_scale("t")
        f.create_dataset("data/x", data=problem.x)
        f.create_dataset("data/y", data=problem.y)
        self.history = f.create_group("history")
        f.create_group("checkpoints")

    def append_history(self, columns, rows):
        """Append rows (tuples in the order of ``columns``) to /history."""
        if not rows:
            return
        data = np.asarray(rows, dtype=np.float64)
        for j, name in enumerate(columns):
            if name not in self.history:
                self.history.create_dataset(name, shape=(0,), maxshape=(None,),
                                            dtype=np.float64, chunks=(1024,))
            ds = self.history[name]
            ds.resize((ds.shape[0] + len(data),))
            ds[-len(data):] = data[:, j]

    def checkpoint(self, iteration, controls):
        """Store controls, states and costates of ``iteration``; /final points to it."""
        parts, _, xs, ps = evaluate(self.problem, controls)
        group = self.file.create_group(f"checkpoints/{iteration:08d}")
        group.attrs.update(iteration=iteration, cost=parts["total"])
        for name, arr in (("states", xs), ("costates", ps)):
            ds = group.create_dataset(name, data=arr[:, :self.n_stored])
            ds.dims[0].attach_scale(self.file["t"])
            ds.dims[0].label, ds.dims[1].label, ds.dims[2].label = "t", "sample", "dim"
        for name, arr in controls.items():
            group.create_dataset(f"controls/{name}", data=arr)
        if "final" in self.file:
            del self.file["final"]
        self.file["final"] = h5py.SoftLink(group.name)
        self.file.flush()
        return parts

    def close(self, status):
        self.file.attrs["status"] = status
        self.file.close()


class Run:
    """Read-only, lazy view of a run file (:func:`load_run`).

    Attributes
    ----------
    attrs : dict
        Root attributes (``problem`` and ``options`` decoded from JSON).
    t : ndarray, shape (n_steps + 1,)
    history : dict
        column -> ndarray.
    checkpoints : list of int
        Stored iterations.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.file = h5py.File(self.path, "r")
        if self.file.attrs.get("format") != FORMAT:
            self.file.close()
            raise ValueError(f"{self.path} is not a pmp run file (format attribute "
                             f"{FORMAT!r} missing)")
        attrs = dict(self.file.attrs)
        for key in ("problem", "options"):
            attrs[key] = json.loads(attrs[key])
        self.attrs = attrs

    @property
    def t(self):
        return self.file["t"][()]

    @property
    def history(self):
        return {k: v[()] for k, v in self.file["history"].items()}

    @property
    def checkpoints(self):
        return sorted(int(k) for k in self.file["checkpoints"])

    def checkpoint(self, iteration=None):
        """The h5py group of a checkpoint (default: the final one); datasets stay lazy."""
        if iteration is None:
            return self.file["final"]
        return self.file[f"checkpoints/{iteration:08d}"]

    def controls(self, iteration=None):
        return {k: v[()] for k, v in self.checkpoint(iteration)["controls"].items()}

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        a = self.attrs
        return (f"Run({self.path!r}, status={a['status']!r}, method={a['method']!r}, "
                f"checkpoints={self.checkpoints})")


def load_run(path):
    """Open a run file (or a run directory holding ``run.h5``) read-only."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "run.h5")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no run file at {path}")
    return Run(path)
