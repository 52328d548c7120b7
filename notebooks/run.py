"""Execute notebooks (as the tests do) and optionally save their figures.

    python notebooks/run.py                      # all, full size
    python notebooks/run.py 03 04 --quick        # PMP_QUICK=1 sizes
    python notebooks/run.py 03 --save-figures    # also write notebooks/figures/03_*.png

Notebooks save figures through ``pmp_figure(fig, name)`` when PMP_SAVE_FIGURES is set; the
executed copy, with its outputs and figures (matplotlib's inline backend), is written to
notebooks/executed/ (git-ignored; ``--out DIR`` for another folder), the source stays
stripped.
"""
import argparse
import glob
import os
import sys
import time

import nbclient
import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes (default: all)")
    parser.add_argument("--quick", action="store_true", help="PMP_QUICK=1 (small sizes)")
    parser.add_argument("--save-figures", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "executed"),
                        help="folder of the executed copies (default: notebooks/executed)")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(HERE, "*.ipynb")))
    if args.which:
        paths = [p for p in paths if os.path.basename(p).split("_")[0] in args.which]
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend keeps the figures
    os.environ["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + os.environ.get(
        "PYTHONPATH", "")
    if args.quick:
        os.environ["PMP_QUICK"] = "1"
    if args.save_figures:
        os.environ["PMP_SAVE_FIGURES"] = os.path.join(HERE, "figures")
        os.makedirs(os.environ["PMP_SAVE_FIGURES"], exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                                resources={"metadata": {"path": HERE}}).execute()
        nbformat.write(nb, os.path.join(args.out, os.path.basename(path)))
        print(f"{os.path.basename(path)}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
