"""How each function is packaged: Makefile targets, requirements, the container image.

``deploy/check.sh`` builds the zip artifacts for real (``sam build``) and measures them;
these static checks run in the fast suite and cover what CI cannot build: the container
image of MonthlyFunction (no Docker here).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT, TEMPLATE
from wattstream.hosting.template import load_template

DEPLOY = ROOT / "deploy"
FUNCTIONS_DIR = DEPLOY / "functions"
RESOURCES = load_template(TEMPLATE)["Resources"]


def _script(name: str) -> ModuleType:
    """A script of deploy/ (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", DEPLOY / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"deploy_{name}"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def make_targets() -> dict[str, list[str]]:
    """``build-<LogicalId>`` -> the stage.py arguments of its recipe."""
    text = (FUNCTIONS_DIR / "Makefile").read_text()
    targets: dict[str, list[str]] = {}
    for match in re.finditer(r"^((?:build-\w+ ?)+):\n\t\$\(STAGE\) (.*)$", text, re.MULTILINE):
        for target in match[1].split():
            targets[target.removeprefix("build-")] = shlex.split(match[2])
    return targets


def _option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_makefile_has_a_target_per_zip_function_and_layer():
    built = {
        k
        for k, v in RESOURCES.items()
        if v["Type"] == "AWS::Serverless::LayerVersion"
        or (
            v["Type"] == "AWS::Serverless::Function"
            and v["Properties"].get("PackageType") != "Image"
        )
    }

    assert set(make_targets()) == built


@pytest.mark.parametrize(("logical_id", "args"), sorted(make_targets().items()))
def test_makefile_target_ships_its_handler_package_and_requirements(logical_id, args):
    (requirements,) = _option(args, "--requirements")
    assert (FUNCTIONS_DIR / "requirements" / f"{requirements}.txt").is_file()
    packages = _option(args, "--package")
    resource = RESOURCES[logical_id]
    if resource["Type"] == "AWS::Serverless::LayerVersion":
        assert "--layer" in args
        assert packages == ["shared"]
        return
    handler = resource["Properties"]["Handler"]
    module = handler.rpartition(".")[0]
    (package,) = packages
    assert module.startswith(package.replace("/", ".") + ".")
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").is_file()


def test_layer_requirements_are_project_dependencies():
    """The layer and functions install only what pyproject declares (same names)."""
    declared = re.findall(r'^\s+"([A-Za-z0-9_.-]+)', (ROOT / "pyproject.toml").read_text(), re.M)
    declared_names = {d.lower() for d in declared}
    for path in (FUNCTIONS_DIR / "requirements").glob("*.txt"):
        for line in path.read_text().splitlines():
            name = re.split(r"[<>=\[; ]", line.strip(), maxsplit=1)[0].lower()
            if name and not name.startswith("#"):
                assert name in declared_names, f"{path.name}: {name} is not in pyproject"


# --- the container image (MonthlyFunction) -----------------------------------------------


def _image_functions() -> dict[str, dict]:
    return {
        k: v
        for k, v in RESOURCES.items()
        if v["Type"] == "AWS::Serverless::Function"
        and v["Properties"].get("PackageType") == "Image"
    }


def _dockerfile(function: dict) -> tuple[Path, list[tuple[str, str]]]:
    """(context folder, [(instruction, arguments)]) with continuation lines joined."""
    metadata = function["Metadata"]
    context = (DEPLOY / metadata["DockerContext"]).resolve()
    text = (context / metadata["Dockerfile"]).read_text()
    text = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return context, instructions


def _ignored(context: Path) -> list[str]:
    """Paths the root .dockerignore lets through (it ignores everything else)."""
    lines = (context / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


@pytest.mark.parametrize("logical_id", sorted(_image_functions()))
def test_image_dockerfile_builds_from_lambda_base_with_the_template_handler(logical_id):
    function = _image_functions()[logical_id]
    context, instructions = _dockerfile(function)
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms == ["public.ecr.aws/lambda/python:3.12"]  # the zip functions' runtime
    (cmd,) = [args for word, args in instructions if word == "CMD"]
    command = function["Properties"]["ImageConfig"]["Command"]
    assert cmd == '["' + '", "'.join(command) + '"]'
    module = command[0].rpartition(".")[0]
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").is_file()
    copied = [args.split()[:-1] for word, args in instructions if word == "COPY"]
    sources = [source for group in copied for source in group]
    assert any(module.replace(".", "/").startswith(s.rstrip("/")) for s in sources)
    allowed = _ignored(context)
    for source in sources:
        assert (context / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    installs = " ".join(args for word, args in instructions if word == "RUN")
    assert "requirements/layer.txt" in installs  # the same common dependencies as the layer


# --- the size check ----------------------------------------------------------------------


def _file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)


def test_lambda_sizes_adds_layers_and_flags_functions_over_the_limit(tmp_path):
    sizes = _script("lambda_sizes")
    (tmp_path / "template.yaml").write_text(
        """
Resources:
  Layer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: Layer}
  Small:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: Small, Layers: [!Ref Layer]}
  Big:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: Big, Layers: [!Ref Layer]}
  Image:
    Type: AWS::Serverless::Function
    Properties: {PackageType: Image}
"""
    )
    _file(tmp_path / "Layer" / "python" / "lib.so", 1_000)
    _file(tmp_path / "Small" / "a.py", 10)
    _file(tmp_path / "Big" / "big.so", sizes.ZIP_LIMIT_BYTES)

    measured = {s.function: s for s in sizes.measure(tmp_path)}

    assert measured["Small"].total_bytes == 1_010
    assert measured["Big"].over
    assert not measured["Small"].over
    assert measured["Image"].total_bytes is None
    assert sizes.main([str(tmp_path)]) == 1
    assert sizes.image_functions(sizes.load(tmp_path / "template.yaml")) == ["Image"]


def test_lambda_sizes_missing_build_fails(tmp_path):
    sizes = _script("lambda_sizes")
    (tmp_path / "template.yaml").write_text(
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: F}\n"
    )

    assert sizes.main([str(tmp_path)]) == 1


def _requirement_names(name: str) -> set[str]:
    names = set()
    for stem in ("layer", name):
        for line in (FUNCTIONS_DIR / "requirements" / f"{stem}.txt").read_text().splitlines():
            found = re.split(r"[<>=\[; ]", line.strip(), maxsplit=1)[0].lower()
            if found and not found.startswith("#"):
                names.add(found)
    return names


@pytest.mark.parametrize(("logical_id", "args"), sorted(make_targets().items()))
def test_function_without_pandas_in_its_requirements_never_imports_it(logical_id, args):
    """pandas is ~70 MB: a handler whose requirements leave it out must not need it."""
    resource = RESOURCES[logical_id]
    (requirements,) = _option(args, "--requirements")
    if resource["Type"] != "AWS::Serverless::Function" or "pandas" in _requirement_names(
        requirements
    ):
        pytest.skip("a layer, or a function that ships pandas")
    module = resource["Properties"]["Handler"].rpartition(".")[0]
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "print('pandas' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
