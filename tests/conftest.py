"""Shared fixtures of pmp's tests.

This directory is on ``sys.path`` while the tests run (pytest puts a conftest's directory
there), so the tests import their helpers by name: :mod:`naive` (the NumPy twins of the
kernels) and :mod:`pmp_cases` (the small problems they are compared on).
"""
import os

import pytest

import pmp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rings():
    """The demo's data: two rings lifted to R^3, 64 samples."""
    return pmp.datasets.rings(64, seed=0, lift=3)
