"""Decay analysis of trained controls (docs/theory.md section 12).

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
# Defaults of the tests of :func:`fit_rate`, and why:
# a line through three or four points has R^2 close to 1 by chance, and a useless CI
MIN_POINTS = 8
# a rate describes a good part of the curve, not a stretch of a few steps
MIN_FRACTION = 0.25
# over a smaller drop an exponential cannot be told from a linear decline (1 - c t stays
# within 1% RMS of an exponential until it has fallen by 1.7x)
MIN_DROP = 2.0
# trained controls carry the optimiser's noise: a decay plain to the eye over most of the
# horizon has R^2 = 0.95 to 0.97 after a few hundred iterations (the straightness test
# catches a curve that bends)
R2_MIN = 0.95
# a line within 1% RMS of the log-values is straight, whatever the noise
DEVIATION = 0.01


@dataclass
class RateFit:
    """An exponential fit ``value ~ exp(intercept - mu t)`` on ``window``, and its verdict.

    Attributes
    ----------
    mu : float
        Fitted log-slope with the sign of a decay rate (positive for decay). A *rate* only when
        ``is_rate``: otherwise it is the slope of a straight line through something that is not
        an exponential decay, and ``verdict`` says what the curve does instead.
    ci : tuple of float
        95% confidence interval of ``mu`` (Student t on the regression; infinite with 2 points).
    r2 : float
        Coefficient of determination of the log-linear fit.
    intercept : float
    window : tuple of float
        ``(t_start, t_end)`` of the fitted points.
    n_points : int
    plateau : float or None
        Level of a plateau detected after the window (the fit stops before it), else None.
    plateau_start : float or None
    verdict : str
        What the curve does, in a few words (:func:`fit_rate` says how it is decided):
        "exponential decay" (the only verdict with ``is_rate``), possibly followed by what
        comes after the window (", then plateau at 4.2e-3 from t = 3", ", then zero from
        t = 0.92", ", then rounding level from t = 14"); otherwise "plateau at 4.2e-3 from
        t = 3", "zero from t = 0.92", "too few points (3 < 8)", "too short (...)", or "no
        exponential decay detected" with the reason: "(rises)", "(no trend)",
        "(R^2 0.77 < 0.95)", "(falls by only 1.5x)", "(curved on a log scale)".
    is_rate : bool
        ``mu`` is a decay rate to report: the fit passed every test of :func:`fit_rate`.
    zero_from : float or None
        Start of the tail (at least two points) at the rounding floor, if there is one: the
        values vanish from there on (exactly, for l1 controls after their switching time).
    """

    mu: float
    ci: tuple
    r2: float
    intercept: float
    window: tuple
    n_points: int
    plateau: float | None = None
    plateau_start: float | None = None
    verdict: str = ""
    is_rate: bool = False
    zero_from: float | None = None

    def predict(self, t):
        return np.exp(self.intercept - self.mu * np.asarray(t, float))

    def as_dict(self):
        return asdict(self)

    def __str__(self):
        fit = (f"mu = {self.mu:.4g} [{self.ci[0]:.4g}, {self.ci[1]:.4g}], R^2 = {self.r2:.4f}, "
               f"window t in [{self.window[0]:.4g}, {self.window[1]:.4g}] "
               f"({self.n_points} pts)")
        if self.is_rate:
            return f"{self.verdict}: {fit}"
        return f"{self.verdict} (not a rate: {fit})"


def _linear_fit(t, y):
    from scipy import stats  # imported here: scipy.stats costs half a second at import

    slope, intercept, r, _, se = stats.linregress(t, y)
    n = len(t)
    half = stats.t.ppf(0.975, n - 2) * se if n > 2 else np.inf
    return slope, intercept, r * r, half


def detect_plateau(t, values, *, tail=0.25, flatness=0.1, floor=1e-13, min_drop=MIN_DROP):
    """Start and level of a plateau at the end of a decaying curve, or ``(None, None)``.

    A plateau is a tail (at least ``tail`` of the points) whose log-slope is below
    ``flatness`` times the log-slope of the decay before it, at a level above ``floor``
    times the curve's maximum (below that it is rounding, not a plateau). The decay before it
    must fall by at least a factor ``min_drop`` along its fitted line (a noisy flat curve has
    no plateau, it is flat).
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
        if (head_slope < 0 and abs(tail_slope) < flatness * abs(head_slope)
                and -head_slope * (t[start - 1] - t[0]) >= np.log(min_drop)):
            best = start
            break
    if best is None:
        return None, None
    return float(t[best]), float(np.exp(np.median(y[best:])))


def _noise_level(y):
    """Standard deviation of the noise on a curve ``y`` sampled on a uniform grid, from its
    second differences: ``6 sigma^2`` for independent noise, while a smooth curve adds only
    ``h^2 y''`` (and a kink one term)."""
    if len(y) < 3:
        return 0.0
    return float(np.sqrt(np.mean(np.diff(y, 2) ** 2) / 6.0))


def _best_window(t, y, *, min_points, min_span, r2_min, min_drop, deviation, n_grid=60):
    """``(i, j)``: the window ``[i, j)`` of the automatic fit of ``y = log values``.

    Candidates (on a grid of starts and ends) have at least ``min_points`` points and span at
    least ``min_span``. The longest candidate that passes the tests of a rate wins (ties go
    to the smaller residual): it decreases, by at least a factor ``min_drop`` along the
    fitted line, with ``R^2 >= r2_min``, and its residual RMS is at most
    ``max(1.5 noise, deviation)`` (a straight line up to the noise, :func:`_noise_level` on the
    window). If none does: all the points. Sums are cumulative, so every candidate costs
    O(1); ``R^2`` alone would not do, it stays high on a long window with a transient in it.
    """
    n = len(t)
    c = [np.concatenate([[0.0], np.cumsum(a)]) for a in (np.ones(n), t, y, t * t, y * y, t * y)]
    d2 = np.concatenate([[0.0], np.cumsum(np.diff(y, 2) ** 2)]) if n > 2 else np.zeros(1)
    i = np.unique(np.linspace(0, max(0, n - min_points), n_grid).astype(int))[:, None]
    j = np.unique(np.round(np.linspace(min(min_points, n), n, n_grid)).astype(int))[None, :]
    i, j = np.broadcast_arrays(i, j)
    keep = (j - i >= min_points) & (t[j - 1] - t[i] >= min_span)
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return 0, n
    m, st, sy, stt, syy, sty = (a[j] - a[i] for a in c)
    vt, vy, cov = stt - st * st / m, syy - sy * sy / m, sty - st * sy / m
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = cov * cov / (vt * vy)
        slope = cov / vt
        rms = np.sqrt(np.maximum(vy - cov * slope, 0.0) / (m - 2))
        noise = np.sqrt((d2[j - 2] - d2[i]) / (j - i - 2) / 6.0)
        ok = ((cov < 0) & (vt > 0) & (vy > 0) & (r2 >= r2_min)
              & (rms <= np.maximum(1.5 * noise, deviation))
              & (-slope * (t[j - 1] - t[i]) >= np.log(min_drop)))
    if not np.any(ok):
        return 0, n
    i, j, rms = i[ok], j[ok], rms[ok]
    longest = j - i == np.max(j - i)
    k = np.flatnonzero(longest)[np.argmin(rms[longest])]
    return int(i[k]), int(j[k])


def _short(x):
    """``4.2e-3``: two digits, no zero-padded exponent."""
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def _zero_tail(t, v, floor):
    """``(start, exact)`` of the trailing run (at least two points) of values at the rounding
    floor, ``exact`` if they are all exactly 0; ``(None, False)`` if there is none."""
    zero = v <= floor * np.max(np.abs(v))
    if len(v) < 2 or not (zero[-1] and zero[-2]):
        return None, False
    start = np.flatnonzero(~zero)[-1] + 1 if np.any(~zero) else 0
    return float(t[start]), bool(np.all(v[start:] == 0))


def fit_rate(t, values, window=None, *, r2_min=R2_MIN, floor=1e-13, plateau=True,
             min_points=MIN_POINTS, min_fraction=MIN_FRACTION, min_drop=MIN_DROP,
             deviation=DEVIATION):
    """Fit ``values ~ exp(-mu t)`` by log-linear regression, and say whether it is a rate.

    ``mu`` is reported as a decay rate (``is_rate``) only if the fit passes every test:
    at least ``min_points`` points spanning (automatic window) ``min_fraction`` of the time
    span; ``mu > 0`` with its whole 95% CI above 0 and a drop by ``min_drop`` along the line;
    ``R^2 >= r2_min``; straight on a log scale (RMS deviation of ``log(values)`` from the line
    at most ``deviation`` or 1.5 times the curve's noise from its second differences).

    Otherwise ``verdict`` says what the curve does instead (see :class:`RateFit`).

    Parameters
    ----------
    t, values : array_like, shape (n,)
    window : (float, float), optional
        Fit on ``t_start <= t <= t_end``: honoured as given, and judged by the same tests
        (but for the minimum fraction). Default: found automatically - values at the rounding
        floor are dropped, a plateau at the end is detected and left out (and reported), then
        the longest window that passes the tests is taken; if none does, the fit is over all
        the points that are left, and the verdict says why it is not a rate.
    floor : float
        Values below ``floor * max(values)`` are treated as zero and not fitted.
    plateau : bool
        Look for a plateau (automatic window only).
    r2_min, min_points, min_fraction, min_drop, deviation
        The tests above; their defaults (0.95, 8, 0.25, 2, 0.01) are explained where they
        are defined (:data:`R2_MIN`, :data:`MIN_POINTS`, ...).

    Returns
    -------
    RateFit (ValueError with fewer than 3 positive values to fit)

    Examples
    --------
    >>> t = np.linspace(0, 10, 101)
    >>> fit_rate(t, 2 * np.exp(-0.5 * t)).verdict
    'exponential decay'
    >>> fit_rate(t, np.exp(0.1 * t)).verdict
    'no exponential decay detected (rises)'
    """
    t, v = np.asarray(t, float), np.asarray(values, float)
    span = float(t[-1] - t[0]) if t.size else 0.0
    min_span = min_fraction * span if window is None else 0.0
    idx, tail = _fit_points(t, v, window, floor, plateau)
    if window is None:
        idx = idx[slice(*_best_window(t[idx], np.log(v[idx]), min_points=max(min_points, 3),
                                      min_span=min_span, r2_min=r2_min, min_drop=min_drop,
                                      deviation=deviation))]
    y = np.log(v[idx])
    slope, intercept, r2, half = _linear_fit(t[idx], y)
    reason = _why_not_a_rate(t[idx], y, slope, intercept, r2, half, dict(
        min_points=min_points, min_span=min_span, min_fraction=min_fraction, span=span,
        r2_min=r2_min, min_drop=min_drop, deviation=deviation))
    return RateFit(mu=0.0 - slope, ci=(-slope - half, -slope + half), r2=r2,
                   intercept=intercept, window=(float(t[idx[0]]), float(t[idx[-1]])),
                   n_points=len(idx), plateau=tail[1], plateau_start=tail[0],
                   verdict=_verdict(reason, tail, float(t[idx[-1]])), is_rate=reason is None,
                   zero_from=tail[2])


def _why_not_a_rate(t, y, slope, intercept, r2, half, limits):
    """Why the line fitted to ``(t, y = log values)`` is not a decay rate, or None."""
    mu, ci = -slope, (-slope - half, -slope + half)
    lo, hi, n = t[0], t[-1], len(t)
    rms = float(np.sqrt(np.sum((y - intercept - slope * t) ** 2) / max(n - 2, 1)))
    limit = max(1.5 * _noise_level(y), limits["deviation"])
    drop = np.exp(mu * (hi - lo))
    tests = [  # (failed, why not a rate), in the order a reader would ask
        (n < limits["min_points"], f"too few points ({n} < {limits['min_points']})"),
        (hi - lo < limits["min_span"] * (1 - 1e-9),
         f"too short (t in [{lo:.3g}, {hi:.3g}] < {limits['min_fraction']:.0%} of "
         f"{limits['span']:.3g})"),
        (ci[1] < 0, "no exponential decay detected (rises)"),
        (not ci[0] > 0, "no exponential decay detected (no trend)"),
        (not r2 >= limits["r2_min"],
         f"no exponential decay detected (R^2 {r2:.2f} < {limits['r2_min']:g})"),
        (mu * (hi - lo) < np.log(limits["min_drop"]) * (1 - 1e-9),
         f"no exponential decay detected (falls by only {drop:.3g}x)"),
        (rms > limit * (1 + 1e-9), "no exponential decay detected (curved on a log scale)"),
    ]
    return next((why for failed, why in tests if failed), None)


def _fit_points(t, v, window, floor, plateau):
    """Indices of the values a fit may use, and what the curve does at its end:
    ``(plateau_start, plateau_level, zero_from, exact_zeros)``."""
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"t and values must be 1-D of the same shape, got {t.shape} and "
                         f"{v.shape}")
    if not np.any(v > 0):
        raise ValueError("need at least 3 positive values in the fit window, got 0")
    plateau_start = level = zero_from = None
    exact_zeros = False
    if window is not None:
        mask = (t >= window[0]) & (t <= window[1]) & (v > 0)
    else:
        mask = v > floor * np.max(np.abs(v))
        zero_from, exact_zeros = _zero_tail(t, v, floor)
        if plateau:
            plateau_start, level = detect_plateau(t, v, floor=floor)
            if plateau_start is not None:
                mask &= t < plateau_start
    idx = np.flatnonzero(mask)
    if len(idx) < 3:
        raise ValueError(f"need at least 3 positive values in the fit window, got {len(idx)}")
    return idx, (plateau_start, level, zero_from, exact_zeros)


