"""Shared by the CLI fault tests: thinkc's real entry point (`thinkc.cli.main.main`) run in-process."""
import sys

import pytest

from thinkc.cli.main import main


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `thinkc *args`."""
    monkeypatch.setattr(sys, "argv", ["thinkc", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err
