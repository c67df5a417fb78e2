"""The real KCL MultiLangDaemon (Java) as a child process, for the local stack and tests.

``deploy/kcl/install_kclpy.py`` fetches the daemon with Maven into ``build/kcl/jars``
(``amazon-kinesis-client-multilang`` at the version amazon-kclpy pins). This module finds
it, starts ``java ... software.amazon.kinesis.multilang.MultiLangDaemon --properties-file``
in its own process group with its log in a file, and stops it (SIGTERM: the daemon's
shutdown hook ends its record processors and leases) or kills it (SIGKILL: a power cut).

Two things differ from AWS, both because of moto server, never in the properties a
deployment uses:

* the daemon's Kinesis client speaks HTTP/2 only: its endpoint is an
  :class:`~wattstream.local.h2c.H2cFront` before moto;
* its Kinesis client sends CBOR, which moto cannot decode (``UnicodeDecodeError: 'utf-8'
  codec can't decode byte 0xbf in position 0`` in moto, HTTP 500 to the daemon): the JVM
  runs with ``-Daws.cborEnabled=false`` (the AWS SDK's switch to JSON).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from wattstream.settings import PACKAGE_ROOT

#: Where ``deploy/kcl/install_kclpy.py`` copies the daemon's classpath.
JARS_DIR = PACKAGE_ROOT / "build" / "kcl" / "jars"
LOGBACK = PACKAGE_ROOT / "deploy" / "kcl" / "logback.xml"
MAIN_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
#: Appended to the properties on the local stack: the daemon sleeps
#: ``shardSyncIntervalMillis`` (60 s by default) after its first shard sync before it takes
#: any lease; 1 s where the streams only change when we change them.
LOCAL_TUNING = (
    "# The local stack: take the first leases without a minute's wait.\n"
    "shardSyncIntervalMillis = 1000\n"
)
#: JVM flags for moto only (see the module docstring).
LOCAL_JVM_FLAGS = ("-Daws.cborEnabled=false",)


def missing(jars: Path = JARS_DIR) -> str | None:
    """Why the daemon cannot run here (one line naming what to install), or None."""
    if shutil.which("java") is None:
        return (
            "the KCL MultiLangDaemon needs Java: install a JDK 17+ and Maven"
            " (apt-get install openjdk-17-jdk-headless maven), then run"
            " `python deploy/kcl/install_kclpy.py`"
        )
    if not any(jars.glob("amazon-kinesis-client-multilang-*.jar")):
        return (
            f"the KCL MultiLangDaemon's jars are not in {jars}: install Maven"
            " (apt-get install maven) and run `python deploy/kcl/install_kclpy.py`"
        )
    return None


def version(jars: Path = JARS_DIR) -> str:
    """``amazon-kinesis-client-multilang 3.1.3`` (from the jar that was fetched)."""
    for jar in jars.glob("amazon-kinesis-client-multilang-*.jar"):
        match = re.fullmatch(r"amazon-kinesis-client-multilang-(.+)\.jar", jar.name)
        if match:
            return f"amazon-kinesis-client-multilang {match.group(1)}"
    raise FileNotFoundError(missing(jars) or f"no daemon jar in {jars}")


def command(properties: Path, *, local: bool, jars: Path = JARS_DIR) -> list[str]:
    """The daemon's command line (``local``: with moto's JVM flags)."""
    java = shutil.which("java") or "java"
    flags = [*LOCAL_JVM_FLAGS] if local else []
    return [java, *flags, f"-Dlogback.configurationFile={LOGBACK}", "-cp", f"{jars}/*",
            MAIN_CLASS, "--properties-file", str(properties)]  # fmt: skip


class KclDaemon:
    """One MultiLangDaemon process: ``start()``, ``stop()`` (clean) or ``kill()`` (-9).

    ``properties`` is the rendered text; the daemon's log (its own and its record
    processors' stderr, which it copies) goes to ``workdir/<name>.log``.
    """

    def __init__(
        self,
        properties: str,
        workdir: Path,
        *,
        name: str = "kcl-daemon",
        env: Mapping[str, str] | None = None,
        local: bool = True,
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.env = dict(os.environ if env is None else env)
        self.local = local
        workdir.mkdir(parents=True, exist_ok=True)
        self.properties_path = workdir / f"{name}.properties"
        self.properties_path.write_text(properties)
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603  # our own command line
            command(self.properties_path, local=self.local),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(PACKAGE_ROOT),
            start_new_session=True,  # its record processors share its process group
        )
        log.close()
        self.starts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` until true; fail with the log's tail if the daemon died."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}) before"
                                   f" {what}; log tail:\n{self.log()[-4000:]}")  # fmt: skip
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {what} in {timeout:.0f} s;"
                                   f" log tail:\n{self.log()[-4000:]}")  # fmt: skip
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the daemon only: its record processors see stdin close and exit."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(30)
            self._reap_group(grace=30)

    def kill_all(self) -> None:
        """SIGKILL the daemon and its record processors at once (a power cut)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def processors(self) -> list[int]:
        """Process ids of the record processors the daemon has started (Linux ``/proc``)."""
        if not self.running():
            return []
        assert self.process is not None
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM: the daemon's shutdown hook shuts its processors down and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._reap_group(grace=10)

    def _reap_group(self, grace: float) -> None:
        """Wait for the processors the daemon started; kill those still there after ``grace``."""
        assert self.process is not None
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> KclDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
