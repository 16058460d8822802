"""Server VAD for live audio: faster-whisper's Silero VAD (its bundled ONNX model), fed as audio
arrives instead of over a whole file.

faster-whisper runs the model over a file at once; its ONNX graph takes any number of 512-sample
windows (each with the 64 samples before it) and an LSTM state. Here the state and the last 64
samples are carried from one append to the next, so each window is scored once, with the same
context as in a whole-file run. Turns follow OpenAI's `server_vad`: speech starts at the first
window above `threshold` (the item's audio begins `prefix_padding_ms` earlier) and stops once
`silence_duration_ms` have stayed below the lower threshold Silero uses to end speech.

Sample offsets count from the start of the session (`start` is where this VAD's first sample lies:
a VAD made after a session.update begins mid-session), so that the session can cut its buffer at them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import get_vad_model

from whisper_api.engines.base import as_float32

WINDOW = 512
CONTEXT = 64
# Silero's own rule (faster_whisper.vad): speech ends below threshold - 0.15.
END_MARGIN = 0.15


@dataclass(frozen=True)
class Turn:
    """A change found by the VAD, at a sample offset counted from the start of the session."""

    kind: str  # "started" | "stopped"
    sample: int
    pause_from: int | None = None  # "stopped": where the silence that ended the speech began


class StreamingVad:
    """Scores 16 kHz audio window by window and reports where speech starts and stops."""

    def __init__(
        self, threshold: float, silence_duration_ms: int, sample_rate: int = 16_000, start: int = 0
    ) -> None:
        self.threshold = threshold
        self.end_threshold = max(threshold - END_MARGIN, 0.01)
        self.silence_samples = silence_duration_ms * sample_rate // 1000
        self._session = get_vad_model().session
        self._state = np.zeros((2, 1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._scored = start  # the offset of the next window to score
        self.speaking = False
        self.pause_from: int | None = None  # in speech: where the current silence began, if any

    def feed(self, samples: np.ndarray) -> list[Turn]:
        """Score every whole window now available; the turns they reveal, in order."""
        audio = np.concatenate([self._pending, as_float32(samples)])
        whole = audio.shape[0] // WINDOW * WINDOW
        self._pending = audio[whole:]
        if whole == 0:
            return []
        turns: list[Turn] = []
        for start, probability in zip(
            range(self._scored, self._scored + whole, WINDOW), self._score(audio[:whole]), strict=True
        ):
            turn = self._step(start, float(probability))
            if turn is not None:
                turns.append(turn)
        self._scored += whole
        return turns

    @property
    def pausing(self) -> bool:
        """In speech, but the last windows were silent: it may be about to stop."""
        return self.speaking and self.pause_from is not None

    def reset(self) -> None:
        """Forget the current turn (the buffer was cleared or committed by the client)."""
        self.speaking = False
        self.pause_from = None

    def _score(self, audio: np.ndarray) -> np.ndarray:
        windows = audio.reshape(-1, WINDOW)
        context = _contexts(self._context, windows)
        batch = np.concatenate([context, windows], axis=1)
        probabilities, h, c = self._session.run(
            None, {"input": batch, "h": self._state[0], "c": self._state[1]}
        )
        self._state = np.stack([h, c])
        self._context = windows[-1, -CONTEXT:].copy()
        return np.asarray(probabilities).reshape(-1)

    def _step(self, start: int, probability: float) -> Turn | None:
        if not self.speaking:
            if probability >= self.threshold:
                self.speaking = True
                self.pause_from = None
                return Turn("started", start)
            return None
        if probability >= self.threshold:
            self.pause_from = None
        elif probability < self.end_threshold:
            if self.pause_from is None:
                self.pause_from = start
            end = start + WINDOW
            if end - self.pause_from >= self.silence_samples:
                turn = Turn("stopped", end, pause_from=self.pause_from)
                self.speaking = False
                self.pause_from = None
                return turn
        return None


def _contexts(first: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Each window's 64 samples before it: the carried context, then the tail of each previous window."""
    tails = windows[:-1, -CONTEXT:]
    return np.concatenate([first.reshape(1, CONTEXT), tails], axis=0)
