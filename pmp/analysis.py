"""Decay analysis of trained controls (THEORY.md section 12).

Per-time curves from a checkpoint, exponential-rate fits with R^2, a confidence interval and a
plateau check, log-log scaling in T (or lam) over a sweep, the switching structure of l1
controls, layer-to-layer increments (Marion et al.), and a lower bound on the weights a network
needs to move its points.

Everything takes plain arrays (or a Problem and controls), so it works on runs, sweeps and
in-memory results alike; :func:`analyze_run` and :func:`analyze_sweep` bundle it for
``pmp analyze``.
"""
from dataclasses import asdict, dataclass

import numpy as np

from ._controls import step_norms as _step_norms
from .sweeps import evaluate, losses_along


# ------------------------------------------------------------------ per-time curves
def step_norms(problem, controls):
    """``|u_k|``: the Euclidean norm of all control arrays of step k together, (n_steps,)."""
    return _step_norms(controls, problem.control_names)


def curves(problem, controls):
    """Per-time curves of one set of controls.

    Returns
    -------
    dict
        "t" (K + 1,); "error" ``Phi(x(t_k))`` (K + 1,), the training error along the
        trajectory; "control_norm" ``|u_k|`` (K,), on the left end points ``t[:-1]``;
        "costate_norm" (K + 1,), the root-mean-square per-sample costate
        ``sqrt(N sum_i |p_{k,i}|^2)`` (``p_hat = N p``); "hamiltonian" ``H_k`` (K,).
    """
    from .sweeps import hamiltonian

    controls = problem.validate_controls(controls)
    _, _, xs, ps = evaluate(problem, controls, validate=False)
    P = controls["P"] if problem.trainable_readout else None
    return {
        "t": problem.t.copy(),
        "error": losses_along(problem, xs, controls if P is not None else None),
        "control_norm": step_norms(problem, controls),
        "costate_norm": np.sqrt(problem.n_samples * np.sum(ps.astype(float) ** 2, axis=(1, 2))),
        "hamiltonian": hamiltonian(problem, controls, xs, ps),
    }


# ---------------------------------------------------------------------- rate fits
@dataclass
class RateFit:
    """An exponential fit ``value ~ exp(intercept - mu t)`` on ``window``.

    Attributes
    ----------
    mu : float
        Decay rate (positive for decay).
    ci : tuple of float
        95% confidence interval of ``mu`` (Student t on the regression).
    r2 : float
        Coefficient of determination of the log-linear fit.
    intercept : float
    window : tuple of float
        ``(t_start, t_end)`` of the fitted points.
    n_points : int
    plateau : float or None
        Level of a plateau detected after the window (the fit stops before it), else None.
    plateau_start : float or None
    """

    mu: float
    ci: tuple
    r2: float
    intercept: float
    window: tuple
    n_points: int
    plateau: float | None = None
    plateau_start: float | None = None

    def predict(self, t):
        return np.exp(self.intercept - self.mu * np.asarray(t, float))

    def as_dict(self):
        return asdict(self)

    def __str__(self):
        text = (f"mu = {self.mu:.4g} [{self.ci[0]:.4g}, {self.ci[1]:.4g}], R^2 = {self.r2:.4f}, "
                f"window t in [{self.window[0]:.4g}, {self.window[1]:.4g}] ({self.n_points} pts)")
        if self.plateau is not None:
            text += f"; plateau {self.plateau:.3g} from t = {self.plateau_start:.4g}"
        return text


def _linear_fit(t, y):
    from scipy import stats  # imported here: scipy.stats costs half a second at import

    slope, intercept, r, _, se = stats.linregress(t, y)
    n = len(t)
    half = stats.t.ppf(0.975, n - 2) * se if n > 2 else np.inf
    return slope, intercept, r * r, half


def detect_plateau(t, values, *, tail=0.25, flatness=0.1, floor=1e-13):
    """Start and level of a plateau at the end of a decaying curve, or ``(None, None)``.

    A plateau is a tail (at least ``tail`` of the points) whose log-slope is below
    ``flatness`` times the log-slope of the decay before it, at a level above ``floor``
    times the curve's maximum (below that it is rounding, not a plateau).
    """
    t = np.asarray(t, float)
    v = np.asarray(values, float)
    ok = v > floor * np.max(v)
    if np.count_nonzero(ok) < 8:
        return None, None
    t, y = t[ok], np.log(v[ok])
    n = len(t)
    best = None
    for start in range(int(0.3 * n), int((1 - tail) * n) + 1):
        head_slope = _linear_fit(t[:start], y[:start])[0] if start >= 3 else 0.0
        tail_slope = _linear_fit(t[start:], y[start:])[0]
        if head_slope < 0 and abs(tail_slope) < flatness * abs(head_slope):
            best = start
            break
    if best is None:
        return None, None
    return float(t[best]), float(np.exp(np.median(y[best:])))


