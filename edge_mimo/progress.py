"""How edge-mimo reports progress, the one way: lines through :mod:`logging`, bars through :func:`bar`.

Status lines and warnings go to each module's ``logging.getLogger(__name__)`` (all under ``edge_mimo``); bars are
tqdm's, on stderr. Both show only where the ``edge_mimo`` logger is enabled for INFO: the CLI enables it (warnings
only with ``--json``, ``cli/main.py``); a program using the library sees warnings only, unless it configures
logging itself (``logging.basicConfig(level=logging.INFO)``). Torch-free; tqdm is imported when a bar is drawn.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tqdm comes with the compile extra
    from tqdm import tqdm

LOGGER = logging.getLogger("edge_mimo")


def shown() -> bool:
    """Whether progress is shown: the ``edge_mimo`` logger is enabled for INFO."""
    return LOGGER.isEnabledFor(logging.INFO)


def bar(total: int, desc: str, unit: str = "step", initial: int = 0) -> tqdm:
    """A progress bar on stderr, drawn only when :func:`shown` (a silent one otherwise)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, disable=not shown())
