"""Tests for pmp.datasets."""

import numpy as np
import pytest

from pmp import datasets
from pmp.datasets import NAMES, load

TWO_CLASS = ("checkerboard", "moons", "rings", "spirals", "xor")
BALANCED = ("moons", "rings", "spirals")


def test_names():
    assert NAMES == ("checkerboard", "digits", "moons", "rings", "spirals", "xor")
    assert NAMES == tuple(sorted(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_every_name_loads(name):
    x, y = load(name)
    assert x.ndim == 2 and x.dtype == np.float64
    assert y.shape == (x.shape[0],)
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("name", TWO_CLASS)
@pytest.mark.parametrize("n_samples", [2, 7, 100])
def test_shapes_and_pm1_labels(name, n_samples):
    x, y = load(name, n_samples=n_samples)
    assert x.shape == (n_samples, 2) and x.dtype == np.float64
    assert y.shape == (n_samples,) and y.dtype == np.float64
    assert set(np.unique(y)) <= {-1.0, 1.0}


@pytest.mark.parametrize("name", TWO_CLASS)
def test_int_labels_match_pm1(name):
    x_pm, y_pm = load(name, n_samples=300, seed=3)
    x_int, y_int = load(name, n_samples=300, seed=3, labels="int")
    assert y_int.dtype == np.int64
    assert set(np.unique(y_int)) == {0, 1}
    np.testing.assert_array_equal(x_pm, x_int)
    np.testing.assert_array_equal(y_pm, 2.0 * y_int - 1.0)


@pytest.mark.parametrize("name", TWO_CLASS)
def test_same_seed_is_bitwise_identical(name):
    x1, y1 = load(name, n_samples=200, seed=42)
    x2, y2 = load(name, n_samples=200, seed=42)
    assert x1.tobytes() == x2.tobytes()
    assert y1.tobytes() == y2.tobytes()


@pytest.mark.parametrize("name", TWO_CLASS)
def test_different_seeds_differ(name):
    x1, _ = load(name, n_samples=200, seed=0)
    x2, _ = load(name, n_samples=200, seed=1)
    assert not np.array_equal(x1, x2)


@pytest.mark.parametrize("name", BALANCED)
@pytest.mark.parametrize("n_samples", [512, 101])
def test_balanced_labels(name, n_samples):
    _, y = load(name, n_samples=n_samples, labels="int")
    counts = np.bincount(y, minlength=2)
    assert abs(counts[0] - counts[1]) <= 1


@pytest.mark.parametrize("name", ("xor", "checkerboard"))
def test_roughly_balanced_labels(name):
    _, y = load(name, n_samples=4000, labels="int")
    assert abs(y.mean() - 0.5) < 0.05


@pytest.mark.parametrize("name", TWO_CLASS)
def test_lift_pads_with_zeros(name):
    x, y = load(name, n_samples=50, seed=5)
    xl, yl = load(name, n_samples=50, seed=5, lift=6)
    assert xl.shape == (50, 6) and xl.dtype == np.float64
    np.testing.assert_array_equal(xl[:, :2], x)
    assert np.all(xl[:, 2:] == 0.0)
    np.testing.assert_array_equal(yl, y)
    x2, _ = load(name, n_samples=50, seed=5, lift=2)
    np.testing.assert_array_equal(x2, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lift", [1, 0, -3, 2.5, "4"])
def test_bad_lift(name, lift):
    """A wrong type is a TypeError, a wrong value a ValueError; both name the parameter."""
    with pytest.raises((TypeError, ValueError), match="lift"):
        load(name, lift=lift)


def test_bad_lift_message_has_expected_and_actual():
    with pytest.raises(ValueError, match=r"lift must be >= 2, got 1"):
        datasets.rings(lift=1)
    with pytest.raises(ValueError, match=r"lift must be >= 64, got 10"):
        datasets.digits(lift=10)


@pytest.mark.parametrize("name", TWO_CLASS)
@pytest.mark.parametrize("n_samples", [1, 0, -5, 10.0, True, "100", None])
def test_bad_n_samples(name, n_samples):
    with pytest.raises((TypeError, ValueError), match="n_samples"):
        load(name, n_samples=n_samples)


def test_bad_n_samples_message_has_expected_and_actual():
    with pytest.raises(ValueError, match=r"n_samples must be >= 2, got 1"):
        datasets.moons(n_samples=1)


def test_numpy_int_n_samples_accepted():
    x, _ = datasets.rings(n_samples=np.int64(10), lift=np.int32(3))
    assert x.shape == (10, 3)


@pytest.mark.parametrize("name", TWO_CLASS)
def test_bad_labels(name):
    with pytest.raises(ValueError, match=r"labels must be one of 'pm1', 'int'"):
        load(name, labels="onehot")


@pytest.mark.parametrize("name", ("rings", "moons", "spirals", "xor"))
@pytest.mark.parametrize("noise", [-0.1, float("nan")])
def test_bad_noise(name, noise):
    with pytest.raises(ValueError, match="noise"):
        load(name, noise=noise)


@pytest.mark.parametrize(
    "func, kwargs, param",
    [
        (datasets.rings, {"n_rings": 1}, "n_rings"),
        (datasets.checkerboard, {"n_cells": 1}, "n_cells"),
        (datasets.spirals, {"n_turns": 0}, "n_turns"),
    ],
)
def test_bad_shape_parameters(func, kwargs, param):
    with pytest.raises(ValueError, match=param):
        func(**kwargs)


def test_unknown_name():
    msg = (
        "unknown dataset 'ringz'; expected one of: "
        "checkerboard, digits, moons, rings, spirals, xor"
    )
    with pytest.raises(ValueError, match=msg):
        load("ringz")


def test_rings_geometry():
    x, y = datasets.rings(n_samples=300, n_rings=3, noise=0.0, labels="int")
    r = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(np.sort(np.unique(np.round(r, 12))), [1 / 3, 2 / 3, 1])
    # rings 0 and 2 are class 0, ring 1 is class 1
    np.testing.assert_array_equal(y, np.isclose(r, 2 / 3))


def test_moons_range():
    x, _ = datasets.moons(n_samples=1000, noise=0.0)
    assert np.all(np.abs(x[:, 0]) <= 1.5 + 1e-12)
    assert np.all(np.abs(x[:, 1]) <= 0.75 + 1e-12)


def test_spirals_are_point_symmetric():
    x, y = datasets.spirals(n_samples=400, noise=0.0, labels="int")
    assert np.all(np.linalg.norm(x, axis=1) <= 1 + 1e-12)
    # class 1 is class 0 rotated by pi: -x of a class-1 point lies on arm 0
    t = np.linalg.norm(x, axis=1)
    angle = np.arctan2(x[:, 1], x[:, 0])
    expected = 2 * np.pi * 1.5 * t + np.pi * y
    np.testing.assert_allclose(np.cos(angle - expected), 1.0, atol=1e-9)


def test_xor_and_checkerboard_rules():
    x, y = datasets.xor(n_samples=500)
    assert np.all(np.abs(x) <= 1)
    np.testing.assert_array_equal(y, np.where(x[:, 0] * x[:, 1] > 0, 1.0, -1.0))
    x, y = datasets.checkerboard(n_samples=500, n_cells=2, labels="int")
    np.testing.assert_array_equal(y, (x[:, 0] > 0) ^ (x[:, 1] > 0))


def test_digits_raw():
    x, y = datasets.digits(standardize=False)
    assert x.shape == (1797, 64) and x.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 16
    np.testing.assert_array_equal(x, np.round(x))
    counts = np.bincount(y)
    assert counts.shape == (10,) and counts.min() >= 170 and counts.sum() == 1797
    # first image of scikit-learn's load_digits() is a zero
    assert y[0] == 0
    np.testing.assert_array_equal(x[0, :8], [0, 0, 5, 13, 9, 1, 0, 0])


def test_digits_standardized():
    raw, _ = datasets.digits(standardize=False)
    x, y = datasets.digits()
    assert x.shape == (1797, 64) and x.dtype == np.float64
    assert not np.any(np.isnan(x))
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-12)
    constant = raw.std(axis=0) == 0
    assert constant.any()  # some border pixels are always 0
    np.testing.assert_allclose(x[:, ~constant].std(axis=0), 1.0, rtol=1e-12)
    assert np.all(x[:, constant] == 0.0)


def test_digits_lift():
    x, _ = datasets.digits()
    xl, _ = datasets.digits(lift=70)
    assert xl.shape == (1797, 70)
    np.testing.assert_array_equal(xl[:, :64], x)
    assert np.all(xl[:, 64:] == 0.0)
