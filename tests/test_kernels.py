"""pmp's jitted kernels against the NumPy twins of tests/naive.py (docs/theory.md sections 1-3, 8),
and their compilation cache."""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import naive
import pmp
from pmp._kernels import activations as _act
from pmp._kernels import codes
from pmp._kernels import readout as _ro
from pmp.threads import row_blocks
from pmp_cases import (ACTIVATIONS, FIELD_ACTIVATIONS, ROOT, case_id, make_controls,
                       make_problem, relative_error, smooth_case)

RTOL64 = 1e-12
RTOL32 = 1e-5

# (loss, p, reg, lam1, running, terminal, projection): every loss, regulariser, running weight
# and readout appears at least once; each is crossed with every field and activation.
CONFIGS = [
    ("squared", 2.0, "l2", 0.0, 0.0, 1.0, None),
    ("lp", 1.5, "h1", 0.3, 0.7, 1.0, "trainable"),
    ("lp", 3.0, "l1", 0.0, 0.7, 1.0, None),
    ("logistic", 2.0, "l1elem", 0.0, 0.0, 1.0, "trainable"),
    ("cross_entropy", 2.0, "l2", 0.0, 0.7, 1.0, "trainable"),
    ("squared", 2.0, "h1", 0.2, 0.7, 0.0, "first"),
]


def build(field_act, config, dtype="float64"):
    field, activation, features = field_act
    loss, p, reg, lam1, running, terminal, projection = config
    return smooth_case(field, activation, loss, p, reg=reg, lam1=lam1, running=running,
                       terminal=terminal, projection=projection, features=features, dtype=dtype)


field_acts = pytest.mark.parametrize("field_act", FIELD_ACTIVATIONS, ids=case_id)
configs = pytest.mark.parametrize("config", CONFIGS, ids=case_id)


