"""Run directories and their HDF5 files: a public, versioned contract.

A run lives in a directory ``DIR``::

    DIR/config.toml                  the configuration
    DIR/run.h5                       the index, format "pmp-run" (read this one)
    DIR/data.h5                      inputs and targets (written once; resume trains on it)
    DIR/checkpoints/<8 digits>.h5    one file per checkpoint (written once)
    DIR/analysis.h5                  what ``pmp analyze`` found (its own file, see below)

``run.h5`` (format version 1)::

    /                      attrs: format = "pmp-run", format_version, pmp_version, config
                                  (the full TOML text), created, updated, status (running,
                                  finished, diverged, interrupted), message, method,
                                  rng_state (JSON of the sampling RNG at the last checkpoint),
                                  and once the run ends (full batch only) best_iteration and
                                  best_cost: its iterate of lowest cost J
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
                           (what :func:`pmp.iterate` needs to continue exactly; its best/
                           the best iterate so far, so a resumed run keeps the same one)
    /final                 soft link to the last checkpoint written: the run's last iterate
                           (the last finite one after a divergence), or its best iterate when
                           the run was asked for it ([train] keep_best = true)
    /best                  soft link to the checkpoint of the best iterate (best_iteration),
                           written when the run ends

A run of a staged problem (variable width) stores every stage in a group of its own, on its
own time axis (a run without stages has none of this)::

    /                      attrs also stages (S), durations, switch_times
    /stage_<j>/t           (n_steps[j] + 1,) stage j's grid, a dimension scale "t"; the group
                           has attrs dim, n_steps, T, start, enter (the transition's kind)
    /t                     the stages' grids one after the other (not a scale)
    checkpoint files:      /stage_<j>/t and /t as in run.h5, and /checkpoint/stage_<j>/ with
                           states, costates (axis 0 on /stage_<j>/t), controls/<name> (a
                           trainable transition's: controls/enter); /checkpoint has the attrs
                           durations and switch_times of its iterate

Every dataset carries an HDF5 Fletcher-32 checksum, so a damaged file fails to read
instead of giving wrong numbers.

Crash safety: every file is written under a temporary name of its own and moved into place
with ``os.replace`` (atomic), checkpoint before index, so after ``kill -9`` at any moment
``run.h5`` is a complete index whose checkpoints are complete. A reader (a notebook) opens
``run.h5`` read-only at any time, also while the run trains: it sees the index as of its last
replacement, and its checkpoint files never change. ``analysis.h5`` (group ``/analysis``)
is written by ``pmp analyze`` only, never by the trainer, so an analysis can run beside the
training. Before a write the free space is checked: a full disk ends the command with one
line and leaves the last checkpoint as it was.
"""
import contextlib
import errno
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone

import numpy as np

from .._kernels import lazy_module
from .._version import __version__
from ..stages import is_staged
from .config import parse_config

h5py = lazy_module("h5py")  # imported when a file is first read or written

FORMAT = "pmp-run"
FORMAT_VERSION = 1


class RunFileError(ValueError):
    """A run directory or file that cannot be used."""


