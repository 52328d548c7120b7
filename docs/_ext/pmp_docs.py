"""Pages of pmp's site generated from the code.

``.. pmp-config-keys:: SECTION`` (reStructuredText; in a MyST page inside ``{eval-rst}``)
renders the table of the keys of one section of a run configuration, read from
:mod:`pmp.batch.config` (the key lists ``MODEL_KEYS``, ``OBJECTIVE_KEYS``, ``TRAIN_KEYS``,
``OUTPUT_KEYS``, ``STAGE_KEYS``, the data sets of :mod:`pmp.datasets` and the options of
every registered method), with the defaults from the signatures and the descriptions from the numpydoc
``Parameters`` of the functions that take them (``pmp.Problem``, ``pmp.iterate``, the data set
functions, the method classes). The few keys that only the batch runner reads, and method
options whose class documents none, are described in ``_NOTES`` below; a key described
nowhere fails the build, so the tables follow the code.

``benchmarks.md`` ends with the dated results of every machine that ``benchmarks/run.py``
recorded in ``benchmarks/history/`` (the ``% pmp-benchmark-results`` line).
"""
import inspect
import os
import re
import sys

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList
from numpydoc.docscrape import NumpyDocString
from sphinx.errors import ExtensionError

import pmp
from pmp import datasets
from pmp.batch import config as config_module
from pmp.maximize import Maximizer
from pmp.methods import METHODS, Method, method_options

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARK_MARKER = "% pmp-benchmark-results"

_EMPTY = inspect.Parameter.empty

# Keys that no docstring's Parameters describe: read by the batch runner or the methods.
_NOTES = {
    ("data", "name"): ("-", "A data set of :mod:`pmp.datasets`: one of "
                       + ", ".join(f"``{n}``" for n in datasets.NAMES)
                       + "; the other keys of the section are its keyword arguments. "
                       "Exactly one of ``name`` and ``path``."),
    ("data", "path"): ("-", "An ``.npz`` or HDF5 file holding the arrays ``x`` and ``y`` "
                       "(:func:`pmp.batch.config.read_arrays`); only ``lift`` may be given "
                       "with it. Relative to the working directory of the command."),
    ("data", "lift"): ("-", "Pad the inputs with zero columns up to this dimension (for a "
                       "data set, its ``lift`` argument; for a file, :class:`pmp.Problem`'s)."),
    ("train", "method"): ('"gd"', "The training method, one of "
                          + ", ".join(f'``"{n}"``' for n in METHODS)
                          + "; its options are the keys of the next table."),
    ("train", "threads"): ("pmp's default", "Threads of the run (pmp's kernels and BLAS; "
                           "``PMP_THREADS`` or the available cores when absent). A sweep "
                           "runs every point with one thread."),
    ("train", "checkpoint_every"): ("100", "Iterations between checkpoints (iteration 0 "
                                    "and the last one are always written)."),
    ("output", "dir"): ('"runs"', "Directory under which the run directory ``dir/name`` is "
                        "made (and a sweep's ``dir/<config>-sweep``); ``pmp train --out DIR`` "
                        "replaces both."),
    ("output", "name"): ('"run"', "Name of the run directory inside ``dir``; a plain name "
                         "that stays inside it. A directory that already holds a run is "
                         "refused (``--overwrite`` replaces it); only the built-in demo "
                         "(``pmp train`` with no configuration) moves on to ``demo-2``, "
                         "``demo-3``, ..."),
    ("output", "trajectory_samples"): ("all samples", "Store the states and costates of the "
                                       "first this many samples only in each checkpoint "
                                       "(``n_stored`` in the run files)."),
    # method options of classes without a Parameters section
    ("gd", "lr"): (None, "Step size of ``u <- u - lr g`` (``g`` the Riesz gradient), > 0."),
    ("heavy_ball", "lr"): (None, "Step size, > 0."),
    ("heavy_ball", "momentum"): (None, "Momentum in [0, 1]: ``u <- u - lr g + momentum "
                                 "(u - u_prev)``."),
    ("adam", "lr"): (None, "Step size, > 0."),
    ("adam", "beta1"): (None, "Decay of the moving average of the gradient, in [0, 1]."),
    ("adam", "beta2"): (None, "Decay of the moving average of the squared gradient, in "
                        "[0, 1]."),
    ("adam", "eps"): (None, "Added to the root of the second moment, > 0."),
    ("lbfgs", "memory"): (None, "Number of stored correction pairs, >= 1."),
    ("lbfgs", "c1"): (None, "Sufficient-decrease constant of the strong-Wolfe line search, "
                      "in (0, 1]."),
    ("lbfgs", "c2"): (None, "Curvature constant of the strong-Wolfe line search, in "
                      "[c1, 1]."),
    ("lbfgs", "max_line_search"): (None, "Largest number of line-search evaluations per "
                                   "iteration, >= 1."),
    ("proximal", "lr"): (None, "Fixed step (needed for mini-batches); ``None``: the step "
                         "``1 / L`` is found by backtracking."),
    ("proximal", "lipschitz"): (None, "Initial estimate of the Lipschitz constant ``L`` "
                                "of the backtracking."),
    ("proximal", "restart"): (None, "Adaptive restart: a step that raises the cost is "
                              "rejected and the momentum dropped."),
}


