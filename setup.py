"""Package discovery (the rest of the configuration is in pyproject.toml).

Every ``edge_mimo`` subpackage is found, plus the shipped data folders ``calibration/`` and ``targets/`` that
pyproject.toml maps to ``edge_mimo.calibration`` and ``edge_mimo.targets``: none can be left out of the wheel.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["edge_mimo", "edge_mimo.*"]) + ["edge_mimo.calibration", "edge_mimo.targets"])
