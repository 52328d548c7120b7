"""Staged problems (variable width) above the library: [[stages]] in a configuration, their
run files (per-stage groups with their own time axes), resume, `pmp analyze` and `pmp plot`;
a run without stages keeps its layout."""
import io
import os

import h5py
import numpy as np
import pytest

import pmp
from pmp import stages as st
from pmp.batch import cli
from pmp.batch.config import ConfigError, RunConfig, parse_config
from pmp.batch.runner import resume_run, train_run
from pmp_cases import ROOT, SMALL

STAGED = """\
[data]
name = "rings"
n_samples = 40
seed = 0

[model]
field = "outer"
activation = "tanh"

[objective]
loss = "squared"
lam = 0.001

[[stages]]
T = 1.0
n_steps = 4

[[stages]]
T = 1.5
n_steps = 6
dim = 3
enter = "lift"

[train]
method = "emsa"
max_iter = 6
checkpoint_every = 3

[output]
name = "staged"
"""


def same_problem(a, b):
    """Two staged problems alike: stages, transitions, data and control shapes."""
    assert (a.dims, a.n_steps, a.durations) == (b.dims, b.n_steps, b.durations)
    assert [s.config() for s in a.stages] == [s.config() for s in b.stages]
    assert [t.kind for t in a.transitions] == [t.kind for t in b.transitions]
    for s, t in zip(a.transitions, b.transitions):
        np.testing.assert_array_equal(s.matrix, t.matrix)
        assert s.lam == t.lam
    np.testing.assert_array_equal(a.x, b.x)
    assert a.control_shapes == b.control_shapes


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("staged") / "run"
    train_run(parse_config(STAGED), directory, stream=io.StringIO())
    return directory


# ------------------------------------------------------------------ configuration
def test_stage_tables_build_the_staged_problem_and_round_trip():
    config = parse_config(STAGED)
    problem = config.validate()
    assert st.is_staged(problem) and problem.dims == (2, 3) and problem.n_steps == (4, 6)
    assert problem.transitions[0].kind == "lift" and problem.T == 2.5
    again = parse_config(config.to_toml())
    assert again.sections == config.sections
    same_problem(again.build_problem(), problem)
    assert "[[stages]]" in config.to_toml()


def test_a_matrix_a_trainable_transition_and_stage_options_round_trip():
    x, y = pmp.datasets.rings(30, seed=3)
    A = np.array([[1.0, 0.5], [0.0, 1.0], [0.25, -0.75]])
    problem = pmp.Problem(x, y, lam=0.01, stages=[
        pmp.Stage(1.0, 3, activation="sigmoid", reg="h1", lam1=0.1),
        pmp.Stage(0.5, 4, dim=3, enter=A, running=0.2, frozen={"b": True}),
        pmp.Stage(0.7, 2, dim=2, enter="trainable", enter_lam=0.3, field="inner",
                  mesh=[0.0, 1.0]),
        pmp.Stage(0.2, 2, enter="interpolate", mesh=[0.0, 0.25, 1.0]),
    ])
    config = RunConfig.from_objects(problem, "gd", data=dict(name="rings", n_samples=30,
                                                             seed=3), max_iter=2, lr=0.1)
    text = config.to_toml()
    assert "enter = [[1.0, 0.5], [0.0, 1.0], [0.25, -0.75]]" in text
    again = parse_config(text)
    assert again.sections["stages"] == config.sections["stages"]
    rebuilt = again.validate()
    same_problem(rebuilt, problem)
    assert rebuilt.stages[1].frozen is not None and rebuilt.transitions[1].lam == 0.3
    assert [t.kind for t in rebuilt.transitions] == ["matrix", "trainable", "interpolate"]


