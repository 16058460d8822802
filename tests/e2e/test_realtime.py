"""Realtime transcription on the real server and the real model, through the official `openai` SDK's
realtime client (sync and async), as a user's program would run it: a recording streamed in real
time, manual commits, an `error` event for each bad client event, a full instance, an idle client,
and the browser's client-secret flow."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
import websockets
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequestParam
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from tests.support.engines import FIXTURES
from tests.support.realtime import CHUNK_S, RATE, chunks, pcm24, word_edits, words
from tests.support.server import Server, start_server, stop
from tests.support.servers import sdk

INTENT = {"intent": "transcription"}
SESSION: RealtimeTranscriptionSessionCreateRequestParam = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "whisper-1", "language": "en"},
        }
    },
}
MANUAL: RealtimeTranscriptionSessionCreateRequestParam = {
    "type": "transcription",
    "audio": {"input": {"turn_detection": None}},
}
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"
API_KEY = "realtime-test-key"


def receive(connection: Any) -> Any:
    """The next server event (the SDK's union of every Realtime event, read here as what it is)."""
    return connection.recv()


@pytest.fixture(scope="module")
def http_transcript(client: openai.OpenAI) -> str:
    with (FIXTURES / "short.wav").open("rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio).text


def stream_in_real_time(send: Any, audio: bytes) -> None:
    for piece in chunks(audio):
        send(piece)
        time.sleep(CHUNK_S)


def check_turn(events: list[Any], http_transcript: str) -> None:
    """One utterance: started → stopped → committed → completed, one item_id, the HTTP transcript."""
    kinds = [event.type for event in events]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        COMPLETED,
    ):
        assert kinds.count(kind) == 1, kinds
    started, stopped, committed, completed = (
        events[kinds.index(kind)]
        for kind in (
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            COMPLETED,
        )
    )
    assert kinds.index(started.type) < kinds.index(stopped.type) < kinds.index(committed.type)
    assert started.item_id == stopped.item_id == committed.item_id == completed.item_id
    deltas = [event for event in events if event.type == DELTA]
    assert deltas and all(delta.item_id == started.item_id for delta in deltas)
    assert kinds.index(DELTA) < kinds.index(COMPLETED)
    assert word_edits(completed.transcript, http_transcript) <= 1
    assert completed.usage.type == "duration" and completed.usage.seconds > 4


def test_sync_client_streams_a_recording_in_real_time(client: openai.OpenAI, http_transcript: str) -> None:
    with client.realtime.connect(extra_query=INTENT) as connection:
        created = receive(connection)
        assert created.type == "session.created" and created.session.type == "transcription"
        connection.session.update(session=SESSION)
        updated = receive(connection)
        assert updated.type == "session.updated"
        assert updated.session.audio.input.turn_detection.type == "server_vad"
        sender = threading.Thread(
            target=stream_in_real_time,
            args=(lambda piece: connection.input_audio_buffer.append(audio=piece), pcm24("short.wav")),
        )
        sender.start()
        events: list[Any] = []
        while not events or events[-1].type != COMPLETED:
            events.append(receive(connection))
        sender.join()
    check_turn(events, http_transcript)


def test_captions_arrive_while_a_long_utterance_is_still_spoken(client: openai.OpenAI) -> None:
    """16 s of speech, its pauses shorter than the 2 s of silence that end a turn: one utterance, and
    deltas for it before it ends (even on a busy machine a caption pass takes well under 8 s)."""
    speech = pcm24("long.ogg", lead_s=0.5, tail_s=0)[: 16 * RATE * 2]
    audio = speech + bytes(3 * RATE * 2)
    long_turns: RealtimeTranscriptionSessionCreateRequestParam = {
        "type": "transcription",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 2000}}},
    }
    with client.realtime.connect(extra_query=INTENT) as connection:
        receive(connection)
        connection.session.update(session=long_turns)
        receive(connection)
        sender = threading.Thread(
            target=stream_in_real_time,
            args=(lambda piece: connection.input_audio_buffer.append(audio=piece), audio),
        )
        sender.start()
        events: list[Any] = []
        while not events or events[-1].type != COMPLETED:
            events.append(receive(connection))
        sender.join()
    kinds = [event.type for event in events]
    assert kinds.count("input_audio_buffer.speech_stopped") == 1, kinds
    stopped = kinds.index("input_audio_buffer.speech_stopped")
    spoken = [event.delta for event in events[:stopped] if event.type == DELTA]
    assert spoken, kinds
    assert "welcome" in "".join(spoken).lower()
    assert "budget" in events[-1].transcript.lower()


