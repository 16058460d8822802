"""Realtime transcription: `GET /v1/realtime?intent=transcription` (a WebSocket speaking OpenAI's
Realtime events) and `POST /v1/realtime/client_secrets` (short-lived keys for browsers).

Refusals that need no session (no or wrong key, no `intent`, model still loading) are answered
before the upgrade, as HTTP in OpenAI's error envelope; a full instance accepts, sends an `error`
event and closes with 1013 (try again later), so a client never hangs. The session itself lives in
`whisper_api.realtime`; this module only adapts Starlette's WebSocket to it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketState

from whisper_api import contract
from whisper_api.deps import RealtimeDep
from whisper_api.errors import ERROR_RESPONSES, ApiError, error_response, invalid_request, model_not_ready
from whisper_api.realtime import events as ev
from whisper_api.realtime.connection import CLOSE_RESTARTING, CLOSE_TRY_AGAIN_LATER, serve_session
from whisper_api.realtime.inference import SchedulerTranscriber
from whisper_api.realtime.secrets import Grant
from whisper_api.realtime.service import RealtimeService
from whisper_api.realtime.session import RealtimeSession, SessionError
from whisper_api.settings import Settings

logger = logging.getLogger(__name__)

BROWSER_KEY_PROTOCOL = "openai-insecure-api-key."  # OpenAI's subprotocol for a key from a browser
REALTIME_PROTOCOL = "realtime"

router = APIRouter(tags=["realtime"])


def install_realtime(app: Any, settings: Settings) -> None:
    """Mount the routes; needs `app.state.auth` and `app.state.metrics` (installed first)."""
    app.state.realtime = RealtimeService(settings, app.state, app.state.auth, app.state.metrics.registry)
    app.include_router(router)
    if settings.demo_page:
        app.include_router(demo_router)


# --- the WebSocket ---------------------------------------------------------------------------


class _Transport:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        return message.get("text") if message.get("text") is not None else message.get("bytes", b"")

    async def send(self, text: str) -> None:
        await self.websocket.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close(code=code, reason=reason)


def _credentials(websocket: WebSocket) -> tuple[str | None, bool]:
    """The key or client secret the client presented, and whether it came as a browser subprotocol."""
    for protocol in websocket.scope.get("subprotocols", []):
        if protocol.startswith(BROWSER_KEY_PROTOCOL):
            return protocol[len(BROWSER_KEY_PROTOCOL) :], True
    authorization = websocket.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip(), False
    return None, False


def _authorise(realtime: RealtimeService, websocket: WebSocket) -> tuple[ApiError | None, Grant | None]:
    token, from_browser = _credentials(websocket)
    grant = realtime.secrets.verify(token) if token else None
    if grant is not None:
        return None, grant
    if not realtime.auth.enabled:
        return None, None
    if from_browser:
        message = (
            "A browser subprotocol carries a client secret (ek_…), never the API key: mint one with "
            f"POST {contract.CLIENT_SECRETS_PATH}; this one is invalid or expired."
        )
    elif token is not None and realtime.auth.verify(f"Bearer {token}"):
        return None, None
    else:
        message = "Incorrect or missing API key: send `Authorization: Bearer <key>` or a client secret."
    return ApiError(HTTPStatus.UNAUTHORIZED, message, code="invalid_api_key"), None


def _refusal(websocket: WebSocket, realtime: RealtimeService) -> tuple[ApiError | None, Grant | None]:
    error, grant = _authorise(realtime, websocket)
    if error is not None:
        return error, None
    if websocket.query_params.get("intent") != "transcription":
        return invalid_request(
            "This server serves transcription sessions: connect with ?intent=transcription.",
            param="intent",
            code="invalid_value",
        ), None
    if not realtime.ready:
        return model_not_ready(), None
    return None, grant


@router.websocket(contract.REALTIME_PATH)
async def realtime_session(websocket: WebSocket, realtime: RealtimeDep) -> None:
    """A transcription session (OpenAI `client.realtime.connect(extra_query={"intent": "transcription"})`)."""
    error, grant = _refusal(websocket, realtime)
    if error is not None:
        body = error.body
        await websocket.send_denial_response(
            error_response(
                error.status,
                body.message,
                type=body.type,
                param=body.param,
                code=body.code,
                headers=error.headers,
            )
        )
        return
    offered = websocket.scope.get("subprotocols", [])
    subprotocol = REALTIME_PROTOCOL if REALTIME_PROTOCOL in offered else None
    scheduler = realtime.scheduler
    if scheduler.draining:
        message = "This instance is shutting down; reconnect (another instance answers)."
        await _refuse(
            websocket, realtime, subprotocol, message, "shutting_down", "server_error", CLOSE_RESTARTING
        )
        return
    if not realtime.slots.try_acquire():
        message = (
            f"This instance holds its maximum of {realtime.slots.limit} realtime sessions; retry shortly."
        )
        await _refuse(
            websocket,
            realtime,
            subprotocol,
            message,
            "session_limit_reached",
            "rate_limit_error",
            CLOSE_TRY_AGAIN_LATER,
        )
        return
    started = time.monotonic()
    outcome = "error"
    try:
        await websocket.accept(subprotocol=subprotocol)
        served = realtime.served()
        transcriber = SchedulerTranscriber(realtime.engine, scheduler)
        expires_at = int(time.time() + realtime.connection_limits.max_session_s)

        def make_session(emit: Any) -> RealtimeSession:
            session = RealtimeSession(
                transcriber, served, emit, realtime.session_limits, expires_at=expires_at
            )
            if grant is not None and grant.session is not None:
                session.configure(grant.session)  # checked when the secret was minted
            return session

        transport = _Transport(websocket)
        outcome = await serve_session(
            make_session, transport, realtime.connection_limits, realtime.metrics.observer()
        )
    finally:
        realtime.slots.release()
        realtime.metrics.sessions.labels(outcome=outcome).inc()
        logger.info("realtime session ended (%s) after %.1f s", outcome, time.monotonic() - started)


async def _refuse(
    websocket: WebSocket,
    realtime: RealtimeService,
    subprotocol: str | None,
    message: str,
    code: str,
    kind: str,
    close_code: int,
) -> None:
    """Accept, say why in an `error` event, close: a WebSocket client reads a reason, not a hang."""
    realtime.metrics.sessions.labels(outcome="refused").inc()
    realtime.metrics.errors.labels(code=code).inc()
    await websocket.accept(subprotocol=subprotocol)
    await websocket.send_text(ev.error_event(message, code=code, type=kind).model_dump_json())
    await websocket.close(code=close_code, reason=message[:120])


# --- client secrets ----------------------------------------------------------------------------


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(600, ge=10, le=7200)


class ClientSecretRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_after: ExpiresAfter | None = None
    session: dict[str, Any] | None = None


@router.post(
    contract.CLIENT_SECRETS_PATH,
    summary="Create a client secret for a browser's realtime session",
    responses=ERROR_RESPONSES,
)
async def create_client_secret(
    body: ClientSecretRequest, request: Request, realtime: RealtimeDep
) -> JSONResponse:
    """A short-lived key (OpenAI `client.realtime.client_secrets.create`) that a page uses to open a
    transcription session, as the WebSocket subprotocol `openai-insecure-api-key.<value>`. It needs
    the API key; a client secret cannot mint another."""
    token = (request.headers.get("authorization") or "").partition(" ")[2].strip()
    if realtime.auth.enabled and realtime.secrets.verify(token) is not None:
        raise ApiError(
            HTTPStatus.FORBIDDEN,
            "A client secret cannot mint client secrets; use the API key.",
            code="invalid_api_key",
        )
    ttl = body.expires_after.seconds if body.expires_after else realtime.settings.realtime_client_secret_ttl_s
    preview = RealtimeSession(
        _NoTranscriber(), realtime.served(), lambda _event: None, realtime.session_limits
    )
    if body.session is not None:
        try:
            preview.configure(body.session)
        except SessionError as error:
            raise invalid_request(error.message, param=error.param or "session", code=error.code) from None
    value, expires_at = realtime.secrets.mint(ttl, body.session)
    shown = preview.shown() | {"expires_at": expires_at}
    return JSONResponse({"value": value, "expires_at": expires_at, "session": shown})


class _NoTranscriber:
    async def __call__(self, *_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a preview session never transcribes")


# --- the demo page -----------------------------------------------------------------------------

demo_router = APIRouter(include_in_schema=False)


@demo_router.get(contract.DEMO_PATH)
async def demo_page() -> HTMLResponse:
    """The live transcription page (WHISPER_DEMO_PAGE): static, holding no key; it takes a client secret."""
    from importlib.resources import files

    return HTMLResponse(files("whisper_api.realtime").joinpath("demo.html").read_text(encoding="utf-8"))
