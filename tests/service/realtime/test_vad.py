"""Server VAD on live audio: the same Silero scores as a whole-file run, whatever the append sizes."""

import numpy as np
from faster_whisper import decode_audio
from faster_whisper.vad import get_vad_model

from tests.support.engines import FIXTURES
from whisper_api.realtime.vad import WINDOW, StreamingVad


class ScoreRecorder(StreamingVad):
    def __init__(self, threshold: float, silence_duration_ms: int) -> None:
        super().__init__(threshold, silence_duration_ms)
        self.scored: list[float] = []

    def _score(self, audio: np.ndarray) -> np.ndarray:
        probabilities = super()._score(audio)
        self.scored.extend(probabilities.tolist())
        return probabilities


def test_scores_match_faster_whispers_whole_file_run_and_turns_follow_sentences() -> None:
    audio = decode_audio(str(FIXTURES / "long.ogg"))
    whole = get_vad_model()(audio[: audio.size // WINDOW * WINDOW]).reshape(-1)
    vad = ScoreRecorder(threshold=0.5, silence_duration_ms=500)
    turns, start = [], 0
    for size in np.random.default_rng(7).integers(100, 6000, size=10_000):
        if start >= audio.size:
            break
        turns += vad.feed(audio[start : start + size])
        start += size
    np.testing.assert_allclose(vad.scored[: whole.size], whole, atol=1e-6)
    kinds = [turn.kind for turn in turns]
    assert kinds == ["started", "stopped"] * (len(kinds) // 2)
    assert len(kinds) // 2 >= 6  # the recording's eight sentences, short pauses merging a few at most
    starts = [turn.sample / 16_000 for turn in turns if turn.kind == "started"]
    assert starts[0] < 1.0 and starts == sorted(starts)


def test_silence_starts_nothing_and_a_longer_silence_is_needed_to_stop() -> None:
    audio = decode_audio(str(FIXTURES / "short.wav"))
    quiet = StreamingVad(threshold=0.5, silence_duration_ms=500)
    assert quiet.feed(np.zeros(16_000 * 3, dtype=np.float32)) == []
    patient = StreamingVad(threshold=0.5, silence_duration_ms=3000)
    turns = patient.feed(np.concatenate([audio, np.zeros(16_000 * 2, dtype=np.float32)]))
    assert [turn.kind for turn in turns] == ["started"]  # 2 s of silence < 3 s: still speaking
    assert patient.pausing
