"""A session's life on its connection, independent of the web framework: `session.created`, the
client's events in order, the server's events through one writer, and the guards of a long-lived
connection.

- Pace: a client may run `burst_s` ahead of real time (a recording sent at once, for manual
  commits); beyond, its next message is read only once real time has caught up (held, not dropped:
  the socket's flow control slows the sender).
- Idle: no client message for `idle_timeout_s` closes the session (an `error` event first).
- Length: a session ends after `max_session_s` (Cloud Run's request timeout bounds it anyway).
- A client that does not read its events (`outbox_limit` unsent) is closed, so a stalled reader
  cannot make the server hold an ever-growing queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from whisper_api.realtime import events as ev
from whisper_api.realtime.session import RealtimeSession

# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # idle, too long, not reading its events
CLOSE_RESTARTING = 1012  # the instance is shutting down: reconnect
CLOSE_TRY_AGAIN_LATER = 1013  # the instance is full: reconnect (Cloud Run may route elsewhere)


class Transport(Protocol):
    async def receive(self) -> str | bytes | None:
        """The next client message; None once the client has closed."""
        ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True)
class ConnectionLimits:
    idle_timeout_s: float = 60.0
    max_session_s: float = 3600.0
    burst_s: float = 30.0
    outbox_limit: int = 1000


class Observer(Protocol):
    """Sees every server event as it is sent (metrics)."""

    def sent(self, event: ev.ServerEvent) -> None: ...


class Outbox:
    """The server events waiting for the writer; `full` once the client stopped reading."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[ev.ServerEvent] = asyncio.Queue(limit)
        self.full = asyncio.Event()

    def put(self, event: ev.ServerEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.full.set()


async def serve_session(
    make_session: Callable[[Callable[[ev.ServerEvent], None]], RealtimeSession],
    transport: Transport,
    limits: ConnectionLimits,
    observer: Observer | None = None,
) -> str:
    """Run one session until either side ends it; returns why it ended (for the log and metrics)."""
    outbox = Outbox(limits.outbox_limit)
    session = make_session(outbox.put)
    outbox.put(session.created())
    started = time.monotonic()
    writer = asyncio.create_task(_write(outbox, transport, observer))
    transcribing = asyncio.create_task(session.run())
    reading = asyncio.create_task(_read(session, transport, limits, started))
    stalled = asyncio.create_task(outbox.full.wait())
    try:
        done, _ = await asyncio.wait(
            {reading, stalled, writer, transcribing}, return_when=asyncio.FIRST_COMPLETED
        )
        if stalled in done:
            reason = "stalled"
            await transport.close(CLOSE_POLICY, "The client is not reading its events.")
        elif reading in done:
            reason = reading.result()
            if reason != "client_closed":
                await _drain(outbox, writer)
                await transport.close(CLOSE_POLICY if reason != "expired" else CLOSE_NORMAL, _REASONS[reason])
        elif transcribing in done:  # a bug in the loop: end the session, and let it be logged
            transcribing.result()
            reason = "error"
        else:  # the writer could not send: the connection is gone
            reason = "client_closed"
        return reason
    finally:
        for task in (reading, stalled, writer, transcribing):
            task.cancel()
        for task in (reading, stalled, writer, transcribing):
            with contextlib.suppress(BaseException):
                await task


_REASONS = {
    "idle": "Idle timeout.",
    "expired": "The session reached its maximum duration.",
}


async def _read(
    session: RealtimeSession, transport: Transport, limits: ConnectionLimits, started: float
) -> str:
    while True:
        remaining = limits.max_session_s - (time.monotonic() - started)
        if remaining <= 0:
            session.emit(_expired(limits))
            return "expired"
        try:
            message = await asyncio.wait_for(
                transport.receive(), timeout=min(limits.idle_timeout_s, remaining)
            )
        except TimeoutError:
            if limits.max_session_s - (time.monotonic() - started) <= 0:
                session.emit(_expired(limits))
                return "expired"
            session.emit(
                ev.error_event(
                    f"No client event for {limits.idle_timeout_s:g} s: the session is closed.",
                    code="session_idle_timeout",
                )
            )
            return "idle"
        if message is None:
            return "client_closed"
        await session.handle(message)
        ahead = session.audio_received_s - (time.monotonic() - started)
        if ahead > limits.burst_s:
            await asyncio.sleep(ahead - limits.burst_s)


def _expired(limits: ConnectionLimits) -> ev.ErrorEvent:
    return ev.error_event(
        f"Your session hit the maximum duration of {limits.max_session_s:g} s; open a new one.",
        code="session_expired",
    )


async def _write(outbox: Outbox, transport: Transport, observer: Observer | None) -> None:
    while True:
        event = await outbox.queue.get()
        await transport.send(event.model_dump_json())
        if observer is not None:
            observer.sent(event)
        outbox.queue.task_done()


async def _drain(outbox: Outbox, writer: asyncio.Task[None], timeout_s: float = 2.0) -> None:
    """Let the last events (the `error` that says why) reach the client before the close."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(outbox.queue.join(), timeout=timeout_s)