def _verdict(reason, tail, end):
    """The verdict of a fit ending at ``end``: its decay and what follows, or why it is not a
    rate (a plateau or zeros after the fit say more than the reason)."""
    plateau_start, level, zero_from, exact_zeros = tail
    after = None
    if level is not None:
        after = f"plateau at {_short(level)} from t = {plateau_start:.3g}"
    elif zero_from is not None and zero_from > end:
        after = f"{'zero' if exact_zeros else 'rounding level'} from t = {zero_from:.3g}"
    if reason is None:
        return "exponential decay" + (f", then {after}" if after else "")
    return after if after is not None else reason


def power_law(x, y):
    """Log-log fit ``y ~ C x^slope``: dict with slope, its 95% CI, R^2, C and n_points.

    Through two points the line is exact and says nothing about its quality: ``ci`` is
    ``(nan, nan)`` and ``r2`` is nan.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    n = int(np.count_nonzero(ok))
    if n < 2:
        raise ValueError("need at least 2 positive points for a power law")
    if n == 2:
        slope = float(np.diff(np.log(y[ok]))[0] / np.diff(np.log(x[ok]))[0])
        return dict(slope=slope, ci=(np.nan, np.nan), r2=np.nan, n_points=2,
                    C=float(np.exp(np.log(y[ok][0]) - slope * np.log(x[ok][0]))))
    slope, intercept, r2, half = _linear_fit(np.log(x[ok]), np.log(y[ok]))
    return dict(slope=slope, ci=(slope - half, slope + half), r2=r2, n_points=n,
                C=float(np.exp(intercept)))


# --------------------------------------------------------------------- T-scaling
def time_scaling_equivalence(problem, controls):
    """docs/theory.md section 6: ``J_{T,lam}(u)`` and ``J_{1,lam/T}(T u)`` with the same grid.

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
    """Structure of l1 controls with a bound M (docs/theory.md 4b, 7 E3a).

    Attributes
    ----------
    switching_time : float or None
        First grid time ``t_k`` after which every ``|u_j|`` is zero, i.e. at most
        ``tol * M`` (None if the controls never vanish). Quantised to the step h.
    bang_bang : bool
        Every ``|u_k|`` is 0 or M up to ``tol * M``, except at most one step.
    intermediate_steps : int
        Steps with ``tol M < |u_k| < (1 - tol) M``.
    error_after : float or None
        Largest training error ``Phi(x(t))`` for ``t >= switching_time``.
    travelled_time : float
        ``h sum_k |u_k| / M``: the time the controls would need at full bound to do what they
        do. Not quantised and without a threshold, it is the finer estimate of the switching
        time of bang-bang controls (for "l1elem", ``|u_k|`` is the largest entry of step k).
    tol : float
        The tolerance used, relative to M.
    """

    switching_time: float | None
    bang_bang: bool
    intermediate_steps: int
    error_after: float | None
    travelled_time: float = float("nan")
    tol: float = 1e-3

    def as_dict(self):
        return asdict(self)


