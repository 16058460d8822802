"""The real app in-process, on the session's already-loaded engines (FastAPI's TestClient)."""

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.engines import LazyEngines, engine_settings


def make_app(engines: LazyEngines, engine_name: str = "faster-whisper", **overrides: object) -> FastAPI:
    """The real app on an already-loaded engine (the lifespan still runs and sets readiness)."""
    from whisper_api.app import create_app

    settings = engine_settings(engine_name, **overrides)
    return create_app(settings, load_engine=lambda _settings: engines[engine_name])


def started_client(app: FastAPI) -> TestClient:
    """A TestClient whose lifespan has run and whose engine is ready."""
    client = TestClient(app)
    client.__enter__()
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.01)
    return client