# ------------------------------------------------------------------------ activations
Z = np.concatenate([np.linspace(-6.0, 6.0, 49), [0.0, -0.0, 1e-300, -1e-300, 1e-9, -1e-9,
                                                 -40.0, 40.0, -700.0, 700.0, -1e4, 1e4]])


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("slope", [0.1, 0.25])
def test_activation_value_and_slope(name, slope):
    s, ds = pmp.activations.Activation(name, slope).value_and_slope(Z)
    ns, nds = naive.activation(name, Z, slope)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(ds))
    np.testing.assert_allclose(s, ns, rtol=RTOL64, atol=1e-300)
    # sigma' <= 1.13: an absolute error of a few ulp(1) is allowed where sigma' is tiny
    # (pmp computes tanh' = 1 - tanh^2 and sigmoid' = s (1 - s), exact only to ~1e-16 absolute)
    np.testing.assert_allclose(ds, nds, rtol=RTOL64, atol=4e-16)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_within_3_ulp(dtype):
    """pmp's vectorised tanh (float64 and float32 algorithms) against tanh in float64,
    in units in the last place of the dtype, over the whole range and at tiny values."""
    z = np.concatenate([np.linspace(-25.0, 25.0, 200001), np.logspace(-40, 1.3, 20000),
                        -np.logspace(-40, 1.3, 20000), [0.0, -0.0, np.inf, -np.inf]])
    z = z.astype(dtype)
    s, ds = np.empty_like(z), np.empty_like(z)
    _act.activate_with_slope(codes.TANH, 0.0, z, s, ds)
    exact = np.tanh(z.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    assert np.max(np.abs(s.astype(np.float64) - exact) / ulp) <= 3.0
    assert np.isnan(_act.fast_tanh32(np.float32(np.nan)))
    only = np.empty_like(z)
    _act.activate(codes.TANH, 0.0, z, only)
    np.testing.assert_array_equal(only, s)


@pytest.mark.parametrize("dtype, shifter", [(np.float64, 1.5 * 2.0 ** 52),
                                             (np.float32, 1.5 * 2.0 ** 23)])
def test_power_of_two_from_the_shifted_bits(dtype, shifter):
    """tanh's 2^n from the bits of n + shifter, exact for every n its reduction produces
    (n in [-58, 0] in float64, [-29, 0] in float32) and beyond."""
    if _act.DISABLED:
        pytest.skip("an LLVM intrinsic: compiled code only")
    pow2 = numba.njit(lambda s: _act._pow2_of_shifted(s))
    for n in range(-100, 31):
        got = pow2(dtype(n + shifter))
        assert got == 2.0 ** n, n


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_row_by_row_activation_is_the_flat_one(name, dtype):
    act = pmp.activations.Activation(name, 0.2)
    z = np.resize(Z, (3, 2 * Z.size)).astype(dtype)
    flat, rows = np.empty_like(z), np.empty_like(z)
    _act.activate(act.code, act.param, z, flat)
    _act.activate_rows(act.code, act.param, z, rows)
    np.testing.assert_array_equal(rows, flat)


@pytest.mark.parametrize("readout", ["identity", "first", "repeated", "dense", "almost"])
def test_readout_pullback_against_numpy(readout):
    """Phi(x) and p -= coef grad Phi(x) for selection readouts (read column by column, no
    matrix product) and for general ones, against NumPy."""
    rng = np.random.default_rng(7)
    n, d = 9, 5
    P = {"identity": np.eye(d), "first": np.eye(d)[:2], "repeated": np.eye(d)[[3, 1, 3]],
         "dense": rng.normal(size=(3, d)),
         "almost": np.eye(d)[:2] + 1e-3 * np.eye(d)[[4, 0]]}[readout]
    m = len(P)
    x, y, p0 = rng.normal(size=(n, d)), rng.normal(size=(n, m)), rng.normal(size=(n, d))
    selection = readout in ("identity", "first", "repeated")
    assert (_ro._selected_columns(P).size == m) == selection
    z, gz, p, gP = np.empty((n, m)), np.empty((n, m)), p0.copy(), np.zeros((0, d))
    phi = _ro.pull_back(codes.SQUARED, 2.0, x, P, y, 0.7, p, gP, z, gz)
    residual = x @ P.T - y
    assert phi == pytest.approx(0.5 * np.sum(residual ** 2) / n, rel=1e-14)
    np.testing.assert_allclose(p, p0 - 0.7 * (residual / n) @ P, rtol=1e-14, atol=1e-16)
    assert _ro.loss(codes.SQUARED, 2.0, x, P, y, z) == phi


def test_activation_kink_conventions():
    assert pmp.activations.Activation("relu").value_and_slope(0.0)[1] == 0.0
    assert pmp.activations.Activation("leaky_relu", 0.3).value_and_slope(0.0)[1] == 0.3


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_call_and_shape(name):
    z = np.linspace(-2, 2, 12).reshape(3, 4)
    act = pmp.activations.Activation(name)
    s, ds = act.value_and_slope(z)
    assert s.shape == ds.shape == (3, 4)
    np.testing.assert_array_equal(act(z), s)


@pytest.mark.parametrize("kind, code", [("fourier", codes.COS), ("relu", codes.SCALED_RELU)])
def test_feature_maps(kind, code):
    amplitude = np.sqrt(2.0 / 7)
    z = np.ascontiguousarray(Z[np.abs(Z) < 1e3].reshape(1, -1))
    s, ds = np.empty_like(z), np.empty_like(z)
    _act.activate_with_slope(code, amplitude, z, s, ds)
    ns, nds = naive.feature_map(kind, amplitude, z)
    np.testing.assert_allclose(s, ns, rtol=RTOL64, atol=1e-300)
    np.testing.assert_allclose(ds, nds, rtol=RTOL64, atol=1e-300)


# ------------------------------------------------------------------- sweeps (float64)
@field_acts
@configs
def test_forward(field_act, config):
    problem, controls = build(field_act, config)
    xs = pmp.forward(problem, controls)
    assert xs.shape == (problem.n_steps + 1, problem.n_samples, problem.dim)
    assert xs.dtype == np.float64
    np.testing.assert_array_equal(xs[0], problem.x)
    assert relative_error(xs, naive.forward(problem, controls)) < RTOL64


@field_acts
@configs
def test_backward(field_act, config):
    problem, controls = build(field_act, config)
    ps = pmp.backward(problem, controls)
    assert ps.shape == (problem.n_steps + 1, problem.n_samples, problem.dim)
    assert relative_error(ps, naive.costates(problem, controls)) < RTOL64
    # passing the states gives the same costates
    xs = pmp.forward(problem, controls)
    np.testing.assert_array_equal(pmp.backward(problem, controls, xs), ps)


@field_acts
@configs
def test_gradient(field_act, config):
    problem, controls = build(field_act, config)
    J, grads = pmp.value_and_grad(problem, controls)
    expected = naive.gradients(problem, controls)
    assert set(grads) == set(expected) == set(problem.control_shapes)
    for name in expected:
        assert grads[name].shape == problem.control_shapes[name]
        assert relative_error(grads[name], expected[name]) < RTOL64, name
    assert J == pytest.approx(naive.cost(problem, controls)["total"], rel=RTOL64)


@field_acts
@configs
def test_hamiltonian_part_of_gradient(field_act, config):
    """With lam = 0 (and no H1 term) the gradient is -h d<p_{k+1}, F>/du_k only."""
    field, activation, features = field_act
    loss, p, reg, lam1, running, terminal, projection = config
    problem, controls = smooth_case(field, activation, loss, p, reg="l2", lam=0.0,
                                    running=running, terminal=terminal, projection=projection,
                                    features=features)
    _, grads = pmp.value_and_grad(problem, controls)
    expected = naive.hamiltonian_gradients(problem, controls)
    for name in problem.control_names:
        assert relative_error(grads[name], expected[name]) < RTOL64, name


@field_acts
@configs
def test_cost_parts(field_act, config):
    problem, controls = build(field_act, config)
    parts = pmp.cost(problem, controls)
    expected = naive.cost(problem, controls)
    assert set(parts) == set(expected)
    for key, value in expected.items():
        assert parts[key] == pytest.approx(value, rel=RTOL64, abs=1e-300), key
    assert parts["total"] == pytest.approx(
        parts["terminal"] + parts["running"] + parts["regularization"], rel=1e-15)


@field_acts
@configs
def test_hamiltonian(field_act, config):
    problem, controls = build(field_act, config)
    xs = pmp.forward(problem, controls)
    ps = pmp.backward(problem, controls, xs)
    H = pmp.hamiltonian(problem, controls, xs, ps)
    expected = naive.hamiltonians(problem, controls, xs, ps)
    assert H.shape == (problem.n_steps,)
    # scale of the terms that are summed (H_k itself may cancel)
    scale = np.sum(np.abs(ps[1:] * xs[1:]), axis=(1, 2)) + np.abs(expected)
    assert np.all(np.abs(H - expected) <= RTOL64 * scale)


@field_acts
@configs
def test_evaluate_matches_separate_calls(field_act, config):
    problem, controls = build(field_act, config)
    parts, grads, xs, ps = pmp.evaluate(problem, controls)
    np.testing.assert_array_equal(xs, pmp.forward(problem, controls))
    np.testing.assert_array_equal(ps, pmp.backward(problem, controls))
    J, grads2 = pmp.value_and_grad(problem, controls)
    assert parts["total"] == J
    for name in grads:
        np.testing.assert_array_equal(grads[name], grads2[name])
    for key, value in pmp.cost(problem, controls).items():
        assert parts[key] == pytest.approx(value, rel=1e-13, abs=1e-300), key


@pytest.mark.parametrize("loss, p", [("squared", 2.0), ("lp", 1.5), ("logistic", 2.0),
                                     ("cross_entropy", 2.0)])
def test_losses_along(loss, p):
    problem, controls = smooth_case("outer", "tanh", loss, p)
    xs = pmp.forward(problem, controls)
    expected = [naive.mean_loss(problem, X, problem.P)[0] for X in xs]
    assert relative_error(pmp.losses_along(problem, xs), expected) < RTOL64


# --------------------------------------------------------------------------- float32
@field_acts
@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[1], CONFIGS[4]], ids=case_id)
def test_float32_agrees_with_float64_twins(field_act, config):
    problem, controls = build(field_act, config, dtype="float32")
    assert problem.x.dtype == np.float32
    xs = pmp.forward(problem, controls)
    ps = pmp.backward(problem, controls)
    J, grads = pmp.value_and_grad(problem, controls)
    assert xs.dtype == ps.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert relative_error(xs, naive.forward(problem, controls)) < RTOL32
    assert relative_error(ps, naive.costates(problem, controls)) < RTOL32
    expected = naive.gradients(problem, controls)
    for name in expected:
        assert relative_error(grads[name], expected[name]) < RTOL32, name
    assert J == pytest.approx(naive.cost(problem, controls)["total"], rel=RTOL32)
    H = pmp.hamiltonian(problem, controls, xs, ps)
    nH = naive.hamiltonians(problem, controls, xs, ps)
    scale = np.sum(np.abs(ps[1:].astype(float) * xs[1:]), axis=(1, 2)) + np.abs(nH)
    assert np.all(np.abs(H - nH) <= RTOL32 * scale)


