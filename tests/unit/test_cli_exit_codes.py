"""Exit statuses a script can rely on: a wrong command line is 5 (ansible-playbook's "bad
options"), never 2, which every command uses for "something failed on a host"."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import EXIT_USAGE, app


@pytest.mark.parametrize(
    "argv",
    [
        ["collect", "--bogus"],
        ["nosuch"],
        ["playbook"],  # missing argument
        ["run", "-i"],  # option without its value
        ["lab", "nosuch"],
        ["inventory", "list", "--bogus"],
        ["collect", "--interval", "soon"],  # not a number
    ],
)
def test_a_wrong_command_line_exits_5_with_a_usage_message(argv: list[str]) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == EXIT_USAGE == 5, result.output
    assert "Usage: serverguard" in result.output or "Error" in result.output


def test_help_still_exits_0() -> None:
    for argv in (["--help"], ["collect", "--help"], ["inventory", "--help"]):
        assert CliRunner().invoke(app, argv).exit_code == 0
