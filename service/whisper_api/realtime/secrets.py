"""Short-lived client secrets, so that a browser never holds the long-lived API key.

A server (or an operator with the key) mints one with `POST /v1/realtime/client_secrets`; the page
opens its WebSocket with the secret as the subprotocol `openai-insecure-api-key.<secret>`, the
form OpenAI documents for browsers. A secret is `ek_<payload>.<signature>`: its expiry, signed with
HMAC-SHA256 under a key derived from the API key, so any instance accepts what another minted and
nothing is stored. It opens sessions (and transcribes uploads) until it expires; it cannot mint more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "ek_"
PURPOSE = b"whisper-api realtime client secret v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    expires_at: int
    session: dict[str, Any] | None


class ClientSecrets:
    def __init__(self, signing_key: bytes) -> None:
        self._key = signing_key

    def __repr__(self) -> str:
        return "ClientSecrets()"

    @classmethod
    def from_api_key(cls, api_key: bytes | None) -> ClientSecrets:
        """Derived from the API key (every instance agrees); without one, a random key (auth is off)."""
        if api_key is None:
            return cls(secrets.token_bytes(32))
        return cls(hmac.new(api_key, PURPOSE, hashlib.sha256).digest())

    def mint(
        self, ttl_s: int, session: dict[str, Any] | None = None, now: float | None = None
    ) -> tuple[str, int]:
        """A secret valid for `ttl_s`; `session` (a checked transcription session) is what the
        sessions it opens start with."""
        expires_at = int(now if now is not None else time.time()) + ttl_s
        claims = {"exp": expires_at, "n": secrets.token_urlsafe(8), "session": session}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{PREFIX}{payload}.{self._sign(payload)}", expires_at

    def verify(self, value: str, now: float | None = None) -> Grant | None:
        """The grant of a valid, unexpired secret; None otherwise."""
        if not value.startswith(PREFIX):
            return None
        payload, _, signature = value[len(PREFIX) :].partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(_unb64(payload))
            grant = Grant(expires_at=int(claims["exp"]), session=claims.get("session"))
        except (ValueError, KeyError, TypeError):
            return None
        return grant if (now if now is not None else time.time()) < grant.expires_at else None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
