"""TOML run configurations: the Python API, one to one.

::

    [data]       name = "rings", n_samples = 256, seed = 0, lift = 3     (a pmp.datasets name
                 and its keyword arguments)  -- or --  path = "points.npz" (arrays x and y;
                 .npz or HDF5), lift
    [model]      field, activation, T, n_steps, width, projection, slope, features,
                 bandwidth, seed, dtype                       (pmp.Problem keywords)
    [objective]  loss, p, reg, lam, lam1, bound, running, terminal, n_classes
    [train]      method, max_iter, seed, gtol, time_limit, batch_size, init, init_scale,
                 segment, threads, checkpoint_every, and the method's options (rho, lr, ...)
    [output]     dir, name, trajectory_samples
    [[stages]]   T, n_steps, dim, enter, enter_lam, mesh and the per-stage options
                 (pmp.stages.STAGE_OPTIONS): one table per stage of a staged problem
                 (variable width, pmp.Stage); [model] and [objective] are their defaults.
                 mesh = [0.0, 0.5, 1.0] (an interval's nodes), or an inline table:
                 { kind = "interval", n, a, b, rule }, { kind = "grid", shape, extent,
                 rule } or pmp.meshes.Mesh.to_dict's { axes, weights, bounds, rule }

A :class:`RunConfig` builds the Problem and the trainer's arguments, and a Problem plus trainer
options serialise back to the same configuration (:meth:`RunConfig.from_objects`). Unknown
keys are errors that suggest the nearest valid key; values are checked by the API itself, with
its messages.
"""
import difflib
import inspect
import os
import tomllib
from dataclasses import dataclass, field

import numpy as np
import tomli_w

from .._kernels import lazy_module
from .. import datasets, meshes
from ..problem import Problem
from ..stages import STAGE_OPTIONS, Stage, is_staged
from ..trainer import check_options, iterate
from .._validation import integer
from ..methods import METHODS, make_method, method_options

h5py = lazy_module("h5py")  # imported when a file is first read or written

SECTIONS = ("data", "model", "objective", "train", "output")
MODEL_KEYS = ("field", "activation", "T", "n_steps", "width", "projection", "slope",
              "features", "bandwidth", "seed", "dtype")
OBJECTIVE_KEYS = ("loss", "p", "reg", "lam", "lam1", "bound", "running", "terminal",
                  "n_classes")
TRAIN_KEYS = ("method", "max_iter", "seed", "gtol", "time_limit", "batch_size", "init",
              "init_scale", "segment", "threads", "checkpoint_every", "keep_best")
# staged problems: training the stage durations (when the trainer offers it)
TRAIN_KEYS += tuple(k for k in ("train_durations", "min_duration", "duration_scale")
                    if k in inspect.signature(iterate).parameters)
OUTPUT_KEYS = ("dir", "name", "trajectory_samples")
# [[stages]]: an array of tables, one per stage (pmp.Stage's arguments); not in SECTIONS,
# which are the plain tables
STAGES = "stages"
STAGE_KEYS = ("T", "n_steps", "dim", "enter", "enter_lam", "mesh") + tuple(STAGE_OPTIONS)
# [[stages]] mesh as an inline table: kind = "interval" or "grid" and the arguments of
# pmp.meshes.interval or pmp.meshes.grid, or (no kind) the keys of pmp.meshes.Mesh.to_dict
MESH_KINDS = {"interval": ("n", "a", "b", "rule"), "grid": ("shape", "extent", "rule")}
MESH_DICT_KEYS = ("axes", "weights", "bounds", "rule")
# every key of the three forms, described (the [[stages]] table's mesh row is made of these)
MESH_NOTES = (
    ('``kind = "interval"`` (:func:`pmp.meshes.interval`)', {
        "n": "the number of nodes (required)",
        "a": "``b``, the interval (default 0.0 and 1.0)",
        "rule": '``"trapezoid"`` (default: the nodes include the ends) or ``"midpoint"`` '
                "(the cell centres)"}),
    ('``kind = "grid"`` (:func:`pmp.meshes.grid`, nodes row by row as an image\'s pixels)', {
        "shape": "``[n0, n1]``, nodes per axis (required)",
        "extent": "``[[a0, b0], [a1, b1]]``, the rectangle (default the unit square)",
        "rule": '``"midpoint"`` (default: the pixel centres, weighted by the pixel area) or '
                '``"trapezoid"`` (the corners)'}),
    ("Without ``kind`` (what :meth:`pmp.meshes.Mesh.to_dict` gives, any mesh exactly)", {
        "axes": "one increasing list of nodes per axis (required; one axis: an interval, "
                "two: a rectangle)",
        "weights": "one list of quadrature weights per axis (default trapezoidal)",
        "bounds": "one ``[a, b]`` per axis (default the first and last nodes)",
        "rule": "the quadrature's name, shown by the mesh"}),
)
_DESCRIBED = {k for _, keys in MESH_NOTES for k in keys} | {"b", "kind"}
assert _DESCRIBED == {"kind", *MESH_DICT_KEYS, *(k for v in MESH_KINDS.values() for k in v)}, \
    "every mesh key needs a description in MESH_NOTES"
