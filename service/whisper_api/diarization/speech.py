"""Where someone speaks: Silero VAD (faster-whisper's ONNX copy, on onnxruntime), block by block.

faster-whisper's own `get_speech_timestamps` pads and copies the whole file at once (about 1.4 GB for
three hours); here the model sees a minute at a time, so the extra memory stays a few MiB. The
default threshold is faster-whisper's; silences are cut finer than transcription's (0.3 s, not
2 s), because a pause is where speakers change. `VadTuning` carries OpenAI's `server_vad` fields.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from whisper_api.diarization.features import SAMPLE_RATE

Region = tuple[float, float]

_CHUNK = 512  # Silero's window at 16 kHz: 32 ms
_BLOCK = _CHUNK * 1875  # 60 s
_MIN_SPEECH_S = 0.25


@dataclass(frozen=True)
class VadTuning:
    """Speech probability that starts speech (it ends below `threshold` - 0.15), the silence that
    ends a region, and the padding added to each side (OpenAI's threshold, silence_duration_ms,
    prefix_padding_ms)."""

    threshold: float = 0.5
    silence_s: float = 0.3
    padding_s: float = 0.05


def as_float32(audio: np.ndarray) -> np.ndarray:
    """int16 PCM (what the service decodes to) or float32, as float32 in [-1, 1]."""
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    return np.asarray(audio, dtype=np.float32)


def speech_probabilities(audio: np.ndarray) -> Iterator[np.ndarray]:
    """Silero's speech probability per 32 ms, one block at a time."""
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    for start in range(0, len(audio), _BLOCK):
        block = as_float32(audio[start : start + _BLOCK])
        block = np.pad(block, (0, -len(block) % _CHUNK))
        yield np.asarray(model(block)).reshape(-1)


def speech_regions(audio: np.ndarray, tuning: VadTuning | None = None) -> list[Region]:
    """(start, end) seconds of speech in 16 kHz `audio`, in order, non-overlapping."""
    tuning = tuning or VadTuning()
    low = max(tuning.threshold - 0.15, 0.01)
    chunk_s = _CHUNK / SAMPLE_RATE
    regions: list[Region] = []
    start: float | None = None
    silent_since: float | None = None
    index = 0
    for probabilities in speech_probabilities(audio):
        for probability in probabilities:
            now = index * chunk_s
            index += 1
            if probability >= tuning.threshold:
                silent_since = None
                if start is None:
                    start = now
            elif start is not None and probability < low:
                silent_since = now if silent_since is None else silent_since
                if now - silent_since >= tuning.silence_s:
                    regions.append((start, silent_since))
                    start = silent_since = None
    duration = len(audio) / SAMPLE_RATE
    if start is not None:
        regions.append((start, silent_since if silent_since is not None else duration))
    kept = [region for region in regions if region[1] - region[0] >= _MIN_SPEECH_S]
    return _padded(kept, duration, tuning.padding_s)


def _padded(regions: list[Region], duration: float, pad_s: float) -> list[Region]:
    """Each region widened by `pad_s`, never into its neighbour or outside the audio."""
    padded: list[Region] = []
    for index, (start, end) in enumerate(regions):
        first = max(0.0, start - pad_s, padded[-1][1] if padded else 0.0)
        following = regions[index + 1][0] if index + 1 < len(regions) else duration
        padded.append((first, min(duration, end + pad_s, (end + following) / 2)))
    return padded
