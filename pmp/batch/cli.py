"""The ``pmp`` command (also ``python -m pmp``).

    pmp train [CONFIG] [--set section.key=value ...] [--out DIR] [--overwrite]
    pmp resume DIR [--max-iter N] [--time-limit SECONDS]
    pmp sweep CONFIG --grid section.key=v1,v2,... [--grid ...] [--workers N | --scheduler ADDRESS]
    pmp info RUN
    pmp analyze RUN|SWEEP [--iteration K]
    pmp plot RUN|SWEEP [--dims I,J] [--format png,pdf,svg] [--iteration K] [--animate]
             [--frames N]

``pmp train`` with no CONFIG trains the built-in demo (``pmp/batch/demo.toml``). Errors
print one line and exit with status 2; Ctrl-C writes a checkpoint and exits with 130.
"""
import argparse
import os
import sys

import numpy as np

from .._kernels import blas_choice
from .._version import __version__
from .config import ConfigError, demo_config, load_config
from .lock import DirectoryInUse, DirectoryLock
from .runner import OutputExists, resume_run, run_directory, train_run
from .store import RunFileError, load_run


def _train(args):
    config = load_config(args.config) if args.config else demo_config()
    if args.set:
        config = config.with_overrides(args.set)
    if args.out is None and args.config is None and not args.overwrite:
        # the demo never refuses: runs/demo, runs/demo-2, ...
        directory = _free(run_directory(config))
    else:
        directory = run_directory(config, args.out)
    return _report(directory, lambda: train_run(config, directory, overwrite=args.overwrite,
                                                print_every=args.print_every))


def _free(base):
    candidate, n = base, 1
    while os.path.exists(os.path.join(candidate, "run.h5")):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _report(directory, job):
    try:
        state, parts = job()
    except KeyboardInterrupt:
        print(f"\npmp: interrupted; a checkpoint is saved. Continue with: pmp resume "
              f"{directory}", file=sys.stderr)
        return 130
    print(f"pmp: {state.status}: {state.message}")
    print(f"pmp: final cost J = {parts['total']:.6e} (terminal {parts['terminal']:.4e}, "
          f"running {parts['running']:.4e}, regularization {parts['regularization']:.4e}); "
          f"training error Phi(x(T)) = {parts['loss']:.4e}")
    print(f"pmp: run saved in {directory} (read it with pmp.load_run({directory!r}))")
    return 0


def _resume(args):
    return _report(args.directory, lambda: resume_run(
        args.directory, max_iter=args.max_iter, time_limit=args.time_limit,
        print_every=args.print_every))


def _sweep(args):
    from .grid import parse_grid, sweep

    config = load_config(args.config)
    if args.set:
        config = config.with_overrides(args.set)
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    grid = parse_grid(args.grid)
    stem = os.path.splitext(os.path.basename(args.config))[0]
    directory = args.out or os.path.join(config["output"].get("dir", "runs"), f"{stem}-sweep")
    n = int(np.prod([len(v) for v in grid.values()]))
    where = args.scheduler or (f"{args.workers} local Dask workers" if args.workers > 1
                               else "this process")
    print(f"pmp: sweep of {n} runs into {directory} on {where}", flush=True)
    rows = sweep(config, grid, directory, workers=args.workers, scheduler=args.scheduler)
    print(f"pmp: {len(rows)} runs; summary in {os.path.join(directory, 'sweep.csv')} and "
          f"sweep.h5")
    return 0


def _info(args):
    with load_run(args.path) as run:
        a = run.attrs
        hist = run.history
        print(f"run        {run.path}")
        print(f"format     {a['format']} v{a['format_version']} (pmp {a['pmp_version']})")
        print(f"status     {a['status']}  {a.get('message', '')}")
        if a["status"] == "running" and DirectoryLock(run.directory, "run").holder() is None:
            print(f"           no process trains it now (interrupted or killed): "
                  f"`pmp resume {run.directory}` continues it")
        print(f"method     {a['method']}")
        print(f"created    {a['created']}   updated {a.get('updated', '')}")
        print(f"iterations {int(hist['iteration'][-1]) if len(hist.get('iteration', [])) else 0}"
              f"   checkpoints {run.checkpoints}")
        if run.checkpoints:
            final = run.checkpoint()
            print("final      " + "  ".join(f"{k} = {final.attrs[k]:.6g}" for k in
                                            ("cost", "terminal", "running", "regularization",
                                             "loss")))
            if run.staged:
                _stage_lines(run, final)
            else:
                print(f"states     {final['states'].shape} ({len(run.t)} times)")
        print("config:")
        for line in a["config"].splitlines():
            print(f"  {line}")
    return 0


