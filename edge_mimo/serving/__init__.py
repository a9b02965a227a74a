"""Serving edge-mimo behind inference servers (Triton, Ray Serve): requests from many clients packed into
superposed passes. :mod:`.packing` is what every server shares; torch-free."""
