"""`stream=true` as the official SDK consumes it, against the real server on both engines: a delta
per decoded segment, then the whole text with usage; refusals stay HTTP errors; a client leaving
a stream stops its inference."""

import json
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
    assert done.usage is not None and done.usage.type == "duration"
    assert done.usage.model_dump()["seconds"] == 41  # 40.85 s of audio, rounded up


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
    assert events[-1]["usage"] == {"type": "duration", "seconds": 6}


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
