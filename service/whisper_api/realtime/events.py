"""The Realtime API's events this server speaks, in OpenAI's shapes (the `openai` SDK's
`types/realtime/*` are the reference; the tests validate every server event with them).

Client events are parsed strictly: an unknown type or field is an `error` event, never ignored.
Server events carry only the fields OpenAI's clients read; `event_id`s and `item_id`s are made here.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SAMPLE_RATE_PCM = 24_000
SAMPLE_RATE_G711 = 8_000
FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]


def new_id(prefix: str) -> str:
    """OpenAI-looking ids (`event_…`, `item_…`, `sess_…`): unique and unguessable."""
    return f"{prefix}_{secrets.token_urlsafe(16)[:21]}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the transcription session's configuration (what session.update sets, session.updated shows) ---


class AudioFormat(_Strict):
    """`audio/pcm` is 16-bit little-endian mono at 24 kHz (the only rate OpenAI takes); the G.711
    formats are 8 kHz, as OpenAI sends them to telephony clients."""

    type: FormatType = "audio/pcm"
    rate: Literal[24000] | None = None

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE_PCM if self.type == "audio/pcm" else SAMPLE_RATE_G711

    def shown(self) -> AudioFormat:
        return AudioFormat(type=self.type, rate=SAMPLE_RATE_PCM if self.type == "audio/pcm" else None)


class TranscriptionConfig(_Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class ServerVad(_Strict):
    type: Literal["server_vad"]
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=100, le=10_000)
    # Accepted for OpenAI's clients, which send them; a transcription session never creates responses.
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None


class AudioInput(_Strict):
    format: AudioFormat | None = None
    transcription: TranscriptionConfig | None = None
    turn_detection: ServerVad | None = None
    noise_reduction: dict[str, Any] | None = None


class SessionAudio(_Strict):
    input: AudioInput | None = None


class TranscriptionSession(_Strict):
    """A `session.update`'s `session` (partial: only the fields present change) or the effective
    configuration (every field filled in)."""

    type: Literal["transcription"]
    audio: SessionAudio | None = None
    include: list[str] | None = None
    # Shown by the server, ignored when a client sends them back.
    id: str | None = None
    object: str | None = None
    expires_at: int | None = None


# --- client events ---


class SessionUpdate(_Strict):
    type: Literal["session.update"]
    session: dict[str, Any]  # validated as a TranscriptionSession by the session, naming the bad field
    event_id: str | None = None


class AudioAppend(_Strict):
    type: Literal["input_audio_buffer.append"]
    audio: str
    event_id: str | None = None


class AudioCommit(_Strict):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class AudioClear(_Strict):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


ClientEvent = Annotated[SessionUpdate | AudioAppend | AudioCommit | AudioClear, Field(discriminator="type")]
CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)


# --- server events ---


class ServerEvent(BaseModel):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class SessionEvent(ServerEvent):
    type: Literal["session.created", "session.updated"]
    session: dict[str, Any]


class SpeechStarted(ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class Committed(ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


class Cleared(ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class TranscriptionDelta(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionCompleted(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: DurationUsage


class ErrorDetail(BaseModel):
    type: str = "invalid_request_error"
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None  # the client event at fault


class TranscriptionFailed(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: ErrorDetail


class ErrorEvent(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


def error_event(
    message: str,
    *,
    code: str,
    param: str | None = None,
    event_id: str | None = None,
    type: str = "invalid_request_error",
) -> ErrorEvent:
    return ErrorEvent(
        error=ErrorDetail(type=type, code=code, message=message, param=param, event_id=event_id)
    )
