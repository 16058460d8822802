"""Models shared by the routes, the engines and the formats.

`Transcript` is the engine-neutral result: both engines return it, every response format is
rendered from it. HTTP request/response models live here too, below the engine-neutral part.
"""

from typing import Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

Task = Literal["transcribe", "translate"]
ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
TimestampGranularity = Literal["word", "segment"]


class TranscribeOptions(BaseModel):
    """What the caller asked for, already validated; engines map it onto their own arguments."""

    task: Task = "transcribe"
    language: str | None = None
    language_hints: tuple[str, ...] = Field((), description="Detect only among these (empty: any).")
    prompt: str | None = None
    temperature: float | None = Field(None, ge=0, le=1, description="None: the fallback schedule.")
    word_timestamps: bool = False
    beam_size: int | None = Field(None, ge=1, le=10, description="None: the server's WHISPER_BEAM_SIZE.")
    keywords: list[str] = Field(
        default_factory=list, description="Words to favour (faster-whisper hotwords)."
    )


class WordOut(BaseModel):
    """A word as OpenAI's verbose_json shows it."""

    word: str
    start: float
    end: float


class Word(WordOut):
    probability: float | None = None


class SegmentOut(BaseModel):
    """A segment as OpenAI's verbose_json shows it."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class Segment(SegmentOut):
    words: list[Word] | None = None
    language: str | None = Field(
        None, description="The language it was decoded in, when detected run by run."
    )


class SpeakerSegment(BaseModel):
    """One speaker's words: a transcript segment split wherever the speaker changes."""

    start: float
    end: float
    speaker: str = Field(description="A known speaker's name, else A, B, ... in order of first appearance.")
    text: str


class SpeakerTurn(BaseModel):
    """A stretch of one speaker's voice, as diarization found it (what RTTM lists)."""

    start: float
    end: float
    speaker: str


class Speakers(BaseModel):
    segments: list[SpeakerSegment]
    turns: list[SpeakerTurn]


class Transcript(BaseModel):
    task: Task
    language: str
    duration: float
    segments: list[Segment]
    speakers: Speakers | None = Field(None, description="Who said what, when diarization was asked for.")

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for word in segment.words or []]

    @property
    def languages(self) -> list[str]:
        """Every language the speech was decoded in, in order of first appearance; none without
        speech (OpenAI's empty `languages`: nothing was reliably detected)."""
        return list(dict.fromkeys(segment.language or self.language for segment in self.segments))


# --- HTTP models: the OpenAI audio API's requests, the error envelope, models list and probes ---


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong, for a human.")
    type: str = Field(description="e.g. invalid_request_error, rate_limit_error, server_error.")
    param: str | None = Field(None, description="The request field at fault, if one is.")
    code: str | None = Field(None, description="A stable machine-readable code, e.g. file_too_large.")


class ErrorResponse(BaseModel):
    """OpenAI's error envelope: every non-2xx response of the service has this shape."""

    error: ErrorBody


class TranslationRequest(BaseModel):
    """The multipart fields of `POST /v1/audio/translations` (OpenAI's names and defaults)."""

    model: str = Field(
        description="The served model's name or one of its OpenAI aliases: `whisper-1`, `gpt-4o-transcribe`, "
        "`gpt-4o-mini-transcribe` (dated variants too; see /v1/models).",
    )
    prompt: str | None = Field(
        None,
        description="Text to guide the style or continue a previous segment; in the audio's language. "
        "Any length: as OpenAI, only its tail (the model's last 223 tokens) is used.",
    )
    response_format: ResponseFormat = Field(
        "json",
        description="json, text, srt, vtt or verbose_json; diarized_json with a diarization model "
        "(`gpt-4o-transcribe-diarize`) on transcriptions.",
    )
    temperature: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Sampling temperature in [0, 1]. 0 (the default) lets the engine raise it step by step "
        "when decoding fails its quality thresholds, as OpenAI does.",
    )
    stream: bool = Field(
        False,
        description="true: answer with server-sent events as the audio is decoded, one "
        "`transcript.text.delta` per segment, then `transcript.text.done` (response_format json or text).",
    )


