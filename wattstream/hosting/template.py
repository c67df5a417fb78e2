"""The template model: what a host needs to know of a deployed SAM template, nothing more.

A template function (:class:`FunctionSpec`: handler, code root, environment, limits), an
event source mapping (:class:`MappingSpec`: its CloudFormation properties, every value
resolved), and a deployed stack's description (:class:`StackDescription`), plus parsing
the template itself. The local runner, the KCL host and the faust host all read these; none
of this needs the local emulator (moto), which only :mod:`wattstream.local.stack` uses to
deploy a template.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class StackError(RuntimeError):
    """The template could not be provisioned on the local stack, with the reason."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the runner needs to call a template function in-process."""

    logical_id: str
    name: str
    arn: str
    handler: str
    code_uri: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]


@dataclass(frozen=True)
class MappingSpec:
    """An event source mapping of the template, every value resolved."""

    logical_id: str
    function_logical_id: str
    properties: dict[str, Any]

    @property
    def source_arn(self) -> str:
        return str(self.properties["EventSourceArn"])

    @property
    def source_kind(self) -> str:
        """``kinesis`` or ``sqs`` (the two sources the local runner implements)."""
        return self.source_arn.split(":")[2]


@dataclass(frozen=True)
class StackDescription:
    """A deployed stack: enough for another process to find and use every resource."""

    stack_name: str
    region: str
    endpoint_url: str
    template_path: str
    resources: dict[str, str]
    outputs: dict[str, str]
    functions: dict[str, FunctionSpec]
    mappings: list[MappingSpec]
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Template resources moto does not emulate (e.g. queue policies, alarms): AWS-only.
    not_emulated: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    def save(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=str))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> StackDescription:
        if not path.exists():
            raise StackError(
                f"no local stack description at {path}: start one with `wattstream stack up` "
                "(or `make run`); a stack started with another WATTSTREAM_STATE_DIR is not "
                "seen here"
            )
        raw = json.loads(path.read_text())
        raw["functions"] = {k: FunctionSpec(**v) for k, v in raw["functions"].items()}
        raw["mappings"] = [MappingSpec(**m) for m in raw["mappings"]]
        return cls(**raw)

    def function_for(self, mapping: MappingSpec) -> FunctionSpec:
        return self.functions[mapping.function_logical_id]


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML template, short-form tags (``!Ref``) included."""
    from samtranslator.yaml_helper import yaml_parse

    try:
        return dict(yaml_parse(path.read_text()))
    except Exception as error:  # yaml errors carry the line; keep them
        raise StackError(f"cannot parse template {path}: {error}") from error


def handler_of(config: Mapping[str, Any], sam_props: Mapping[str, Any] | None = None) -> str:
    """``Handler`` of a zip function; the image command of a container-image function.

    ``config`` is ``GetFunctionConfiguration``'s reply; the image command comes from its
    ``ImageConfigResponse`` or, where the emulator leaves that out, from the template.
    """
    if config.get("Handler"):
        return str(config["Handler"])
    command = config.get("ImageConfigResponse", {}).get("ImageConfig", {}).get("Command")
    command = command or (sam_props or {}).get("ImageConfig", {}).get("Command") or []
    if not command:
        raise StackError(f"{config['FunctionName']}: neither a Handler nor an image command")
    return str(command[0])
