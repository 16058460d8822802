"""An upload (bytes, a seekable file or a path) → 16 kHz mono 16-bit PCM, decoded in-process with PyAV.

The container is recognised from the content (FFmpeg probes it), never from the file name. Every
way a user's file can be wrong (empty, not audio, corrupt, truncated, too long, an absurd sample
rate) ends as an `AudioError` with a message the client can act on; the route turns it into a 400.

Memory is bounded by the duration limit, whatever the file claims: a few kilobytes can declare
hours of audio (a WAV at 1 Hz, a FLAC of silence). The decoded samples are written once into one
preallocated int16 buffer (2 bytes a sample: 330 MiB for 3 hours, half of float32; the samples
faster-whisper's own decoder produces), sized from the duration the container declares (never
above the limit), and decoding stops at the limit. The engines convert to float32 as they go
(`engines.base.as_float32`). `probe_audio` reads only the header, so a file declaring too long a
duration or an absurd sample rate is refused before it is decoded.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

SAMPLE_RATE = 16_000
# Source sample rates outside this range are not speech recordings but decompression bombs (1 Hz:
# each byte becomes seconds of audio) or nonsense; 384 kHz is the highest rate audio gear records.
MIN_SOURCE_RATE = 4_000
MAX_SOURCE_RATE = 384_000
# The containers OpenAI's API accepts (mpga is mp3; mpeg an MPEG program stream), as FFmpeg names
# its demuxers. A file FFmpeg opens as anything else (an image, a subtitle file) is refused.
ACCEPTED_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
_ACCEPTED_DEMUXERS = frozenset(
    {"flac", "mp3", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "mpeg", "ogg", "wav", "matroska", "webm"}
)
_SUPPORTED = ", ".join(ACCEPTED_EXTENSIONS)
# mp3 declares no duration unless a Xing/VBRI header does: FFmpeg guesses it from the first
# frames' bitrate, which silence at the start of a VBR file makes several times too long. Such a
# guess sizes the buffer but never refuses a file; decoding enforces the limit exactly.
_GUESSED_DURATION_DEMUXERS = frozenset({"mp3"})
# Other headers are exact; a little slack covers encoder padding.
_DECLARED_SLACK = 1.05
# A file that decodes to less than this share of the duration its (exact) header declares, and at
# least a second less, was cut off (an interrupted upload or copy): refused, not transcribed in part.
_TRUNCATED_SHARE = 0.9
# Without a declared duration the buffer starts at this size and doubles (up to the limit).
_INITIAL_SAMPLES = 10 * 60 * SAMPLE_RATE

AudioSource = bytes | BinaryIO | str | os.PathLike[str]


class AudioError(ValueError):
    """The upload cannot be used as audio; `code` is the OpenAI-style error code."""

    def __init__(self, message: str, code: str = "invalid_audio") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: the source sample rate, and the duration when the container gives one."""

    sample_rate: int
    declared_seconds: float | None


def probe_audio(source: AudioSource, max_seconds: float) -> AudioInfo:
    """Read the header only: raise AudioError for what can be refused without decoding (not audio,
    an unsupported container, an absurd sample rate, a declared duration over the limit)."""
    with _open(source) as container:
        return _inspect(container, max_seconds)


def decode_audio(source: AudioSource, max_seconds: float) -> np.ndarray:
    """Decode a whole file to 16 kHz mono int16 PCM; raise AudioError when it is unusable.

    `source`: the file's bytes, a seekable binary file object (read from its start), or a path.
    """
    with _open(source) as container:
        info = _inspect(container, max_seconds)
        samples = _resample(container, info, max_seconds)
        exact = not set(container.format.name.split(",")) & _GUESSED_DURATION_DEMUXERS
    if samples.size == 0:
        raise AudioError("The audio file contains no samples.", code="empty_audio")
    if exact and info.declared_seconds is not None:
        _check_complete(duration_seconds(samples), info.declared_seconds)
    return samples


def _check_complete(decoded: float, declared: float) -> None:
    if decoded < declared * _TRUNCATED_SHARE and declared - decoded >= 1:
        raise AudioError(
            f"The file is truncated: its header declares {declared:.2f} s of audio but only "
            f"{decoded:.2f} s could be decoded. Upload the whole file.",
            code="truncated_audio",
        )


def duration_seconds(audio: np.ndarray) -> float:
    return audio.shape[0] / SAMPLE_RATE


