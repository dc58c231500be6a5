"""Long work shown as it goes (`ft runtimes build`, `ft up`'s first start, `python -m bench`).

In a terminal: the lines printed so far, and under them one bar redrawn in place
("runtime images  [#######.......]  2/4  12 s"). Anywhere else (a log file, CI): plain lines
only, one when a stage starts and one when it ends, so a log reads as a story and never holds
carriage returns."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

BAR_WIDTH = 28


class Progress:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self._stage: str | None = None
        self._stage_started = time.monotonic()
        self._last: tuple[str, int, int | None] | None = None  # the stage's latest update
        self._drawn = False

    def __call__(self, text: str) -> None:
        """A line of its own (the builder's and the bench's messages)."""
        self.line(text)

    def line(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._redraw_last()

    def update(self, stage: str, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (None: not known yet) in ``stage``."""
        if stage != self._stage:
            self._finish_stage()
            self._stage, self._stage_started = stage, time.monotonic()
            if not self.tty:
                self.stream.write(f".. {stage} ...\n")
        self._last = (stage, done, total)
        if self.tty:
            self._draw(stage, done, total)
        elif total is not None and done >= total:
            self._finish_stage()
        self.stream.flush()

    def close(self) -> None:
        self._finish_stage()
        self._clear()

    # -- drawing -------------------------------------------------------------------------------

    def _finish_stage(self) -> None:
        if self._stage is None:
            return
        elapsed = time.monotonic() - self._stage_started
        self._clear()
        done = self._last[1] if self._last and self._last[0] == self._stage else None
        count = f" ({done})" if done else ""
        self.stream.write(f".. {self._stage}: done{count} in {elapsed:.1f} s\n")
        self._stage, self._last = None, None

    def _draw(self, stage: str, done: int, total: int | None) -> None:
        elapsed = time.monotonic() - self._stage_started
        if total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}"
        else:
            bar = f"{done} so far"
        text = f"{stage}  {bar}  {elapsed:.0f} s"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r\x1b[K" + text[:width])
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    def _redraw_last(self) -> None:
        if self.tty and self._last is not None:
            self._draw(*self._last)
            self.stream.flush()
