"""The systemd unit set in deploy/systemd: every unit passes ``systemd-analyze verify`` (no
unknown keys, executables that exist) and runs a real `ft` subcommand with Restart=on-failure."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_FT = "/opt/funtainer/.venv/bin/ft"


def _services() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def test_each_part_has_a_unit_that_restarts_it_on_failure() -> None:
    commands = {}
    for unit in _services():
        text = unit.read_text()
        assert re.search(r"^Restart=on-failure$", text, re.M), unit.name
        assert re.search(r"^StartLimitIntervalSec=0$", text, re.M), unit.name
        (exec_start,) = re.findall(r"^ExecStart=(.*)$", text, re.M)
        binary, *args = exec_start.split()
        assert binary == INSTALLED_FT
        build_parser().parse_args(args)  # a subcommand ft really has (exits if not)
        commands[unit.name] = args
    assert sorted(commands.values()) == [["gateway"], ["initializer"], ["invoker"]]
    assert "Environment=FT_INVOKER_ID=%i" in (UNITS / "funtainer-invoker@.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    ft = str(Path(sys.executable).with_name("ft"))
    for unit in [*_services(), UNITS / "funtainer.target"]:
        name = unit.name.replace("@.service", "@invoker0.service")
        (tmp_path / name).write_text(unit.read_text().replace(INSTALLED_FT, ft))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *[str(p) for p in sorted(tmp_path.iterdir())]],
                          capture_output=True, text=True, timeout=60)
    # An unknown key is only a warning (exit 0): systemd ignores it, and the unit would not
    # do what it says.
    assert done.returncode == 0 and "Unknown" not in done.stderr, done.stderr
