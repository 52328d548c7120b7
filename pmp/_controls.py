"""Controls as dicts of arrays: linear combinations, per-step norms and flattening.

A problem's controls are a dict ``name -> array`` whose first axis is the step ``k``
(``(n_steps, ...)``), plus, for a trainable readout, ``"P"`` without a step axis. Every
module that combines, measures or flattens them does it here.
"""
import numpy as np


def axpy(a, x, y):
    """``a x + y`` for dicts of arrays (the keys of ``y``)."""
    return {n: a * x[n] + y[n] for n in y}


def lincomb(*terms):
    """``sum coef * d`` over the ``(coef, d)`` terms, for dicts of arrays."""
    out = {}
    for coef, d in terms:
        for n, v in d.items():
            out[n] = out[n] + coef * v if n in out else coef * v
    return out


def step_norms_squared(controls, names):
    """``|u_k|^2``: the squared Euclidean norm of the arrays ``names`` of step k together.

    Parameters
    ----------
    controls : dict
        name -> array of shape (n_steps, ...).
    names : iterable of str

    Returns
    -------
    ndarray, shape (n_steps,)
    """
    return sum(
        np.einsum("ki,ki->k", controls[n].reshape(len(controls[n]), -1),
                  controls[n].reshape(len(controls[n]), -1))
        for n in names
    )


def step_norms(controls, names):
    """``|u_k|``, shape (n_steps,) (see :func:`step_norms_squared`)."""
    return np.sqrt(step_norms_squared(
        {n: np.asarray(controls[n], float) for n in names}, names))


class Flattener:
    """One flat float64 vector for the arrays ``names`` of a controls dict, and back.

    Parameters
    ----------
    controls : dict
        Arrays whose shapes (and order of ``names``) define the layout.
    names : sequence of str
    dtype : dtype
        The dtype :meth:`unflatten` returns.
    """

    def __init__(self, controls, names, dtype):
        self.names = list(names)
        self.shapes = {n: controls[n].shape for n in self.names}
        self.bounds = np.cumsum([0] + [controls[n].size for n in self.names])
        self.dtype = dtype

    def flatten(self, controls):
        """ndarray, shape (size,), float64."""
        return np.concatenate([np.asarray(controls[n]).ravel() for n in self.names]
                              ).astype(np.float64)

    def unflatten(self, flat):
        """dict name -> array of its shape, in :attr:`dtype`."""
        b = self.bounds
        return {n: flat[b[i]:b[i + 1]].reshape(self.shapes[n]).astype(self.dtype)
                for i, n in enumerate(self.names)}
