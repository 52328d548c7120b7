"""Losses Phi and regularisers R of the discrete cost (docs/theory.md section 2)::

    J(u) = terminal * Phi(X_K) + h sum_k [running * Phi(X_k) + R(u_k)]
           (+ (lam1 / h) sum_k |u_{k+1} - u_k|^2 for "h1")

``|u_k|`` is the Euclidean norm over every control array at step k together (a trainable
readout ``P`` has no step axis and is not regularised).
"""
from dataclasses import dataclass

import numpy as np

from ._controls import step_norms_squared
from ._kernels import codes
from ._validation import integer, lookup, real

# ------------------------------------------------------------------------------ losses
LOSS_CODES = {
    "squared": codes.SQUARED,
    "lp": codes.LP,
    "logistic": codes.LOGISTIC,
    "cross_entropy": codes.CROSS_ENTROPY,
}
LOSS_NAMES = tuple(sorted(LOSS_CODES))


def prepare_targets(loss, y, n_samples, n_classes=None):
    """Validate targets for ``loss`` and bring them to the kernels' form.

    Parameters
    ----------
    loss : str
    y : array_like, shape (N,) or (N, m)
        Real targets ("squared", "lp"), +-1 ("logistic"), class indices ("cross_entropy").
    n_samples : int
    n_classes : int, optional
        Number of classes of "cross_entropy" (default: largest label + 1); an error with
        any other loss.

    Returns
    -------
    y_kernel : ndarray, shape (N, m_y), float64
    m : int
        Width of the output ``z = P x`` the loss is applied to.
    """
    if n_classes is not None:
        n_classes = integer(n_classes, "n_classes")
        if loss != "cross_entropy":
            raise ValueError(f"n_classes is only used by loss='cross_entropy', got "
                             f"n_classes={n_classes} with loss={loss!r}")
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y must hold numbers, got dtype {y.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] != n_samples:
        raise ValueError(
            f"y must have shape ({n_samples},) or ({n_samples}, m) to match x, got {y.shape}"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("y must be finite, got NaN or inf")
    if loss == "cross_entropy":
        if y.ndim != 1 or np.any(y != np.round(y)) or np.any(y < 0):
            raise ValueError(
                "y must be integer class labels >= 0 of shape (n_samples,) for loss "
                f"'cross_entropy', got shape {y.shape} with values in [{y.min()}, {y.max()}]"
            )
        found = int(y.max()) + 1
        m = found if n_classes is None else n_classes
        if m < 2 or found > m:
            raise ValueError(
                f"n_classes must be >= 2 and > every label, got n_classes={m} with largest "
                f"label {found - 1}"
            )
        return np.ascontiguousarray(y.reshape(-1, 1), dtype=np.float64), m
    y2 = np.ascontiguousarray(y.reshape(n_samples, -1), dtype=np.float64)
    if loss == "logistic" and not np.all(np.abs(y2) == 1.0):
        bad = y2[np.abs(y2) != 1.0][0]
        raise ValueError(f"y must be -1 or +1 for loss 'logistic', got {bad}")
    return y2, y2.shape[1]


# --------------------------------------------------------------------------- regularisers
@dataclass
class Regularizer:
    """Base class: ``R(u_k)`` per step and the smooth part of its gradient.

    Attributes
    ----------
    name : str
    lam : float
        Weight ``lam``.
    smooth : bool
        True when R is differentiable (gradient methods apply); otherwise use a proximal
        method and :meth:`prox`.
    """

    lam: float = 0.0
    name = ""
    smooth = True

    def step_values(self, controls, names):
        """``R(u_k)`` for every step, shape (K,)."""
        raise NotImplementedError

    def value(self, controls, names, h):
        """The regularisation part of J: ``h sum_k R(u_k)`` (+ coupling terms)."""
        return h * float(np.sum(self.step_values(controls, names)))

    def add_grad(self, controls, names, h, grads):
        """Add the gradient of the smooth part of :meth:`value` to ``grads`` (in place)."""

    def prox(self, controls, names, step):
        """Proximal map of ``step * R`` per step (identity for the smooth regularisers)."""
        return controls


@dataclass
class L2(Regularizer):
    """``R(u) = lam |u|^2``."""

    name = "l2"

    def step_values(self, controls, names):
        return self.lam * step_norms_squared(controls, names)

    def value(self, controls, names, h):
        # one sum of squares per array, not one per step (a fixed cost per call each).
        # einsum, not np.dot / vdot: those call BLAS, whose threads would then spin beside
        # the sweeps' and slow them down
        return h * self.lam * sum(float(np.einsum("i,i->", u, u))
                                  for u in (controls[n].reshape(-1) for n in names))

    def add_grad(self, controls, names, h, grads):
        for n in names:
            grads[n] += (2.0 * h * self.lam) * controls[n]


@dataclass
class H1(L2):
    """``R(u) = lam |u|^2`` plus the discrete H^1 seminorm ``(lam1/h) sum |u_{k+1} - u_k|^2``."""

    lam1: float = 0.0
    name = "h1"

    def value(self, controls, names, h):
        diffs = {n: np.diff(controls[n], axis=0) for n in names}
        coupling = float(np.sum(step_norms_squared(diffs, names))) if diffs else 0.0
        return super().value(controls, names, h) + self.lam1 / h * coupling

    def add_grad(self, controls, names, h, grads):
        super().add_grad(controls, names, h, grads)
        c = 2.0 * self.lam1 / h
        for n in names:
            du = np.diff(controls[n], axis=0)  # du[k] = u_{k+1} - u_k
            grads[n][1:] += c * du
            grads[n][:-1] -= c * du


@dataclass
class L1(Regularizer):
    """``R(u) = lam |u|`` (group norm over the whole step) with the ball ``|u_k| <= bound``."""

    bound: float = np.inf
    name = "l1"
    smooth = False

    def step_values(self, controls, names):
        return self.lam * np.sqrt(step_norms_squared(controls, names))

    def prox(self, controls, names, step):
        norms = np.sqrt(step_norms_squared(controls, names))
        target = np.minimum(self.bound, np.maximum(0.0, norms - step * self.lam))
        scale = np.divide(target, norms, out=np.zeros_like(norms), where=norms > 0)
        out = dict(controls)
        for n in names:
            out[n] = controls[n] * scale.reshape((-1,) + (1,) * (controls[n].ndim - 1))
        return out


@dataclass
class L1Elementwise(Regularizer):
    """``R(u) = lam sum_j |u_j|`` with the box ``|u_j| <= bound``."""

    bound: float = np.inf
    name = "l1elem"
    smooth = False

    def step_values(self, controls, names):
        return self.lam * sum(
            np.abs(controls[n]).reshape(len(controls[n]), -1).sum(axis=1) for n in names
        )

    def prox(self, controls, names, step):
        out = dict(controls)
        for n in names:
            u = controls[n]
            out[n] = np.clip(np.sign(u) * np.maximum(np.abs(u) - step * self.lam, 0.0),
                             -self.bound, self.bound)
        return out


REGULARIZERS = {cls.name: cls for cls in (L2, H1, L1, L1Elementwise)}
REG_NAMES = tuple(sorted(REGULARIZERS))


def make_regularizer(reg, lam, lam1=0.0, bound=None):
    """A :class:`Regularizer` from a name (or an instance, returned as is)."""
    if isinstance(reg, Regularizer):
        return reg
    cls = lookup(REGULARIZERS, reg, "regularizer", "reg")
    lam = real(lam, "lam", low=0.0)
    lam1 = real(lam1, "lam1", low=0.0)
    if bound is not None:
        bound = real(bound, "bound", low=0.0, low_open=True, allow_inf=True)
    if cls is H1:
        return H1(lam, lam1)
    if lam1 != 0.0:
        raise ValueError(f"lam1 is only used by reg='h1', got lam1={lam1} with reg={reg!r}")
    if cls in (L1, L1Elementwise):
        return cls(lam, np.inf if bound is None else bound)
    if bound is not None:
        raise ValueError(f"bound is only used by reg='l1' or 'l1elem', got bound={bound} with "
                         f"reg={reg!r}")
    return cls(lam)


def loss_code(loss):
    return lookup(LOSS_CODES, loss, "loss")