class DiskFull(RunFileError):
    """A write ran out of space; what was published before is intact."""


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_h5(path, needed=0):
    """An h5py file to write, published at ``path`` (atomically) when the block ends.

    It is written under a temporary name beside ``path``, unique to this writer; if the
    block raises, the temporary file is removed and nothing is published. ``needed``:
    bytes the file will take, checked against the free space first. ``OSError`` becomes a
    :class:`RunFileError` (:class:`DiskFull` for a full disk) naming ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    check_space(directory, needed, path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    os.close(fd)
    f = None
    try:
        f = h5py.File(tmp, "w")
        yield f
        f.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        _discard(f, tmp)
        if isinstance(err, OSError):
            raise _write_error(err, path) from None
        raise


def _discard(f, tmp):
    """Close and remove an unpublished temporary file."""
    try:
        if f is not None and f.id.valid:
            f.close()
    except Exception:  # noqa: BLE001 - a file whose write failed may fail to close
        pass
    if os.path.exists(tmp):
        os.remove(tmp)


# room kept free beyond a file's own size: HDF5's metadata and the file system's blocks
SPACE_MARGIN = 1 << 20


def check_space(directory, needed, path):
    """Raise :class:`DiskFull` when ``directory`` has less than ``needed`` bytes (plus a
    margin) free."""
    free = shutil.disk_usage(directory).free
    if free < needed + SPACE_MARGIN:
        raise DiskFull(f"no space left on device writing {path} ({needed + SPACE_MARGIN} "
                       f"bytes needed, {free} free)")


def _write_error(err, path):
    """A :class:`RunFileError` naming ``path`` (:class:`DiskFull` when the disk is full)."""
    full = getattr(err, "errno", None) == errno.ENOSPC or "No space left" in str(err)
    return (DiskFull if full else RunFileError)(
        f"{'no space left on device' if full else str(err).splitlines()[0]} writing {path}")


def _size(*objects):
    """Bytes of the arrays in ``objects`` (nested dicts and lists followed)."""
    total = 0
    for obj in objects:
        if isinstance(obj, dict):
            total += _size(*obj.values())
        elif isinstance(obj, (list, tuple)):
            total += _size(*obj)
        elif isinstance(obj, np.ndarray):
            total += obj.nbytes
    return total


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
        create_dataset(group, name, arr)


def create_dataset(group, name, data, **options):
    """``group[name] = data`` with a Fletcher-32 checksum (scalars have none: HDF5 stores
    them in the object header, which it checks itself)."""
    data = np.asarray(data)
    if data.ndim == 0 or data.size == 0:
        return group.create_dataset(name, data=data, **options)
    return group.create_dataset(name, data=data, fletcher32=True, **options)


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
                iteration=resume["iteration"], elapsed=resume["elapsed"],
                best=resume.get("best"))


def _resume_from_tree(tree, controls):
    oracle = dict(tree["oracle"])
    oracle["rng"] = json.loads(oracle["rng"])
    return dict(controls=controls, method=tree["method"], oracle=oracle,
                first=tree["first"], iteration=tree["iteration"], elapsed=tree["elapsed"],
                best=tree.get("best"))


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
        if is_staged(problem):
            self.attrs["stages"] = len(problem.stages)
        self.durations = None  # the stage durations of the last checkpoint, when trained
        self.history = {}
        self.checkpoints = []  # in the order written: the last one is /final
        self.best = None  # the iteration /best links to
        os.makedirs(os.path.join(self.directory, "checkpoints"), exist_ok=True)
        if resume:
            with h5py.File(self.index, "r") as f:
                self.attrs.update({k: f.attrs[k] for k in ("created", "config")})
                if "durations" in f.attrs:
                    self.durations = f.attrs["durations"]
                self.history = {k: list(v[()]) for k, v in f["history"].items()}
                self.checkpoints = sorted(int(k) for k in f["checkpoints"])
            return
        write_config(self.directory, config_text)
        with atomic_h5(os.path.join(self.directory, "data.h5"),
                       _size(problem.x, problem.y)) as data:
            create_dataset(data, "data/x", problem.x)
            create_dataset(data, "data/y", problem.y)
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
        if is_staged(self.problem):
            stored = [[a[:, :self.n_stored] for a in xs], [a[:, :self.n_stored] for a in ps]]
        else:
            stored = [xs[:, :self.n_stored], ps[:, :self.n_stored]]
        with atomic_h5(path, _size(*stored, state.controls, state.resume)) as f:
            group = f.create_group("checkpoint")
            group.attrs.update(iteration=iteration, cost=parts["total"],
                               **{k: v for k, v in parts.items() if k != "total"})
            if is_staged(self.problem):
                self.durations = getattr(state, "durations", None)
                _write_stages(f, group, self._problem_now(), *stored, state.controls)
            else:
                _write_trajectories(f, group, self.problem.t, *stored, state.controls)
            if state.resume is not None:
                write_tree(group, "resume", _resume_to_tree(state.resume))
        if state.resume is not None:
            self.attrs["rng_state"] = json.dumps(state.resume["oracle"]["rng"])
        if iteration in self.checkpoints:  # written again: it becomes /final
            self.checkpoints.remove(iteration)
        self.checkpoints.append(iteration)
        self.attrs.update(status=status, message=message)
        self._write_index()

    def record_best(self, iteration, cost):
        """Name the run's best iterate (a stored checkpoint, or one written before the next
        index write): attributes best_iteration and best_cost, and the link /best."""
        self.best = int(iteration)
        self.attrs.update(best_iteration=self.best, best_cost=float(cost))

    def set_status(self, status, message=""):
        self.attrs.update(status=status, message=message)
        self._write_index()

    def set_config(self, config_text):
        """Replace the run's configuration (an extended resume): index and config.toml."""
        self.attrs["config"] = config_text
        write_config(self.directory, config_text)

    def forget_checkpoints_after(self, iteration):
        """Drop the checkpoints after ``iteration`` from the index (a resume that falls back
        to an earlier checkpoint redoes them; their files are renamed, never deleted)."""
        for it in [c for c in self.checkpoints if c > iteration]:
            path = os.path.join(self.directory, "checkpoints", f"{it:08d}.h5")
            if os.path.exists(path):
                os.replace(path, f"{path}.damaged")
            self.checkpoints.remove(it)

    def _problem_now(self):
        """The problem of the last checkpoint: with its durations when they are trained."""
        if getattr(self, "durations", None) is None:
            return self.problem
        return self.problem.with_durations([float(T) for T in self.durations])

    def _write_index(self):
        history = {k: np.asarray(v, dtype=np.float64) for k, v in self.history.items()}
        with atomic_h5(self.index, _size(self.problem.t, *history.values())) as f:
            self.attrs["updated"] = _now()
            f.attrs.update(self.attrs)
            if is_staged(self.problem):
                _write_stage_scales(f, self._problem_now())
            else:
                t = create_dataset(f, "t", self.problem.t)
                t.make_scale("t")
            f["data"] = h5py.ExternalLink("data.h5", "/data")
            group = f.create_group("history")
            for name, values in history.items():
                create_dataset(group, name, values, maxshape=(None,), chunks=True)
            checkpoints = f.create_group("checkpoints")
            for it in self.checkpoints:
                checkpoints[f"{it:08d}"] = h5py.ExternalLink(f"checkpoints/{it:08d}.h5",
                                                             "/checkpoint")
            if self.checkpoints:
                f["final"] = h5py.SoftLink(f"/checkpoints/{self.checkpoints[-1]:08d}")
            if self.best in self.checkpoints:
                f["best"] = h5py.SoftLink(f"/checkpoints/{self.best:08d}")


