"""Optional API-key auth (`Authorization: Bearer <key>`) for runs outside Cloud Run IAM.

Off unless `WHISPER_API_KEY` or `WHISPER_API_KEY_FILE` (a mounted secret) is set; the key is read
once at start. The check runs in the ASGI layer, before FastAPI reads a multipart body, so an
unauthenticated client cannot make the server read a 25 MB upload. `/healthz` and `/readyz` stay
open for probes; `/v1/*` and `/metrics` are protected. The key is compared in constant time and
never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from whisper_api import contract
from whisper_api.errors import ApiError, error_response

if TYPE_CHECKING:
    from whisper_api.settings import Settings

PROTECTED_PREFIXES = (f"{contract.API_PREFIX}/", contract.METRICS_PATH)


class ApiKeyError(ValueError):
    """The configured key cannot be used (unreadable or empty file): the service must not start open."""


class ApiKeyAuth:
    """The expected key (or none: auth off) and the constant-time check."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None
        # Also accepted on the audio endpoints: a browser's short-lived client secret (realtime.secrets).
        self.accepts_secret: Callable[[str], object] | None = None

    def __repr__(self) -> str:  # never show the key, even in a debugger or a traceback
        return f"ApiKeyAuth(enabled={self.enabled})"

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeyAuth:
        if settings.api_key is not None and settings.api_key_file is not None:
            raise ApiKeyError(
                f"Both {contract.ENV_API_KEY} and {contract.ENV_API_KEY_FILE} are set; set only one "
                "(on Cloud Run the key is a mounted secret: the file)."
            )
        if settings.api_key is not None:
            key = settings.api_key.get_secret_value().strip()
            if not key:
                raise ApiKeyError("WHISPER_API_KEY is set but empty.")
            return cls(key)
        if settings.api_key_file is not None:
            return cls(_read_key_file(settings.api_key_file))
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def derived_key(self, purpose: bytes) -> bytes | None:
        """A key for `purpose` derived from the API key (None when auth is off), never the key itself."""
        return None if self._key is None else hmac.new(self._key, purpose, "sha256").digest()

    def verify_secret(self, authorization: str | None) -> bool:
        """`authorization` is `Bearer <a valid client secret>`."""
        scheme, _, token = (authorization or "").partition(" ")
        return (
            self.accepts_secret is not None
            and scheme.lower() == "bearer"
            and bool(self.accepts_secret(token.strip()))
        )

    def verify(self, authorization: str | None) -> bool:
        """True when auth is off, or `authorization` is `Bearer <the key>`."""
        if self._key is None:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._key)


def _read_key_file(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ApiKeyError(f"WHISPER_API_KEY_FILE {path} cannot be read: {error.strerror}.") from None
    if not key:
        raise ApiKeyError(f"WHISPER_API_KEY_FILE {path} is empty.")
    return key


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES)


def unauthorized() -> tuple[int, str]:
    return 401, "Incorrect or missing API key: send `Authorization: Bearer <key>`."


class ApiKeyMiddleware:
    """Refuses protected paths without the right key (401, OpenAI's `invalid_api_key`), before the body."""

    def __init__(self, app: ASGIApp, auth: ApiKeyAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.enabled or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = next(
            (value.decode("latin-1") for name, value in scope["headers"] if name == b"authorization"), None
        )
        if self.auth.verify(authorization) or (
            scope["path"].startswith(contract.AUDIO_PATH_PREFIX) and self.auth.verify_secret(authorization)
        ):
            await self.app(scope, receive, send)
            return
        status, message = unauthorized()
        response = error_response(
            status, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)


# Declares the scheme in OpenAPI (the Authorize button in /docs); the middleware does the refusing.
bearer_scheme = HTTPBearer(auto_error=False, description="WHISPER_API_KEY, when the server sets one.")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Route dependency: documents the scheme; the check itself already ran in ApiKeyMiddleware."""
    auth: ApiKeyAuth | None = getattr(request.app.state, "auth", None)
    if auth is None or not auth.enabled:
        return
    header = f"Bearer {credentials.credentials}" if credentials else None
    if not auth.verify(header) and not auth.verify_secret(header):  # only reachable without the middleware
        status, message = unauthorized()
        raise ApiError(
            status,
            message,
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def install_auth(app: ASGIApp, settings: Settings) -> ApiKeyAuth:
    """Read the key once and add the middleware; returns the auth (kept at `app.state.auth`)."""
    auth = ApiKeyAuth.from_settings(settings)
    app.state.auth = auth  # type: ignore[attr-defined]
    app.add_middleware(ApiKeyMiddleware, auth=auth)  # type: ignore[attr-defined]
    return auth
