"""The kernels' matrix products (pmp._kernels.blas): every operand layout against NumPy,
the choice of the BLAS, and MKL's results against SciPy's BLAS on the sweeps and the
maximisers (tests/conftest.py runs the suite with SciPy's)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba.core.errors import TypingError

from pmp._kernels import blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _operands(rng, dtype):
    """(a, b) pairs in every layout the kernels pass: C, transposed views, strided rows."""
    A = rng.standard_normal((7, 5)).astype(dtype)
    B = rng.standard_normal((5, 4)).astype(dtype)
    X = rng.standard_normal((3, 10, 5)).astype(dtype)
    return [(A, B), (np.asfortranarray(A), B), (A, np.asfortranarray(B)),
            (rng.standard_normal((5, 7)).astype(dtype).T, B.T.copy().T),
            (X[1, 2:9], B),  # a slice of a trajectory: rows strided within a 3-D array
            (A[:, ::2], B[::2]),  # neither rows nor columns contiguous: copied first
            (A[::2], B)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmul_every_layout_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    for a, b in _operands(rng, dtype):
        out = np.full((a.shape[0], b.shape[1]), np.nan, dtype)  # beta = 0 ignores NaN
        blas.matmul(a, b, out)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmul_alpha_beta_strided_out_and_empty(dtype):
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((6, 3)).astype(dtype), rng.standard_normal((3, 4)).astype(dtype)
    tol = 1e-13 if dtype == np.float64 else 1e-5
    out = np.ones((6, 4), dtype)
    blas.matmul(A, B, out, -2.0, 0.5)
    np.testing.assert_allclose(out, -2.0 * (A @ B) + 0.5, rtol=tol, atol=tol)
    big = np.zeros((8, 7), dtype)
    blas.matmul(A, B, big[1:7, 2:6])  # rows of the output strided: written through a copy
    np.testing.assert_allclose(big[1:7, 2:6], A @ B, rtol=tol, atol=tol)
    assert not big[0].any() and not big[7].any() and not big[:, :2].any()
    assert not big[:, 6:].any()
    out = np.full((6, 4), 3.0, dtype)
    blas.matmul(A[:, :0], B[:0], out)  # k = 0: a sum of nothing
    assert not out.any()
    blas.matmul(A[:0], B, out[:0])  # m = 0: nothing to do


def test_matmul_refuses_mixed_dtypes():
    a = np.ones((2, 2), np.float32)
    with pytest.raises(TypingError, match="one dtype"):
        blas.matmul(a, np.ones((2, 2)), np.empty((2, 2)))


def _python(code, **env):
    """Run ``code`` in a fresh interpreter with the environment ``env`` added."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PMP_QUIET="1", **env), timeout=600)


def test_pmp_blas_chooses_and_rejects(tmp_path):
    done = _python("from pmp._kernels import blas; print(blas.backend())", PMP_BLAS="scipy")
    assert done.returncode == 0 and done.stdout.strip() == "scipy"
    done = _python("from pmp._kernels import blas", PMP_BLAS="openblas")
    assert done.returncode != 0
    assert "PMP_BLAS must be one of auto, mkl, scipy, got 'openblas'" in done.stderr
    cli = subprocess.run([sys.executable, "-m", "pmp", "train", "--set", "train.max_iter=1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env=dict(os.environ, PMP_BLAS="openblas"))
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "runs").exists()  # refused before anything is written
    if blas.mkl_library() is None:
        done = _python("from pmp._kernels import blas", PMP_BLAS="mkl")
        assert "PMP_BLAS=mkl, but MKL's libmkl_rt cannot be loaded" in done.stderr
    else:
        done = _python("from pmp._kernels import blas; print(blas.backend())",
                       PMP_BLAS="auto")
        assert done.stdout.strip() == "mkl"  # auto: MKL where it is installed
        # an MKL that another library loaded first keeps its own threading: not used
        first = ("import ctypes; "
                 f"ctypes.CDLL({blas.mkl_library()!r}); "
                 "from pmp._kernels import blas; print(blas.backend())")
        assert _python(first, PMP_BLAS="auto").stdout.strip() == "scipy"
        done = _python(first, PMP_BLAS="mkl")
        assert done.returncode != 0 and "another library of this process" in done.stderr


# costs, gradients and one maximisation on the fields whose kernels call matmul: the
# "outer" sweeps and conjugate gradients (l2) and FISTA (l1) of the linear maximiser,
# "inner" and its L-BFGS maximiser, in float64 and float32
_RESULTS = r"""
import json, sys
import numpy as np
import pmp
from pmp._kernels import blas
from pmp.maximize import Maximizer

out = {"backend": blas.backend()}
x, y = pmp.datasets.rings(150, seed=3, lift=20)
for dtype in ("float64", "float32"):
    for field, reg in (("outer", "l2"), ("outer", "l1"), ("inner", "l2")):
        options = dict(reg=reg, lam=1e-2, dtype=dtype)
        if reg == "l1":
            options["bound"] = 1.0
        problem = pmp.Problem(x, y, field=field, T=2.0, n_steps=6, **options)
        u = pmp.init_controls(problem, scale=0.3, seed=1)
        value, grad = pmp.value_and_grad(problem, u)
        xs = pmp.forward(problem, u)
        ps = pmp.backward(problem, u, xs)
        new, _ = Maximizer(problem, n_direct=16, max_inner=30).maximize(problem, u, xs, ps,
                                                                        rho=0.5)
        key = f"{dtype} {field} {reg}"
        out[key] = dict(value=float(value),
                        grad=[np.asarray(g, np.float64).ravel().tolist() for g in grad.values()],
                        new=[np.asarray(v, np.float64).ravel().tolist() for v in new.values()])
json.dump(out, sys.stdout)
"""


@pytest.mark.skipif(blas.mkl_library() is None, reason="MKL is not installed")
def test_mkl_and_scipy_blas_agree_to_rounding():
    results = {}
    for name in ("mkl", "scipy"):
        done = _python(_RESULTS, PMP_BLAS=name)
        assert done.returncode == 0, done.stderr
        results[name] = json.loads(done.stdout)
        assert results[name].pop("backend") == name
    assert results["mkl"].keys() == results["scipy"].keys()
    for key, mkl in results["mkl"].items():
        scipy = results["scipy"][key]
        # J and its gradient to rounding; the maximisers' iterative solvers stop at a
        # relative tolerance of 1e-10, so rounding moves where they stop by about that
        tol = dict(value=1e-12, grad=1e-12, new=1e-9) if key.startswith("float64") else \
            dict(value=1e-5, grad=1e-4, new=1e-3)
        assert mkl["value"] == pytest.approx(scipy["value"], rel=tol["value"]), key
        for part in ("grad", "new"):
            for a, b in zip(mkl[part], scipy[part]):
                a, b = np.array(a), np.array(b)
                assert np.max(np.abs(a - b)) <= tol[part] * max(1.0, np.max(np.abs(b))), \
                    (key, part)
