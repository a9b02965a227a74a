"""Deployment target profiles, one TOML file per target (read by :mod:`edge_mimo.compile.targets`)."""
