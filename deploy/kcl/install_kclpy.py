"""Fetch the KCL MultiLangDaemon's jars with Maven and install amazon-kclpy against them.

amazon-kclpy is a source distribution whose ``setup.py`` downloads the daemon's jars (the
dependencies listed in its own ``pom.xml``) while it builds, from
``$KCL_MVN_REPO_SEARCH_URL`` + the Maven layout path of each jar. This script

1. resolves ``deploy/kcl/pom.xml`` (``amazon-kinesis-client-multilang`` at the version
   amazon-kclpy pins) with ``mvn dependency:copy-dependencies`` into a project-local Maven
   repository (``build/kcl/m2``) and copies the daemon's classpath to ``build/kcl/jars``;
2. downloads the amazon-kclpy sdist, resolves the exact jars its ``pom.xml`` pins into the
   same local repository (``mvn dependency:resolve``, not transitive);
3. installs the sdist with ``KCL_MVN_REPO_SEARCH_URL=file://.../build/kcl/m2/``.

Both steps are cached: Maven only downloads what the local repository lacks, and nothing
is reinstalled when that amazon-kclpy version is already installed with real jars.

Without Maven (or Java) the daemon cannot be fetched: the script says so in one line and
installs amazon-kclpy the way pip does (its setup.py downloads the jars itself), so the
Python record processors still work; the tests that need the daemon skip, naming what to
install (``testing/kcl_daemon.py``).

Usage: ``python deploy/kcl/install_kclpy.py [--python .venv/bin/python]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET  # our own download of a PyPI sdist
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: amazon-kclpy 3.1.3 pins KCL 3.1.3, the newest KCL line Maven Central serves here
#: (amazon-kclpy 3.2.0 pins KCL 3.5.3, which is not served: "Could not find artifact
#: software.amazon.kinesis:amazon-kinesis-client-multilang:jar:3.5.3 in central").
VERSION = "3.1.3"
POM = ROOT / "deploy" / "kcl" / "pom.xml"
BUILD = ROOT / "build" / "kcl"
_POM = "{http://maven.apache.org/POM/4.0.0}"


def pinned_pom(pom_xml: bytes) -> bytes:
    """amazon-kclpy's pom made resolvable by Maven (it has no coordinates of its own)."""
    root = ET.fromstring(pom_xml)  # noqa: S314  # trusted: the sdist we just downloaded
    ET.register_namespace("", _POM.strip("{}"))
    for position, (tag, text) in enumerate(
        (("groupId", "wattstream"), ("artifactId", "amazon-kclpy-pins"), ("version", "1"),
         ("packaging", "pom")),
        start=1,
    ):  # fmt: skip
        element = ET.Element(f"{_POM}{tag}")
        element.text = text
        root.insert(position, element)
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


def installed_version(python: str) -> str | None:
    probe = "import importlib.metadata as m; print(m.version('amazon-kclpy'))"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)  # noqa: S603
    return result.stdout.strip() if result.returncode == 0 else None


def installed_jars(python: str) -> int:
    """How many non-empty jars the installed amazon_kclpy carries (0: placeholders/none)."""
    probe = (
        "import amazon_kclpy, pathlib; d = pathlib.Path(amazon_kclpy.__file__).parent / 'jars';"
        "print(sum(1 for j in d.glob('*.jar') if j.stat().st_size))"
    )
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)  # noqa: S603
    return int(result.stdout.strip() or 0) if result.returncode == 0 else 0


def maven(*args: str, pom: Path, repository: Path) -> None:
    subprocess.run(  # noqa: S603  # Maven, found on PATH by main()
        [
            shutil.which("mvn") or "mvn",
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dmaven.repo.local={repository}",
            *args,
        ],
        check=True,
    )


def fetch_daemon(build: Path) -> Path:
    """Resolve the daemon into ``build/m2`` and its classpath into ``build/jars``."""
    repository, jars = build / "m2", build / "jars"
    maven("dependency:copy-dependencies", f"-DoutputDirectory={jars}", "-DoverWriteIfNewer=true",
          pom=POM, repository=repository)  # fmt: skip
    print(f"KCL daemon: {sum(1 for _ in jars.glob('*.jar'))} jars in {jars}")
    return repository


def download_sdist(python: str, version: str, build: Path) -> Path:
    sdists = build / "sdist"
    subprocess.run(  # noqa: S603  # the given interpreter's pip
        [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-binary", ":all:", f"amazon-kclpy=={version}", "--dest", str(sdists)],
        check=True,
    )  # fmt: skip
    (sdist,) = sdists.glob(f"amazon*kclpy-{version}.tar.gz")
    return sdist


def install(python: str, version: str, build: Path) -> None:
    repository = fetch_daemon(build)
    sdist = download_sdist(python, version, build)
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/pom.xml"))
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{sdist} has no readable pom.xml")
        pins = build / "amazon-kclpy-pom.xml"
        pins.write_bytes(pinned_pom(extracted.read()))
    maven("dependency:resolve", "-DexcludeTransitive=true", pom=pins, repository=repository)
    if installed_version(python) == version and installed_jars(python):
        print(f"amazon-kclpy {version} already installed with its jars")
        return
    environment = {**os.environ, "KCL_MVN_REPO_SEARCH_URL": f"{repository.resolve().as_uri()}/"}
    subprocess.run(  # noqa: S603  # the given interpreter's pip
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--force-reinstall", "--no-deps", "--no-cache-dir", str(sdist)],
        check=True,
        env=environment,
    )  # fmt: skip
    print(f"amazon-kclpy {installed_version(python)} installed, {installed_jars(python)} jars")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to install into")
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--build", type=Path, default=BUILD)
    args = parser.parse_args(argv)
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        print(
            f"KCL daemon not fetched: {' and '.join(missing)} not found (install a JDK 17+ and"
            " Maven, e.g. apt-get install openjdk-17-jdk-headless maven); amazon-kclpy is"
            " installed from PyPI as is, its daemon tests will skip"
        )
        if installed_version(args.python) != args.version:
            subprocess.run(  # noqa: S603  # the given interpreter's pip
                [args.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 f"amazon-kclpy=={args.version}"],
                check=True,
            )  # fmt: skip
        return
    install(args.python, args.version, args.build)


if __name__ == "__main__":
    main()
