"""Run configurations (pmp.batch.config): round trips, the shipped configs, bad keys and values."""
import os

import numpy as np
import pytest

import pmp
from pmp.batch.config import ConfigError, RunConfig, parse_config
from pmp_cases import ROOT, SMALL


def test_config_round_trip_rebuilds_the_same_problem():
    x, y = pmp.datasets.moons(40, seed=2, lift=4)
    problem = pmp.Problem(x, y, field="perceptron", width=5, activation="leaky_relu",
                          slope=0.2, T=3.0, n_steps=7, loss="logistic", reg="h1", lam=0.01,
                          lam1=0.002, running=0.5, projection="trainable")
    config = RunConfig.from_objects(problem, "adam", data=dict(name="moons", n_samples=40,
                                                               seed=2, lift=4),
                                    max_iter=5, lr=0.01)
    again = parse_config(config.to_toml())
    rebuilt = again.build_problem()
    assert rebuilt.config() == problem.config()
    np.testing.assert_array_equal(rebuilt.x, problem.x)
    assert again.method == "adam" and again.train_options == dict(max_iter=5, lr=0.01)
    assert parse_config(again.to_toml()).sections == again.sections


def test_matrix_projection_and_data_file_round_trip(tmp_path):
    x, y = pmp.datasets.rings(20, seed=0)
    np.savez(tmp_path / "points.npz", x=x, y=y)
    P = np.array([[0.3, -0.7]])
    problem = pmp.Problem(x, y, projection=P, n_steps=4)
    config = RunConfig.from_objects(problem, "gd", data=dict(path=str(tmp_path / "points.npz")))
    rebuilt = parse_config(config.to_toml()).build_problem()
    np.testing.assert_array_equal(rebuilt.P, P)
    np.testing.assert_array_equal(rebuilt.x, x)


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "runs"))
                                         if f.endswith(".toml")))
def test_every_shipped_config_is_valid(name):
    config = pmp.load_config(os.path.join(ROOT, "runs", name))
    problem = config.validate()
    assert np.all(np.asarray(problem.n_steps) >= 1)  # a tuple for a staged problem
    assert parse_config(config.to_toml()).sections == config.sections


def test_demo_config_is_valid_and_shipped():
    demo = pmp.demo_config()
    assert demo.validate().n_samples == 256
    shipped = pmp.load_config(os.path.join(ROOT, "runs", "demo.toml"))
    assert shipped.sections == demo.sections


@pytest.mark.parametrize("text,fragment", [
    ("[model]\nactvation = 'tanh'", "did you mean 'activation'?"),
    ("[modle]\nT = 1.0", "unknown section [modle]"),
    ("[train]\nmethod = 'gd'\nmomentum = 0.9", "unknown key 'train.momentum'"),
    ("[train]\nmethod = 'heavy_ball'\nmomentm = 0.9", "did you mean 'momentum'?"),
    ("[data]\nname = 'rings'\npath = 'x.npz'", "exactly one of 'name'"),
    ("[data\nname = 'rings'", "is not valid TOML"),
])
def test_bad_keys_are_named_with_a_suggestion(text, fragment):
    base = "" if "[data" in text else "[data]\nname = 'rings'\n"
    with pytest.raises((ConfigError, ValueError), match=None) as err:
        parse_config(base + text).validate()
    assert fragment in str(err.value)


def test_values_are_checked_by_the_api():
    config = parse_config(SMALL)
    with pytest.raises(ValueError, match="n_steps must be >= 1, got 0"):
        config.with_overrides(["model.n_steps=0"]).validate()
    with pytest.raises(TypeError, match="T must be a real number, got str 'ten'"):
        config.with_overrides(["model.T=ten"]).validate()
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        config.with_overrides(["train.method=sgd"]).validate()


def test_every_key_of_a_stage_mesh_table_is_documented():
    from pmp.batch.config import MESH_DICT_KEYS, MESH_KINDS, STAGE_NOTES

    text = STAGE_NOTES["mesh"][1]
    keys = {"kind", *MESH_DICT_KEYS, *(k for v in MESH_KINDS.values() for k in v)}
    for key in sorted(keys):
        assert f"``{key}``" in text, key
    for kind in MESH_KINDS:
        assert f'``kind = "{kind}"``' in text