def _params(obj):
    """name -> description (one line of text) from obj's numpydoc Parameters."""
    doc = inspect.getdoc(obj) or ""
    out = {}
    for param in NumpyDocString(doc)["Parameters"]:
        text = " ".join(" ".join(param.desc).split())
        if not text and param.type.startswith("{"):  # `loss : {"squared", "lp", ...}`
            text = f"One of ``{param.type}``."
        for name in param.name.replace("*", "").split(","):
            if name.strip():
                out[name.strip()] = text
    return out


def _signature_defaults(func):
    return {name: p.default for name, p in inspect.signature(func).parameters.items()
            if p.default is not _EMPTY}


def _literal(value):
    if value is _EMPTY:
        return "-"
    if value is None:
        return "None"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _is_reference(text):
    """A description that only points elsewhere ("As :class:`MSA`.", "Options of ...")."""
    return not text or re.match(r"^(As |Options of )", text) is not None


def _describe(key, sources):
    """The first real description of ``key`` in the Parameters of ``sources``."""
    for source in sources:
        text = _params(source).get(key, "")
        if not _is_reference(text):
            return text
    return ""


def _cell(text):
    """One line of a list-table cell."""
    text = text.replace("\n", " ")
    return "\\-" if text in ("", "-") else text  # a bare "-" would be a bullet list


def _table(header, rows, widths):
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header] + rows:
        lines.append(f"   * - {_cell(row[0])}")
        lines += [f"     - {_cell(cell)}" for cell in row[1:]]
    return lines + [""]


def _note(section, key):
    if (section, key) not in _NOTES:
        raise ExtensionError(f"pmp-config-keys: no description of [{section}] {key}: add one "
                             f"to a docstring's Parameters or to docs/_ext/pmp_docs.py")
    return _NOTES[(section, key)]


def _data_rows():
    rows = []
    for key in ("name", "path", "lift"):
        default, text = _note("data", key)
        rows.append([f"``{key}``", default, "all", text])
    functions = [getattr(datasets, name) for name in datasets.NAMES]
    keys = []
    for func in functions:
        keys += [k for k in inspect.signature(func).parameters if k not in keys]
    for key in keys:
        if key == "lift":
            continue
        takers = [f for f in functions if key in inspect.signature(f).parameters]
        defaults = {_literal(_signature_defaults(f).get(key, _EMPTY)) for f in takers}
        text = _describe(key, takers)
        if not text:
            raise ExtensionError(f"pmp-config-keys: no description of [data] {key}")
        rows.append([f"``{key}``", ", ".join(sorted(defaults)),
                     ", ".join(f":func:`~pmp.datasets.{f.__name__}`" for f in takers), text])
    return _table(["key", "default", "data sets", "meaning"], rows, "14 12 24 50")


def _problem_rows(keys):
    defaults = _signature_defaults(pmp.Problem.__init__)
    rows = []
    for key in keys:
        text = _describe(key, [pmp.Problem])
        if not text:
            raise ExtensionError(f"pmp-config-keys: pmp.Problem does not describe {key}")
        rows.append([f"``{key}``", _literal(defaults.get(key, _EMPTY)), text])
    return _table(["key", "default", "meaning (:class:`pmp.Problem`)"], rows, "14 14 72")


def _train_rows():
    defaults = _signature_defaults(pmp.iterate)
    rows = []
    for key in config_module.TRAIN_KEYS:
        if (("train", key)) in _NOTES:
            default, text = _NOTES[("train", key)]
        else:
            default, text = _literal(defaults.get(key, _EMPTY)), _describe(key, [pmp.iterate])
            if not text:
                raise ExtensionError(f"pmp-config-keys: pmp.iterate does not describe {key}")
        rows.append([f"``{key}``", default, text])
    return _table(["key", "default", "meaning"], rows, "16 14 70")