def switching(problem, controls, *, tol=1e-3):
    """The switching time and bang-bang check of ``controls`` for ``problem.bound``.

    ``tol`` is relative to the bound M: a step counts as zero when ``|u_k| <= tol M`` and as
    at the bound when ``|u_k| >= (1 - tol) M`` (for "l1elem": every entry). The default
    1e-3 is above the small controls a solver that has not fully converged leaves on steps
    the optimum switches off (their size, 1e-6 or 1e-4 of M, depends on when it stopped, and
    with a threshold at 1e-6 M so did the switching time), and far below a step that does
    something: a step at 1e-3 M moves the points by 1e-3 of what a step at the bound does.
    ``travelled_time`` needs no threshold at all.
    """
    bound = problem.bound
    if bound is None or not np.isfinite(bound):
        raise ValueError("switching needs a problem with reg='l1' or 'l1elem' and a bound")
    if not 0 < tol < 0.5:
        raise ValueError(f"tol is relative to the bound and must be in (0, 0.5), got {tol}")
    c = curves(problem, controls)
    if problem.reg.name == "l1":
        norms = c["control_norm"]
        zero = norms <= tol * bound
        full = np.abs(norms - bound) <= tol * bound
    else:
        values = np.concatenate([np.abs(np.asarray(controls[n], float)).reshape(
            problem.n_steps, -1) for n in problem.control_names], axis=1)
        norms = np.max(values, axis=1)
        zero = norms <= tol * bound
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
    travelled = problem.h * float(np.sum(norms)) / bound
    return Switching(t_s, intermediate <= 1, intermediate, after, travelled, tol)


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


