"""The form fields of a diarized transcription, validated: which formats go with the diarization
model, `chunking_strategy[...]` server_vad tuning, and the known speakers (`known_speakers`).

Every mistake is a 400 naming the field, as OpenAI answers them.
"""

from collections.abc import Mapping
from http import HTTPStatus

from anyio import to_thread

from whisper_api.diarization.speech import VadTuning
from whisper_api.errors import ApiError, invalid_request
from whisper_api.known_speakers import NAMES_PARAM, known_speakers
from whisper_api.pipeline import DiarizationRequest
from whisper_api.schemas import TranscriptionRequest

DIARIZED = "diarized_json"
DIARIZATION_FORMATS = ("json", "text", DIARIZED)
# OpenAI's server_vad fields → (lowest, highest) accepted.
SERVER_VAD_FIELDS: Mapping[str, tuple[float, float]] = {
    "threshold": (0.0, 1.0),
    "silence_duration_ms": (0, 10_000),
    "prefix_padding_ms": (0, 10_000),
}


def diarization_unavailable(model: str) -> ApiError:
    return ApiError(
        HTTPStatus.BAD_REQUEST,
        f"The model '{model}' needs speaker diarization, which this server does not have: its image was "
        "built without it, or WHISPER_DIARIZATION_MODEL names no file.",
        param="model",
        code="diarization_unavailable",
    )


def check_formats(form: TranscriptionRequest, diarize: bool, diarization_models: list[str]) -> None:
    """diarized_json only with a diarization model; that model only with json, text, diarized_json;
    known speakers only with diarized_json."""
    if form.response_format == DIARIZED and not diarize:
        raise invalid_request(
            f"response_format=diarized_json needs a diarization model: {', '.join(diarization_models)}.",
            param="response_format",
            code="invalid_value",
        )
    if diarize and form.response_format not in DIARIZATION_FORMATS:
        raise invalid_request(
            f"The model '{form.model}' answers in {', '.join(DIARIZATION_FORMATS)}, not "
            f"{form.response_format} (use diarized_json for speakers).",
            param="response_format",
            code="invalid_value",
        )
    if (form.known_speaker_names or form.known_speaker_references) and form.response_format != DIARIZED:
        raise invalid_request(
            "known_speaker_names[] and known_speaker_references[] name the speakers of "
            "response_format=diarized_json; send that format or leave them out.",
            param=NAMES_PARAM,
            code="invalid_value",
        )


def refuse_diarized_translation(response_format: str) -> None:
    """Speakers label a transcription: OpenAI's translations have no diarized_json either."""
    if response_format == DIARIZED:
        raise invalid_request(
            "response_format=diarized_json is for transcriptions (/v1/audio/transcriptions with "
            "gpt-4o-transcribe-diarize); translations answer json, text, srt, vtt or verbose_json.",
            param="response_format",
            code="invalid_value",
        )


def accepts_vad_field(key: str, form: Mapping[str, object]) -> bool:
    """`chunking_strategy[<key>]` is a server_vad tuning field that this request can use."""
    return key in SERVER_VAD_FIELDS and form.get("response_format") == DIARIZED


def vad_tuning(form: Mapping[str, object]) -> VadTuning | None:
    """The `chunking_strategy[threshold|silence_duration_ms|prefix_padding_ms]` sent, checked."""
    values: dict[str, float] = {}
    for key, (lowest, highest) in SERVER_VAD_FIELDS.items():
        name = f"chunking_strategy[{key}]"
        if name not in form:
            continue
        try:
            value = float(str(form[name]))
        except ValueError:
            value = float("nan")
        if not lowest <= value <= highest:
            raise invalid_request(
                f"'{name}' must be a number from {lowest:g} to {highest:g}, not {form[name]!r}.",
                param=name,
                code="invalid_value",
            )
        values[key] = value
    if not values:
        return None
    default = VadTuning()
    return VadTuning(
        threshold=values.get("threshold", default.threshold),
        silence_s=values["silence_duration_ms"] / 1000
        if "silence_duration_ms" in values
        else default.silence_s,
        padding_s=values["prefix_padding_ms"] / 1000 if "prefix_padding_ms" in values else default.padding_s,
    )


async def diarization_request(
    form: TranscriptionRequest, raw_form: Mapping[str, object]
) -> DiarizationRequest:
    """The known speakers' references decoded (off the event loop: up to 4 short files) and the VAD tuning."""
    speakers = await to_thread.run_sync(
        known_speakers, form.known_speaker_names, form.known_speaker_references
    )
    return DiarizationRequest(
        known={speaker.name: speaker.audio for speaker in speakers}, vad=vad_tuning(raw_form)
    )
