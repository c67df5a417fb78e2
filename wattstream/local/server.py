"""moto server, in-process on loopback: the AWS account of the local stack."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wattstream.hosting.template import StackDescription, load_template
from wattstream.local.stack import deploy

#: Credentials moto accepts; only ever set when nothing else is configured.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def ensure_local_credentials() -> None:
    """boto3 refuses to sign without credentials; moto ignores what they are."""
    if not os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_PROFILE"):
        for key, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(key, value)


def connect_local_stack(stack_file: Path) -> StackDescription:
    """The running local stack's description, with credentials moto accepts.

    The one entry of every command that talks to the local stack: boto3 refuses to sign
    without credentials (NoCredentialsError on a machine with none), so they are set
    here, once, for every such command, never per command.
    """
    description = StackDescription.load(stack_file)
    ensure_local_credentials()
    return description


def client_factory(endpoint_url: str | None, region: str) -> Callable[[str], Any]:
    """``factory(service) -> boto3 client`` bound to one endpoint and region."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=50,
    )

    def factory(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint_url, config=config)

    return factory


def _log_to_file_only(path: Path, *names: str) -> None:
    """The emulator's own errors (request tracebacks, e.g. moto's ``OrderedDict mutated
    during iteration`` under concurrent calls) go to ``path``, never to the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(old)
            old.close()
        logger.addHandler(handler)
        logger.propagate = False


def busy_ports(host: str, ports: Mapping[str, int]) -> dict[str, int]:
    """Those of ``ports`` (setting name -> port) no server could listen on now.

    Checked before anything starts, so a second ``make run`` fails at once with the fix
    instead of hanging half-started. ``SO_REUSEADDR`` as the servers set it: a port in
    TIME_WAIT is free, one with a listener is not. Port 0 (any free port) is never busy.
    """
    busy = {}
    for name, port in ports.items():
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                busy[name] = port
    return busy


class EmbeddedAws:
    """A moto server thread; ``port=0`` picks a free port (tests run many at once)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quiet: bool = True,
        log_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._server: Any = None
        if quiet:  # per-request logs and per-resource-type warnings are noise on a terminal;
            # the stack description lists what moto does not emulate instead.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            logging.getLogger("moto").setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", message="Tried to parse .* not supported by moto")
        if log_file is not None:
            _log_to_file_only(log_file, "werkzeug", "moto")

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded AWS server is not running")
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        from wattstream.local.moto_speedups import install

        ensure_local_credentials()
        install()  # listings and shard reads that do not grow with the whole stack
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> EmbeddedAws:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def provision(
    template_path: Path,
    *,
    endpoint_url: str,
    region: str,
    stack_name: str = "wattstream",
    parameters: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
) -> StackDescription:
    """Create every resource of the template on the endpoint (a fresh moto server)."""
    sam = template if template is not None else load_template(template_path)
    return deploy(
        sam,
        clients=client_factory(endpoint_url, region),
        stack_name=stack_name,
        region=region,
        endpoint_url=endpoint_url,
        template_path=str(template_path),
        parameters=parameters,
    )
