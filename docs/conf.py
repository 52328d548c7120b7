"""Sphinx configuration of pmp's documentation site.

Build it from the repository's root::

    python3 -m pip install ".[docs]" && python3 -m sphinx -W -b html docs docs/_build/html

The notebooks (``docs/notebooks`` is a link to ``notebooks/``, which stores them without
outputs) are executed while the site is built; ``PMP_DOCS_EXECUTE`` chooses how:

* ``quick`` (the default): executed with ``PMP_QUICK=1``, the notebooks' small sizes (about a
  minute each);
* ``full``: executed at full size (the sizes of docs/results.md; much longer);
* ``0``: not executed (the pages show the code without outputs; the tests build this way).

Executed notebooks are cached in ``docs/_build/.jupyter_cache/<mode>`` and executed again only
when they change.
"""
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(DOCS, "_ext"))

import pmp  # noqa: E402

# -- project ----------------------------------------------------------------------------------
project = "pmp"
author = "the pmp developers"
copyright = "2026, the pmp developers"
version = release = pmp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site itself: it renders offline
    "numpydoc",
    "myst_nb",
    "sphinxarg.ext",
    "sphinx_design",
    "pmp_docs",  # docs/_ext/pmp_docs.py: the configuration-key tables, the benchmark page
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "notebooks/executed"]
templates_path = ["_templates"]
# no intersphinx: the site builds offline
nitpicky = False
highlight_language = "none"  # unlabelled blocks (formulas, usage lines) are plain text

# -- MyST and notebooks -----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # `page.md#a-heading` links, as on GitHub
myst_dmath_double_inline = True  # `$$...$$` inside a paragraph, as Jupyter renders it

_EXECUTE = os.environ.get("PMP_DOCS_EXECUTE", "quick").strip().lower()
if _EXECUTE not in ("0", "quick", "full"):
    raise ValueError(f"PMP_DOCS_EXECUTE must be 0, quick or full, got {_EXECUTE!r}")
if _EXECUTE == "0":
    nb_execution_mode = "off"
else:
    nb_execution_mode = "cache"
    nb_execution_cache_path = os.path.join(DOCS, "_build", ".jupyter_cache", _EXECUTE)
    if _EXECUTE == "quick":
        os.environ["PMP_QUICK"] = "1"  # inherited by the notebooks' kernels
    else:
        os.environ.pop("PMP_QUICK", None)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend keeps the figures
    os.environ.pop("PMP_SAVE_FIGURES", None)  # the site does not rewrite notebooks/figures
    os.environ["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
nb_execution_timeout = 1800  # seconds per cell (full size)
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference ----------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
# a subclass without a docstring of its own shows none, not its base class's contract
autodoc_inherit_docstrings = False
numpydoc_show_class_members = False  # the class template lists the members with autodoc
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
numpydoc_xref_param_type = False

# -- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"pmp {release}"
html_static_path = ["_static"]
html_css_files = ["pmp.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
html_sidebars = {"index": [], "benchmarks": [], "theory": [], "results": [],
                 "performance": []}
