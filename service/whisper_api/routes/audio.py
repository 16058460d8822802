"""OpenAI's audio endpoints: `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`.

A route validates the form (model, language, stream, granularities), builds the typed
`AudioRequest` and hands it to the `pipeline` (probe, queue, decode, transcribe, render), or
streams what it decodes (`streaming`).
"""

from collections.abc import Mapping
from functools import partial
from http import HTTPStatus
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field

from whisper_api import contract
from whisper_api.deps import DiarizerDep, PipelineDep, ServedModelsDep, SettingsDep
from whisper_api.diarization_form import (
    DIARIZED,
    accepts_vad_field,
    check_formats,
    diarization_request,
    diarization_unavailable,
    refuse_diarized_translation,
)
from whisper_api.engines.base import Engine
from whisper_api.errors import ERROR_RESPONSES, invalid_request
from whisper_api.languages import LANGUAGE_CODES
from whisper_api.multipart import AudioRoute
from whisper_api.pipeline import AudioRequest, DiarizationRequest, Pipeline
from whisper_api.schemas import (
    Task,
    TimestampGranularity,
    TranscribeOptions,
    TranscriptionDiarized,
    TranscriptionJson,
    TranscriptionRequest,
    TranscriptionVerbose,
    TranscriptTextDelta,
    TranscriptTextDone,
    TranscriptTextSegment,
    TranslationRequest,
)
from whisper_api.served_models import check_served, is_diarization_model
from whisper_api.settings import Settings
from whisper_api.streaming import stream_speaker_segments, stream_transcript

AUDIO_PATHS = (contract.TRANSCRIPTIONS_PATH, contract.TRANSLATIONS_PATH)
STREAMED_FORMATS = ("json", "text", "diarized_json")

# Fields of OpenAI's audio API that this service does not implement: refused, never ignored.
# A list field arrives as `name[]`, an object as `name[key]`: both count under `name`.
UNSUPPORTED_FIELDS = {
    "include": "Token log-probabilities (`include[]=logprobs`) are not available: neither engine exposes "
    "per-token log-probabilities (verbose_json segments carry `avg_logprob`).",
}
CHUNKING_STRATEGY = "chunking_strategy"
# OpenAI's translations take neither: the output is English text, timed by segment.
NOT_FOR_TRANSLATIONS = {
    "language": "Translations have no `language`: the spoken language is detected and the text is English.",
    "languages": "Translations have no `languages`: the spoken language is detected and the text is English.",
    "timestamp_granularities": "Translations have no `timestamp_granularities`: use a transcription with "
    "response_format=verbose_json for word timestamps.",
}


async def refuse_unsupported_fields(request: Request) -> None:
    """400 for the OpenAI fields this service does not implement, naming the field.

    FastAPI parsed the form before dependencies run: `request.form()` returns it, reading nothing.
    """
    form = await request.form()
    for name in form:
        base, _, key = name.partition("[")
        if base in UNSUPPORTED_FIELDS:
            raise invalid_request(UNSUPPORTED_FIELDS[base], param=name, code="unsupported_parameter")
        if base == CHUNKING_STRATEGY and key:
            _check_chunking_object(name, key.rstrip("]"), form)


async def refuse_transcription_only_fields(request: Request) -> None:
    """400 for the transcription fields that a translation would otherwise silently ignore."""
    for name in await request.form():
        base = name.partition("[")[0]
        if base in NOT_FOR_TRANSLATIONS:
            raise invalid_request(NOT_FOR_TRANSLATIONS[base], param=name, code="unsupported_parameter")


async def form_list(request: Request, name: str) -> list[str]:
    """A list field as `name[]` (how the SDK sends it) or as repeated bare `name`, both honoured."""
    form = await request.form()
    return [value for key in (f"{name}[]", name) for value in form.getlist(key) if isinstance(value, str)]


def _check_chunking_object(name: str, key: str, form: Mapping[str, object]) -> None:
    """`chunking_strategy[type]=server_vad` is accepted; VAD tuning fields only where they tune
    something (the speaker turns of diarized_json), refused otherwise."""
    if key == "type" and form[name] == "server_vad":
        return
    if key == "type":
        message = f"Invalid value for '{name}': only server_vad is supported."
        raise invalid_request(message, param=name, code="invalid_value")
    if accepts_vad_field(key, form):
        return
    raise invalid_request(
        f"'{name}' is not adjustable: this server cuts the audio with its own voice activity detection "
        "(server_vad fields tune the speaker turns of response_format=diarized_json only).",
        param=name,
        code="unsupported_parameter",
    )


router = APIRouter(
    tags=["audio"],
    route_class=AudioRoute,
    dependencies=[Depends(refuse_unsupported_fields)],
    # One `file`; a second part is still parsed far enough to be refused by name (duplicate_parameter).
    # A file part stays in memory up to 1 MB before it spills to disk: many small ones would hold
    # the whole upload in memory.
    form_limits={"max_files": 2},
)

