"""Plain helpers shared by several test modules: tiny test problems, and the configs, run
comparisons and `pmp` command of the batch tests (fixtures are in conftest.py)."""
import os
import signal
import subprocess
import sys

import numpy as np

import naive
import pmp

ACTIVATIONS = naive.ACTIVATIONS
PIECEWISE = ("relu", "leaky_relu")
# (field, activation, feature map): "features" ignores the activation, so it is crossed with
# its two feature maps instead.
FIELD_ACTIVATIONS = [(f, a, "fourier") for f in ("outer", "inner", "diagonal", "perceptron")
                     for a in ACTIVATIONS]
FIELD_ACTIVATIONS += [("features", "tanh", "fourier"), ("features", "tanh", "relu")]
LOSSES = [("squared", 2.0), ("lp", 1.5), ("lp", 3.0), ("logistic", 2.0), ("cross_entropy", 2.0)]
REGS = [("l2", 0.0), ("h1", 0.3), ("l1", 0.0), ("l1elem", 0.0)]


def case_id(value):
    return "-".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def make_targets(loss, rng, n, m=2, n_classes=3):
    if loss in ("squared", "lp"):
        return rng.normal(size=(n, m)), {}
    if loss == "logistic":
        y = rng.choice([-1.0, 1.0], size=(n, m))
        return y, {}
    labels = rng.integers(0, n_classes, size=n)
    return labels, {"n_classes": n_classes}


def make_problem(field="outer", activation="tanh", loss="squared", p=2.0, *, reg="l2", lam=0.05,
                 lam1=0.0, running=0.0, terminal=1.0, projection=None, n=5, d=3, n_steps=4,
                 T=1.0, seed=0, features="fourier", width=None, dtype="float64", slope=0.1,
                 frozen=None, m=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y, extra = make_targets(loss, rng, n, m=m)
    if width is None and field in ("features", "perceptron"):
        width = 5 if field == "features" else 4
    return pmp.Problem(x, y, field=field, activation=activation, T=T, n_steps=n_steps, loss=loss,
                       p=p, projection=projection, reg=reg, lam=lam, lam1=lam1,
                       running=running, terminal=terminal, width=width, features=features,
                       seed=seed, slope=slope, frozen=frozen, dtype=dtype, **extra)


def make_controls(problem, seed=0, scale=0.6):
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for name, shape in problem.control_shapes.items():
        if name == "P":
            u = problem.P + 0.3 * rng.normal(size=shape)
        else:
            u = scale * rng.normal(size=shape)
        out[name] = u.astype(problem.dtype)
    return out


def kink_margin(problem, controls):
    """Distance of the nearest (piecewise-linear) pre-activation / lp residual to its kink."""
    margin = np.inf
    xs = naive.forward(problem, controls)
    if problem.field.name == "features":
        kinked = problem.field.features == "relu"
    else:
        kinked = problem.activation.name in PIECEWISE
    if kinked:
        margin = np.min(np.abs(naive.preactivations(problem, controls, xs)))
    if problem.loss == "lp":
        P = naive.readout_matrix(problem, controls)
        Y = np.asarray(problem.y_kernel, float)
        steps = xs if problem.running else xs[-1:]
        for X in steps:
            margin = min(margin, np.min(np.abs(X @ P.T - Y)))
    return margin


def smooth_case(*args, min_margin=1e-3, **kwargs):
    """``make_problem`` + controls, trying seeds until no kink is within ``min_margin``."""
    for seed in range(50):
        problem = make_problem(*args, seed=seed, **kwargs)
        controls = make_controls(problem, seed)
        if kink_margin(problem, controls) > min_margin:
            return problem, controls
    raise RuntimeError("no seed without a pre-activation near a kink")


def relative_error(a, b):
    """``max |a - b| / max |b|`` (entrywise error relative to the array's scale)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    err = np.max(np.abs(a - b)) if b.size else 0.0
    return err / scale if scale > 0 else err


# ---------------------------------------------- the maximiser's and the engine's problems
def small_problem(field, kw, reg="l2", **extra):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    options = dict(T=1.0, n_steps=3, lam=0.3, reg=reg)
    options.update(extra)
    return pmp.Problem(x, y, field=field, **kw, **options)


# ------------------------------------------------------------------------------ bad input
X = np.random.default_rng(0).normal(size=(5, 3))
Y = np.random.default_rng(1).normal(size=(5, 2))


# ------------------------------------------------------ configs, runs and the pmp command
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SMALL = """\
[data]
name = "rings"
n_samples = 48
seed = 1
lift = 3

[model]
field = "outer"
activation = "tanh"
T = 2.0
n_steps = 8

[objective]
loss = "squared"
reg = "l2"
lam = 0.01

[train]
method = "emsa"
max_iter = 40
checkpoint_every = 10
batch_size = 16

[output]
dir = "runs"
name = "small"
"""


def pmp_cli(*args, cwd, timeout=600, **popen):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "pmp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def _sigint_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(*args, cwd, interruptible=False):
    """``pmp *args`` in the background. ``interruptible``: the command starts with SIGINT at
    its default, so that a test can interrupt it even when the suite itself was started
    with SIGINT ignored (as a background job of a shell without job control), which a
    child inherits and Python then leaves ignored."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "pmp", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default if interruptible else None)


def one_line_error(out, *fragments):
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pmp: error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def controls_equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[n], b[n]) for n in a)
