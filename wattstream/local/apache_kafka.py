"""A real Apache Kafka broker (KRaft, no ZooKeeper) on loopback, started from Maven jars.

The jars come from ``deploy/kafka/pom.xml`` (``make kafka``: ``mvn dependency:copy-dependencies``
into ``build/kafka/libs``). :class:`ApacheKafkaBroker` formats a fresh KRaft storage
directory (``kafka.tools.StorageTool format``, what ``kafka-storage.sh format`` runs),
starts one node that is both broker and controller (``kafka.Kafka``) on two free loopback
ports, waits until it answers a metadata request, and stops it with SIGTERM (a controlled
shutdown), killing it only if it does not stop in time.

Start-up cost is kept small for tests: one JVM for the format and one for the broker,
client JIT only (``-XX:TieredStopAtLevel=1``), class-data sharing, a 512 MiB heap, two
network and I/O threads, and a small ``__consumer_offsets`` topic (4 partitions, not 50).
Everything the JVMs print goes to ``log_path``; a failed start raises with its tail.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Protocol, TextIO

from wattstream.local.net import free_port

#: Where ``make kafka`` puts the broker's jars (relative to the repository root).
DEFAULT_LIBS = Path(__file__).resolve().parents[2] / "build" / "kafka" / "libs"
#: What to run when the jars or Java are missing.
INSTALL_HINT = (
    "needs Java 17+ and the Kafka jars: install a JDK 17 and Maven, then run `make kafka` "
    "(mvn -f deploy/kafka/pom.xml dependency:copy-dependencies)"
)

#: JVM flags for a fast start of a small test broker (no timing depends on them).
JVM_FLAGS = (
    "-Xms128m",
    "-Xmx512m",
    "-Xss512k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=2",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)


class LocalBroker(Protocol):
    """What the tests and benchmarks use of a broker, whichever it is."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def name(self) -> str: ...

    def start(self, timeout_s: float = ...) -> str: ...

    def stop(self) -> object: ...

    def __enter__(self) -> LocalBroker: ...

    def __exit__(self, *_: object) -> None: ...


class KafkaUnavailable(RuntimeError):
    """Java or the broker's jars are missing on this machine (see :data:`INSTALL_HINT`)."""


def kafka_libs(libs: Path | None = None) -> Path:
    """The jar folder, or :class:`KafkaUnavailable` saying what to install."""
    libs = libs or Path(os.environ.get("WATTSTREAM_KAFKA_LIBS", DEFAULT_LIBS))
    if shutil.which("java") is None:
        raise KafkaUnavailable(f"Apache Kafka: no `java` on PATH; {INSTALL_HINT}")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(f"Apache Kafka: no kafka_2.13 jar in {libs}; {INSTALL_HINT}")
    return libs


