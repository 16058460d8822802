"""Audio in more than one language, and text that loops: what faster-whisper alone gets wrong.

faster-whisper detects the language once, on the first 30 s, and decodes everything after in it: the
German half of English-then-German speech came back as nothing, or as an English paraphrase. Its
own per-window detection (`multilingual=True`) did not save it: a window holding the last English
sentence and the German after it was decoded in one language, and the decoder then skipped the rest
of the window. So the speech is first cut into runs of one language (`language_runs`): the language
of each 10 s piece is detected (among the caller's `languages[]`), a change is moved to the longest
pause near it, and each run is decoded alone, in its own language.

A decoder that lost its way repeats a phrase until the window ends ("the rest of the rest of the
rest..."); faster-whisper's temperature fallback keeps the last try even when it still loops. Such a
segment carries no speech and is dropped (`is_repetition_loop`), by both engines.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16_000
# The language is detected on pieces this long; a change of language is placed within two of them.
LANGUAGE_PIECE_SAMPLES = 10 * SAMPLE_RATE
# A piece alone in its language is believed only when the detector is this sure (a word or a name
# in another language must not cut the speech).
_LONE_PIECE_PROBABILITY = 0.8
# Pauses are looked for in frames of this length (20 ms).
_FRAME = SAMPLE_RATE // 50

# A phrase of at most this many words, said this many times in a row, is a loop...
_LOOP_MAX_PHRASE_WORDS = 8
_LOOP_MIN_REPEATS = 4
# ...once the repeats cover at least this many words ("no, no, no, no" is speech).
_LOOP_MIN_WORDS = 8
_WORD = re.compile(r"[\w']+")

# A piece of speech (float32, 16 kHz) -> [(language code, probability)], most likely first.
Detector = Callable[[np.ndarray], list[tuple[str, float]]]
# (start, end, language), in samples of the speech given.
Run = tuple[int, int, str]


def detected(detect: Detector, piece: np.ndarray, hints: tuple[str, ...]) -> tuple[str, float]:
    """The most likely language of `piece` among `hints` (any, when empty)."""
    ranked = detect(piece)
    allowed = [(code, probability) for code, probability in ranked if not hints or code in hints]
    return (allowed or ranked)[0]


def language_runs(speech: np.ndarray, detect: Detector, hints: tuple[str, ...] = ()) -> list[Run]:
    """`speech` cut where its language changes: one run per language stretch, covering all of it."""
    pieces = [
        (start, min(start + LANGUAGE_PIECE_SAMPLES, speech.shape[0]))
        for start in range(0, speech.shape[0], LANGUAGE_PIECE_SAMPLES)
    ]
    found = [detected(detect, speech[start:end], hints) for start, end in pieces]
    languages = [code for code, _ in found]
    for index in range(1, len(found) - 1):  # a lone piece the detector is unsure of joins its neighbours
        before, after = languages[index - 1], languages[index + 1]
        if languages[index] not in (before, after) and found[index][1] < _LONE_PIECE_PROBABILITY:
            languages[index] = before
    runs: list[Run] = []
    for (start, end), language in zip(pieces, languages, strict=True):
        if runs and runs[-1][2] == language:
            runs[-1] = (runs[-1][0], end, language)
        elif runs:  # the change happened in the last piece before it or in this one
            cut = longest_pause(speech, max(runs[-1][0], start - LANGUAGE_PIECE_SAMPLES), end)
            runs[-1] = (runs[-1][0], cut, runs[-1][2])
            runs.append((cut, end, language))
        else:
            runs.append((start, end, language))
    return [run for run in runs if run[1] > run[0]]


def longest_pause(speech: np.ndarray, start: int, end: int) -> int:
    """The middle of the longest stretch of quiet frames in speech[start:end] (a sentence's end),
    or of the quietest frame when nothing there is quiet."""
    frames = speech[start : start + (end - start) // _FRAME * _FRAME].reshape(-1, _FRAME)
    if frames.shape[0] == 0:
        return start
    energy = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1))
    quiet = energy <= max(float(np.percentile(energy, 20)), 1e-4)
    best_start, best_length, run_start = int(np.argmin(energy)), 0, None
    for index, is_quiet in enumerate([*quiet.tolist(), False]):
        if is_quiet and run_start is None:
            run_start = index
        elif not is_quiet and run_start is not None:
            if index - run_start > best_length:
                best_start, best_length = run_start, index - run_start
            run_start = None
    return start + (best_start + best_length // 2) * _FRAME


def is_repetition_loop(text: str) -> bool:
    """The same phrase (up to 8 words) at least 4 times in a row, covering 8 words or more."""
    words = [word.lower() for word in _WORD.findall(text)]
    for size in range(1, _LOOP_MAX_PHRASE_WORDS + 1):
        repeats_needed = max(_LOOP_MIN_REPEATS, -(-_LOOP_MIN_WORDS // size))
        for start in range(len(words) - size * repeats_needed + 1):
            phrase = words[start : start + size]
            repeats = 1
            while words[start + repeats * size : start + (repeats + 1) * size] == phrase:
                repeats += 1
            if repeats >= repeats_needed:
                return True
    return False
