"""The version of pmp (its own module: importing it has no side effects)."""
__version__ = "0.1.0"
