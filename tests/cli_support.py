"""Run the ``modelyard`` command line in process, as the tests' user would type it."""

from __future__ import annotations

import pytest

from modelyard.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``modelyard ARGS`` in process; return (exit code, stdout, stderr)."""
    from modelyard.cli import _common

    _common.console.width = 250  # a wide terminal, so that table cells do not fold
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