_FILE_DESCRIPTION = (
    "The audio file: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm (recognised by content). "
    "The whole file is transcribed, however long, up to WHISPER_MAX_AUDIO_SECONDS."
)


class AudioUpload(BaseModel):
    file: UploadFile = Field(description=_FILE_DESCRIPTION)


# The upload first: its fields come first in /docs, and a body with neither names `file` first.
class TranscriptionUpload(TranscriptionRequest, AudioUpload):
    pass


class TranslationUpload(TranslationRequest, AudioUpload):
    pass


# The 200 response per response_format, so /docs shows every shape the endpoint returns.
_TEXT_EXAMPLES = {
    "text": "The quick brown fox jumps over the lazy dog.",
    "srt": "1\n00:00:00,000 --> 00:00:04,000\nThe quick brown fox jumps over the lazy dog.\n",
    "vtt": "WEBVTT\n\n00:00:00.000 --> 00:00:04.000\nThe quick brown fox jumps over the lazy dog.\n",
}
AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    HTTPStatus.OK: {
        "description": "The transcript in the asked-for `response_format`: `json` (TranscriptionJson), "
        "`verbose_json` (TranscriptionVerbose), or `text`, `srt` and `vtt` as text/plain. With "
        "`stream=true`, server-sent events: a `data:` line per decoded segment (TranscriptTextDelta), then "
        'one with the whole text (TranscriptTextDone), or `{"error": {...}}` if it fails on the way.',
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/TranscriptionJson"},
                        {"$ref": "#/components/schemas/TranscriptionVerbose"},
                        {"$ref": "#/components/schemas/TranscriptionDiarized"},
                    ]
                }
            },
            "text/plain": {
                "schema": {"type": "string"},
                "examples": {name: {"value": value} for name, value in _TEXT_EXAMPLES.items()},
            },
            "text/event-stream": {
                "schema": {"type": "string"},
                "example": 'data: {"type":"transcript.text.delta","delta":"The quick brown fox."}\n\n'
                'data: {"type":"transcript.text.done","text":"The quick brown fox.",'
                '"usage":{"type":"duration","seconds":4}}\n\n',
            },
        },
    },
    **ERROR_RESPONSES,
}
# Pydantic models referenced above by $ref only; listing them makes FastAPI emit their schemas.
RESPONSE_MODELS = (
    TranscriptionJson,
    TranscriptionVerbose,
    TranscriptionDiarized,
    TranscriptTextDelta,
    TranscriptTextSegment,
    TranscriptTextDone,
)


def check_stream(form: TranslationRequest) -> None:
    if form.stream and form.response_format not in STREAMED_FORMATS:
        raise invalid_request(
            f"stream=true sends the text as it is decoded: use response_format json, text or "
            f"diarized_json, not {form.response_format} (it needs the whole transcript).",
            param="stream",
            code="invalid_value",
        )


def check_language(language: str | None, engine: Engine, param: str = "language") -> str | None:
    if language is None or not language.strip():
        return None
    code = language.strip().lower()
    if code not in LANGUAGE_CODES:
        raise invalid_request(
            f"Unknown language '{language}': use an ISO-639-1 code Whisper supports, e.g. en, de, fr.",
            param=param,
            code="unsupported_language",
        )
    if code != "en" and not engine.multilingual:
        raise invalid_request(
            f"The served model '{engine.model}' is English-only and cannot transcribe language "
            f"'{code}'; omit `{param}`, send `en`, or run a multilingual model.",
            param=param,
            code="unsupported_language",
        )
    return code


MAX_KEYWORDS = 100
MAX_KEYWORD_CHARS = 100


def check_keywords(keywords: list[str], engine: Engine) -> list[str]:
    """faster-whisper's hotwords; openai-whisper has none (use `prompt` there)."""
    cleaned = [keyword.strip() for keyword in keywords if keyword.strip()]
    if cleaned and engine.name != "faster-whisper":
        raise invalid_request(
            f"keywords[] needs the faster-whisper engine (this server runs {engine.name}); put the words "
            "in `prompt` instead.",
            param="keywords[]",
            code="unsupported_parameter",
        )
    if len(cleaned) > MAX_KEYWORDS or any(len(keyword) > MAX_KEYWORD_CHARS for keyword in cleaned):
        raise invalid_request(
            f"keywords[] takes at most {MAX_KEYWORDS} words or phrases of at most {MAX_KEYWORD_CHARS} "
            "characters each.",
            param="keywords[]",
            code="invalid_value",
        )
    return cleaned


def check_language_hints(hints: list[str], language: str | None, engine: Engine) -> tuple[str, ...]:
    """`languages[]`: the languages detection may choose from (each speech group is detected alone).

    With `language` too, that language must be one of them: it then fixes the language.
    """
    codes = tuple(
        dict.fromkeys(code for hint in hints if (code := check_language(hint, engine, "languages[]")))
    )
    if language is not None and codes and language not in codes:
        raise invalid_request(
            f"language '{language}' is not among languages[] ({', '.join(codes)}): send one or the other.",
            param="languages[]",
            code="invalid_value",
        )
    return codes


