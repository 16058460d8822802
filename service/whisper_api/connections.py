"""HTTP/1.1 connections: uvicorn's h11 protocol with what it lacks against hostile clients.

uvicorn waits for a request's head without a deadline: a client that connects and sends nothing,
or drips its headers a byte at a time (slowloris), holds a socket and its buffers for ever, and
enough of them exhaust the process's file descriptors, so nobody is served, probes included. Its
keep-alive timeout does not help: any byte received disarms it.

`GuardedH11Protocol` gives every connection `head_timeout_s` to deliver a complete request head,
counted from the connection or from the end of its previous response. One that misses it is
closed, with a 408 in OpenAI's envelope when it had begun a request. A request being served is
never cut: from its head on, the app's own limits apply (upload idle timeout, request deadline).
It also answers malformed HTTP (bad request line, header or Content-Length) with a 400 in the
envelope rather than uvicorn's plain text. Both answers carry an `x-request-id`, as every other
response does, and the log line names it, so that a user can quote it.

`DenialAwareWebSocketProtocol` is uvicorn's websockets-sansio protocol that counts a refused
upgrade (a 401 or 503 sent as a denial response) as a finished handshake, as uvicorn's wsproto
protocol does; without it every refused session logs `ASGI callable returned without completing
handshake.` at ERROR, which alerting on error logs would page on (Kludex/uvicorn#3138, open: drop
the class once a uvicorn release has the fix).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from whisper_api.errors import INVALID_REQUEST
from whisper_api.request_id import HEADER as REQUEST_ID_HEADER
from whisper_api.request_id import new_request_id
from whisper_api.schemas import ErrorBody, ErrorResponse


def _error_bytes(status: HTTPStatus, message: str, code: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 response in the envelope, closing the connection (no request to answer)."""
    error = ErrorResponse(error=ErrorBody(message=message, type=INVALID_REQUEST, code=code))
    body = error.model_dump_json().encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{REQUEST_ID_HEADER}: {request_id}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (see the module docstring)."""

    head_timeout_s: float = 10.0

    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_head_timeout(cls, seconds: float) -> type[GuardedH11Protocol]:
        """The class to hand uvicorn (`uvicorn.Config(http=...)`), with its deadline set."""
        return type(cls.__name__, (cls,), {"head_timeout_s": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """The connection is a WebSocket's from now on (a realtime session, with limits of its own):
        the head deadline must not close it."""
        self._cancel_head_timer()
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP: the envelope instead of uvicorn's text/plain."""
        self._close_with(
            HTTPStatus.BAD_REQUEST,
            "The request is not valid HTTP/1.1 (malformed request line, header or Content-Length).",
            "invalid_http",
        )

    def _await_head(self) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # closed already, or serving a request: the app's limits apply
        begun = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
        if not begun:  # idle, or still sending the body of a request already answered
            self.transport.close()
            return
        message = (
            f"The request's headers did not arrive within {self.head_timeout_s:g} s "
            "(WHISPER_HEADER_TIMEOUT_S). Send the request again."
        )
        self._close_with(HTTPStatus.REQUEST_TIMEOUT, message, "header_timeout")

    def _close_with(self, status: HTTPStatus, message: str, code: str) -> None:
        request_id = new_request_id()
        self.logger.warning("%d %s (%s): %s", status.value, code, request_id, message)
        self.transport.write(_error_bytes(status, message, code, request_id))
        self.transport.close()


class DenialAwareWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol; a denial response completes the handshake (see above)."""

    async def send(self, message: Any) -> None:  # uvicorn's ASGISendEvent (a private module)
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True
