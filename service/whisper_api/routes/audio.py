"""OpenAI's audio endpoints: `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`.

One request: validate the form → check the upload's header off the event loop → queue through the
scheduler → decode and run the engine in an inference slot → render the asked-for format. Each step
is timed on the request's StepTimer for Server-Timing and the log line.
"""

import threading
from functools import partial
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from whisper_api.audio import AudioError, decode_audio, duration_seconds, probe_audio
from whisper_api.engines.base import Engine, SegmentCallback
from whisper_api.errors import ERROR_RESPONSES, ApiError, invalid_request
from whisper_api.formats import render
from whisper_api.memory import RELEASE_AFTER_AUDIO_S, release_freed_memory
from whisper_api.multipart import AudioRoute
from whisper_api.routes.health import is_served, model_not_found, served_model_names
from whisper_api.scheduler import Scheduler
from whisper_api.schemas import (
    Task,
    TranscribeOptions,
    Transcript,
    TranscriptionJson,
    TranscriptionRequest,
    TranscriptionVerbose,
    TranscriptTextDelta,
    TranscriptTextDone,
    TranslationRequest,
)
from whisper_api.settings import Settings
from whisper_api.streaming import stream_transcript
from whisper_api.timing import StepTimer, request_timer

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
TRANSLATIONS_PATH = "/v1/audio/translations"
AUDIO_PATHS = (TRANSCRIPTIONS_PATH, TRANSLATIONS_PATH)
STREAMED_FORMATS = ("json", "text")
_TYPICAL_BYTES_PER_S = 16_000

# Fields of OpenAI's audio API that this service does not implement: refused, never ignored.
# A list field arrives as `name[]`, an object as `name[key]`: both count under `name`.
UNSUPPORTED_FIELDS = {
    "include": "Token log-probabilities (`include[]=logprobs`) are not available: neither engine exposes "
    "per-token log-probabilities (verbose_json segments carry `avg_logprob`).",
    "known_speaker_names": "Speaker diarization is not available: Whisper does not tell speakers apart.",
    "known_speaker_references": "Speaker diarization is not available: Whisper does not tell speakers apart.",
    "keywords": "`keywords` is not available; put the words in `prompt` instead.",
    "languages": "`languages` is not available; send one `language`, or none to have it detected.",
}
CHUNKING_STRATEGY = "chunking_strategy"


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
            _check_chunking_object(name, key.rstrip("]"), form[name])


def _check_chunking_object(name: str, key: str, value: object) -> None:
    """`chunking_strategy[type]=server_vad` is accepted; VAD tuning fields are refused."""
    if key == "type" and value == "server_vad":
        return
    if key == "type":
        message = f"Invalid value for '{name}': only server_vad is supported."
        raise invalid_request(message, param=name, code="invalid_value")
    raise invalid_request(
        f"'{name}' is not adjustable: this server cuts the audio with its own voice activity detection.",
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
RESPONSE_MODELS = (TranscriptionJson, TranscriptionVerbose, TranscriptTextDelta, TranscriptTextDone)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_timer(request: Request) -> StepTimer:
    return request_timer(request.scope)


def get_ready_engine(request: Request) -> Engine:
    """The loaded engine; 503 while the model is still loading."""
    engine: Engine | None = request.app.state.engine
    if engine is None or not request.app.state.readiness.ready:
        raise ApiError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "The model is still loading; retry shortly (see /readyz).",
            type="server_error",
            code="model_not_ready",
            headers={"Retry-After": "5"},
        )
    return engine


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def _languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the list Whisper's tokenizer knows

    return frozenset(_LANGUAGE_CODES)


LANGUAGES = _languages()


