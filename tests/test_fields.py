"""The Field contract: a new vector field is one class and one registry call, and everything
above the fields (sweeps, gradient, maximiser, E-MSA, configuration, run files, analysis)
works on it without a change anywhere else."""
import numpy as np
import pytest

import pmp
from pmp._kernels.readout import pull_back
from pmp.batch.config import RunConfig, parse_config
from pmp.batch.runner import train_run
from pmp.fields import Field, LinearForm


class Affine(Field):
    """``f(x, u) = W x + b``, written in plain NumPy: a toy field of this test only."""

    name = "affine"
    control_names = ("W", "b")

    def step_shapes(self):
        return {"W": (self.dim, self.dim), "b": (self.dim,)}

    @property
    def homogeneous(self):
        return True

    def control_form(self):  # U = [W b], psi(x) = [x; 1]: the identity as "activation"
        return LinearForm(("W", "b"), "activation_and_one", pmp.activations.get("identity").code,
                          0.0)

    def forward_rows(self, xs, controls, h, store, r0, r1, final_only=False):
        W, b = controls["W"], controls["b"]
        for k in range(W.shape[0]):
            x = xs[k, r0:r1]
            xs[k + 1, r0:r1] = x + h * (x @ W[k].T + b[k])

    def backward_rows(self, xs, ps, controls, h, readout, grads, gP, store, stored, r0, r1,
                      statistics=None):
        code, param, P, y, terminal, running, at_end = readout
        W = controls["W"]
        K, slots = W.shape[0], ps.shape[0]  # all K + 1 costates, or two rolling slots
        z = np.empty((r1 - r0, P.shape[0]), xs.dtype)
        gz = np.empty_like(z)
        phi = run = 0.0
        if at_end:
            ps[K % slots, r0:r1] = 0.0
            phi = pull_back(code, param, xs[K, r0:r1], P, y, terminal, ps[K % slots, r0:r1],
                            gP, z, gz)
        for k in range(K - 1, -1, -1):
            p_next, x = ps[(k + 1) % slots, r0:r1], xs[k, r0:r1]
            grads["W"][k] = -h * (p_next.T @ x)
            grads["b"][k] = -h * p_next.sum(axis=0)
            ps[k % slots, r0:r1] = p_next + h * (p_next @ W[k])
            if running != 0.0:
                run += pull_back(code, param, x, P, y, h * running, ps[k % slots, r0:r1], gP,
                                 z, gz)
        return phi, run


@pytest.fixture
def affine():
    pmp.fields.register_field(Affine)
    yield Affine
    del pmp.fields.FIELDS[Affine.name]


def twin_problems(rings, **kwargs):
    """The toy field and "outer" with the identity activation: the same dynamics."""
    x, y = rings
    options = dict(T=2.0, n_steps=8, lam=1e-2, **kwargs)
    return (pmp.Problem(x, y, field="affine", **options),
            pmp.Problem(x, y, field="outer", activation="identity", **options))


@pytest.mark.parametrize("running", [0.0, 0.5])
def test_a_new_field_gets_exact_gradients(affine, rings, running):
    problem, reference = twin_problems(rings, running=running)
    u = pmp.init_controls(problem, scale=0.5, seed=1)
    J, grads = pmp.value_and_grad(problem, u)
    J_ref, grads_ref = pmp.value_and_grad(reference, u)
    assert J == pytest.approx(J_ref, rel=1e-13)
    for n in grads:
        np.testing.assert_allclose(grads[n], grads_ref[n], rtol=1e-11, atol=1e-15)
    direction = pmp.init_controls(problem, scale=1.0, seed=2)  # central differences of J
    eps = 1e-6
    plus = {n: u[n] + eps * direction[n] for n in u}
    minus = {n: u[n] - eps * direction[n] for n in u}
    slope = (pmp.cost(problem, plus)["total"] - pmp.cost(problem, minus)["total"]) / (2 * eps)
    assert slope == pytest.approx(sum(np.vdot(grads[n], direction[n]) for n in u), rel=1e-7)


def test_a_new_field_is_maximised_and_trained_by_emsa(affine, rings):
    problem, reference = twin_problems(rings)
    u = pmp.init_controls(problem, scale=0.5, seed=1)
    _, _, xs, ps = pmp.evaluate(problem, u)
    new, info = pmp.maximize.Maximizer(problem).maximize(problem, u, xs, ps, rho=0.7)
    new_ref, _ = pmp.maximize.Maximizer(reference).maximize(reference, u, xs, ps, rho=0.7)
    for n in new:
        np.testing.assert_allclose(new[n], new_ref[n], rtol=1e-10, atol=1e-13)
    assert np.all(info.gain >= -1e-12)
    result = pmp.train(problem, "emsa", max_iter=25, controls=u, gtol=0.0)
    expected = pmp.train(reference, "emsa", max_iter=25, controls=u, gtol=0.0)
    cost = result.history["cost"]
    assert np.all(np.diff(cost) <= 0.0) and cost[-1] < 0.9 * cost[0]  # monotone, and moves
    np.testing.assert_allclose(result.history["cost"], expected.history["cost"], rtol=1e-9)


def test_a_new_field_round_trips_through_a_run(affine, rings, tmp_path):
    problem, _ = twin_problems(rings)
    config = RunConfig.from_objects(problem, "emsa", data=dict(name="rings", n_samples=64,
                                                               seed=0, lift=3),
                                    max_iter=5, checkpoint_every=5)
    rebuilt = parse_config(config.to_toml())
    assert rebuilt.sections == {s: keys for s, keys in config.sections.items() if keys}
    assert isinstance(rebuilt.build_problem().field, Affine)
    state, parts = train_run(rebuilt, tmp_path / "affine", stream=open("/dev/null", "w"))
    assert state.status == "max_iter"
    with pmp.load_run(tmp_path / "affine") as run:
        assert run.problem().field.name == "affine"
        result = pmp.analysis.analyze_run(run)
    assert result["curves"]["error"][-1] == pytest.approx(parts["loss"], rel=1e-12)
    assert "displacement_bound" not in result  # the toy states no speed bound
    J_T, J_1, rel = result["time_scaling"]  # homogeneous: J_(T, lam)(u) = J_(1, lam/T)(T u)
    assert rel < 1e-12
