"""Parameter sweeps: the cartesian product of ``--grid section.key=v1,v2,...`` values.

Every point is an ordinary run directory named after its values (``T=2,lam=0.001``) inside
the sweep directory, next to ``sweep.csv`` and ``sweep.h5``, a table of the final metrics
per point. Running the same sweep again skips finished points and resumes interrupted ones.
Points run in this process (``workers=1``), on a local Dask cluster on the loopback
interface (``workers=N``), or on an existing cluster (``scheduler=ADDRESS``). Each point runs
with one BLAS thread, so results do not depend on the executor.
"""
import csv
import io
import itertools
import os
import re

import numpy as np

from .config import ConfigError, parse_config, parse_value
from .lock import DirectoryLock
from .store import RunFileError, atomic_h5, load_run, write_text
from .._kernels import lazy_module
from ..threads import threads as blas_threads

h5py = lazy_module("h5py")  # imported when a file is first read or written

SUMMARY = ("status", "iterations", "cost", "terminal", "running", "regularization", "loss",
           "grad_norm", "wall_time")


def parse_grid(items):
    """``["model.T=1,2", ...]`` -> ordered dict ``{"model.T": [1, 2], ...}``."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects section.key=v1,v2,..., got {item!r}")
        key, values = item.split("=", 1)
        key = key.strip()
        if "." not in key:
            raise ConfigError(f"--grid key must be section.key, got {key!r}")
        parsed = [parse_value(v) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ConfigError(f"--grid {key} has no values")
        if key in grid:
            raise ConfigError(f"--grid {key} given twice")
        grid[key] = parsed
    if not grid:
        raise ConfigError("a sweep needs at least one --grid section.key=v1,v2,...")
    return grid


def points(grid):
    """The cartesian product: a list of ``{"section.key": value}``."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def point_name(point):
    """A readable directory name: ``T=2,lam=0.001`` (key names without their section)."""
    short = [_short_key(k) for k in point]
    keys = short if len(set(short)) == len(short) else list(point)
    text = ",".join(f"{k}={v}" for k, v in zip(keys, point.values()))
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def run_point(config_text, directory, assignments, threads=1):
    """Run (or resume, or just read) one point; returns its summary row (a dict)."""
    from .runner import resume_run, train_run

    config = parse_config(config_text).with_overrides(
        [f"{k}={_toml(v)}" for k, v in assignments.items()])
    with blas_threads(threads):
        status = None
        if os.path.exists(os.path.join(directory, "run.h5")):
            with load_run(directory) as run:
                status = run.attrs["status"]
        if status in ("running", "interrupted"):
            resume_run(directory, stream=_Null())
        elif status not in ("finished", "diverged"):
            train_run(config, directory, stream=_Null())
    return summarize(directory, assignments)


def summarize(directory, assignments):
    with load_run(directory) as run:
        hist = run.history
        final = run.checkpoint()
        row = dict(assignments)
        row.update(status=str(run.attrs["status"]), iterations=int(final.attrs["iteration"]),
                   cost=float(final.attrs["cost"]),
                   **{k: float(final.attrs[k]) for k in ("terminal", "running",
                                                         "regularization", "loss")},
                   grad_norm=float(hist["grad_norm"][-1]) if len(hist.get("grad_norm", []))
                   else float("nan"),
                   wall_time=float(hist["elapsed"][-1]) if len(hist.get("elapsed", []))
                   else float("nan"),
                   directory=os.path.basename(directory))
    return row


def _short_key(key):
    """A grid key without its section: ``model.T`` -> ``T``, ``stages.1.T`` -> ``stage1.T``."""
    section, rest = key.split(".", 1)
    if section == "stages" and "." in rest:
        index, name = rest.split(".", 1)
        return f"stage{index}.{name}"
    return rest


def _toml(value):
    import tomli_w

    return tomli_w.dumps({"v": value})[4:].strip()


class _Null:
    def write(self, text):
        pass

    def flush(self):
        pass


def sweep(config, grid, directory, *, workers=1, scheduler=None, progress=print):
    """Run every point of ``grid``; write and return the summary table (list of dicts)."""
    todo = points(grid)
    for point in todo:  # validate every point before running any
        config.with_overrides([f"{k}={_toml(v)}" for k, v in point.items()]).validate()
    earlier = read_summary(directory)
    if earlier is not None and earlier[0] != list(grid):
        raise ConfigError(f"{directory} holds a sweep over {', '.join(earlier[0])}; sweep "
                          f"{', '.join(grid)} into another directory (--out)")
    with DirectoryLock(directory, "sweep"):
        text = config.to_toml()
        jobs = [(text, os.path.join(directory, point_name(p)), p) for p in todo]
        if scheduler is None and workers == 1:
            rows = []
            for job in jobs:
                rows.append(run_point(*job))
                progress(f"  {os.path.basename(job[1])}: {rows[-1]['status']}, "
                         f"J = {rows[-1]['cost']:.6g}")
        else:
            rows = _dask(jobs, workers, scheduler, progress)
        new = {row["directory"] for row in rows}
        kept = [row for row in (earlier[1] if earlier else []) if row["directory"] not in new]
        write_summary(directory, list(grid), kept + rows)
    return kept + rows


def read_summary(directory):
    """``(grid keys, rows)`` of the summary in ``directory``, or None."""
    path = os.path.join(directory, "sweep.h5")
    if not os.path.exists(path):
        return None
    try:
        with h5py.File(path, "r") as f:
            columns = {k: f[k][()] for k in f}
            keys = [str(k) for k in f.attrs.get("grid_keys", [k for k in columns if "." in k])]
    except OSError as err:
        raise RunFileError(f"{path} is damaged ({str(err).splitlines()[0]})") from None
    n = len(next(iter(columns.values()))) if columns else 0
    rows = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i].item())
             for k, v in columns.items()} for i in range(n)]
    return keys, rows


def _dask(jobs, workers, scheduler, progress):
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("sweeps on Dask need dask.distributed: pip install 'pmp[dask]'") \
            from None
    if scheduler is not None:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(run_point, *job, pure=False) for job in jobs]
        for future in as_completed(futures):
            row = future.result()
            progress(f"  {row['directory']}: {row['status']}, J = {row['cost']:.6g}")
        return [f.result() for f in futures]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def write_summary(directory, keys, rows):
    """sweep.csv and sweep.h5 (one dataset per column) in ``directory``, each replaced
    atomically."""
    columns = list(keys) + list(SUMMARY) + ["directory"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row[c] for c in columns})
    write_text(os.path.join(directory, "sweep.csv"), text.getvalue())
    with atomic_h5(os.path.join(directory, "sweep.h5")) as f:
        f.attrs["grid_keys"] = list(keys)  # the swept keys, for pmp analyze and pmp plot
        for c in columns:
            values = [row[c] for row in rows]
            if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                   for v in values):
                f.create_dataset(c, data=np.asarray(values, dtype=float))
            else:
                f.create_dataset(c, data=np.asarray([str(v) for v in values], dtype=object),
                                 dtype=h5py.string_dtype())