@pytest.mark.anyio
async def test_async_client_streams_a_recording_in_real_time(server: Server, http_transcript: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    async with client.realtime.connect(extra_query=INTENT) as connection:
        assert (await receive(connection)).type == "session.created"
        await connection.session.update(session=SESSION)
        events: list[Any] = []

        async def send() -> None:
            for piece in chunks(pcm24("short.wav")):
                await connection.input_audio_buffer.append(audio=piece)
                await anyio.sleep(CHUNK_S)

        async with anyio.create_task_group() as group:
            group.start_soon(send)
            while not events or events[-1].type != COMPLETED:
                events.append(await receive(connection))
    assert events[0].type == "session.updated"
    check_turn(events[1:], http_transcript)


def test_manual_commits_transcribe_each_item_in_order(client: openai.OpenAI, http_transcript: str) -> None:
    with client.realtime.connect(extra_query=INTENT) as connection:
        receive(connection)
        connection.session.update(session=MANUAL)
        assert receive(connection).session.audio.input.turn_detection is None
        for _ in range(2):
            for piece in chunks(pcm24("short.wav"), seconds=1.0):  # faster than real time: within the burst
                connection.input_audio_buffer.append(audio=piece)
            connection.input_audio_buffer.commit()
        events: list[Any] = []
        while sum(event.type == COMPLETED for event in events) < 2:
            events.append(receive(connection))
    committed = [event for event in events if event.type == "input_audio_buffer.committed"]
    completed = [event for event in events if event.type == COMPLETED]
    assert [event.item_id for event in committed] == [event.item_id for event in completed]
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == committed[0].item_id
    assert not [event for event in events if event.type.startswith("input_audio_buffer.speech")]
    assert all(words(event.transcript) == words(http_transcript) for event in completed)


BAD_EVENTS: list[tuple[str, str, str | None]] = [
    ("{ not json", "invalid_json", None),
    (json.dumps({"type": "response.create", "event_id": "e1"}), "invalid_value", "type"),
    (
        json.dumps({"type": "input_audio_buffer.append", "audio": "***", "event_id": "e2"}),
        "invalid_value",
        "audio",
    ),
    (
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}),
        "invalid_value",
        "audio",
    ),
    (
        json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(1_100_000)).decode()}
        ),
        "audio_too_large",
        "audio",
    ),
    (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", None),
    (
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                },
            }
        ),
        "invalid_value",
        "session.audio.input.format.rate",
    ),
]


def test_every_bad_event_gets_an_error_event_and_the_session_goes_on(
    client: openai.OpenAI, http_transcript: str
) -> None:
    with client.realtime.connect(extra_query=INTENT) as connection:
        receive(connection)
        early = base64.b64encode(bytes(4800)).decode()
        connection.send_raw(
            json.dumps({"type": "input_audio_buffer.append", "audio": early, "event_id": "e0"})
        )
        error = receive(connection)
        assert error.type == "error" and error.error.code == "session_not_configured"
        assert error.error.event_id == "e0"
        connection.session.update(session=MANUAL)
        receive(connection)
        for raw, code, param in BAD_EVENTS:
            connection.send_raw(raw)
            event = receive(connection)
            assert event.type == "error", (raw[:80], event)
            assert (event.error.code, event.error.param) == (code, param), event
            assert event.error.type == "invalid_request_error" and event.error.message
        for piece in chunks(pcm24("short.wav"), seconds=1.0):
            connection.input_audio_buffer.append(audio=piece)
        connection.input_audio_buffer.commit()
        events: list[Any] = []
        while not events or events[-1].type != COMPLETED:
            events.append(receive(connection))
    assert words(events[-1].transcript) == words(http_transcript)


def test_a_connection_without_the_transcription_intent_is_refused(server: Server) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused, sdk(server).realtime.connect() as connection:
        receive(connection)
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["error"]["param"] == "intent"


# --- an instance with an API key, room for one session, and a short idle timeout -------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("realtime-small"),
        WHISPER_API_KEY=API_KEY,
        WHISPER_REALTIME_MAX_SESSIONS="1",
        WHISPER_REALTIME_IDLE_TIMEOUT_S="3",
        WHISPER_HEADER_TIMEOUT_S="1",
    )
    yield server
    stop(server)


def keyed(server: Server, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=60)


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"


def test_a_full_instance_refuses_a_new_session_with_an_error_event_and_1013(small: Server) -> None:
    with keyed(small).realtime.connect(extra_query=INTENT) as first:
        assert receive(first).type == "session.created"
        with ws_connect(ws_url(small), additional_headers={"Authorization": f"Bearer {API_KEY}"}) as second:
            refusal = json.loads(second.recv(timeout=10))
            assert refusal["type"] == "error" and refusal["error"]["code"] == "session_limit_reached"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                second.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        first.session.update(session=MANUAL)
        assert receive(first).type == "session.updated"  # the first session is unaffected
    # Its place is free again once it closed.
    with keyed(small).realtime.connect(extra_query=INTENT) as again:
        assert receive(again).type == "session.created"