# how a [[stages]] key is written in TOML, where it differs from pmp.Stage's argument (the
# documentation's table of the keys reads these; the others are described by pmp.Stage and
# pmp.Problem)
STAGE_NOTES = {
    "T": ("[model] T", "Duration of the stage, > 0; the stages follow one another, so the "
          "horizon is the sum of their ``T``."),
    "n_steps": ("[model] n_steps", "Euler steps of the stage, >= 1."),
    "dim": ("the previous stage's", "State dimension of the stage (the first stage's "
            "default is that of the data, after ``[data] lift``)."),
    "enter": ("none", 'The transition into this stage (not on the first): ``"lift"`` (zero '
              'padding), ``"project"`` (the first coordinates), ``"interpolate"`` (between the '
              '``mesh`` of the two stages), ``"trainable"`` (a matrix trained with the '
              'controls), or a fixed matrix of shape ``(dim, previous dim)`` as a list of '
              'rows, ``[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]``. Left out: the state goes on '
              'unchanged (same dimension).'),
    "mesh": ("none", "The mesh of the stage's coordinates (:mod:`pmp.meshes`), needed by "
             '``enter = "interpolate"`` and by a field on a mesh (``field = "integral"``); '
             "the stage's ``dim`` defaults to its number of nodes. Either the increasing "
             "nodes of an interval, a list of numbers (trapezoidal weights: "
             "``mesh = [0.0, 0.5, 1.0]``), or an inline table of one of three forms. "
             + " ".join(f"{title}: " + "; ".join(f"``{k}``, {text}" for k, text in keys.items())
                        + "." for title, keys in MESH_NOTES)
             + ' Example: ``mesh = { kind = "grid", shape = [8, 8] }``, the pixel centres '
               "of an 8 x 8 image."),
}

# the built-in demo of `pmp train` (also runs/demo.toml in a clone of the repository)
DEMO_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.toml")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


def _nearest(key, valid):
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(valid)}"


def _data_keys():
    keys = {"name", "path", "lift"}
    for name in datasets.NAMES:
        keys |= set(inspect.signature(getattr(datasets, name)).parameters)
    return tuple(sorted(keys))


