"""Section ``iteration``: one training iteration of pmp against its peers and the flop floor.

Per workload W1-W3 and dtype float64 / float32: the median of pmp's iteration
(:func:`benchmarks.common.iteration`), of each available peer's step
(:mod:`benchmarks.peers`: the same cost, gradient and update in PyTorch, JAX, torchdiffeq)
and of a dense GEMM (the floor: the fastest of NumPy's BLAS, PyTorch's and the one of
pmp's kernels where that is another, MKL), all measured interleaved. Every peer's J and
gradient are checked against pmp first; in float64 a relative gradient error above
:data:`GRAD_TOLERANCE` marks the peer FAILED and it gets no ratio.
"""
import os

import numba
import numpy as np

import pmp
from pmp._kernels import blas
from benchmarks import peers
from benchmarks.common import (BYTE_MODEL, FLOP_MODEL, Gemm, PmpIteration, describe, flops,
                               interleaved_medians, log, number, seconds, table, target,
                               trajectory_bytes, workload)

NAME = "iteration"
WORKLOADS = ("W1", "W2", "W3")
DTYPES = ("float64", "float32")
GRAD_TOLERANCE = {"float64": 1e-10}  # float32: the errors are reported, not judged
PEER_LABELS = {"torch": "PyTorch", "jax": "JAX", "torchdiffeq": "torchdiffeq"}
# workload -> (what pmp's time is divided by, limit): a peer's name, "best" peer or "floor"
TARGETS = {"W1": (("best", 0.2),),
           "W2": (("best", 0.5), ("floor", 1.5)),
           "W3": (("best", 0.7), ("floor", 1.2))}


def check_peer(name, problem, controls, threads):
    """Build the peer ``name`` at ``controls`` and check it against pmp.

    Parameters
    ----------
    name : str
        One of :func:`benchmarks.peers.available_peers`.
    problem : pmp.Problem
    controls : dict
    threads : int

    Returns
    -------
    peer : benchmarks.peers.Peer
        Advanced by one step (the update check).
    row : dict
        ``peer, J_error, grad_error, update_error, compile_s, status`` ("ok" or "FAILED").
    """
    peer = peers.make_peer(name, problem, controls, threads=threads)
    errors = peers.check_gradient(peer, problem, controls)
    update = peers.check_step(peer, problem, controls)
    tolerance = GRAD_TOLERANCE.get(problem.dtype.name)
    failed = tolerance is not None and not errors["grad"] <= tolerance
    return peer, dict(peer=name, J_error=errors["J"], grad_error=errors["grad"],
                      update_error=update, compile_s=getattr(peer, "compile_seconds", None),
                      status="FAILED" if failed else "ok")


def measure(name, dtype, options):
    """pmp, the peers and the GEMM floor on one workload, interleaved.

    Parameters
    ----------
    name : str
        Workload, "W1", "W2" or "W3".
    dtype : {"float64", "float32"}
    options : benchmarks.common.Options

    Returns
    -------
    dict
        The workload's sizes, pmp's median, the GEMM rate, floor, bytes, bandwidth, the
        best peer, ``peers``: one row per peer (see :func:`check_peer`) with its median
        and ``pmp_over_peer`` (None when FAILED), and ``load``: the machine's 1-minute load
        average before and after.
    """
    load = os.getloadavg()[0]
    problem = workload(name, dtype)
    controls = pmp.init_controls(problem, scale=0.1)
    contestants = {"pmp": PmpIteration(problem, controls)}
    peer_rows = []
    for peer_name in peers.available_peers():
        peer, row = check_peer(peer_name, problem, controls, options.threads)
        log(NAME, f"{name} {dtype}: {peer_name} J error {row['J_error']:.1e}, gradient error "
                  f"{row['grad_error']:.1e}, update error {row['update_error']:.1e} "
                  f"({row['status']})")
        contestants[peer_name] = peer
        peer_rows.append(row)
    # the floor's GEMM: NumPy's BLAS, pmp's where it is another (MKL), and PyTorch's where
    # it is installed; the fastest counts
    gemms = {"gemm numpy": Gemm(problem.dtype)}
    if blas.backend() != "scipy":
        gemms["gemm pmp"] = Gemm(problem.dtype, library="pmp")
    if "torch" in peers.available_peers():
        gemms["gemm torch"] = Gemm(problem.dtype, library="torch")
    contestants.update(gemms)
    medians = interleaved_medians({n: c.step for n, c in contestants.items()}, options.repeat)
    pmp_s = medians["pmp"]
    for row in peer_rows:
        row["median_s"] = medians[row["peer"]]
        row["pmp_over_peer"] = pmp_s / row["median_s"] if row["status"] == "ok" else None
    valid = [row for row in peer_rows if row["status"] == "ok"]
    best = min(valid, key=lambda row: row["median_s"]) if valid else None
    rates = {gemm.library: gemm.flops / medians[key] for key, gemm in gemms.items()}
    gemm_library = max(rates, key=rates.get)
    rate = rates[gemm_library]
    floor = flops(problem) / rate
    traffic = 2 * trajectory_bytes(problem)
    result = dict(workload=name, **describe(problem), pmp_s=pmp_s, gflop=flops(problem) / 1e9,
                  gemm_gflops=rate / 1e9, gemm_library=gemm_library,
                  gemm_gflops_by_library={k: v / 1e9 for k, v in rates.items()}, floor_s=floor, pmp_over_floor=pmp_s / floor,
                  trajectory_bytes=trajectory_bytes(problem), bandwidth_gbs=traffic / pmp_s / 1e9,
                  best_peer=best and best["peer"], best_peer_s=best and best["median_s"],
                  pmp_over_best=best and pmp_s / best["median_s"], peers=peer_rows,
                  load=dict(start=load, end=os.getloadavg()[0]))
    log(NAME, f"{name} {dtype}: pmp {seconds(pmp_s)}, " + ", ".join(
        f"{r['peer']} {seconds(r['median_s'])}" for r in peer_rows)
        + f", floor {seconds(floor)} (pmp x{pmp_s / floor:.2f})")
    return result


