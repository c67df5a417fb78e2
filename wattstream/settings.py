"""Settings of the local tooling (CLI, embedded stack, runner), from WATTSTREAM_* vars."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def default_template() -> Path:
    """deploy/template.yaml of the checkout this package runs from."""
    return PACKAGE_ROOT / "deploy" / "template.yaml"


def default_data_slice() -> Path:
    """The real-data slice shipped in the repository (UCI, April 2007)."""
    return PACKAGE_ROOT / "data" / "uci_household_power_consumption_2007-04.txt.gz"


def shared_data_dir() -> Path:
    """The full real data set beside the checkout (``../shared/data``), if it is there."""
    return PACKAGE_ROOT.parent / "shared" / "data"


def shipped_london_dir() -> Path:
    """The small real London slice shipped in the repository (see data/README.md)."""
    return PACKAGE_ROOT / "data" / "london"


def default_state_dir() -> Path:
    """Where the running stack is recorded when WATTSTREAM_STATE_DIR is not set.

    One place per checkout, whatever the current directory: ``.wattstream`` at the root
    of the checkout this package runs from (``make run`` installs it editable), so
    ``wattstream status`` in any folder finds the stack ``make run`` started. Installed
    from a wheel (no checkout around the package), ``~/.wattstream``.
    """
    if (PACKAGE_ROOT / "pyproject.toml").is_file():
        return PACKAGE_ROOT / ".wattstream"
    return Path.home() / ".wattstream"


class LocalSettings(BaseSettings):
    """Where the local stack listens and keeps its state."""

    model_config = SettingsConfigDict(env_prefix="WATTSTREAM_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=4566, ge=0, le=65535)
    ingest_port: int = Field(default=8080, ge=0, le=65535)
    api_port: int = Field(default=8000, ge=0, le=65535)
    dashboard_port: int = Field(default=8501, ge=0, le=65535)
    region: str = "us-east-1"
    stack_name: str = "wattstream"
    state_dir: Path = Field(default_factory=default_state_dir)
    template: Path = Field(default_factory=default_template)

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """A relative WATTSTREAM_STATE_DIR is taken from the current folder, and named so."""
        return value.expanduser().absolute()

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    def checkpoint_file(self, stack_name: str, created_at: float) -> Path:
        """Checkpoints belong to one stack instance; a new stack starts from scratch."""
        return self.state_dir / f"checkpoints-{stack_name}-{int(created_at)}.json"