# ----------------------------------------------------------------------- determinism
@pytest.mark.parametrize("field", ["outer", "inner", "diagonal", "features", "perceptron"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_bitwise_deterministic(field, dtype):
    problem = make_problem(field, "tanh", "cross_entropy", reg="h1", lam1=0.1, running=0.7,
                           projection="trainable", dtype=dtype, n=7, d=4, n_steps=6)
    controls = make_controls(problem)
    runs = []
    for _ in range(2):
        parts, grads, xs, ps = pmp.evaluate(problem, controls)
        J, grads2 = pmp.value_and_grad(problem, controls)
        runs.append(dict(xs=pmp.forward(problem, controls), ps=pmp.backward(problem, controls),
                         xs_e=xs, ps_e=ps, J=np.float64(J),
                         H=pmp.hamiltonian(problem, controls, xs, ps),
                         cost=np.array(list(pmp.cost(problem, controls).values())),
                         **{f"g_{n}": g for n, g in grads2.items()},
                         **{f"ge_{n}": g for n, g in grads.items()}))
    assert runs[0].keys() == runs[1].keys()
    for key in runs[0]:
        a, b = np.asarray(runs[0][key]), np.asarray(runs[1][key])
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), key


def test_inputs_not_modified():
    problem = make_problem("perceptron", "gelu", "squared", reg="h1", lam1=0.1, running=0.5,
                           projection="trainable")
    controls = make_controls(problem)
    copies = {n: c.copy() for n, c in controls.items()}
    x = problem.x.copy()
    parts, grads, xs, ps = pmp.evaluate(problem, controls)
    pmp.hamiltonian(problem, controls, xs, ps)
    pmp.cost(problem, controls)
    for n in controls:
        np.testing.assert_array_equal(controls[n], copies[n])
    np.testing.assert_array_equal(problem.x, x)


# ------------------------------------------------------------- options read by the twins
@pytest.mark.parametrize("field", ["outer", "inner", "diagonal", "perceptron"])
def test_leaky_relu_slope_reaches_the_kernels(field):
    problem, controls = smooth_case(field, "leaky_relu", "squared", 2.0, slope=0.3, running=0.4,
                                    projection="trainable")
    assert problem.activation.slope == 0.3
    assert relative_error(pmp.forward(problem, controls), naive.forward(problem, controls)) < RTOL64
    _, grads = pmp.value_and_grad(problem, controls)
    expected = naive.gradients(problem, controls)
    for name in expected:
        assert relative_error(grads[name], expected[name]) < RTOL64, name


@pytest.mark.parametrize("field", ["outer", "features", "perceptron"])
def test_lifted_inputs(field):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    problem = pmp.Problem(x, y, field=field, lift=4, n_steps=3, T=1.5, width=3, running=0.3)
    assert problem.x.shape == (4, 4)
    np.testing.assert_array_equal(problem.x[:, :2], x)
    np.testing.assert_array_equal(problem.x[:, 2:], 0.0)
    controls = make_controls(problem)
    assert relative_error(pmp.forward(problem, controls), naive.forward(problem, controls)) < RTOL64
    _, grads = pmp.value_and_grad(problem, controls)
    expected = naive.gradients(problem, controls)
    for name in expected:
        assert relative_error(grads[name], expected[name]) < RTOL64, name


# ------------------------------------------------------------ row blocks on several threads
@field_acts
@pytest.mark.parametrize("config", CONFIGS[:5], ids=case_id)
def test_row_blocks_on_threads(field_act, config):
    """Sweeps split into row blocks on 3 threads agree with the NumPy twins and with one
    thread (to rounding: the gradient is summed block by block), and repeat bit for bit."""
    field, activation, features = field_act
    loss, p, reg, lam1, running, terminal, projection = config
    problem, controls = smooth_case(field, activation, loss, p, reg=reg, lam1=lam1,
                                    running=running, terminal=terminal, projection=projection,
                                    features=features, n=300, min_margin=1e-9)
    with pmp.threads(1):
        single = pmp.evaluate(problem, controls)
    with pmp.threads(3):
        assert len(row_blocks(problem.n_samples)) == 3 + 1
        parts, grads, xs, ps = pmp.evaluate(problem, controls)
        J, fast = pmp.value_and_grad(problem, controls)
        again = pmp.value_and_grad(problem, controls)
    assert relative_error(xs, naive.forward(problem, controls)) < RTOL64
    assert relative_error(ps, naive.costates(problem, controls)) < RTOL64
    expected = naive.gradients(problem, controls)
    assert J == parts["total"] == again[0]
    assert J == pytest.approx(single[0]["total"], rel=1e-14)
    for name in expected:
        assert relative_error(grads[name], expected[name]) < RTOL64, name
        assert relative_error(grads[name], single[1][name]) < 1e-13, name
        np.testing.assert_array_equal(fast[name], grads[name])
        np.testing.assert_array_equal(again[1][name], grads[name])


# ------------------------------------------- "outer": small-dimension and general kernels
@pytest.mark.parametrize("activation", ACTIVATIONS)
@configs
def test_outer_general_kernels(activation, config, monkeypatch):
    """W1-sized states (d <= codes.SMALL_DIM) take transposed kernels of their own; forcing the
    general (BLAS) kernels gives the same sweeps to rounding, and both match the twins, with
    stored or recomputed activations, full or rolling costates, one or three row blocks."""
    loss, p, reg, lam1, running, terminal, projection = config
    problem, controls = smooth_case("outer", activation, loss, p, reg=reg, lam1=lam1,
                                    running=running, terminal=terminal, projection=projection,
                                    n=200, min_margin=1e-9)
    expected = naive.gradients(problem, controls)
    results = []
    for small_dim in (8, 0):
        monkeypatch.setattr(codes, "SMALL_DIM", small_dim)
        assert problem.field._small == (small_dim == 8)
        for n_threads in (1, 3):
            with pmp.threads(n_threads):
                parts, grads, xs, ps = pmp.evaluate(problem, controls)
                J, fast = pmp.value_and_grad(problem, controls, workspace={})
            assert relative_error(xs, naive.forward(problem, controls)) < RTOL64
            assert relative_error(ps, naive.costates(problem, controls)) < RTOL64
            assert J == parts["total"]
            for name in expected:
                assert relative_error(grads[name], expected[name]) < RTOL64, name
                np.testing.assert_array_equal(fast[name], grads[name])
            results.append((J, grads))
    for J, grads in results[1:]:
        assert J == pytest.approx(results[0][0], rel=1e-14)
        for name in grads:
            assert relative_error(grads[name], results[0][1][name]) < 1e-13


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
@pytest.mark.parametrize("running, n_steps", [(0.5, 4), (0.0, 4), (0.0, 7), (0.0, 3)])
def test_outer_wide_states(activation, running, n_steps):
    """The general kernels on states wider than SMALL_DIM (without a running cost, the
    gradient's forward sweep keeps the states in between in two rolling slots)."""
    problem, controls = smooth_case("outer", activation, "cross_entropy", d=codes.SMALL_DIM + 4,
                                    n=150, running=running, projection="trainable",
                                    n_steps=n_steps)
    assert not problem.field._small
    with pmp.threads(2):
        J, grads = pmp.value_and_grad(problem, controls, workspace={})
    expected = naive.gradients(problem, controls)
    assert J == pytest.approx(naive.cost(problem, controls)["total"], rel=RTOL64)
    for name in expected:
        assert relative_error(grads[name], expected[name]) < RTOL64, name
    assert relative_error(pmp.backward(problem, controls),
                          naive.costates(problem, controls)) < RTOL64


# ------------------------------------------------------------------ compilation cache
def test_a_warm_process_loads_kernels_from_the_cache(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, pmp
        from pmp._kernels import activations, readout, sweeps
        x, y = pmp.datasets.rings(16, seed=0, lift=3)
        for field, kw in [("outer", {}), ("perceptron", {"width": 4})]:
            problem = pmp.Problem(x, y, field=field, T=1.0, n_steps=4, **kw)
            pmp.value_and_grad(problem, pmp.init_controls(problem))
        kernels = [getattr(m, n) for m in (activations, readout, sweeps) for n in dir(m)]
        stats = [k.stats for k in kernels if hasattr(k, "stats")]
        print(sum(sum(s.cache_misses.values()) for s in stats),
              sum(sum(s.cache_hits.values()) for s in stats))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PMP_QUIET="0",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=600, check=True) for _ in range(2)]
    cold_misses, _ = map(int, runs[0].stdout.split())
    warm_misses, warm_hits = map(int, runs[1].stdout.split())
    assert cold_misses > 0
    assert warm_misses == 0 and warm_hits > 0
    # a compiling process says so once on stderr; a process that loads the cache is silent
    from pmp._kernels._jit import COMPILE_NOTICE

    assert runs[0].stderr.splitlines() == [COMPILE_NOTICE]
    assert runs[1].stderr == ""


