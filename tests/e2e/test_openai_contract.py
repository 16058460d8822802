"""OpenAI's audio API as the official SDK and plain HTTP clients see it, against the real server:
usage, segment ids, model aliases, prompts, refused parameters, VTT, request ids, .mpeg, CORS."""

import json
import math
import re

import httpx
import openai
import pytest

from tests.support.engines import ENGINE_NAMES, FIXTURES
from tests.support.server import Server
from tests.support.servers import ALLOWED_ORIGIN, Servers, sdk

TRANSCRIPTIONS = "/v1/audio/transcriptions"
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


def short_wav() -> dict[str, tuple[str, bytes]]:
    return {"file": ("short.wav", (FIXTURES / "short.wav").read_bytes())}


def post(server: Server, data: dict[str, object] | None = None, **kwargs: object) -> httpx.Response:
    kwargs.setdefault("files", short_wav())
    return httpx.post(f"{server.url}{TRANSCRIPTIONS}", data=data or {}, timeout=120, **kwargs)  # type: ignore[arg-type]


def error_of(response: httpx.Response, param: str | None, code: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error"), error
    return error["message"]


# --- usage, ids, ends: both engines --------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_verbose_json_usage_zero_based_ids_and_ends_within_the_audio(servers: Servers, engine: str) -> None:
    with (FIXTURES / "long.ogg").open("rb") as audio:
        transcript = sdk(servers[engine]).audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert transcript.usage is not None and transcript.usage.type == "duration"
    assert transcript.usage.seconds == math.ceil(transcript.duration)
    assert transcript.segments and [segment.id for segment in transcript.segments] == list(
        range(len(transcript.segments))
    )
    assert all(0 <= segment.start <= segment.end <= transcript.duration for segment in transcript.segments)
    assert transcript.words and all(word.end <= transcript.duration for word in transcript.words)


def test_json_usage(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert transcript.usage is not None
    assert (transcript.usage.type, transcript.usage.seconds) == ("duration", 6)  # 5.17 s, rounded up


def test_vtt_cues_carry_hours_and_end_within_the_audio(client: openai.OpenAI) -> None:
    with (FIXTURES / "long.ogg").open("rb") as audio:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    cues = re.findall(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})$", vtt, re.MULTILINE)
    assert cues and vtt.count(" --> ") == len(cues)
    last_end = cues[-1][4:]
    seconds = int(last_end[0]) * 3600 + int(last_end[1]) * 60 + int(last_end[2]) + int(last_end[3]) / 1000
    assert 30 < seconds <= 40.853  # long.ogg lasts 40.853 s


# --- model names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15", "tiny.en"]
)
def test_openai_model_names_are_aliases_of_the_served_model(client: openai.OpenAI, model: str) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio:
        transcript = client.audio.transcriptions.create(model=model, file=audio, response_format="text")
    assert "fox" in transcript.lower()
    assert client.models.retrieve(model).id == model


def test_an_unknown_model_is_404_on_retrieve_and_400_on_transcribe(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o-transcribe-diarize")
    assert caught.value.code == "model_not_found"
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(model="whisper-2", file=audio)
    assert (refused.value.code, refused.value.param) == ("model_not_found", "model")
    assert "gpt-4o-transcribe" in refused.value.message


@pytest.mark.parametrize("data", [{}, {"model": ""}], ids=["missing", "empty"])
def test_model_is_required(server: Server, data: dict[str, object]) -> None:
    message = error_of(post(server, data), "model", "missing_required_parameter")
    assert "'model'" in message


# --- prompts -------------------------------------------------------------------------------------


def test_a_prompt_longer_than_the_model_window_is_accepted(client: openai.OpenAI) -> None:
    """As OpenAI: the prompt's tail is used (Whisper keeps its last 223 tokens)."""
    prompt = "An unrelated sentence about the weather in spring. " * 400 + "A fox and a dog."
    with (FIXTURES / "short.wav").open("rb") as audio:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=audio, prompt=prompt)
    assert "fox" in transcript.text.lower()


def test_a_prompt_over_the_form_part_limit_is_refused_naming_it(server: Server) -> None:
    message = error_of(
        post(server, {"model": "whisper-1", "prompt": "x" * (1024 * 1024 + 1)}), "prompt", "field_too_large"
    )
    assert "1024 KB" in message


