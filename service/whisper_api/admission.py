"""The door of `POST /v1/audio/*`: ASGI middleware that refuses early, and the scheduler's refusals
rendered in OpenAI's error envelope.

A full instance answers 429 (a draining one 503), both with Retry-After, before a byte of the
upload is read. A request let in holds no queue place while its body arrives; its deadline starts
at the door, and a disconnect after its body is noticed (the scheduler then stops its work). The
queue itself, and the errors it raises, are `scheduler`'s, which knows nothing of HTTP.
"""

import asyncio
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_api import contract
from whisper_api.errors import error_response
from whisper_api.scheduler import Scheduler, SchedulerError


def refusal_response(error: SchedulerError) -> JSONResponse:
    return error_response(
        error.status_code, error.message, type=error.error_type, code=error.code, headers=error.headers()
    )


class _DisconnectWatcher:
    """Wraps `receive`: once the body is read, watches for `http.disconnect` in the background."""

    def __init__(self, receive: Receive, disconnected: asyncio.Event) -> None:
        self._receive = receive
        self._disconnected = disconnected
        self._body_read = False
        self._task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self._body_read:
            # The app listens for a disconnect (e.g. a streaming response): answer from the watcher.
            await self._disconnected.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._disconnected.set()
        elif message["type"] == "http.request" and not message.get("more_body", False):
            self._body_read = True
            self._task = asyncio.create_task(self._watch())
        return message

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._disconnected.set()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class AdmissionMiddleware:
    """Lets a `POST /v1/audio/*` request past the door (`Scheduler.admit`) or answers its refusal."""

    def __init__(self, app: ASGIApp, scheduler: Scheduler | None = None) -> None:
        self.app = app
        self.scheduler = scheduler

    def _scheduler(self, scope: Scope) -> Scheduler | None:
        if self.scheduler is not None:
            return self.scheduler
        app = scope.get("app")
        return getattr(getattr(app, "state", None), "scheduler", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheduler = self._scheduler(scope)
        if (
            scope["type"] != "http"
            or scheduler is None
            or scope["method"] != "POST"
            or not scope["path"].startswith(contract.AUDIO_PATH_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        admission = scheduler.admit()
        try:
            ticket = await admission.__aenter__()
        except SchedulerError as refusal:
            await refusal_response(refusal)(scope, receive, send)
            return
        watcher = _DisconnectWatcher(receive, ticket.disconnected)
        try:
            await self.app(scope, watcher.receive, send)
        finally:
            watcher.close()
            await admission.__aexit__(None, None, None)


def install_admission(app: Any, scheduler: Scheduler | None = None) -> None:
    """Add the admission middleware and render SchedulerError raised by routes in the envelope.

    With `scheduler=None` the middleware reads `app.state.scheduler`, which the lifespan sets.
    """

    async def handle(_: Any, error: Exception) -> JSONResponse:
        assert isinstance(error, SchedulerError)
        return refusal_response(error)

    app.add_exception_handler(SchedulerError, handle)
    app.add_middleware(AdmissionMiddleware, scheduler=scheduler)