@pytest.mark.parametrize("kind", ["positive definite", "indefinite", "needs pivoting"])
def test_small_dense_solvers_against_numpy(kind):
    """The maximiser's written-out Cholesky and its LU fallback solve what np.linalg.solve
    solves; Cholesky refuses a matrix that is not positive definite."""
    from pmp._kernels import maximize_linear as _ml

    rng = np.random.default_rng(3)
    n = 12
    A = rng.standard_normal((n, n))
    M = {"positive definite": A @ A.T + n * np.eye(n),
         "indefinite": A + A.T,
         "needs pivoting": np.triu(A, 1) + np.tril(A, -1) + 0.0 * np.eye(n)}[kind]
    g = rng.standard_normal(n)
    expected = np.linalg.solve(M, g)
    factor, x = np.empty((n, n)), np.empty(n)
    ok = _ml._cholesky_solve(M, g, factor, x)
    assert ok == (kind == "positive definite")
    if ok:
        np.testing.assert_allclose(x, expected, rtol=1e-11)
    before = M.copy()
    _ml._lu_solve(M, g, factor, x)
    np.testing.assert_allclose(x, expected, rtol=1e-9)
    np.testing.assert_array_equal(M, before)


@pytest.mark.parametrize("user_features", [False, True])
def test_full_vector_width_on_avx512_unless_the_user_chose(user_features):
    """On an AVX-512 CPU pmp lets LLVM use 512-bit vectors (``-prefer-256-bit``), unless
    NUMBA_CPU_FEATURES is set, which is then left as it is."""
    import llvmlite.binding as llvm

    code = textwrap.dedent("""
        import pmp
        from pmp._kernels import reductions
        import numpy as np
        reductions.vector_sum(np.ones(4))
        from numba.core.registry import cpu_target
        print(cpu_target.target_context.codegen().magic_tuple()[2].endswith("-prefer-256-bit"))
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    host = llvm.get_host_cpu_features().flatten()
    if user_features:
        env["NUMBA_CPU_FEATURES"] = host
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    avx512 = bool(llvm.get_host_cpu_features().get("avx512f"))
    assert out.stdout.strip() == str(avx512 and not user_features)
