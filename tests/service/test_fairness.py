"""Fair scheduling and honest back-off on the real server: `python -m whisper_api` on loopback, the
real model, the official SDK with its default retries.

Audio without speech (hours of a constant value, a low repeating pattern) is gated before VAD and
never reaches the model; a short request overtakes long ones; Retry-After is learnt from speech
only; bursts that fit the deadline are all admitted; a file that cannot finish within the deadline
is refused once, before inference, with an error the SDK does not retry.
"""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.audio import flac_of_constant, long_recording, wav_of_pattern
from tests.support.engines import FIXTURES
from tests.support.server import Server, start_server, stop

THREE_HOURS_S = 3 * 3600 - 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The defaults (one worker, admission by predicted completion), as a Cloud Run instance runs."""
    running = start_server(tmp_path_factory.mktemp("server"), WHISPER_WORKERS="1")
    yield running
    stop(running)


@pytest.fixture(scope="module")
def constant_3h() -> bytes:
    return flac_of_constant(THREE_HOURS_S)


def client(server: Server, **options: object) -> openai.AsyncOpenAI:
    """The official client with its default retries (2, honouring Retry-After)."""
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="not-needed-locally", **options)  # type: ignore[arg-type]


async def admitted(server: Server, count: int) -> None:
    """Until the server holds `count` requests in its queue (its metric, not an event here)."""
    deadline = time.monotonic() + 60
    while server.metric("whisper_requests_admitted") < count:
        assert time.monotonic() < deadline, f"{count} requests were never admitted"
        await asyncio.sleep(0.05)


def steps(server_timing: str) -> set[str]:
    return {part.split(";")[0].strip() for part in server_timing.split(",")}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["constant-3h.flac", "pattern-100min-4khz-8bit.wav"])
async def test_audio_without_speech_never_reaches_the_model(
    server: Server, constant_3h: bytes, kind: str
) -> None:
    audio = constant_3h if kind.endswith(".flac") else wav_of_pattern(100 * 60)
    async with client(server, max_retries=0) as sdk:
        raw = await sdk.audio.transcriptions.with_raw_response.create(
            model="whisper-1", file=(kind, audio), response_format="verbose_json"
        )
    transcript = raw.parse()
    assert transcript.text == "" and transcript.segments == []
    assert transcript.duration > 99 * 60
    # Decoded and gated; no inference step at all (before the gate, VAD ran over every hour).
    timed = steps(raw.headers["server-timing"])
    assert {"decode", "gate"} <= timed and "inference" not in timed


@pytest.mark.anyio
async def test_a_short_request_finishes_before_three_long_files_queued_ahead_of_it(
    server: Server, constant_3h: bytes
) -> None:
    finished: list[str] = []
    async with client(server) as sdk:

        async def transcribe(name: str, audio: bytes) -> str:
            result = await sdk.audio.transcriptions.create(model="whisper-1", file=(name, audio))
            finished.append(name)
            return result.text

        longs = [asyncio.create_task(transcribe(f"long-{i}.flac", constant_3h)) for i in range(3)]
        await admitted(server, 3)
        short = await transcribe("short.wav", (FIXTURES / "short.wav").read_bytes())
        assert "fox" in short.lower()
        assert finished == ["short.wav"]  # while all three long ones still go on
        assert [text for text in await asyncio.gather(*longs)] == ["", "", ""]
    assert finished[0] == "short.wav" and len(finished) == 4


@pytest.mark.anyio
async def test_a_burst_of_32_after_silent_hours_is_answered_whole(server: Server) -> None:
    """After the 3-hour files (learnt from, they made the queue look 5000 times faster than it
    is), 32 simultaneous SDK calls with default retries all succeed: they fit the deadline."""
    clip = (FIXTURES / "short.wav").read_bytes()
    async with client(server) as sdk:
        results = await asyncio.gather(
            *(
                sdk.audio.transcriptions.create(model="whisper-1", file=("short.wav", clip))
                for _ in range(32)
            ),
            return_exceptions=True,
        )
    failures = [result for result in results if isinstance(result, BaseException)]
    assert not failures, failures[:3]
    assert all("fox" in result.text.lower() for result in results)  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.anyio
async def test_sixty_concurrent_mixed_calls_all_succeed_on_one_instance(
    server: Server, tmp_path: Path
) -> None:
    clip = (FIXTURES / "short.wav").read_bytes()
    five_minutes = long_recording(tmp_path, 8)  # 5.4 minutes of speech
    async with client(server) as sdk:
        transcriptions = sdk.audio.transcriptions

        async def streamed() -> str:
            stream = await transcriptions.create(model="whisper-1", file=("short.wav", clip), stream=True)
            return "".join([event.text async for event in stream if event.type == "transcript.text.done"])

        async def long_call(index: int) -> str:
            return (
                await transcriptions.create(model="whisper-1", file=(f"long-{index}.wav", five_minutes))
            ).text

        calls = [long_call(i) for i in range(5)]
        for index in range(55):
            kind = index % 5
            if kind == 0:
                calls.append(transcriptions.create(model="whisper-1", file=("a.wav", clip)))
            elif kind == 1:
                calls.append(
                    transcriptions.create(
                        model="whisper-1",
                        file=("b.wav", clip),
                        response_format="verbose_json",
                        timestamp_granularities=["word"],
                    )
                )
            elif kind == 2:
                calls.append(
                    transcriptions.create(model="whisper-1", file=("c.wav", clip), response_format="srt")
                )
            elif kind == 3:
                calls.append(sdk.audio.translations.create(model="whisper-1", file=("d.wav", clip)))
            else:
                calls.append(streamed())
        results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    assert not failures, failures[:3]
    assert all(len(str(text).split()) > 500 for text in results[:5])


# --- Retry-After and the deadline, on instances made small for it ------------------------------


@pytest.fixture
def two_places(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, WHISPER_WORKERS="1", WHISPER_QUEUE_SIZE="2")
    yield running
    stop(running)


@pytest.mark.anyio
async def test_retry_after_from_a_full_instance_is_when_a_place_is_really_free(
    two_places: Server, tmp_path: Path
) -> None:
    """Silent files first (cheap, and not learnt from), then two long speech requests fill the
    instance: the third is told to come back when a place is free, and then is served."""
    silent = flac_of_constant(20 * 60)
    speech = long_recording(tmp_path, 4)  # 2.7 minutes
    async with client(two_places, max_retries=0) as sdk:
        await sdk.audio.transcriptions.create(
            model="whisper-1", file=("short.wav", (FIXTURES / "short.wav").read_bytes())
        )
        for _ in range(3):
            assert (
                await sdk.audio.transcriptions.create(model="whisper-1", file=("s.flac", silent))
            ).text == ""
        busy = [
            asyncio.create_task(sdk.audio.transcriptions.create(model="whisper-1", file=(f"{i}.wav", speech)))
            for i in range(2)
        ]
        await admitted(two_places, 2)
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk.audio.transcriptions.create(model="whisper-1", file=("late.wav", speech))
        refused_at = time.monotonic()
        retry_after = int(refused.value.response.headers["retry-after"])
        await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
        freed_after = time.monotonic() - refused_at
        print(f"Retry-After {retry_after} s; a place was free {freed_after:.1f} s after the refusal")
        # Not 1 s (the queue takes seconds), not much more than the wait really was: the learnt speed
        # is a prediction, so a factor of two either way, and a second for the header's rounding.
        assert retry_after >= 2 and freed_after / 2 - 1 <= retry_after <= 2 * freed_after + 1
        await asyncio.sleep(max(0.0, refused_at + retry_after - time.monotonic()))
        served = await sdk.audio.transcriptions.create(model="whisper-1", file=("again.wav", speech))
        assert len(served.text.split()) > 200
        await asyncio.gather(*busy)


@pytest.fixture
def five_second_deadline(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, WHISPER_WORKERS="1", WHISPER_REQUEST_TIMEOUT_S="5")
    yield running
    stop(running)


@pytest.mark.anyio
async def test_audio_that_cannot_finish_by_the_deadline_is_refused_once_before_inference(
    five_second_deadline: Server, tmp_path: Path
) -> None:
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    http = httpx.AsyncClient(event_hooks={"request": [count]}, timeout=60)
    async with client(five_second_deadline, http_client=http) as sdk:
        clip = (FIXTURES / "short.wav").read_bytes()
        assert (
            "fox"
            in (await sdk.audio.transcriptions.create(model="whisper-1", file=("s.wav", clip))).text.lower()
        )
        sent.clear()
        with pytest.raises(openai.APIStatusError) as refused:
            await sdk.audio.transcriptions.create(
                model="whisper-1", file=("long.wav", long_recording(tmp_path, 8))
            )
    assert refused.value.status_code == 413
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "audio_too_long_for_deadline"
    assert "stream=true" in error["message"] and "make batch" in error["message"]
    assert len(sent) == 1  # the SDK did not retry it (a 504 at the deadline it retried twice)


@pytest.fixture
def small_upload_budget(tmp_path: Path) -> Iterator[Server]:
    """Room for the uploads of about two 2.7-minute WAVs (5.2 MB each), whatever their count."""
    running = start_server(tmp_path, WHISPER_WORKERS="1", WHISPER_QUEUE_BYTES="12000000")
    yield running
    stop(running)


@pytest.mark.anyio
async def test_the_queue_holds_what_its_upload_budget_allows_not_a_count(
    small_upload_budget: Server, tmp_path: Path
) -> None:
    """Two long uploads fill the bytes kept for uploads: a third long one is refused at once with
    Retry-After, while short requests (a few kB each) are still admitted beside them."""
    speech = long_recording(tmp_path, 4)
    async with client(small_upload_budget, max_retries=0) as sdk:
        busy = [
            asyncio.create_task(sdk.audio.transcriptions.create(model="whisper-1", file=(f"{i}.wav", speech)))
            for i in range(2)
        ]
        await admitted(small_upload_budget, 2)
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk.audio.transcriptions.create(model="whisper-1", file=("third.wav", speech))
        assert refused.value.code == "queue_full" and int(refused.value.response.headers["retry-after"]) >= 1
        assert "MB of the 12.0 MB this instance keeps for them" in refused.value.message
        short = (FIXTURES / "short.wav").read_bytes()
        answers = await asyncio.gather(
            *(sdk.audio.transcriptions.create(model="whisper-1", file=(f"s{i}.wav", short)) for i in range(4))
        )
        assert all("lazy dog" in answer.text.lower() for answer in answers)
        await asyncio.gather(*busy)