def check_granularities(values: list[str]) -> list[TimestampGranularity]:
    """`timestamp_granularities` sent without `[]` (a repeated bare field): checked as the list is."""
    known = get_args(TimestampGranularity)
    for value in values:
        if value not in known:
            raise invalid_request(
                f"Invalid value for 'timestamp_granularities': {value!r}; use {' or '.join(known)}.",
                param="timestamp_granularities",
                code="invalid_value",
            )
    return [value for value in known if value in values]  # type: ignore[misc]


def _options(task: Task, form: TranslationRequest, settings: Settings, **extra: Any) -> TranscribeOptions:
    return TranscribeOptions(
        task=task,
        # Any length is accepted; Whisper keeps the prompt's last 223 tokens, well inside this tail.
        prompt=form.prompt[len(form.prompt) - settings.max_prompt_chars :] if form.prompt else None,
        # OpenAI's semantics: 0 (the default) means "start at 0 and fall back to higher temperatures".
        temperature=form.temperature or None,
        **extra,
    )


def _audio_request(
    form: TranscriptionUpload | TranslationUpload,
    options: TranscribeOptions,
    diarization: DiarizationRequest | None = None,
) -> AudioRequest:
    """What the pipeline needs of a validated form (a translation has segments only)."""
    granularities = frozenset(getattr(form, "timestamp_granularities", None) or ["segment"])
    return AudioRequest(
        form.file.file, form.file.size, options, form.response_format, granularities, diarization
    )


async def _answer(pipeline: Pipeline, upload: UploadFile, request: AudioRequest, stream: bool) -> Response:
    """Transcribe and render, or stream; the upload is closed (and its spool file freed) in any case."""
    if stream and request.diarization is not None:
        return await stream_speaker_segments(partial(pipeline.transcribe, request), on_close=upload.close)
    if stream:
        return await stream_transcript(partial(pipeline.transcribe, request), on_close=upload.close)
    try:
        rendered = await pipeline.render(request)
    finally:
        await upload.close()
    return Response(content=rendered.body, media_type=rendered.media_type)


@router.post(
    contract.TRANSCRIPTIONS_PATH,
    summary="Transcribe audio",
    response_class=Response,
    responses=AUDIO_RESPONSES,
)
async def create_transcription(
    request: Request,
    form: Annotated[TranscriptionUpload, Form(media_type="multipart/form-data")],
    pipeline: PipelineDep,
    settings: SettingsDep,
    served: ServedModelsDep,
    diarizer: DiarizerDep,
) -> Response:
    """Transcribe the uploaded audio into its own language (OpenAI `audio.transcriptions.create`);
    with `gpt-4o-transcribe-diarize` and `diarized_json`, who said what."""
    diarize = is_diarization_model(form.model, settings)
    if diarize and diarizer is None:
        raise diarization_unavailable(form.model)
    check_served(form.model, served)
    check_formats(form, diarize, settings.diarization_model_aliases)
    check_stream(form)
    language = check_language(form.language, pipeline.engine)
    hints = check_language_hints(await form_list(request, "languages"), language, pipeline.engine)
    bare = check_granularities((await request.form()).getlist("timestamp_granularities"))  # type: ignore[arg-type]
    if bare:
        form = form.model_copy(update={"timestamp_granularities": [*form.timestamp_granularities, *bare]})
    if form.timestamp_granularities and form.response_format != "verbose_json":
        raise invalid_request(
            "timestamp_granularities[] requires response_format=verbose_json.",
            param="timestamp_granularities[]" if not bare else "timestamp_granularities",
            code="invalid_value",
        )
    options = _options(
        "transcribe",
        form,
        settings,
        language=language,
        keywords=check_keywords(form.keywords, pipeline.engine),
        language_hints=hints,
        # Speakers are put on words: diarized_json needs the words' timestamps.
        word_timestamps="word" in form.timestamp_granularities or form.response_format == DIARIZED,
    )
    diarization = None
    if form.response_format == DIARIZED:
        diarization = await diarization_request(form, await request.form())
    return await _answer(pipeline, form.file, _audio_request(form, options, diarization), form.stream)


@router.post(
    contract.TRANSLATIONS_PATH,
    summary="Translate audio into English",
    response_class=Response,
    responses=AUDIO_RESPONSES,
    dependencies=[Depends(refuse_transcription_only_fields)],
)
async def create_translation(
    form: Annotated[TranslationUpload, Form(media_type="multipart/form-data")],
    pipeline: PipelineDep,
    settings: SettingsDep,
    served: ServedModelsDep,
) -> Response:
    """Transcribe the uploaded audio into English text (OpenAI `audio.translations.create`)."""
    check_served(form.model, served)
    refuse_diarized_translation(form.response_format)
    check_stream(form)
    options = _options("translate", form, settings)
    return await _answer(pipeline, form.file, _audio_request(form, options), form.stream)


__all__ = ["AUDIO_PATHS", "router"]
