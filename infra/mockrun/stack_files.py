"""`Pulumi.yaml` and `Pulumi.<stack>.yaml` read the way the pulumi CLI hands them to the program."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.shared import REPO_ROOT


def project_name(root: Path = REPO_ROOT) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def load_stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """`Pulumi.<stack>.yaml`'s config as the CLI hands it to a program: every value a string."""
    document = yaml.safe_load(stack_file(stack, root).read_text()) or {}
    return to_pulumi_config(document.get("config") or {})


def to_pulumi_config(values: Mapping[str, Any]) -> dict[str, str]:
    """YAML values → Pulumi's wire format: strings as-is, booleans lowercase, the rest as JSON."""
    result: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and "secure" in value:
            raise ValueError(f"{key} is an encrypted secret; the mock runtime cannot decrypt it")
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, bool):
            result[key] = "true" if value else "false"
        else:
            result[key] = json.dumps(value)
    return result
