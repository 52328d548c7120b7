"""Peer implementations of one training iteration, for comparison with pmp.

Each peer computes pmp's exact discrete cost (docs/theory.md section 2) for the field "outer",
``X_{k+1} = X_k + h (sigma(X_k) W_k^T + 1 b_k^T)``, ``k = 0..K-1``, ``h = T / K``::

    J(u) = terminal * Phi(X_K) + h lam sum_k (|W_k|_F^2 + |b_k|^2)

with ``Phi(X) = (1/N) sum_i l(P x_i, y_i)``: squared ``l(z, y) = |z - y|^2 / 2`` or
cross-entropy ``l(z, y) = log sum_j exp(z_j) - z_y`` (integer label ``y``), and takes its
gradient by reverse-mode automatic differentiation. One iteration (:meth:`step`) is, as
:func:`benchmarks.common.iteration`: forward sweep over all samples and steps,
backward sweep, gradient of every control, and the gradient-descent update
``u <- u - (lr / h) dJ/du`` (a step ``lr`` in the Riesz gradient); the controls stay inside
the framework between iterations.

Peers (each one optional: :func:`available_peers` lists those whose frameworks import):

* ``"torch"``: PyTorch eager autograd, a Python loop over the steps.
* ``"jax"``: ``jax.jit(jax.value_and_grad(cost))`` with ``jax.lax.scan`` over the steps and
  the update inside the same compiled function (control buffers donated). Compile time is
  excluded from :meth:`step` and stored in ``compile_seconds``. ``jax_enable_x64`` is turned
  on (process-wide) for float64 problems. XLA's CPU thread pool uses every core; it has no
  per-call thread setting.
* ``"torchdiffeq"``: ``torchdiffeq.odeint(func, x0, t, method="euler")`` on pmp's grid
  ``t_k = k h`` with the piecewise-constant control ``u(t) = u_k``, ``k = round(t / h)``,
  backpropagating through the solver (not the adjoint method).

``python benchmarks/run.py --only iteration`` checks every available peer against
``pmp.value_and_grad`` on the workloads W1-W3 and times it next to pmp's iteration.
"""
import time

import numpy as np

import pmp
from benchmarks.common import iteration

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
try:
    import jax
    import jax.numpy as jnp
except ImportError:  # pragma: no cover
    jax = jnp = None
try:
    import torchdiffeq
except ImportError:  # pragma: no cover
    torchdiffeq = None

LOSSES = ("squared", "cross_entropy")
ACTIVATIONS = ("tanh", "relu", "identity")


def _check_supported(problem):
    """Raise NotImplementedError unless the peers compute exactly ``problem``'s cost."""
    unsupported = []
    if problem.field.name != "outer":
        unsupported.append(f"field {problem.field.name!r} (only 'outer')")
    if problem.activation.name not in ACTIVATIONS:
        unsupported.append(f"activation {problem.activation.name!r} (only {ACTIVATIONS})")
    if problem.loss not in LOSSES:
        unsupported.append(f"loss {problem.loss!r} (only {LOSSES})")
    if problem.reg.name != "l2":
        unsupported.append(f"regulariser {problem.reg.name!r} (only 'l2')")
    if problem.running != 0.0:
        unsupported.append("a running cost")
    if problem.trainable_readout:
        unsupported.append("a trainable readout")
    if problem.frozen:
        unsupported.append("frozen controls")
    if unsupported:
        raise NotImplementedError("the peers do not implement " + ", ".join(unsupported))


class Peer:
    """Base class: one framework's implementation of the cost, gradient and GD iteration.

    Parameters
    ----------
    problem : pmp.Problem
        Field "outer", activation tanh / relu / identity, loss "squared" or
        "cross_entropy", regulariser "l2", no running cost, fixed readout, nothing frozen.
    controls : dict
        Initial controls, ``{"W": (K, d, d), "b": (K, d)}`` NumPy arrays.
    lr : float
        Step in the Riesz gradient: the update is ``u <- u - (lr / h) dJ/du``.

    Attributes
    ----------
    name : str
        Name of the peer (a key of :data:`PEERS`).
    requires : tuple of str
        Modules the peer needs.
    """

    name = ""
    requires = ()

    def __init__(self, problem, controls, lr=1e-3):
        _check_supported(problem)
        self.problem = problem
        self.lr = float(lr)
        self.rate = self.lr / problem.h

    def value_and_grad(self, controls):
        """J and its gradient at ``controls`` (does not change the peer's controls).

        Parameters
        ----------
        controls : dict
            name -> NumPy array.

        Returns
        -------
        J : float
        grads : dict
            name -> ``dJ/du`` as a NumPy array of the problem's dtype.
        """
        raise NotImplementedError

    def step(self):
        """One iteration: J, its gradient and the GD update of the peer's controls.

        Blocks until the updated controls are computed.

        Returns
        -------
        float
            J at the controls before the update.
        """
        raise NotImplementedError

    def controls(self):
        """The peer's current controls as a dict of NumPy arrays."""
        raise NotImplementedError


