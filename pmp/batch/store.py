"""Run directories and their HDF5 files: a public, versioned contract.

A run lives in a directory ``DIR``::

    DIR/config.toml                  the configuration (written once)
    DIR/run.h5                       the index, format "pmp-run" (read this one)
    DIR/data.h5                      inputs and targets (written once)
    DIR/checkpoints/<8 digits>.h5    one file per checkpoint (written once)

``run.h5`` (format version 1)::

    /                      attrs: format = "pmp-run", format_version, pmp_version, config
                                  (the full TOML text), created, updated, status (running,
                                  finished, diverged, interrupted), message, method,
                                  rng_state (JSON of the sampling RNG at the last checkpoint)
    /t                     (n_steps + 1,) time grid, an HDF5 dimension scale
    /data                  external link to data.h5:/data with x (n_samples, dim), after
                           lifting, and y
    /history/<column>      one entry per iteration up to the last checkpoint: iteration,
                           cost, terminal, running, regularization, loss, grad_norm,
                           step_size, wall_time, elapsed, rho, accepted, gain, nonzero
    /checkpoints/<iteration, 8 digits>
                           external link to a checkpoint file's /checkpoint group:
                           attrs iteration, cost (and the other cost parts), datasets states
                           and costates (n_steps + 1, n_stored, dim) with its own /t attached
                           as the dimension scale of axis 0, controls/<name>, and resume/
                           (what :func:`pmp.iterate` needs to continue exactly)
    /final                 soft link to the last checkpoint

Crash safety: every file is written under a temporary name and moved into place with
``os.replace`` (atomic), checkpoint before index, so after ``kill -9`` at any moment
``run.h5`` is a complete index whose checkpoints are complete. A reader (a notebook) opens
``run.h5`` read-only at any time, also while the run trains: it sees the index as of its last
replacement, and its checkpoint files never change.
"""
import json
import os
from datetime import datetime, timezone

import h5py
import numpy as np

from .._version import __version__
from .config import parse_config

FORMAT = "pmp-run"
FORMAT_VERSION = 1


class RunFileError(ValueError):
    """A run directory or file that cannot be used."""


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_h5(path):
    """An h5py file written to ``path + '.tmp'``; call ``_commit(f, path)`` to publish."""
    tmp = f"{path}.tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    return h5py.File(tmp, "w")


def _commit(f, path):
    f.flush()
    name = f.filename
    f.close()
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(name, path)


# ------------------------------------------------------------ nested state <-> HDF5
def write_tree(group, name, obj):
    """Store ``obj`` (dict, list, ndarray, scalar, str, None, nested) under ``group[name]``."""
    if isinstance(obj, dict):
        sub = group.create_group(name)
        sub.attrs["kind"] = "dict"
        for key, value in obj.items():
            write_tree(sub, str(key), value)
    elif isinstance(obj, (list, tuple)):
        sub = group.create_group(name)
        sub.attrs["kind"] = "list"
        sub.attrs["length"] = len(obj)
        for i, value in enumerate(obj):
            write_tree(sub, str(i), value)
    elif obj is None:
        group.create_group(name).attrs["kind"] = "none"
    elif isinstance(obj, str):
        group.create_group(name).attrs.update(kind="str", value=obj)
    else:
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")
        group.create_dataset(name, data=arr)


def read_tree(node):
    """Inverse of :func:`write_tree`."""
    if isinstance(node, h5py.Dataset):
        value = node[()]
        return value if node.shape else value.item() if hasattr(value, "item") else value
    kind = node.attrs["kind"]
    if kind == "dict":
        return {key: read_tree(node[key]) for key in node}
    if kind == "list":
        return [read_tree(node[str(i)]) for i in range(int(node.attrs["length"]))]
    if kind == "str":
        return str(node.attrs["value"])
    return None


def _resume_to_tree(resume):
    oracle = dict(resume["oracle"])
    oracle["rng"] = json.dumps(oracle["rng"])
    return dict(method=resume["method"], oracle=oracle, first=resume["first"],
                iteration=resume["iteration"], elapsed=resume["elapsed"])


def _resume_from_tree(tree, controls):
    oracle = dict(tree["oracle"])
    oracle["rng"] = json.loads(oracle["rng"])
    return dict(controls=controls, method=tree["method"], oracle=oracle,
                first=tree["first"], iteration=tree["iteration"], elapsed=tree["elapsed"])


