"""Upload limits as a pure ASGI middleware: too large or too slow, an upload is cut off.

A declared `Content-Length` over the limit gets 413 at once, without reading a byte of the body.
A body without one (chunked transfer) is counted as it streams in: at the limit the client gets
413 and the application sees a disconnect, so no upload is ever held whole in memory or on disk.
An upload that stalls (no data for `idle_timeout_s`) or is still arriving at the request's deadline
gets 408 and the same treatment, so a slow client holds a connection for a bounded time only (and
never a queue place or an inference slot: the scheduler admits a request once its body is complete).
The middleware also times how long the body took to arrive (the request's "read" step).
"""

import asyncio
import time
from collections.abc import Collection, MutableMapping
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_api.errors import error_response
from whisper_api.timing import request_timer

MIB = 1024 * 1024


class UploadLimitMiddleware:
    """On `paths`: 413 (`file_too_large`) for bodies over `max_bytes`; 408 (`upload_timeout`) for
    bodies that send nothing for `idle_timeout_s` or are still arriving after `total_timeout_s`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        paths: Collection[str],
        idle_timeout_s: float | None = None,
        total_timeout_s: float | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = frozenset(paths)
        self.idle_timeout_s = idle_timeout_s
        self.total_timeout_s = total_timeout_s

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

    async def _time_out(self, scope: Scope, receive: Receive, send: Send, *, stalled: bool) -> None:
        if stalled:
            message = (
                f"The upload stalled: no data arrived for {self.idle_timeout_s:g} s "
                "(WHISPER_UPLOAD_IDLE_TIMEOUT_S). Send the request again."
            )
        else:
            message = (
                f"The upload did not complete within the request deadline of {self.total_timeout_s:g} s "
                "(WHISPER_REQUEST_TIMEOUT_S)."
            )
        response = error_response(
            HTTPStatus.REQUEST_TIMEOUT,
            message,
            param="file",
            code="upload_timeout",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class _LimitedRequest:
    """One request's body, counted and timed as it arrives; past a limit the app only sees a
    disconnect."""

    def __init__(self, limit: UploadLimitMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.refused = False
        self.started: float | None = None
        self.arrived = time.monotonic()
        self.complete = False

    async def run(self) -> None:
        await self.limit.app(self.scope, self.receive, self.send)

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.started is None:
            self.started = time.perf_counter()
        if self.complete:  # after the body: the app waits for a disconnect, with no time limit
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), timeout=self._timeout())
        except TimeoutError:
            self.refused = True
            total = self.limit.total_timeout_s
            stalled = total is None or time.monotonic() - self.arrived < total
            await self.limit._time_out(self.scope, self._receive, self._send, stalled=stalled)
            return {"type": "http.disconnect"}
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.limit.max_bytes:
            self.refused = True
            await self.limit._refuse(self.scope, self._receive, self._send)
            return {"type": "http.disconnect"}
        if not message.get("more_body", False):
            self.complete = True
            request_timer(self.scope).record("read", time.perf_counter() - self.started)
        return message

    def _timeout(self) -> float | None:
        """Seconds the next piece of the body may take: the idle timeout, within the deadline."""
        idle, total = self.limit.idle_timeout_s, self.limit.total_timeout_s
        if total is None:
            return idle
        left = max(total - (time.monotonic() - self.arrived), 0.0)
        return left if idle is None else min(idle, left)

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if not self.refused:  # after a 413/408 the app's own answer to the "disconnect" is dropped
            await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
