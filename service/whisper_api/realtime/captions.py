"""Deltas that only ever append, from passes over a growing utterance that may revise their tail.

A client joins deltas end to end, so a word, once sent, stays. A word is sent once two passes in a
row agree on it ("local agreement"), never the last word of a pass (the speaker may be in the middle
of it). The final pass has the last word: what it adds to the words already sent is the last delta;
when it revised a word already sent, `completed` alone carries the corrected transcript.

Passes see at most one Whisper window (30 s). A longer utterance (manual commits) is captioned
window after window: `advance` takes the finished segments at the start of the window as said,
and later passes cover only the audio after them, their words compared with what was sent since.
"""

from __future__ import annotations


def _common_prefix(first: list[str], second: list[str]) -> list[str]:
    length = 0
    for left, right in zip(first, second, strict=False):
        if left != right:
            break
        length += 1
    return first[:length]


class Captions:
    """The words sent so far for one item, and the previous pass they are checked against."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._base = 0  # sent words before the current window
        self._previous: list[str] = []

    def interim(self, text: str) -> str | None:
        """The delta a new pass over the current window makes stable, or None."""
        words = text.split()
        stable = _common_prefix(self._previous, words[:-1])
        self._previous = words
        return self._extend(stable)

    def advance(self, finished: str) -> str | None:
        """The window now starts after `finished` (the words of its first segments): they are sent
        (the delta, if some were not yet) and the next passes are compared from after them."""
        words = finished.split()
        delta = self._extend(words)
        in_window = self.sent[self._base :]
        self._base += len(words) if in_window[: len(words)] == words else len(in_window)
        self._previous = self._previous[len(words) :] if self._previous[: len(words)] == words else []
        return delta

    def final(self, text: str) -> tuple[str | None, str]:
        """The last delta (None when nothing is left to add) and the whole transcript."""
        words = text.split()
        self._base = 0
        return self._extend(words), " ".join(words)

    def _extend(self, words: list[str]) -> str | None:
        in_window = self.sent[self._base :]
        if len(words) <= len(in_window) or words[: len(in_window)] != in_window:
            return None
        added = words[len(in_window) :]
        delta = (" " if self.sent else "") + " ".join(added)
        self.sent = self.sent + added
        return delta
