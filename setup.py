"""Package discovery (the rest of the configuration is in pyproject.toml).

Every ``edge_mimo`` subpackage is found, so none can be left out of the wheel, plus the shipped data folders that
install under other names (``package-dir`` in pyproject.toml: ``calibration/`` and ``targets/``).
"""

from setuptools import find_packages, setup

MAPPED = ["edge_mimo.calibration_data", "edge_mimo.targets"]  # the keys of package-dir in pyproject.toml

setup(packages=find_packages(include=["edge_mimo", "edge_mimo.*"]) + MAPPED)
