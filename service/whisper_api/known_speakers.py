"""`known_speaker_names[]` + `known_speaker_references[]`: validated into named voice samples.

OpenAI's limits: up to four speakers, each reference a data URL (`data:audio/wav;base64,...`) of
2 to 10 seconds of audio in any upload format, one name per reference. Every malformed input is a
400 naming the field at fault (the list field, with the entry's position in the message).
"""

import base64
import binascii
import re
from dataclasses import dataclass

import numpy as np

from whisper_api.audio import SAMPLE_RATE, AudioError, decode_audio
from whisper_api.errors import ApiError, invalid_request

NAMES_PARAM = "known_speaker_names[]"
REFERENCES_PARAM = "known_speaker_references[]"
MAX_SPEAKERS = 4
MIN_REFERENCE_S = 2.0
MAX_REFERENCE_S = 10.0
MAX_NAME_CHARS = 64
# A reference is at most 10 s: 10 s of 48 kHz 32-bit stereo WAV is under 4 MB, base64 about 5 MB.
MAX_REFERENCE_CHARS = 6_000_000
_DATA_URL = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<base64>;base64)?,"
)


@dataclass(frozen=True)
class KnownSpeaker:
    name: str
    audio: np.ndarray  # 16 kHz mono int16


def _error(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return invalid_request(message, param=param, code=code)


def _check_names(names: list[str]) -> list[str]:
    cleaned = [name.strip() for name in names]
    for index, name in enumerate(cleaned):
        if not name:
            raise _error(NAMES_PARAM, f"known_speaker_names[{index}] is empty: give each speaker a name.")
        if len(name) > MAX_NAME_CHARS:
            raise _error(
                NAMES_PARAM, f"known_speaker_names[{index}] is longer than {MAX_NAME_CHARS} characters."
            )
    if len(set(cleaned)) != len(cleaned):
        raise _error(NAMES_PARAM, "known_speaker_names[] repeats a name: each speaker needs its own.")
    return cleaned


def reference_audio(reference: str, index: int) -> np.ndarray:
    """A data URL's audio, 2-10 s of it, decoded to 16 kHz mono int16."""
    where = f"known_speaker_references[{index}]"
    if len(reference) > MAX_REFERENCE_CHARS:
        raise _error(REFERENCES_PARAM, f"{where} is too large: a reference is 2 to 10 seconds of audio.")
    match = _DATA_URL.match(reference)
    if match is None or not match.group("base64"):
        raise _error(
            REFERENCES_PARAM,
            f"{where} is not a base64 data URL: send `data:audio/wav;base64,<the file's bytes in base64>`.",
        )
    if match.group("type") and not match.group("type").startswith(("audio/", "video/", "application/")):
        raise _error(REFERENCES_PARAM, f"{where} has media type {match.group('type')}: it must be audio.")
    try:
        payload = base64.b64decode(reference[match.end() :], validate=True)
    except (binascii.Error, ValueError) as error:
        raise _error(REFERENCES_PARAM, f"{where} is not valid base64.") from error
    try:
        audio = decode_audio(payload, MAX_REFERENCE_S + 1)
    except AudioError as error:
        if error.code == "audio_too_long":
            raise _error(REFERENCES_PARAM, f"{where} is longer than {MAX_REFERENCE_S:g} seconds.") from error
        raise _error(REFERENCES_PARAM, f"{where} is not usable audio: {error}", code=error.code) from error
    seconds = len(audio) / SAMPLE_RATE
    if not MIN_REFERENCE_S <= seconds <= MAX_REFERENCE_S:
        raise _error(
            REFERENCES_PARAM,
            f"{where} is {seconds:.1f} s long: a reference must be {MIN_REFERENCE_S:g} to "
            f"{MAX_REFERENCE_S:g} seconds of the speaker's voice.",
        )
    return audio


def known_speakers(names: list[str], references: list[str]) -> list[KnownSpeaker]:
    """The named references, in order; [] when neither list was sent."""
    if not names and not references:
        return []
    for param, values in ((NAMES_PARAM, names), (REFERENCES_PARAM, references)):
        if len(values) > MAX_SPEAKERS:
            raise _error(param, f"{param} has {len(values)} entries: at most {MAX_SPEAKERS} known speakers.")
    if len(names) != len(references):
        param = REFERENCES_PARAM if len(names) > len(references) else NAMES_PARAM
        raise _error(
            param,
            f"known_speaker_names[] has {len(names)} entries and known_speaker_references[] has "
            f"{len(references)}: send one reference per name, in the same order.",
        )
    cleaned = _check_names(names)
    return [
        KnownSpeaker(name=name, audio=reference_audio(reference, index))
        for index, (name, reference) in enumerate(zip(cleaned, references, strict=True))
    ]
