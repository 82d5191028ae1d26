"""Long operator commands show progress on a terminal and stay quiet in a log."""

from __future__ import annotations

import io

import pytest
from parley_shared.progress import Progress

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_records_done_of_the_total_and_the_rate() -> None:
    out = Terminal()
    with Progress("replay", total=40, stream=out) as progress:
        for _ in range(40):
            progress.advance()
    shown = out.getvalue()
    assert "replay" in shown
    assert "40/40" in shown
    assert "records/s" in shown


def test_a_log_file_or_pipe_gets_nothing() -> None:
    out = io.StringIO()  # not a terminal
    with Progress("replay", total=40, stream=out) as progress:
        progress.advance(40)
    assert out.getvalue() == ""
