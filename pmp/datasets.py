"""Toy and small real data sets for classification experiments.

Synthetic two-class problems in the plane, generated on the fly from a seed:

* :func:`rings` -- concentric circles, classes alternating by ring;
* :func:`moons` -- two interleaving half circles;
* :func:`spirals` -- two interleaved spirals;
* :func:`xor` -- the four quadrants of the square, coloured like XOR;
* :func:`checkerboard` -- an ``n_cells x n_cells`` board.

and one real data set, :func:`digits`, the 1797 8x8 handwritten digits of the
UCI repository, shipped with the package as ``pmp/data/digits.npz``.

Every function returns ``(x, y)`` with ``x`` a float64 array of shape
``(n_samples, dim)``.  The generators return labels in ``{-1.0, +1.0}``
(``labels="pm1"``, float64) or in ``{0, 1}`` (``labels="int"``, int64), draw
their randomness from ``np.random.default_rng(seed)`` (the same seed gives
bitwise identical output) and return the samples in random order.  Passing
``lift=d`` pads ``x`` with zero columns up to ``d`` columns, which embeds the
data in a higher-dimensional state space (augmented neural ODEs).

:func:`load` looks a data set up by name; :data:`NAMES` lists the names.
"""

from importlib.resources import files

import numpy as np

from ._validation import integer, real

__all__ = [
    "NAMES",
    "checkerboard",
    "digits",
    "load",
    "moons",
    "rings",
    "spirals",
    "xor",
]

_LABELS = ("pm1", "int")


def _check_args(n_samples, labels, noise=0.0, seed=0):
    """Validate the arguments shared by all generators."""
    integer(n_samples, "n_samples", low=2)
    if labels not in _LABELS:
        choices = ", ".join(repr(c) for c in _LABELS)
        raise ValueError(f"labels must be one of {choices}, got {labels!r}")
    real(noise, "noise", low=0.0)
    integer(seed, "seed", low=0)


def _lift(x, lift):
    """Pad ``x`` of shape (n, d) with zero columns up to shape (n, lift)."""
    if lift is None:
        return x
    integer(lift, "lift", low=x.shape[1])
    return np.pad(x, ((0, 0), (0, lift - x.shape[1])))


def _finish(rng, x, y, noise, lift, labels):
    """Add noise, shuffle, lift and encode labels of a two-class sample.

    Parameters
    ----------
    rng : numpy.random.Generator
    x : ndarray, shape (n_samples, 2)
        Noise-free points.
    y : ndarray, shape (n_samples,)
        Class indices in {0, 1}.
    noise : float
        Standard deviation of the isotropic Gaussian noise added to ``x``.
    lift : int or None
    labels : {"pm1", "int"}

    Returns
    -------
    x : ndarray, shape (n_samples, lift or 2), float64
    y : ndarray, shape (n_samples,), float64 in {-1, +1} or int64 in {0, 1}
    """
    if noise > 0:
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            x = x + noise * rng.standard_normal(x.shape)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"noise must keep the points finite in float64, got {noise}")
    order = rng.permutation(len(x))
    x = _lift(np.asarray(x[order], dtype=np.float64), lift)
    y = np.asarray(y[order], dtype=np.int64)
    if labels == "pm1":
        y = 2.0 * y - 1.0
    return x, y


def _split(n_samples, n_parts):
    """Class index of each sample when ``n_samples`` are split evenly."""
    return np.arange(n_samples) % n_parts


