"""The CLI offers only what works, explains failures, and runs the pipeline end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

from tests.conftest import APRIL_2007
from wattstream.cli import main
from wattstream.local.net import free_port


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands configure the process like a function (os.environ); undo that per test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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


@pytest.mark.slow
@pytest.mark.timeout(1500)  # as the subprocess's: 570 s at load average 6 on 2 cores
def test_cli_run_once_shows_every_feature(tmp_path, monkeypatch):
    """`run --once`: each feature of the demo produced output, counted in its summary.

    Slow (minutes): --once processes the demo in lockstep, window by window."""
    # In its own process: moto's backends are global to a process, so an in-process
    # `run` would meet the stack another test's in-process `run` left behind.
    env = {**os.environ, "WATTSTREAM_STATE_DIR": str(tmp_path), "WATTSTREAM_PORT": "0"}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-c", "from wattstream.cli import main; main()", "run", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    text = " ".join(output.split())
    published = re.search(r"published ([\d,]+) readings of 1 households", text)
    assert published, text
    assert published.group(1) == "39,477"  # the shipped UCI slice
    assert "3,723 missing rows reported" in text
    assert "history: 105 daily summaries" in text  # the real months before the slice
    assert not (tmp_path / "stack.json").exists()  # cleaned up when the stack stops
    archived = re.search(r"archive: (\d+) household-day Parquet files", text)
    assert archived, text
    assert int(archived.group(1)) > 0
    assert "published 1,680 readings of 5 households" in text  # the London week
    assert "demo anomaly (injected, not in the real data): london-00001 +2 kW" in text
    features = re.search(
        r"realtime LSTM forecasts: (\d+) \((\d+)/(\d+) UCI households\); "
        r"fleet-model forecasts: (\d+) \((\d+)/(\d+) London households.*?\); "
        r"anomalies flagged: (\d+) \(london-00001, the demo anomaly's: (\d+)\); "
        r"accuracy: (\d+) scored forecast-actual pairs",
        text,
    )
    assert features, text
    lstm, lstm_ok, uci, fleet, fleet_ok, london, anomalies, injected, pairs = map(
        int, features.groups()
    )
    assert lstm > 0
    assert lstm_ok == uci == 1
    assert fleet > 0
    assert fleet_ok == london == 5  # the fleet model, not seasonal naive
    assert anomalies > 0
    assert injected > 0  # the demo anomaly is flagged
    assert pairs > 0
    prophet = re.search(r"monthly: (\d+) Prophet forecasts", text)
    assert prophet, text
    assert int(prophet.group(1)) > 0
    upload = re.search(
        r"upload report: .*?household_id=upload-demo, utc_offset=\+01:00, "
        r"status=(\w+).*?accepted=(\d+)",
        text,
    )
    assert upload, text
    assert upload.group(1) == "processed"
    assert int(upload.group(2)) == 1440


def test_cli_replay_publishes_to_running_stack(tmp_path, monkeypatch, deploy_stack, clients):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    stack = deploy_stack()
    stack.save(tmp_path / "stack.json")
    result = CliRunner().invoke(
        main,
        ["replay", "--file", str(APRIL_2007), "--speed", "max", "--households", "2"],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "published 78,954 readings of 2 households" in " ".join(result.output.split())


def test_cli_upload_puts_file_under_uploads(tmp_path, monkeypatch, deploy_stack, clients):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    stack = deploy_stack()
    stack.save(tmp_path / "stack.json")
    result = CliRunner().invoke(
        main, ["upload", str(APRIL_2007), "--household", "h-1", "--utc-offset", "uci", "--no-wait"]
    )
    assert result.exit_code == 0, result.output
    head = clients("s3").head_object(
        Bucket=stack.outputs["RawBucketName"], Key=f"uploads/h-1/{APRIL_2007.name}"
    )
    assert head["ContentLength"] == APRIL_2007.stat().st_size
    assert head["Metadata"] == {"utc-offset": "+01:00"}


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--household", "victim/../attacker", "--utc-offset", "uci"], "--household"),
        (["--utc-offset", "CET"], "--utc-offset"),
        ([], "--utc-offset"),  # naive times need a declared offset
    ],
)
def test_cli_upload_refuses_bad_household_or_offset_before_uploading(
    tmp_path, monkeypatch, deploy_stack, clients, args, option
):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    stack = deploy_stack()
    stack.save(tmp_path / "stack.json")

    result = CliRunner().invoke(main, ["upload", str(APRIL_2007), *args, "--no-wait"])

    assert result.exit_code == 2
    assert option in result.output
    listing = clients("s3").list_objects_v2(Bucket=stack.outputs["RawBucketName"])
    assert listing.get("KeyCount", 0) == 0


def test_cli_replay_rejects_bad_speed(tmp_path, monkeypatch, deploy_stack):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    deploy_stack().save(tmp_path / "stack.json")
    result = CliRunner().invoke(main, ["replay", "--file", str(APRIL_2007), "--speed", "fast"])
    assert result.exit_code == 2
    assert "--speed" in result.output


@pytest.mark.slow
def test_cli_simulate_publishes_fleet_from_real_profiles(tmp_path, monkeypatch, deploy_stack):
    from tests.conftest import DATA_DIR

    if not (DATA_DIR / "lcl_daily_dataset").is_dir():
        pytest.skip(f"London data not found in {DATA_DIR}")
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    deploy_stack().save(tmp_path / "stack.json")
    args = ["simulate", "--households", "20", "--days", "1", "--start", "2013-03-01"]
    result = CliRunner().invoke(main, [*args, "--data-dir", str(DATA_DIR)], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert re.search(r"published [\d,]+ readings of 20 households", text)
    assert "0 rejected" in text


def test_cli_token_issues_household_scoped_token(tmp_path, monkeypatch, deploy_stack):
    from services.gateway.core.tokens import verify_token

    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    stack = deploy_stack()
    stack.save(tmp_path / "stack.json")
    result = CliRunner().invoke(main, ["token", "--household", "uci-0001", "--ttl", "60"])
    assert result.exit_code == 0, result.output
    secret = stack.functions["GatewayApiFunction"].environment["TOKEN_SECRET"]
    principal = verify_token(result.output.strip(), secret, now=time.time())
    assert principal.households == frozenset({"uci-0001"})
    assert not principal.operator
    assert CliRunner().invoke(main, ["token"]).exit_code == 2  # neither scope given


@pytest.mark.slow
def test_cli_train_realtime_writes_a_loadable_bundle(tmp_path):
    from services.realtime.model.bundle import read_spec

    result = CliRunner().invoke(
        main,
        ["train", "realtime", "--data", str(APRIL_2007), "--out", str(tmp_path), "--epochs", "1"],
    )
    assert result.exit_code == 0, result.output
    (bundle,) = tmp_path.iterdir()
    assert read_spec(bundle).version == bundle.name
    assert (bundle / "model.tflite").stat().st_size > 0


def test_cli_runs_as_a_module_with_every_command():
    """``python -m wattstream.cli`` (how tools start a runner) sees the registered commands."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "wattstream.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert "runner" in done.stdout
    assert "upload" in done.stdout  # a group of wattstream.cli.ingest


