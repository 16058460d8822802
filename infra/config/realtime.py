"""`whisper:realtime`: live transcription sessions (WebSockets, `/v1/realtime`) on the service.

On Cloud Run a WebSocket is one request for its whole length: the request timeout bounds a session
(up to 60 minutes), session affinity sends a reconnecting client back to its instance where it can
(best effort), and every open session counts against the instance's request concurrency, on top
of the `whisper:concurrency` uploads. Off by default: the service then holds no sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config.cloud_run import MAX_CONCURRENCY, MAX_TIMEOUT_SECONDS
from infra.config.keys import REALTIME_KEYS
from infra.config.reader import Reader, Section

# The service ends a session this long before Cloud Run's timeout would cut it, with an `error`
# event saying why (session_expired) instead of a dropped connection.
SESSION_GRACE_S = 30
MIN_SESSION_SECONDS = 2 * SESSION_GRACE_S


@dataclass(frozen=True)
class RealtimeConfig:
    sessions: int = 4  # sessions one instance holds open at once
    session_seconds: int = MAX_TIMEOUT_SECONDS  # Cloud Run's request timeout while realtime is on

    @property
    def server_session_seconds(self) -> int:
        """WHISPER_REALTIME_MAX_SESSION_S: inside the request timeout, so the service ends it first."""
        return self.session_seconds - SESSION_GRACE_S


DEFAULTS = RealtimeConfig()


def read_realtime(r: Reader, concurrency: int, timeout_seconds: int) -> RealtimeConfig | None:
    section = r.section("realtime", "enabled", "true") or Section(r, "realtime", {})
    section.unknown_keys(REALTIME_KEYS)
    enabled = section.flag("enabled", False)
    sessions = section.whole(
        "sessions",
        DEFAULTS.sessions,
        max(MAX_CONCURRENCY - concurrency, 1),
        "sessions per instance; with whisper:concurrency at most Cloud Run's 1000 requests",
        low=1,
    )
    session_seconds = section.whole(
        "sessionSeconds",
        DEFAULTS.session_seconds,
        MAX_TIMEOUT_SECONDS,
        "the longest session, which becomes the service's request timeout",
        low=max(MIN_SESSION_SECONDS, min(timeout_seconds, MAX_TIMEOUT_SECONDS)),
    )
    return RealtimeConfig(sessions=sessions, session_seconds=session_seconds) if enabled else None
