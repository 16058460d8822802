"""The FastAPI application: routes, error envelope, upload limit, and the engine loaded once.

The lifespan starts loading (and warming) the engine in a background thread, so the server
answers `/healthz` at once and `/readyz` turns 200 only when the model can serve. Everything a
request needs lives on `app.state`: `settings`, `engine`, `scheduler`, `readiness`.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from whisper_api import __version__
from whisper_api.admission import install_admission
from whisper_api.auth import install_auth, require_api_key
from whisper_api.diarization import load_diarizer
from whisper_api.engines.base import Engine
from whisper_api.errors import install_error_handlers
from whisper_api.lifecycle import warm_up_when_idle
from whisper_api.limits import MIB, UploadLimitMiddleware
from whisper_api.memory import upload_budget_bytes
from whisper_api.readiness import describe_ready, not_ready
from whisper_api.request_id import RequestIdMiddleware
from whisper_api.routes import audio, health
from whisper_api.routes.realtime import install_realtime
from whisper_api.scheduler import Scheduler
from whisper_api.settings import Settings, get_settings
from whisper_api.telemetry import install_telemetry

logger = logging.getLogger(__name__)

EngineLoader = Callable[[Settings], Engine]

DESCRIPTION = """
An OpenAI-compatible speech-to-text API on Whisper. Point the official `openai` SDK at
`<this server>/v1` and call `audio.transcriptions.create` or `audio.translations.create`.
Every error uses OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`.
"""


def load_and_warm_up(settings: Settings) -> Engine:
    """The default loader (`engines.load_and_warm_up`, imported only when it runs)."""
    from whisper_api.engines import load_and_warm_up

    return load_and_warm_up(settings)


def create_app(settings: Settings | None = None, *, load_engine: EngineLoader | None = None) -> FastAPI:
    """Build the app; `load_engine` (blocking, run in a thread) replaces the default loader in tests."""
    settings = settings or get_settings()
    loader = load_engine or load_and_warm_up

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.scheduler = Scheduler(
            settings.workers,
            settings.queue_size,
            settings.request_timeout_s,
            queue_bytes=settings.queue_bytes or upload_budget_bytes(),
        )
        app.state.metrics.bind_scheduler(app.state.scheduler)
        app.state.load_finished.clear()
        app.state.loading = asyncio.create_task(_load(app, settings, loader))
        try:
            yield
        finally:
            app.state.loading.cancel()
            if app.state.background_warmup is not None:
                app.state.background_warmup.cancel()
            app.state.scheduler.shutdown()

    app = FastAPI(
        title="Whisper API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={},
        # A trailing slash is a 404 in the envelope, not a 307 to a Location built from the
        # client's own Host header (a redirect anywhere, that a POST would follow with its upload).
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.engine = None
    app.state.diarizer = None  # loaded with the engine when WHISPER_DIARIZATION_MODEL exists
    app.state.background_warmup = None  # the task that runs engine.background_warmup once idle
    app.state.readiness = not_ready(settings.engine)
    app.state.load_finished = asyncio.Event()  # set once loading succeeded or failed
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(audio.router, dependencies=[Depends(require_api_key)])
    # Middleware: the last added runs first.
    # Telemetry → request id → CORS → auth → upload limit → admission → routes.
    install_admission(app)
    app.add_middleware(
        UploadLimitMiddleware,
        max_bytes=int(settings.max_upload_mb * MIB),
        paths=audio.AUDIO_PATHS,
        idle_timeout_s=settings.upload_idle_timeout_s,
        total_timeout_s=settings.request_timeout_s,
    )
    install_auth(app, settings)
    install_cors(app, settings)
    app.add_middleware(RequestIdMiddleware)
    install_telemetry(app)
    install_realtime(app, settings)
    app.openapi = _openapi_without_422(app)  # type: ignore[method-assign]
    return app


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Let the browser origins of WHISPER_CORS_ORIGINS call the API (none by default).

    Outside auth and the limits, so that preflights answer without a key and browsers can read
    the error envelopes (401, 413, 429) too. No cookies are involved: credentials stay off.
    """
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        expose_headers=["x-request-id", "retry-after"],
        max_age=600,
    )


async def _load(app: FastAPI, settings: Settings, loader: EngineLoader) -> None:
    """Load and warm the engine off the event loop; readiness flips only when it can serve."""
    try:
        await _load_engine(app, settings, loader)
    finally:
        app.state.load_finished.set()


async def _load_engine(app: FastAPI, settings: Settings, loader: EngineLoader) -> None:
    try:
        started = time.perf_counter()
        engine = await run_in_threadpool(loader, settings)
        app.state.metrics.record_model(engine, time.perf_counter() - started)
        diarizer = await run_in_threadpool(load_diarizer, settings.diarization_model)
        readiness = await run_in_threadpool(describe_ready, engine)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        logger.exception("the model failed to load")
        app.state.readiness = not_ready(settings.engine).model_copy(update={"error": str(error)})
        app.state.load_error = error
        return
    app.state.engine = engine
    app.state.diarizer = diarizer
    app.state.readiness = readiness
    logger.info("ready: %s %s on %s (%s)", engine.name, engine.model, engine.device, engine.compute_type)
    app.state.background_warmup = asyncio.create_task(warm_up_when_idle(engine, app.state.scheduler))


def _openapi_without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents validation errors as 422; this service answers them with 400 (OpenAI's way)."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for model in audio.RESPONSE_MODELS:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in model_schema.pop("$defs", {}).items():
                    schemas.setdefault(name, definition)
                schemas.setdefault(model.__name__, model_schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