# ------------------------------------------------------------------ meshes in a configuration
MESHED = """\
[data]
name = "rings"
n_samples = 12
seed = 1
lift = 4

[model]
field = "integral"
activation = "tanh"

[objective]
loss = "squared"
lam = 0.001

[[stages]]
T = 0.5
n_steps = 2
mesh = { kind = "grid", shape = [2, 2], extent = [[0.0, 2.0], [-1.0, 1.0]], rule = "trapezoid" }

[[stages]]
T = 0.5
n_steps = 3
enter = "interpolate"
mesh = { kind = "grid", shape = [3, 3], rule = "midpoint" }

[[stages]]
T = 0.25
n_steps = 2
enter = "trainable"
field = "outer"
mesh = { kind = "interval", n = 5, a = -1.0, b = 1.0, rule = "midpoint" }

[[stages]]
T = 0.25
n_steps = 2
enter = "interpolate"
mesh = [-1.0, -0.2, 0.1, 1.0]

[[stages]]
T = 0.25
n_steps = 2
enter = "interpolate"
mesh = { axes = [[-1.0, 0.0, 1.0]], weights = [[0.25, 1.5, 0.25]], bounds = [[-2.0, 2.0]], rule = "given" }

[train]
method = "gd"
max_iter = 2
"""


def same_meshes(a, b):
    """The meshes of two staged problems alike bit for bit (nodes, weights, bounds, rule)."""
    assert len(a.meshes) == len(b.meshes)
    for m, n in zip(a.meshes, b.meshes):
        assert (m is None) == (n is None)
        if m is None:
            continue
        assert (m.shape, m.bounds, m.rule) == (n.shape, n.bounds, n.rule)
        for name in ("nodes", "weights"):
            np.testing.assert_array_equal(getattr(m, name), getattr(n, name))


@pytest.mark.parametrize("text,expected", [
    ("[0.0, 0.25, 1.0]", pmp.meshes.Mesh([[0.0, 0.25, 1.0]])),
    ('{ kind = "interval", n = 7 }', pmp.meshes.interval(7)),
    ('{ kind = "interval", n = 4, a = -1, b = 3, rule = "midpoint" }',
     pmp.meshes.interval(4, -1.0, 3.0, rule="midpoint")),
    ('{ kind = "grid", shape = [8, 8] }', pmp.meshes.grid((8, 8))),
    ('{ kind = "grid", shape = [2, 3], extent = [[0, 2], [1, 4]], rule = "trapezoid" }',
     pmp.meshes.grid((2, 3), ((0.0, 2.0), (1.0, 4.0)), rule="trapezoid")),
    ('{ axes = [[0.0, 1.0], [0.0, 0.5, 1.0]], weights = [[0.5, 0.5], [0.1, 0.8, 0.1]] }',
     pmp.meshes.Mesh([[0.0, 1.0], [0.0, 0.5, 1.0]], [[0.5, 0.5], [0.1, 0.8, 0.1]])),
])
def test_a_stage_mesh_is_a_list_of_nodes_or_a_table(text, expected):
    config = parse_config(f"[data]\nname = 'rings'\nn_samples = 5\nlift = {expected.size}\n"
                          f"[[stages]]\nmesh = {text}\n")
    problem = config.validate()
    mesh, = problem.meshes
    assert problem.dims == (expected.size,)
    assert (mesh.shape, mesh.bounds, mesh.rule) == (expected.shape, expected.bounds,
                                                     expected.rule)
    np.testing.assert_array_equal(mesh.nodes, expected.nodes)
    np.testing.assert_array_equal(mesh.weights, expected.weights)


def test_meshes_round_trip_config_problem_objects_toml_problem():
    config = parse_config(MESHED)
    problem = config.validate()
    assert problem.dims == (4, 9, 5, 4, 3)
    assert [t.kind for t in problem.transitions] == ["interpolate", "trainable",
                                                     "interpolate", "interpolate"]
    assert [m.rule for m in problem.meshes] == ["trapezoid", "midpoint", "midpoint",
                                                 "trapezoid", "given"]
    again = RunConfig.from_objects(problem, "gd", data=config["data"], max_iter=2)
    # the constructors' meshes are written short, the others by their nodes or in full
    assert again.sections["stages"] == config.sections["stages"]
    text = again.to_toml()
    assert 'mesh = { kind = "grid", shape = [3, 3], rule = "midpoint" }' in text
    rebuilt = parse_config(text).validate()
    same_problem(rebuilt, problem)
    same_meshes(rebuilt, problem)
    for s, t in zip(rebuilt.stages, problem.stages):
        assert s.field.name == t.field.name and s.reg == t.reg
        if t.field.name == "integral":
            for name, w in t.field.control_weights().items():
                np.testing.assert_array_equal(s.field.control_weights()[name], w)
    for s, t in zip(rebuilt.transitions, problem.transitions):
        np.testing.assert_array_equal(s.matrix, t.matrix)


