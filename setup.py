"""Package discovery (the rest of the configuration is in pyproject.toml).

Every ``edge_mimo`` subpackage is found (the shipped targets and samples too), so none can be left out of the wheel.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["edge_mimo", "edge_mimo.*"]))