def test_a_prompt_that_is_not_utf8_is_refused(server: Server) -> None:
    response = post(server, {"model": "whisper-1", "prompt": "caf\xe9".encode("latin-1")})
    error_of(response, "prompt", "invalid_encoding")


def test_a_utf8_prompt_with_accents_is_accepted(server: Server) -> None:
    response = post(server, {"model": "whisper-1", "prompt": "Café, naïve, a fox."})
    assert response.status_code == 200, response.text


# --- refused and malformed parameters ------------------------------------------------------------


def test_logprobs_are_refused_with_the_reason(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio, include=["logprobs"])
    assert (caught.value.param, caught.value.code) == ("include[]", "unsupported_parameter")
    assert "log-probabilities" in caught.value.message


def test_speaker_references_need_diarized_json(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(
            model="whisper-1", file=audio, known_speaker_names=["agent"], known_speaker_references=["data:,"]
        )
    assert caught.value.param == "known_speaker_names[]" and "diarized_json" in caught.value.message


@pytest.mark.parametrize("strategy", ["auto", {"type": "server_vad"}], ids=["auto", "server_vad"])
def test_chunking_strategies_the_service_follows_are_accepted(
    client: openai.OpenAI, strategy: object
) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio:
        transcript = client.audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            chunking_strategy=strategy,  # type: ignore[arg-type]
        )
    assert "fox" in transcript.text.lower()


