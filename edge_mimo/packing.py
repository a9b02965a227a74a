"""Packing frames into superposed groups and reading predictions back (torch-free)."""

from __future__ import annotations

import numpy as np


def pack_groups(images: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """Images [M, C, H, W] -> groups [ceil(M/n), n, C, H, W] in order, and the number of padded slots.

    An incomplete last group is padded by repeating its first image; padded outputs are to be discarded
    with :func:`unpack_groups`, never a real image dropped.
    """
    m = images.shape[0]
    if m == 0:
        raise ValueError("no images to pack")
    pad = (-m) % width
    if pad:
        last_start = m - (m % width)
        images = np.concatenate([images, np.repeat(images[last_start : last_start + 1], pad, axis=0)])
    return images.reshape(-1, width, *images.shape[1:]), pad


def unpack_groups(outputs: np.ndarray, count: int) -> np.ndarray:
    """Per-replica outputs [G, R, n, K] -> per image [count, R, K], in the packing order."""
    g, r, n, k = outputs.shape
    return outputs.transpose(0, 2, 1, 3).reshape(g * n, r, k)[:count]
