"""Benchmark audio: files or slices of files, their durations and reference transcripts, and WER."""

import io
import re
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = frozenset({".flac", ".mp3", ".mp4", ".mpeg", ".mpga", ".m4a", ".ogg", ".wav", ".webm"})
# Where the shared recordings live next to a checkout (not in a fresh clone: always optional).
DEFAULT_AUDIO_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "audio"

# Reference transcripts published with the recordings (see the audio folder's README); keyed by
# the file name and the slice, "" for the whole file. multilingual.mp3's first 30 s are English.
REFERENCES: dict[tuple[str, str], str] = {
    ("jfk.flac", ""): (
        "And so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country."
    ),
    ("multilingual.mp3", "0-30"): (
        "Permission is hereby granted, free of charge, to any person obtaining a copy of the software "
        "and associated documentation files to deal in the software without restriction, including "
        "without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, "
        "and/or sell copies of the software, and to permit persons to whom the software is furnished "
        "to do so, subject to the following conditions. The above copyright notice and this "
        "permission notice shall be included in all copies or substantial portions of the software."
    ),
}

_SLICE = re.compile(r"^(?P<path>.+)@(?P<start>\d+(?:\.\d+)?)-(?P<end>\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Clip:
    """A file, or the slice `start`..`end` seconds of it (written `path@start-end`)."""

    path: Path
    start: float | None = None
    end: float | None = None

    @property
    def sliced(self) -> bool:
        return self.start is not None

    @property
    def slice_key(self) -> str:
        return f"{self.start:g}-{self.end:g}" if self.sliced else ""

    @property
    def label(self) -> str:
        return f"{self.path.name}@{self.slice_key}" if self.sliced else self.path.name

    @property
    def reference(self) -> str | None:
        return REFERENCES.get((self.path.name, self.slice_key))

    @classmethod
    def parse(cls, spec: str) -> "Clip":
        match = _SLICE.match(spec)
        if not match:
            return cls(Path(spec))
        start, end = float(match["start"]), float(match["end"])
        if end <= start:
            raise ValueError(f"{spec}: the slice must end after it starts")
        return cls(Path(match["path"]), start, end)


def find_clips(specs: list[str]) -> list[Clip]:
    """Expand files, `file@start-end` slices and folders (their audio files, sorted) into clips."""
    clips: list[Clip] = []
    for spec in specs:
        clip = Clip.parse(spec)
        if clip.path.is_dir() and not clip.sliced:
            found = sorted(p for p in clip.path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise ValueError(f"{spec}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
            clips.extend(Clip(p) for p in found)
        elif clip.path.is_file():
            clips.append(clip)
        else:
            raise ValueError(f"{spec}: no such file or folder")
    return clips


@cache
def _decode(path: Path) -> np.ndarray:
    decoded = path.with_name(path.name + ".npy")  # `scripts/bench-gpu --save-pcm`, for a machine without PyAV
    if decoded.is_file():
        return np.load(decoded)
    from faster_whisper.audio import decode_audio  # PyAV, in-process: no ffmpeg binary needed

    return decode_audio(str(path), sampling_rate=SAMPLE_RATE)


def load_clip(clip: Clip) -> np.ndarray:
    """16 kHz mono float32 samples of the clip."""
    audio = _decode(clip.path)
    if clip.sliced:
        assert clip.start is not None and clip.end is not None
        audio = audio[int(clip.start * SAMPLE_RATE) : int(clip.end * SAMPLE_RATE)]
    return audio


def clip_seconds(clip: Clip) -> float:
    return len(load_clip(clip)) / SAMPLE_RATE


def clip_upload(clip: Clip) -> tuple[str, bytes]:
    """The bytes to upload: the file as it is, or a slice re-encoded as 16-bit WAV."""
    if not clip.sliced:
        return clip.path.name, clip.path.read_bytes()
    samples = np.clip(load_clip(clip), -1, 1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    return f"{clip.path.stem}_{clip.slice_key}.wav", buffer.getvalue()


@cache
def _normalizer():  # type: ignore[no-untyped-def]
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalise(text: str) -> str:
    """Whisper's English normaliser: case, punctuation, spelling variants, numbers."""
    return _normalizer()(text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref.split():
        raise ValueError("empty reference transcript")
    return float(jiwer.wer(ref, hyp if hyp.split() else "<empty>"))
