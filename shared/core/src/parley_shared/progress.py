"""Progress of a long operator command: records done, the rate and the time left.

Shown on a terminal only (standard error, redrawn in place); quiet when the output is a file or a
pipe (a CI log, a cron job), where the command's closing summary is what counts. Built on tqdm.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from tqdm import tqdm


class Progress:
    """``with Progress("replay", total=n) as progress: ... progress.advance()``."""

    def __init__(
        self, description: str, total: int | None = None, unit: str = "records", stream: TextIO | None = None
    ) -> None:
        self._bar = tqdm(
            total=total,
            desc=description,
            unit=f" {unit}",
            file=stream if stream is not None else sys.stderr,
            disable=None,  # tqdm's rule: drawn only when the stream is a terminal
            mininterval=0.5,
            dynamic_ncols=True,
            leave=True,
        )

    def advance(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