def test_meshes_built_in_python_round_trip_exactly():
    x, y = pmp.datasets.rings(10, seed=2)
    nodes = np.array([0.0, 0.1, 0.35, 1.0])  # not uniform: written as its nodes
    odd = pmp.meshes.Mesh([[0.0, 1.0 / 3.0, 1.0]], [[0.1, 0.7, 0.2]], [(0.0, 1.5)])
    wide = pmp.meshes.Mesh([nodes], bounds=[(-1.0, 2.0)])  # trapezoid, but wider bounds
    problem = pmp.Problem(x, y, field="integral", lam=0.01, stages=[
        pmp.Stage(0.5, 2, mesh=pmp.meshes.grid((2, 2), rule="trapezoid")),
        pmp.Stage(0.5, 2, mesh=pmp.meshes.grid((3, 2), ((0.1, 0.7), (0.0, 1.0 / 3.0))),
                  enter="interpolate"),
        pmp.Stage(0.5, 2, mesh=pmp.meshes.interval(6, 0.0, 0.3, rule="midpoint"),
                  enter="trainable"),
        pmp.Stage(0.5, 2, mesh=pmp.meshes.Mesh([nodes]), enter="interpolate"),
        pmp.Stage(0.5, 2, mesh=nodes, enter="interpolate"),
        pmp.Stage(0.5, 2, mesh=odd, enter="interpolate"),
        pmp.Stage(0.5, 2, mesh=wide, enter="interpolate"),
    ])
    config = RunConfig.from_objects(problem, "gd", data=dict(name="rings", n_samples=10,
                                                             seed=2))
    meshes = [t["mesh"] for t in config.stages]
    assert meshes[:3] == [
        dict(kind="grid", shape=[2, 2], rule="trapezoid"),
        dict(kind="grid", shape=[3, 2], extent=[[0.1, 0.7], [0.0, 1.0 / 3.0]], rule="midpoint"),
        dict(kind="interval", n=6, a=0.0, b=0.3, rule="midpoint")]
    assert meshes[3] == meshes[4] == nodes.tolist()
    assert meshes[5] == odd.to_dict() and meshes[6] == wide.to_dict()
    rebuilt = parse_config(config.to_toml()).validate()
    same_problem(rebuilt, problem)
    same_meshes(rebuilt, problem)


def test_staged_problem_config_gives_the_keywords_and_the_stages():
    x, y = pmp.datasets.rings(10, seed=0)
    mesh = pmp.meshes.interval(3)
    A = np.eye(3, 2)
    problem = pmp.Problem(x, y, activation="sigmoid", lam=0.01, stages=[
        pmp.Stage(1.0, 2), pmp.Stage(0.5, 3, enter=A, mesh=mesh, reg="h1", lam1=0.1)])
    cfg = problem.config()
    assert cfg == dict(activation="sigmoid", lam=0.01, stages=[
        dict(T=1.0, n_steps=2),
        dict(T=0.5, n_steps=3, enter=A, mesh=mesh, reg="h1", lam1=0.1)])
    cfg["stages"][0]["T"] = 9.0  # new dicts: the problem is not changed
    assert problem.config()["stages"][0]["T"] == 1.0
    again = pmp.Problem(x, y, **dict(cfg, stages=[pmp.Stage(**s) for s in
                                                  problem.config()["stages"]]))
    same_problem(again, problem)
    assert again.config()["stages"][1]["mesh"] is mesh
    # the configuration is written from it, not from the problem's private attributes
    import inspect
    from pmp.batch import config as config_module

    assert "_spec" not in inspect.getsource(config_module)