# ------------------------------------------------------------------------- writer
class RunWriter:
    """Write a run directory as training goes.

    Parameters
    ----------
    directory : str
        The run directory (created; must not hold a run unless ``resume=True``).
    problem : Problem
    config_text : str
        The configuration (TOML) that produced the run.
    method : str
    trajectory_samples : int, optional
        Store states and costates of the first this many samples only (default: all).
    resume : bool
        Continue an existing run: the history up to its last checkpoint is kept.
    """

    def __init__(self, directory, problem, config_text, method, trajectory_samples=None,
                 resume=False):
        self.directory = os.fspath(directory)
        self.problem = problem
        self.n_stored = problem.n_samples if trajectory_samples is None else max(
            1, min(int(trajectory_samples), problem.n_samples))
        self.index = os.path.join(self.directory, "run.h5")
        self.attrs = dict(format=FORMAT, format_version=FORMAT_VERSION,
                          pmp_version=__version__, config=config_text, created=_now(),
                          status="running", message="", method=str(method), rng_state="")
        self.history = {}
        self.checkpoints = []
        os.makedirs(os.path.join(self.directory, "checkpoints"), exist_ok=True)
        if resume:
            with h5py.File(self.index, "r") as f:
                self.attrs.update({k: f.attrs[k] for k in ("created", "config")})
                self.history = {k: list(v[()]) for k, v in f["history"].items()}
                self.checkpoints = sorted(int(k) for k in f["checkpoints"])
            return
        with open(os.path.join(self.directory, "config.toml"), "w") as f:
            f.write(config_text)
        data = _atomic_h5(os.path.join(self.directory, "data.h5"))
        data.create_dataset("data/x", data=problem.x)
        data.create_dataset("data/y", data=problem.y)
        _commit(data, os.path.join(self.directory, "data.h5"))
        self._write_index()

    def append(self, columns, row):
        """Record one history row (kept in memory until the next checkpoint)."""
        for name, value in zip(columns, row):
            self.history.setdefault(name, []).append(float(value))

    def truncate(self, iteration):
        """Drop history rows after ``iteration`` (a resumed run redoes them)."""
        if "iteration" in self.history:
            keep = int(np.searchsorted(np.asarray(self.history["iteration"]), iteration,
                                       side="right"))
            self.history = {k: v[:keep] for k, v in self.history.items()}

    def checkpoint(self, state, evaluation, status="running", message=""):
        """Write the checkpoint of a :class:`pmp.TrainState`, then the index.

        ``evaluation`` is ``(parts, xs, ps)``: the cost parts on all samples, the states and
        the costates at ``state.controls`` (see :func:`pmp.evaluate`)."""
        iteration = int(state.iteration)
        parts, xs, ps = evaluation
        path = os.path.join(self.directory, "checkpoints", f"{iteration:08d}.h5")
        f = _atomic_h5(path)
        t = f.create_dataset("t", data=self.problem.t)
        t.make_scale("t")
        group = f.create_group("checkpoint")
        group.attrs.update(iteration=iteration, cost=parts["total"],
                           **{k: v for k, v in parts.items() if k != "total"})
        for name, arr in (("states", xs), ("costates", ps)):
            ds = group.create_dataset(name, data=arr[:, :self.n_stored])
            ds.dims[0].attach_scale(t)
            ds.dims[0].label, ds.dims[1].label, ds.dims[2].label = "t", "sample", "dim"
        for name, arr in state.controls.items():
            group.create_dataset(f"controls/{name}", data=arr)
        if state.resume is not None:
            write_tree(group, "resume", _resume_to_tree(state.resume))
            self.attrs["rng_state"] = json.dumps(state.resume["oracle"]["rng"])
        _commit(f, path)
        if iteration not in self.checkpoints:
            self.checkpoints.append(iteration)
        self.attrs.update(status=status, message=message)
        self._write_index()

    def set_status(self, status, message=""):
        self.attrs.update(status=status, message=message)
        self._write_index()

    def _write_index(self):
        f = _atomic_h5(self.index)
        self.attrs["updated"] = _now()
        f.attrs.update(self.attrs)
        t = f.create_dataset("t", data=self.problem.t)
        t.make_scale("t")
        f["data"] = h5py.ExternalLink("data.h5", "/data")
        history = f.create_group("history")
        for name, values in self.history.items():
            history.create_dataset(name, data=np.asarray(values, dtype=np.float64),
                                   maxshape=(None,), chunks=True)
        checkpoints = f.create_group("checkpoints")
        for it in self.checkpoints:
            checkpoints[f"{it:08d}"] = h5py.ExternalLink(f"checkpoints/{it:08d}.h5",
                                                         "/checkpoint")
        if self.checkpoints:
            f["final"] = h5py.SoftLink(f"/checkpoints/{self.checkpoints[-1]:08d}")
        if os.path.exists(os.path.join(self.directory, "analysis.h5")):
            f["analysis"] = h5py.ExternalLink("analysis.h5", "/analysis")
        _commit(f, self.index)


