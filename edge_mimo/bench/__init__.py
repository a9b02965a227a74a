"""``edge-mimo bench``: speed of superposed inference against real baselines, measured in one run."""