def test_an_integral_field_on_image_grids_trains_from_a_configuration(tmp_path, capsys):
    """The digits on a 4 x 4 grid (the 8 x 8 images averaged over 2 x 2 pixels: the first
    stage starts at the data), interpolated onto the 8 x 8 pixel grid at t = 0.5."""
    x, y = pmp.datasets.digits()
    coarse = x[:120].reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16)
    np.savez(tmp_path / "digits4.npz", x=coarse, y=y[:120])
    text = f"""\
[data]
path = "{tmp_path / 'digits4.npz'}"

[model]
field = "integral"
activation = "tanh"

[objective]
loss = "cross_entropy"
lam = 0.001

[[stages]]
T = 0.5
n_steps = 2
mesh = {{ kind = "grid", shape = [4, 4] }}

[[stages]]
T = 0.5
n_steps = 2
enter = "interpolate"
mesh = {{ kind = "grid", shape = [8, 8], rule = "midpoint" }}
projection = "trainable"

[train]
method = "lbfgs"
max_iter = 3
checkpoint_every = 2
"""
    (tmp_path / "digits.toml").write_text(text)
    assert cli.main(["train", str(tmp_path / "digits.toml"), "--out", str(tmp_path / "r")]) == 0
    assert "reached max_iter = 3" in capsys.readouterr().out
    with pmp.load_run(tmp_path / "r") as run:
        problem, controls = run.problem(), run.controls()
        cost = run.history["cost"]
        assert run.checkpoints == [0, 2, 3]
    assert problem.dims == (16, 64) and [s.field.name for s in problem.stages] == \
        ["integral", "integral"]
    expected = [pmp.meshes.grid((4, 4)), pmp.meshes.grid((8, 8))]
    for mesh, want in zip(problem.meshes, expected):
        np.testing.assert_array_equal(mesh.nodes, want.nodes)
        np.testing.assert_array_equal(mesh.weights, want.weights)
    np.testing.assert_array_equal(problem.transitions[0].matrix,
                                  pmp.meshes.interpolation_matrix(*expected))
    assert controls[0]["W"].shape == (2, 16, 16) and controls[1]["W"].shape == (2, 64, 64)
    assert cost[-1] < cost[0]
    assert float(run_cost(tmp_path / "r")) == pytest.approx(
        pmp.cost(problem, controls)["total"], rel=1e-12)


def run_cost(directory):
    with pmp.load_run(directory) as run:
        return run.checkpoint().attrs["cost"]


def test_a_problem_that_a_configuration_cannot_hold_says_which_value():
    x, y = pmp.datasets.rings(10, seed=0)
    field = pmp.fields.make_field("outer", 2, pmp.activations.get("tanh"))
    problem = pmp.Problem(x, y, stages=[pmp.Stage(1.0, 2, field=field)])
    with pytest.raises(ConfigError, match=r"stages\[0\]\.field is a Outer"):
        RunConfig.from_objects(problem, "gd")


