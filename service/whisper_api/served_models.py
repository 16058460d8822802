"""Which model names this instance answers to: the served model, then its OpenAI aliases.

Requests name a model (`whisper-1`, `gpt-4o-transcribe`, a dated snapshot of one); `/v1/models`
lists the same names. One lookup for both, so a name listed is a name accepted.
"""

import re
import time
from datetime import date
from http import HTTPStatus

from whisper_api.engines.base import Engine
from whisper_api.errors import ApiError
from whisper_api.schemas import ModelCard, ModelList
from whisper_api.settings import Settings

# Created-at for /v1/models: when this process started (the model has no meaningful date).
_STARTED = int(time.time())
OWNER = "whisper-api"
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2})$")


def served_model_names(engine: Engine | None, settings: Settings, *, diarization: bool = False) -> list[str]:
    """The served model's name, then the OpenAI names (WHISPER_MODEL_ALIASES) that map to it, then
    (when the diarizer is loaded) the names that add speakers (WHISPER_DIARIZATION_MODEL_ALIASES)."""
    served = engine.model if engine is not None else settings.model
    aliases = [alias for alias in settings.model_aliases if alias != served]
    if diarization:
        aliases += [alias for alias in settings.diarization_model_aliases if alias not in (served, *aliases)]
    return [served, *aliases]


def is_diarization_model(model: str, settings: Settings) -> bool:
    """`model` names the served model with diarization (`gpt-4o-transcribe-diarize`, dated too)."""
    return model in settings.diarization_model_aliases or (
        _DATE_SUFFIX.sub("", model) in settings.diarization_model_aliases
    )


def is_served(model: str, names: list[str]) -> bool:
    """`model` is the served model or an alias, an alias with a date suffix included
    (`gpt-4o-mini-transcribe-2025-12-15`), as OpenAI names snapshots; the date must exist."""
    if model in names:
        return True
    dated = _DATE_SUFFIX.search(model)
    return dated is not None and _is_date(dated.group(1)) and model[: dated.start()] in names[1:]


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def model_not_found(model: str, names: list[str], status: int = HTTPStatus.BAD_REQUEST) -> ApiError:
    return ApiError(
        status,
        f"The model '{model}' does not exist on this server; it serves: {', '.join(names)}.",
        param="model",
        code="model_not_found",
    )


def check_served(model: str, names: list[str], status: int = HTTPStatus.BAD_REQUEST) -> None:
    if not is_served(model, names):
        raise model_not_found(model, names, status)


def model_card(model: str) -> ModelCard:
    return ModelCard(id=model, created=_STARTED, owned_by=OWNER)


def model_list(names: list[str]) -> ModelList:
    return ModelList(data=[model_card(name) for name in names])
