"""The ``edge-mimo`` command."""
