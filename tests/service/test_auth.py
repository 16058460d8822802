"""Optional Bearer API key: off by default, from env or a mounted file, checked before the body is read."""

import logging
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from whisper_api import contract
from whisper_api.auth import ApiKeyAuth, ApiKeyError, install_auth, require_api_key
from whisper_api.errors import install_error_handlers
from whisper_api.settings import Settings
from whisper_api.telemetry import ACCESS_LOGGER, install_telemetry

KEY = "sk-test-0123456789"


class BodyReads:
    count = 0


def protected_app(settings: Settings) -> tuple[FastAPI, BodyReads]:
    app = FastAPI()
    reads = BodyReads()
    install_error_handlers(app)

    @app.post("/v1/audio/transcriptions", dependencies=[Depends(require_api_key)])
    async def transcribe(request: Request) -> dict[str, int]:
        reads.count += 1
        return {"bytes": len(await request.body())}

    @app.get(contract.HEALTH_PATH)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(contract.READY_PATH)
    async def readyz() -> dict[str, bool]:
        return {"ready": True}

    install_auth(app, settings)
    install_telemetry(app)
    return app, reads


def test_auth_is_off_without_a_key() -> None:
    app, reads = protected_app(Settings(api_key=None, api_key_file=None))
    with TestClient(app) as client:
        assert client.post("/v1/audio/transcriptions", content=b"abc").json() == {"bytes": 3}
        assert client.get(contract.METRICS_PATH).status_code == 200
    assert reads.count == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {KEY}", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}"],
)
def test_wrong_or_missing_key_is_401_in_the_envelope_before_the_body_is_read(
    authorization: str | None,
) -> None:
    app, reads = protected_app(Settings(api_key=KEY))
    headers = {"Authorization": authorization} if authorization is not None else {}
    with TestClient(app) as client:
        response = client.post("/v1/audio/transcriptions", content=b"x" * 10_000, headers=headers)
        metrics = client.get(contract.METRICS_PATH, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert reads.count == 0
    assert metrics.status_code == 401


def test_right_key_passes_and_probes_stay_open() -> None:
    app, reads = protected_app(Settings(api_key=KEY))
    with TestClient(app) as client:
        ok = client.post(
            "/v1/audio/transcriptions", content=b"abcd", headers={"Authorization": f"bearer {KEY}"}
        )
        assert ok.status_code == 200 and ok.json() == {"bytes": 4}
        assert client.get(contract.HEALTH_PATH).status_code == 200
        assert client.get(contract.READY_PATH).status_code == 200
        metrics = client.get(contract.METRICS_PATH, headers={"Authorization": f"Bearer {KEY}"})
        assert metrics.status_code == 200
    assert reads.count == 1


def test_the_key_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app, _ = protected_app(Settings(api_key=KEY))
    with TestClient(app) as client:
        client.post("/v1/audio/transcriptions", content=b"a", headers={"Authorization": f"Bearer {KEY}"})
        client.post(
            "/v1/audio/transcriptions", content=b"a", headers={"Authorization": f"Bearer {KEY}-wrong"}
        )
    assert any(r.name == ACCESS_LOGGER for r in caplog.records)
    assert KEY not in caplog.text
    assert all(KEY not in str(r.__dict__) for r in caplog.records)
    assert KEY not in repr(app.state.auth)


def test_key_from_a_mounted_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "api-key"
    secret.write_text(f"{KEY}\n")
    auth = ApiKeyAuth.from_settings(Settings(api_key=None, api_key_file=secret))
    assert auth.enabled and auth.verify(f"Bearer {KEY}") and not auth.verify("Bearer other")


@pytest.mark.parametrize("content", [None, "  \n"])
def test_an_unusable_key_file_stops_the_start(tmp_path: Path, content: str | None) -> None:
    secret = tmp_path / "api-key"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ApiKeyError, match="WHISPER_API_KEY_FILE"):
        ApiKeyAuth.from_settings(Settings(api_key=None, api_key_file=secret))


def test_the_file_named_by_the_environment_is_read_as_cloud_run_mounts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What infra/service.py sets on Cloud Run: the contract's variable naming a mounted secret file.
    secret = tmp_path / "key"
    secret.write_text(KEY)
    monkeypatch.setenv(contract.ENV_API_KEY_FILE, str(secret))
    monkeypatch.delenv(contract.ENV_API_KEY, raising=False)
    auth = ApiKeyAuth.from_settings(Settings())
    assert auth.enabled and auth.verify(f"Bearer {KEY}")


def test_a_key_and_a_key_file_together_stop_the_start(tmp_path: Path) -> None:
    secret = tmp_path / "api-key"
    secret.write_text(KEY)
    with pytest.raises(ApiKeyError, match="Both WHISPER_API_KEY and WHISPER_API_KEY_FILE are set") as error:
        ApiKeyAuth.from_settings(Settings(api_key=KEY, api_key_file=secret))
    assert KEY not in str(error.value)


def test_dependency_refuses_on_its_own_without_the_middleware() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.state.auth = ApiKeyAuth(KEY)

    @app.get("/v1/thing")
    async def thing(_: Annotated[None, Depends(require_api_key)]) -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as client:
        assert client.get("/v1/thing").status_code == 401
        assert client.get("/v1/thing", headers={"Authorization": f"Bearer {KEY}"}).json() == {"ok": True}
    schema = app.openapi()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_with_a_key_set_readyz_shows_versions_only_to_callers_with_the_key(engines) -> None:
    """The probe stays open (Cloud Run's startup check has no key); what it reveals does not."""
    from tests.support.apps import make_app, started_client

    client = started_client(make_app(engines, api_key=KEY))
    try:
        anonymous = client.get("/readyz")
        wrong = client.get("/readyz", headers={"Authorization": "Bearer wrong"})
        keyed = client.get("/readyz", headers={"Authorization": f"Bearer {KEY}"})
    finally:
        client.__exit__(None, None, None)
    assert anonymous.status_code == wrong.status_code == keyed.status_code == 200
    assert anonymous.json()["ready"] is True
    assert anonymous.json()["versions"] == wrong.json()["versions"] == {}
    assert keyed.json()["versions"]["python"]
