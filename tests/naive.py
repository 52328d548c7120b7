"""Slow, obviously-correct NumPy twins of pmp's kernels, written from docs/theory.md.

Nothing here calls pmp's kernels: only the data and settings of a :class:`pmp.Problem` are
read (``problem.x``, ``problem.y_kernel``, ``problem.P``, ``problem.h``, ``problem.n_steps``,
``problem.loss``, ``problem.p``, ``problem.activation``, ``problem.field``, ``problem.reg``,
``problem.running``, ``problem.terminal``, ``problem.trainable_readout``, ``problem.frozen``).
Everything is computed in float64, one sample at a time in column form where that is clearer.

Conventions (docs/theory.md sections 1-3, 8):

* ``X_{k+1} = X_k + h F(X_k, u_k)``, ``h = T / K``;
* ``Phi(X) = (1/N) sum_i l(P x_i, y_i)``;
* ``J = terminal Phi(X_K) + h sum_{k<K} [running Phi(X_k) + R(u_k)]
  (+ (lam1 / h) sum_{k<K-1} |u_{k+1} - u_k|^2 for "h1")``;
* ``p_K = -terminal grad Phi(X_K)``,
  ``p_k = p_{k+1} + h (D_x f)^T p_{k+1} - h running grad Phi(X_k)``;
* ``dJ/du_k = -h d<p_{k+1}, F(X_k, u_k)>/du_k + h grad R(u_k)`` (+ the H^1 coupling).
"""
import math

import numpy as np
from scipy.special import erf, expit, logsumexp

# ------------------------------------------------------------------------ activations
ACTIVATIONS = ("tanh", "relu", "leaky_relu", "sigmoid", "softplus", "gelu", "identity")


def activation(name, z, slope=0.1):
    """``(sigma(z), sigma'(z))`` elementwise; relu'(0) = 0, leaky_relu'(0) = slope."""
    z = np.asarray(z, dtype=np.float64)
    if name == "tanh":  # sech^2 z = 4 e^{-2|z|} / (1 + e^{-2|z|})^2, no cancellation
        e = np.exp(-2.0 * np.abs(z))
        return np.tanh(z), 4.0 * e / (1.0 + e) ** 2
    if name == "relu":
        return np.where(z > 0, z, 0.0), np.where(z > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope)
    if name == "sigmoid":
        return expit(z), expit(z) * expit(-z)
    if name == "softplus":
        return np.logaddexp(0.0, z), expit(z)
    if name == "gelu":
        cdf = 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
        return z * cdf, cdf + z * pdf
    if name == "identity":
        return z.copy(), np.ones_like(z)
    raise ValueError(name)


def feature_map(kind, amplitude, z):
    """Random-feature map ``amplitude * cos`` ("fourier") or ``amplitude * relu`` ("relu")."""
    z = np.asarray(z, dtype=np.float64)
    if kind == "fourier":
        return amplitude * np.cos(z), -amplitude * np.sin(z)
    if kind == "relu":
        return amplitude * np.where(z > 0, z, 0.0), amplitude * np.where(z > 0, 1.0, 0.0)
    raise ValueError(kind)


def sigma(problem, z):
    a = problem.activation
    return activation(a.name, z, a.slope)


# ------------------------------------------------------------------------------ losses
def sample_loss(loss, z, y, p=2.0):
    """``(l(z, y), dl/dz)`` for one sample: z (m,), y the row of ``problem.y_kernel``."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if loss == "squared":
        r = z - y
        return 0.5 * np.sum(r**2), r
    if loss == "lp":
        r = z - y
        return np.sum(np.abs(r) ** p), p * np.abs(r) ** (p - 1.0) * np.sign(r)
    if loss == "logistic":  # sum_j log(1 + exp(-y_j z_j))
        return np.sum(np.logaddexp(0.0, -y * z)), -y * expit(-y * z)
    if loss == "cross_entropy":  # log sum exp z - z_label
        label = int(y[0])
        e = np.zeros_like(z)
        e[label] = 1.0
        return logsumexp(z) - z[label], np.exp(z - logsumexp(z)) - e
    raise ValueError(loss)


def mean_loss(problem, X, P):
    """``Phi(X)``, ``grad_X Phi`` (N, d) and ``dPhi/dP`` (m, d)."""
    X = np.asarray(X, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(problem.y_kernel, dtype=np.float64)
    N = X.shape[0]
    phi, gX, gP = 0.0, np.zeros_like(X), np.zeros_like(P)
    for i in range(N):
        li, gi = sample_loss(problem.loss, P @ X[i], Y[i], problem.p)
        phi += li / N
        gX[i] = P.T @ gi / N
        gP += np.outer(gi, X[i]) / N
    return phi, gX, gP


def readout_matrix(problem, controls):
    return np.asarray(controls["P"] if problem.trainable_readout else problem.P, np.float64)


# ------------------------------------------------------------------------------ fields
def _step(controls, k, names):
    return {n: np.asarray(controls[n][k], dtype=np.float64) for n in names}


def sample_field(problem, x, u):
    """``f(x, u)`` for one sample x (d,) and one step's controls u."""
    name = problem.field.name
    if name == "outer":
        return u["W"] @ sigma(problem, x)[0] + u["b"]
    if name == "inner":
        return sigma(problem, u["W"] @ x + u["b"])[0]
    if name == "diagonal":
        return u["w"] * sigma(problem, x)[0]
    if name == "features":
        fld = problem.field
        z = np.asarray(fld.omega, np.float64) @ x + np.asarray(fld.beta, np.float64)
        return u["A"] @ feature_map(fld.features, fld.amplitude, z)[0]
    if name == "perceptron":
        return u["V"] @ sigma(problem, u["W"] @ x + u["c"])[0]
    raise ValueError(name)