@pytest.mark.parametrize("assignment,fragments", [
    ("stages.1.enter=lfit", ["stages[1].enter must be one of lift, project, interpolate, "
                             "trainable", "got 'lfit'"]),
    ("stages.1.enter=3", ["stages[1].enter must be one of", "got int 3"]),
    ("stages.1.enter=[[1,0],[0]]", ["stages[1].enter must be a matrix", "[[1, 0], [0]]"]),
    ("stages.1.enter=[[1,0],[0,1]]", ["stages[1].enter", "shape (3, 2)", "(2, 2)"]),
    ("stages.1.entr=3", ["unknown key 'stages[1].entr'", "did you mean 'enter'?"]),
    ("stages.1.T=ten", ["stages[1]: T must be a real number, got str 'ten'"]),
    ("stages.1.T=-1", ["stages[1]: T must be > 0", "-1"]),
    ("stages.1.dim=1", ["stages[1].enter='lift' needs dim >= 2", "got dim=1"]),
    ("stages.0.enter=lift", ["stages[0]", "enter must be None for the first stage"]),
    ("stages.1.enter_lam=0.5", ["stages[1].enter_lam is the weight of a trainable"]),
    ("stages.2.T=1", ["stages.2.T", "has 2 stage(s)", "got index 2"]),
    ("stages.x.T=1", ["a stage key is stages.J.KEY", "'stages.x.T'"]),
    ('stages.1.mesh="grid"', ["stages[1].mesh must be a list of the increasing nodes",
                              'kind = "grid" (shape, extent, rule)', "got str 'grid'"]),
    ("stages.1.mesh=[]", ["stages[1].mesh must be a list", "got an empty list"]),
    ("stages.1.mesh=[1.0,0.0,2.0]", ["stages[1].mesh must be a non-empty increasing array",
                                     "got [1. 0. 2.]"]),
    ('stages.1.mesh={kind="grd",shape=[4,4]}', ['stages[1].mesh.kind must be one of '
                                                '"interval", "grid"', "got str 'grd'"]),
    ("stages.1.mesh={shape=[4,4]}", ["stages[1].mesh must have a key 'kind'",
                                     "got the keys 'shape'"]),
    ('stages.1.mesh={kind="grid",shap=[4,4]}', ["unknown key 'stages[1].mesh.shap'",
                                               "expected kind, shape, extent, rule",
                                               "did you mean 'shape'?"]),
    ('stages.1.mesh={kind="grid"}', ["stages[1].mesh.shape is required"]),
    ('stages.1.mesh={kind="grid",shape=[4]}', ["stages[1].mesh.shape must be a pair of ints",
                                              "got [4]"]),
    ('stages.1.mesh={kind="grid",shape=[4,2.5]}', ["stages[1].mesh.shape[1] must be an int",
                                                  "got float 2.5"]),
    ('stages.1.mesh={kind="grid",shape=[2,2],rule="simpson"}',
     ["stages[1].mesh.rule must be one of trapezoid, midpoint", "got 'simpson'"]),
    ('stages.1.mesh={kind="interval",n=3,rule=2}', ["stages[1].mesh.rule must be a string",
                                                    "got int 2"]),
    ('stages.1.mesh={kind="interval",n=1}', ["stages[1].mesh.n must be >= 2, got 1"]),
    ('stages.1.mesh={kind="interval",n=3,a=1.0,b=0.0}', ["stages[1].mesh.b must be > a = 1",
                                                         "got 0"]),
    ("stages.1.mesh={axes=[[0.0,1.0,2.0]],weights=[[1.0]]}",
     ["stages[1].mesh.weights[0] must be 3 weights >= 0", "got [1.]"]),
    ('stages.1.mesh={kind="interval",n=4}', ["stages[1].dim must equal the 4 nodes of its "
                                             "mesh, got 3"]),
])
def test_a_bad_stage_value_names_the_key_the_expected_and_the_actual_value(
        tmp_path, capsys, assignment, fragments):
    with pytest.raises((ConfigError, ValueError, TypeError)) as err:
        parse_config(STAGED).with_overrides([assignment]).validate()
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    (tmp_path / "c.toml").write_text(STAGED)
    code = cli.main(["train", str(tmp_path / "c.toml"), "--set", assignment,
                     "--out", str(tmp_path / "r")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pmp: error: ")
    assert fragments[0] in lines[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text,fragment", [
    ("stages = 3\n", "stages must be an array of tables, one [[stages]] table per stage"),
    ("stages = []\n", "got an empty array"),
    ("stages = [1, 2]\n", "got an array of int"),
    ("[stages]\nT = 1.0\n", "got dict"),
    ("[stage]\nT = 1.0\n", "unknown section [stage]"),
])
def test_a_bad_stages_section_is_refused(text, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(text + "[data]\nname = 'rings'\n").validate()
    assert fragment in str(err.value)


# ------------------------------------------------------------------ run files
def test_a_staged_run_stores_each_stage_on_its_own_time_axis(staged_run):
    with pmp.load_run(staged_run) as run:
        problem = run.problem()
        assert run.staged and run.checkpoints == [0, 3, 6]
        assert run.attrs["stages"] == 2
        np.testing.assert_array_equal(run.attrs["durations"], [1.0, 1.5])
        np.testing.assert_array_equal(run.attrs["switch_times"], [1.0])
        np.testing.assert_array_equal(run.t, np.concatenate(problem.t))
        final = run.checkpoint()
        assert "states" not in final  # they are per stage
        np.testing.assert_array_equal(final.file["t"][()], run.t)
        for j, (t, dim) in enumerate(zip(problem.t, (2, 3))):
            group = final[f"stage_{j}"]
            assert dict(group.attrs) == dict(dim=dim, n_steps=problem.n_steps[j],
                                             T=problem.durations[j],
                                             start=problem.starts[j],
                                             enter=["", "lift"][j])
            for name in ("states", "costates"):
                ds = group[name]
                assert ds.shape == (len(t), 40, dim) and ds.fletcher32
                assert [d.label for d in ds.dims] == ["t", "sample", "dim"]
                scale = ds.dims[0][0]
                assert scale.name == f"/stage_{j}/t" and h5py.h5ds.is_scale(scale.id)
                np.testing.assert_array_equal(scale[()], t)
            assert {n: a.shape for n, a in group["controls"].items()} == \
                problem.control_shapes[j]
            np.testing.assert_array_equal(run.file[f"stage_{j}/t"][()], t)
        xs, ps = run.states(), run.costates()
        parts, _, xs_now, ps_now = pmp.evaluate(problem, run.controls())
        assert float(final.attrs["cost"]) == parts["total"]
        for a, b in zip(xs + ps, xs_now + ps_now):
            np.testing.assert_array_equal(a, b)


def test_a_staged_run_resumes_and_extends_bit_for_bit(tmp_path):
    config = parse_config(STAGED).with_overrides(["train.max_iter=4"])
    train_run(config, tmp_path / "a", stream=io.StringIO())
    resume_run(tmp_path / "a", max_iter=7, stream=io.StringIO())
    train_run(config.with_overrides(["train.max_iter=7"]), tmp_path / "b",
              stream=io.StringIO())
    with pmp.load_run(tmp_path / "a") as a, pmp.load_run(tmp_path / "b") as b:
        assert a.checkpoints == [0, 3, 4, 6, 7] and b.checkpoints == [0, 3, 6, 7]
        for ua, ub in zip(a.controls(), b.controls()):
            assert set(ua) == set(ub)
            for name in ua:
                np.testing.assert_array_equal(ua[name], ub[name])
        np.testing.assert_array_equal(a.history["cost"], b.history["cost"])


def test_an_interrupted_staged_run_with_a_trainable_transition_resumes(tmp_path):
    config = parse_config(STAGED).with_overrides(
        ["stages.1.enter=trainable", "stages.1.enter_lam=0.01", "train.method=lbfgs"])
    train_run(config, tmp_path / "r", stream=io.StringIO())
    with pmp.load_run(tmp_path / "r") as run:
        final = run.controls()
        assert final[1]["enter"].shape == (3, 2)
        assert run.checkpoint()["stage_1/controls/enter"].shape == (3, 2)
    # as after a kill -9 past checkpoint 3: the later checkpoints never written
    with h5py.File(tmp_path / "r" / "run.h5", "a") as f:
        f.attrs["status"] = "running"
        del f["checkpoints/00000006"], f["final"]
        f["final"] = h5py.SoftLink("/checkpoints/00000003")
        for name in list(f["history"]):
            values = f["history"][name][:4]
            del f["history"][name]
            f["history"].create_dataset(name, data=values, maxshape=(None,))
    (tmp_path / "r" / "checkpoints" / "00000006.h5").unlink()
    state, _ = resume_run(tmp_path / "r", stream=io.StringIO())
    assert state.iteration == 6
    with pmp.load_run(tmp_path / "r") as run:
        for u, v in zip(run.controls(), final):
            for name in u:
                np.testing.assert_array_equal(u[name], v[name])


def test_a_run_without_stages_keeps_its_layout(tmp_path):
    config = parse_config(SMALL).with_overrides(["train.max_iter=2",
                                                 "train.checkpoint_every=1"])
    train_run(config, tmp_path / "r", stream=io.StringIO())
    names = []
    with h5py.File(tmp_path / "r" / "run.h5", "r") as f:
        f.visit(names.append)
        assert set(f.attrs) == {"format", "format_version", "pmp_version", "config",
                                "created", "updated", "status", "message", "method",
                                "rng_state"}  # (mini-batches: no best iterate)
        assert sorted(f) == ["checkpoints", "data", "final", "history", "t"]
        assert h5py.h5ds.is_scale(f["t"].id) and not any("stage" in n for n in names)
    with h5py.File(tmp_path / "r" / "checkpoints" / "00000002.h5", "r") as f:
        names = []
        f.visit(names.append)
        assert f["checkpoint/states"].dims[0][0].name == "/t"
    assert [n for n in names if "resume" not in n] == \
        ["checkpoint", "checkpoint/controls", "checkpoint/controls/W", "checkpoint/controls/b",
         "checkpoint/costates", "checkpoint/states", "t"]
    assert config.to_toml().startswith("[data]\n") and "stages" not in config.to_toml()


def test_a_sweep_over_a_stage_key(tmp_path):
    from pmp.batch.grid import parse_grid, sweep

    config = parse_config(STAGED).with_overrides(["train.max_iter=2"])
    rows = sweep(config, parse_grid(["stages.1.T=0.5,2.0"]), str(tmp_path / "s"),
                 progress=lambda line: None)
    assert [r["directory"] for r in rows] == ["stage1.T=0.5", "stage1.T=2.0"]
    with pmp.load_run(tmp_path / "s" / "stage1.T=2.0") as run:
        assert run.problem().durations == (1.0, 2.0)
    entry, = pmp.analysis.analyze_sweep(rows, "stages.1.T")
    assert entry["values"] == [0.5, 2.0] and "T_times_J" not in entry  # not the horizon
    written = pmp.plots.plot_sweep(rows, "stages.1.T", str(tmp_path / "s"), formats="png")
    assert [p.rsplit("/", 1)[1] for p in written] == ["scaling_stage1_T.png"]


# ------------------------------------------------------------------ analysis
def test_the_analysis_of_a_staged_run_is_that_of_pmp_stages(staged_run, capsys):
    assert cli.main(["analyze", str(staged_run)]) == 0
    out = capsys.readouterr().out
    with pmp.load_run(staged_run) as run:
        problem, controls = run.problem(), run.controls()
        stored = run.analysis()
    g = st.duration_gradient(problem, controls)
    sides = st.switch_hamiltonians(problem, controls)
    report = stored["stages"]
    np.testing.assert_allclose(report["duration_gradient"], g, rtol=1e-12)
    np.testing.assert_allclose(report["switch_rate"], [g[0] - g[1]], rtol=1e-12)
    np.testing.assert_allclose(report["fixed_horizon_gradient"], g - g.mean(), rtol=1e-12)
    np.testing.assert_allclose(report["switch_hamiltonians"], sides, rtol=1e-12)
    np.testing.assert_array_equal(report["switch_times"], [1.0])
    assert report["transitions"] == ["lift"]
    hbar = st.stage_hamiltonians(problem, controls)
    np.testing.assert_allclose(report["hamiltonian_mean"], [h.mean() for h in hbar])
    # the curves: the stages one after the other, each with its own readout and norms
    c = stored["curves"]
    np.testing.assert_array_equal(c["t"], np.concatenate(problem.t))
    np.testing.assert_array_equal(c["stage"], [0] * 5 + [1] * 7)
    errors = st.losses_along(problem, pmp.forward(problem, controls), controls)
    np.testing.assert_allclose(c["error"], np.concatenate(errors), rtol=1e-12)
    assert c["error"][-1] == pytest.approx(run_loss(staged_run), rel=1e-12)
    for j, part in enumerate(c["per_stage"]):
        norms = pmp.analysis.step_norms(problem.stages[j], controls[j])
        np.testing.assert_allclose(part["control_norm"], norms, rtol=1e-12)
        np.testing.assert_allclose(part["hamiltonian_rate"], hbar[j], rtol=1e-12)
    assert len(stored["fit_control"]) == len(stored["fit_costate"]) == 2
    # what pmp analyze prints
    assert "2 stages (dims 2 -> 3; transitions lift)" in out
    assert f"switch 1 at t = 1 (lift): Hbar before {sides[0, 0]:.4g}, after " \
           f"{sides[0, 1]:.4g}" in out
    assert f"dJ/dt_1 = dJ/dT_0 - dJ/dT_1 = {g[0] - g[1]:.4g}" in out
    assert "|u| s1" in out and "|p| s0" in out


def run_loss(directory):
    with pmp.load_run(directory) as run:
        return float(run.checkpoint().attrs["loss"])


# ------------------------------------------------------------------ figures
def test_pmp_plot_draws_the_stages_side_by_side_and_marks_the_switch(staged_run, tmp_path,
                                                                      capsys):
    import matplotlib.pyplot as plt

    figs = pmp.plots.figures(staged_run)
    assert list(figs) == ["decay", "states_costates", "trajectories", "decision_regions",
                          "control_heatmap", "hamiltonian", "training"]
    with pmp.load_run(staged_run) as run:
        problem, controls = run.problem(), run.controls()
    for name in ("decay", "states_costates", "hamiltonian"):
        for ax in figs[name].axes:  # a vertical line at t = 1 on every curve figure
            assert any(np.array_equal(line.get_xdata(), [1.0, 1.0]) for line in ax.lines)
    panels = [ax for ax in figs["trajectories"].axes if ax.get_title()]
    assert [ax.get_title().split(",")[0] for ax in panels] == \
        ["stage 0 (d = 2)", "stage 1 (d = 3"]
    heat = [ax for ax in figs["control_heatmap"].axes if ax.get_title()]
    assert len(heat) == 2  # one panel per stage, their widths in proportion to T_j
    widths = [ax.get_position().width for ax in heat]
    assert widths[1] / widths[0] == pytest.approx(1.5, rel=0.05)
    assert heat[1].get_xlim() == pytest.approx((1.0, 2.5))
    ham = figs["hamiltonian"].axes[0]
    g = st.duration_gradient(problem, controls)
    labels = [t.get_text() for t in ham.get_legend().get_texts()]
    assert f"stage 1: $dJ/dT_1$ = {g[1]:.3g}" in labels
    hbar = st.stage_hamiltonians(problem, controls)
    np.testing.assert_allclose(ham.lines[0].get_ydata(), hbar[0])
    for fig in figs.values():
        plt.close(fig)
    assert cli.main(["plot", str(staged_run), "--format", "png"]) == 0
    assert (staged_run / "hamiltonian.png").exists()
    assert cli.main(["plot", str(staged_run), "--animate"]) == 2
    assert "not available for a staged run" in capsys.readouterr().err


def test_trained_durations_go_into_the_checkpoints_and_resume_exactly(tmp_path):
    from pmp.batch.config import TRAIN_KEYS

    if "train_durations" not in TRAIN_KEYS:
        pytest.skip("this trainer does not train the stage durations")
    config = parse_config(STAGED).with_overrides(
        ["train.method=lbfgs", "train.train_durations=fixed_horizon", "train.max_iter=4"])
    train_run(config, tmp_path / "a", stream=io.StringIO())
    resume_run(tmp_path / "a", max_iter=7, stream=io.StringIO())
    train_run(config.with_overrides(["train.max_iter=7"]), tmp_path / "b",
              stream=io.StringIO())
    with pmp.load_run(tmp_path / "a") as a, pmp.load_run(tmp_path / "b") as b:
        durations = a.durations()
        np.testing.assert_array_equal(durations, b.durations())
        assert durations.sum() == pytest.approx(2.5) and durations[0] != 1.0
        np.testing.assert_array_equal(a.durations(0), [1.0, 1.5])
        problem = a.problem()
        assert problem.durations == tuple(durations)
        np.testing.assert_array_equal(a.checkpoint()["stage_1/states"].dims[0][0][()],
                                      problem.t[1])
        np.testing.assert_array_equal(a.history["duration_0"][[0, -1]], [1.0, durations[0]])
        for ua, ub in zip(a.controls(), b.controls()):
            for name in ua:
                np.testing.assert_array_equal(ua[name], ub[name])
        assert float(a.checkpoint().attrs["cost"]) == pmp.cost(problem, a.controls())["total"]


@pytest.mark.parametrize("page", ["guide/stages.md", "guide/batch.md"])
def test_the_configurations_shown_in_the_documentation_are_valid(page):
    """Every whole configuration (a TOML block with a [data] section) of these pages parses
    and validates (builds its problem); the other blocks are fragments."""
    import re

    text = open(os.path.join(ROOT, "docs", page)).read()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "[data]" in b]
    assert blocks
    for block in blocks:
        pmp.parse_config(block).validate()