def _without_aws_credentials(monkeypatch, tmp_path):
    """A machine with no AWS credentials anywhere (environment, files, instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches resolved credentials


@pytest.mark.parametrize(
    "args",
    [
        ["upload", str(APRIL_2007), "--household", "h-1", "--utc-offset", "uci", "--no-wait"],
        ["status"],
        ["replay", "--file", str(APRIL_2007), "--speed", "max"],
    ],
    ids=lambda a: a[0],
)
def test_cli_stack_commands_work_without_aws_credentials(tmp_path, monkeypatch, deploy_stack, args):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    deploy_stack().save(tmp_path / "stack.json")
    _without_aws_credentials(monkeypatch, tmp_path)

    result = CliRunner().invoke(main, args, terminal_width=200)

    assert result.exit_code == 0, result.output
    assert "NoCredentials" not in result.output


def test_cli_state_dir_is_the_checkouts_whatever_the_current_folder(tmp_path, monkeypatch):
    from wattstream.settings import PACKAGE_ROOT, LocalSettings

    monkeypatch.delenv("WATTSTREAM_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert LocalSettings().state_dir == PACKAGE_ROOT / ".wattstream"
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", "relative")
    assert LocalSettings().state_dir == tmp_path / "relative"  # named absolute in errors


def test_cli_status_without_stack_names_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path / "elsewhere"))
    result = CliRunner().invoke(main, ["status"], terminal_width=400)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert str(tmp_path / "elsewhere" / "stack.json") in text
    assert "WATTSTREAM_STATE_DIR" in text


@pytest.fixture
def busy_port():
    """A port with a listener on it, as a running `make run` would hold."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    ("variable", "args"),
    [
        ("WATTSTREAM_PORT", ["stack", "up"]),
        ("WATTSTREAM_PORT", ["run"]),
        ("WATTSTREAM_INGEST_PORT", ["run"]),
        ("WATTSTREAM_DASHBOARD_PORT", ["run"]),
    ],
)
def test_cli_port_in_use_fails_fast_with_the_fix(tmp_path, monkeypatch, busy_port, variable, args):
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    for name in ("PORT", "INGEST_PORT", "API_PORT", "DASHBOARD_PORT"):
        monkeypatch.setenv(f"WATTSTREAM_{name}", "0")
    monkeypatch.setenv(variable, str(busy_port))

    result = CliRunner().invoke(main, args, terminal_width=400)

    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"{busy_port} ({variable})" in text
    assert f"{variable}={busy_port + 1}" in text
    assert not (tmp_path / "stack.json").exists()  # nothing was started


