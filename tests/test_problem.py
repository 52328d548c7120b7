"""pmp.Problem: construction and its bad input, and the controls a problem accepts
(validate_controls, called by every sweep)."""
import re

import numpy as np
import pytest

import pmp
from pmp_cases import X, Y, make_controls


def names_listed(names):
    """A regex requiring every name in ``names`` (in any order)."""
    return "".join(f"(?=.*{re.escape(n)})" for n in names)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=np.zeros(3)), ValueError, r"x must be 2-dimensional, got shape \(3,\)"),
    (dict(x=np.zeros((2, 3, 1))), ValueError, r"x .*shape \(2, 3, 1\)"),
    (dict(y=np.zeros(4)), ValueError, r"y must have shape \(5,\).*got \(4,\)"),
    (dict(y=np.zeros((6, 2))), ValueError, r"y .*\(5,\).*got \(6, 2\)"),
    (dict(x=np.where(np.arange(15).reshape(5, 3) == 4, np.nan, X)), ValueError,
     r"x must be finite, got nan at index"),
    (dict(x=np.where(np.arange(15).reshape(5, 3) == 7, -np.inf, X)), ValueError,
     r"x must be finite, got -inf at index"),
    (dict(T=0.0), ValueError, r"T must be > 0.*got 0\.0"),
    (dict(T=-2.5), ValueError, r"T must be > 0.*got -2\.5"),
    (dict(T=np.nan), ValueError, r"T must be finite, got nan"),
    (dict(n_steps=0), ValueError, r"n_steps must be >= 1, got 0"),
    (dict(n_steps=-3), ValueError, r"n_steps must be >= 1, got -3"),
    (dict(n_steps=2.5), TypeError, r"n_steps must be an int, got float 2\.5"),
    (dict(n_steps=4.0), TypeError, r"n_steps must be an int, got float 4\.0"),
    (dict(n_steps="4"), TypeError, r"n_steps must be an int, got str '4'"),
    (dict(lam=-0.1), ValueError, r"lam must be >= 0.*got -0\.1"),
    (dict(reg="h1", lam1=-1.0), ValueError, r"lam1 must be >= 0.*got -1\.0"),
    (dict(field="outr"), ValueError,
     r"unknown field 'outr'.*" + names_listed(pmp.fields.field_names())),
    (dict(activation="swish"), ValueError,
     r"unknown activation 'swish'.*" + names_listed(pmp.activations.NAMES)),
    (dict(loss="hinge"), ValueError,
     r"unknown loss 'hinge'.*" + names_listed(pmp.objectives.LOSS_NAMES)),
    (dict(reg="l3"), ValueError,
     r"unknown regularizer 'l3'.*" + names_listed(pmp.objectives.REG_NAMES)),
    (dict(loss="logistic", y=np.array([1, -1, 0.5, 1, -1])), ValueError,
     r"y must be -1 or \+1 for loss 'logistic', got 0\.5"),
    (dict(loss="logistic", y=np.array([1, -1, 1, 1, 0])), ValueError,
     r"y must be -1 or \+1 for loss 'logistic', got 0"),
    (dict(loss="cross_entropy", y=np.array([0, 1, 2, 1.5, 0])), ValueError,
     r"y must be integer class labels.*cross_entropy.*got shape \(5,\)"),
    (dict(loss="cross_entropy", y=np.array([0, 1, -1, 1, 0])), ValueError,
     r"y must be integer class labels >= 0.*-1"),
    (dict(field="perceptron"), ValueError,
     r"width must be given for field 'perceptron'.*got None"),
    (dict(field="features"), ValueError, r"width must be given for field 'features'.*got None"),
    (dict(projection=np.eye(3)), ValueError, r"projection must have shape \(2, 3\), got \(3, 3\)"),
    (dict(projection="middle"), ValueError, r"unknown projection 'middle'"),
    (dict(p=0.5, loss="lp"), ValueError, r"p must be >= 1.*got 0\.5"),
    (dict(frozen={"V": True}), ValueError, r"frozen names unknown control 'V'"),
])
def test_problem_rejects_bad_input(kwargs, error, match):
    args = dict(x=X, y=Y, n_steps=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pmp.Problem(args.pop("x"), args.pop("y"), **args)


def test_problem_accepts_numpy_integers_and_floats():
    problem = pmp.Problem(X, Y, T=np.float32(2.0), n_steps=np.int64(4), lam=np.float64(0.1))
    assert problem.n_steps == 4 and problem.h == pytest.approx(0.5)


def test_activation_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"unknown activation 'tan'.*" +
                       names_listed(pmp.activations.NAMES)):
        pmp.activations.Activation("tan")


@pytest.mark.parametrize("func", [pmp.forward, pmp.backward, pmp.value_and_grad, pmp.cost,
                                  pmp.evaluate])
def test_controls_rejected(func):
    problem = pmp.Problem(X, Y, field="outer", n_steps=4)
    good = make_controls(problem)
    with pytest.raises(ValueError, match=re.escape("controls must have keys ['W', 'b'], got "
                                                   "['W']")):
        func(problem, {"W": good["W"]})
    with pytest.raises(ValueError, match=re.escape("got ['W', 'b', 'c']")):
        func(problem, {**good, "c": good["b"]})
    with pytest.raises(ValueError, match=re.escape("controls['W'] must have shape (4, 3, 3), "
                                                   "got (4, 3, 2)")):
        func(problem, {**good, "W": np.zeros((4, 3, 2))})
    with pytest.raises(ValueError, match=re.escape("controls['b'] must have shape (4, 3), "
                                                   "got (3, 3)")):
        func(problem, {**good, "b": np.zeros((3, 3))})
    bad = good["b"].copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"controls\['b'\] must be finite, got nan at index"):
        func(problem, {**good, "b": bad})
    with pytest.raises(TypeError, match=r"controls must be a mapping.*list"):
        func(problem, [good["W"], good["b"]])


def test_trainable_readout_is_a_required_control():
    problem = pmp.Problem(X, Y, projection="trainable", n_steps=4)
    good = make_controls(problem)
    with pytest.raises(ValueError, match=re.escape("controls must have keys ['P', 'W', 'b']")):
        pmp.forward(problem, {"W": good["W"], "b": good["b"]})
    with pytest.raises(ValueError, match=re.escape("controls['P'] must have shape (2, 3)")):
        pmp.forward(problem, {**good, "P": np.zeros((3, 3))})


@pytest.mark.parametrize("where", ["x", "controls"])
def test_non_finite_index_is_printed_plainly(where):
    problem = pmp.Problem(X, Y, n_steps=4)
    bad = X.copy()
    bad[1, 1] = np.nan
    if where == "x":
        call = lambda: pmp.Problem(bad, Y, n_steps=4)  # noqa: E731
        match = r"x must be finite, got nan at index \(1, 1\)"
    else:
        controls = make_controls(problem)
        controls["b"][2, 1] = np.nan
        call = lambda: pmp.forward(problem, controls)  # noqa: E731
        match = r"controls\['b'\] must be finite, got nan at index \(2, 1\)"
    with pytest.raises(ValueError, match=match):
        call()
