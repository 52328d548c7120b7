"""Batch runs: a configuration trained into a run directory, with checkpoints and resume.

:func:`train_run` starts a run, :func:`resume_run` continues one from its last good
checkpoint (or extends a finished one); the final controls of a resumed run are bitwise
identical to those of an uninterrupted run (same configuration, same thread count).

Every command checks its whole configuration before it writes anything, holds the run
directory's lock while it writes (:mod:`pmp.batch.lock`), and never deletes a file that pmp
did not write. Progress goes to a bar on a terminal and to plain periodic lines otherwise.
"""
import contextlib
import os
import re
import sys
import time

import numpy as np

from .._validation import integer
from ..stages import cost, evaluate, is_staged
from ..threads import get_threads, threads
from ..trainer import history_columns, history_row, iterate
from .config import ConfigError, RunConfig, parse_config
from .lock import DirectoryLock
from .store import DiskFull, RunFileError, RunWriter, load_run

# the files of a run directory that pmp writes (and so may replace)
RUN_FILES = ("run.h5", "data.h5", "config.toml", "analysis.h5")
CHECKPOINT_FILE = re.compile(r"\d{8}\.h5(\.damaged)?")
# the temporary files of the run's writer (pmp.batch.store): left behind by a kill -9
RUN_TEMPORARY = re.compile(r"\.(run\.h5|data\.h5|config\.toml|\d{8}\.h5)\..+\.tmp")


class OutputExists(ValueError):
    """The output directory holds a run and neither --overwrite nor resume was asked."""


def run_directory(config, out=None):
    """The directory of a run: ``out`` if given, else ``[output] dir / name``.

    The name must stay inside the output directory."""
    if out is not None:
        return os.fspath(out)
    output = config["output"]
    base = output.get("dir", "runs")
    name = str(output.get("name", "run"))
    if not name or os.path.isabs(name) or os.path.normpath(name).startswith(("..", os.sep)) \
            or os.path.normpath(name) in (".", ""):
        raise ConfigError(f"output.name {name!r} must be a plain name inside output.dir "
                          f"{base!r}")
    directory = os.path.normpath(os.path.join(base, name))
    if os.path.commonpath([os.path.abspath(directory), os.path.abspath(base)]) != \
            os.path.abspath(base):
        raise ConfigError(f"output.name {name!r} escapes the output directory {base!r}")
    return directory


def _prepare_directory(directory, overwrite):
    """Make room for a new run: refuse a run that holds a checkpoint unless ``overwrite``;
    remove only the files pmp writes (a run killed before its first checkpoint is replaced
    without asking)."""
    index = os.path.join(directory, "run.h5")
    if os.path.exists(index) and not overwrite and _has_checkpoint(index):
        raise OutputExists(f"{directory} already holds a run; pass --overwrite to replace "
                           f"it, `pmp resume {directory}` to continue it, or "
                           f"`pmp resume {directory} --max-iter N` to extend it")
    for name in RUN_FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.remove(path)
    checkpoints = os.path.join(directory, "checkpoints")
    if os.path.isdir(checkpoints):
        for name in os.listdir(checkpoints):
            if CHECKPOINT_FILE.fullmatch(name):
                os.remove(os.path.join(checkpoints, name))
        if not os.listdir(checkpoints):
            os.rmdir(checkpoints)
    os.makedirs(directory, exist_ok=True)


def _remove_temporaries(directory):
    """Remove what a killed writer of this run left half-written (under the run's lock, no
    other writer of these files runs)."""
    for folder in (directory, os.path.join(directory, "checkpoints")):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if RUN_TEMPORARY.fullmatch(name):
                    os.remove(os.path.join(folder, name))


def _has_checkpoint(index):
    try:
        with load_run(index) as run:
            return bool(run.checkpoints)
    except (OSError, RunFileError):  # a damaged index: only --overwrite replaces it
        return True


