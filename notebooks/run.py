"""Execute notebooks (as the tests do) and optionally save their figures.

    python notebooks/run.py                      # all, full size
    python notebooks/run.py 03 04 --quick        # PMP_QUICK=1 sizes
    python notebooks/run.py 03 --save-figures    # also write notebooks/figures/03_*.png

Notebooks save figures through ``pmp_figure(fig, name)`` when PMP_SAVE_FIGURES is set; the
executed copy, with its outputs and figures (matplotlib's inline backend), is written to
notebooks/executed/ (git-ignored; ``--out DIR`` for another folder), the source stays
stripped.

With ``--save-figures`` the notebook writes its figures to a scratch folder first; a figure
then replaces the one in notebooks/figures/ (``--figures DIR`` for another folder) only when
its pixels differ. A re-run that draws the same pixels leaves the tracked file untouched, so
git sees no change (PNG files also carry matplotlib's version in their metadata, and the
encoder's output is not promised to stay byte-identical across versions). The figures are
deterministic (two runs of notebooks 01 and 03-08 wrote byte-identical PNGs), except the three
with a wall-clock axis, 02_toy_training.png, 07_rates.png (training loss against seconds) and
09_digits_meshes.png (time per iteration): they differ from run to run and are rewritten
every time.
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile
import time

import nbclient
import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))


def same_pixels(a, b):
    """True when the images in files ``a`` and ``b`` have the same size and pixels."""
    import numpy as np
    from PIL import Image

    with Image.open(a) as image_a, Image.open(b) as image_b:
        if image_a.size != image_b.size:
            return False
        return np.array_equal(np.asarray(image_a.convert("RGBA")),
                              np.asarray(image_b.convert("RGBA")))


def update_figures(scratch, target):
    """Move the figures of ``scratch`` into ``target``, each only if it is new or its pixels
    changed. Returns the lists (written, unchanged) of file names."""
    written, unchanged = [], []
    for name in sorted(os.listdir(scratch)):
        new, old = os.path.join(scratch, name), os.path.join(target, name)
        if os.path.exists(old) and name.lower().endswith(".png") and same_pixels(new, old):
            unchanged.append(name)
            continue
        shutil.copyfile(new, old)
        written.append(name)
    return written, unchanged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes (default: all)")
    parser.add_argument("--quick", action="store_true", help="PMP_QUICK=1 (small sizes)")
    parser.add_argument("--save-figures", action="store_true")
    parser.add_argument("--figures", default=os.path.join(HERE, "figures"),
                        help="folder of the saved figures (default: notebooks/figures)")
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
        os.makedirs(args.figures, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="pmp-figures-") as scratch:
            if args.save_figures:
                os.environ["PMP_SAVE_FIGURES"] = scratch
            nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                                    resources={"metadata": {"path": HERE}}).execute()
            note = ""
            if args.save_figures:
                written, unchanged = update_figures(scratch, args.figures)
                note = (f"; figures written: {', '.join(written) or 'none'}"
                        + (f"; unchanged: {', '.join(unchanged)}" if unchanged else ""))
        nbformat.write(nb, os.path.join(args.out, os.path.basename(path)))
        print(f"{os.path.basename(path)}: {time.perf_counter() - start:.1f} s{note}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