def _stage_lines(run, final):
    """``pmp info``'s lines on the stages of a staged run."""
    durations = run.durations()
    print(f"stages     {len(durations)}: switching at t = "
          + (", ".join(f"{t:.4g}" for t in final.attrs["switch_times"]) or "-"))
    for j in range(len(durations)):
        group = final[f"stage_{j}"]
        enter = group.attrs["enter"]
        print(f"  stage {j}  t in [{group.attrs['start']:.4g}, "
              f"{group.attrs['start'] + group.attrs['T']:.4g}]  dim {group.attrs['dim']}  "
              f"{group.attrs['n_steps']} steps  states {group['states'].shape}"
              + (f"  (enters by {enter})" if enter else ""))


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every pmp error (no usage block)."""

    def error(self, message):
        print(f"pmp: error: {message} (see pmp {self.prog.split()[-1]} --help)"
              if " " in self.prog else f"pmp: error: {message} (see pmp --help)",
              file=sys.stderr)
        sys.exit(2)


def _read_sweep(directory):
    from .grid import read_summary

    keys, rows = read_summary(directory)
    return rows, keys


def _target(path):
    if os.path.exists(os.path.join(path, "sweep.h5")):
        return "sweep"
    return "run"


def _fit_line(name, fit, width=100):
    """One row of the table of ``pmp analyze RUN`` (``name=None``: its header). A rate only
    where the verdict is exponential decay, else "-". A verdict too long for ``width``
    columns goes on on the next line, from its ", then ..." or its "(reason)"."""
    if name is None:
        return f"  {'curve':8s}{'rate mu +- 95% CI':19s}{'R^2':8s}{'window t':14s}verdict"
    if fit is None:
        return f"  {name:8s}{'-':19s}{'':8s}{'':14s}no fit (fewer than 3 positive values)"
    rate = f"{fit.mu:.4g} +- {(fit.ci[1] - fit.ci[0]) / 2:.2g}" if fit.is_rate else "-"
    window = f"[{fit.window[0]:.3g}, {fit.window[1]:.3g}]"
    line = f"  {name:8s}{rate:19s}{fit.r2:<8.4f}{window:14s}"
    verdict = fit.verdict
    for cut, keep in ((", then ", ","), (" (", "")):
        if len(line) + len(verdict) > width and cut in verdict:
            first, rest = verdict.split(cut, 1)
            return f"{line}{first}{keep}\n{'':{len(line)}s}{cut.lstrip(', ')}{rest}"
    return line + verdict


def _analyze(args):
    from ..analysis import analyze_run, analyze_sweep
    from .store import write_analysis

    if _target(args.path) == "sweep":
        rows, keys = _read_sweep(args.path)
        tree = {}
        for key in keys:
            print(f"sweep {args.path}: power laws against {key}")
            for entry in analyze_sweep(rows, key):
                group = ", ".join(f"{k}={entry[k]}" for k in entry if "." in k and k != key)
                for name in ("loss", "cost"):
                    fit = entry.get(f"slope_{name}")
                    if not fit:
                        continue
                    if fit["n_points"] < 3:  # a line through two points: nothing to test
                        stats = f"({fit['n_points']} points: no fit statistics)"
                    else:
                        stats = (f"[{fit['ci'][0]:.3f}, {fit['ci'][1]:.3f}], R^2 "
                                 f"{fit['r2']:.4f} ({fit['n_points']} points)")
                    print(f"  {group or 'all'}: {name:5s} slope {fit['slope']:.3f} {stats}")
                if "T_times_J" in entry:
                    print(f"  {group or 'all'}: T*J = " + ", ".join(
                        f"{v:.4g}" for v in entry["T_times_J"]))
            tree[key] = analyze_sweep(rows, key)
        with DirectoryLock(args.path, "analysis"):
            path = write_analysis(args.path, tree)
        print(f"pmp: analysis stored in {path}")
        return 0
    with load_run(args.path) as run:
        result = analyze_run(run, args.iteration)
    if "stages" in result:
        _staged_analysis_lines(args.path, result)
        return _store_analysis(run, result)
    print(f"run {args.path}, iteration {result['iteration']}: fits of exp(-mu t) to the curves")
    print(_fit_line(None, None))
    for name, key in (("error", "fit_error"), ("|u(t)|", "fit_control"),
                      ("|p(t)|", "fit_costate")):
        print(_fit_line(name, result[key]))
    if "increments" in result:
        print(f"  max_k |u_(k+1) - u_k| = {result['increments']:.4g}")
    if "switching" in result:
        s = result["switching"]
        grid = ("never (controls nonzero up to T)" if s.switching_time is None
                else f"{s.switching_time:.4g} (grid)")
        after = "" if s.error_after is None else f"; error after T* {s.error_after:.3e}"
        print(f"  l1: switching time T* {grid}, travelled time h sum|u_k|/M "
              f"{s.travelled_time:.4g}")
        print(f"      bang-bang {'yes' if s.bang_bang else 'no'} ({s.intermediate_steps} "
              f"intermediate steps, tol {s.tol:g} M){after}")
    if "displacement_bound" in result:
        b = result["displacement_bound"]
        print(f"  weights: h sum |u_k| = {b['integral']:.4g} >= {b['bound']:.4g} (ratio "
              f"{b['ratio']:.3g}); |u|_L2^2 = {b['l2_squared']:.4g} >= {b['l2_bound']:.4g}")
    if "time_scaling" in result:
        J_T, J_1, rel = result["time_scaling"]
        print(f"  J_(T,lam)(u) = {J_T:.12g}, J_(1,lam/T)(T u) = {J_1:.12g} (rel. diff {rel:.2e})")
    return _store_analysis(run, result)


def _plain_tree(value):
    """An analysis result with its fits as dicts (what :func:`write_analysis` stores)."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return value


