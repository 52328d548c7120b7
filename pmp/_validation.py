"""Argument checks shared by the public API: each error names the parameter, what was
expected and what was given."""
import difflib
import math
import numbers

import numpy as np


def lookup(registry, name, what, param=None):
    """Return ``registry[name]``; a wrong name lists the valid ones (and the nearest).
    ``param``: the parameter's name, when ``what`` is not it."""
    if isinstance(name, str) and name in registry:
        return registry[name]
    valid = ", ".join(sorted(registry))
    near = difflib.get_close_matches(str(name), list(registry), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    where = f" (parameter {param})" if param else ""
    raise ValueError(f"unknown {what} {name!r}{where}{hint}; expected one of: {valid}")


def lookup_class(registry, base, value, what):
    """The ``base`` subclass that ``value`` names: a registered name, the class itself or an
    instance of it."""
    if isinstance(value, base):
        return type(value)
    if isinstance(value, type) and issubclass(value, base):
        return value
    return lookup(registry, value, what)


def register(registry, cls, base, what):
    """Add the ``base`` subclass ``cls`` to ``registry`` under its ``name``; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, base)) or not cls.name:
        raise TypeError(f"register_{what} expects a {base.__name__} subclass with a name, "
                        f"got {cls!r}")
    registry[cls.name] = cls
    return cls


def boolean(value, name):
    """``value`` as a bool: True or False (numpy's too), nothing else."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def real(value, name, *, low=None, high=None, low_open=False, high_open=False,
         allow_inf=False):
    """A finite float within bounds (``low_open``, ``high_open``: the bound excluded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"{name} must be {op} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        op = "<" if high_open else "<="
        raise ValueError(f"{name} must be {op} {high}, got {value}")
    return value


def integer(value, name, *, low=None):
    """An int (not bool) >= low."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def finite_array(value, name, *, ndim=None, dtype=np.float64):
    """A finite, C-contiguous array of ``dtype`` with the given number of dimensions; a
    value beyond the range of ``dtype`` (float32) is an error too (see :func:`fit`)."""
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like: {err}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim not in np.atleast_1d(ndim):
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = _first_non_finite(arr)
        raise ValueError(f"{name} must be finite, got {arr[bad]} at index {bad}")
    return fit(arr, dtype, name)


def fit(arr, dtype, name):
    """The finite real array ``arr`` as a C-contiguous array of ``dtype``; an entry that
    overflows ``dtype`` (a float64 beyond float32's range) is a ValueError."""
    arr = np.asarray(arr)
    with np.errstate(over="ignore"):
        out = np.asarray(arr, dtype=dtype, order="C")
    narrowed = arr.dtype.kind == "f" and out.dtype.itemsize < arr.dtype.itemsize
    if narrowed and not np.all(np.isfinite(out)):
        bad = _first_non_finite(out)
        limit = np.finfo(out.dtype).max
        raise ValueError(f"{name} exceeds {out.dtype.name}'s range (|{name}| <= {limit:.8g}), "
                         f"got {arr[bad]} at index {bad}")
    return out


def _first_non_finite(arr):
    return tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])


def check_shape(arr, shape, name):
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