def test_a_session_outlives_the_http_header_timeout(small: Server) -> None:
    """The connection's HTTP head deadline (1 s here) ends with the upgrade."""
    with keyed(small).realtime.connect(extra_query=INTENT) as connection:
        assert receive(connection).type == "session.created"
        for _ in range(5):
            time.sleep(0.5)
            connection.session.update(session=MANUAL)
            assert receive(connection).type == "session.updated"


def test_an_idle_session_is_closed_with_an_error_event(small: Server) -> None:
    with ws_connect(ws_url(small), additional_headers={"Authorization": f"Bearer {API_KEY}"}) as idle:
        assert json.loads(idle.recv(timeout=10))["type"] == "session.created"
        error = json.loads(idle.recv(timeout=10))
        assert error["type"] == "error" and error["error"]["code"] == "session_idle_timeout"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            idle.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.fixture(scope="module")
def short_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("realtime-short"), WHISPER_API_KEY=API_KEY, WHISPER_REALTIME_MAX_SESSION_S="2"
    )
    yield server
    stop(server)


def test_a_session_ends_at_its_maximum_length_with_an_error_event(short_sessions: Server) -> None:
    """The length limit (2 s here) ends a session long before its idle timeout (60 s), closed normally."""
    opened = time.monotonic()
    key = {"Authorization": f"Bearer {API_KEY}"}
    with ws_connect(ws_url(short_sessions), additional_headers=key) as session:
        assert json.loads(session.recv(timeout=10))["type"] == "session.created"
        error = json.loads(session.recv(timeout=10))
        lasted = time.monotonic() - opened
        assert error["type"] == "error" and error["error"]["code"] == "session_expired", error
        with pytest.raises(websockets.ConnectionClosed) as closed:
            session.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert 2 <= lasted < 10, lasted


def test_a_wrong_key_is_refused_before_the_upgrade(small: Server) -> None:
    logged = len(small.log.read_bytes())
    wrong = keyed(small, "wrong").realtime.connect(extra_query=INTENT)
    with pytest.raises(websockets.InvalidStatus) as refused, wrong as connection:
        receive(connection)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_api_key"
    # A refusal is the client's error, not the server's: nothing at ERROR (uvicorn logged one).
    time.sleep(0.5)
    since = small.log.read_bytes()[logged:].decode()
    assert '" 401' in since and '"ERROR"' not in since, since


def test_a_browser_opens_a_session_with_a_client_secret_never_the_key(small: Server) -> None:
    secret = keyed(small).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 60},
        session=MANUAL,
    )
    assert secret.value.startswith("ek_") and secret.expires_at > time.time()
    assert secret.session.type == "transcription"
    protocols = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{secret.value}")]
    with ws_connect(ws_url(small), subprotocols=protocols) as browser:
        assert browser.subprotocol == "realtime"
        created = json.loads(browser.recv(timeout=10))
        # The secret's session configuration applies: manual commits, audio accepted at once.
        assert created["session"]["audio"]["input"]["turn_detection"] is None
        browser.send(json.dumps({"type": "input_audio_buffer.commit"}))
        assert json.loads(browser.recv(timeout=10))["error"]["code"] == "input_audio_buffer_commit_empty"
    # The long-lived key is refused as a subprotocol: it never belongs in a page.
    with_key = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{API_KEY}")]
    with pytest.raises(websockets.InvalidStatus) as refused, ws_connect(ws_url(small), subprotocols=with_key):
        pass
    assert refused.value.response.status_code == 401
    # The secret transcribes an upload too (the page's file input), but cannot mint more secrets.
    page = keyed(small, secret.value)
    with (FIXTURES / "short.mp3").open("rb") as audio:
        assert "lazy dog" in page.audio.transcriptions.create(model="whisper-1", file=audio).text.lower()
    with pytest.raises(openai.APIStatusError) as forbidden:
        page.realtime.client_secrets.create(session=MANUAL)
    assert forbidden.value.status_code in (401, 403)


def metrics(server: Server) -> str:
    return httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).text


def test_sessions_errors_and_refusals_are_in_the_metrics(small: Server) -> None:
    with keyed(small).realtime.connect(extra_query=INTENT) as first:
        receive(first)
        assert "whisper_realtime_sessions_active 1.0" in metrics(small)
        first.send_raw("{ not json")
        assert receive(first).type == "error"
        with ws_connect(ws_url(small), additional_headers={"Authorization": f"Bearer {API_KEY}"}) as second:
            second.recv(timeout=10)
    text = metrics(small)
    assert "whisper_realtime_sessions_capacity 1.0" in text
    assert re.search(r'^whisper_realtime_sessions_total\{outcome="refused"\} [1-9]', text, re.MULTILINE)
    assert re.search(r'^whisper_realtime_errors_total\{code="invalid_json"\} [1-9]', text, re.MULTILINE)
    for name in (
        "whisper_realtime_first_delta_seconds_bucket",
        "whisper_realtime_finalisation_seconds_bucket",
    ):
        assert name in text, name
