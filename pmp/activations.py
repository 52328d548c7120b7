"""Activation functions sigma: names, parameters, and NumPy evaluation for users.

The kernels evaluate them by integer code (``pmp._kernels.activations``); this module is the
public registry. ``sigma'`` at a kink takes the convention of docs/theory.md: relu'(0) = 0,
leaky_relu'(0) = slope.
"""
from dataclasses import dataclass

import numpy as np

from ._kernels import codes, lazy
from ._validation import lookup, real

_k = lazy("activations")
_CODES = {
    "tanh": codes.TANH,
    "relu": codes.RELU,
    "leaky_relu": codes.LEAKY_RELU,
    "sigmoid": codes.SIGMOID,
    "softplus": codes.SOFTPLUS,
    "gelu": codes.GELU,
    "identity": codes.IDENTITY,
}
NAMES = tuple(sorted(_CODES))
# positively 1-homogeneous: sigma(c z) = c sigma(z) for c > 0 (docs/theory.md section 6)
HOMOGENEOUS = frozenset({"relu", "leaky_relu", "identity"})
PIECEWISE_LINEAR = HOMOGENEOUS
# |sigma(z)| <= 1 for every z
BOUNDED = frozenset({"tanh", "sigmoid"})


@dataclass(frozen=True)
class Activation:
    """An activation function.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    slope : float
        Negative-side slope of "leaky_relu" (ignored by the others).
    """

    name: str = "tanh"
    slope: float = 0.1

    def __post_init__(self):
        lookup(_CODES, self.name, "activation")
        real(self.slope, "slope", low=0.0)

    @property
    def code(self):
        return _CODES[self.name]

    @property
    def param(self):
        return float(self.slope)

    @property
    def homogeneous(self):
        return self.name in HOMOGENEOUS

    @property
    def bounded(self):
        """True when ``|sigma(z)| <= 1`` for every z."""
        return self.name in BOUNDED

    def __call__(self, z):
        """sigma(z) for an array of any shape."""
        return self.value_and_slope(z)[0]

    def value_and_slope(self, z):
        """(sigma(z), sigma'(z)) for an array of any shape."""
        return self.derivatives(z)[:2]

    def derivatives(self, z):
        """(sigma(z), sigma'(z), sigma''(z)) for an array of any shape."""
        z = np.asarray(z, dtype=np.float64)
        flat = np.ascontiguousarray(z.reshape(1, -1))
        out = [np.empty_like(flat) for _ in range(3)]
        _k.activate_with_curvature(self.code, self.param, flat, *out)
        return tuple(o.reshape(z.shape) for o in out)


def get(activation, slope=0.1):
    """An :class:`Activation` from a name or an instance."""
    if isinstance(activation, Activation):
        return activation
    return Activation(activation, slope)