@dataclass
class RunConfig:
    """A validated run configuration: dict of sections, each a dict of keys.

    Build one with :func:`load_config`, :func:`parse_config` or :meth:`from_objects`.
    """

    sections: dict = field(default_factory=dict)
    source: str = "<string>"

    # --------------------------------------------------------------------- access
    def __getitem__(self, section):
        return self.sections.setdefault(section, {})

    @property
    def stages(self):
        """The ``[[stages]]`` tables (a list of dicts; empty for a problem without stages)."""
        return self.sections.get(STAGES) or []

    @property
    def method(self):
        return self["train"].get("method", "gd")

    @property
    def train_options(self):
        """Keyword arguments of :func:`pmp.iterate` (without checkpoint_every)."""
        return {k: v for k, v in self["train"].items()
                if k not in ("method", "checkpoint_every", "threads")}

    @property
    def threads(self):
        """[train] threads: BLAS threads of the run (None: pmp's default)."""
        return self["train"].get("threads")

    @property
    def checkpoint_every(self):
        return self["train"].get("checkpoint_every", 100)

    def to_toml(self):
        """The configuration as TOML text (None values are left out)."""
        clean = {s: {k: v for k, v in self.sections.get(s, {}).items() if v is not None}
                 for s in SECTIONS if self.sections.get(s)}
        if not self.stages:
            return tomli_w.dumps(clean)
        before = {s: v for s, v in clean.items() if s in ("data", "model", "objective")}
        after = {s: v for s, v in clean.items() if s not in before}
        return "\n\n".join(part for part in (tomli_w.dumps(before).rstrip("\n"),
                                            _stage_tables(self.stages),
                                            tomli_w.dumps(after).rstrip("\n")) if part) + "\n"

    # ------------------------------------------------------------------ validation
    def check_keys(self):
        """Unknown sections or keys raise :class:`ConfigError` with the nearest valid key."""
        for section in self.sections:
            if section not in SECTIONS + (STAGES,):
                raise ConfigError(f"unknown section [{section}] in {self.source}"
                                  f"{_nearest(section, SECTIONS + (STAGES,))}")
        allowed = {"data": _data_keys(), "model": MODEL_KEYS, "objective": OBJECTIVE_KEYS,
                   "output": OUTPUT_KEYS}
        method = self.method
        if not isinstance(method, str) or method not in METHODS:
            make_method(method, {})  # raises with the list of methods
        allowed["train"] = TRAIN_KEYS + method_options(METHODS[method])
        _check_stage_tables(self.sections.get(STAGES), self.source)
        for section, keys in self.sections.items():
            if section == STAGES:
                continue
            for key in keys:
                if key not in allowed[section]:
                    raise ConfigError(f"unknown key '{section}.{key}' in {self.source}"
                                      f"{_nearest(key, allowed[section])}")
        data = self["data"]
        if ("name" in data) == ("path" in data):
            raise ConfigError(f"[data] needs exactly one of 'name' (one of "
                              f"{', '.join(datasets.NAMES)}) or 'path', in {self.source}")
        return self

    # -------------------------------------------------------------------- building
    def load_data(self):
        """(x, y) from [data]: a pmp.datasets generator or a file."""
        data = dict(self["data"])
        if "path" in data:
            path = data.pop("path")
            lift = data.pop("lift", None)
            if data:
                raise ConfigError(f"[data] with 'path' takes only 'lift', got "
                                  f"{', '.join(sorted(data))}")
            x, y = read_arrays(path)
            return x, y, lift
        name = data.pop("name")
        if name == "digits":
            lift = data.pop("lift", None)
            x, y = datasets.digits(**data)
            return x, y, lift
        return (*datasets.load(name, **data), None)

    def build_problem(self, data=None):
        """The :class:`~pmp.Problem` of [data], [model] and [objective]; ``data``, ``(x, y)``
        with x already lifted (a run's ``data.h5``), replaces reading [data]."""
        if data is None:
            x, y, lift = self.load_data()
        else:
            (x, y), lift = data, None
        kwargs = dict(self["model"])
        kwargs.update(self["objective"])
        if isinstance(kwargs.get("projection"), list):
            kwargs["projection"] = np.asarray(kwargs["projection"], dtype=float)
        if self.stages:
            kwargs["stages"] = [_stage(j, table) for j, table in enumerate(self.stages)]
        return Problem(x, y, lift=lift, **kwargs)

    def validate(self, data=None):
        """Check every section (keys and values, with the API's own errors) without training
        or writing anything; returns the problem (see :meth:`build_problem`)."""
        self.check_keys()
        problem = self.build_problem(data)
        check_options(problem, self.method, **self.train_options)
        train, output = self["train"], self["output"]
        if train.get("threads") is not None:
            integer(train["threads"], "train.threads", low=1)
        integer(train.get("checkpoint_every", 100), "train.checkpoint_every", low=1)
        if output.get("trajectory_samples") is not None:
            integer(output["trajectory_samples"], "output.trajectory_samples", low=1)
        for key in ("dir", "name"):
            if key in output and not isinstance(output[key], str):
                raise ConfigError(f"output.{key} must be a string, got "
                                  f"{type(output[key]).__name__} {output[key]!r}")
        return problem

    def with_overrides(self, assignments):
        """A copy with ``section.key=value`` assignments applied (values parsed as TOML,
        falling back to a string)."""
        sections = {s: [dict(t) for t in v] if s == STAGES and isinstance(v, list) else dict(v)
                    for s, v in self.sections.items()}
        for item in assignments:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(f"--set expects section.key=value, got {item!r}")
            target, text = item.split("=", 1)
            section, key = target.strip().split(".", 1)
            if section == STAGES:
                _set_stage_key(sections.get(STAGES), key, parse_value(text), self.source)
                continue
            sections.setdefault(section, {})[key] = parse_value(text)
        return RunConfig(sections, self.source).check_keys()

    @classmethod
    def from_objects(cls, problem, method, data=None, output=None, **train):
        """The configuration of ``problem`` trained by ``method`` with ``train`` options.

        ``data`` is the [data] section (how x and y were made; the arrays themselves are
        not part of a configuration)."""
        if is_staged(problem):
            return cls(_staged_sections(problem, method, data, output, train)).check_keys()
        cfg = problem.config()
        model = {k: cfg[k] for k in MODEL_KEYS if cfg.get(k) is not None}
        objective = {k: cfg[k] for k in OBJECTIVE_KEYS if cfg.get(k) is not None}
        data = dict(data or {})
        if cfg.get("lift") is not None:
            data.setdefault("lift", cfg["lift"])
        sections = dict(data=data, model=model, objective=objective,
                        train=dict(method=getattr(method, "name", method), **train),
                        output=dict(output or {}))
        return cls(sections).check_keys()