class AudioJob:
    """Everything one audio request needs, gathered by dependency injection."""

    def __init__(
        self,
        request: Request,
        settings: Annotated[Settings, Depends(get_settings)],
        engine: Annotated[Engine, Depends(get_ready_engine)],
        scheduler: Annotated[Scheduler, Depends(get_scheduler)],
        timer: Annotated[StepTimer, Depends(get_timer)],
    ) -> None:
        self.request = request
        self.settings = settings
        self.engine = engine
        self.scheduler = scheduler
        self.timer = timer

    async def run(self, upload: UploadFile, options: TranscribeOptions, form: TranslationRequest) -> Response:
        """Transcribe and render; the upload is closed (and its spool file freed) in any case."""
        try:
            transcript = await self.transcribe(upload, options)
            with self.timer.step("format"):
                granularities = frozenset(getattr(form, "timestamp_granularities", None) or ["segment"])
                body, media_type = render(transcript, form.response_format, granularities)
        finally:
            await upload.close()
        if isinstance(body, str):
            return Response(content=body, media_type=media_type)
        return Response(content=body.model_dump_json(), media_type=media_type)

    async def transcribe(
        self, upload: UploadFile, options: TranscribeOptions, on_segment: SegmentCallback | None = None
    ) -> Transcript:
        """Check the header, queue, then decode and transcribe in an inference slot.

        Only the header is read before the queue (a bomb is refused at once, and the queue learns
        how much audio is coming); the samples are decoded in the slot, so that at most `workers`
        decoded files are in memory. `on_segment` runs on the inference thread for each segment.
        """
        limit = self.settings.max_audio_seconds
        try:
            with self.timer.step("decode"):
                info = await run_in_threadpool(probe_audio, upload.file, limit)
            declared = info.declared_seconds
            # Without a declared duration, guess from the size at a typical 128 kbit/s.
            expected_s = declared if declared is not None else (upload.size or 0) / _TYPICAL_BYTES_PER_S

            def decode_and_transcribe(cancel: threading.Event) -> Transcript:
                with self.timer.step("decode"):
                    audio = decode_audio(upload.file, limit)
                self.timer.audio_seconds = duration_seconds(audio)
                with self.timer.step("inference"):
                    return self.engine.transcribe(audio, options, on_segment=on_segment, cancel=cancel)

            def work(cancel: threading.Event) -> Transcript:
                try:
                    return decode_and_transcribe(cancel)  # its samples are freed when it returns
                finally:
                    if (self.timer.audio_seconds or 0) >= RELEASE_AFTER_AUDIO_S:
                        release_freed_memory()

            return await self.scheduler.run(self.timer, work, audio_seconds=min(expected_s, limit))
        except AudioError as error:
            raise invalid_request(str(error), param="file", code=error.code) from error

    async def stream(self, upload: UploadFile, options: TranscribeOptions) -> Response:
        """`stream=true`: server-sent events, a delta per decoded segment (see `streaming`)."""
        return await stream_transcript(partial(self.transcribe, upload, options), on_close=upload.close)

    def check_model(self, model: str) -> None:
        served = served_model_names(self.request)
        if not is_served(model, served):
            raise model_not_found(model, served)

    def check_stream(self, form: TranslationRequest) -> None:
        if form.stream and form.response_format not in STREAMED_FORMATS:
            raise invalid_request(
                f"stream=true sends the text as it is decoded: use response_format json or text, not "
                f"{form.response_format} (it needs the whole transcript).",
                param="stream",
                code="invalid_value",
            )

    def check_language(self, language: str | None) -> str | None:
        if language is None or not language.strip():
            return None
        code = language.strip().lower()
        if code not in LANGUAGES:
            raise invalid_request(
                f"Unknown language '{language}': use an ISO-639-1 code Whisper supports, e.g. en, de, fr.",
                param="language",
                code="unsupported_language",
            )
        if code != "en" and not self.engine.multilingual:
            raise invalid_request(
                f"The served model '{self.engine.model}' is English-only and cannot transcribe language "
                f"'{code}'; omit `language`, send `en`, or run a multilingual model.",
                param="language",
                code="unsupported_language",
            )
        return code


def _options(task: Task, form: TranslationRequest, settings: Settings, **extra: Any) -> TranscribeOptions:
    return TranscribeOptions(
        task=task,
        # Any length is accepted; Whisper keeps the prompt's last 223 tokens, well inside this tail.
        prompt=form.prompt[len(form.prompt) - settings.max_prompt_chars :] if form.prompt else None,
        # OpenAI's semantics: 0 (the default) means "start at 0 and fall back to higher temperatures".
        temperature=form.temperature or None,
        **extra,
    )


@router.post(
    TRANSCRIPTIONS_PATH,
    summary="Transcribe audio",
    response_class=Response,
    responses=AUDIO_RESPONSES,
)
async def create_transcription(
    form: Annotated[TranscriptionUpload, Form(media_type="multipart/form-data")],
    job: Annotated[AudioJob, Depends()],
) -> Response:
    """Transcribe the uploaded audio into its own language (OpenAI `audio.transcriptions.create`)."""
    job.check_model(form.model)
    job.check_stream(form)
    language = job.check_language(form.language)
    if form.timestamp_granularities and form.response_format != "verbose_json":
        raise invalid_request(
            "timestamp_granularities[] requires response_format=verbose_json.",
            param="timestamp_granularities[]",
            code="invalid_value",
        )
    options = _options(
        "transcribe",
        form,
        job.settings,
        language=language,
        word_timestamps="word" in form.timestamp_granularities,
    )
    if form.stream:
        return await job.stream(form.file, options)
    return await job.run(form.file, options, form)


@router.post(
    TRANSLATIONS_PATH,
    summary="Translate audio into English",
    response_class=Response,
    responses=AUDIO_RESPONSES,
)
async def create_translation(
    form: Annotated[TranslationUpload, Form(media_type="multipart/form-data")],
    job: Annotated[AudioJob, Depends()],
) -> Response:
    """Transcribe the uploaded audio into English text (OpenAI `audio.translations.create`)."""
    job.check_model(form.model)
    job.check_stream(form)
    options = _options("translate", form, job.settings)
    if form.stream:
        return await job.stream(form.file, options)
    return await job.run(form.file, options, form)


__all__ = ["AUDIO_PATHS", "TRANSCRIPTIONS_PATH", "TRANSLATIONS_PATH", "router"]