def test_cli_simulate_on_a_fresh_clone_uses_the_shipped_slice(tmp_path, monkeypatch, deploy_stack):
    import wattstream.settings

    monkeypatch.setattr(wattstream.settings, "shared_data_dir", lambda: tmp_path / "absent")
    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    deploy_stack().save(tmp_path / "stack.json")
    args = ["simulate", "--households", "10", "--days", "1", "--start", "2013-03-01"]

    result = CliRunner().invoke(main, args, terminal_width=400)

    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert str(wattstream.settings.shipped_london_dir()) in text  # says which data it used
    assert re.search(r"published [\d,]+ readings of 10 households", text)
    assert "0 rejected" in text


def test_cli_run_ctrl_c_exits_0_with_one_line_and_a_quiet_console(tmp_path):
    """`make run`, then Ctrl-C: the welcome screen, no tracebacks or JSON logs, exit 0."""
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        "WATTSTREAM_STATE_DIR": str(tmp_path),
        "WATTSTREAM_PORT": "0",
        "WATTSTREAM_INGEST_PORT": str(free_port()),
        "WATTSTREAM_API_PORT": str(free_port()),
        "WATTSTREAM_DASHBOARD_PORT": str(free_port()),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    # A shell starts background jobs with SIGINT ignored, and a child inherits that: Python
    # then installs no KeyboardInterrupt handler and Ctrl-C never arrives. Give `run` the
    # terminal's default, as a user's shell does, wherever this suite itself was started.
    as_from_a_terminal = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['wattstream', 'run', '--speed', '60']; "
        "runpy.run_module('wattstream.cli', run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", as_from_a_terminal],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "Ctrl-C stops everything" in line:
                break
        time.sleep(2)  # a little replay under way
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    output = "".join(seen) + rest

    assert process.returncode == 0, output[-3000:]
    assert "wattstream is running" in output
    assert "wattstream token --household uci-0001" in output
    assert "stopped after" in output
    assert "(Ctrl-C)" in output
    for noise in ("Aborted", "Traceback", '"level":', "┃ resource"):
        assert noise not in output, output[-3000:]
    assert (tmp_path / "logs" / "moto.log").exists()


def test_cli_replay_never_mixes_into_a_household_with_data(tmp_path, monkeypatch, deploy_stack):
    import datetime as dt

    from services.gateway.adapters.dynamo_store import DynamoGatewayStore
    from wattstream.local.server import client_factory

    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    stack = deploy_stack()
    stack.save(tmp_path / "stack.json")
    store = DynamoGatewayStore(
        stack.outputs["GatewayTableName"],
        client=client_factory(stack.endpoint_url, stack.region)("dynamodb"),
    )
    store.note_household("uci-0001", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))  # running

    args = ["replay", "--file", str(APRIL_2007), "--speed", "max", "--households", "2"]
    fresh = CliRunner().invoke(main, args, terminal_width=400)
    chosen = CliRunner().invoke(main, [*args, "--id-prefix", "uci"], terminal_width=400)

    assert fresh.exit_code == 0, fresh.output
    assert "households uci2-0001 .. uci2-0002 (uci-0001 already has data" in fresh.output
    assert chosen.exit_code == 0, chosen.output
    assert "households uci-0001 .. uci-0002" in chosen.output


def test_cli_ctrl_c_in_any_command_is_one_line_and_exit_0(tmp_path, monkeypatch):
    import wattstream.cli.stack

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setenv("WATTSTREAM_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(wattstream.cli.stack, "load_stack", interrupted)

    result = CliRunner().invoke(main, ["status"])

    assert result.exit_code == 0, result.output
    assert "Aborted" not in result.output
    assert "stopped (Ctrl-C): `wattstream status` interrupted" in result.output
