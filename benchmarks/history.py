"""The dated results of every machine the suite has run on.

``benchmarks/run.py`` records each run in ``benchmarks/history/<machine>/<date>-<kind>.json``
(the results) and ``.md`` (the report), where ``<machine>`` names the CPU
(:func:`benchmarks.common.machine_key`) and ``<kind>`` is ``quick`` or ``full``. The files are
kept in the repository, so a regression on any machine shows as a change along its row of
:func:`markdown`'s tables, which the documentation's benchmarks page renders.
"""
import json
import os

from benchmarks.common import measured, table

HISTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "history")
SHOWN_RUNS = 6  # the latest runs of a machine in its table


def run_path(results, root=HISTORY):
    """The path, without extension, of the record of ``results``: one per run, fixed when
    the run starts (its ``settings.started``, ``YYYY-MM-DD HH:MM:SS ...``)."""
    settings = results["settings"]
    stamp = settings["started"][:16].replace(" ", "_").replace(":", "")
    kind = "quick" if settings["quick"] else "full"
    return os.path.join(root, results["machine"]["key"], f"{stamp}-{kind}")


def record(results, report, root=HISTORY):
    """Write ``results`` (dict) and its ``report`` (Markdown text) into the history; returns
    the two paths. Called after every section, so the record of a run grows with it."""
    path = run_path(results, root)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".json", "w") as f:
        json.dump(results, f, indent=1)
    with open(path + ".md", "w") as f:
        f.write(report)
    return path + ".json", path + ".md"


def load(root=HISTORY):
    """``{machine: [(path without extension, results), ...]}``, each machine's runs oldest
    first; unreadable files are skipped."""
    machines = {}
    if not os.path.isdir(root):
        return machines
    for machine in sorted(os.listdir(root)):
        folder = os.path.join(root, machine)
        runs = []
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name.endswith(".json"):
                try:
                    with open(os.path.join(folder, name)) as f:
                        runs.append((os.path.join(folder, name[:-5]), json.load(f)))
                except (OSError, ValueError):
                    continue
        if runs:
            machines[machine] = runs
    return machines


def _cell(target):
    return f"{measured(target)} {target['status']}"


def machine_markdown(runs, shown=SHOWN_RUNS):
    """One machine's table: a row per target (its limit, then its value and PASS / MISS in
    each of the latest ``shown`` runs, oldest first), from ``runs`` as :func:`load` gives."""
    runs = runs[-shown:]
    columns, rows = [], {}
    for number, (_, results) in enumerate(runs):
        settings = results["settings"]
        columns.append(f"{settings['started'][:16]} ({'quick' if settings['quick'] else 'full'})")
        for t in results["targets"]:
            key = (t["section"], t["target"])
            row = rows.setdefault(key, [t["section"], t["target"], f"{t['op']} {t['limit']:g}"]
                                  + ["-"] * len(runs))
            row[3 + number] = _cell(t)
    return table(["section", "target", "limit"] + columns, list(rows.values()))


def markdown(root=HISTORY, include_from=None, shown=SHOWN_RUNS):
    """The lines of the results-by-machine page: for each machine, its CPU and BLAS, the
    table of :func:`machine_markdown` and, if ``include_from`` (the folder of the page) is
    given, a MyST ``include`` of its latest report."""
    machines = load(root)
    if not machines:
        return ["No run is recorded yet: `python3 benchmarks/run.py` records one in "
                "`benchmarks/history/`."]
    lines = []
    for machine, runs in machines.items():
        path, latest = runs[-1]
        info = latest["machine"]
        blas = "; ".join(f"{b['internal_api']} {b['version']}"
                         + (f" ({b['architecture']})" if b.get("architecture") else "")
                         for b in info["blas"]) or "unknown"
        if "kernels_blas" in info:
            blas += f"; pmp's kernels use {info['kernels_blas']['name']}"
        lines += [f"### {machine}", "",
                  f"{info['cpu']}, {info['cores_available']} cores; BLAS: {blas}. "
                  f"{len(runs)} recorded run{'s' if len(runs) > 1 else ''}; the table shows "
                  f"the latest {min(len(runs), shown)}.", ""]
        lines += machine_markdown(runs, shown) + [""]
        if include_from is not None:
            relative = os.path.relpath(path + ".md", include_from).replace(os.sep, "/")
            lines += [f"The latest report, of {latest['settings']['started'][:16]}:", "",
                      f"```{{include}} {relative}", ":heading-offset: 3", "```", ""]
    return lines