def parse_value(text):
    """A TOML value from a command-line string; bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_config(text, source="<string>"):
    """A :class:`RunConfig` from TOML text."""
    try:
        sections = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source} is not valid TOML: {err}") from None
    for name, value in sections.items():
        if not isinstance(value, dict) and name != STAGES:
            raise ConfigError(f"{source}: top-level key {name!r} must be a [section]")
    return RunConfig(sections, source).check_keys()


def load_config(path):
    """A :class:`RunConfig` from a TOML file."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    return parse_config(raw.decode("utf-8"), source=os.fspath(path))


def demo_config():
    """The built-in demo (:data:`DEMO_PATH`)."""
    with open(DEMO_PATH, encoding="utf-8") as f:
        return parse_config(f.read(), source="the built-in demo")


def read_arrays(path):
    """Arrays ``x`` and ``y`` from an .npz or HDF5 file (NaN and inf are refused by Problem)."""
    if not os.path.isfile(path):
        raise ConfigError(f"data file {path} does not exist")
    try:
        if path.endswith(".npz"):
            with np.load(path) as f:
                return f["x"], f["y"]
        with h5py.File(path, "r") as f:
            for name in ("x", "y"):
                if name in f and not isinstance(f[name], h5py.Dataset):
                    raise ConfigError(f"data file {path}: '{name}' must be an array (an HDF5 "
                                      f"dataset), got a {type(f[name]).__name__}")
            return f["x"][()], f["y"][()]
    except KeyError as err:
        raise ConfigError(f"data file {path} must hold arrays 'x' and 'y': {err}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read data file {path}: {err}") from None


# ------------------------------------------------------------------ [[stages]]
def _toml_value(value):
    """One TOML value; a matrix (list of lists) inline, one row after the other."""
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        return "[" + ", ".join(_toml_value(r) for r in value) + "]"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].strip()


def _stage_tables(stages):
    """The ``[[stages]]`` tables as TOML text (matrices and meshes on one line each)."""
    blocks = []
    for table in stages:
        lines = ["[[stages]]"]
        for key, value in table.items():
            if value is None:
                continue
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks).rstrip("\n")


def _check_stage_tables(stages, source):
    """``[[stages]]``: a non-empty array of tables whose keys are :data:`STAGE_KEYS`."""
    if stages is None:
        return
    if not isinstance(stages, list) or not stages or \
            not all(isinstance(t, dict) for t in stages):
        shown = type(stages).__name__ if not isinstance(stages, list) else \
            ("an empty array" if not stages else
             f"an array of {', '.join(sorted({type(t).__name__ for t in stages}))}")
        raise ConfigError(f"stages must be an array of tables, one [[stages]] table per stage, "
                          f"in {source}; got {shown}")
    for j, table in enumerate(stages):
        for key in table:
            if key not in STAGE_KEYS:
                raise ConfigError(f"unknown key 'stages[{j}].{key}' in {source}"
                                  f"{_nearest(key, STAGE_KEYS)}")