# ------------------------------------------------------------------ stages
def stage_curves(problem, controls, states=None, costates=None):
    """The per-time curves of :func:`curves` for a staged problem, on the whole horizon.

    Returns
    -------
    dict
        "t" (sum_j (K_j + 1),): every stage's grid, one after the other (a switching time
        appears twice: the end of one stage and the start of the next), "stage" the stage of
        each of these points, "error" (each stage reads its states through its own readout)
        and "costate_norm" there; "t_steps", "step_stage" (sum_j K_j,): the left end points
        of every stage's steps, "control_norm" ``|u_k|`` (each stage's own controls: the
        widths differ, so do the norms' meanings), "hamiltonian" ``H_k`` (per step, with the
        stage's ``h_j``) and "hamiltonian_rate" ``Hbar_k = H_k / h_j`` without its
        control-free part (:func:`pmp.stages.stage_hamiltonians`) there; "per_stage": a list
        of one dict per stage with the same curves on that stage only.
    """
    from . import stages as st

    controls = problem.validate_controls(controls)
    if states is None or costates is None:
        states, costates = st.evaluate(problem, controls, validate=False)[2:]
    errors = st.losses_along(problem, states, controls)
    H = st.hamiltonian(problem, controls, states, costates)
    rates = st.stage_hamiltonians(problem, controls, states, costates)
    per_stage = []
    for j, stage in enumerate(problem.stages):
        own = {n: a for n, a in controls[j].items() if n != st.ENTER}
        ps = costates[j].astype(float)
        per_stage.append(dict(
            t=problem.t[j].copy(), error=errors[j], control_norm=step_norms(stage, own),
            costate_norm=np.sqrt(problem.n_samples * np.sum(ps ** 2, axis=(1, 2))),
            hamiltonian=np.asarray(H[j]), hamiltonian_rate=rates[j]))
    out = {k: np.concatenate([c[k] for c in per_stage]) for k in per_stage[0]}
    out["t_steps"] = np.concatenate([t[:-1] for t in problem.t])
    out["stage"] = np.concatenate([np.full(len(t), j) for j, t in enumerate(problem.t)])
    out["step_stage"] = np.concatenate([np.full(len(t) - 1, j)
                                        for j, t in enumerate(problem.t)])
    out["per_stage"] = per_stage
    return out


