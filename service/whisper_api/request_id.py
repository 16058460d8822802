"""`x-request-id` on every response, and in the request's log line, so that a user can quote it.

A sane incoming id (a load balancer's, or the client's own) is kept; otherwise one is made in
OpenAI's style (`req_<32 hex>`). It lives in the request's ASGI state (`request.state.request_id`),
where the access log and the 500 handler read it.
"""

import re
import uuid
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
# Printable, no spaces or separators that could forge log fields or headers; bounded length.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")


def request_id(scope: MutableMapping[str, Any]) -> str | None:
    """The id of the request whose ASGI scope this is (None before the middleware ran)."""
    value = scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def new_request_id() -> str:
    """An id in OpenAI's style, for a request that brought no sane one (or that never reached the app)."""
    return f"req_{uuid.uuid4().hex}"


def _incoming(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER.encode():
            text = value.decode("latin-1")
            return text if _SANE.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Pure ASGI: assigns the id before the app runs and adds the header to whatever answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = _incoming(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = value

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = value
            await send(message)

        await self.app(scope, receive, send_with_id)
