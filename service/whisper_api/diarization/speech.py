"""Where someone speaks: Silero VAD (faster-whisper's ONNX copy, on onnxruntime), block by block.

faster-whisper's own `get_speech_timestamps` pads and copies the whole file at once (about 1.4 GB for
three hours); here the model sees ten minutes at a time, so the extra memory stays a few MiB. Its
thresholds are faster-whisper's; silences are cut finer than transcription's (0.3 s, not 2 s),
because a pause is where speakers change.
"""

from collections.abc import Iterator

import numpy as np

from whisper_api.diarization.features import SAMPLE_RATE

Region = tuple[float, float]

_CHUNK = 512  # Silero's window at 16 kHz: 32 ms
_BLOCK = _CHUNK * 18_750  # 10 minutes
_THRESHOLD = 0.5
_NEG_THRESHOLD = 0.35
_MIN_SILENCE_S = 0.3
_MIN_SPEECH_S = 0.25
_PAD_S = 0.05


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


def speech_regions(audio: np.ndarray) -> list[Region]:
    """(start, end) seconds of speech in 16 kHz `audio`, in order, non-overlapping."""
    chunk_s = _CHUNK / SAMPLE_RATE
    regions: list[Region] = []
    start: float | None = None
    silent_since: float | None = None
    index = 0
    for probabilities in speech_probabilities(audio):
        for probability in probabilities:
            now = index * chunk_s
            index += 1
            if probability >= _THRESHOLD:
                silent_since = None
                if start is None:
                    start = now
            elif start is not None and probability < _NEG_THRESHOLD:
                silent_since = now if silent_since is None else silent_since
                if now - silent_since >= _MIN_SILENCE_S:
                    regions.append((start, silent_since))
                    start = silent_since = None
    duration = len(audio) / SAMPLE_RATE
    if start is not None:
        regions.append((start, silent_since if silent_since is not None else duration))
    return _padded([region for region in regions if region[1] - region[0] >= _MIN_SPEECH_S], duration)


def _padded(regions: list[Region], duration: float) -> list[Region]:
    """Each region widened by 50 ms, never into its neighbour or outside the audio."""
    padded: list[Region] = []
    for index, (start, end) in enumerate(regions):
        low = max(0.0, start - _PAD_S, padded[-1][1] if padded else 0.0)
        following = regions[index + 1][0] if index + 1 < len(regions) else duration
        padded.append((low, min(duration, end + _PAD_S, (end + following) / 2)))
    return padded