def switching_report(problem, controls, states=None, costates=None):
    """The switching times of a staged problem and what decides them (docs/theory.md
    section 13), from :mod:`pmp.stages`.

    Returns
    -------
    dict
        "switch_times" (S - 1,), "durations", "starts", "dims", "n_steps" (S,),
        "transitions" (the kind of each, S - 1 names); "duration_gradient" ``dJ/dT_j`` with
        the steps kept (:func:`pmp.stages.duration_gradient`), "fixed_horizon_gradient"
        ``g - mean(g)`` (the gradient with ``sum T_j`` fixed), "switch_rate" ``g[j] - g[j+1]``
        (the rate at which J changes when switch j moves later, the horizon fixed);
        "switch_hamiltonians" (S - 1, 2): ``Hbar`` at the last step before and the first step
        after every switch (:func:`pmp.stages.switch_hamiltonians`), "hamiltonian_jump"
        their difference (after minus before); "hamiltonian_mean" and "hamiltonian_spread"
        (max - min) of ``Hbar`` on every stage (constant on an optimal arc).
    """
    from . import stages as st

    controls = problem.validate_controls(controls)
    if states is None or costates is None:
        states, costates = st.evaluate(problem, controls, validate=False)[2:]
    g = st.duration_gradient(problem, controls, states=states, costates=costates)
    sides = st.switch_hamiltonians(problem, controls, states, costates)
    rates = st.stage_hamiltonians(problem, controls, states, costates)
    return dict(
        switch_times=problem.switch_times, durations=np.asarray(problem.durations, float),
        starts=np.asarray(problem.starts, float), dims=np.asarray(problem.dims),
        n_steps=np.asarray(problem.n_steps), transitions=[t.kind for t in problem.transitions],
        duration_gradient=g, fixed_horizon_gradient=g - g.mean(), switch_rate=g[:-1] - g[1:],
        switch_hamiltonians=sides, hamiltonian_jump=sides[:, 1] - sides[:, 0],
        hamiltonian_mean=np.array([float(np.mean(r)) for r in rates]),
        hamiltonian_spread=np.array([float(np.ptp(r)) for r in rates]))