# ------------------------------------------------------------------------------ PyTorch
def _torch_dtype(problem):
    return torch.float64 if problem.dtype == np.float64 else torch.float32


class TorchPeer(Peer):
    """PyTorch eager autograd with a Python loop over the steps.

    Parameters
    ----------
    problem, controls, lr
        See :class:`Peer`.
    threads : int
        Intra-op threads, ``torch.set_num_threads(threads)`` (process-wide).
    """

    name = "torch"
    requires = ("torch",)

    def __init__(self, problem, controls, lr=1e-3, threads=2):
        super().__init__(problem, controls, lr)
        torch.set_num_threads(int(threads))
        self.dtype = _torch_dtype(problem)
        self.x0 = self._tensor(problem.x)
        self.P = self._tensor(problem.P)
        if problem.loss == "cross_entropy":
            self.target = torch.as_tensor(problem.y_kernel[:, 0].astype(np.int64))
        else:
            self.target = self._tensor(problem.y_kernel)
        self.activation = {"tanh": torch.tanh, "relu": torch.relu,
                           "identity": lambda x: x}[problem.activation.name]
        self.W = self._tensor(controls["W"]).requires_grad_(True)
        self.b = self._tensor(controls["b"]).requires_grad_(True)

    def _tensor(self, array):
        return torch.tensor(np.asarray(array), dtype=self.dtype)

    def final_state(self, W, b):
        """``X_K`` from ``X_0`` by the explicit Euler sweep with controls ``W``, ``b``."""
        h, x = self.problem.h, self.x0
        for W_k, b_k in zip(W.unbind(0), b.unbind(0)):
            x = x + h * torch.addmm(b_k, self.activation(x), W_k.T)
        return x

    def parts(self, W, b):
        """``(Phi, J)`` as 0-d tensors: the loss of the final states and the cost."""
        problem = self.problem
        z = self.final_state(W, b) @ self.P.T
        if problem.loss == "cross_entropy":
            phi = torch.nn.functional.cross_entropy(z, self.target)
        else:
            phi = 0.5 * (z - self.target).square().sum(dim=1).mean()
        reg = problem.h * problem.lam * (W.square().sum() + b.square().sum())
        return phi, problem.terminal * phi + reg

    def cost(self, W, b):
        """J as a 0-d tensor."""
        return self.parts(W, b)[1]

    def _value_and_grad(self, W, b):
        J = self.cost(W, b)
        return J, torch.autograd.grad(J, (W, b))

    def value_and_grad(self, controls):
        W = self._tensor(controls["W"]).requires_grad_(True)
        b = self._tensor(controls["b"]).requires_grad_(True)
        J, (gW, gb) = self._value_and_grad(W, b)
        return J.item(), {"W": gW.numpy(), "b": gb.numpy()}

    def step(self):
        J, (gW, gb) = self._value_and_grad(self.W, self.b)
        with torch.no_grad():
            self.W.sub_(gW, alpha=self.rate)
            self.b.sub_(gb, alpha=self.rate)
        return J.item()

    def controls(self):
        return {"W": self.W.detach().numpy().copy(), "b": self.b.detach().numpy().copy()}


class _PiecewiseConstantField:
    """``f(t, x) = sigma(x) W_k^T + b_k`` with ``k = round(t / h)``: the vector field that
    ``odeint`` sees (Euler evaluates it at the grid points ``t_k`` only)."""

    def __init__(self, W, b, h, activation):
        self.W, self.b = W.unbind(0), b.unbind(0)
        self.h = h
        self.activation = activation

    def __call__(self, t, x):
        k = round(float(t) / self.h)
        return torch.addmm(self.b[k], self.activation(x), self.W[k].T)


class TorchdiffeqPeer(TorchPeer):
    """``torchdiffeq.odeint(..., method="euler")`` on pmp's grid, backpropagating through
    the solver. Parameters as :class:`TorchPeer`."""

    name = "torchdiffeq"
    requires = ("torch", "torchdiffeq")

    def __init__(self, problem, controls, lr=1e-3, threads=2):
        super().__init__(problem, controls, lr, threads)
        self.t = torch.tensor(problem.t, dtype=self.dtype)

    def final_state(self, W, b):
        field = _PiecewiseConstantField(W, b, self.problem.h, self.activation)
        return torchdiffeq.odeint(field, self.x0, self.t, method="euler")[-1]


