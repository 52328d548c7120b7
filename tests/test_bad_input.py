"""Bad input to the public API (issue "Reliability", items 11-13): every case raises a
TypeError (wrong type) or ValueError (wrong value) whose message names the parameter.

One table, one parametrised test: each row is an id, a call, the expected exception type and
a substring of its message; the few checks that do not fit a row follow it."""
import functools

import numpy as np
import pytest

import pmp
from pmp import datasets
from pmp_cases import X, Y, make_controls

LABELS = np.array([0, 1, 0, 1, 0])  # 5 class labels for "cross_entropy"


def problem(**kwargs):
    """pmp.Problem on the 5 x 3 test data with 4 steps and ``kwargs``."""
    args = dict(x=X, y=Y, n_steps=4)
    args.update(kwargs)
    return pmp.Problem(args.pop("x"), args.pop("y"), **args)


@functools.cache
def base():
    """A good problem, its controls, states and costates (built once, on first use)."""
    pr = problem()
    u = make_controls(pr)
    xs = pmp.forward(pr, u)
    return pr, u, xs, pmp.backward(pr, u, xs)


@functools.cache
def base32():
    return problem(dtype="float32")


def with_bad(arr, index, value):
    out = np.array(arr, dtype=float)
    out[index] = value
    return out


def states_with(value):
    return with_bad(base()[2], (1, 2, 0), value)


def costates_with(value):
    return with_bad(base()[3], (3, 4, 2), value)


def big(shape, index=(1, 2), value=1e39):
    return with_bad(np.full(shape, 0.5), index, value)


def sweep_calls():
    """Each public sweep function called with its problem replaced by ``bad``."""
    def call(name, bad):
        pr, u, xs, ps = base()
        return {
            "forward": lambda: pmp.forward(bad, u),
            "backward": lambda: pmp.backward(bad, u, xs),
            "evaluate": lambda: pmp.evaluate(bad, u),
            "value_and_grad": lambda: pmp.value_and_grad(bad, u),
            "cost": lambda: pmp.cost(bad, u),
            "hamiltonian": lambda: pmp.hamiltonian(bad, u, xs, ps),
            "losses_along": lambda: pmp.losses_along(bad, xs),
            "riesz_gradient": lambda: pmp.riesz_gradient(bad, u),
            "grad_norm": lambda: pmp.grad_norm(bad, u),
            "init_controls": lambda: pmp.init_controls(bad),
        }[name]()
    names = ("forward", "backward", "evaluate", "value_and_grad", "cost", "hamiltonian",
             "losses_along", "riesz_gradient", "grad_norm", "init_controls")
    rows = []
    for name in names:
        rows.append(pytest.param(functools.partial(call, name, None), TypeError,
                                 "problem must be a pmp.Problem, got NoneType",
                                 id=f"{name}-problem-None"))
    rows.append(pytest.param(functools.partial(call, "forward", "problem"), TypeError,
                             "problem must be a pmp.Problem, got str", id="forward-problem-str"))
    rows.append(pytest.param(functools.partial(call, "value_and_grad", {}), TypeError,
                             "problem must be a pmp.Problem, got dict",
                             id="value_and_grad-problem-dict"))
    return rows


GENERATORS = ("rings", "moons", "spirals", "xor", "checkerboard")