@pytest.mark.parametrize(
    ("data", "param", "code"),
    [
        (
            {"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "0.3"},
            "chunking_strategy[threshold]",
            "unsupported_parameter",
        ),
        ({"chunking_strategy[type]": "manual"}, "chunking_strategy[type]", "invalid_value"),
        ({"chunking_strategy": "fixed"}, "chunking_strategy", "invalid_value"),
        ({"stream": "maybe"}, "stream", "invalid_value"),
        ({"stream": "true", "response_format": "srt"}, "stream", "invalid_value"),
    ],
    ids=["vad-tuning", "unknown-type", "unknown-strategy", "stream-not-a-boolean", "stream-with-srt"],
)
def test_malformed_parameters_are_400_naming_them(
    server: Server, data: dict[str, object], param: str, code: str
) -> None:
    error_of(post(server, {"model": "whisper-1", **data}), param, code)


def test_two_file_parts_are_refused(server: Server) -> None:
    audio = (FIXTURES / "short.wav").read_bytes()
    response = post(
        server, {"model": "whisper-1"}, files=[("file", ("a.wav", audio)), ("file", ("b.wav", audio))]
    )
    error_of(response, "file", "duplicate_parameter")


# --- request ids ---------------------------------------------------------------------------------


def test_every_response_carries_a_request_id_that_the_log_line_has(server: Server) -> None:
    ok = post(server, {"model": "whisper-1"})
    refused = post(server, {"model": "nope"})
    missing = httpx.get(f"{server.url}/v1/nowhere")
    probe = httpx.get(f"{server.url}/healthz")
    ids = [response.headers["x-request-id"] for response in (ok, refused, missing, probe)]
    assert all(REQUEST_ID.fullmatch(value) for value in ids) and len(set(ids)) == 4
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    logged = {line.get("request_id"): line for line in lines}
    assert logged[ids[0]]["httpRequest"]["status"] == 200
    assert logged[ids[1]]["httpRequest"]["status"] == 400
    assert ids[0] in logged[ids[0]]["message"]


def test_a_sane_incoming_request_id_is_kept_and_an_odd_one_replaced(server: Server) -> None:
    kept = httpx.get(f"{server.url}/v1/models", headers={"X-Request-Id": "lb-1234.abc"})
    assert kept.headers["x-request-id"] == "lb-1234.abc"
    for odd in ("has spaces", "x" * 200, "semi;colon"):
        replaced = httpx.get(f"{server.url}/v1/models", headers={"X-Request-Id": odd})
        assert REQUEST_ID.fullmatch(replaced.headers["x-request-id"])


def test_sdk_errors_carry_the_request_id(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio, language="klingon")
    assert caught.value.request_id and REQUEST_ID.fullmatch(caught.value.request_id)


# --- containers ----------------------------------------------------------------------------------


def test_an_mpeg_program_stream_is_transcribed(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.mpeg").open("rb") as audio:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "lazy dog" in transcript.text.lower()


# --- CORS ----------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered(server: Server) -> None:
    response = httpx.options(
        f"{server.url}{TRANSCRIPTIONS}",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_a_browser_can_read_answers_and_request_ids(server: Server) -> None:
    response = post(server, {"model": "nope"}, headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_other_origins_get_no_cors_headers(server: Server) -> None:
    preflight = httpx.options(
        f"{server.url}{TRANSCRIPTIONS}",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers
    response = httpx.get(f"{server.url}/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_a_long_prompt_keeps_its_tail_not_its_head() -> None:
    """The engine gets the last WHISPER_MAX_PROMPT_CHARS characters (Whisper keeps the last tokens)."""
    from whisper_api.routes.audio import _options
    from whisper_api.schemas import TranscriptionRequest
    from whisper_api.settings import Settings

    settings = Settings()
    prompt = "head " * 5000 + "the tail words"
    options = _options("transcribe", TranscriptionRequest(model="whisper-1", prompt=prompt), settings)
    assert options.prompt is not None and len(options.prompt) == settings.max_prompt_chars
    assert options.prompt.endswith("the tail words") and prompt.endswith(options.prompt)


# --- parameters honoured or refused, never ignored -----------------------------------------------


def test_timestamp_granularities_without_brackets_are_honoured(server: Server) -> None:
    response = post(
        server, {"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities": "word"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["words"] and "segments" not in body


def test_an_unknown_granularity_without_brackets_is_400_naming_it(server: Server) -> None:
    data = {"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities": "minute"}
    assert "minute" in error_of(post(server, data), "timestamp_granularities", "invalid_value")


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities[]"),
        ({"timestamp_granularities": "segment"}, "timestamp_granularities"),
        ({"language": "en"}, "language"),
        ({"languages[]": "en"}, "languages[]"),
    ],
    ids=["granularities", "granularities-bare", "language", "languages"],
)
def test_translations_refuse_what_only_transcriptions_take(
    server: Server, data: dict[str, str], param: str
) -> None:
    response = httpx.post(
        f"{server.url}/v1/audio/translations",
        data={"model": "whisper-1", "response_format": "verbose_json", **data},
        files=short_wav(),
        timeout=120,
    )
    assert "Translations" in error_of(response, param, "unsupported_parameter")


def test_the_sdk_gets_the_translation_refusal_as_a_bad_request(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.translations.create(model="whisper-1", file=audio, extra_body={"language": "de"})
    assert (caught.value.param, caught.value.code) == ("language", "unsupported_parameter")


def test_languages_on_an_english_only_model_are_checked_like_language(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio:
        transcript = client.audio.transcriptions.create(model="whisper-1", file=audio, languages=["en"])
    assert transcript.languages is not None and [item.code for item in transcript.languages] == ["en"]
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio, languages=["en", "de"])
    assert (caught.value.param, caught.value.code) == ("languages[]", "unsupported_language")


@pytest.mark.parametrize(
    "model", ["whisper-1-2025-13-45", "gpt-4o-transcribe-2025-02-30", "whisper-1-0000-00-00"]
)
def test_dated_aliases_with_impossible_dates_are_not_served(
    client: openai.OpenAI, server: Server, model: str
) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model=model, file=audio)
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    assert httpx.get(f"{server.url}/v1/models/{model}", timeout=10).status_code == 404


def test_a_real_date_still_names_a_snapshot(client: openai.OpenAI) -> None:
    with (FIXTURES / "short.wav").open("rb") as audio:
        assert (
            "fox" in client.audio.transcriptions.create(model="whisper-1-2024-02-29", file=audio).text.lower()
        )


def test_an_mp4_that_decodes_to_far_less_than_it_declares_is_400_truncated(
    client: openai.OpenAI, tmp_path
) -> None:
    """An 11 s MP4 with its index first, cut after its fifth packet (0.26 s): not an empty 200."""
    import av
    import numpy as np

    from tests.support.engines import load_clip

    path = tmp_path / "eleven.mp4"
    samples = (load_clip("long.ogg")[: 11 * 16_000] * 32767).astype(np.int16)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("aac", rate=16_000, layout="mono")
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = 16_000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    data = path.read_bytes()
    with av.open(str(path)) as container:
        ends = [
            packet.pos + packet.size for packet in container.demux(container.streams.audio[0]) if packet.size
        ]
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("cut.mp4", data[: ends[4]]))
    assert (caught.value.param, caught.value.code) == ("file", "truncated_audio")
    assert "11.00 s" in caught.value.message
