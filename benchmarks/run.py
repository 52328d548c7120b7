"""Run pmp's benchmark suite and write benchmarks/results/results.json and results.md.

    python benchmarks/run.py [--quick] [--only SECTIONS] [--repeat N] [--out DIR]

Sections (in this order; ``--only iteration,msa`` runs a subset):

1. ``iteration``: one training iteration of pmp against PyTorch / JAX / torchdiffeq peers
   and the GEMM flop floor, W1-W3 in float64 and float32 (bench_iteration.py).
2. ``msa``: one adaptive E-MSA iteration against one GD iteration, W1 and W2 (bench_msa.py).
3. ``startup``: ``pmp train`` on the demo to its first iteration, cold and warm numba cache
   (bench_startup.py).
4. ``scaling``: time against N and against K (line fits), and 1 against 2 threads
   (bench_scaling.py).
5. ``memory``: peak RSS of one iteration against states + costates + controls, with and
   without checkpointing (bench_memory.py).
6. ``target``: wall-clock time to a target loss of pmp's E-MSA, L-BFGS and Adam against
   PyTorch's Adam, over 5 seeds of the initial controls, on Li et al.'s toy, the digits and
   the rings demo (bench_target.py; 30-60 minutes, about 5 with ``--quick``).

Each section module has ``NAME``, ``run(options)`` (``options``: a
:class:`benchmarks.common.Options`), returning a JSON-able dict with at least ``targets``
(see :func:`benchmarks.common.target`), and ``markdown(result)``, returning the lines of its
report.

pmp, BLAS and the peers use 2 threads. Whatever is compared is measured interleaved within
one run: the machine may be shared and noisy, so compare ratios within a run, not times
across runs. ``--quick`` takes 3 repeats instead of 20 and skips the cold start-up (a few
minutes; ``target`` runs 2 seeds for at most 10 s each); the full run takes about 6 minutes
on 2 cores, plus 30-60 minutes for ``target``. The results files are rewritten
after every section, so an interrupted run keeps what it measured.

Every run is also recorded, dated, in ``benchmarks/history/<machine>/`` (``--no-record`` to
skip): the documentation's benchmarks page shows each machine's latest runs side by side
(:mod:`benchmarks.history`), so a regression on any machine is visible.
"""
import argparse
import importlib
import json
import os
import platform
import sys
import time
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pmp  # noqa: E402
from benchmarks import history  # noqa: E402
from benchmarks.common import Options, cpu_model, machine_key, measured, table  # noqa: E402

SECTIONS = ("iteration", "msa", "startup", "scaling", "memory", "target")
TITLES = {"iteration": "Iteration: pmp, its peers and the flop floor",
          "msa": "E-MSA against GD",
          "startup": "Start-up of `pmp train`",
          "scaling": "Scaling in N, K and threads",
          "memory": "Memory",
          "target": "Time to target: pmp's methods and PyTorch's Adam"}
# settings that change what the kernels and BLAS run (OPENBLAS_CORETYPE picks OpenBLAS's
# kernels: an earlier development machine, an AVX-512 CPU, set it to Haswell, whose GEMM ran
# at about 60% of the rate of the SkylakeX kernels OpenBLAS detects there without it)
ENVIRONMENT = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PMP_THREADS",
               "PMP_BLAS",
               "NUMBA_NUM_THREADS", "NUMBA_CPU_NAME")
PACKAGES = ("numpy", "numba", "llvmlite", "scipy", "threadpoolctl", "torch", "jax", "jaxlib",
            "torchdiffeq")


def machine():
    """The machine, the versions and the BLAS libraries loaded in this process."""
    from threadpoolctl import threadpool_info

    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    blas = [dict(internal_api=lib.get("internal_api"), version=lib.get("version"),
                 architecture=lib.get("architecture"), threading_layer=lib.get("threading_layer"),
                 filepath=lib.get("filepath"))
            for lib in threadpool_info() if lib.get("user_api") == "blas"]
    from pmp._kernels import blas as kernels_blas

    return dict(cpu=cpu_model(), key=machine_key(), cores_available=pmp.available_cores(),
                kernels_blas=kernels_blas.describe(),
                cpu_count=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version(), pmp=pmp.__version__, versions=versions,
                blas=blas, environment={name: os.environ[name] for name in ENVIRONMENT
                                        if name in os.environ})