def kafka_version(libs: Path | None = None) -> str:
    """The version of the broker jar, e.g. ``4.1.1``."""
    [jar] = sorted(kafka_libs(libs).glob("kafka_2.13-*.jar"))[-1:]
    return jar.stem.removeprefix("kafka_2.13-")


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (``random-uuid``)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def server_properties(
    *, host: str, port: int, controller_port: int, log_dir: Path, partitions: int = 4
) -> str:
    """One combined broker+controller node, plaintext loopback listeners, replication 1."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(partitions),
        "offsets.topic.num.partitions": "4",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A local broker lets a short session through (Kafka's default floor is 6 s): the
        # crash drills use 3 s so a killed worker's partitions move on sooner.
        "group.min.session.timeout.ms": "1000",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "num.replica.fetchers": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "controlled.shutdown.enable": "true",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


#: log4j2 configuration: INFO to the console (the log file), chatty loggers at WARN.
_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


class ApacheKafkaBroker:
    """An Apache Kafka node on loopback for as long as the ``with`` block lasts.

    Same surface as :class:`wattstream.local.tansu.TansuBroker` (``start``, ``stop``,
    ``bootstrap``), plus :attr:`name` for reports. Data lives under ``work_dir`` (a
    temporary folder when None, removed on stop).
    """

    def __init__(
        self,
        log_path: Path | None = None,
        *,
        work_dir: Path | None = None,
        libs: Path | None = None,
        host: str = "127.0.0.1",
        partitions: int = 4,
    ) -> None:
        self.host = host
        self.port = 0
        self.controller_port = 0
        self.partitions = partitions
        self.libs = libs
        self._own_dir = work_dir is None
        self.work_dir = work_dir
        self.log_path = log_path
        self.started_in_s = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return f"apache-kafka {kafka_version(self.libs)}"

    def start(self, timeout_s: float = 90.0) -> str:
        """Format storage, start the node, return once it serves metadata."""
        started = time.monotonic()
        libs = kafka_libs(self.libs)
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            self.log_path = self.work_dir / "broker.log"
        data = self.work_dir / "data"
        shutil.rmtree(data, ignore_errors=True)
        self.port, self.controller_port = free_port(self.host), free_port(self.host)
        config = self.work_dir / "server.properties"
        config.write_text(
            server_properties(
                host=self.host,
                port=self.port,
                controller_port=self.controller_port,
                log_dir=data,
                partitions=self.partitions,
            )
        )
        log4j = self.work_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        java = [
            "java",
            *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.work_dir}",
            "-cp",
            f"{libs}/*",
        ]
        self._log = self.log_path.open("a")
        fmt = subprocess.run(  # noqa: S603  # our own java command line
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        )
        if fmt.returncode != 0:
            self._close_log()
            raise RuntimeError(f"kafka-storage format failed:\n{self.log_tail()}")
        self._process = subprocess.Popen(  # noqa: S603  # our own java command line
            [*java, "kafka.Kafka", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - started
        return self.bootstrap

    def _wait_ready(self, deadline: float) -> None:
        """Until a metadata request succeeds (the broker is registered and unfenced)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while True:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise RuntimeError(f"Kafka exited ({code}) while starting:\n{self.log_tail()}")
            with contextlib.suppress(Exception):  # not up yet: KafkaException, timeouts
                if admin.list_topics(timeout=1.0).brokers and self._coordinator_ready(admin):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka not ready at {self.bootstrap}:\n{self.log_tail()}")
            time.sleep(0.1)

    @staticmethod
    def _coordinator_ready(admin: Any) -> bool:
        """Whether a group coordinator answers. A fresh broker creates ``__consumer_offsets``
        on the first FindCoordinator; until then consumers get GroupCoordinatorNotAvailable,
        which four faust workers joining at once did not all survive. Asking here first
        leaves the offsets topic ready before any worker starts."""
        future = admin.describe_consumer_groups(["wattstream-broker-ready"], request_timeout=2.0)
        future["wattstream-broker-ready"].result(timeout=3.0)  # raises until a coordinator
        return True

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (controlled shutdown), then SIGKILL if it takes over ``timeout_s``."""
        code = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(10)
            code = self._process.returncode
            self._process = None
        self._close_log()
        if self._own_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None
        return code

    def kill(self) -> None:
        """``kill -9`` of the broker (crash drills); ``start`` again formats fresh storage."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ApacheKafkaBroker:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


#: The brokers a local run, the tests and the benchmarks can start.
BROKERS = ("apache-kafka", "tansu")
#: Environment variable that picks one of :data:`BROKERS` for the tests.
BROKER_ENV = "WATTSTREAM_KAFKA_BROKER"


def local_broker(
    kind: str, log_path: Path | None = None, *, work_dir: Path | None = None
) -> ApacheKafkaBroker | LocalBroker:
    """A not yet started broker of ``kind`` (``apache-kafka`` or ``tansu``)."""
    if kind == "apache-kafka":
        return ApacheKafkaBroker(log_path, work_dir=work_dir)
    if kind == "tansu":
        from wattstream.local.tansu import TansuBroker

        return TansuBroker(log_path)
    raise ValueError(f"unknown broker {kind!r}: one of {', '.join(BROKERS)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m wattstream.local.apache_kafka [--broker tansu]``: a local broker until Ctrl-C.

    Prints the bootstrap address for ``wattstream run --bus kafka --bootstrap HOST:PORT``.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m wattstream.local.apache_kafka")
    parser.add_argument("--broker", choices=BROKERS, default="apache-kafka")
    parser.add_argument("--work-dir", type=Path, help="data and log (default: a temp folder)")
    args = parser.parse_args(argv)
    log = args.work_dir / "broker.log" if args.work_dir else None
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    broker = local_broker(args.broker, log, work_dir=args.work_dir)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # taken by sigwait below
    try:
        broker.start()
    except KafkaUnavailable as error:
        print(error)
        return 1
    print(f"{broker.name} at {broker.bootstrap} (Ctrl-C stops it)", flush=True)
    try:
        signal.sigwait(stop_signals)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
