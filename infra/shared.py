"""The facts that the service and the infrastructure share, read from the service's own module.

`service/whisper_api/contract.py` has no dependencies; loading it by file path keeps the Pulumi
program free of the service's packages (FastAPI, the engines) while never copying its values.
"""

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_DIR = REPO_ROOT / "service"
CONTRACT_PATH = SERVICE_DIR / "whisper_api" / "contract.py"


def _load_contract() -> ModuleType:
    spec = importlib.util.spec_from_file_location("whisper_api_contract", CONTRACT_PATH)
    if spec is None or spec.loader is None:  # pragma: no cover - the file is part of the repository
        raise ImportError(f"cannot load the service contract from {CONTRACT_PATH}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = _load_contract()


def slug(text: str) -> str:
    """A resource-name part from an address or IAM member: `user:a.b@x.com` → `user-a-b-x-com`."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def relative_to_cwd(path: Path) -> str:
    """`path` relative to the working directory: stable across machines, unlike an absolute path.

    Pulumi runs the program from `main` (infra/), tests and scripts from the repository root; build
    contexts given this way land in the state identically on every machine.
    """
    return Path(os.path.relpath(path, Path.cwd())).as_posix()
