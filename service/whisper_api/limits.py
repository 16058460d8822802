"""Upload-size limit as a pure ASGI middleware: a too-large upload is refused before it is read.

A declared `Content-Length` over the limit gets 413 at once, without reading a byte of the body.
A body without one (chunked transfer) is counted as it streams in: at the limit the client gets
413 and the application sees a disconnect, so no upload is ever held whole in memory or on disk.
The middleware also times how long the body took to arrive (the request's "read" step).
"""

import time
from collections.abc import Collection, MutableMapping
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_api.errors import error_response
from whisper_api.timing import request_timer

MIB = 1024 * 1024


class UploadLimitMiddleware:
    """Refuse bodies larger than `max_bytes` on `paths` with OpenAI's 413 (`file_too_large`)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, paths: Collection[str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        await _LimitedRequest(self, scope, receive, send).run()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit_mb = self.max_bytes / MIB
        response = error_response(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"The uploaded file is larger than the limit of {limit_mb:g} MB.",
            param="file",
            code="file_too_large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class _LimitedRequest:
    """One request's body, counted as it arrives; past the limit the app only sees a disconnect."""

    def __init__(self, limit: UploadLimitMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.refused = False
        self.started: float | None = None

    async def run(self) -> None:
        await self.limit.app(self.scope, self.receive, self.send)

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.started is None:
            self.started = time.perf_counter()
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit.max_bytes:
            self.refused = True
            await self.limit._refuse(self.scope, self._receive, self._send)
            return {"type": "http.disconnect"}
        if not message.get("more_body", False):
            request_timer(self.scope).record("read", time.perf_counter() - self.started)
        return message

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if not self.refused:  # after a 413 the app's own answer to the "disconnect" is dropped
            await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
