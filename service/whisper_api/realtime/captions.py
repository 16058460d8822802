"""Deltas that only ever append, from passes over a growing utterance that may revise their tail.

A client joins deltas end to end, so a word, once sent, stays. A word is sent once two passes in a
row agree on it ("local agreement"), never the last word of a pass (the speaker may be in the middle
of it). The final pass has the last word: what it adds to the words already sent is the last delta;
when it revised a word already sent, `completed` alone carries the corrected transcript.
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
        self._previous: list[str] = []

    def interim(self, text: str) -> str | None:
        """The delta a new pass makes stable, or None."""
        words = text.split()
        stable = _common_prefix(self._previous, words[:-1])
        self._previous = words
        return self._extend(stable)

    def final(self, text: str) -> tuple[str | None, str]:
        """The last delta (None when nothing is left to add) and the whole transcript."""
        words = text.split()
        return self._extend(words), " ".join(words)

    def _extend(self, words: list[str]) -> str | None:
        if len(words) <= len(self.sent) or words[: len(self.sent)] != self.sent:
            return None
        added = words[len(self.sent) :]
        delta = (" " if self.sent else "") + " ".join(added)
        self.sent = words
        return delta