def _fit_or_none(t, values):
    try:
        return fit_rate(t, values)
    except ValueError:
        return None


def _analyze_staged(run, iteration):
    """:func:`analyze_run` of a staged run: curves on the whole horizon, the error's fit on
    it, the fits of ``|u(t)|`` and ``|p(t)|`` stage by stage, the increments of every stage,
    and the switching report."""
    from . import stages as st

    problem, controls = run.problem(iteration), run.controls(iteration)
    controls = problem.validate_controls(controls)
    _, _, xs, ps = st.evaluate(problem, controls, validate=False)
    c = stage_curves(problem, controls, xs, ps)
    out = {"curves": c, "iteration": int(run.checkpoint(iteration).attrs["iteration"]),
           "fit_error": _fit_or_none(c["t"], c["error"])}
    out["fit_control"] = [_fit_or_none(s["t"][:-1], s["control_norm"]) for s in c["per_stage"]]
    out["fit_costate"] = [_fit_or_none(s["t"], s["costate_norm"]) for s in c["per_stage"]]
    out["increments"] = [increments(stage, {n: a for n, a in u.items() if n != st.ENTER})
                         for stage, u in zip(problem.stages, controls)]
    out["stages"] = switching_report(problem, controls, xs, ps)
    return out


# ------------------------------------------------------------------ run, sweep
def analyze_run(run, iteration=None):
    """Everything that applies to one checkpoint of a run (a :class:`pmp.store.Run`).

    Returns a dict: "curves", fits of the error, the control norm and the costate norm
    ("fit_error", "fit_control", "fit_costate"; None where a fit is impossible), and where
    they apply "switching", "increments", "displacement_bound", "time_scaling".

    A staged run (:mod:`pmp.stages`) gives "curves" of :func:`stage_curves` (the whole
    horizon), "fit_error" on the whole horizon, "fit_control" and "fit_costate" as lists (one
    fit per stage: the widths differ), "increments" per stage, and "stages", the
    :func:`switching_report` (switching times, ``dJ/dT_j``, the Hamiltonian on both sides of
    every switch).
    """
    if getattr(run, "staged", False):
        return _analyze_staged(run, iteration)
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
        if key == "model.T":  # the horizon (a stage's T is a part of it)
            entry["T_times_J"] = (x * np.array(entry["cost"])).tolist()
        results.append(entry)
    return results