PROFILED = ("W2", "W3")  # float64, one thread: where the floor ratios are missed


@numba.njit
def _products(activation, costate, W, ss, out, grad):
    """The products of :class:`_Parts`, called from compiled code as in the sweeps (a call
    from Python costs tens of microseconds more than the product on W2)."""
    for k in range(W.shape[0]):
        blas.matmul(activation, W[k].T, out)
    for k in range(W.shape[0] - 1, -1, -1):
        blas.matmul(costate, W[k], out)
        blas.matmul(costate.T, ss[k], grad)


class _Parts:
    """The parts of one iteration of the "outer" field, each alone, at the workload's
    shapes and over its K steps (one thread): the three products per step in the BLAS of
    pmp's kernels, with their operands where the sweeps have them (forward
    ``sigma(X_k) W_k^T`` and costate ``p W_k`` on a block's arrays, which stay in cache from
    one step to the next; gradient ``p^T sigma(X_k)`` with ``sigma(X_k)`` read back from the
    trajectory-sized store the forward sweep wrote), and the activation (pmp's tanh kernel
    on every ``X_k``, written to that store)."""

    def __init__(self, problem):
        from pmp._kernels import activations, codes

        rng = np.random.default_rng(0)
        K, n, d = problem.n_steps, problem.n_samples, problem.dim
        dtype = problem.dtype
        self.xs = rng.standard_normal((K + 1, n, d)).astype(dtype)
        self.ss = np.tanh(self.xs[:K])
        self.W = (0.1 * rng.standard_normal((K, d, d))).astype(dtype)
        self.block = [rng.standard_normal((n, d)).astype(dtype) for _ in range(2)]
        self.out, self.grad = np.empty((n, d), dtype), np.empty((d, d), dtype)
        self._activate, self._tanh = activations.activate, codes.TANH

    def products(self):
        _products(*self.block, self.W, self.ss, self.out, self.grad)

    def activation(self):
        for k in range(self.W.shape[0]):
            self._activate(self._tanh, 0.0, self.xs[k], self.ss[k])


