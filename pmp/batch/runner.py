"""Batch runs: a configuration trained into a run directory, with checkpoints and resume.

:func:`train_run` starts a run, :func:`resume_run` continues one from its last checkpoint;
the final controls of a resumed run are bitwise identical to those of an uninterrupted run
(same configuration, same thread count). Progress goes to a bar on a terminal and to plain
periodic lines otherwise.
"""
import contextlib
import os
import shutil
import sys
import time

from .config import ConfigError, RunConfig, parse_config
from .store import RunFileError, RunWriter, load_run
from ..threads import threads
from ..sweeps import evaluate
from ..trainer import history_columns, history_row, iterate

RUN_FILES = ("run.h5", "data.h5", "config.toml")


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
    if os.path.exists(os.path.join(directory, "run.h5")):
        if not overwrite:
            raise OutputExists(f"{directory} already holds a run; pass --overwrite to replace "
                               f"it or use `pmp resume {directory}`")
        # remove the run's own files only, never anything else in the directory
        for name in RUN_FILES:
            path = os.path.join(directory, name)
            if os.path.exists(path):
                os.remove(path)
        shutil.rmtree(os.path.join(directory, "checkpoints"), ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


class Progress:
    """A tqdm bar on a terminal, plain lines every ``every`` iterations otherwise."""

    def __init__(self, max_iter, stream=None, every=50, start=0):
        self.stream = stream or sys.stdout
        self.every = every
        self.bar = None
        self._last = None  # (iteration, elapsed) of the last line: its rate is since then
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=max_iter, initial=start, file=self.stream, unit="it",
                            dynamic_ncols=True)

    def update(self, state):
        c = state.cost
        rho = state.extra.get("rho")
        step = f"rho={rho:.3g}" if rho is not None else f"step={state.step_size:.3g}"
        if self.bar is not None:
            self.bar.n = state.iteration
            self.bar.set_postfix_str(f"J={c['total']:.6g} {step}", refresh=False)
            self.bar.refresh()
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


def _execute(config, directory, problem, writer, resume_state, stream, print_every):
    options = config.train_options
    every = max(1, config.checkpoint_every)
    progress = Progress(options.get("max_iter", 1000), stream, print_every,
                        start=0 if resume_state is None else resume_state["iteration"])
    state = None
    columns = history_columns()
    limit = threads(config.threads) if config.threads is not None else contextlib.nullcontext()
    try:
        with limit:
            for state in iterate(problem, config.method, resume=resume_state, **options):
                if not state.extra.get("repeat"):
                    writer.append(columns, history_row(state))
                progress.update(state)
                if state.status is None and state.iteration % every == 0:
                    _checkpoint(writer, problem, state)
    except KeyboardInterrupt:
        progress.close()
        if state is not None and state.resume is not None:
            writer.truncate(state.iteration)
            _checkpoint(writer, problem, state, status="interrupted",
                        message=f"interrupted at iteration {state.iteration}")
        raise
    progress.close()
    final = state.extra.get("last_finite") or state
    status = "diverged" if state.status == "diverged" else "finished"
    parts = _checkpoint(writer, problem, final, status=status,
                        message=f"{state.status}: {state.message}")
    return state, parts


def _checkpoint(writer, problem, state, **status):
    """Evaluate ``state`` on all samples (cost, states, costates) and write its checkpoint;
    returns the cost parts."""
    parts, _, xs, ps = evaluate(problem, state.controls)
    writer.checkpoint(state, (parts, xs, ps), **status)
    return parts


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
    problem = config.validate()
    _prepare_directory(directory, overwrite)
    writer = RunWriter(directory, problem, config.to_toml(), config.method,
                       config["output"].get("trajectory_samples"))
    return _execute(config, directory, problem, writer, None, stream, print_every)


def resume_run(directory, *, stream=None, print_every=50):
    """Continue the run in ``directory`` from its last checkpoint (see :func:`train_run`)."""
    directory = os.fspath(directory)
    with load_run(directory) as run:
        text = run.attrs["config"]
        status = run.attrs["status"]
        if not run.checkpoints:
            raise RunFileError(f"{directory} has no checkpoint to resume from")
        resume_state = run.resume_state()
    on_disk = os.path.join(directory, "config.toml")
    if os.path.exists(on_disk):
        with open(on_disk) as f:
            if f.read() != text:
                raise ConfigError(f"{on_disk} differs from the configuration the run started "
                                  f"with; resume continues the original run only (start a new "
                                  f"run for a changed configuration)")
    if status in ("finished", "diverged"):
        raise RunFileError(f"{directory} is {status}; nothing to resume")
    config = parse_config(text, source=f"{directory}/run.h5")
    problem = config.validate()
    writer = RunWriter(directory, problem, text, config.method,
                       config["output"].get("trajectory_samples"), resume=True)
    writer.truncate(resume_state["iteration"])
    writer.set_status("running", f"resumed at iteration {resume_state['iteration']} on "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    return _execute(config, directory, problem, writer, resume_state, stream, print_every)