def rings(n_samples=512, *, n_rings=2, noise=0.05, seed=0, lift=None, labels="pm1"):
    """Concentric circles in the plane, classes alternating by ring.

    Ring ``k = 0, ..., n_rings - 1`` has radius ``(k + 1) / n_rings`` and class
    ``k mod 2``; the samples are split evenly over the rings and spread
    uniformly in angle.

    Parameters
    ----------
    n_samples : int, default 512
        Number of points, >= 2.
    n_rings : int, default 2
        Number of rings, >= 2.
    noise : float, default 0.05
        Standard deviation of the Gaussian noise added to the points.
    seed : int, default 0
        Seed for ``np.random.default_rng``, >= 0.
    lift : int or None, default None
        If given (>= 2), pad ``x`` with zero columns up to ``lift`` columns.
    labels : {"pm1", "int"}, default "pm1"
        Label encoding: float64 in {-1, +1} or int64 in {0, 1}.

    Returns
    -------
    x : ndarray, shape (n_samples, 2) or (n_samples, lift), float64
    y : ndarray, shape (n_samples,)
    """
    _check_args(n_samples, labels, noise, seed)
    integer(n_rings, "n_rings", low=2)
    rng = np.random.default_rng(seed)
    ring = _split(n_samples, n_rings)
    angle = rng.uniform(0.0, 2.0 * np.pi, n_samples)
    radius = (ring + 1) / n_rings
    x = radius[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    return _finish(rng, x, ring % 2, noise, lift, labels)


def moons(n_samples=512, *, noise=0.1, seed=0, lift=None, labels="pm1"):
    """Two interleaving half circles (cf. ``sklearn.datasets.make_moons``).

    Class 0 lies on the upper unit half circle, class 1 on the lower one
    shifted by (1, 0.5); the whole is centred at the origin, so the noise-free
    data fill ``[-1.5, 1.5] x [-0.75, 0.75]``.  Angles are uniform at random
    and the samples are split evenly between the classes.

    Parameters
    ----------
    n_samples : int, default 512
        Number of points, >= 2.
    noise : float, default 0.1
        Standard deviation of the Gaussian noise added to the points.
    seed : int, default 0
        Seed for ``np.random.default_rng``, >= 0.
    lift : int or None, default None
        If given (>= 2), pad ``x`` with zero columns up to ``lift`` columns.
    labels : {"pm1", "int"}, default "pm1"
        Label encoding: float64 in {-1, +1} or int64 in {0, 1}.

    Returns
    -------
    x : ndarray, shape (n_samples, 2) or (n_samples, lift), float64
    y : ndarray, shape (n_samples,)
    """
    _check_args(n_samples, labels, noise, seed)
    rng = np.random.default_rng(seed)
    y = _split(n_samples, 2)
    angle = rng.uniform(0.0, np.pi, n_samples)
    sign = 1 - 2 * y  # +1 for the upper moon, -1 for the lower one
    x = np.column_stack([sign * np.cos(angle) + y - 0.5, sign * np.sin(angle) + 0.5 * y - 0.25])
    return _finish(rng, x, y, noise, lift, labels)


def spirals(n_samples=512, *, n_turns=1.5, noise=0.05, seed=0, lift=None, labels="pm1"):
    """Two interleaved Archimedean spirals.

    A point at parameter ``t`` in [0, 1] has radius ``t`` and angle
    ``2 pi n_turns t``; class 1 is class 0 rotated by pi.  ``t = sqrt(u)`` with
    ``u`` uniform, so the points are roughly evenly spread along the arms.
    The samples are split evenly between the classes.

    Parameters
    ----------
    n_samples : int, default 512
        Number of points, >= 2.
    n_turns : float, default 1.5
        Number of turns of each spiral, > 0.
    noise : float, default 0.05
        Standard deviation of the Gaussian noise added to the points.
    seed : int, default 0
        Seed for ``np.random.default_rng``, >= 0.
    lift : int or None, default None
        If given (>= 2), pad ``x`` with zero columns up to ``lift`` columns.
    labels : {"pm1", "int"}, default "pm1"
        Label encoding: float64 in {-1, +1} or int64 in {0, 1}.

    Returns
    -------
    x : ndarray, shape (n_samples, 2) or (n_samples, lift), float64
    y : ndarray, shape (n_samples,)
    """
    _check_args(n_samples, labels, noise, seed)
    real(n_turns, "n_turns", low=0.0, low_open=True)
    rng = np.random.default_rng(seed)
    y = _split(n_samples, 2)
    t = np.sqrt(rng.uniform(0.0, 1.0, n_samples))
    with np.errstate(over="ignore"):  # checked below
        angle = 2.0 * np.pi * n_turns * t + np.pi * y
    if not np.all(np.isfinite(angle)):
        raise ValueError(f"n_turns must keep the angles finite in float64, got {n_turns}")
    x = t[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    return _finish(rng, x, y, noise, lift, labels)


def xor(n_samples=512, *, noise=0.0, seed=0, lift=None, labels="pm1"):
    """Uniform points in the square [-1, 1]^2 labelled by the sign of x0 * x1.

    Class 1 (+1) is the first and third quadrant, class 0 (-1) the second and
    fourth.  Labels are computed before the noise is added, so ``noise > 0``
    blurs the class boundary.  The classes are balanced only on average.

    Parameters
    ----------
    n_samples : int, default 512
        Number of points, >= 2.
    noise : float, default 0.0
        Standard deviation of the Gaussian noise added to the points.
    seed : int, default 0
        Seed for ``np.random.default_rng``, >= 0.
    lift : int or None, default None
        If given (>= 2), pad ``x`` with zero columns up to ``lift`` columns.
    labels : {"pm1", "int"}, default "pm1"
        Label encoding: float64 in {-1, +1} or int64 in {0, 1}.

    Returns
    -------
    x : ndarray, shape (n_samples, 2) or (n_samples, lift), float64
    y : ndarray, shape (n_samples,)
    """
    _check_args(n_samples, labels, noise, seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (n_samples, 2))
    return _finish(rng, x, x[:, 0] * x[:, 1] > 0, noise, lift, labels)


def checkerboard(n_samples=512, *, n_cells=4, seed=0, lift=None, labels="pm1"):
    """Uniform points in the square [-1, 1]^2 coloured like a checkerboard.

    The square is cut into ``n_cells x n_cells`` equal cells; cell ``(i, j)``
    (counted from the lower left corner) has class ``(i + j) mod 2``.  The
    classes are balanced only on average.

    Parameters
    ----------
    n_samples : int, default 512
        Number of points, >= 2.
    n_cells : int, default 4
        Number of cells along each side, >= 2.
    seed : int, default 0
        Seed for ``np.random.default_rng``, >= 0.
    lift : int or None, default None
        If given (>= 2), pad ``x`` with zero columns up to ``lift`` columns.
    labels : {"pm1", "int"}, default "pm1"
        Label encoding: float64 in {-1, +1} or int64 in {0, 1}.

    Returns
    -------
    x : ndarray, shape (n_samples, 2) or (n_samples, lift), float64
    y : ndarray, shape (n_samples,)
    """
    _check_args(n_samples, labels, seed=seed)
    integer(n_cells, "n_cells", low=2)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (n_samples, 2))
    cell = np.minimum(np.floor((x + 1.0) * (n_cells / 2.0)), n_cells - 1).astype(np.int64)
    return _finish(rng, x, cell.sum(axis=1) % 2, 0.0, lift, labels)


def digits(*, standardize=True, lift=None):
    """The 8x8 handwritten digits of the UCI repository (as in scikit-learn).

    1797 grey-level images with pixel values 0..16, about 180 per digit,
    read from the file ``pmp/data/digits.npz`` shipped with the package
    (see ``pmp/data/README.md`` for its origin and licence).  The samples are
    in the original file order.

    Parameters
    ----------
    standardize : bool, default True
        If True, centre every pixel column and divide it by its standard
        deviation; constant columns become 0.  If False, return the raw
        pixel values 0..16.
    lift : int or None, default None
        If given (>= 64), pad ``x`` with zero columns up to ``lift`` columns.

    Returns
    -------
    x : ndarray, shape (1797, 64) or (1797, lift), float64
        Row ``i`` is image ``i`` flattened row by row.
    y : ndarray, shape (1797,), int64
        Digit shown, in 0..9.
    """
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(f"standardize must be a bool, got {type(standardize).__name__} "
                        f"{standardize!r}")
    with (files("pmp") / "data" / "digits.npz").open("rb") as fh, np.load(fh) as data:
        x = data["x"].astype(np.float64)
        y = data["y"].astype(np.int64)
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return _lift(x, lift), y


_REGISTRY = {
    f.__name__: f for f in (checkerboard, digits, moons, rings, spirals, xor)
}

#: Names accepted by :func:`load`, sorted.
NAMES = tuple(sorted(_REGISTRY))


def load(name, **kwargs):
    """Return the data set called ``name``.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    **kwargs
        Passed on to the function of the same name, e.g. ``n_samples``,
        ``seed``, ``lift``.

    Returns
    -------
    x : ndarray, shape (n_samples, dim), float64
    y : ndarray, shape (n_samples,)

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`NAMES`.
    """
    try:
        func = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; expected one of: {', '.join(NAMES)}"
        ) from None
    return func(**kwargs)
