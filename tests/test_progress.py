"""Progress is reported one way (edge_mimo/progress.py): bars and status lines show only where the edge_mimo logger
is enabled for INFO (the CLI), so library use stays quiet."""

import logging

from edge_mimo.progress import bar, shown


def test_bars_show_only_when_the_edge_mimo_logger_is_at_info(capsys):
    logger = logging.getLogger("edge_mimo")
    previous = logger.level
    try:
        logger.setLevel(logging.NOTSET)  # a program using the library: the root logger's WARNING
        assert not shown()
        with bar(3, "quiet") as progress:
            progress.update(3)
        assert capsys.readouterr().err == ""
        logger.setLevel(logging.INFO)  # what the CLI sets
        assert shown()
        with bar(3, "shown") as progress:
            progress.update(3)
        assert "shown" in capsys.readouterr().err
    finally:
        logger.setLevel(previous)
