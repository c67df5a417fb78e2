"""The CLI offers only what works, explains failures, and runs the pipeline end to end."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from wattstream.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("command", [(), *_commands(main)], ids=lambda c: " ".join(c) or "main")
def test_cli_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_cli_status_without_stack_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1
    assert "wattstream stack up" in result.output


def test_cli_runner_rejects_unknown_function(tmp_path, monkeypatch, deploy_stack):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    deploy_stack().save(tmp_path / "stack.json")
    result = CliRunner().invoke(main, ["runner", "--function", "Nope"])
    assert result.exit_code == 2
    assert "not in the template" in result.output


def test_cli_status_shows_streams_and_queue_depths(tmp_path, monkeypatch, deploy_stack):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    deploy_stack().save(tmp_path / "stack.json")
    result = CliRunner().invoke(main, ["status"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"ReadingsStream\s+.*ACTIVE, 4 shards", result.output)
    assert re.search(r"RawEventsDeadLetterQueue\s+.*0 waiting", result.output)


def test_cli_run_once_loads_shipped_slice(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WATTSTREAM_PORT", "0")
    result = CliRunner().invoke(main, ["run", "--once"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    published = re.search(r"published ([\d,]+) readings", text)
    assert published
    assert published.group(1) == "39,477"
    assert "3,723 missing rows reported" in text
    assert not (tmp_path / "stack.json").exists()  # cleaned up when the stack stops