def _set_stage_key(stages, key, value, source):
    """``--set stages.J.KEY=VALUE`` (and a sweep's ``--grid stages.J.KEY=...``), in place."""
    index, _, name = key.partition(".")
    n = len(stages) if isinstance(stages, list) else 0
    if not index.isdigit() or not name:
        raise ConfigError(f"a stage key is stages.J.KEY (J the stage's index, from 0), got "
                          f"'stages.{key}'")
    if int(index) >= n:
        raise ConfigError(f"stages.{key}: {source} has {n} stage(s) ([[stages]] tables "
                          f"{'0..' + str(n - 1) if n else 'none'}), got index {index}")
    stages[int(index)][name] = value


def _matrix(value, name, dtype=float):
    """A list of rows as a 2-D array; a ragged or non-numeric list is an error naming ``name``."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2:
        raise ConfigError(f"{name} must be a matrix (a list of rows of equal length, of "
                          f"numbers), got {value!r}")
    return arr


def _stage(j, table):
    """The :class:`pmp.Stage` of the ``j``-th ``[[stages]]`` table (lists made arrays)."""
    kwargs = dict(table)
    enter = kwargs.get("enter")
    if isinstance(enter, list):
        kwargs["enter"] = _matrix(enter, f"stages[{j}].enter")
    elif enter is not None and not isinstance(enter, str):
        raise ConfigError(f"stages[{j}].enter must be one of \"lift\", \"project\", "
                          f"\"interpolate\", \"trainable\" or a matrix (a list of rows), got "
                          f"{type(enter).__name__} {enter!r}")
    if kwargs.get("mesh") is not None:
        kwargs["mesh"] = _mesh(j, kwargs["mesh"])
    if isinstance(kwargs.get("projection"), list):
        kwargs["projection"] = _matrix(kwargs["projection"], f"stages[{j}].projection")
    if isinstance(kwargs.get("frozen"), dict):
        kwargs["frozen"] = {n: np.asarray(m) if isinstance(m, list) else m
                            for n, m in kwargs["frozen"].items()}
    return Stage(**kwargs)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_MESH_FORMS = ('a list of the increasing nodes of an interval, or an inline table with '
               'kind = "interval" (n, a, b, rule), kind = "grid" (shape, extent, rule) or '
               'the keys of pmp.meshes.Mesh.to_dict (axes, weights, bounds, rule)')


def _mesh(j, value):
    """The mesh of ``stages[j].mesh``: a list of numbers (the nodes of an interval, as an
    array) or an inline table (:data:`MESH_KINDS`, :data:`MESH_DICT_KEYS`), as a
    :class:`pmp.meshes.Mesh`."""
    name = f"stages[{j}].mesh"
    if isinstance(value, list):
        if value and all(_is_number(v) for v in value):
            return np.asarray(value, dtype=float)
        got = "an empty list" if not value else f"a list that is not of numbers, {value!r}"
        raise ConfigError(f"{name} must be {_MESH_FORMS}; got {got}")
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be {_MESH_FORMS}; got {type(value).__name__} "
                          f"{value!r}")
    kind = value.get("kind")
    if kind is None:
        allowed = MESH_DICT_KEYS
        if "axes" not in value:
            raise ConfigError(f"{name} must have a key 'kind' (\"interval\" or \"grid\") or "
                              f"'axes' (the nodes of every axis); got the keys "
                              f"{', '.join(map(repr, value)) or 'none'}")
    elif not isinstance(kind, str) or kind not in MESH_KINDS:
        raise ConfigError(f"{name}.kind must be one of \"interval\", \"grid\" (or left out, "
                          f"with 'axes'), got {type(kind).__name__} {kind!r}")
    else:
        allowed = ("kind",) + MESH_KINDS[kind]
    for key in value:
        if key not in allowed:
            form = f'kind = "{kind}"' if kind else "a mesh table without kind"
            near = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.5)
            raise ConfigError(f"unknown key '{name}.{key}' for {form}; expected "
                              f"{', '.join(allowed)}"
                              + (f"; did you mean {near[0]!r}?" if near else ""))
    args = {k: v for k, v in value.items() if k != "kind"}
    required = {"interval": "n", "grid": "shape", None: "axes"}[kind]
    if required not in args:
        raise ConfigError(f"{name}.{required} is required with kind = \"{kind}\", got only "
                          f"{', '.join(args) or 'kind'}")
    rule = args.get("rule")
    if rule is not None and not isinstance(rule, str):
        raise ConfigError(f"{name}.rule must be a string (one of {', '.join(meshes.RULES)}), "
                          f"got {type(rule).__name__} {rule!r}")
    try:
        if kind == "interval":
            return meshes.interval(**args)
        if kind == "grid":
            return meshes.grid(**args)
        return meshes.from_dict(args)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}.{err}") from None


def _mesh_value(mesh, name):
    """A stage's mesh as a configuration holds it: a Mesh that :func:`pmp.meshes.interval`
    or :func:`pmp.meshes.grid` rebuilds bit for bit as ``kind = ...`` and their arguments
    (the defaults left out, the rule kept), an interval with the trapezoidal weights over
    its nodes as the list of nodes, any other Mesh as :meth:`Mesh.to_dict`; nodes as a
    list."""
    if not isinstance(mesh, meshes.Mesh):
        return _plain(mesh, name)
    short = None
    if mesh.rule in meshes.RULES:
        if mesh.ndim == 1:
            (a, b), = mesh.bounds
            short = dict(kind="interval", n=mesh.shape[0])
            if (a, b) != (0.0, 1.0):
                short.update(a=a, b=b)
            args = dict(n=mesh.shape[0], a=a, b=b, rule=mesh.rule)
            build = meshes.interval
        else:
            short = dict(kind="grid", shape=list(mesh.shape))
            if mesh.bounds != ((0.0, 1.0), (0.0, 1.0)):
                short.update(extent=[list(e) for e in mesh.bounds])
            args = dict(shape=mesh.shape, extent=mesh.bounds, rule=mesh.rule)
            build = meshes.grid
        short["rule"] = mesh.rule
        try:
            again = build(**args)
        except (TypeError, ValueError):
            again = None
        if again is None or not _same_mesh(again, mesh):
            short = None
    if short is None and mesh.ndim == 1 and _same_mesh(meshes.Mesh([mesh.axes[0]]), mesh):
        return mesh.axes[0].tolist()  # the nodes of an interval, trapezoidal weights
    return short if short is not None else mesh.to_dict()


def _same_mesh(a, b):
    """Two meshes alike bit for bit: nodes, weights, bounds and rule."""
    return a.shape == b.shape and a.bounds == b.bounds and a.rule == b.rule and \
        all(np.array_equal(p, q) for p, q in zip(a.axes + a.axis_weights,
                                                 b.axes + b.axis_weights))


def _plain(value, name):
    """``value`` as TOML can hold it (arrays as nested lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v, f"{name}[{k!r}]") for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str, list)):
        return value
    raise ConfigError(f"{name} is a {type(value).__name__}, which a configuration cannot hold "
                      f"(give it as numbers, strings or lists)")


def _staged_sections(problem, method, data, output, train):
    """The sections of a staged problem's configuration: [model] and [objective] from the
    keywords it was built with (the stages' defaults), one [[stages]] table per stage."""
    kwargs = problem.config()
    stages = kwargs.pop("stages")
    model = {k: _plain(kwargs[k], f"model.{k}") for k in MODEL_KEYS
             if kwargs.get(k) is not None}
    objective = {k: _plain(kwargs[k], f"objective.{k}") for k in OBJECTIVE_KEYS
                 if kwargs.get(k) is not None}
    tables = []
    for j, table in enumerate(stages):
        tables.append({k: (_mesh_value if k == "mesh" else _plain)(v, f"stages[{j}].{k}")
                       for k, v in table.items() if v is not None})
    data = dict(data or {})
    if kwargs.get("lift") is not None:
        data.setdefault("lift", kwargs["lift"])
    return dict(data=data, model=model, objective=objective, stages=tables,
                train=dict(method=getattr(method, "name", method), **train),
                output=dict(output or {}))
