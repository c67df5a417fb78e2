"""Stage one Lambda artifact: our packages plus the wheels it needs, for Lambda's platform.

``sam build`` runs ``deploy/functions/Makefile`` (``BuildMethod: makefile``) from the
repository root; each target calls this script. Why a script and not SAM's pip builder:

* the code root is the repository (handlers are ``services.<service>.shells...``), and
  SAM's builder would copy the whole repository (virtualenv included) for every function;
  here each function gets only its own service package;
* the shared code layer holds ``shared/`` and the common dependencies, and a function must
  not ship a second copy of them (Lambda counts function + layers against 250 MB). The
  function's requirements are resolved TOGETHER with the layer's (one consistent set of
  versions) and only what the layer does not hold is installed;
* wheels are chosen for Lambda's platform (python3.12 on Amazon Linux 2023, glibc 2.34,
  x86_64) whatever machine builds them: ``--only-binary`` with explicit platform tags, so no
  container is needed.

``WATTSTREAM_CONSTRAINTS`` (a pip constraints file; ``deploy/check.sh`` writes one from the
project's virtualenv) pins the versions the test suite ran with.

Usage: ``python deploy/functions/stage.py TARGET_DIR --package services/ingest
--requirements archive [--layer]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REQUIREMENTS = HERE / "requirements"
LAYER_REQUIREMENTS = REQUIREMENTS / "layer.txt"

#: The Lambda runtime the artifacts are built for (must match the template's Runtime).
PYTHON_VERSION = "3.12"
#: Amazon Linux 2023 has glibc 2.34: every manylinux wheel up to that runs there.
PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 35)))
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def _pip(*args: str) -> list[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    constraints = os.environ.get("WATTSTREAM_CONSTRAINTS")
    if constraints:
        command += ["--constraint", constraints]
    return command


def resolve(*requirement_files: Path) -> dict[str, str]:
    """Name -> version of everything these requirements install on Lambda's platform."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report)]
        for path in requirement_files:
            args += ["--requirement", str(path)]
        subprocess.run(_pip(*args), check=True)  # noqa: S603  # our own pip command
        installed = json.loads(report.read_text())["install"]
    return {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in installed
    }


def install_requirements(target: Path, requirements: Path, *, layer: bool) -> list[str]:
    """Install what ``requirements`` needs beyond the layer; returns the pins installed."""
    if layer:
        wanted = resolve(LAYER_REQUIREMENTS)
    else:
        in_layer = resolve(LAYER_REQUIREMENTS)
        together = resolve(LAYER_REQUIREMENTS, requirements)
        clash = {n: (v, together[n]) for n, v in in_layer.items() if together.get(n, v) != v}
        if clash:  # the layer's copy would shadow or be shadowed: refuse, name them
            raise SystemExit(f"{requirements.name} needs other versions than the layer: {clash}")
        wanted = {n: v for n, v in together.items() if n not in in_layer}
    pins = [f"{name}=={version}" for name, version in sorted(wanted.items())]
    if pins:
        args = ["install", "--quiet", "--no-deps", "--no-compile", "--target", str(target)]
        subprocess.run(_pip(*args, *pins), check=True)  # noqa: S603  # pins we resolved
    return pins


def copy_package(package: str, target: Path) -> None:
    """Copy ``a/b`` (a package folder of the repository) with the ``__init__`` of its parents."""
    source = ROOT / package
    if not (source / "__init__.py").is_file():
        raise SystemExit(f"{package} is not a package of this repository")
    destination = target / package
    for parent in reversed(Path(package).parents[:-1]):
        (target / parent).mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / parent / "__init__.py", target / parent / "__init__.py")
    shutil.copytree(source, destination, ignore=_IGNORED, dirs_exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="the artifact folder (sam's ARTIFACTS_DIR)")
    parser.add_argument("--package", action="append", default=[], help="a repository package")
    parser.add_argument("--requirements", required=True, help="name of requirements/<NAME>.txt")
    parser.add_argument(
        "--layer", action="store_true", help="a layer: everything goes under python/"
    )
    args = parser.parse_args(argv)
    requirements = REQUIREMENTS / f"{args.requirements}.txt"
    if not requirements.is_file():
        raise SystemExit(f"no requirements file {requirements}")
    root = args.target / "python" if args.layer else args.target
    root.mkdir(parents=True, exist_ok=True)
    for package in args.package:
        copy_package(package, root)
    pins = install_requirements(root, requirements, layer=args.layer)
    print(f"staged {', '.join(args.package) or '(no package)'} + {len(pins)} wheels into {root}")


if __name__ == "__main__":
    main()
