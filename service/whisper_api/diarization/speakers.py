"""Turns + a transcript's words → segments that each carry one speaker's words, labelled.

Each word goes to the speaker it overlaps most (or, in a gap between turns, the nearest one); a
segment is split wherever the speaker changes, so no segment ever holds two speakers' words.
Speakers are named after a matching known voice, else `A`, `B`, … in order of first appearance.
"""

import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from whisper_api.diarization.channels import ChannelDecoder, diarize_stereo, loudest
from whisper_api.diarization.diarizer import Diarization, Diarizer, Turn
from whisper_api.diarization.speech import VadTuning
from whisper_api.schemas import Segment, Speakers, SpeakerSegment, SpeakerTurn, Transcript, Word

# Cosine similarity of a speaker's centroid to a reference above which they are one voice. On the
# benchmark's recordings a speaker's centroid scores 0.90-0.96 against a 4-6 s reference of that
# speaker, 0.49-0.51 against the other speaker of the same meeting, and 0.11-0.22 against unrelated
# voices; 0.6 sits between, with room for a reference recorded on another day or microphone.
KNOWN_SPEAKER_SIMILARITY = 0.6


def speaker_of(start: float, end: float, turns: list[Turn], levels: np.ndarray | None = None) -> int | None:
    """The speaker overlapping [start, end] most, or where channels were diarized alone
    (`levels`), the loudest of those heard then; in a gap, the nearest turn's; None without turns."""
    if not turns:
        return None
    overlaps = [min(end, turn.end) - max(start, turn.start) for turn in turns]
    best = int(np.argmax(overlaps))
    if overlaps[best] > 0:
        if levels is not None:  # channels diarized alone: of those heard at once, the loudest
            heard = [turn for turn, overlap in zip(turns, overlaps, strict=True) if overlap > 0]
            if len({turn.channel for turn in heard}) > 1:
                return loudest(heard, levels, start, end).speaker
        return turns[best].speaker
    middle = (start + end) / 2
    distances = [max(turn.start - middle, middle - turn.end, 0.0) for turn in turns]
    return turns[int(np.argmin(distances))].speaker


def match_known_speakers(
    centroids: np.ndarray, references: dict[str, np.ndarray], threshold: float = KNOWN_SPEAKER_SIMILARITY
) -> dict[int, str]:
    """Speaker index → name, best matches first, each name and each speaker used at most once."""
    if len(centroids) == 0 or not references:
        return {}
    names = list(references)
    similarity = centroids @ np.stack([references[name] for name in names]).T
    matched: dict[int, str] = {}
    for flat in np.argsort(similarity, axis=None)[::-1]:
        speaker, column = np.unravel_index(flat, similarity.shape)
        if similarity[speaker, column] < threshold:
            break
        if int(speaker) not in matched and names[column] not in matched.values():
            matched[int(speaker)] = names[column]
    return matched


def _letters() -> "list[str]":
    """A … Z, then AA, AB, …: enough for any file."""
    single = list(string.ascii_uppercase)
    return single + [first + second for first in single for second in single]


def _pieces(segment: Segment, diarization: Diarization) -> list[tuple[int | None, float, float, str]]:
    """(speaker, start, end, text) runs of one segment's words, split where the speaker changes."""
    turns, levels = diarization.turns, diarization.levels
    words: list[Word] = segment.words or []
    if not words:
        return [
            (speaker_of(segment.start, segment.end, turns, levels), segment.start, segment.end, segment.text)
        ]
    runs: list[tuple[int | None, float, float, str]] = []
    for word in words:
        speaker = speaker_of(word.start, word.end, turns, levels)
        if runs and runs[-1][0] == speaker:
            previous = runs[-1]
            runs[-1] = (speaker, previous[1], word.end, previous[3] + word.word)
        else:
            runs.append((speaker, word.start, word.end, word.word))
    return runs


@dataclass(frozen=True)
class SpeakerTranscript:
    segments: list[SpeakerSegment]
    labels: dict[int, str]  # speaker index → label, for every speaker in the turns


def speaker_segments(
    segments: list[Segment], diarization: Diarization, names: dict[int, str] | None = None
) -> SpeakerTranscript:
    """The transcript's segments split by speaker and labelled (see the module's docstring)."""
    names = names or {}
    pieces = [piece for segment in segments for piece in _pieces(segment, diarization) if piece[3].strip()]
    letters = iter(_letters())
    labels: dict[int | None, str] = {}
    # In order of first appearance: in the words first, then speakers who said no word.
    for speaker in [piece[0] for piece in pieces] + [turn.speaker for turn in diarization.turns]:
        if speaker not in labels:
            name = names.get(speaker) if speaker is not None else None
            labels[speaker] = name or next(letters)
    return SpeakerTranscript(
        segments=[
            SpeakerSegment(start=start, end=end, speaker=labels[speaker], text=text)
            for speaker, start, end, text in pieces
        ],
        labels={speaker: label for speaker, label in labels.items() if speaker is not None},
    )


def with_speakers(transcript: Transcript, diarization: Diarization, names: dict[int, str]) -> Transcript:
    """The transcript with its speaker segments and labelled turns (`Transcript.speakers`)."""
    found = speaker_segments(transcript.segments, diarization, names)
    turns = [
        SpeakerTurn(start=t.start, end=t.end, speaker=found.labels[t.speaker]) for t in diarization.turns
    ]
    return transcript.model_copy(update={"speakers": Speakers(segments=found.segments, turns=turns)})


def diarize_transcript(
    diarizer: Diarizer,
    audio: np.ndarray,
    transcript: Transcript,
    known: Mapping[str, np.ndarray] | None = None,
    *,
    vad: VadTuning | None = None,
    cancel: threading.Event | None = None,
    channel: ChannelDecoder | None = None,
) -> Transcript:
    """Diarize `audio` (16 kHz, the transcript's own) and label its words; `known`: name → 2-10 s
    of that voice; `channel`: a stereo upload's channels, each diarized alone (`channels.py`). Runs
    on the inference thread, after the transcription, on the same samples."""
    if channel is None:
        diarization = diarizer.diarize(audio, vad=vad, cancel=cancel)
    else:
        diarization = diarize_stereo(diarizer, audio, channel, vad=vad, cancel=cancel)
    references = {name: diarizer.embed_voice(sample) for name, sample in (known or {}).items()}
    return with_speakers(transcript, diarization, match_known_speakers(diarization.centroids, references))


def rttm(turns: list[SpeakerTurn], recording: str) -> str:
    """NIST RTTM lines (`SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>`); spaces
    in a file or speaker name become underscores (RTTM fields are space-separated)."""
    name = recording.replace(" ", "_")
    return "".join(
        f"SPEAKER {name} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> "
        f"{turn.speaker.replace(' ', '_')} <NA> <NA>\n"
        for turn in turns
    )
