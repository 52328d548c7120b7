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

import h5py
import numpy as np
import tomli_w

from .. import datasets
from ..problem import Problem
from ..trainer import check_options
from .._validation import integer
from ..methods import METHODS, make_method, method_options

SECTIONS = ("data", "model", "objective", "train", "output")
MODEL_KEYS = ("field", "activation", "T", "n_steps", "width", "projection", "slope",
              "features", "bandwidth", "seed", "dtype")
OBJECTIVE_KEYS = ("loss", "p", "reg", "lam", "lam1", "bound", "running", "terminal",
                  "n_classes")
TRAIN_KEYS = ("method", "max_iter", "seed", "gtol", "time_limit", "batch_size", "init",
              "init_scale", "segment", "threads", "checkpoint_every", "keep_best")
OUTPUT_KEYS = ("dir", "name", "trajectory_samples")

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
        return tomli_w.dumps(clean)

    # ------------------------------------------------------------------ validation
    def check_keys(self):
        """Unknown sections or keys raise :class:`ConfigError` with the nearest valid key."""
        for section in self.sections:
            if section not in SECTIONS:
                raise ConfigError(f"unknown section [{section}] in {self.source}"
                                  f"{_nearest(section, SECTIONS)}")
        allowed = {"data": _data_keys(), "model": MODEL_KEYS, "objective": OBJECTIVE_KEYS,
                   "output": OUTPUT_KEYS}
        method = self.method
        if not isinstance(method, str) or method not in METHODS:
            make_method(method, {})  # raises with the list of methods
        allowed["train"] = TRAIN_KEYS + method_options(METHODS[method])
        for section, keys in self.sections.items():
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
        sections = {s: dict(v) for s, v in self.sections.items()}
        for item in assignments:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(f"--set expects section.key=value, got {item!r}")
            target, text = item.split("=", 1)
            section, key = target.strip().split(".", 1)
            sections.setdefault(section, {})[key] = parse_value(text)
        return RunConfig(sections, self.source).check_keys()

    @classmethod
    def from_objects(cls, problem, method, data=None, output=None, **train):
        """The configuration of ``problem`` trained by ``method`` with ``train`` options.

        ``data`` is the [data] section (how x and y were made; the arrays themselves are
        not part of a configuration)."""
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
        if not isinstance(value, dict):
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
