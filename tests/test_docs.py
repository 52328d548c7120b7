"""The documentation site: it builds with warnings as errors (the notebooks not executed, to
keep the suite's time), the API pages of the main names and the command-line page exist, and
no internal link is broken. The site is built once for the module (about a minute)."""
import os
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("numpydoc")
pytest.importorskip("pydata_sphinx_theme")
pytest.importorskip("sphinxarg")
pytest.importorskip("sphinx_design")
pytest.importorskip("sphinx-mathjax-offline")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site into a temporary directory; returns the HTML directory."""
    base = tmp_path_factory.mktemp("docs")
    html, doctrees = base / "html", base / "doctrees"
    env = dict(os.environ, PMP_DOCS_EXECUTE="0", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
                          "-d", str(doctrees), DOCS, str(html)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"sphinx-build failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    return html


class _Page(HTMLParser):
    """The ids and the link targets of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.data = set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") == "preconnect"):
                self.links.append(attrs[key])

    def handle_data(self, data):
        self.data.append(data)

    @property
    def text(self):
        """The page's text, whitespace collapsed."""
        return " ".join("".join(self.data).split())


def _parse(path):
    page = _Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def _pages(site):
    """The pages of the site (not the theme's templates under _static)."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(site) for f in files
                  if f.endswith(".html") and "_static" not in os.path.relpath(d, site).split(os.sep))


API_PAGES = {
    "pmp.Problem": "reference/generated/pmp.Problem.html",
    "pmp.train": "reference/generated/pmp.train.html",
    "pmp.iterate": "reference/generated/pmp.iterate.html",
    "pmp.TrainResult": "reference/generated/pmp.TrainResult.html",
    "pmp.value_and_grad": "reference/generated/pmp.value_and_grad.html",
    "pmp.load_run": "reference/generated/pmp.load_run.html",
    "pmp.batch.store.Run": "reference/generated/pmp.batch.store.Run.html",
    "pmp.analysis.fit_rate": "reference/generated/pmp.analysis.fit_rate.html",
    "pmp.plots.animate": "reference/generated/pmp.plots.animate.html",
    "pmp.fields.Outer": "reference/generated/pmp.fields.Outer.html",
    "pmp.fields.register_field": "reference/generated/pmp.fields.register_field.html",
    "pmp.methods.EMSA": "reference/generated/pmp.methods.EMSA.html",
    "pmp.maximize.Maximizer": "reference/generated/pmp.maximize.Maximizer.html",
    "pmp.datasets.rings": "reference/generated/pmp.datasets.rings.html",
}


@pytest.mark.parametrize("name", sorted(API_PAGES))
def test_api_page_documents_the_name(site, name):
    path = site / API_PAGES[name]
    assert path.exists(), f"no API page for {name}"
    page = _parse(path)
    assert name in page.ids, f"{path.name} does not document {name} (ids: {sorted(page.ids)[:20]})"


def test_guide_reference_and_notebook_pages_exist(site):
    pages = ["index", "theory", "results", "performance", "benchmarks", "changelog",
             "notebooks", "reference/run-files", "reference/config", "reference/cli"]
    pages += [f"guide/{name}" for name in ("first-steps", "methods", "batch", "h5py",
                                           "analysis", "threads", "extending", "stages")]
    notebooks = ["notebooks/" + os.path.basename(p)[:-len(".ipynb")]
                 for p in sorted(os.listdir(os.path.join(ROOT, "notebooks")))
                 if p.endswith(".ipynb")]
    missing = [p for p in pages + notebooks if not (site / f"{p}.html").exists()]
    assert not missing
    assert len(notebooks) >= 8  # every notebook of the folder has its page


def test_cli_page_lists_every_subcommand(site):
    from pmp.batch.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and a.dest == "command").choices
    page = _parse(site / "reference" / "cli.html")
    text = page.text
    for command in commands:
        assert f"pmp-{command}" in page.ids, f"no section for `pmp {command}`"
        assert f"pmp {command} [-h]" in text, f"the CLI page shows no usage of `pmp {command}`"
    for option in ("--grid", "--max-iter", "--animate", "--overwrite"):
        assert option in text


def test_config_page_lists_every_key(site):
    from pmp.batch import config

    text = (site / "reference" / "config.html").read_text(encoding="utf-8")
    for key in config.MODEL_KEYS + config.OBJECTIVE_KEYS + config.TRAIN_KEYS + \
            config.OUTPUT_KEYS + ("rho", "momentum", "levels"):
        assert f'<span class="pre">{key}</span>' in text, key


def test_no_internal_link_is_broken(site):
    pages = {os.path.realpath(p): _parse(p) for p in _pages(site)}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue
            target = os.path.realpath(os.path.join(os.path.dirname(path), unquote(parts.path))) \
                if parts.path else path
            if not os.path.exists(target):
                broken.append(f"{os.path.relpath(path, site)}: {link} (no such file)")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.endswith(".html") and fragment not in pages[target].ids:
                broken.append(f"{os.path.relpath(path, site)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken[:50])