def _store_analysis(run, result):
    from .store import write_analysis

    directory = os.path.dirname(run.path)
    with DirectoryLock(directory, "analysis"):
        path = write_analysis(directory, _plain_tree(result))
    print(f"pmp: analysis stored in {path}")
    return 0


def _staged_analysis_lines(path, result):
    """What ``pmp analyze`` prints for a staged run: the fits, the stages and the switches."""
    s = result["stages"]
    kinds = ", ".join(s["transitions"]) or "none"
    print(f"run {path}, iteration {result['iteration']}: {len(s['dims'])} stages (dims "
          f"{' -> '.join(str(d) for d in s['dims'])}; transitions {kinds})")
    print("fits of exp(-mu t): the error on the whole horizon, |u(t)| and |p(t)| per stage")
    print(_fit_line(None, None))
    print(_fit_line("error", result["fit_error"]))
    for symbol, key in (("u", "fit_control"), ("p", "fit_costate")):
        for j, fit in enumerate(result[key]):
            print(_fit_line(f"|{symbol}| s{j}", fit))
    print("  max_k |u_(k+1) - u_k| per stage: "
          + ", ".join(f"{v:.4g}" for v in result["increments"]))
    print("stages (Hbar: the Hamiltonian per unit time; dJ/dT_j: the steps fixed)")
    print(f"  {'stage':7s}{'t in':18s}{'dim':5s}{'steps':7s}{'mean Hbar':13s}dJ/dT_j")
    for j, (start, T) in enumerate(zip(s["starts"], s["durations"])):
        print(f"  {j:<7d}{f'[{start:.4g}, {start + T:.4g}]':18s}{int(s['dims'][j]):<5d}"
              f"{int(s['n_steps'][j]):<7d}{s['hamiltonian_mean'][j]:<13.4g}"
              f"{s['duration_gradient'][j]:.4g}")
    for j, t in enumerate(s["switch_times"]):
        before, after = s["switch_hamiltonians"][j]
        print(f"  switch {j + 1} at t = {t:.4g} ({s['transitions'][j]}): Hbar before "
              f"{before:.4g}, after {after:.4g} (jump {after - before:.4g})")
        print(f"      dJ/dt_{j + 1} = dJ/dT_{j} - dJ/dT_{j + 1} = {s['switch_rate'][j]:.4g} "
              f"(J {'falls' if s['switch_rate'][j] < 0 else 'rises'} as the switch moves "
              f"later, the horizon fixed)")