CASES = [
    # ---- options that are flags take True or False only (a config's "maybe" is not True)
    pytest.param(lambda: pmp.methods.EMSA(exact="maybe"), TypeError,
                 "exact must be True or False, got str 'maybe'", id="emsa-exact-str"),
    pytest.param(lambda: pmp.methods.EMSA(adaptive=1), TypeError,
                 "adaptive must be True or False, got int 1", id="emsa-adaptive-int"),
    # ---- factors that must stay below 1 (momenta, moving averages) are refused at 1
    *[pytest.param(lambda method=method, option=option: method(**{option: 1.0}), ValueError,
                   f"{option} must be < 1.0, got 1.0", id=f"{method.name}-{option}-one")
      for method, option in [(pmp.methods.EMSA, "momentum"), (pmp.methods.Discrete, "ema"),
                             (pmp.methods.HeavyBall, "momentum"),
                             (pmp.methods.Nesterov, "momentum"), (pmp.methods.Adam, "beta1"),
                             (pmp.methods.Adam, "beta2")]],
    # ---- the E-MSA's momentum needs the acceptance test and a smooth regulariser
    pytest.param(lambda: pmp.methods.EMSA(momentum=-0.1), ValueError,
                 "momentum must be >= 0.0, got -0.1", id="emsa-momentum-negative"),
    pytest.param(lambda: pmp.methods.EMSA(momentum=0.5, adaptive=False), ValueError,
                 "momentum > 0 needs the acceptance test (adaptive=True), got momentum=0.5 "
                 "with adaptive=False", id="emsa-momentum-fixed-rho"),
    pytest.param(lambda: pmp.train(problem(reg="l1", lam=0.1), "emsa", momentum=0.5,
                                   max_iter=1), ValueError,
                 "momentum > 0 needs a differentiable regularizer", id="emsa-momentum-l1"),
    # ---- a cap per inner solver: known solvers, and one for the problem's
    pytest.param(lambda: pmp.train(problem(), "emsa", max_inner={"newton": 2}, max_iter=1),
                 ValueError, "max_inner's keys must be among cg, fista, lbfgs, got 'newton'",
                 id="max_inner-unknown-solver"),
    pytest.param(lambda: pmp.train(problem(reg="l1", lam=0.1), "emsa", max_inner={"cg": 2},
                                   max_iter=1), ValueError,
                 "max_inner has no cap for this problem's inner solver 'fista': got {'cg': 2}",
                 id="max_inner-no-cap-for-the-solver"),
    # ---- 1. silently accepted: n_classes, float32 range, non-finite trajectories, scale
    pytest.param(lambda: problem(y=LABELS, loss="cross_entropy", n_classes=2.0), TypeError,
                 "n_classes must be an int, got float 2.0", id="n_classes-float"),
    pytest.param(lambda: problem(n_classes=3), ValueError, "n_classes", id="n_classes-squared"),
    pytest.param(lambda: problem(y=np.sign(Y), loss="logistic", n_classes=2), ValueError,
                 "n_classes", id="n_classes-logistic"),
    pytest.param(lambda: problem(x=big((5, 3)), dtype="float32"), ValueError,
                 "x exceeds float32's range", id="x-overflows-float32"),
    pytest.param(lambda: problem(x=big((5, 3), value=-1e39), dtype="float32", lift=4),
                 ValueError, "x exceeds float32's range", id="x-overflows-float32-lifted"),
    pytest.param(lambda: problem(projection=big((2, 3), (0, 1)), dtype="float32"), ValueError,
                 "projection exceeds float32's range", id="projection-overflows-float32"),
    pytest.param(lambda: problem(y=big((5, 2), (3, 0)), dtype="float32"), ValueError,
                 "y exceeds float32's range", id="y-overflows-float32"),
    pytest.param(lambda: pmp.forward(base32(), {**make_controls(base32()),
                                                "b": big((4, 3), (2, 1))}),
                 ValueError, "controls['b'] exceeds float32's range",
                 id="controls-overflow-float32"),
    pytest.param(lambda: pmp.backward(base()[0], base()[1], states_with(np.nan)), ValueError,
                 "states must be finite, got nan at index (1, 2, 0)", id="backward-states-nan"),
    pytest.param(lambda: pmp.backward(base()[0], base()[1], states_with(np.inf)), ValueError,
                 "states must be finite, got inf at index (1, 2, 0)", id="backward-states-inf"),
    pytest.param(lambda: pmp.evaluate(base()[0], base()[1], states=states_with(-np.inf)),
                 ValueError, "states must be finite, got -inf at index (1, 2, 0)",
                 id="evaluate-states-inf"),
    pytest.param(lambda: pmp.hamiltonian(base()[0], base()[1], states_with(np.nan), base()[3]),
                 ValueError, "states must be finite, got nan at index (1, 2, 0)",
                 id="hamiltonian-states-nan"),
    pytest.param(lambda: pmp.hamiltonian(base()[0], base()[1], base()[2], costates_with(np.inf)),
                 ValueError, "costates must be finite, got inf at index (3, 4, 2)",
                 id="hamiltonian-costates-inf"),
    pytest.param(lambda: pmp.losses_along(base()[0], states_with(np.nan)), ValueError,
                 "states must be finite, got nan at index (1, 2, 0)",
                 id="losses_along-states-nan"),
    pytest.param(lambda: pmp.init_controls(base()[0], scale=1e308), ValueError, "scale",
                 id="init-normal-scale-overflows"),
    pytest.param(lambda: pmp.init_controls(base()[0], "uniform", scale=1e308), ValueError,
                 "scale", id="init-uniform-scale-overflows"),
    pytest.param(lambda: pmp.init_controls(base()[0], "smooth", scale=1e308), ValueError,
                 "scale", id="init-smooth-scale-overflows"),
    pytest.param(lambda: pmp.init_controls(base32(), scale=1e300), ValueError, "scale",
                 id="init-scale-overflows-float32"),
    # ---- 2. a step whose square is not a normal float64
    pytest.param(lambda: problem(T=1e-320), ValueError, "T / n_steps", id="T-subnormal"),
    pytest.param(lambda: problem(T=1e-150, n_steps=100_000), ValueError, "T / n_steps",
                 id="h-squared-subnormal"),
    pytest.param(lambda: problem(T=1e160, n_steps=1), ValueError, "T / n_steps",
                 id="h-squared-overflows"),
    # ---- 3. errors that did not name the parameter
    pytest.param(lambda: pmp.init_controls(base()[0], seed=-1), ValueError,
                 "seed must be >= 0, got -1", id="init-seed-negative"),
    pytest.param(lambda: pmp.init_controls(base()[0], seed="a"), TypeError,
                 "seed must be an int, got str 'a'", id="init-seed-str"),
    pytest.param(lambda: pmp.init_controls(base()[0], seed=2.5), TypeError,
                 "seed must be an int", id="init-seed-float"),
    pytest.param(lambda: pmp.init_controls(base()[0], seed=None), TypeError,
                 "seed must be an int", id="init-seed-None"),
    pytest.param(lambda: pmp.init_controls(base()[0], seed=[1, 2]), TypeError,
                 "seed must be an int", id="init-seed-list"),
    pytest.param(lambda: problem(dtype="foo"), ValueError,
                 "dtype must be one of: float32, float64; got 'foo'", id="dtype-unknown"),
    pytest.param(lambda: problem(dtype=[]), TypeError,
                 "dtype must be one of: float32, float64; got []", id="dtype-list"),
    pytest.param(lambda: problem(dtype=None), TypeError,
                 "dtype must be one of: float32, float64; got None", id="dtype-None"),
    pytest.param(lambda: problem(dtype=2.5), TypeError, "dtype must be one of", id="dtype-float"),
    pytest.param(lambda: problem(frozen=["W"]), TypeError, "frozen must be a dict",
                 id="frozen-list"),
    pytest.param(lambda: problem(frozen="W"), TypeError, "frozen must be a dict",
                 id="frozen-str"),
    pytest.param(lambda: problem(frozen=True), TypeError, "frozen must be a dict",
                 id="frozen-True"),
    *sweep_calls(),
    # ---- 4. found by trying
    pytest.param(lambda: problem(y=LABELS, loss="cross_entropy", n_classes="3"), TypeError,
                 "n_classes must be an int", id="n_classes-str"),
    pytest.param(lambda: problem(y=LABELS, loss="cross_entropy", n_classes=float("inf")),
                 TypeError, "n_classes must be an int", id="n_classes-inf"),
    pytest.param(lambda: problem(y=LABELS, loss="cross_entropy", n_classes=[3]), TypeError,
                 "n_classes must be an int", id="n_classes-list"),
    pytest.param(lambda: problem(frozen={"W": None}), TypeError, "frozen['W']",
                 id="frozen-mask-None"),
    pytest.param(lambda: problem(frozen={"W": "yes"}), TypeError, "frozen['W']",
                 id="frozen-mask-str"),
    pytest.param(lambda: problem(frozen={"W": [0.5]}), ValueError, "frozen['W']",
                 id="frozen-mask-fraction"),
    pytest.param(lambda: problem(frozen={"b": 2}), ValueError, "frozen['b']",
                 id="frozen-mask-int"),
    pytest.param(lambda: problem(field="features", width=4, seed=-1), ValueError,
                 "seed must be >= 0, got -1", id="features-seed-negative"),
    pytest.param(lambda: problem(field="features", width=4, seed="a"), TypeError,
                 "seed must be an int", id="features-seed-str"),
    pytest.param(lambda: problem(seed=1.5), TypeError, "seed must be an int",
                 id="problem-seed-float"),
    pytest.param(lambda: problem(field="features", width=4, features="gauss"), ValueError,
                 "(parameter features)", id="features-unknown"),
    pytest.param(lambda: problem(field="features", width=4, bandwidth=1e-320), ValueError,
                 "bandwidth", id="features-bandwidth-tiny"),
    pytest.param(lambda: problem(reg="l3"), ValueError, "(parameter reg)", id="reg-unknown"),
    pytest.param(lambda: problem(x=-1.0), ValueError, "x must be 2-dimensional, got shape ()",
                 id="x-scalar-shape"),
    pytest.param(lambda: pmp.value_and_grad(*base()[:2], segment="a"), TypeError,
                 "segment must be an int", id="segment-str"),
    pytest.param(lambda: pmp.value_and_grad(*base()[:2], segment=2.5), TypeError,
                 "segment must be an int", id="segment-float"),
    pytest.param(lambda: pmp.value_and_grad(*base()[:2], segment=float("inf")), TypeError,
                 "segment must be an int", id="segment-inf"),
    pytest.param(lambda: pmp.value_and_grad(*base()[:2], segment=True), TypeError,
                 "segment must be an int", id="segment-bool"),
    pytest.param(lambda: pmp.value_and_grad(*base()[:2], workspace="a"), TypeError,
                 "workspace must be a dict", id="workspace-str"),
    pytest.param(lambda: pmp.value_and_grad(*base()[:2], workspace=[]), TypeError,
                 "workspace must be a dict", id="workspace-list"),
    pytest.param(lambda: pmp.losses_along(base()[0], None), TypeError, "states",
                 id="losses_along-states-None"),
    pytest.param(lambda: pmp.losses_along(base()[0], 1.0), ValueError, "states",
                 id="losses_along-states-scalar"),
    pytest.param(lambda: pmp.riesz_gradient(base()[0], None), TypeError, "grads",
                 id="riesz_gradient-grads-None"),
    pytest.param(lambda: pmp.grad_norm(base()[0], None), TypeError, "riesz",
                 id="grad_norm-riesz-None"),
    pytest.param(lambda: pmp.grad_norm(base()[0], {"b": base()[1]["b"]}), ValueError, "riesz",
                 id="grad_norm-riesz-missing"),
    *[pytest.param(functools.partial(datasets.load, name, seed=seed), error, "seed",
                   id=f"{name}-seed-{seed!r}")
      for name in GENERATORS
      for seed, error in ((-1, ValueError), ("a", TypeError), (2.5, TypeError),
                          (None, TypeError))],
    *[pytest.param(functools.partial(datasets.load, name, noise=1e308), ValueError, "noise",
                   id=f"{name}-noise-overflows")
      for name in ("rings", "moons", "spirals", "xor")],
    pytest.param(lambda: datasets.spirals(n_turns=1e308), ValueError, "n_turns",
                 id="spirals-n_turns-overflows"),
    pytest.param(lambda: datasets.digits(standardize="no"), TypeError, "standardize",
                 id="digits-standardize-str"),
    pytest.param(lambda: datasets.digits(standardize=None), TypeError, "standardize",
                 id="digits-standardize-None"),
]


