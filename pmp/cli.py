"""The ``pmp`` command (also ``python -m pmp``).

    pmp train [CONFIG] [--set section.key=value ...] [--out DIR] [--overwrite]
    pmp resume DIR
    pmp sweep CONFIG --grid section.key=v1,v2,... [--grid ...] [--workers N | --scheduler ADDRESS]
    pmp info RUN

``pmp train`` with no CONFIG trains the built-in demo (``pmp.config.DEMO_TOML``). Errors
print one line and exit with status 2; Ctrl-C writes a checkpoint and exits with 130.
"""
import argparse
import os
import sys

import numpy as np

from .config import ConfigError, demo_config, load_config
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
    print(f"pmp: training {config.method!r} into {directory}", flush=True)
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
    print(f"pmp: resuming {args.directory}", flush=True)
    return _report(args.directory, lambda: resume_run(args.directory,
                                                      print_every=args.print_every))


def _sweep(args):
    from .sweep import parse_grid, sweep

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
        print(f"method     {a['method']}")
        print(f"created    {a['created']}   updated {a.get('updated', '')}")
        print(f"iterations {int(hist['iteration'][-1]) if len(hist.get('iteration', [])) else 0}"
              f"   checkpoints {run.checkpoints}")
        if run.checkpoints:
            final = run.checkpoint()
            print("final      " + "  ".join(f"{k} = {final.attrs[k]:.6g}" for k in
                                            ("cost", "terminal", "running", "regularization",
                                             "loss")))
            print(f"states     {final['states'].shape} ({len(run.t)} times)")
        print("config:")
        for line in a["config"].splitlines():
            print(f"  {line}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every pmp error (no usage block)."""

    def error(self, message):
        print(f"pmp: error: {message} (see pmp {self.prog.split()[-1]} --help)"
              if " " in self.prog else f"pmp: error: {message} (see pmp --help)",
              file=sys.stderr)
        sys.exit(2)


def build_parser():
    parser = _Parser(
        prog="pmp", description="Train residual networks by Pontryagin's maximum principle.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a configuration (default: the demo)")
    train.add_argument("config", nargs="?", help="TOML configuration file")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a configuration value (repeatable)")
    train.add_argument("--out", help="run directory (default: output.dir/output.name)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in the output directory")
    train.add_argument("--print-every", type=int, default=50,
                       help="iterations between progress lines when not on a terminal")
    train.set_defaults(run=_train)

    resume = sub.add_parser("resume", help="continue a run from its last checkpoint")
    resume.add_argument("directory")
    resume.add_argument("--print-every", type=int, default=50)
    resume.set_defaults(run=_resume)

    sweep = sub.add_parser("sweep", help="run a configuration over a grid of values")
    sweep.add_argument("config")
    sweep.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                       help="values of one key (repeat for a cartesian product)")
    sweep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    sweep.add_argument("--out", help="sweep directory (default: output.dir/<config>-sweep)")
    group = sweep.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=1,
                       help="local Dask workers (1: run in this process)")
    group.add_argument("--scheduler", help="address of an existing Dask scheduler")
    sweep.set_defaults(run=_sweep)

    info = sub.add_parser("info", help="summarise a run")
    info.add_argument("path", metavar="RUN", help="run directory or run.h5")
    info.set_defaults(run=_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, OutputExists, RunFileError, ValueError, TypeError, OSError,
            KeyError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"pmp: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
