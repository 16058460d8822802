"""Upload bytes → 16 kHz mono float32, decoded in-process with PyAV (no ffmpeg binary, no temp files).

The container is recognised from the content (FFmpeg probes it), never from the file name. Every
way a user's file can be wrong (empty, not audio, corrupt, truncated, too long) ends as an
`AudioError` with a message the client can act on; the route turns it into a 400.
"""

import io

import av
import numpy as np

SAMPLE_RATE = 16_000
# The containers OpenAI's API accepts (mpga is mp3; mpeg an MPEG program stream), as FFmpeg names
# its demuxers. A file FFmpeg opens as anything else (an image, a subtitle file) is refused.
ACCEPTED_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
_ACCEPTED_DEMUXERS = frozenset(
    {"flac", "mp3", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "mpeg", "ogg", "wav", "matroska", "webm"}
)
_SUPPORTED = ", ".join(ACCEPTED_EXTENSIONS)


class AudioError(ValueError):
    """The upload cannot be used as audio; `code` is the OpenAI-style error code."""

    def __init__(self, message: str, code: str = "invalid_audio") -> None:
        super().__init__(message)
        self.code = code


def decode_audio(data: bytes, max_seconds: float) -> np.ndarray:
    """Decode a whole upload to 16 kHz mono float32 in [-1, 1]; raise AudioError when it is unusable."""
    if not data:
        raise AudioError("The uploaded file is empty.", code="empty_file")
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            _check_container(container)
            samples = _resample(container, max_seconds)
    except AudioError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, EOFError, IndexError) as error:
        raise AudioError(
            f"The file could not be decoded as audio ({_describe(error)}). Supported formats: {_SUPPORTED}."
        ) from error
    if samples.size == 0:
        raise AudioError("The audio file contains no samples.", code="empty_audio")
    return samples


def duration_seconds(audio: np.ndarray) -> float:
    return audio.shape[0] / SAMPLE_RATE


def _check_container(container: av.container.InputContainer) -> None:
    demuxers = set(container.format.name.split(","))
    if not demuxers & _ACCEPTED_DEMUXERS:
        raise AudioError(
            f"Unsupported file type ({container.format.long_name}). Supported formats: {_SUPPORTED}.",
            code="unsupported_format",
        )
    if not container.streams.audio:
        raise AudioError("The file contains no audio stream.", code="no_audio_stream")


def _resample(container: av.container.InputContainer, max_seconds: float) -> np.ndarray:
    """Decode the first audio stream, stopping as soon as it is longer than `max_seconds`."""
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    max_samples = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    for frame in container.decode(stream):
        for resampled in resampler.resample(frame):
            total += _append(chunks, resampled)
        if total > max_samples:
            raise _too_long(max_seconds)
    for resampled in resampler.resample(None):  # flush what the resampler still holds
        total += _append(chunks, resampled)
    if total > max_samples:
        raise _too_long(max_seconds)
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.clip(np.concatenate(chunks), -1.0, 1.0)


def _too_long(max_seconds: float) -> AudioError:
    return AudioError(
        f"The audio is longer than the limit of {max_seconds:g} seconds (WHISPER_MAX_AUDIO_SECONDS).",
        code="audio_too_long",
    )


def _append(chunks: list[np.ndarray], frame: av.AudioFrame) -> int:
    samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    chunks.append(samples)
    return samples.shape[0]


def _describe(error: Exception) -> str:
    """A short, safe reason: FFmpeg's message without the in-memory file's repr."""
    if isinstance(error, av.FFmpegError):
        return error.strerror or type(error).__name__
    return type(error).__name__