@pytest.mark.parametrize("call, error, fragment", CASES)
def test_bad_input(call, error, fragment):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message, message


# ------------------------------------------------------------- checks beyond one row
def test_step_error_names_T_and_n_steps():
    with pytest.raises(ValueError) as info:
        problem(T=1e-320, n_steps=7)
    message = str(info.value)
    assert "T=1e-320" in message and "n_steps=7" in message, message


def test_smallest_and_largest_allowed_steps_are_accepted():
    lo = float(np.sqrt(np.finfo(np.float64).tiny)) * 1.0001
    assert problem(T=4 * lo).h == pytest.approx(lo)
    hi = float(np.sqrt(np.finfo(np.float64).max)) * 0.9999
    assert problem(T=4 * hi).h == pytest.approx(hi)


def test_float32_range_error_gives_value_and_index():
    with pytest.raises(ValueError) as info:
        problem(x=big((5, 3), (4, 1), -2e39), dtype="float32")
    message = str(info.value)
    assert "-2e+39" in message and "(4, 1)" in message, message


def test_float32_limits_still_accepted():
    """The largest float32 is in range; a float64 problem takes 1e39 as it is."""
    top = float(np.finfo(np.float32).max)
    assert problem(x=big((5, 3), value=top), dtype="float32").x[1, 2] == np.float32(top)
    assert problem(x=big((5, 3))).x[1, 2] == 1e39


