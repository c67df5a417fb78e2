"""The README's command list runs, as written, against a running local stack.

The list is the fenced block after ``<!-- readme-commands -->`` in README.md: each line
``.venv/bin/wattstream ARGS  # comment``. Edit the README and this test runs the new
list, so the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest
from click.testing import CliRunner

from wattstream.settings import PACKAGE_ROOT

MARKER = "<!-- readme-commands -->"
PROGRAM = ".venv/bin/wattstream"


def readme_commands() -> list[list[str]]:
    """The arguments of every command of the README's list, in order."""
    text = (PACKAGE_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.DOTALL)
    assert block, f"README.md has no {MARKER} block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == PROGRAM, f"not a wattstream command: {line!r}"
            commands.append(words[1:])
    return commands


def test_readme_commands_block_lists_the_newcomers_commands():
    names = {c[0] for c in readme_commands() if c}
    assert {"status", "token", "replay", "simulate", "upload"} <= names


@pytest.fixture
def running_stack(tmp_path, monkeypatch, deploy_stack):
    """A stack as `make run` leaves it: described in the state dir, the batch handler
    running (upload waits for its report), no AWS credentials, a fresh clone's data."""
    import boto3

    import wattstream.settings
    from wattstream.local.runner import EventSourceRunner
    from wattstream.local.server import client_factory

    saved = dict(os.environ)
    stack = deploy_stack()
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    stack.save(tmp_path / "stack.json")
    monkeypatch.setattr(wattstream.settings, "shared_data_dir", lambda: tmp_path / "absent")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.chdir(PACKAGE_ROOT)  # the README's paths are the checkout's
    os.environ.update(dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "testing"))
    runner = EventSourceRunner(
        stack,
        clients=client_factory(stack.endpoint_url, stack.region),
        checkpoint_path=tmp_path / "checkpoints.json",
        functions={"IngestBatchFunction"},
        log_dir=tmp_path / "logs",
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.pop(name)  # the commands themselves start with none
    runner.start()
    yield stack
    runner.stop()
    os.environ.clear()
    os.environ.update(saved)


def test_readme_commands_run_against_a_stack(running_stack):
    from wattstream.cli import main

    for args in readme_commands():
        result = CliRunner().invoke(main, args, terminal_width=200)
        assert result.exit_code == 0, f"wattstream {shlex.join(args)}:\n{result.output}"
