"""The session state machine on the real engine and the real scheduler (no web framework): server
VAD turns, manual commits, interim and final transcripts tied by item_id, and an `error` event for
every bad client event, after which the session goes on. Every server event is validated with the
`openai` SDK's own types."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import numpy as np
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from tests.support.engines import FIXTURES
from tests.support.realtime import RATE, chunks, pcm24, word_edits, words
from whisper_api.engines.base import Engine
from whisper_api.realtime import events as ev
from whisper_api.realtime.audio import InputDecoder
from whisper_api.realtime.inference import SchedulerTranscriber
from whisper_api.realtime.session import RealtimeSession, ServedModel, SessionLimits
from whisper_api.scheduler import Scheduler
from whisper_api.schemas import TranscribeOptions, Transcript

pytestmark = pytest.mark.anyio
SDK_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
SERVED = ServedModel(
    ("tiny.en", "whisper-1"), {"tiny.en", "whisper-1"}.__contains__, frozenset({"en", "de"}), False
)
TRANSCRIPTION = {"type": "session.update", "session": {"type": "transcription"}}
MANUAL = {
    "type": "session.update",
    "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}},
}


class Client:
    """Sends client events as JSON text and keeps the server events, each checked against the SDK."""

    transcriber: RecordingTranscriber  # set by the fixture

    def __init__(self, session_factory: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self._arrived = anyio.Event()
        self.session: RealtimeSession = session_factory(self._emit)

    def _emit(self, event: ev.ServerEvent) -> None:
        data = json.loads(event.model_dump_json())
        parsed = SDK_EVENT.validate_python(data)
        assert parsed.type == data["type"]
        self.events.append(data)
        self._arrived.set()

    async def send(self, event: dict[str, Any] | str | bytes) -> None:
        await self.session.handle(event if isinstance(event, str | bytes) else json.dumps(event))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    async def until(self, kind: str, count: int = 1, timeout_s: float = 120) -> list[dict[str, Any]]:
        with anyio.fail_after(timeout_s):
            while len(self.of(kind)) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        return self.of(kind)


class RecordingTranscriber(SchedulerTranscriber):
    """The scheduler's transcriber, keeping the audio of each final pass (to compare with what was
    sent) and counting the early final passes (final options, declinable as captions are)."""

    def __init__(self, engine: Engine, scheduler: Scheduler) -> None:
        super().__init__(engine, scheduler)
        self.finals: list[np.ndarray] = []  # the audio of each final pass
        self.final_quality: list[np.ndarray] = []  # ... and of each early one
        self.early_passes = 0
        self.caption_passes = 0
        self._counted = anyio.Event()

    async def __call__(
        self, audio: np.ndarray, options: TranscribeOptions, *, interim: bool
    ) -> Transcript | None:
        if not interim:
            self.finals.append(audio)
        if options.beam_size != 1:
            self.final_quality.append(audio)
        transcript = await super().__call__(audio, options, interim=interim)
        if interim and transcript is not None:
            if options.beam_size == 1:
                self.caption_passes += 1
            else:
                self.early_passes += 1
            self._counted.set()
        return transcript

    async def wait_for_early_passes(self, count: int, timeout_s: float = 60) -> None:
        await self._wait(lambda: self.early_passes >= count, timeout_s)

    async def wait_for_caption_passes(self, count: int, timeout_s: float = 60) -> None:
        await self._wait(lambda: self.caption_passes >= count, timeout_s)

    async def _wait(self, done: Callable[[], bool], timeout_s: float) -> None:
        with anyio.fail_after(timeout_s):
            while not done():
                self._counted = anyio.Event()
                await self._counted.wait()


@pytest.fixture
async def client(engines: Any) -> AsyncIterator[Client]:
    engine: Engine = engines["faster-whisper"]
    scheduler = Scheduler(workers=1, queue_size=4)
    transcriber = RecordingTranscriber(engine, scheduler)
    limits = SessionLimits(max_buffer_s=20, max_append_bytes=200_000)
    made = Client(lambda emit: RealtimeSession(transcriber, SERVED, emit, limits))
    made.transcriber = transcriber
    async with anyio.create_task_group() as group:
        group.start_soon(made.session.run)
        yield made
        group.cancel_scope.cancel()
    scheduler.shutdown()


@pytest.fixture(scope="module")
def http_transcript(engines: Any) -> str:
    """What the HTTP path makes of the same recording (decoded from the file, no VAD turns)."""
    from whisper_api.audio import decode_audio

    with (FIXTURES / "short.wav").open("rb") as file:
        audio = decode_audio(file, 60)
    return engines["faster-whisper"].transcribe(audio, TranscribeOptions()).text


async def test_server_vad_turns_speech_into_an_item_with_deltas_and_its_transcript(
    client: Client, http_transcript: str
) -> None:
    await client.send(TRANSCRIPTION)
    for audio in chunks(pcm24("short.wav")):
        await client.send({"type": "input_audio_buffer.append", "audio": audio})
        await anyio.sleep(0.01)
    completed = (await client.until("conversation.item.input_audio_transcription.completed"))[0]
    kinds = [event["type"] for event in client.events]
    assert kinds[0] == "session.updated"
    started, stopped, committed = (
        client.of("input_audio_buffer.speech_started")[0],
        client.of("input_audio_buffer.speech_stopped")[0],
        client.of("input_audio_buffer.committed")[0],
    )
    item_id = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == completed["item_id"] == item_id
    assert committed["previous_item_id"] is None
    assert kinds.index(started["type"]) < kinds.index(stopped["type"]) < kinds.index(committed["type"])
    assert 0 < started["audio_start_ms"] < 1000 < stopped["audio_end_ms"] < 7200
    deltas = client.of("conversation.item.input_audio_transcription.delta")
    assert deltas and all(delta["item_id"] == item_id for delta in deltas)
    assert "".join(delta["delta"] for delta in deltas) == completed["transcript"]
    assert word_edits(completed["transcript"], http_transcript) <= 1
    # Nothing lost: the transcript's audio is the stream, decoded, from speech_started to the pause
    # that ended it (an early pass sees up to 500 ms less of that pause than the committed item).
    decoder = InputDecoder(ev.AudioFormat())
    stream = np.concatenate([decoder.decode(base64.b64decode(piece)) for piece in chunks(pcm24("short.wav"))])
    turn = client.transcriber.final_quality[-1]
    start = next(
        (
            offset
            for offset in range(started["audio_start_ms"] * 16, started["audio_start_ms"] * 16 + 16)
            if np.array_equal(stream[offset : offset + turn.size], turn)
        ),
        None,
    )
    assert start is not None, "the item's audio is not the stream's samples"
    assert stopped["audio_end_ms"] - 500 <= (start + turn.size) // 16 <= stopped["audio_end_ms"]
    assert completed["usage"]["type"] == "duration" and 4 < completed["usage"]["seconds"] < 7


DELTA = "conversation.item.input_audio_transcription.delta"
LONG_PAUSES = {
    "type": "session.update",
    "session": {
        "type": "transcription",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 2000}}},
    },
}


async def stream(client: Client, audio: bytes) -> None:
    for piece in chunks(audio):
        await client.send({"type": "input_audio_buffer.append", "audio": piece})
        await anyio.sleep(0.01)


async def test_a_pause_runs_the_final_pass_before_the_turn_stops(
    client: Client, http_transcript: str
) -> None:
    """The final pass runs early in the pause; when the turn stops in that pause, it is the transcript,
    and no pass runs after speech_stopped."""
    await client.send(LONG_PAUSES)
    await stream(client, pcm24("short.wav", tail_s=0.5))
    await client.transcriber.wait_for_early_passes(1)
    await stream(client, bytes(2 * RATE * 2))  # the rest of the 2 s of silence
    completed = (await client.until("conversation.item.input_audio_transcription.completed"))[0]
    assert client.transcriber.finals == []
    assert word_edits(completed["transcript"], http_transcript) <= 1
    assert 6 < completed["usage"]["seconds"] < 9  # the committed audio, the whole pause included


async def test_speech_after_an_early_pass_is_in_the_transcript(client: Client, http_transcript: str) -> None:
    """Speech resumed after an early pass: that pass is stale, and the transcript has both sentences."""
    await client.send(LONG_PAUSES)
    await stream(client, pcm24("short.wav", tail_s=0.3))
    await client.transcriber.wait_for_early_passes(1)
    await stream(client, pcm24("short.wav", lead_s=0, tail_s=2.5))
    completed = await client.until("conversation.item.input_audio_transcription.completed")
    assert len(completed) == 1  # one turn: the first pause was shorter than 2 s
    assert word_edits(completed[0]["transcript"], f"{http_transcript} {http_transcript}") <= 2


async def test_server_vad_turned_on_mid_session_finds_turns_in_the_audio_after_it(
    client: Client, http_transcript: str
) -> None:
    """The VAD's offsets continue the session's: audio committed before it came does not shift them."""
    await client.send(MANUAL)
    await stream(client, pcm24("short.wav"))
    await client.send({"type": "input_audio_buffer.commit"})
    await client.until("conversation.item.input_audio_transcription.completed")
    server_vad = {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
    await client.send({"type": "session.update", "session": {"type": "transcription", **server_vad}})
    await stream(client, pcm24("short.wav"))
    completed = await client.until("conversation.item.input_audio_transcription.completed", count=2)
    assert word_edits(completed[1]["transcript"], http_transcript) <= 1


async def test_manual_commits_are_captioned_past_one_whisper_window(client: Client) -> None:
    """41 s in one manual item: captions go on after the first 30 s (the window moves on)."""
    client.session.limits = SessionLimits(max_buffer_s=60, max_append_bytes=200_000)
    await client.send(MANUAL)
    audio, step = pcm24("long.ogg", lead_s=0.5, tail_s=0), 2 * RATE * 2  # 2 s at a time
    captioned_by_30s = ""
    for start in range(0, len(audio), step):
        passes = client.transcriber.caption_passes
        for piece in chunks(audio[start : start + step]):
            await client.send({"type": "input_audio_buffer.append", "audio": piece})
        await client.transcriber.wait_for_caption_passes(passes + 1)
        if start < 30 * RATE * 2:
            captioned_by_30s = "".join(event["delta"] for event in client.of(DELTA))
    captioned = "".join(event["delta"] for event in client.of(DELTA))
    assert len(words(captioned)) >= len(words(captioned_by_30s)) + 10, (captioned_by_30s, captioned)
    await client.send({"type": "input_audio_buffer.commit"})
    completed = (await client.until("conversation.item.input_audio_transcription.completed"))[0]
    assert word_edits("".join(event["delta"] for event in client.of(DELTA)), completed["transcript"]) <= 4


async def test_manual_commits_make_items_in_order(client: Client, http_transcript: str) -> None:
    await client.send(MANUAL)
    assert client.of("session.updated")[0]["session"]["audio"]["input"]["turn_detection"] is None
    for _ in range(2):
        for audio in chunks(pcm24("short.wav"), seconds=1.0):
            await client.send({"type": "input_audio_buffer.append", "audio": audio})
        await client.send({"type": "input_audio_buffer.commit"})
    completed = await client.until("conversation.item.input_audio_transcription.completed", 2)
    committed = client.of("input_audio_buffer.committed")
    assert [event["item_id"] for event in committed] == [event["item_id"] for event in completed]
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]
    assert not client.of("input_audio_buffer.speech_started")
    for event in completed:
        assert words(event["transcript"]) == words(http_transcript)
    await client.send({"type": "input_audio_buffer.append", "audio": next(chunks(pcm24("short.wav")))})
    await client.send({"type": "input_audio_buffer.clear"})
    assert client.events[-1]["type"] == "input_audio_buffer.cleared"


BAD_EVENTS: list[tuple[dict[str, Any] | str | bytes, str, str | None]] = [
    ("not json {", "invalid_json", None),
    (b"\x00binary", "invalid_json", None),
    ('["a list"]', "invalid_json", None),
    ({"type": "response.create"}, "invalid_value", "type"),
    ({"type": "input_audio_buffer.append", "audio": "%%% not base64"}, "invalid_value", "audio"),
    (
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"odd").decode()},
        "invalid_value",
        "audio",
    ),
    (
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(300_000)).decode()},
        "audio_too_large",
        "audio",
    ),
    ({"type": "input_audio_buffer.append"}, "invalid_value", "audio"),
    ({"type": "input_audio_buffer.commit", "surprise": 1}, "unknown_parameter", "surprise"),
    ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
    ({"type": "session.update", "session": {"type": "realtime"}}, "invalid_value", "session.type"),
    (
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
        },
        "invalid_value",
        "session.audio.input.format.rate",
    ),
    (
        {
            "type": "session.update",
            "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
        },
        "invalid_value",
        "session.audio.input.format.type",
    ),
    (
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
            },
        },
        "invalid_value",
        "session.audio.input.turn_detection.type",
    ),
    (
        {
            "type": "session.update",
            "session": {"type": "transcription", "audio": {"input": {"transcription": {"model": "gpt-9"}}}},
        },
        "model_not_found",
        "session.audio.input.transcription.model",
    ),
    (
        {
            "type": "session.update",
            "session": {"type": "transcription", "audio": {"input": {"transcription": {"language": "de"}}}},
        },
        "unsupported_language",
        "session.audio.input.transcription.language",
    ),
    (
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {"noise_reduction": {"type": "near_field"}}},
            },
        },
        "unsupported_parameter",
        "session.audio.input.noise_reduction",
    ),
]


async def test_audio_before_the_session_is_configured_is_refused(client: Client) -> None:
    await client.send(
        {
            "type": "input_audio_buffer.append",
            "audio": next(chunks(pcm24("short.wav"))),
            "event_id": "evt_early",
        }
    )
    error = client.of("error")[0]["error"]
    assert error["code"] == "session_not_configured" and error["event_id"] == "evt_early"


async def test_every_bad_event_gets_an_error_event_and_the_session_goes_on(
    client: Client, http_transcript: str
) -> None:
    await client.send(MANUAL)
    for number, (event, code, param) in enumerate(BAD_EVENTS):
        if isinstance(event, dict):
            event = {**event, "event_id": f"evt_{number}"}
        await client.send(event)
        last = client.events[-1]
        assert last["type"] == "error", (event, last)
        assert last["error"]["code"] == code and last["error"]["param"] == param, (event, last)
        assert last["error"]["type"] == "invalid_request_error" and last["error"]["message"]
        if isinstance(event, dict) and code not in ("invalid_json",):
            assert last["error"]["event_id"] == f"evt_{number}"
    assert len(client.of("error")) == len(BAD_EVENTS)
    updated = client.of("session.updated")
    assert len(updated) == 1  # refused updates changed nothing
    for audio in chunks(pcm24("short.wav"), seconds=1.0):
        await client.send({"type": "input_audio_buffer.append", "audio": audio})
    await client.send({"type": "input_audio_buffer.commit"})
    completed = await client.until("conversation.item.input_audio_transcription.completed")
    assert words(completed[0]["transcript"]) == words(http_transcript)


async def test_the_manual_buffer_is_bounded(client: Client) -> None:
    await client.send(MANUAL)
    audio = pcm24("short.wav")  # 7 s; the fixture's buffer holds 20 s
    for _ in range(3):
        for piece in chunks(audio, seconds=1.0):
            await client.send({"type": "input_audio_buffer.append", "audio": piece})
    assert [event["error"]["code"] for event in client.of("error")] == ["input_audio_buffer_full"] * 2
