"""The ``mowe`` console script: every command answers ``--help`` under its own name, and
an unknown command is refused with the list of commands."""

import subprocess
import sys

import pytest

from mowe.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mowe"])  # main() names the program in sys.argv[0]
    try:
        status = main([name, "--help"])
    except SystemExit as stop:  # argparse's --help
        status = stop.code
    assert status in (0, None)
    out = capsys.readouterr().out
    assert f"mowe {name}" in out or name == "diagnostics" and "probe" in out


def test_an_unknown_command_is_refused_with_the_list(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "infer" in err and "serve" in err


def test_python_dash_m_mowe_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "mowe", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "usage: mowe <command>" in result.stdout
