"""Probes and the models: `/healthz` (alive), `/readyz` (model loaded and warmed), `/v1/models[/{id}]`.

`/readyz` is the one probe Cloud Run's startup check uses; what it reports (`readiness`) is
measured once when the engine loads, so every probe stays cheap. The model names come from
`served_models`, the same lookup the audio routes check a request's `model` against.
"""

from http import HTTPStatus

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from whisper_api import contract
from whisper_api.deps import ReadinessDep, ServedModelsDep
from whisper_api.errors import ERROR_RESPONSES
from whisper_api.schemas import ErrorResponse, Liveness, ModelCard, ModelList, Readiness
from whisper_api.served_models import check_served, model_card, model_list

router = APIRouter()


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
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    """200 once the model is loaded and warmed, 503 before (or if loading failed, with the reason)."""
    status = HTTPStatus.OK if readiness.ready else HTTPStatus.SERVICE_UNAVAILABLE
    return JSONResponse(readiness.model_dump(), status_code=status)


@router.get(
    contract.MODELS_PATH,
    response_model=ModelList,
    tags=["models"],
    summary="List models",
    responses={HTTPStatus.INTERNAL_SERVER_ERROR: ERROR_RESPONSES[HTTPStatus.INTERNAL_SERVER_ERROR]},
)
async def list_models(names: ServedModelsDep) -> ModelList:
    """What this instance serves, in OpenAI's list shape: the served model, then its aliases
    (`whisper-1`, `gpt-4o-transcribe`, ...; WHISPER_MODEL_ALIASES)."""
    return model_list(names)


@router.get(
    contract.MODEL_PATH,
    response_model=ModelCard,
    tags=["models"],
    summary="Retrieve a model",
    responses={
        HTTPStatus.NOT_FOUND: {"model": ErrorResponse, "description": "Not served here (`model_not_found`)."},
        HTTPStatus.INTERNAL_SERVER_ERROR: ERROR_RESPONSES[HTTPStatus.INTERNAL_SERVER_ERROR],
    },
)
async def retrieve_model(model: str, names: ServedModelsDep) -> ModelCard:
    """One model by name (OpenAI `models.retrieve`): the served model or any accepted alias."""
    check_served(model, names, HTTPStatus.NOT_FOUND)
    return model_card(model)