def _best_window(t, y, idx, r2_min, n_grid=40):
    """The longest contiguous window (on a grid of starts and ends) whose log-linear fit has
    ``R^2 >= r2_min``; if none, the best ``R^2`` among windows of at least a third of the
    points. Sums are cumulative, so every candidate costs O(1)."""
    n = len(t)
    c = [np.concatenate([[0.0], np.cumsum(a)]) for a in (np.ones(n), t, y, t * t, y * y, t * y)]
    starts = np.unique(np.linspace(0, max(0, n - 3), n_grid).astype(int))
    ends = np.unique(np.linspace(3, n, n_grid).astype(int))
    best_ok, best_any = None, None
    for i in starts:
        for j in ends[ends >= i + 3]:
            m, st, sy, stt, syy, sty = (a[j] - a[i] for a in c)
            vt, vy, cov = stt - st * st / m, syy - sy * sy / m, sty - st * sy / m
            r2 = cov * cov / (vt * vy) if vt > 0 and vy > 0 else 0.0
            length = j - i
            if r2 >= r2_min and (best_ok is None or (length, r2) > best_ok[:2]):
                best_ok = (length, r2, i, j)
            if length >= n / 3 and (best_any is None or r2 > best_any[1]):
                best_any = (length, r2, i, j)
    chosen = best_ok or best_any or (n, 0.0, 0, n)
    return idx[chosen[2]:chosen[3]]


def fit_rate(t, values, window=None, *, r2_min=0.99, floor=1e-13, plateau=True):
    """Fit ``values ~ exp(-mu t)`` by log-linear regression.

    Parameters
    ----------
    t, values : array_like, shape (n,)
    window : (float, float), optional
        Fit on ``t_start <= t <= t_end``. Default: found automatically - values at the
        rounding floor are dropped, a plateau at the end is detected and left out (and
        reported), then the longest window whose fit reaches ``r2_min`` is taken (the best
        ``R^2`` over windows of at least a third of the points if none does).
    r2_min : float
    floor : float
        Values below ``floor * max(values)`` are treated as zero and not fitted.
    plateau : bool
        Look for a plateau (automatic window only).

    Returns
    -------
    RateFit
    """
    t = np.asarray(t, float)
    v = np.asarray(values, float)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"t and values must be 1-D of the same shape, got {t.shape} and "
                         f"{v.shape}")
    plateau_start = level = None
    if window is not None:
        mask = (t >= window[0]) & (t <= window[1]) & (v > 0)
    else:
        mask = v > floor * np.max(np.abs(v))
        if plateau:
            plateau_start, level = detect_plateau(t, v, floor=floor)
            if plateau_start is not None:
                mask &= t < plateau_start
    idx = np.flatnonzero(mask)
    if len(idx) < 3:
        raise ValueError(f"need at least 3 positive values in the fit window, got {len(idx)}")
    if window is None:
        idx = _best_window(t[idx], np.log(v[idx]), idx, r2_min)
    slope, intercept, r2, half = _linear_fit(t[idx], np.log(v[idx]))
    return RateFit(mu=-slope, ci=(-slope - half, -slope + half), r2=r2, intercept=intercept,
                   window=(float(t[idx[0]]), float(t[idx[-1]])), n_points=len(idx),
                   plateau=level, plateau_start=plateau_start)


