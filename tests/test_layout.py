"""The package's structure: layers that only import downwards, no name lookups of fields or
methods outside their registries, short functions, and an import without side effects."""
import ast
import os
import pathlib
import subprocess
import sys

import pytest

import pmp

PACKAGE = pathlib.Path(pmp.__file__).parent
# the data flow, bottom up: a module may import from its own layer or below only
LAYERS = [
    ("pmp._validation", "pmp._controls", "pmp._version", "pmp._kernels"),
    ("pmp.activations", "pmp.objectives", "pmp.datasets", "pmp.threads", "pmp.meshes"),
    ("pmp.fields",),
    ("pmp.problem", "pmp._staged"),
    ("pmp.sweeps",),
    ("pmp.stages",),
    ("pmp.maximize",),
    ("pmp.methods",),
    ("pmp.trainer",),
    ("pmp.batch.config", "pmp.batch.lock"),
    ("pmp.batch.store",),
    ("pmp.analysis",),
    ("pmp.plots",),
    ("pmp.batch.runner",),
    ("pmp.batch.grid",),
    ("pmp.batch.cli", "pmp.batch"),
    ("pmp",),
    ("pmp.__main__",),
]


def modules():
    """(dotted name, path, syntax tree) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text())


def layer(name):
    """Index of the layer of a module (its longest listed prefix)."""
    best = None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if (name == prefix or name.startswith(prefix + ".")) and \
                    (best is None or len(prefix) > len(best[1])):
                best = (i, prefix)
    assert best is not None, f"{name} is in no layer of LAYERS"
    return best[0]


def imported(name, path, tree):
    """The pmp modules a module imports (anywhere in it, functions included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("pmp"):
                for alias in node.names:  # "from . import fields" imports the module fields
                    sub = f"{target}.{alias.name}"
                    yield sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() \
                        or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else target
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("pmp"))


@pytest.mark.parametrize("name,path,tree", list(modules()), ids=lambda v: str(v)[:40])
def test_no_module_imports_upwards(name, path, tree):
    own = layer(name)
    upward = sorted({m for m in imported(name, path, tree) if layer(m) > own})
    assert not upward, f"{name} (layer {own}) imports {upward} from above"


def _names_compared(tree):
    """String constants that a comparison or a membership test checks against."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                items = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) \
                    else [operand]
                yield from (i.value for i in items
                            if isinstance(i, ast.Constant) and isinstance(i.value, str))


@pytest.mark.parametrize("kind", ["field", "method"])
def test_no_comparison_with_a_field_or_method_name_outside_its_registry(kind):
    """The rest of the code asks a field or a method what it supports, never its name."""
    names = set(pmp.fields.field_names() if kind == "field" else pmp.methods.method_names())
    home = {"field": {"pmp/fields.py"}, "method": {"pmp/methods/__init__.py"}}[kind]
    found = []
    for _, path, tree in modules():
        where = path.relative_to(PACKAGE.parent).as_posix()
        if where not in home:
            found += [f"{where}: {value!r}" for value in _names_compared(tree) if value in names]
    assert not found, found


def test_functions_fit_on_a_screen():
    """No function longer than 60 lines (numba kernels: 80), docstrings included."""
    long = []
    for _, path, tree in modules():
        limit = 80 if "_kernels" in path.parts else 60
        long += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} "
                 f"({node.end_lineno - node.lineno + 1} lines)"
                 for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.end_lineno - node.lineno + 1 > limit]
    assert not long, long


def test_import_has_no_side_effects():
    """Importing pmp leaves BLAS's thread count alone and does not read PMP_THREADS; pmp
    applies its thread settings when it first needs them (the first sweep)."""
    code = """
import numpy, threadpoolctl
def blas():
    return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "blas"}
before = blas()
assert max(before.values()) > 1, before
import pmp
after = blas()
assert all(after[path] == n for path, n in before.items()), (before, after)
print(pmp.get_threads(), max(blas().values()))
"""
    env = dict(os.environ, PMP_THREADS="1")
    env.pop("OPENBLAS_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, cwd=PACKAGE.parent)
    if "max(before.values()) > 1" in out.stderr:
        pytest.skip("BLAS runs one thread on this machine: nothing to observe")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]  # applied at first use
    env["PMP_THREADS"] = "two"
    out = subprocess.run([sys.executable, "-c", "import pmp; pmp.get_threads()"], env=env,
                         capture_output=True, text=True, cwd=PACKAGE.parent)
    assert "PMP_THREADS must be an int >= 1, got 'two'" in out.stderr
    assert "in get_threads" in out.stderr  # raised at first use, not by the import


def test_every_module_is_installed():
    """``pip install .`` installs the packages setuptools finds: every folder of modules
    must be one (an ``__init__.py``), or its modules are missing outside the clone."""
    setuptools = pytest.importorskip("setuptools")
    found = set(setuptools.find_packages(str(PACKAGE.parent), include=["pmp", "pmp.*"]))
    folders = {".".join(path.parent.relative_to(PACKAGE.parent).parts)
               for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    assert folders <= found, sorted(folders - found)