def sample_field_vjp(problem, x, u, p):
    """``(D_x f)^T p`` (d,) and ``{name: d<p, f(x, u)>/du}`` for one sample (docs/theory.md section 3)."""
    name = problem.field.name
    if name == "outer":
        s, ds = sigma(problem, x)
        return ds * (u["W"].T @ p), {"W": np.outer(p, s), "b": p.copy()}
    if name == "inner":
        s, ds = sigma(problem, u["W"] @ x + u["b"])
        a = ds * p
        return u["W"].T @ a, {"W": np.outer(a, x), "b": a}
    if name == "diagonal":
        s, ds = sigma(problem, x)
        return u["w"] * ds * p, {"w": p * s}
    if name == "features":
        fld = problem.field
        omega = np.asarray(fld.omega, np.float64)
        s, ds = feature_map(fld.features, fld.amplitude, omega @ x + fld.beta)
        return omega.T @ (ds * (u["A"].T @ p)), {"A": np.outer(p, s)}
    if name == "perceptron":
        s, ds = sigma(problem, u["W"] @ x + u["c"])
        a = ds * (u["V"].T @ p)
        return u["W"].T @ a, {"V": np.outer(p, s), "W": np.outer(a, x), "c": a}
    raise ValueError(name)


def batch_field(problem, X, controls, k):
    """``F(X, u_k)`` in batch row form, shape (N, d)."""
    u = _step(controls, k, problem.control_names)
    return np.array([sample_field(problem, x, u) for x in np.asarray(X, np.float64)])


def preactivations(problem, controls, xs):
    """Every argument the (piecewise-linear) activation / feature map is evaluated at."""
    out = []
    name = problem.field.name
    for k in range(problem.n_steps):
        u = _step(controls, k, problem.control_names)
        for x in xs[k]:
            if name in ("outer", "diagonal"):
                out.append(x)
            elif name == "inner":
                out.append(u["W"] @ x + u["b"])
            elif name == "features":
                out.append(np.asarray(problem.field.omega) @ x + problem.field.beta)
            else:
                out.append(u["W"] @ x + u["c"])
    return np.concatenate(out)


# ------------------------------------------------------------------------------ sweeps
def forward(problem, controls, x0=None, k0=0):
    """Euler states ``xs[k]`` for ``k = k0..K`` (index 0 is step k0) from ``x0`` (default: data)."""
    X = np.array(problem.x if x0 is None else x0, dtype=np.float64)
    xs = [X]
    for k in range(k0, problem.n_steps):
        X = X + problem.h * batch_field(problem, X, controls, k)
        xs.append(X)
    return np.array(xs)


def costates(problem, controls, xs=None):
    """``p_K = -terminal grad Phi(X_K)``, ``p_k = p_{k+1} + h (D_x f)^T p_{k+1}
    - h running grad Phi(X_k)``; shape (K + 1, N, d)."""
    if xs is None:
        xs = forward(problem, controls)
    P = readout_matrix(problem, controls)
    K, h = problem.n_steps, problem.h
    ps = np.zeros_like(xs)
    ps[K] = -problem.terminal * mean_loss(problem, xs[K], P)[1]
    for k in range(K - 1, -1, -1):
        u = _step(controls, k, problem.control_names)
        vjp = np.array([sample_field_vjp(problem, x, u, p)[0] for x, p in zip(xs[k], ps[k + 1])])
        ps[k] = ps[k + 1] + h * vjp - h * problem.running * mean_loss(problem, xs[k], P)[1]
    return ps


def hamiltonian_gradients(problem, controls, xs=None, ps=None):
    """``-h d<p_{k+1}, F(X_k, u_k)>/du_k`` for every control (no regulariser)."""
    if xs is None:
        xs = forward(problem, controls)
    if ps is None:
        ps = costates(problem, controls, xs)
    grads = {n: np.zeros(problem.control_shapes[n]) for n in problem.control_names}
    for k in range(problem.n_steps):
        u = _step(controls, k, problem.control_names)
        for x, p in zip(xs[k], ps[k + 1]):
            for n, g in sample_field_vjp(problem, x, u, p)[1].items():
                grads[n][k] -= problem.h * g
    return grads


def step_norms_squared(problem, controls):
    """``|u_k|^2`` over all arrays of step k together, shape (K,)."""
    K = problem.n_steps
    return sum(np.sum(np.asarray(controls[n], np.float64).reshape(K, -1) ** 2, axis=1)
               for n in problem.control_names)


