"""Test recordings in the Realtime API's input format: the committed fixtures, decoded and resampled
to 24 kHz mono PCM16 with PyAV, padded with silence so that server VAD sees speech start and stop."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from functools import cache

import av
import jiwer
import numpy as np

from tests.support.engines import FIXTURES

RATE = 24_000
CHUNK_S = 0.1  # what a browser's audio callback sends, about


@cache
def pcm24(name: str, *, lead_s: float = 0.5, tail_s: float = 1.5) -> bytes:
    """`name` (a fixture file) as 24 kHz PCM16 bytes, with silence before and after."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(FIXTURES / name)) as container:
        pieces = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
    pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    silence = np.zeros(int(lead_s * RATE), dtype=np.int16), np.zeros(int(tail_s * RATE), dtype=np.int16)
    return np.concatenate([silence[0], *pieces, silence[1]]).astype("<i2").tobytes()


def chunks(audio: bytes, seconds: float = CHUNK_S) -> Iterator[str]:
    """The audio as base64 appends of `seconds` each."""
    size = int(seconds * RATE) * 2
    for start in range(0, len(audio), size):
        yield base64.b64encode(audio[start : start + size]).decode()


def duration_s(audio: bytes) -> float:
    return len(audio) / 2 / RATE


def words(text: str) -> list[str]:
    """A transcript's words, lower-cased, without punctuation."""
    return re.sub(r"[^\w\s']", "", text.lower()).split()


def word_edits(hypothesis: str, reference: str) -> int:
    """Words substituted, inserted or deleted between two transcripts.

    A server-VAD turn is a slice of the recording (from the prefix padding to the end of the
    silence that stopped it), not the whole file, and tiny.en may hear one word of it differently
    from the file ("jump" for "jumps" in short.wav on some CPUs); a manual commit of the whole
    buffer must match exactly.
    """
    counts = jiwer.process_words(" ".join(words(reference)), " ".join(words(hypothesis)))
    return counts.substitutions + counts.insertions + counts.deletions
