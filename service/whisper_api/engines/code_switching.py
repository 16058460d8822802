"""Audio in more than one language, and text that loops: what faster-whisper alone gets wrong.

faster-whisper detects the language once, on the first 30 s, and decodes everything after in it: the
German half of English-then-German speech came back as nothing, or as an English paraphrase. With
`multilingual=True` it detects again at every 30 s window; `WindowLanguages` stands in for its
CTranslate2 model during one call so that each detection keeps to the caller's `languages[]` and the
language of each window is known (segments are yielded right after their window is decoded).

A decoder that lost its way repeats a phrase until the window ends ("the rest of the rest of the
rest..."); faster-whisper's temperature fallback keeps the last try even when it still loops. Such a
segment carries no speech and is dropped (`is_repetition_loop`), by both engines.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the openai-whisper image has no faster-whisper: it imports only is_repetition_loop
    from faster_whisper import WhisperModel

# A phrase of at most this many words, said this many times in a row, is a loop...
_LOOP_MAX_PHRASE_WORDS = 8
_LOOP_MIN_REPEATS = 4
# ...once the repeats cover at least this many words ("no, no, no, no" is speech).
_LOOP_MIN_WORDS = 8
_WORD = re.compile(r"[\w']+")


class WindowLanguages:
    """The CTranslate2 Whisper model of one transcription, with language detection kept to `hints`
    and the last language chosen remembered (`current`)."""

    def __init__(self, model: Any, hints: tuple[str, ...]) -> None:
        self._model = model
        self._hints = {f"<|{code}|>" for code in hints}
        self.current: str | None = None

    def __getattr__(self, name: str) -> Any:  # encode, generate, align, is_multilingual, ...
        return getattr(self._model, name)

    def detect_language(self, features: Any) -> list[list[tuple[str, float]]]:
        results = [
            [(token, probability) for token, probability in ranked if not self._hints or token in self._hints]
            for ranked in self._model.detect_language(features)
        ]
        if results and results[0]:
            self.current = results[0][0][0][2:-2]  # "<|de|>" -> "de"
        return results

    @classmethod
    def around(cls, whisper: WhisperModel, hints: tuple[str, ...]) -> tuple[WhisperModel, WindowLanguages]:
        """A shallow copy of `whisper` (its weights shared) that detects through a new WindowLanguages:
        calls in parallel each keep their own."""
        languages = cls(whisper.model, hints)
        clone = copy.copy(whisper)
        clone.model = languages
        return clone, languages


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
