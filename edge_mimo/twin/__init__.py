"""Does superposition pay for this model? Its equal-cost plain twin, trained, compiled and benched the same way."""

from .equal_cost import plain_twin_config

__all__ = ["plain_twin_config"]