def _write_trajectories(f, group, t, states, costates, controls):
    """An unstaged checkpoint's ``/t`` (a dimension scale), states, costates and controls."""
    t = create_dataset(f, "t", t)
    t.make_scale("t")
    for name, arr in (("states", states), ("costates", costates)):
        ds = create_dataset(group, name, arr)
        ds.dims[0].attach_scale(t)
        ds.dims[0].label, ds.dims[1].label, ds.dims[2].label = "t", "sample", "dim"
    for name, arr in controls.items():
        create_dataset(group, f"controls/{name}", arr)


def _stage_attrs(problem, j):
    """What a stage's groups say about it: dim, n_steps, T, start, enter."""
    tr = problem.enter_transition(j)
    return dict(dim=problem.dims[j], n_steps=problem.n_steps[j], T=problem.durations[j],
                start=float(problem.starts[j]), enter="" if tr is None else tr.kind)


def _write_stage_scales(f, problem):
    """``/stage_<j>/t`` (each stage's grid on the whole horizon, a dimension scale named
    "t"), ``/t`` (their concatenation) and the root's ``durations``; returns the scales."""
    scales = []
    for j, t in enumerate(problem.t):
        scale = create_dataset(f, f"stage_{j}/t", t)
        scale.make_scale("t")
        f[f"stage_{j}"].attrs.update(_stage_attrs(problem, j))
        scales.append(scale)
    create_dataset(f, "t", np.concatenate(problem.t))
    f.attrs.update(durations=np.asarray(problem.durations, float),
                   switch_times=np.asarray(problem.switch_times, float))
    return scales


def _write_stages(f, group, problem, states, costates, controls):
    """A staged checkpoint: per stage ``/checkpoint/stage_<j>/`` with states and costates
    (axis 0 on the file's ``/stage_<j>/t``) and controls (a trainable transition's is
    ``controls/enter``); the durations as attributes of ``/checkpoint``."""
    scales = _write_stage_scales(f, problem)
    group.attrs.update(durations=np.asarray(problem.durations, float),
                       switch_times=np.asarray(problem.switch_times, float))
    for j, scale in enumerate(scales):
        sub = group.create_group(f"stage_{j}")
        sub.attrs.update(_stage_attrs(problem, j))
        for name, arr in (("states", states[j]), ("costates", costates[j])):
            ds = create_dataset(sub, name, arr)
            ds.dims[0].attach_scale(scale)
            ds.dims[0].label, ds.dims[1].label, ds.dims[2].label = "t", "sample", "dim"
        for name, arr in controls[j].items():
            create_dataset(sub, f"controls/{name}", arr)


def write_config(directory, text):
    """``DIR/config.toml``, replaced atomically."""
    write_text(os.path.join(directory, "config.toml"), text)


