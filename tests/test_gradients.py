"""value_and_grad against central finite differences of the discrete cost pmp.cost."""
import itertools

import numpy as np
import pytest

import pmp
from pmp_cases import (FIELD_ACTIVATIONS, LOSSES, REGS, case_id, make_controls, make_problem,
                       smooth_case)

RTOL = 1e-6
EPS = 1e-4  # 4-point central stencil: truncation O(EPS^4), rounding O(1e-16 / EPS)
MARGIN = 3e-3  # no kink of relu / leaky_relu / lp within this distance (>> 2 EPS * slope)


def smooth_cost(problem, controls):
    """``pmp.cost`` total, minus the non-smooth regulariser for l1 / l1elem."""
    parts = pmp.cost(problem, controls)
    if problem.reg.name in ("l1", "l1elem"):
        return parts["total"] - parts["regularization"]
    return parts["total"]


def directional_fd(problem, controls, direction, eps=EPS):
    """``d/ds J(u + s v)`` at ``s = 0`` by the 4-point central stencil."""
    values = [smooth_cost(problem, {n: controls[n] + s * eps * direction[n] for n in controls})
              for s in (-2.0, -1.0, 1.0, 2.0)]
    return (values[0] - 8.0 * values[1] + 8.0 * values[2] - values[3]) / (12.0 * eps)


def inner(a, b):
    return sum(float(np.sum(a[n] * b[n])) for n in a)


def unit(v):
    norm = np.sqrt(inner(v, v))
    return {n: w / norm for n, w in v.items()}


def check_directions(problem, controls, n_random=2, seed=0):
    J, grads = pmp.value_and_grad(problem, controls)
    assert J == pytest.approx(pmp.cost(problem, controls)["total"], rel=1e-13)
    gnorm = np.sqrt(inner(grads, grads))
    assert gnorm > 0
    rng = np.random.default_rng(seed)
    directions = [unit(grads)] + [unit({n: rng.normal(size=g.shape) for n, g in grads.items()})
                                  for _ in range(n_random)]
    for v in directions:
        exact = inner(grads, v)
        fd = directional_fd(problem, controls, v)
        # relative error; guarded against a random direction nearly orthogonal to the gradient
        denom = max(abs(exact), 1e-3 * gnorm)
        assert abs(fd - exact) <= RTOL * denom, (fd, exact)


# ------------------------------------------------------------ the full cross product
PRODUCT = list(itertools.product(FIELD_ACTIVATIONS, LOSSES, REGS, [0.0, 0.7],
                                 [None, "trainable"]))


@pytest.mark.parametrize("field_act, loss, reg, running, projection", PRODUCT,
                         ids=[case_id(c) for c in (("-".join(map(str, a)), "-".join(map(str, b)),
                                                    "-".join(map(str, r)), f"run{run}", str(pr))
                                                   for a, b, r, run, pr in PRODUCT)])
def test_directional_derivatives(field_act, loss, reg, running, projection):
    field, activation, features = field_act
    (loss, p), (reg, lam1) = loss, reg
    problem, controls = smooth_case(field, activation, loss, p, reg=reg, lam1=lam1,
                                    running=running, projection=projection, features=features,
                                    min_margin=MARGIN)
    check_directions(problem, controls)


# ---------------------------------------------------------- coordinate-wise, per field
@pytest.mark.parametrize("field, features", [("outer", "fourier"), ("inner", "fourier"),
                                             ("diagonal", "fourier"), ("features", "fourier"),
                                             ("features", "relu"), ("perceptron", "fourier")])
@pytest.mark.parametrize("reg, lam1", [("h1", 0.3), ("l1", 0.0)])
def test_coordinatewise(field, features, reg, lam1):
    problem, controls = smooth_case(field, "tanh", "squared", 2.0, reg=reg, lam1=lam1,
                                    running=0.7, projection="trainable", features=features,
                                    n=3, d=2, n_steps=3, width=3, min_margin=MARGIN)
    _, grads = pmp.value_and_grad(problem, controls)
    for name, g in grads.items():
        fd = np.zeros_like(g)
        for index in np.ndindex(g.shape):
            e = {n: np.zeros_like(c) for n, c in controls.items()}
            e[name][index] = 1.0
            fd[index] = directional_fd(problem, controls, e)
        np.testing.assert_allclose(g, fd, rtol=RTOL, atol=RTOL * np.max(np.abs(g)), err_msg=name)


def test_riesz_gradient_is_gradient_over_h():
    problem = make_problem("outer", "tanh", projection="trainable", n_steps=5, T=2.0)
    _, grads = pmp.value_and_grad(problem, make_controls(problem))
    riesz = pmp.riesz_gradient(problem, grads)
    np.testing.assert_array_equal(riesz["P"], grads["P"])
    for name in problem.control_names:
        np.testing.assert_allclose(riesz[name], grads[name] / problem.h, rtol=1e-15)


# ------------------------------------------------------------------------ frozen masks
@pytest.mark.parametrize("field, frozen", [
    ("outer", {"W": True}),
    ("outer", {"b": True, "P": True}),
    ("inner", {"W": True}),
    ("diagonal", {"w": np.array([True, False, True])}),
    ("features", {"A": np.arange(4 * 3 * 5).reshape(4, 3, 5) % 3 == 0}),
    ("perceptron", {"W": True, "c": np.array([True, False, False, True])}),
], ids=lambda v: v if isinstance(v, str) else "-".join(v))
@pytest.mark.parametrize("reg, lam1", [("l2", 0.0), ("h1", 0.3)])
def test_frozen_masks(field, frozen, reg, lam1):
    kwargs = dict(reg=reg, lam1=lam1, running=0.5, projection="trainable")
    free = make_problem(field, "tanh", **kwargs)
    problem = make_problem(field, "tanh", frozen=frozen, **kwargs)
    controls = make_controls(problem)
    J_free, g_free = pmp.value_and_grad(free, controls)
    J, grads = pmp.value_and_grad(problem, controls)
    assert J == J_free
    for name, g in grads.items():
        mask = np.broadcast_to(frozen.get(name, False), g.shape)
        assert np.all(g[mask] == 0.0), name
        np.testing.assert_array_equal(g[~mask], g_free[name][~mask])
        assert np.any(g_free[name][mask] != 0.0) or not mask.any()