def machine_markdown(info, load):
    """The machine table."""
    rows = [["CPU", info["cpu"]],
            ["cores available", f"{info['cores_available']} (of {info['cpu_count']})"],
            ["load average (1 min) at start / end",
             f"{load['start'][0]:.2f} / {load['end'][0]:.2f}"],
            ["platform", info["platform"]],
            ["Python", info["python"]], ["pmp", info["pmp"]]]
    rows += [[package, version or "not installed"]
             for package, version in info["versions"].items()]
    if "kernels_blas" in info:  # recorded since pmp could choose it
        kernels = info["kernels_blas"]
        rows += [["BLAS of pmp's kernels", f"{kernels['name']}: {kernels['version']} "
                                           f"(`{kernels['path']}`)"]]
    rows += [["BLAS", f"{lib['internal_api']} {lib['version']} ("
                      + ", ".join(str(v) for v in (lib["architecture"], lib["threading_layer"])
                                  if v) + f"): `{lib['filepath']}`"] for lib in info["blas"]]
    rows += [["environment", ", ".join(f"{k}={v}" for k, v in
                                        info.get("environment", {}).items()) or "-"]]
    return table(["", ""], rows)


def targets_markdown(targets):
    """One line per target."""
    return table(["section", "target", "measured", "limit", "result", "note"],
                 [[t["section"], t["target"], measured(t), f"{t['op']} {t['limit']:g}",
                   f"**{t['status']}**", t["note"]] for t in targets])


def report(results):
    """results.md from the results."""
    settings = results["settings"]
    targets = results["targets"]
    counts = {s: sum(t["status"] == s for t in targets) for s in ("PASS", "MISS", "n/a")}
    lines = ["# pmp benchmark results", "",
             f"`{settings['command']}` on {settings['started']}: "
             f"{'quick' if settings['quick'] else 'full'} run, {settings['repeat']} timed "
             f"repeats per median, {settings['threads']} threads (pmp, BLAS, the peers), "
             f"{settings['duration_s'] / 60:.1f} min. Everything compared is measured "
             f"interleaved in this run; the machine may be shared and noisy, so compare "
             f"ratios within a run rather than times across runs.", "",
             f"## Targets: {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['n/a']} n/a",
             ""]
    lines += targets_markdown(targets)
    lines += ["", "## Machine", ""] + machine_markdown(results["machine"], results["load"])
    for number, name in enumerate(SECTIONS, 1):
        if name in results["sections"]:
            section = results["sections"][name]
            lines += ["", f"## {number}. {TITLES[name]} (`{name}`, "
                          f"{section['duration_s']:.0f} s)", ""]
            lines += importlib.import_module(f"benchmarks.bench_{name}").markdown(section)
    return "\n".join(lines) + "\n"


def write(results, directory):
    """Write results.json and results.md into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(directory, "results.md"), "w") as f:
        f.write(report(results))


def parse_sections(text):
    """The sections of ``--only`` (comma-separated), in the suite's order."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(f"unknown sections {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv=None):
    """Run the selected sections (command line ``argv``), writing the results after each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 repeats, no cold start-up: a few minutes")
    parser.add_argument("--only", type=parse_sections, default=list(SECTIONS),
                        metavar="SECTIONS", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--repeat", type=_positive, help="timed repeats per median (default 20, "
                                                   "3 with --quick)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="directory of results.json and results.md")
    parser.add_argument("--no-record", dest="record", action="store_false",
                        help="do not record the run in benchmarks/history/<machine>/ (the "
                             "dated results of every machine, kept in the repository)")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, repeat=args.repeat or (3 if args.quick else 20))
    pmp.set_threads(options.threads)
    start = time.perf_counter()
    results = dict(
        settings=dict(command=" ".join(["python benchmarks/run.py"] + (argv or sys.argv[1:])),
                      started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), quick=options.quick,
                      repeat=options.repeat, threads=options.threads, sections=args.only,
                      duration_s=0.0),
        load=dict(start=os.getloadavg(), end=os.getloadavg()), machine=machine(), sections={},
        targets=[])
    for name in args.only:
        print(f"== {name}", flush=True)
        section_start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        section = module.run(options)
        section["duration_s"] = time.perf_counter() - section_start
        results["sections"][name] = section
        results["targets"] += section["targets"]
        results["settings"]["duration_s"] = time.perf_counter() - start
        results["load"]["end"] = os.getloadavg()
        results["machine"] = machine()  # the BLAS libraries the section loaded too
        write(results, args.out)
        if args.record:
            recorded = history.record(results, report(results))
    print(report(results))
    print(f"written: {os.path.join(args.out, 'results.json')} and results.md")
    if args.record:
        print(f"recorded: {recorded[0]} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
