"""Check every built Lambda artifact against Lambda's size limits.

A zip function's code plus all its layers must stay within 250 MB unzipped (262,144,000
bytes; Lambda counts the function and every layer together). A container-image function
may be up to 10 GB and is built by Docker, not here: it is listed, not measured.

``python deploy/lambda_sizes.py build/sam`` reads the template ``sam build`` wrote there,
prints one line per function (code, layers, total, share of the limit) and a JSON summary
as its last line, and exits 1 if a zip function is over the limit or was not built.
``--list-images TEMPLATE`` prints the container-image functions, which ``deploy/check.sh``
excludes from ``sam build`` (they need Docker).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Lambda's quota for a zip package, function and layers together, unzipped.
ZIP_LIMIT_BYTES = 262_144_000
MB = 1_000_000


@dataclass(frozen=True)
class FunctionSize:
    """One function's artifact sizes in bytes (``None`` for a container image)."""

    function: str
    package_type: str
    code_bytes: int | None
    layer_bytes: int | None
    total_bytes: int | None

    @property
    def over(self) -> bool:
        return self.total_bytes is not None and self.total_bytes > ZIP_LIMIT_BYTES


def load(template: Path) -> dict[str, Any]:
    """A SAM template, short-form tags (``!Ref``) included."""
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(template.read_text()))


def tree_bytes(folder: Path) -> int:
    """Unzipped size: the bytes of every file (what Lambda counts), not disk blocks."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} was not built")
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _layer_id(entry: Any) -> str:
    if isinstance(entry, dict) and "Ref" in entry:
        return str(entry["Ref"])
    raise ValueError(f"layer {entry!r} is not a !Ref to a layer of this template")


def image_functions(template: dict[str, Any]) -> list[str]:
    """Container-image functions: ``sam build`` needs Docker for them."""
    return sorted(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and resource.get("Properties", {}).get("PackageType", "Zip") == "Image"
    )


def measure(build_dir: Path) -> list[FunctionSize]:
    """Sizes of every function in the template ``sam build`` wrote to ``build_dir``."""
    template = load(build_dir / "template.yaml")
    resources = template["Resources"]
    globals_ = template.get("Globals", {}).get("Function", {})
    sizes = []
    for logical_id, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        if props.get("PackageType", "Zip") == "Image":
            sizes.append(FunctionSize(logical_id, "Image", None, None, None))
            continue
        code = tree_bytes(build_dir / str(props.get("CodeUri", globals_.get("CodeUri", ""))))
        layers = 0
        for entry in props.get("Layers", globals_.get("Layers", [])):
            layer = resources[_layer_id(entry)]["Properties"]
            layers += tree_bytes(build_dir / str(layer["ContentUri"]))
        sizes.append(FunctionSize(logical_id, "Zip", code, layers, code + layers))
    return sizes


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / MB:.1f}"


def report(sizes: list[FunctionSize]) -> str:
    lines = [
        f"{'function':<28} {'type':<6} {'code MB':>8} {'layers MB':>10} {'total MB':>9}  limit"
    ]
    for size in sizes:
        if size.total_bytes is None:
            verdict = "container image (10 GB limit; built by Docker, not here)"
        else:
            share = 100 * size.total_bytes / ZIP_LIMIT_BYTES
            verdict = f"{share:.0f} % of 250 MB" + ("  OVER THE LIMIT" if size.over else "")
        lines.append(
            f"{size.function:<28} {size.package_type:<6} {_mb(size.code_bytes):>8} "
            f"{_mb(size.layer_bytes):>10} {_mb(size.total_bytes):>9}  {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", type=Path, nargs="?", help="sam build's --build-dir")
    parser.add_argument("--list-images", type=Path, metavar="TEMPLATE")
    args = parser.parse_args(argv)
    if args.list_images:
        print(" ".join(image_functions(load(args.list_images))))
        return 0
    if args.build_dir is None:
        parser.error("give the build folder (or --list-images TEMPLATE)")
    try:
        sizes = measure(args.build_dir)
    except FileNotFoundError as error:
        print(f"lambda sizes: {error}", file=sys.stderr)
        return 1
    print(report(sizes))
    over = [s.function for s in sizes if s.over]
    print(
        json.dumps(
            {"limit_bytes": ZIP_LIMIT_BYTES, "over": over, "functions": [asdict(s) for s in sizes]}
        )
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