def _plot(args):
    from ..plots import plot_run, plot_sweep

    formats = tuple(f.strip().lower().lstrip(".") for f in args.format.split(",") if f.strip())
    dims = None
    if args.dims is not None:
        try:
            dims = tuple(int(d) for d in args.dims.split(","))
        except ValueError:
            raise ValueError(f"--dims must be one or two comma-separated coordinates, such as "
                             f"0,2; got {args.dims!r}") from None
    if _target(args.path) == "sweep":
        if dims is not None or args.iteration is not None or args.animate:
            raise ValueError("--dims, --iteration and --animate apply to a run, not to a sweep")
        rows, keys = _read_sweep(args.path)
        written = [p for key in keys for p in plot_sweep(rows, key, args.path, formats)]
    else:
        with load_run(args.path) as run:
            written = plot_run(run, formats=formats, iteration=args.iteration, dims=dims,
                               animate=args.animate, frames=args.frames)
    print("pmp: wrote " + ", ".join(os.path.basename(p) for p in written) + f" in {args.path}")
    return 0


def build_parser():
    """The ``pmp`` command's parser: one subcommand each, with its help and an example."""
    parser = _Parser(
        prog="pmp", description="Train residual networks by Pontryagin's maximum principle.")
    parser.add_argument("--version", action="version", version=f"pmp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, help, example):
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                              epilog="example:\n  " + example,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    _training_commands(command)
    _reading_commands(command)
    return parser


def _training_commands(command):
    """``train``, ``resume`` and ``sweep``."""
    train = command("train", "train a configuration (default: the demo)",
                    "pmp train runs/turnpike.toml --set train.max_iter=500 --out runs/tp")
    train.add_argument("config", nargs="?", help="TOML configuration file")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration value (repeatable)")
    train.add_argument("--out", help="run directory (default: output.dir/output.name)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in the output directory")
    train.add_argument("--print-every", type=int, default=50,
                       help="iterations between progress lines when not on a terminal")
    train.set_defaults(run=_train)

    resume = command("resume", "continue a run from its last checkpoint, or extend a "
                     "finished one", "pmp resume runs/demo --max-iter 2000")
    resume.add_argument("directory", help="run directory written by pmp train")
    resume.add_argument("--max-iter", type=int, metavar="N",
                        help="train up to iteration N (extends a finished run)")
    resume.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="a new time limit of the whole run")
    resume.add_argument("--print-every", type=int, default=50,
                        help="iterations between progress lines when not on a terminal")
    resume.set_defaults(run=_resume)

    sweep = command("sweep", "run a configuration over a grid of values",
                    "pmp sweep runs/large_time.toml --grid model.T=2,4,8,16 --workers 2")
    sweep.add_argument("config", help="TOML configuration file of every run")
    sweep.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                       help="values of one key (repeat for a cartesian product)")
    sweep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration value in every run (repeatable)")
    sweep.add_argument("--out", help="sweep directory (default: output.dir/<config>-sweep)")
    group = sweep.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=1,
                       help="local Dask workers (1: run in this process)")
    group.add_argument("--scheduler", help="address of an existing Dask scheduler")
    sweep.set_defaults(run=_sweep)


def _reading_commands(command):
    """``info``, ``analyze`` and ``plot``."""
    info = command("info", "summarise a run", "pmp info runs/demo")
    info.add_argument("path", metavar="RUN", help="run directory or run.h5")
    info.set_defaults(run=_info)

    analyze = command("analyze", "decay rates, scaling laws, switching times",
                      "pmp analyze runs/turnpike")
    analyze.add_argument("path", metavar="RUN|SWEEP", help="run or sweep directory")
    analyze.add_argument("--iteration", type=int, help="checkpoint (default: the final one)")
    analyze.set_defaults(run=_analyze)

    plot = command("plot", "PNG and PDF figures into the run or sweep directory",
                   "pmp plot runs/demo --format png --animate")
    plot.add_argument("path", metavar="RUN|SWEEP", help="run or sweep directory")
    plot.add_argument("--dims", metavar="I,J", help="trajectory plane (default: the read-out "
                      "coordinate and the one of largest variance)")
    plot.add_argument("--format", default="png,pdf", help="formats (default: png,pdf; svg)")
    plot.add_argument("--iteration", type=int, help="checkpoint to draw (default: the last)")
    plot.add_argument("--animate", action="store_true", help="also write flow.gif and "
                      "training_progress.gif (pillow)")
    plot.add_argument("--frames", type=int, help="frames of the animations (default: 40)")
    plot.set_defaults(run=_plot)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        blas_choice()  # a bad PMP_BLAS is refused before a command writes anything
        return args.run(args)
    except BrokenPipeError:  # `pmp info RUN | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except (ConfigError, OutputExists, RunFileError, DirectoryInUse, ValueError, TypeError,
            OSError, KeyError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"pmp: error: {message}", file=sys.stderr)
        return 2


def _silence_stdout():
    """Point stdout at /dev/null, so that Python's flush at exit finds no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