@contextmanager
def _open(source: AudioSource) -> Iterator[av.container.InputContainer]:
    """The container, with every FFmpeg failure (also while decoding) turned into an AudioError."""
    if isinstance(source, bytes | bytearray | memoryview):
        if not source:
            raise AudioError("The uploaded file is empty.", code="empty_file")
        file: BinaryIO | str = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        file = os.fspath(source)
        if os.path.getsize(file) == 0:
            raise AudioError("The uploaded file is empty.", code="empty_file")
    else:
        source.seek(0, io.SEEK_END)
        if source.tell() == 0:
            raise AudioError("The uploaded file is empty.", code="empty_file")
        source.seek(0)
        file = source
    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            yield container
    except AudioError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, EOFError, IndexError) as error:
        raise AudioError(
            f"The file could not be decoded as audio ({_describe(error)}). Supported formats: {_SUPPORTED}."
        ) from error


def _inspect(container: av.container.InputContainer, max_seconds: float) -> AudioInfo:
    demuxers = set(container.format.name.split(","))
    if not demuxers & _ACCEPTED_DEMUXERS:
        raise AudioError(
            f"Unsupported file type ({container.format.long_name}). Supported formats: {_SUPPORTED}.",
            code="unsupported_format",
        )
    if not container.streams.audio:
        raise AudioError("The file contains no audio stream.", code="no_audio_stream")
    stream = container.streams.audio[0]
    rate = stream.sample_rate or stream.codec_context.sample_rate or 0
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise AudioError(
            f"The audio's sample rate of {rate} Hz is not supported: it must be between "
            f"{MIN_SOURCE_RATE} and {MAX_SOURCE_RATE} Hz.",
            code="unsupported_sample_rate",
        )
    declared = _declared_seconds(container, stream)
    exact = not demuxers & _GUESSED_DURATION_DEMUXERS
    if exact and declared is not None and declared > max_seconds * _DECLARED_SLACK:
        raise _too_long(max_seconds, declared)
    return AudioInfo(sample_rate=rate, declared_seconds=declared)


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _resample(container: av.container.InputContainer, info: AudioInfo, max_seconds: float) -> np.ndarray:
    """Decode the first audio stream into one buffer, stopping as soon as it passes `max_seconds`."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    buffer = _SampleBuffer(int(max_seconds * SAMPLE_RATE), info.declared_seconds, max_seconds)
    for frame in container.decode(container.streams.audio[0]):
        for resampled in resampler.resample(frame):
            buffer.append(resampled)
    for resampled in resampler.resample(None):  # flush what the resampler still holds
        buffer.append(resampled)
    return buffer.samples()


class _SampleBuffer:
    """Decoded samples, each written once into a preallocated int16 array.

    Sized from the declared duration: an honest header means no copy and no waste. A header that
    says nothing or lies costs a doubling (one copy), never more than the limit allows.
    """

    def __init__(self, limit: int, declared_seconds: float | None, max_seconds: float) -> None:
        self.limit = limit
        self.max_seconds = max_seconds
        if declared_seconds is None:
            size = _INITIAL_SAMPLES
        else:  # a little more than declared: resampler delay, rounding
            size = int(declared_seconds * _DECLARED_SLACK * SAMPLE_RATE) + SAMPLE_RATE
        self.array = np.empty(min(size, limit), dtype=np.int16)
        self.size = 0

    def append(self, frame: av.AudioFrame) -> None:
        samples = frame.to_ndarray().reshape(-1)
        end = self.size + samples.shape[0]
        if end > self.limit:
            raise _too_long(self.max_seconds)
        if end > self.array.shape[0]:
            grown = np.empty(min(max(end, 2 * self.array.shape[0]), self.limit), dtype=np.int16)
            grown[: self.size] = self.array[: self.size]
            self.array = grown
        self.array[self.size : end] = samples
        self.size = end

    def samples(self) -> np.ndarray:
        """The decoded samples: a view of the buffer (its unused tail was never touched, so it
        takes address space but no memory)."""
        return self.array[: self.size]


def _too_long(max_seconds: float, declared: float | None = None) -> AudioError:
    said = f"; the file declares {declared:.0f} s" if declared is not None else ""
    return AudioError(
        f"The audio is longer than the limit of {max_seconds:g} seconds (WHISPER_MAX_AUDIO_SECONDS){said}.",
        code="audio_too_long",
    )


def _describe(error: Exception) -> str:
    """A short, safe reason: FFmpeg's message without the in-memory file's repr."""
    if isinstance(error, av.FFmpegError):
        return error.strerror or type(error).__name__
    return type(error).__name__
