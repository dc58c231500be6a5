"""Long work's progress: a bar redrawn in place in a terminal, plain lines anywhere else."""

from __future__ import annotations

import io

from cli.progress import Progress


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    progress.update("runtime images", 0, 2)
    progress.line("runtime image a: built")
    progress.update("runtime images", 1, 2)
    progress.update("runtime images", 2, 2)
    progress.update("waiting", 0)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == ".. runtime images ..."
    assert lines[1] == "runtime image a: built"
    assert lines[2].startswith(".. runtime images: done (2) in ")
    assert lines[3] == ".. waiting ..."
    assert lines[4].startswith(".. waiting: done in ")
    assert len(lines) == 5


def test_a_bar_in_place_in_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.update("runtime images", 1, 4)
    assert out.getvalue().endswith("runtime images  [#######.....................] 1/4  0 s")
    progress.line("built one")  # the bar is cleared, the line printed, the bar drawn again
    assert "\r\x1b[Kbuilt one\n\r\x1b[Kruntime images  [####" in out.getvalue()
    progress.update("base image: downloading packages", 37)
    assert out.getvalue().endswith("base image: downloading packages  37 so far  0 s")
    progress.close()
    assert ".. base image: downloading packages: done (37) in" in out.getvalue()