def profile(name, options):
    """One thread: pmp's iteration on workload ``name`` (float64) against its products and
    its activation measured alone at the same shapes, interleaved (see :class:`_Parts`).

    Returns
    -------
    dict
        ``workload``, ``iteration_s``, ``products_s``, ``activation_s``, ``rest_s`` (the
        iteration minus both: the elementwise passes, the readout, Python), the products'
        ``products_gflops`` and the ``gemm_gflops`` of the 1024 x 1024 GEMM, one thread, both
        in the BLAS of pmp's kernels.
    """
    problem = workload(name)
    parts, gemm = _Parts(problem), Gemm(problem.dtype, library="pmp")
    with pmp.threads(1):
        it = PmpIteration(problem, pmp.init_controls(problem, scale=0.1))
        medians = interleaved_medians({"iteration": it.step, "products": parts.products,
                                       "activation": parts.activation, "gemm": gemm.step},
                                      max(3, options.repeat // 4))
    rest = medians["iteration"] - medians["products"] - medians["activation"]
    row = dict(workload=name, iteration_s=medians["iteration"], products_s=medians["products"],
               activation_s=medians["activation"], rest_s=rest,
               products_gflops=flops(problem) / medians["products"] / 1e9,
               gemm_gflops=gemm.flops / medians["gemm"] / 1e9)
    log(NAME, f"{name} float64, one thread: iteration {seconds(row['iteration_s'])}, products "
              f"{seconds(row['products_s'])}, tanh {seconds(row['activation_s'])}")
    return row


def targets_of(row):
    """The targets of the issue for one workload row."""
    label = f"{row['workload']} {row['dtype']}: pmp / "
    by_peer = {r["peer"]: r for r in row["peers"]}
    out = []
    for versus, limit in TARGETS[row["workload"]]:
        if versus == "floor":
            out.append(target(NAME, label + "GEMM floor", row["pmp_over_floor"], limit))
        elif versus == "best":
            note = "" if row["best_peer"] else "no peer passed the gradient check"
            out.append(target(NAME, label + "best peer", row["pmp_over_best"], limit,
                              note=note or f"best: {PEER_LABELS[row['best_peer']]}"))
        else:
            peer = by_peer.get(versus)
            note = ("not installed" if peer is None else
                    "FAILED the gradient check" if peer["status"] != "ok" else "")
            out.append(target(NAME, label + PEER_LABELS[versus],
                              peer and peer["pmp_over_peer"], limit, note=note))
    return out


def run(options):
    """The section (see :mod:`benchmarks.run`): ``rows`` (one per workload and dtype, see
    :func:`measure`), ``peers_available``, ``flop_model``, ``byte_model``, ``targets``."""
    log(NAME, f"peers available: {', '.join(peers.available_peers()) or 'none'}")
    rows = [measure(name, dtype, options) for dtype in DTYPES for name in WORKLOADS]
    profiles = [profile(name, options) for name in PROFILED]
    return dict(rows=rows, profiles=profiles, peers_available=peers.available_peers(),
                flop_model=FLOP_MODEL, byte_model=BYTE_MODEL, grad_tolerance=GRAD_TOLERANCE,
                targets=[t for row in rows for t in targets_of(row)])


def markdown(result):
    """The section's report: pmp against the floor, then the peers."""
    lines = ["Median time of one iteration (forward + costates + gradient + GD update); pmp, "
             "the peers and the GEMM of the floor are measured interleaved in this run.", "",
             "* Flop model: " + result["flop_model"],
             "* Byte model: " + result["byte_model"], ""]
    lines += table(
        ["workload", "dtype", "N x d x K", "pmp", "best peer", "pmp / best", "GFLOP",
         "GEMM GFLOP/s (BLAS)", "floor", "pmp / floor", "states + costates", "implied GB/s",
         "load avg."],
        [[r["workload"], r["dtype"], f"{r['n_samples']} x {r['dim']} x {r['n_steps']}",
          seconds(r["pmp_s"]),
          "-" if r["best_peer"] is None else
          f"{PEER_LABELS[r['best_peer']]} {seconds(r['best_peer_s'])}",
          number(r["pmp_over_best"], ".2f", "x"), number(r["gflop"]),
          ", ".join(f"{v:.1f} ({k})" for k, v in r.get(
              "gemm_gflops_by_library", {"numpy": r["gemm_gflops"]}).items()),
          seconds(r["floor_s"]),
          number(r["pmp_over_floor"], ".2f", "x"),
          number(r["trajectory_bytes"] / 1e6, ".1f", " MB"), number(r["bandwidth_gbs"], ".2f"),
          f"{r['load']['start']:.1f} - {r['load']['end']:.1f}"]
         for r in result["rows"]])
    if result.get("profiles"):
        lines += ["", "Where W2's and W3's time goes (float64, one thread, interleaved): pmp's "
                      "iteration against its three products per step alone (the BLAS of "
                      "pmp's kernels, operands in cache or from memory as in the sweeps) and "
                      "its tanh alone; the rest is the elementwise passes, the readout and "
                      "Python.", ""]
        lines += table(
            ["workload", "iteration", "products", "tanh", "rest", "products GFLOP/s",
             "1024 GEMM GFLOP/s"],
            [[p["workload"], seconds(p["iteration_s"]),
              f"{seconds(p['products_s'])} ({p['products_s'] / p['iteration_s']:.0%})",
              f"{seconds(p['activation_s'])} ({p['activation_s'] / p['iteration_s']:.0%})",
              f"{seconds(p['rest_s'])} ({p['rest_s'] / p['iteration_s']:.0%})",
              number(p["products_gflops"], ".1f"), number(p["gemm_gflops"], ".1f")]
             for p in result["profiles"]])
    lines += ["", f"Peers (gradient checked against pmp's; float64 must agree to "
                  f"{GRAD_TOLERANCE['float64']:g} relative, else FAILED and no ratio):", ""]
    lines += table(
        ["workload", "dtype", "peer", "median / step", "pmp / peer", "J rel. error",
         "gradient rel. error", "update rel. error", "compile", "status"],
        [[r["workload"], r["dtype"], PEER_LABELS[p["peer"]], seconds(p["median_s"]),
          number(p["pmp_over_peer"], ".3g", "x"), number(p["J_error"], ".1e"),
          number(p["grad_error"], ".1e"), number(p["update_error"], ".1e"),
          seconds(p["compile_s"]), p["status"]]
         for r in result["rows"] for p in r["peers"]])
    return lines