def power_law(x, y):
    """Log-log fit ``y ~ C x^slope``: dict with slope, its 95% CI, R^2 and C."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if np.count_nonzero(ok) < 2:
        raise ValueError("need at least 2 positive points for a power law")
    if np.count_nonzero(ok) == 2:
        slope = np.diff(np.log(y[ok]))[0] / np.diff(np.log(x[ok]))[0]
        return dict(slope=slope, ci=(np.nan, np.nan), r2=1.0,
                    C=float(np.exp(np.log(y[ok][0]) - slope * np.log(x[ok][0]))))
    slope, intercept, r2, half = _linear_fit(np.log(x[ok]), np.log(y[ok]))
    return dict(slope=slope, ci=(slope - half, slope + half), r2=r2, C=float(np.exp(intercept)))


# --------------------------------------------------------------------- T-scaling
def time_scaling_equivalence(problem, controls):
    """THEORY.md section 6: ``J_{T,lam}(u)`` and ``J_{1,lam/T}(T u)`` with the same grid.

    For dynamics positively 1-homogeneous in the control (``problem.field.homogeneous``),
    terminal cost and l2 they are equal. Returns ``(J_T, J_1, relative difference)``.
    """
    from .sweeps import cost

    if not problem.field.homogeneous:
        raise ValueError(f"field {problem.field.name!r} with activation "
                         f"{problem.activation.name!r} is not 1-homogeneous in the control")
    unit = problem.replace(T=1.0, lam=problem.lam / problem.T)
    scaled = {n: (problem.T * np.asarray(u) if n != "P" else np.asarray(u))
              for n, u in controls.items()}
    J_T = cost(problem, controls)["total"]
    J_1 = cost(unit, scaled)["total"]
    return J_T, J_1, abs(J_T - J_1) / max(abs(J_T), 1e-300)


# ------------------------------------------------------------------------ l1, bound
@dataclass
class Switching:
    """Structure of l1 controls with a bound M (THEORY.md 4b, 7 E3a).

    Attributes
    ----------
    switching_time : float or None
        First ``t_k`` after which every ``|u_j|`` is zero (None if the controls never vanish).
    bang_bang : bool
        Every ``|u_k|`` is 0 or M up to ``tol``, except at most one step.
    intermediate_steps : int
        Steps with ``0 < |u_k| < M`` (beyond ``tol``).
    error_after : float or None
        Largest training error ``Phi(x(t))`` for ``t >= switching_time``.
    """

    switching_time: float | None
    bang_bang: bool
    intermediate_steps: int
    error_after: float | None

    def as_dict(self):
        return asdict(self)


def switching(problem, controls, *, tol=1e-6):
    """The switching time and bang-bang check of ``controls`` for ``problem.bound``."""
    bound = problem.bound
    if bound is None or not np.isfinite(bound):
        raise ValueError("switching needs a problem with reg='l1' or 'l1elem' and a bound")
    c = curves(problem, controls)
    norms = c["control_norm"]
    zero = norms <= tol * bound
    if problem.reg.name == "l1":
        full = np.abs(norms - bound) <= tol * bound
    else:
        values = np.concatenate([np.abs(np.asarray(controls[n], float)).reshape(
            problem.n_steps, -1) for n in problem.control_names], axis=1)
        full = np.all((values <= tol * bound) | (np.abs(values - bound) <= tol * bound),
                      axis=1) & ~zero
    intermediate = int(np.count_nonzero(~(zero | full)))
    nonzero = np.flatnonzero(~zero)
    if len(nonzero) == 0:
        t_s = 0.0
    elif nonzero[-1] == problem.n_steps - 1:
        t_s = None
    else:
        t_s = float(problem.t[nonzero[-1] + 1])
    after = None if t_s is None else float(np.max(c["error"][problem.t >= t_s]))
    return Switching(t_s, intermediate <= 1, intermediate, after)


# ------------------------------------------------------------ Marion et al., depth
def increments(problem, controls):
    """``max_k |u_{k+1} - u_k|`` (all arrays of a step together): smoothness in depth."""
    if problem.n_steps < 2:
        return 0.0
    diffs = {n: np.diff(np.asarray(controls[n], float), axis=0) for n in problem.control_names}
    return float(np.max(_step_norms(diffs, problem.control_names)))


def resample(controls, names, n_steps):
    """Controls as piecewise-constant functions of t on ``[0, T)``, sampled on another grid
    of ``n_steps`` left end points."""
    out = {}
    for n in names:
        u = np.asarray(controls[n], float)
        K = u.shape[0]
        index = np.minimum((np.arange(n_steps) * K) // n_steps, K - 1)
        out[n] = u[index]
    return out


def distance_to_reference(problem, controls, reference, reference_steps):
    """``sup_t |u(t) - u_ref(t)|`` with both as piecewise-constant functions of t (on the finer
    of the two grids)."""
    names = problem.control_names
    K = max(problem.n_steps, reference_steps)
    a = resample(controls, names, K)
    b = resample(reference, names, K)
    return float(np.max(_step_norms({n: a[n] - b[n] for n in names}, names)))


# ------------------------------------------------------------------ weight bound
def displacement_bound(problem, controls):
    """A lower bound on the weights needed to move the points, checked on ``controls``.

    For a field with a speed bound ``|f(x, u)| <= c |u|``
    (:meth:`pmp.fields.Field.speed_bound`) every Euler step moves a sample by at most
    ``h c |u_k|``: for "outer" with ``|sigma| <= 1`` (tanh, sigmoid) ``c = sqrt(d + 1)``
    (Cauchy-Schwarz on ``W sigma(x) + b``), for "diagonal" ``c = 1``. So
    ``h sum_k |u_k| >= max_i |x_i(T) - x_i(0)| / c``: the time integral of the weights is at least the largest distance
    travelled, over the field's speed limit. This is the velocity argument of Esteve et al.
    behind the lower bounds on the norm of interpolating controls (with Cauchy-Schwarz,
    ``|u|_{L^2}^2 >= (that)^2 / T``, the O(1/T) floor of ``lam |u|^2``).

    Returns
    -------
    dict
        "integral" ``h sum |u_k|``, "bound", "ratio" (>= 1), "l2_squared"
        ``h sum |u_k|^2`` and "l2_bound" ``bound^2 / T``.
    """
    speed = problem.field.speed_bound()
    if speed is None:
        raise ValueError("displacement_bound needs a field with a speed bound |f(x, u)| <= "
                         "c |u| (Field.speed_bound): 'outer' or 'diagonal' with a bounded "
                         f"activation (tanh, sigmoid), got {problem.field.name!r} with "
                         f"{problem.activation.name!r}")
    xs = evaluate(problem, controls)[2]
    travelled = float(np.max(np.linalg.norm(xs[-1] - xs[0], axis=1)))
    norms = step_norms(problem, controls)
    integral = problem.h * float(np.sum(norms))
    bound = travelled / speed
    return dict(integral=integral, bound=bound, ratio=integral / bound if bound else np.inf,
                l2_squared=problem.h * float(np.sum(norms ** 2)), l2_bound=bound**2 / problem.T)


# ------------------------------------------------------------------ run, sweep
def analyze_run(run, iteration=None):
    """Everything that applies to one checkpoint of a run (a :class:`pmp.store.Run`).

    Returns a dict: "curves", fits of the error, the control norm and the costate norm
    ("fit_error", "fit_control", "fit_costate"; None where a fit is impossible), and where
    they apply "switching", "increments", "displacement_bound", "time_scaling".
    """
    problem = run.problem()
    controls = run.controls(iteration)
    c = curves(problem, controls)
    out = {"curves": c, "iteration": int(run.checkpoint(iteration).attrs["iteration"])}
    for key, t, values in (("fit_error", c["t"], c["error"]),
                           ("fit_control", c["t"][:-1], c["control_norm"]),
                           ("fit_costate", c["t"], c["costate_norm"])):
        try:
            out[key] = fit_rate(t, values)
        except ValueError:
            out[key] = None
    if problem.reg.name in ("l1", "l1elem") and problem.bound is not None:
        out["switching"] = switching(problem, controls)
    if problem.n_steps > 1:
        out["increments"] = increments(problem, controls)
    try:
        out["displacement_bound"] = displacement_bound(problem, controls)
    except ValueError:
        pass
    if problem.field.homogeneous and problem.running == 0 and problem.reg.name == "l2":
        out["time_scaling"] = time_scaling_equivalence(problem, controls)
    return out


def analyze_sweep(rows, key):
    """Power laws of the final training error, J and ``T J`` (for a T key) against ``key``
    over a sweep's summary rows (points with other keys equal are grouped)."""
    others = sorted({k for row in rows for k in row if "." in k and k != key})
    groups = {}
    for row in rows:
        if row.get("status") not in ("finished", b"finished"):
            continue
        groups.setdefault(tuple(row[k] for k in others), []).append(row)
    results = []
    for group_key, group in groups.items():
        group.sort(key=lambda r: float(r[key]))
        x = np.array([float(r[key]) for r in group])
        entry = dict(zip(others, group_key), key=key, values=x.tolist())
        for name in ("loss", "cost"):
            y = np.array([float(r[name]) for r in group])
            entry[name] = y.tolist()
            if len(x) >= 2:
                entry[f"slope_{name}"] = power_law(x, y)
        if key.endswith(".T"):
            entry["T_times_J"] = (x * np.array(entry["cost"])).tolist()
        results.append(entry)
    return results