class Progress:
    """A tqdm bar on a terminal (redrawn every ``PROGRESS_INTERVAL`` s at most), plain lines
    every ``every`` iterations otherwise."""

    def __init__(self, max_iter, stream=None, every=50, start=0):
        self.stream = stream or sys.stdout
        self.every = every
        self.bar = None
        self._last = None  # (iteration, elapsed) of the last line: its rate is since then
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            from ..trainer import PROGRESS_INTERVAL

            self.bar = tqdm(total=max_iter, initial=start, file=self.stream, unit="it",
                            dynamic_ncols=True, mininterval=PROGRESS_INTERVAL)

    def update(self, state):
        c = state.cost
        rho = state.extra.get("rho")
        step = f"rho={rho:.3g}" if rho is not None else f"step={state.step_size:.3g}"
        if self.bar is not None:  # tqdm redraws when mininterval has passed, and at close
            self.bar.set_postfix_str(f"J={c['total']:.6g} {step}", refresh=False)
            self.bar.update(state.iteration - self.bar.n)
        elif state.iteration % self.every == 0 or state.status:
            # the rate since the last line, not since the start: the first iterations of a
            # process include the kernels' compilation
            rate = ""
            if self._last is not None and state.elapsed > self._last[1]:
                per_second = (state.iteration - self._last[0]) / (state.elapsed - self._last[1])
                rate = f"  ({per_second:.1f} it/s)"
            self._last = (state.iteration, state.elapsed)
            print(f"  iter {state.iteration:6d}  J = {c['total']:.6e}  loss = {c['loss']:.3e}"
                  f"  |g| = {state.grad_norm:.2e}  {step}{rate}", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _execute(config, problem, writer, resume_state, stream, print_every):
    options = config.train_options
    every = config.checkpoint_every
    progress = Progress(options.get("max_iter", 1000), stream, print_every,
                        start=0 if resume_state is None else resume_state["iteration"])
    state = None
    columns = history_columns()
    limit = threads(config.threads) if config.threads is not None else contextlib.nullcontext()
    try:
        with limit, _intact_on_full_disk(writer):
            for state in iterate(problem, config.method, resume=resume_state, **options):
                if not state.extra.get("repeat"):
                    writer.append(*_history(columns, state))
                progress.update(state)
                if state.status is None and state.iteration % every == 0:
                    _checkpoint(writer, problem, state)
    except KeyboardInterrupt:
        progress.close()
        if state is not None and state.resume is not None:
            recorded = writer.history.get("iteration", [-1])[-1]
            if not state.extra.get("repeat") and recorded < state.iteration:
                writer.append(*_history(columns, state))  # interrupted before its row
            writer.truncate(state.iteration)
            _final_checkpoints(writer, problem, state, False, status="interrupted",
                               message=f"interrupted at iteration {state.iteration}")
        raise
    progress.close()
    status = "diverged" if state.status == "diverged" else "finished"
    with _intact_on_full_disk(writer):
        parts = _final_checkpoints(writer, problem, state, options.get("keep_best", False),
                                   status=status, message=f"{state.status}: {state.message}")
    return state, parts


def _history(columns, state):
    """The history columns and row of ``state``; with trained stage durations also
    ``duration_<j>``, one column per stage."""
    row = history_row(state)
    durations = getattr(state, "durations", None)
    if durations is None:
        return columns, row
    return (columns + tuple(f"duration_{j}" for j in range(len(durations))),
            tuple(row) + tuple(float(T) for T in durations))


def _final_checkpoints(writer, problem, state, keep_best, **status):
    """The checkpoints a run ends with; returns the cost parts of the iterate it returns.

    That iterate (the last one, the last finite one after a divergence, or the best one
    with ``keep_best``) is written last, so ``/final`` links to it. Before it: the best
    iterate (``/best``, full batch only) and, with ``keep_best``, the last one (a run is
    extended from its newest checkpoint), unless already stored."""
    end = state.extra.get("last_finite") or state
    best = state.best
    returned = best if keep_best and best is not None else end
    for other in (best, end):
        if other is not None and other.iteration != returned.iteration and \
                other.iteration not in writer.checkpoints:
            _checkpoint(writer, problem, other, **status)
    if best is not None:
        writer.record_best(best.iteration, best.cost["total"])
    return _checkpoint(writer, problem, returned, **status)


@contextlib.contextmanager
def _intact_on_full_disk(writer):
    """A full disk ends the run with one line that says which checkpoint is intact."""
    try:
        yield
    except DiskFull as err:
        last = (f"the last checkpoint (iteration {writer.checkpoints[-1]}) is intact"
                if writer.checkpoints else "no checkpoint was written")
        raise DiskFull(f"{err}; {last}; free some space, then `pmp resume "
                       f"{writer.directory}`") from None


def _checkpoint(writer, problem, state, **status):
    """Evaluate ``state`` on all samples (cost, states, costates) and write its checkpoint;
    returns the cost parts."""
    parts, _, xs, ps = evaluate(_at_durations(problem, getattr(state, "durations", None)),
                                state.controls)
    writer.checkpoint(state, (parts, xs, ps), **status)
    return parts


def _at_durations(problem, durations):
    """A staged problem with the stage durations of an iterate when they are trained."""
    if durations is None or not is_staged(problem) or \
            np.array_equal(np.asarray(durations, float), problem.durations):
        return problem
    return problem.with_durations([float(T) for T in durations])


def train_run(config, directory, *, overwrite=False, stream=None, print_every=50):
    """Train ``config`` into ``directory``.

    Returns
    -------
    state : TrainState
        The last state (``status``, ``message``).
    parts : dict
        Final cost parts (all samples).
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    print_every = integer(print_every, "print_every", low=1)
    problem = config.validate()
    get_threads()  # PMP_THREADS is read here, before anything is written
    with DirectoryLock(directory, "run"):
        _remove_temporaries(directory)
        _prepare_directory(directory, overwrite)
        print(f"pmp: training {config.method!r} into {directory}", file=stream or sys.stdout,
              flush=True)
        writer = RunWriter(directory, problem, config.to_toml(), config.method,
                           config["output"].get("trajectory_samples"))
        return _execute(config, problem, writer, None, stream, print_every)


def resume_run(directory, *, max_iter=None, time_limit=None, stream=None, print_every=50):
    """Continue the run in ``directory`` from its last good checkpoint (see
    :func:`train_run`); a run without a checkpoint starts at iteration 0.

    ``max_iter`` / ``time_limit`` extend the run (also a finished one): the result equals a
    run started with them, bit for bit for a deterministic method. A damaged checkpoint
    (checksum, or a stored cost that its controls no longer give) is set aside as
    ``*.h5.damaged`` and the run continues from the one before it.
    """
    directory = os.fspath(directory)
    print_every = integer(print_every, "print_every", low=1)
    get_threads()
    with DirectoryLock(directory, "run", create=False):
        _remove_temporaries(directory)
        with load_run(directory) as run:
            text, status = run.attrs["config"], run.attrs["status"]
            data = run.data()
        _check_config_file(directory, text)
        config = _extended(parse_config(text, source=f"{directory}/run.h5"), max_iter,
                           time_limit)
        problem = config.validate(data=data)
        resume_state = _last_good_checkpoint(directory, problem, stream)
        done = resume_state is not None and \
            resume_state["iteration"] >= config["train"].get("max_iter", 1000)
        if status == "diverged" or (status == "finished" and (done or max_iter is None)):
            raise RunFileError(f"{directory} is {status}; nothing to resume" + (
                "" if status == "diverged" else
                f" (extend it with `pmp resume {directory} --max-iter N`)"))
        writer = RunWriter(directory, problem, text, config.method,
                           config["output"].get("trajectory_samples"), resume=True)
        start = -1 if resume_state is None else resume_state["iteration"]
        writer.forget_checkpoints_after(start)
        writer.truncate(start)
        if config.to_toml() != text:
            writer.set_config(config.to_toml())
        print(f"pmp: resuming {directory} at iteration {max(start, 0)}",
              file=stream or sys.stdout, flush=True)
        writer.set_status("running", f"resumed at iteration {max(start, 0)} on "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        return _execute(config, problem, writer, resume_state, stream, print_every)


def _check_config_file(directory, text):
    on_disk = os.path.join(directory, "config.toml")
    if os.path.exists(on_disk):
        with open(on_disk) as f:
            if f.read() != text:
                raise ConfigError(f"{on_disk} differs from the configuration the run started "
                                  f"with; resume continues the original run only (start a new "
                                  f"run for a changed configuration)")


def _extended(config, max_iter, time_limit):
    """The configuration with a new ``max_iter`` / ``time_limit`` (None: unchanged)."""
    changes = [f"train.{key}={value!r}" for key, value in
               (("max_iter", max_iter), ("time_limit", time_limit)) if value is not None]
    return config.with_overrides(changes) if changes else config


# a stored cost and the one its controls give agree to this relative tolerance (another
# thread count changes the last bits)
COST_RTOL = 1e-9


def _last_good_checkpoint(directory, problem, stream):
    """The ``resume`` state of the newest checkpoint whose files read back (checksums) and
    whose controls give its stored cost; None when there is none to check."""
    with load_run(directory) as run:
        stored = run.checkpoints
        for iteration in reversed(stored):
            try:
                resume = run.resume_state(iteration)
                expected = float(run.checkpoint(iteration).attrs["cost"])
            except (RunFileError, KeyError) as err:
                reason = str(err)
            else:
                found = cost(_at_durations(problem, run.durations(iteration)),
                             resume["controls"])["total"]
                if np.isclose(found, expected, rtol=COST_RTOL, atol=0.0):
                    return resume
                reason = (f"checkpoint {iteration}: its controls give J = {found:.12g}, it "
                          f"stored {expected:.12g}")
            print(f"pmp: warning: {reason}; set aside, trying the checkpoint before it",
                  file=stream or sys.stderr, flush=True)
    if stored:
        raise RunFileError(f"{directory}: no checkpoint is intact (all {len(stored)} "
                           f"failed their checks); start the run again with --overwrite")
    return None
