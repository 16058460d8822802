"""The one interface both engines implement."""

from typing import Protocol

import numpy as np

from whisper_api.schemas import TranscribeOptions, Transcript

SAMPLE_RATE = 16_000


class Engine(Protocol):
    """A loaded model. `transcribe` is blocking and runs on an inference thread, never on the loop."""

    name: str  # "faster-whisper" | "openai-whisper"
    model: str  # the served model's name, as /v1/models lists it
    device: str  # "cpu" | "cuda"
    compute_type: str  # e.g. "int8", "float16", "float32"
    multilingual: bool

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """`audio`: 16 kHz mono float32 in [-1, 1]. The whole file is transcribed, never only 30 s."""
        ...

    def warmup(self) -> None:
        """Run one short inference so that the first request pays no lazy initialisation."""
        ...