def test_n_classes_is_kept_for_cross_entropy_and_dropped_by_replace():
    pr = problem(y=LABELS, loss="cross_entropy", n_classes=np.int64(3))
    assert pr.n_classes == 3 and isinstance(pr.n_classes, int)
    assert pr.replace(y=Y, loss="squared").n_classes is None


def test_frozen_accepts_masks_of_bools_and_zeros_and_ones():
    pr = problem(frozen={"W": np.eye(3, dtype=bool), "b": np.array([1.0, 0.0, 1.0])})
    assert pr.frozen["W"].sum() == 4 * 3 and pr.frozen["b"].sum() == 4 * 2
    assert problem(frozen={"W": np.True_}).frozen["W"].all()
    assert not problem(frozen={"W": False}).frozen["W"].any()


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64"),
                                   "f4", float])
def test_float_dtypes_accepted(dtype):
    assert problem(dtype=dtype).dtype in (np.float32, np.float64)


def test_rings_noise_of_wrong_type_names_noise():
    """Named before the fixes already: kept as a regression check."""
    with pytest.raises(TypeError, match=r"noise must be a real number, got str 'lots'"):
        datasets.rings(noise="lots")


def test_good_seeds_accepted():
    pr = base()[0]
    a = pmp.init_controls(pr, seed=np.int64(3))
    b = pmp.init_controls(pr, seed=3)
    np.testing.assert_array_equal(a["W"], b["W"])
    x, _ = datasets.rings(10, seed=np.uint32(2))
    np.testing.assert_array_equal(x, datasets.rings(10, seed=2)[0])
