"""Install the real ``amazon_kclpy`` where Maven Central cannot be reached (CI, tests).

amazon-kclpy is a source distribution whose ``setup.py`` downloads the MultiLangDaemon's
Java jars (86 of them, listed as dependencies in its ``pom.xml``) while it builds, from
``$KCL_MVN_REPO_SEARCH_URL`` (default: Maven Central) + the Maven layout path of each jar.
The Python package itself needs none of them: only the Java daemon does, and it is not
run here. So this script

1. downloads the sdist from PyPI (``pip download``),
2. reads its ``pom.xml`` the way its ``setup.py`` does (``${...}`` version properties
   substituted) and creates an empty placeholder jar at each Maven path it will request,
   under ``build/kclpy/maven/``,
3. installs the sdist with ``KCL_MVN_REPO_SEARCH_URL=file://.../build/kclpy/maven/``.

The installed package then carries placeholder jars: fine for the Python record
processors and their tests, useless for the daemon. A real deployment installs the
``kcl`` extra (``pip install 'wattstream[kcl]'``) where Maven Central is reachable, so the
real jars are downloaded (see the README's KCL section).

Usage: ``python deploy/kcl/install_kclpy.py [--python .venv/bin/python] [--version 3.2.0]``.
Does nothing if that version is already installed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET  # our own download of a PyPI sdist
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = "3.2.0"
_POM = "{http://maven.apache.org/POM/4.0.0}"


def jar_paths(pom_xml: bytes) -> list[str]:
    """Maven paths (``group/as/path/artifact/version/artifact-version.jar``) of the pom's deps.

    Same rules as amazon-kclpy's ``setup.py``: versions given as ``${property}`` are
    looked up among the pom's properties whose tag contains ``version``.
    """
    root = ET.fromstring(pom_xml)  # noqa: S314  # trusted: the sdist we just downloaded
    properties_node = root.find(f"{_POM}properties")
    properties = {
        f"${{{child.tag.replace(_POM, '')}}}": child.text or ""
        for child in (properties_node.iter() if properties_node is not None else [])
        if "version" in child.tag
    }
    paths = []
    for dependency in root.iter(f"{_POM}dependency"):
        group, artifact, version = (
            properties.get(text, text)
            for text in (
                (dependency.findtext(f"{_POM}{attribute}") or "").strip()
                for attribute in ("groupId", "artifactId", "version")
            )
        )
        paths.append(f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar")
    return paths


def installed_version(python: str) -> str | None:
    probe = "import importlib.metadata as m; print(m.version('amazon-kclpy'))"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)  # noqa: S603
    return result.stdout.strip() if result.returncode == 0 else None


def install(python: str, version: str, workdir: Path) -> None:
    sdists = workdir / "sdist"
    subprocess.run(  # noqa: S603  # the given interpreter's pip
        [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-binary", ":all:", f"amazon-kclpy=={version}", "--dest", str(sdists)],
        check=True,
    )  # fmt: skip
    (sdist,) = sdists.glob(f"amazon*kclpy-{version}.tar.gz")
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/pom.xml"))
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{sdist} has no readable pom.xml")
        paths = jar_paths(extracted.read())
    maven = (workdir / "maven").resolve()
    for path in paths:
        jar = maven / path
        jar.parent.mkdir(parents=True, exist_ok=True)
        jar.touch()
    print(f"{len(paths)} placeholder jars under {maven}")
    environment = {**os.environ, "KCL_MVN_REPO_SEARCH_URL": f"{maven.as_uri()}/"}
    subprocess.run(  # noqa: S603  # the given interpreter's pip
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(sdist)],
        check=True,
        env=environment,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to install into")
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "kclpy")
    args = parser.parse_args(argv)
    if installed_version(args.python) == args.version:
        print(f"amazon-kclpy {args.version} already installed")
        return
    install(args.python, args.version, args.workdir)
    print(f"amazon-kclpy {installed_version(args.python)} installed (placeholder jars)")


if __name__ == "__main__":
    main()
