"""The package layout's rules, read from the source with ``ast`` (no module is imported).

- The CLI (``wattstream/cli/``) has no import circle, and no CLI module imports a name
  with a leading underscore from another module (shared names are public).
- Production code (``wattstream/``, ``services/``, ``shared/``) never imports the test
  harness (``testing``, ``tests``) or test-only libraries: they are not in the wheel.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "wattstream" / "cli"
PRODUCTION = ("wattstream", "services", "shared")
#: Top-level packages production code must not import (harness and dev-only libraries).
HARNESS = ("testing", "tests", "hypothesis", "fastapi.testclient", "pytest")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in ``path``,
    at module level or inside functions; relative imports resolved."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    yield from _imports_of(path.read_text(), package)


def _imports_of(source: str, package: str) -> Iterator[tuple[str, str | None, int]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            for alias in node.names:
                yield module, alias.name, node.lineno


def _cli_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in sorted(CLI.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, imported, _ in _imports(path):
            # ``from wattstream.cli import stack`` imports the submodule, not the package
            submodule = f"{module}.{imported}" if imported else None
            target = submodule if submodule in modules else module
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_layout_cli_import_graph_is_acyclic():
    graph = _cli_graph()

    assert {"wattstream.cli.common", "wattstream.cli.root"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    # the root group imports the groups; no group imports it
    entry_points = {"wattstream.cli", "wattstream.cli.__main__"}
    importers = {m for m, targets in graph.items() if "wattstream.cli.root" in targets}
    assert importers <= entry_points


def test_layout_cycle_finder_finds_a_circle():
    """The check above can fail: the old ``cli.py`` <-> ``*_commands.py`` shape is a cycle."""
    old = {"cli": {"ingest_commands"}, "ingest_commands": {"cli"}, "common": set()}

    assert _cycle(old) == ["cli", "ingest_commands", "cli"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _private(module: str, name: str | None) -> bool:
    if module == "__future__":
        return False
    return bool(name and name.startswith("_")) or any(
        part.startswith("_") and part != "__main__" for part in module.split(".")
    )


def test_layout_cli_modules_import_no_private_names():
    private = [
        f"{path.relative_to(ROOT)}:{line} imports {name} from {module}"
        for path in sorted(CLI.rglob("*.py"))
        for module, name, line in _imports(path)
        if _private(module, name)
    ]

    assert private == []


def test_layout_private_check_sees_the_old_private_imports():
    """The check above can fail: what the old command modules imported."""
    source = (
        "from wattstream.cli import _settings, console\n"
        "def f():\n"
        "    from wattstream.ingest_commands import _stack_publisher_and_quarantine\n"
        "from __future__ import annotations\n"
    )

    assert [(m, n) for m, n, _ in _imports_of(source, "wattstream") if _private(m, n)] == [
        ("wattstream.cli", "_settings"),
        ("wattstream.ingest_commands", "_stack_publisher_and_quarantine"),
    ]


def _harness_imports(imports: Iterator[tuple[str, str | None, int]]) -> list[str]:
    return [
        f"{line}: {module}" + (f".{name}" if name else "")
        for module, name, line in imports
        for banned in HARNESS
        if module == banned
        or module.startswith(f"{banned}.")
        or (name is not None and f"{module}.{name}" == banned)
    ]


@pytest.mark.parametrize("top", PRODUCTION)
def test_layout_production_code_imports_no_test_harness(top):
    found = [
        f"{path.relative_to(ROOT)}:{hit}"
        for path in sorted((ROOT / top).rglob("*.py"))
        for hit in _harness_imports(_imports(path))
    ]

    assert found == []


def test_layout_harness_check_sees_harness_imports():
    """The check above can fail: lazy imports, ``from x import y`` forms, test libraries."""
    source = (
        "import json\n"
        "from fastapi import testclient\n"
        "def f():\n"
        "    from testing.tansu import TansuBroker\n"
        "    import hypothesis.strategies\n"
        "from .testing_helpers import x\n"
    )

    assert _harness_imports(_imports_of(source, "wattstream.local")) == [
        "2: fastapi.testclient",
        "4: testing.tansu.TansuBroker",
        "5: hypothesis.strategies",
    ]


def test_cli_entry_point_without_click_names_the_extra_to_install():
    """A base install (no click) gets one line naming the extra, not a traceback."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('click', 'rich'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from wattstream.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "pip install 'wattstream[local]'" in done.stderr
    assert "Traceback" not in done.stderr
