"""Probes and the models: `/healthz` (alive), `/readyz` (model loaded and warmed), `/v1/models[/{id}]`.

`/readyz` is the one probe Cloud Run's startup check uses; what it reports about the hardware
is measured once when the engine loads, so every probe stays cheap.
"""

import platform
import re
import shutil
import subprocess
import sys
import time
from http import HTTPStatus
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from whisper_api import __version__, contract
from whisper_api.engines.base import Engine
from whisper_api.errors import ERROR_RESPONSES, ApiError
from whisper_api.schemas import ErrorResponse, Liveness, ModelCard, ModelList, Readiness

router = APIRouter()

# Created-at for /v1/models: when this process started (the model has no meaningful date).
_STARTED = int(time.time())
OWNER = "whisper-api"


@router.get(contract.HEALTH_PATH, response_model=Liveness, tags=["probes"], summary="Liveness")
async def healthz() -> Liveness:
    """Answers as long as the process serves HTTP, even while the model loads."""
    return Liveness()


@router.get(
    contract.READY_PATH,
    response_model=Readiness,
    tags=["probes"],
    summary="Readiness",
    responses={HTTPStatus.SERVICE_UNAVAILABLE: {"model": Readiness, "description": "Not ready yet."}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 once the model is loaded and warmed, 503 before (or if loading failed, with the reason)."""
    state = request.app.state
    readiness: Readiness = state.readiness
    status = HTTPStatus.OK if readiness.ready else HTTPStatus.SERVICE_UNAVAILABLE
    return JSONResponse(readiness.model_dump(), status_code=status)


def served_model_names(request: Request) -> list[str]:
    """The served model's name, then the OpenAI names (WHISPER_MODEL_ALIASES) that map to it."""
    engine: Engine | None = request.app.state.engine
    served = engine.model if engine is not None else request.app.state.settings.model
    aliases = [alias for alias in request.app.state.settings.model_aliases if alias != served]
    return [served, *aliases]


_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def is_served(model: str, names: list[str]) -> bool:
    """`model` is the served model or an alias, an alias with a date suffix included
    (`gpt-4o-mini-transcribe-2025-12-15`), as OpenAI names snapshots."""
    return model in names or _DATE_SUFFIX.sub("", model) in names[1:]


def model_not_found(model: str, names: list[str], status: int = HTTPStatus.BAD_REQUEST) -> ApiError:
    return ApiError(
        status,
        f"The model '{model}' does not exist on this server; it serves: {', '.join(names)}.",
        param="model",
        code="model_not_found",
    )


def _card(model: str) -> ModelCard:
    return ModelCard(id=model, created=_STARTED, owned_by=OWNER)


@router.get(
    "/v1/models",
    response_model=ModelList,
    tags=["models"],
    summary="List models",
    responses={HTTPStatus.INTERNAL_SERVER_ERROR: ERROR_RESPONSES[HTTPStatus.INTERNAL_SERVER_ERROR]},
)
async def list_models(names: Annotated[list[str], Depends(served_model_names)]) -> ModelList:
    """What this instance serves, in OpenAI's list shape: the served model, then its aliases
    (`whisper-1`, `gpt-4o-transcribe`, ...; WHISPER_MODEL_ALIASES)."""
    return ModelList(data=[_card(name) for name in names])


@router.get(
    "/v1/models/{model}",
    response_model=ModelCard,
    tags=["models"],
    summary="Retrieve a model",
    responses={
        HTTPStatus.NOT_FOUND: {"model": ErrorResponse, "description": "Not served here (`model_not_found`)."},
        HTTPStatus.INTERNAL_SERVER_ERROR: ERROR_RESPONSES[HTTPStatus.INTERNAL_SERVER_ERROR],
    },
)
async def retrieve_model(model: str, names: Annotated[list[str], Depends(served_model_names)]) -> ModelCard:
    """One model by name (OpenAI `models.retrieve`): the served model or any accepted alias."""
    if not is_served(model, names):
        raise model_not_found(model, names, HTTPStatus.NOT_FOUND)
    return _card(model)


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
