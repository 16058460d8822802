"""`stream=true` as the official SDK consumes it, against the real server on both engines: a delta
per decoded segment, then the whole text with usage; refusals stay HTTP errors; a client leaving
a stream stops its inference."""

import json
import math
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.audio import long_recording
from tests.support.engines import ENGINE_NAMES, FIXTURES
from tests.support.server import Server
from tests.support.servers import Servers, sdk


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_sdk_receives_a_delta_per_segment_then_the_text_and_usage(servers: Servers, engine: str) -> None:
    client = sdk(servers[engine])
    with (FIXTURES / "long.ogg").open("rb") as audio:
        events = list(client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio, stream=True))
    with (FIXTURES / "long.ogg").open("rb") as audio:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json"
        )

    *deltas, done = events
    assert done.type == "transcript.text.done"
    assert [event.type for event in deltas] == ["transcript.text.delta"] * len(deltas)
    assert verbose.segments and len(deltas) == len(verbose.segments) > 1
    assert "".join(event.delta for event in deltas) == done.text == verbose.text
    # Token usage, the only usage the SDK types for this event: the audio as Whisper's encoder
    # positions (50 a second of the 40.86 s), the text as the tokens decoded.
    assert done.usage is not None and done.usage.type == "tokens"
    assert done.usage.input_tokens == math.ceil(verbose.duration * 50)
    assert done.usage.output_tokens == sum(len(segment.tokens) for segment in verbose.segments)
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.languages is not None and [language.code for language in done.languages] == ["en"]


def test_the_done_event_validates_strictly_against_the_sdk_type(server: Server) -> None:
    """The SDK builds events without validating them; a strict validation is what a typed client does."""
    from openai.types.audio import TranscriptionTextDoneEvent

    events = sse_events(server, "/v1/audio/transcriptions", "short.wav", "json")
    TranscriptionTextDoneEvent.model_validate(events[-1], strict=True)


def test_a_streams_whole_timing_is_logged_once_it_ends(server: Server) -> None:
    """Server-Timing left with the first event, before the inference ended; the log line has it all."""
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("long.ogg", (FIXTURES / "long.ogg").read_bytes())},
        data={"model": "whisper-1", "stream": "true"},
        timeout=120,
    ) as response:
        header = response.headers["server-timing"]
        request_id = response.headers["x-request-id"]
        list(response.iter_lines())
    assert "inference" not in header
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.log.read_text().splitlines() if request_id in line]
        logged = [line["server_timing"] for line in lines if "server_timing" in line]
        if logged:
            break
        time.sleep(0.1)
    assert logged and "inference;dur=" in logged[0] and "total;dur=" in logged[0], lines


def sse_events(server: Server, path: str, fixture: str, response_format: str) -> list[dict]:
    with httpx.stream(
        "POST",
        f"{server.url}{path}",
        files={"file": (fixture, (FIXTURES / fixture).read_bytes())},
        data={"model": "whisper-1", "stream": "true", "response_format": response_format},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        return [
            json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")
        ]


def test_translations_stream_too(server: Server) -> None:
    """The SDK's translations.create has no `stream` argument; plain HTTP reads the same events."""
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/translations",
        files={"file": ("short.wav", (FIXTURES / "short.wav").read_bytes())},
        data={"model": "whisper-1", "stream": "true", "response_format": "text"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"].startswith("req_")
        events = [
            json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert [event["type"] for event in events] == ["transcript.text.delta", "transcript.text.done"]
    assert "fox" in events[-1]["text"].lower() and events[0]["delta"] == events[-1]["text"]
    assert events[-1]["usage"]["type"] == "tokens"
    assert events[-1]["usage"]["input_tokens"] == 259  # 5.16 s of audio, 50 a second


def test_audio_without_speech_streams_only_the_empty_text(client: openai.OpenAI) -> None:
    with (FIXTURES / "silence.flac").open("rb") as audio:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True))
    assert [(event.type, event.text) for event in events] == [("transcript.text.done", "")]


def test_a_refusal_before_the_first_segment_is_an_http_error(client: openai.OpenAI) -> None:
    with (FIXTURES / "not_audio.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True)
    assert (caught.value.code, caught.value.param) == ("invalid_audio", "file")


def test_leaving_a_stream_stops_its_inference_and_frees_the_worker(
    client: openai.OpenAI, server: Server, tmp_path: Path
) -> None:
    """An 11-minute recording (tens of seconds of inference here): the client reads one delta and
    hangs up; the engine stops within a segment and the next request is served within seconds."""
    recording = long_recording(tmp_path, repeats=16)
    stream = client.audio.transcriptions.create(model="whisper-1", file=("long.wav", recording), stream=True)
    first = next(iter(stream))
    assert first.type == "transcript.text.delta"
    assert server.metric("whisper_inferences_in_flight") == 1
    stream.close()
    left_at = time.monotonic()
    while server.metric("whisper_inferences_in_flight") != 0:
        assert time.monotonic() - left_at < 15, "the inference went on after its client left"
        time.sleep(0.05)
    freed_after = time.monotonic() - left_at
    with (FIXTURES / "short.wav").open("rb") as audio:
        served = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "fox" in served.text.lower()
    print(f"freed {freed_after:.2f} s after the client left; served {time.monotonic() - left_at:.2f} s after")