def write_analysis(directory, tree, index=True):
    """Store an analysis (nested dict) as ``DIR/analysis.h5:/analysis`` and, when ``index``,
    link it as ``/analysis`` from ``DIR/run.h5`` (both replaced atomically)."""
    import shutil

    path = os.path.join(directory, "analysis.h5")
    f = _atomic_h5(path)
    write_tree(f, "analysis", tree)
    f["analysis"].attrs["created"] = _now()
    _commit(f, path)
    run_file = os.path.join(directory, "run.h5")
    if index and os.path.exists(run_file):
        tmp = f"{run_file}.tmp"
        shutil.copyfile(run_file, tmp)
        with h5py.File(tmp, "r+") as g:
            if "analysis" in g:
                del g["analysis"]
            g["analysis"] = h5py.ExternalLink("analysis.h5", "/analysis")
        os.replace(tmp, run_file)
    return path


# ------------------------------------------------------------------------- reader
class Run:
    """Read-only, lazy view of a run (:func:`load_run`).

    Attributes
    ----------
    attrs : dict
        Root attributes of run.h5.
    path : str
        run.h5.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as err:
            raise RunFileError(f"{self.path} is not a readable HDF5 file ({err})") from None
        if self.file.attrs.get("format") != FORMAT:
            self.file.close()
            raise RunFileError(f"{self.path} is not a pmp run file (format attribute "
                               f"{FORMAT!r} missing)")
        self.attrs = dict(self.file.attrs)

    @property
    def directory(self):
        return os.path.dirname(self.path)

    @property
    def t(self):
        return self.file["t"][()]

    @property
    def x(self):
        return self.file["data/x"][()]

    @property
    def y(self):
        return self.file["data/y"][()]

    @property
    def history(self):
        """column -> ndarray (one entry per iteration up to the last checkpoint)."""
        return {k: v[()] for k, v in self.file["history"].items()}

    @property
    def checkpoints(self):
        """Stored iterations, ascending."""
        return sorted(int(k) for k in self.file["checkpoints"])

    def checkpoint(self, iteration=None):
        """The h5py group of a checkpoint (default: the final one); datasets stay lazy."""
        if iteration is None:
            if "final" not in self.file:
                raise RunFileError(f"{self.path} has no checkpoint yet")
            return self.file["final"]
        key = f"checkpoints/{int(iteration):08d}"
        if key not in self.file:
            raise RunFileError(f"{self.path} has no checkpoint at iteration {iteration}; "
                               f"stored: {self.checkpoints}")
        return self.file[key]

    def controls(self, iteration=None):
        return {k: v[()] for k, v in self.checkpoint(iteration)["controls"].items()}

    def states(self, iteration=None):
        return self.checkpoint(iteration)["states"][()]

    def costates(self, iteration=None):
        return self.checkpoint(iteration)["costates"][()]

    def resume_state(self, iteration=None):
        """The ``resume`` argument of :func:`pmp.iterate` for a checkpoint."""
        group = self.checkpoint(iteration)
        return _resume_from_tree(read_tree(group["resume"]), self.controls(iteration))

    def config(self):
        """The run's :class:`~pmp.batch.config.RunConfig`."""
        return parse_config(self.attrs["config"], source=f"{self.path} (config)")

    def problem(self):
        """The run's Problem, rebuilt from its configuration."""
        return self.config().build_problem()

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
    """Open a run (its directory or its run.h5) read-only."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "run.h5")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no run file at {path}")
    return Run(path)
