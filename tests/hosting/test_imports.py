"""The hosting layer is production code: it imports without the local emulator and friends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import wattstream.hosting

REPO = Path(__file__).resolve().parents[2]

#: Base-install-only libraries of the local tooling (moto server, dashboard, forecasting).
BLOCKED = ("moto", "streamlit", "prophet", "matplotlib")

_PROGRAM = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = {blocked!r}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: hosting must not need it")
            return None

    sys.meta_path.insert(0, Block())
    import wattstream.hosting as hosting

    names = [hosting.__name__] + [
        m.name for m in pkgutil.walk_packages(hosting.__path__, hosting.__name__ + ".")
    ]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("\\n".join(names))
    """
)


def test_hosting_imports_every_module_without_moto_streamlit_prophet_matplotlib():
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(blocked=BLOCKED)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    expected = {
        "wattstream.hosting."
        + ".".join(p.relative_to(Path(wattstream.hosting.__path__[0])).with_suffix("").parts)
        for p in Path(wattstream.hosting.__path__[0]).rglob("*.py")
        if p.name != "__init__.py"
    }
    assert expected <= imported  # every module file was imported, none skipped


def test_hosting_import_check_fails_when_a_blocked_library_is_imported():
    """The check itself can fail: importing a blocked library under the finder raises."""
    program = _PROGRAM.format(blocked=BLOCKED).replace(
        "import wattstream.hosting as hosting", "import moto\nimport wattstream.hosting as hosting"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "moto is blocked" in result.stderr
