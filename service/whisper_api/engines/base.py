"""The one interface both engines implement."""

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from whisper_api.schemas import Segment, TranscribeOptions, Transcript

SAMPLE_RATE = 16_000

SegmentCallback = Callable[[Segment], None]
_PCM16_SCALE = 1 / 32768


def as_float32(audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Samples as float32 in [-1, 1], as the models take them: int16 PCM (what `audio.decode_audio`
    returns) is scaled, as faster-whisper's own decoder does; float32 passes through uncopied.
    With `out`, written there (no temporary)."""
    if audio.dtype == np.int16:
        return np.multiply(audio, _PCM16_SCALE, out=out, dtype=np.float32)
    if out is None:
        return np.ascontiguousarray(audio, dtype=np.float32)
    out[...] = audio
    return out


class TranscriptionCancelled(Exception):
    """Raised by `Engine.transcribe` when its `cancel` event was set: the engine stopped decoding
    (within one segment, or one 30 s window for openai-whisper) and its thread is free again."""

    def __init__(self, segments_done: int = 0) -> None:
        super().__init__(f"transcription cancelled after {segments_done} segment(s)")
        self.segments_done = segments_done


class Engine(Protocol):
    """A loaded model. `transcribe` is blocking and runs on an inference thread, never on the loop."""

    name: str  # "faster-whisper" | "openai-whisper"
    model: str  # the served model's name, as /v1/models lists it
    device: str  # "cpu" | "cuda"
    compute_type: str  # e.g. "int8", "float16", "float32"
    multilingual: bool

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        *,
        on_segment: SegmentCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        """`audio`: 16 kHz mono, int16 PCM or float32 in [-1, 1]. The whole file is transcribed,
        never only 30 s.

        `on_segment` is called on the inference thread with each segment as soon as it is decoded
        (in order; the returned Transcript holds the same segments). `cancel` is checked after each
        segment: once it is set the engine stops consuming audio and raises TranscriptionCancelled.
        """
        ...

    def warmup(self) -> None:
        """Before the service reports ready: what the first request would otherwise pay (lazy
        initialisation), and nothing more, so that start-up stays short."""
        ...

    def background_warmup(self) -> None:
        """After ready, run once while no request is in: warm-up that speeds up later
        requests but that the first one need not wait for."""
        ...
