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

`silence_non_speech` is the cheap gate in front of voice-activity detection: a second of audio
whose 20 ms frames are all quiet, or all of the same energy (a constant value, a tone, a repeating
pattern: nothing a voice produces), is set to digital silence, which the engines skip at once.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
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
# While decoding, `progress` is called after each this many samples (the scheduler's yield points).
PROGRESS_SAMPLES = 30 * SAMPLE_RATE

# The gate: 20 ms frames, judged a second at a time.
GATE_FRAME_SAMPLES = SAMPLE_RATE // 50
GATE_WINDOW_FRAMES = 50
# A second whose loudest frame stays under -60 dBFS (RMS, mean removed) holds no speech.
GATE_FLOOR_RMS = 32.0
# Speech varies in energy from frame to frame (syllables, pauses) by far more than this ratio
# (1.8 dB); a constant value, a tone or a repeating pattern varies by less than 0.1 dB.
GATE_STATIONARY_RATIO = 1.5
# The gate reads the audio this many windows at a time (a few MB of float32, whatever the length).
_GATE_BLOCK_WINDOWS = 60

AudioSource = bytes | BinaryIO | str | os.PathLike[str]


class AudioError(ValueError):
    """The upload cannot be used as audio; `code` is the OpenAI-style error code."""

    def __init__(self, message: str, code: str = "invalid_audio") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: the source sample rate, the channels, and the duration when the
    container gives one."""

    sample_rate: int
    declared_seconds: float | None
    channels: int = 1


def probe_audio(source: AudioSource, max_seconds: float) -> AudioInfo:
    """Read the header only: raise AudioError for what can be refused without decoding (not audio,
    an unsupported container, an absurd sample rate, a declared duration over the limit)."""
    with _open(source) as container:
        return _inspect(container, max_seconds)


def decode_audio(
    source: AudioSource,
    max_seconds: float,
    progress: Callable[[], None] | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """Decode a whole file to 16 kHz mono int16 PCM; raise AudioError when it is unusable.

    `source`: the file's bytes, a seekable binary file object (read from its start), or a path.
    `progress` is called after every PROGRESS_SAMPLES decoded (it may block, or raise to stop).
    `channel`: that channel alone (0 is the first), instead of all of them mixed down.
    """
    with _open(source) as container:
        info = _inspect(container, max_seconds)
        if channel is not None and not 0 <= channel < info.channels:
            raise ValueError(f"channel {channel} of audio with {info.channels} channels")
        samples = _resample(container, info, max_seconds, progress, channel)
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
    return AudioInfo(sample_rate=rate, declared_seconds=declared, channels=len(stream.layout.channels) or 1)


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _resample(
    container: av.container.InputContainer,
    info: AudioInfo,
    max_seconds: float,
    progress: Callable[[], None] | None = None,
    channel: int | None = None,
) -> np.ndarray:
    """Decode the first audio stream (mixed down, or one `channel` of it) into one buffer,
    stopping as soon as it passes `max_seconds`."""
    stream = container.streams.audio[0]
    if channel is None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    else:  # planar: one row per channel
        resampler = av.AudioResampler(format="s16p", layout=stream.layout, rate=SAMPLE_RATE)
    buffer = _SampleBuffer(int(max_seconds * SAMPLE_RATE), info.declared_seconds, max_seconds)

    def append(frame: av.AudioFrame) -> None:
        samples = frame.to_ndarray()
        buffer.append(samples.reshape(-1) if channel is None else samples[channel])

    reported = 0
    for frame in container.decode(stream):
        for resampled in resampler.resample(frame):
            append(resampled)
        if progress is not None and buffer.size - reported >= PROGRESS_SAMPLES:
            reported = buffer.size
            progress()
    for resampled in resampler.resample(None):  # flush what the resampler still holds
        append(resampled)
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

    def append(self, samples: np.ndarray) -> None:
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


def silence_non_speech(samples: np.ndarray) -> float:
    """Set every second that cannot hold speech to digital silence, in place; return the seconds
    left that may (an upper bound on the speech, which voice-activity detection then finds).

    A second is kept when its loudest 20 ms frame is above GATE_FLOOR_RMS and its frames' energies
    (mean removed) differ by more than GATE_STATIONARY_RATIO, and so is each second next to a kept
    one: speech is never cut at its edges. Costs a few milliseconds per minute of audio.
    """
    keep = _windows_with_energy_changes(samples)
    keep[1:] |= keep[:-1].copy()
    keep[:-1] |= keep[1:].copy()
    window = GATE_FRAME_SAMPLES * GATE_WINDOW_FRAMES
    for index in np.flatnonzero(~keep):
        samples[index * window : (index + 1) * window] = 0
    kept = min(int(keep.sum()) * window, samples.shape[0])
    if keep.size and keep[-1]:  # the last window may be short
        kept -= keep.size * window - samples.shape[0]
    return max(kept, 0) / SAMPLE_RATE


def _windows_with_energy_changes(samples: np.ndarray) -> np.ndarray:
    """Per second of `samples`: whether it is loud enough and varies enough to hold speech."""
    frame, per_window = GATE_FRAME_SAMPLES, GATE_WINDOW_FRAMES
    window = frame * per_window
    windows = -(-samples.shape[0] // window)
    keep = np.zeros(windows, dtype=bool)
    block = window * _GATE_BLOCK_WINDOWS
    for start in range(0, samples.shape[0], block):
        piece = samples[start : start + block]
        whole = piece.shape[0] // frame
        energy = piece[: whole * frame].reshape(whole, frame).astype(np.float32).var(axis=1)
        if piece.shape[0] > whole * frame:  # a short last frame: judged by itself, so kept if loud
            energy = np.append(energy, np.float32(piece[whole * frame :].astype(np.float32).var()))
        padded = -(-energy.shape[0] // per_window) * per_window
        loudest = np.pad(energy, (0, padded - energy.shape[0]), mode="edge").reshape(-1, per_window)
        high, low = loudest.max(axis=1), loudest.min(axis=1)
        first = start // window
        keep[first : first + high.shape[0]] = (high >= GATE_FLOOR_RMS**2) & (
            high > GATE_STATIONARY_RATIO * low
        )
    return keep


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
