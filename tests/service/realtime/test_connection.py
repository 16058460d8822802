"""The connection's guards, framework-free, with the session on the real engine: a client running
ahead of real time is held (not dropped), one that stops reading its events is closed, an idle one
is told why and closed."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from whisper_api.realtime import events as ev
from whisper_api.realtime.connection import CLOSE_POLICY, ConnectionLimits, serve_session
from whisper_api.realtime.inference import SchedulerTranscriber
from whisper_api.realtime.session import RealtimeSession, ServedModel
from whisper_api.scheduler import Scheduler

pytestmark = pytest.mark.anyio
SERVED = ServedModel(("tiny.en",), {"tiny.en"}.__contains__, frozenset({"en"}), False)
MANUAL = {
    "type": "session.update",
    "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
}
TENTH_S = base64.b64encode(bytes(4800)).decode()  # 0.1 s of 24 kHz PCM16 silence


class Client:
    """The transport's other end: what the client sent (all at once, as a fast client does), what it got."""

    def __init__(self, messages: list[str], *, reads: bool = True) -> None:
        self.pending = list(messages)
        self.reads = reads
        self.received: list[dict[str, Any]] = []
        self.read_at: list[float] = []
        self.closed: tuple[int, str] | None = None
        self.open = anyio.Event()

    async def receive(self) -> str | bytes | None:
        if self.pending:
            self.read_at.append(time.monotonic())
            return self.pending.pop(0)
        await self.open.wait()  # the client keeps the connection open, silent
        return None

    async def send(self, text: str) -> None:
        if not self.reads:
            await anyio.sleep_forever()  # its socket buffer is full: every send blocks
        self.received.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def factory(engines: Any) -> Callable[[Callable[[ev.ServerEvent], None]], RealtimeSession]:
    transcriber = SchedulerTranscriber(engines["faster-whisper"], Scheduler(workers=1, queue_size=4))
    return lambda emit: RealtimeSession(transcriber, SERVED, emit)


async def test_a_client_ahead_of_real_time_is_held_back_not_dropped(engines: Any) -> None:
    appends = [json.dumps({"type": "input_audio_buffer.append", "audio": TENTH_S})] * 60  # 6 s at once
    client = Client([json.dumps(MANUAL), *appends, json.dumps({"type": "input_audio_buffer.clear"})])
    limits = ConnectionLimits(idle_timeout_s=2, burst_s=2)
    with anyio.fail_after(60):
        assert await serve_session(factory(engines), client, limits) == "idle"
    # Read at once up to 2 s ahead of real time, then no faster than real time: the last of 6 s of
    # audio is read 4 s after the first (sleeps, so a busy machine only makes it later).
    assert client.read_at[-1] - client.read_at[0] >= 3.5
    assert [event["type"] for event in client.received][:2] == ["session.created", "session.updated"]
    assert "input_audio_buffer.cleared" in [event["type"] for event in client.received]  # nothing dropped


async def test_an_idle_client_is_told_and_closed(engines: Any) -> None:
    client = Client([json.dumps(MANUAL)])
    with anyio.fail_after(30):
        assert await serve_session(factory(engines), client, ConnectionLimits(idle_timeout_s=0.5)) == "idle"
    assert client.received[-1]["error"]["code"] == "session_idle_timeout"
    assert client.closed is not None and client.closed[0] == CLOSE_POLICY


async def test_a_client_that_stops_reading_is_closed(engines: Any) -> None:
    client = Client([json.dumps(MANUAL), *["not json"] * 20], reads=False)
    limits = ConnectionLimits(idle_timeout_s=30, outbox_limit=5)
    with anyio.fail_after(30):
        assert await serve_session(factory(engines), client, limits) == "stalled"
    assert client.closed is not None and client.closed[0] == CLOSE_POLICY