def reg_step_values(problem, controls):
    """``R(u_k)`` per step."""
    reg, lam, K = problem.reg.name, problem.lam, problem.n_steps
    if reg in ("l2", "h1"):
        return lam * step_norms_squared(problem, controls)
    if reg == "l1":
        return lam * np.sqrt(step_norms_squared(problem, controls))
    if reg == "l1elem":
        return lam * sum(np.sum(np.abs(np.asarray(controls[n], np.float64)).reshape(K, -1), axis=1)
                         for n in problem.control_names)
    raise ValueError(reg)


def gradients(problem, controls):
    """Full ``dJ/du`` (smooth part of R only for l1 / l1elem), frozen entries zeroed,
    ``"P"`` for a trainable readout."""
    xs = forward(problem, controls)
    ps = costates(problem, controls, xs)
    grads = hamiltonian_gradients(problem, controls, xs, ps)
    h, lam = problem.h, problem.lam
    for n in problem.control_names:
        u = np.asarray(controls[n], np.float64)
        if problem.reg.name in ("l2", "h1"):
            grads[n] += 2.0 * h * lam * u
        if problem.reg.name == "h1":
            lam1 = problem.lam1
            for k in range(problem.n_steps):
                if k >= 1:
                    grads[n][k] += 2.0 * lam1 / h * (u[k] - u[k - 1])
                if k <= problem.n_steps - 2:
                    grads[n][k] -= 2.0 * lam1 / h * (u[k + 1] - u[k])
    if problem.trainable_readout:
        P = readout_matrix(problem, controls)
        gP = problem.terminal * mean_loss(problem, xs[-1], P)[2]
        for k in range(problem.n_steps):
            gP = gP + h * problem.running * mean_loss(problem, xs[k], P)[2]
        grads["P"] = gP
    for n, mask in problem.frozen.items():
        grads[n][np.asarray(mask, bool)] = 0.0
    return grads


def cost(problem, controls):
    """Parts of the discrete J: "terminal", "running", "regularization", "total", "loss"."""
    xs = forward(problem, controls)
    P = readout_matrix(problem, controls)
    h, K = problem.h, problem.n_steps
    phis = [mean_loss(problem, X, P)[0] for X in xs]
    terminal = problem.terminal * phis[K]
    running = h * problem.running * sum(phis[:K])
    reg = h * float(np.sum(reg_step_values(problem, controls)))
    if problem.reg.name == "h1":
        for n in problem.control_names:
            u = np.asarray(controls[n], np.float64)
            reg += problem.lam1 / h * sum(np.sum((u[k + 1] - u[k]) ** 2) for k in range(K - 1))
    return {"terminal": terminal, "running": running, "regularization": reg,
            "total": terminal + running + reg, "loss": phis[K]}


def hamiltonians(problem, controls, xs, ps):
    """``H_k = <p_{k+1}, X_k + h F(X_k, u_k)> - h [running Phi(X_k) + R(u_k)]``, shape (K,)."""
    P = readout_matrix(problem, controls)
    R = reg_step_values(problem, controls)
    xs = np.asarray(xs, np.float64)
    ps = np.asarray(ps, np.float64)
    out = np.empty(problem.n_steps)
    for k in range(problem.n_steps):
        nxt = xs[k] + problem.h * batch_field(problem, xs[k], controls, k)
        run = problem.running * mean_loss(problem, xs[k], P)[0]
        out[k] = np.sum(ps[k + 1] * nxt) - problem.h * (run + R[k])
    return out


# -------------------------------------------------- the maximiser's augmented Hamiltonian
def psi(problem, u, old, xs, ps, k, rho):
    """Psi~_k of docs/theory.md 4d (+ the h1 Jacobi terms of section 5) from the NumPy twins."""
    N = problem.n_samples
    names = problem.control_names
    step = {n: np.asarray(u[n][k], float) for n in names}
    step_old = {n: np.asarray(old[n][k], float) for n in names}
    X, p = np.asarray(xs[k], float), np.asarray(ps[k + 1], float)
    value = 0.0
    for x_i, p_i in zip(X, p):
        f = sample_field(problem, x_i, step)
        f_old = sample_field(problem, x_i, step_old)
        J = sample_field_vjp(problem, x_i, step, N * p_i)[0]
        J_old = sample_field_vjp(problem, x_i, step_old, N * p_i)[0]
        value += p_i @ f - rho / (2 * N) * (np.sum((f - f_old) ** 2) + np.sum((J - J_old) ** 2))
    norm2 = sum(np.sum(step[n] ** 2) for n in names)
    reg = problem.reg
    if reg.name in ("l2", "h1"):
        value -= reg.lam * norm2
    elif reg.name == "l1":
        value -= reg.lam * np.sqrt(norm2)
    else:
        value -= reg.lam * sum(np.sum(np.abs(step[n])) for n in names)
    lam1 = getattr(reg, "lam1", 0.0)
    for nb in (k - 1, k + 1):
        if 0 <= nb < problem.n_steps:
            value -= lam1 / problem.h**2 * sum(np.sum((step[n] - old[n][nb]) ** 2) for n in names)
    return value