class TranscriptionRequest(TranslationRequest):
    """The multipart fields of `POST /v1/audio/transcriptions` besides `file`."""

    language: str | None = Field(
        None, description="ISO-639-1 code of the audio's language (e.g. `en`); detected when omitted."
    )
    timestamp_granularities: list[TimestampGranularity] = Field(
        default_factory=list,
        alias="timestamp_granularities[]",
        description="`word` and/or `segment` (default segment); requires response_format=verbose_json.",
    )
    chunking_strategy: Literal["auto", "server_vad"] | None = Field(
        None,
        description="`auto` or `server_vad` (also as `chunking_strategy[type]`): accepted; the service "
        "always cuts the audio itself (30 s windows, voice activity detection on faster-whisper). VAD "
        "tuning fields (`chunking_strategy[threshold]`, `[silence_duration_ms]`, `[prefix_padding_ms]`) "
        "tune the speaker turns of diarized_json and are refused otherwise.",
    )
    keywords: list[str] = Field(
        default_factory=list,
        alias="keywords[]",
        description="Words or phrases the audio contains (names, jargon), up to 100 of at most 100 "
        "characters: faster-whisper's hotwords, given to every 30 s window (not only the first, as "
        "`prompt`). faster-whisper only.",
    )
    known_speaker_names: list[str] = Field(
        default_factory=list,
        alias="known_speaker_names[]",
        description="diarized_json only: up to 4 names, one per `known_speaker_references[]` entry; "
        "segments of a matching voice carry the name instead of a letter.",
    )
    known_speaker_references: list[str] = Field(
        default_factory=list,
        alias="known_speaker_references[]",
        description="diarized_json only: data URLs (`data:audio/wav;base64,...`) of 2 to 10 s of each "
        "known speaker's voice, any upload format.",
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """What `/readyz` reports: which engine and model answer, and on what hardware."""

    ready: bool
    engine: str
    model: str | None = None
    device: str | None = None
    compute_type: str | None = None
    cuda_available: bool | None = None
    gpu_name: str | None = None
    versions: dict[str, str] = Field(default_factory=dict, description="service, engine, python, ...")
    error: str | None = Field(None, description="Why the model failed to load, if it did.")


# ---------------------------------------------------------------------------------------------
# Response bodies, in OpenAI's shapes (formats.render builds them from a Transcript)
# ---------------------------------------------------------------------------------------------


class Usage(BaseModel):
    """What the request is billed on, in OpenAI's shape for models billed by audio duration."""

    type: Literal["duration"] = "duration"
    seconds: int = Field(description="Seconds of audio in the upload, rounded up (as OpenAI bills).")


class DetectedLanguage(BaseModel):
    """A language heard in the audio, as OpenAI's `languages` lists it."""

    code: str = Field(description="ISO-639-1 code, e.g. `en`.")


class TranscriptionJson(BaseModel):
    """`response_format=json` (the default): the text, the languages decoded, the audio's duration."""

    text: str
    languages: list[DetectedLanguage] = Field(
        description="The languages the speech was decoded in, in order of appearance (without "
        "`language`, a multilingual model detects it stretch by stretch)."
    )
    usage: Usage


class TranscriptionVerbose(BaseModel):
    """`response_format=verbose_json`. As OpenAI: `segments` unless only word granularity was
    asked for, `words` only when it was; a field left out is absent, not null."""

    task: Task
    language: str = Field(description="The language's English name in lower case, e.g. `english`.")
    duration: float = Field(description="Seconds of audio.")
    text: str
    segments: list[SegmentOut] | None = None
    words: list[WordOut] | None = None
    usage: Usage

    @model_serializer(mode="wrap")
    def _omit_absent_lists(self, handler: SerializerFunctionWrapHandler):  # no return type: keeps the schema
        data = handler(self)
        for key in ("segments", "words"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class TranscriptTextDelta(BaseModel):
    """A server-sent event of `stream=true`: the text of one more decoded segment."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TokenUsage(BaseModel):
    """OpenAI's usage for models billed by token, the only usage a `transcript.text.done` event has
    in the SDK: the audio in Whisper's encoder positions (50 a second), the text it decoded."""

    type: Literal["tokens"] = "tokens"
    input_tokens: int = Field(description="Audio tokens: 50 per second of audio (Whisper's encoder frames).")
    output_tokens: int = Field(description="Text tokens the decoder produced.")
    total_tokens: int
    input_token_details: dict[str, int] = Field(
        description="`audio_tokens` and `text_tokens` (0: the prompt is not counted)."
    )


class TranscriptTextDone(BaseModel):
    """The last server-sent event of `stream=true`: the whole text and its languages, as `json`."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    languages: list[DetectedLanguage]
    usage: TokenUsage


class TranscriptionDiarizedSegment(BaseModel):
    """A segment of `diarized_json`: one speaker's words (OpenAI's TranscriptionDiarizedSegment)."""

    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str = Field(description="`seg_0`, `seg_1`, ... in order.")
    start: float
    end: float
    speaker: str = Field(description="A known speaker's name, else A, B, ... in order of first appearance.")
    text: str


class TranscriptionDiarized(BaseModel):
    """`response_format=diarized_json`: the text, split into segments that each carry one speaker."""

    task: Literal["transcribe"] = "transcribe"
    duration: float = Field(description="Seconds of audio.")
    text: str
    segments: list[TranscriptionDiarizedSegment]
    usage: Usage


class TranscriptTextSegment(TranscriptionDiarizedSegment):
    """A server-sent event of `stream=true` with diarized_json: one finished speaker segment."""
