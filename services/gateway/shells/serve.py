"""Serving the gateway locally: the API under uvicorn in a thread, the dashboard as a process.

Used by the CLI (``wattstream serve gateway``, ``wattstream dashboard``, ``wattstream
run``), the latency benchmark and the headless-browser test, so all of them start the
same app the same way. ``port=0`` picks a free loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["DASHBOARD_APP", "ApiServer", "dashboard_command", "start_api", "start_dashboard"]

DASHBOARD_APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


@dataclass
class ApiServer:
    """A running uvicorn server; ``url`` is where it listens."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)


def start_api(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 15.0
) -> ApiServer:
    """Serve ``app`` in a daemon thread; returns once it accepts connections."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="gateway-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise RuntimeError(f"the gateway API could not listen on {host}:{port}")
    bound = server.servers[0].sockets[0].getsockname()[1]
    return ApiServer(server=server, thread=thread, url=f"http://{host}:{bound}")


def dashboard_command(*, host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """The ``streamlit run`` command line of the dashboard (headless, no telemetry)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(DASHBOARD_APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",  # no "Deploy" button or developer menu for households
        "--server.fileWatcherType",
        "none",
    ]


def start_dashboard(
    api_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    refresh_s: float = 5.0,
    log: Any = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start the dashboard process talking to ``api_url``; the caller stops it.

    No token is handed to it: each visitor signs in with their own, so the dashboard shows
    what that token may read and nothing more. Ready when ``http://host:port/_stcore/health``
    answers ``ok``.
    """
    env = {
        **{k: v for k, v in os.environ.items() if k != "WATTSTREAM_API_TOKEN"},
        "WATTSTREAM_API_URL": api_url,
        "WATTSTREAM_REFRESH_S": str(refresh_s),
    }
    return subprocess.Popen(  # noqa: S603  # our own command line, no shell
        dashboard_command(host=host, port=port), env=env, stdout=log, stderr=log
    )