def write_text(path, text):
    """A text file, replaced atomically (a temporary file of its own, then os.replace)."""
    directory = os.path.dirname(os.path.abspath(path))
    check_space(directory, len(text.encode()), path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError):
            raise _write_error(err, path) from None
        raise


def write_analysis(directory, tree):
    """Store an analysis (nested dict) as ``DIR/analysis.h5:/analysis`` (replaced
    atomically; the trainer never writes this file, so this may run beside it)."""
    path = os.path.join(directory, "analysis.h5")
    with atomic_h5(path, SPACE_MARGIN) as f:
        write_tree(f, "analysis", tree)
        f["analysis"].attrs["created"] = _now()
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

    def data(self):
        """``(x, y)`` of ``data.h5``: the inputs after lifting and the targets."""
        path = os.path.join(self.directory, "data.h5")
        try:
            with h5py.File(path, "r") as f:
                return f["data/x"][()], f["data/y"][()]
        except (OSError, KeyError, TypeError) as err:
            raise RunFileError(f"the run's data file {path} is missing or damaged "
                               f"({str(err).splitlines()[0]})") from None

    @property
    def x(self):
        return self.data()[0]

    @property
    def y(self):
        return self.data()[1]

    def analysis(self):
        """What ``pmp analyze`` stored (``analysis.h5``) as a nested dict, or None."""
        path = os.path.join(self.directory, "analysis.h5")
        if not os.path.exists(path):
            return None
        try:
            with h5py.File(path, "r") as f:
                return read_tree(f["analysis"])
        except (OSError, KeyError) as err:
            raise RunFileError(f"{path} is damaged ({str(err).splitlines()[0]})") from None

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

    @property
    def staged(self):
        """True for a run of a staged problem (per-stage groups ``stage_<j>``)."""
        return "stages" in self.attrs

    @property
    def stage_t(self):
        """A staged run's time grid of every stage (a list), as of its last checkpoint."""
        return [self.file[f"stage_{j}/t"][()] for j in range(int(self.attrs["stages"]))]

    def _per_stage(self, group, read):
        if not self.staged:
            return read(group)
        return [read(group[f"stage_{j}"]) for j in range(int(self.attrs["stages"]))]

    def controls(self, iteration=None):
        """The controls of a checkpoint (default: the final one): a dict name -> array, or
        for a staged run a list of one dict per stage."""
        return self._read(iteration, lambda g: self._per_stage(
            g, lambda s: {k: v[()] for k, v in s["controls"].items()}))

    def states(self, iteration=None):
        """States (n_steps + 1, n_stored, dim); a list per stage for a staged run."""
        return self._read(iteration, lambda g: self._per_stage(g, lambda s: s["states"][()]))

    def costates(self, iteration=None):
        """Costates (n_steps + 1, n_stored, dim); a list per stage for a staged run."""
        return self._read(iteration, lambda g: self._per_stage(g, lambda s: s["costates"][()]))

    def durations(self, iteration=None):
        """A staged run's stage durations at a checkpoint (they change when trained);
        None for a run without stages."""
        if not self.staged:
            return None
        return self._read(iteration, lambda g: np.asarray(g.attrs["durations"], float))

    def resume_state(self, iteration=None):
        """The ``resume`` argument of :func:`pmp.iterate` for a checkpoint."""
        tree = self._read(iteration, lambda g: read_tree(g["resume"]))
        return _resume_from_tree(tree, self.controls(iteration))

    def _read(self, iteration, read):
        """``read(group)`` of a checkpoint; a damaged or missing file is a
        :class:`RunFileError` that names it."""
        try:
            return read(self.checkpoint(iteration))
        except (OSError, KeyError) as err:
            it = self.checkpoints[-1] if iteration is None and self.checkpoints else iteration
            path = os.path.join(self.directory, "checkpoints", f"{int(it or 0):08d}.h5")
            raise RunFileError(f"checkpoint {path} is damaged or missing "
                               f"({str(err).splitlines()[0]})") from None

    def config(self):
        """The run's :class:`~pmp.batch.config.RunConfig`."""
        return parse_config(self.attrs["config"], source=f"{self.path} (config)")

    def problem(self, iteration=None):
        """The run's Problem: its configuration on the data stored in ``data.h5``; for a
        staged run whose durations are trained, with the durations of checkpoint
        ``iteration`` (default: the final one) when there is one."""
        problem = self.config().build_problem(data=self.data())
        if not self.staged or not self.checkpoints:
            return problem
        durations = self.durations(iteration)
        if np.array_equal(durations, problem.durations):
            return problem
        return problem.with_durations([float(T) for T in durations])

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