def _method_rows():
    rows = []
    for name, cls in METHODS.items():
        defaults = _signature_defaults(cls.__init__)
        sources = [c for c in cls.__mro__ if issubclass(c, Method)] + [Maximizer]
        for key in method_options(cls):
            noted = [_NOTES[(c.name, key)][1] for c in sources[:-1]
                     if (getattr(c, "name", None), key) in _NOTES]
            text = noted[0] if noted else _describe(key, sources)
            if not text:
                raise ExtensionError(f"pmp-config-keys: no description of the option {key} "
                                     f"of method {name!r}")
            rows.append([f'``"{name}"``', f"``{key}``", _literal(defaults.get(key, _EMPTY)),
                         text])
    return _table(["method", "key", "default", "meaning"], rows, "14 16 12 58")


def _stage_rows():
    """``[[stages]]``: the notes of :data:`pmp.batch.config.STAGE_NOTES`, :class:`pmp.Stage`'s
    Parameters, and :class:`pmp.Problem`'s for the per-stage options (their default: the
    value of ``[model]`` or ``[objective]``)."""
    rows = []
    for key in config_module.STAGE_KEYS:
        if key in config_module.STAGE_NOTES:
            default, text = config_module.STAGE_NOTES[key]
        else:
            text = _describe(key, [pmp.Stage, pmp.Problem])
            section = "[objective]" if key in config_module.OBJECTIVE_KEYS else \
                "[model]" if key in config_module.MODEL_KEYS else None
            default = "the stage's ``lam``" if key == "enter_lam" else \
                f"{section} {key}" if section else "none"
        if not text:
            raise ExtensionError(f"pmp-config-keys: no description of [[stages]] {key}: add "
                                 f"one to pmp.Stage's or pmp.Problem's Parameters or to "
                                 f"pmp.batch.config.STAGE_NOTES")
        rows.append([f"``{key}``", default, text])
    return _table(["key", "default", "meaning"], rows, "14 18 68")


def _output_rows():
    rows = []
    for key in config_module.OUTPUT_KEYS:
        default, text = _note("output", key)
        rows.append([f"``{key}``", default, text])
    return _table(["key", "default", "meaning"], rows, "20 14 66")


class ConfigKeys(Directive):
    """The table of one configuration section (data, model, objective, train, methods,
    output)."""

    required_arguments = 1
    option_spec = {}

    def run(self):
        section = self.arguments[0]
        documented = ("data", "model", "objective", "train", "output")
        if tuple(config_module.SECTIONS) != documented:
            raise ExtensionError(f"pmp-config-keys: pmp.batch.config.SECTIONS is "
                                 f"{config_module.SECTIONS}, the page documents {documented}")
        makers = {"data": _data_rows,
                  "model": lambda: _problem_rows(config_module.MODEL_KEYS),
                  "objective": lambda: _problem_rows(config_module.OBJECTIVE_KEYS),
                  "train": _train_rows, "methods": _method_rows, "output": _output_rows,
                  "stages": _stage_rows}
        if section not in makers:
            raise self.error(f"unknown section {section!r}; one of {', '.join(makers)}")
        container = nodes.container()
        self.state.nested_parse(StringList(makers[section](), source="pmp.batch.config"), 0,
                                container)
        return container.children


def _benchmark_results(app, docname, source):
    """Append the results of every machine (benchmarks/history/, :mod:`benchmarks.history`)
    to benchmarks.md."""
    if docname != "benchmarks" or BENCHMARK_MARKER not in source[0]:
        return
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from benchmarks import history

    for runs in history.load().values():
        for path, _ in runs:
            app.env.note_dependency(path + ".md")
    lines = history.markdown(include_from=os.path.join(ROOT, "docs"))
    source[0] = source[0].replace(BENCHMARK_MARKER, "\n".join(lines) + "\n")


def _class_signature(app, what, name, obj, options, signature, return_annotation):
    """A class whose ``__new__`` takes ``(*args, **kwargs)`` (``pmp.Problem``) shows the
    signature of its ``__init__``, the one its users call."""
    if what == "class" and "__new__" in vars(obj) and "__init__" in vars(obj):
        init = inspect.signature(obj.__init__)
        parameters = list(init.parameters.values())[1:]
        return str(init.replace(parameters=parameters, return_annotation=_EMPTY)), None
    return None


def setup(app):
    directives.register_directive("pmp-config-keys", ConfigKeys)
    app.connect("autodoc-process-signature", _class_signature)
    app.connect("source-read", _benchmark_results)
    # read the benchmark page at every build: a run may have been recorded since the last one
    app.connect("env-get-outdated", lambda app, env, added, changed, removed: ["benchmarks"])
    return {"parallel_read_safe": True, "parallel_write_safe": True}
