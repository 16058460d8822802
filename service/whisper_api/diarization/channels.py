"""Stereo uploads: each channel diarized alone, its speakers joined across channels.

A call is usually recorded one party per channel. Mixed down, two people talking at once are one
stream, and a turn spoken entirely over another's is lost (one speaker is assigned per time span).
Diarized channel by channel, each party's turns come from its own channel, overlaps included; a
voice found on both channels (crosstalk, or one room on a pair of microphones) is joined into one
speaker by its embedding. A stereo file whose channels are the mix (mono stored as stereo) is
diarized once, as mono.

Memory: one channel is decoded at a time (as much again as the mix), and freed before the next;
what is kept of each is its power per 20 ms (0.7 MiB per channel-hour).
"""

import threading
from collections.abc import Callable

import numpy as np

from whisper_api.diarization import clustering
from whisper_api.diarization.diarizer import Diarization, Diarizer, Turn
from whisper_api.diarization.features import SAMPLE_RATE
from whisper_api.diarization.speech import VadTuning, as_float32

ChannelDecoder = Callable[[int], np.ndarray]
"""Channel 0 or 1 of the upload, decoded alone as 16 kHz int16, like the mix."""

LEVEL_FRAME = SAMPLE_RATE // 50  # 20 ms
# A channel whose difference from the mix has under this share of the mix's power is the mix.
_SAME_AS_MIX_POWER = 0.01
_BLOCK = 60 * SAMPLE_RATE


def frame_power(audio: np.ndarray) -> np.ndarray:
    """Mean power of each 20 ms frame (float32), a minute at a time."""
    frames = -(-len(audio) // LEVEL_FRAME)
    power = np.zeros(frames, dtype=np.float32)
    for start in range(0, len(audio), _BLOCK):
        block = as_float32(audio[start : start + _BLOCK])
        block = np.pad(block, (0, -len(block) % LEVEL_FRAME))
        first = start // LEVEL_FRAME
        power[first : first + len(block) // LEVEL_FRAME] = (
            np.square(block).reshape(-1, LEVEL_FRAME).mean(axis=1)
        )
    return power


def is_mix(channel: np.ndarray, mix: np.ndarray) -> bool:
    """Whether `channel` is the mix itself (the other channel the same), to rounding."""
    difference = total = 0.0
    for start in range(0, min(len(channel), len(mix)), _BLOCK):
        ours = as_float32(channel[start : start + _BLOCK])
        theirs = as_float32(mix[start : start + len(ours)])
        difference += float(np.square(ours - theirs).sum())
        total += float(np.square(theirs).sum())
    return difference <= _SAME_AS_MIX_POWER * total


def diarize_stereo(
    diarizer: Diarizer,
    mix: np.ndarray,
    channel: ChannelDecoder,
    *,
    vad: VadTuning | None = None,
    cancel: threading.Event | None = None,
    merge_similarity: float = clustering.MERGE_SIMILARITY,
) -> Diarization:
    """Who spoke when in a two-channel upload (see the module); `mix` is what was transcribed."""
    found: list[Diarization] = []
    levels: list[np.ndarray] = []
    for index in (0, 1):
        audio = channel(index)
        if index == 0 and is_mix(audio, mix):
            del audio
            return diarizer.diarize(mix, vad=vad, cancel=cancel, merge_similarity=merge_similarity)
        levels.append(frame_power(audio))
        found.append(diarizer.diarize(audio, vad=vad, cancel=cancel, merge_similarity=merge_similarity))
        del audio  # freed before the next channel is decoded
    frames = max(len(level) for level in levels)
    stacked = np.stack([np.pad(level, (0, frames - len(level))) for level in levels])
    return joined(found, stacked, merge_similarity)


def joined(found: list[Diarization], levels: np.ndarray, merge_similarity: float) -> Diarization:
    """The channels' speakers as one set: a speaker whose centroid is at least `merge_similarity`
    like one of an earlier channel's is that speaker; each speaker's turns on both channels are
    joined where they overlap or nearly touch."""
    centroids: list[np.ndarray] = []
    pieces: list[Turn] = []
    for channel, diarization in enumerate(found):
        earlier = len(centroids)
        mapping: dict[int, int] = {}
        for speaker, centroid in enumerate(diarization.centroids):
            taken = set(mapping.values())
            candidates = [(float(centroids[i] @ centroid), i) for i in range(earlier) if i not in taken]
            similarity, match = max(candidates, default=(-1.0, -1))
            if similarity >= merge_similarity:
                mapping[speaker] = match
            else:
                mapping[speaker] = len(centroids)
                centroids.append(centroid)
        pieces += [Turn(t.start, t.end, mapping[t.speaker], channel) for t in diarization.turns]
    turns: list[Turn] = []
    for speaker in range(len(centroids)):
        own = sorted((turn for turn in pieces if turn.speaker == speaker), key=lambda turn: turn.start)
        for turn in own:
            if turns and turns[-1].speaker == speaker and turn.start - turns[-1].end < 0.5:
                last = turns[-1]
                turns[-1] = Turn(last.start, max(last.end, turn.end), speaker, last.channel)
            else:
                turns.append(turn)
    turns.sort(key=lambda turn: (turn.start, turn.speaker))
    vectors = np.stack(centroids) if centroids else np.zeros((0, 192), dtype=np.float32)
    return Diarization(turns=turns, centroids=vectors, levels=levels)


def loudest(turns: list[Turn], levels: np.ndarray, start: float, end: float) -> Turn:
    """Of turns heard on different channels at once, the one whose channel is loudest over
    [start, end] (the mix holds the louder party's words)."""
    first = int(start * SAMPLE_RATE) // LEVEL_FRAME
    last = max(first + 1, -(-int(end * SAMPLE_RATE) // LEVEL_FRAME))

    def power(turn: Turn) -> float:
        heard = levels[turn.channel, first:last]
        return float(heard.mean()) if heard.size else 0.0

    return max(turns, key=power)
