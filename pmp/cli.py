"""The ``pmp`` command (also ``python -m pmp``).

``pmp train`` with no arguments trains the default demo: concentric rings lifted to R^3,
``x' = W tanh(x) + b``, T = 10, 100 steps, squared loss on the last coordinate, l2, by the
extended method of successive approximations with adaptive rho.
Errors print one line and exit with status 2.
"""
import argparse
import os
import sys

import numpy as np

from . import datasets
from .problem import Problem
from .store import RunWriter
from .trainer import HISTORY_COLUMNS, history_row, iterate

DEMO = dict(
    data=dict(name="rings", n_samples=256, seed=0, lift=3),
    model=dict(field="outer", activation="tanh", T=10.0, n_steps=100),
    objective=dict(loss="squared", reg="l2", lam=1e-3),
    train=dict(method="emsa", max_iter=600, seed=0, gtol=1e-6),
)


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _free_dir(base):
    """``base``, or ``base-2``, ``base-3``, ... whichever does not exist yet."""
    candidate, n = base, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _train(args):
    cfg = DEMO
    data = dict(cfg["data"])
    x, y = datasets.load(data.pop("name"), **data)
    problem = Problem(x, y, **cfg["model"], **cfg["objective"])
    opts = dict(cfg["train"])
    if args.max_iter is not None:
        opts["max_iter"] = args.max_iter
    if args.method is not None:
        opts["method"] = args.method
    method = opts.pop("method")

    if args.out is None:
        out = _free_dir(os.path.join("runs", "demo"))
    else:
        out = args.out
        if os.path.exists(out) and not args.overwrite:
            raise UserError(f"output directory {out} exists; pass --overwrite to replace it")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "run.h5")
    if os.path.exists(path):
        os.remove(path)  # only reached with --overwrite

    print(f"pmp: training {problem}\n     method={method!r}, output {path}", flush=True)
    writer = RunWriter(path, problem, method, opts)
    rows, state = [], None
    try:
        for state in iterate(problem, method, **opts):
            rows.append(history_row(state))
            if state.iteration % args.print_every == 0 or state.status:
                c = state.cost
                rho = state.extra.get("rho")
                print(f"  iter {state.iteration:5d}  J = {c['total']:.6e}  "
                      f"loss = {c['loss']:.3e}  |g| = {state.grad_norm:.2e}  "
                      + (f"rho = {rho:.2g}  " if rho is not None else "")
                      + f"({state.elapsed:.2f} s)", flush=True)
    except KeyboardInterrupt:
        writer.append_history(HISTORY_COLUMNS, rows)
        if state is not None:
            writer.checkpoint(state.iteration, state.controls)
        writer.close("interrupted")
        print(f"pmp: interrupted; the last iterate is saved in {path}", file=sys.stderr)
        return 130
    writer.append_history(HISTORY_COLUMNS, rows)
    final = state.extra.get("last_finite") or state
    parts = writer.checkpoint(final.iteration, final.controls)
    writer.close("diverged" if state.status == "diverged" else "finished")
    print(f"pmp: {state.status}: {state.message}")
    print(f"pmp: final cost J = {parts['total']:.6e} (terminal {parts['terminal']:.4e}, "
          f"regularization {parts['regularization']:.4e}); training error "
          f"Phi(x(T)) = {parts['loss']:.4e}")
    accuracy = np.mean(np.sign(_outputs(problem, final.controls)) == problem.y)
    print(f"pmp: sign accuracy on the training set {accuracy:.3f}; run saved to {path}")
    return 0


def _outputs(problem, controls):
    from .sweeps import forward

    return (forward(problem, controls)[-1] @ problem.P.T)[:, 0]


def build_parser():
    parser = argparse.ArgumentParser(prog="pmp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the default demo")
    train.add_argument("--out", help="output directory (default: runs/demo, runs/demo-2, ...)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an existing output directory")
    train.add_argument("--method", help="training method (default: emsa)")
    train.add_argument("--max-iter", type=int, help="maximum number of iterations")
    train.add_argument("--print-every", type=int, default=50, help="progress line period")
    train.set_defaults(run=_train)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (UserError, ValueError, TypeError, OSError) as err:
        print(f"pmp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
