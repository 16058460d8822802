"""The real diarizer (Silero VAD + CAM++ on onnxruntime) on real recordings."""

from pathlib import Path

import numpy as np

from tests.support.diarization import SAMPLE, reference_turns
from tests.support.engines import FIXTURES
from whisper_api.audio import decode_audio
from whisper_api.diarization.diarizer import Diarizer
from whisper_api.diarization.speakers import match_known_speakers


def _decode(path: Path) -> np.ndarray:
    with path.open("rb") as file:
        return decode_audio(file, 3600)


def test_two_speakers_with_their_turns(diarizer: Diarizer) -> None:
    result = diarizer.diarize(_decode(SAMPLE))
    assert result.speaker_count == 2
    # Each reference turn longer than 2 s is mostly one hypothesis speaker, and the two
    # reference speakers map to different ones.
    mapping: dict[str, set[int]] = {}
    for start, end, speaker in reference_turns():
        if end - start < 2.0:
            continue
        overlap = {
            turn.speaker: min(end, turn.end) - max(start, turn.start)
            for turn in result.turns
            if min(end, turn.end) > max(start, turn.start)
        }
        best = max(overlap, key=lambda key: overlap[key])
        assert overlap[best] >= 0.7 * (end - start), (start, end, overlap)
        mapping.setdefault(speaker, set()).add(best)
    assert len(mapping) == 2
    assert all(len(found) == 1 for found in mapping.values())
    assert mapping["speaker90"] != mapping["speaker91"]


def test_one_speaker_files_are_one_speaker(diarizer: Diarizer) -> None:
    for name in ("long.ogg", "short.wav"):
        assert diarizer.diarize(_decode(FIXTURES / name)).speaker_count == 1, name


def test_silence_has_no_turns(diarizer: Diarizer) -> None:
    result = diarizer.diarize(_decode(FIXTURES / "silence.flac"))
    assert result.turns == []


def test_a_reference_names_its_own_voice_only(diarizer: Diarizer) -> None:
    audio = _decode(SAMPLE)
    result = diarizer.diarize(audio)
    second = diarizer.embed_voice(audio[22 * 16_000 : 28 * 16_000])  # speaker91 alone, 22-28 s
    stranger = diarizer.embed_voice(_decode(FIXTURES / "long.ogg")[: 8 * 16_000])
    names = match_known_speakers(result.centroids, {"Sheila": second, "Stranger": stranger})
    assert list(names.values()) == ["Sheila"]
    (speaker,) = names
    at_25s = next(turn.speaker for turn in result.turns if turn.start <= 25.0 < turn.end)
    assert speaker == at_25s