# ---------------------------------------------------------------------------------- JAX
class JaxPeer(Peer):
    """``jax.jit`` of ``jax.value_and_grad`` of the cost, ``jax.lax.scan`` over the steps.

    Parameters
    ----------
    problem, controls, lr
        See :class:`Peer`.

    Attributes
    ----------
    compile_seconds : float
        Time to trace and compile the iteration (ahead of time, in the constructor).
    """

    name = "jax"
    requires = ("jax",)

    def __init__(self, problem, controls, lr=1e-3):
        super().__init__(problem, controls, lr)
        if problem.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        self.dtype = jnp.dtype(problem.dtype)
        if problem.loss == "cross_entropy":
            target = jnp.asarray(problem.y_kernel[:, 0].astype(np.int32))
        else:
            target = jnp.asarray(problem.y_kernel, dtype=self.dtype)
        self.data = (jnp.asarray(problem.x, dtype=self.dtype),
                     jnp.asarray(problem.P, dtype=self.dtype), target)
        self._controls = self._device(controls)
        self._value_and_grad = jax.jit(jax.value_and_grad(self.cost))
        start = time.perf_counter()
        self._iteration = (jax.jit(self._update, donate_argnums=0)
                           .lower(self._controls, self.data).compile())
        self.compile_seconds = time.perf_counter() - start

    def _device(self, controls):
        return {n: jnp.asarray(controls[n], dtype=self.dtype) for n in ("W", "b")}

    def cost(self, controls, data):
        """J (traceable); ``data = (x0, P, target)``."""
        problem = self.problem
        x0, P, target = data
        h = problem.h
        activation = {"tanh": jnp.tanh, "relu": jax.nn.relu,
                      "identity": lambda x: x}[problem.activation.name]

        def euler_step(x, u):
            W_k, b_k = u
            return x + h * (activation(x) @ W_k.T + b_k), None

        x_final, _ = jax.lax.scan(euler_step, x0, (controls["W"], controls["b"]))
        z = x_final @ P.T
        if problem.loss == "cross_entropy":
            picked = jnp.take_along_axis(z, target[:, None], axis=1)[:, 0]
            phi = jnp.mean(jax.nn.logsumexp(z, axis=1) - picked)
        else:
            phi = 0.5 * jnp.mean(jnp.sum(jnp.square(z - target), axis=1))
        reg = h * problem.lam * (jnp.sum(jnp.square(controls["W"]))
                                 + jnp.sum(jnp.square(controls["b"])))
        return problem.terminal * phi + reg

    def _update(self, controls, data):
        J, grads = jax.value_and_grad(self.cost)(controls, data)
        return J, {n: controls[n] - self.rate * grads[n] for n in controls}

    def value_and_grad(self, controls):
        J, grads = self._value_and_grad(self._device(controls), self.data)
        return float(J), {n: np.asarray(g) for n, g in grads.items()}

    def step(self):
        J, self._controls = self._iteration(self._controls, self.data)
        jax.block_until_ready(self._controls)
        return float(J)

    def controls(self):
        return {n: np.array(u) for n, u in self._controls.items()}


# ------------------------------------------------------------------------------ the API
PEERS = {cls.name: cls for cls in (TorchPeer, JaxPeer, TorchdiffeqPeer)}
_MODULES = {"torch": torch, "jax": jax, "torchdiffeq": torchdiffeq}


def available_peers():
    """Names of the peers whose frameworks import, in the order of :data:`PEERS`."""
    return [name for name, cls in PEERS.items()
            if all(_MODULES[module] is not None for module in cls.requires)]


def make_peer(name, problem, controls, lr=1e-3, threads=2):
    """The peer ``name`` on ``problem``, starting from ``controls``.

    Parameters
    ----------
    name : str
        One of :func:`available_peers`.
    problem : pmp.Problem
    controls : dict
        name -> NumPy array (copied into the framework).
    lr : float
        Step in the Riesz gradient, as :func:`benchmarks.common.iteration`.
    threads : int
        Intra-op threads of the PyTorch peers (ignored by JAX).

    Returns
    -------
    Peer
    """
    if name not in available_peers():
        raise ValueError(f"peer {name!r} is not available; available: "
                         f"{', '.join(available_peers()) or 'none'}")
    cls = PEERS[name]
    if issubclass(cls, TorchPeer):
        return cls(problem, controls, lr=lr, threads=threads)
    return cls(problem, controls, lr=lr)


def _relative_error(value, reference):
    """``max |value - reference| / max |reference|``."""
    reference = np.asarray(reference, dtype=np.float64)
    scale = np.max(np.abs(reference))
    return float(np.max(np.abs(np.asarray(value, dtype=np.float64) - reference)) / scale)


def check_gradient(peer, problem, controls):
    """Relative errors of the peer's J and gradient against ``pmp.value_and_grad``.

    Parameters
    ----------
    peer : Peer
    problem : pmp.Problem
    controls : dict

    Returns
    -------
    dict
        ``"J"``: ``|J - J_pmp| / |J_pmp|``; ``"grad"``: the largest over the controls of
        ``max |g - g_pmp| / max |g_pmp|``.
    """
    J_ref, grads_ref = pmp.value_and_grad(problem, controls)
    J, grads = peer.value_and_grad(controls)
    return {"J": _relative_error(J, J_ref),
            "grad": max(_relative_error(grads[n], grads_ref[n]) for n in grads_ref)}


def check_step(peer, problem, controls):
    """Relative error of the peer's controls after one :meth:`Peer.step` from ``controls``
    against :func:`benchmarks.common.iteration` (the peer must start at ``controls``; it is
    advanced by one step)."""
    expected = iteration(problem, controls, lr=peer.lr)
    peer.step()
    got = peer.controls()
    return max(_relative_error(got[n], expected[n]) for n in expected)
