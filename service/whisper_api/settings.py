"""The service's whole configuration: one pydantic-settings class read from `WHISPER_*` variables.

Read once at start-up (`get_settings`) and passed down; nothing else reads the environment.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from whisper_api import contract

Engine = Literal["faster-whisper", "openai-whisper"]
Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    """Every knob of the service; each field is documented in docs/api.md's settings table."""

    model_config = SettingsConfigDict(env_prefix=contract.ENV_PREFIX, extra="ignore")

    # Model and engine
    engine: Engine = Field(contract.DEFAULT_ENGINE, description="Inference engine.")
    model: str = Field(
        contract.BUNDLED_MODEL,
        description="Model name (resolved under model_dir, or the bundled tiny.en) or a local path.",
    )
    model_dir: Path | None = Field(None, description="Folder of models baked into the image.")
    model_cache_dir: Path | None = Field(
        None, description="Where `base` is assembled from its packages; default ~/.cache/whisper-api/models."
    )
    device: Device = Field("auto", description="auto picks cuda when a GPU is visible.")
    compute_type: str = Field(
        "auto",
        description="auto: int8 (CPU) / float16 (GPU) for faster-whisper; float32 / float16 for openai.",
    )
    cpu_threads: int = Field(
        0, ge=0, description="CPU threads for inference; 0: all cores but one (faster-whisper), all (openai)."
    )
    beam_size: int = Field(5, ge=1, le=10, description="Beam size for decoding.")
    vad_filter: bool = Field(True, description="Skip non-speech with Silero VAD (faster-whisper).")
    condition_on_previous_text: bool = Field(
        False,
        description="Prompt each 30 s window with the text decoded before it. Off: on long audio it "
        "made tiny.en drop and repeat sentences "
        "(docs/decisions/2026-11-29-no-conditioning-on-previous-text.md).",
    )
    batch_size: int = Field(0, ge=0, description="faster-whisper batched inference; 0 means sequential.")

    # Limits and concurrency
    max_upload_mb: float = Field(25, gt=0, description="Largest upload accepted (413 above).")
    max_audio_seconds: float = Field(3 * 3600, gt=0, description="Longest audio accepted.")
    max_prompt_chars: int = Field(
        4000,
        ge=0,
        description="Prompt characters passed to the model; a longer prompt's tail is kept (Whisper itself "
        "keeps its last 223 tokens).",
    )
    workers: int = Field(1, ge=1, description="Inferences run at once in this process.")
    queue_size: int = Field(
        256,
        ge=1,
        description="Most requests admitted at once (running + waiting), whatever their size; 429 beyond. "
        "Cloud Run concurrency.",
    )
    queue_bytes: int | None = Field(
        None,
        ge=1,
        description="Bytes the uploads of admitted requests may hold at once (429 beyond; the first "
        "request always fits); unset: a quarter of the memory limit, at most half the free space of "
        "the temporary folder.",
    )
    request_timeout_s: float = Field(
        300, gt=0, description="Deadline for one request, from its arrival (upload, queue and inference)."
    )
    upload_idle_timeout_s: float = Field(
        10, gt=0, description="An upload that sends no data for this long is cut off (408)."
    )
    header_timeout_s: float = Field(
        10,
        gt=0,
        description="A connection must deliver each request's headers within this long (408 and closed "
        "otherwise); idle connections are closed after it.",
    )
    shutdown_grace_s: float = Field(8, ge=0, description="Time to finish in-flight work on SIGTERM.")

    # OpenAI compatibility and browsers
    model_aliases: Annotated[list[str], NoDecode] = Field(
        ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"],
        description="OpenAI model names served by the loaded model, comma-separated; each also with a "
        "date suffix (`-2025-03-20`).",
    )
    diarization_model_aliases: Annotated[list[str], NoDecode] = Field(
        ["gpt-4o-transcribe-diarize"],
        description="OpenAI model names served by the loaded model with speaker diarization "
        "(response_format=diarized_json), comma-separated; each also with a date suffix.",
    )
    diarization_model: Path | None = Field(
        None,
        description="The speaker-embedding network (CAM++ as ONNX, whisper_api.diarization.export); "
        "images bake it at /models/diarization/campplus.onnx. Unset or missing: no diarization.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="Browser origins allowed to call the API (CORS), comma-separated; `*` for any."
    )

    # Realtime transcription sessions (WebSocket, /v1/realtime?intent=transcription)
    realtime_max_sessions: int = Field(
        16,
        ge=0,
        description="Realtime sessions open at once on an instance (0: none); a full instance refuses with "
        "an `error` event and close code 1013. Cloud Run's concurrency counts them on top of queue_size.",
    )
    realtime_idle_timeout_s: float = Field(
        60, gt=0, description="A realtime session with no client event for this long is closed."
    )
    realtime_max_session_s: float = Field(
        3600,
        gt=0,
        description="The longest a realtime session stays open (Cloud Run's maximum request timeout).",
    )
    realtime_max_buffer_s: float = Field(
        120,
        gt=0,
        description="Uncommitted audio a session holds (manual commits); appends beyond are refused.",
    )
    realtime_max_append_bytes: int = Field(
        1 << 20,
        gt=0,
        description="Largest decoded audio in one `input_audio_buffer.append` (OpenAI's: 15 MiB).",
    )
    realtime_burst_s: float = Field(
        30, ge=0, description="How far ahead of real time a client may send audio before it is held back."
    )
    realtime_delta_interval_s: float = Field(
        1.0,
        gt=0,
        description="New audio between interim transcription passes over an utterance being spoken.",
    )
    realtime_max_utterance_s: float = Field(
        30,
        gt=0,
        le=30,
        description="Server VAD commits longer speech in pieces of this length (one Whisper window).",
    )
    realtime_client_secret_ttl_s: int = Field(
        600,
        ge=10,
        le=7200,
        description="Default lifetime of a client secret (`POST /v1/realtime/client_secrets`).",
    )
    demo_page: bool = Field(
        False,
        description="Serve the live transcription page at /demo (it opens sessions with a client secret).",
    )

    # Access and logging
    api_key: SecretStr | None = Field(None, description="Require `Authorization: Bearer <key>`.")
    api_key_file: Path | None = Field(None, description="Read the API key from a mounted secret.")
    log_level: str = Field("INFO", description="Log level.")
    log_json: bool = Field(True, description="Cloud Logging JSON lines (false: plain text).")

    @field_validator("model_aliases", "diarization_model_aliases", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
