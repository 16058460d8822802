"""What a route may ask for, as `Annotated` aliases: `settings: SettingsDep`, `pipeline: PipelineDep`.

Everything a request needs lives on `app.state` (set by `app.create_app` and its lifespan); these
read it, so routes never touch `request.app.state` themselves and tests see one place to look.
"""

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from whisper_api.diarization.diarizer import Diarizer
from whisper_api.engines.base import Engine
from whisper_api.errors import model_not_ready
from whisper_api.pipeline import Pipeline
from whisper_api.realtime.service import RealtimeService
from whisper_api.scheduler import Scheduler
from whisper_api.schemas import Readiness
from whisper_api.served_models import served_model_names
from whisper_api.settings import Settings
from whisper_api.timing import StepTimer, request_timer


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_timer(request: Request) -> StepTimer:
    return request_timer(request.scope)


TimerDep = Annotated[StepTimer, Depends(get_timer)]


def get_readiness(request: Request) -> Readiness:
    """The readiness as this caller may see it: with an API key set, the versions (what an attacker
    would look up vulnerabilities for) only for callers that send the key."""
    readiness: Readiness = request.app.state.readiness
    auth = getattr(request.app.state, "auth", None)
    if auth is not None and auth.enabled and not auth.verify(request.headers.get("authorization")):
        return readiness.model_copy(update={"versions": {}})
    return readiness


ReadinessDep = Annotated[Readiness, Depends(get_readiness)]


def get_ready_engine(request: Request) -> Engine:
    """The loaded engine; 503 while the model is still loading."""
    engine: Engine | None = request.app.state.engine
    if engine is None or not request.app.state.readiness.ready:
        raise model_not_ready()
    return engine


ReadyEngineDep = Annotated[Engine, Depends(get_ready_engine)]


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]


def get_diarizer(request: Request) -> Diarizer | None:
    """The speaker diarizer, or None where its ONNX graph is not installed."""
    return request.app.state.diarizer


DiarizerDep = Annotated[Diarizer | None, Depends(get_diarizer)]


def get_served_models(request: Request, settings: SettingsDep) -> list[str]:
    """The names this instance answers to (the model is known from settings while it loads)."""
    return served_model_names(
        request.app.state.engine, settings, diarization=request.app.state.diarizer is not None
    )


ServedModelsDep = Annotated[list[str], Depends(get_served_models)]


def get_pipeline(
    settings: SettingsDep,
    engine: ReadyEngineDep,
    scheduler: SchedulerDep,
    timer: TimerDep,
    diarizer: DiarizerDep,
) -> Pipeline:
    return Pipeline(engine, scheduler, timer, max_audio_seconds=settings.max_audio_seconds, diarizer=diarizer)


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


def get_realtime(connection: HTTPConnection) -> RealtimeService:
    """For WebSocket routes too (an HTTPConnection is either)."""
    return connection.app.state.realtime


RealtimeDep = Annotated[RealtimeService, Depends(get_realtime)]
