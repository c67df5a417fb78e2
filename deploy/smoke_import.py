"""Import every built zip function the way Lambda will: its code + its layers, nothing else.

Sizes say a build fits; this says it works. Each function's handler module, and every
top-level package of its artifact and layers, is imported by a Python of the Lambda
runtime's version (``python3.12``) started with ``-S`` (no site-packages) and a
``PYTHONPATH`` of the function's folder, its layers' ``python/`` folders and the packages
the runtime provides (boto3). A missing dependency or a wheel for the wrong platform or
Python fails here instead of on the first invocation.

Usage: ``python deploy/smoke_import.py build/sam --python python3.12 --runtime-packages DIR``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from lambda_sizes import load

_NOT_PACKAGES = {"bin", "__pycache__"}


def top_level(folder: Path) -> list[str]:
    """Importable top-level names in a folder (packages and modules, no metadata)."""
    names = set()
    for entry in folder.iterdir():
        if entry.name in _NOT_PACKAGES or entry.name.endswith((".dist-info", ".libs", ".pth")):
            continue
        if entry.is_dir() and entry.name.isidentifier():
            names.add(entry.name)
        elif entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
    return sorted(names)


def check(build_dir: Path, python: str, runtime_packages: Path) -> list[str]:
    """The functions that fail to import (with the error), after printing each result."""
    template = load(build_dir / "template.yaml")
    resources = template["Resources"]
    failures = []
    for logical_id, resource in sorted(resources.items()):
        props = resource.get("Properties", {})
        if resource["Type"] != "AWS::Serverless::Function" or props.get("PackageType") == "Image":
            continue
        paths = [build_dir / str(props["CodeUri"])]
        paths += [
            build_dir / str(resources[entry["Ref"]]["Properties"]["ContentUri"]) / "python"
            for entry in props.get("Layers", [])
        ]
        modules = [str(props["Handler"]).rpartition(".")[0]]
        modules += [name for path in paths for name in top_level(path)]
        code = f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(str(p.resolve()) for p in [*paths, runtime_packages]),
            "PYTHONNOUSERSITE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        result = subprocess.run(  # noqa: S603  # the given interpreter, our own code
            [python, "-S", "-c", code], env=env, cwd=build_dir, capture_output=True, text=True
        )
        if result.returncode:
            error = (result.stderr.strip().splitlines() or ["?"])[-1]
            failures.append(f"{logical_id}: {error}")
            print(f"{logical_id:<28} FAILED  {error}")
        else:
            print(f"{logical_id:<28} ok      {len(modules)} modules imported")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--python", required=True, help="a Python of the Lambda runtime's version")
    parser.add_argument("--runtime-packages", type=Path, required=True, help="boto3 for it")
    args = parser.parse_args(argv)
    failures = check(args.build_dir, args.python, args.runtime_packages)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
