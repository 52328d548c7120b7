"""Training methods and their registry.

=============  =====================================================================
"gd"           ``u <- u - lr g``
"heavy_ball"   ``u <- u - lr g + momentum (u - u_prev)`` (Polyak)
"nesterov"     gradient at the look-ahead point
"adam"         Adam with bias correction
"lbfgs"        limited-memory BFGS with a strong-Wolfe line search; full batch only
"proximal"     FISTA with adaptive restart and the regulariser's proximal map
"msa"          plain method of successive approximations (``rho = 0``)
"emsa"         extended MSA: the augmented Hamiltonian, adaptive ``rho``
"discrete"     binary or ternary weights by the MSA rule of Li & Hao
=============  =====================================================================

The gradient family is in :mod:`pmp.methods.gradient` and :mod:`pmp.methods.proximal`, the
MSA family in :mod:`pmp.methods.msa`; :mod:`pmp.methods.base` holds the :class:`Method`
contract. A new method is one subclass of :class:`Method` and one call of
:func:`register_method`; the trainer asks the method what it supports, never its name.
"""
import inspect

from .._validation import lookup_class, register
from .base import Method, Oracle, Point
from .gradient import LBFGS, Adam, GradientDescent, HeavyBall, Nesterov
from .msa import EMSA, MSA, Discrete
from .proximal import Proximal

METHODS = {}


def register_method(cls):
    """Make the :class:`Method` subclass ``cls`` available by its ``name``; returns ``cls``."""
    return register(METHODS, cls, Method, "method")


for _cls in (GradientDescent, HeavyBall, Nesterov, Adam, LBFGS, Proximal, MSA, EMSA, Discrete):
    register_method(_cls)


def method_names():
    """The registered methods' names, sorted."""
    return tuple(sorted(METHODS))


def method_options(cls):
    """The option names a method class accepts (its ``__init__`` keywords)."""
    return tuple(inspect.signature(cls.__init__).parameters)[1:]


def method_class(method):
    """The :class:`Method` subclass of a name, a class or an instance."""
    return lookup_class(METHODS, Method, method, "method")


def make_method(method, options):
    """A :class:`Method` from a name (with its keyword options), a class or an instance."""
    if isinstance(method, Method):
        if options:
            raise TypeError(f"options {sorted(options)} given with a Method instance; set them "
                            f"on the instance")
        return method
    cls = method_class(method)
    valid = method_options(cls)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                        f"{cls.name!r}; valid options: {', '.join(valid)}")
    return cls(**options)


def extra_history_columns():
    """The history columns the registered methods report besides the common ones, in
    registration order (a method that does not report one gets NaN there)."""
    columns = []
    for cls in METHODS.values():
        columns += [c for c in cls.history_columns if c not in columns]
    return tuple(columns)


__all__ = ["METHODS", "Method", "Oracle", "Point", "register_method", "method_names",
           "method_options", "method_class", "make_method", "extra_history_columns",
           "GradientDescent", "HeavyBall", "Nesterov", "Adam", "LBFGS", "Proximal", "MSA",
           "EMSA", "Discrete"]
