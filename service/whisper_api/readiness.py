"""What `/readyz` reports: the engine, model, hardware and versions, measured once after loading.

The hardware probes (ctranslate2's CUDA device count, torch if the engine already imported it,
nvidia-smi for the GPU's name) run once when the engine loads, so every probe stays cheap.
"""

import platform
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any

from whisper_api import __version__
from whisper_api.engines.base import Engine
from whisper_api.schemas import Readiness


def not_ready(settings_engine: str) -> Readiness:
    return Readiness(ready=False, engine=settings_engine, versions=_versions(settings_engine))


def describe_ready(engine: Engine) -> Readiness:
    """Measured once after loading: the engine, model, hardware and versions /readyz reports."""
    cuda_available, gpu_name = _cuda()
    return Readiness(
        ready=True,
        engine=engine.name,
        model=engine.model,
        device=engine.device,
        compute_type=engine.compute_type,
        cuda_available=cuda_available,
        gpu_name=gpu_name,
        versions=_versions(engine.name),
    )


def _versions(engine_name: str) -> dict[str, str]:
    versions = {"service": __version__, "python": platform.python_version()}
    for package in (engine_name, "ctranslate2" if engine_name == "faster-whisper" else "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _cuda() -> tuple[bool, str | None]:
    """CUDA visibility without importing torch when the engine has not already done so."""
    try:
        import ctranslate2

        count = ctranslate2.get_cuda_device_count()
    except (ImportError, RuntimeError):
        count = 0
    torch: Any = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return True, torch.cuda.get_device_name(0)
    if count == 0:
        return False, None
    return True, _nvidia_smi_gpu_name()


def _nvidia_smi_gpu_name() -> str | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run(
            [executable, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.splitlines()[0].strip() if result.stdout.strip() else None
