"""Batch runs: TOML configurations, run directories and their files, parameter sweeps and the
``pmp`` command."""
