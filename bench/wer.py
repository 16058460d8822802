"""WER on read speech: this service's decode defaults against speaches', one setting at a time.

The clips are LibriSpeech utterances committed under bench/data/librispeech (sources and licence in
its README). Each configuration is a set of WHISPER_* settings and a request temperature, run through
the service's own engine (`load_engine(Settings())`, as the server loads it) in its own subprocess;
speaches main's also restores faster-whisper's batched default that this engine overrides (chunks
decoded without timestamps).
It transcribes every clip on its own, and then all of them read one after another with a pause
between (a chapter's worth of windows, where conditioning on previous text can act). The report
gives the word alignment after Whisper's English normaliser (bench.longform.align) and the wall and
CPU seconds of each pass, medians over `runs`.

speaches' defaults, from its source (docs/benchmarks.md has the table with the lines):
- its last release (v0.8.3) calls WhisperModel.transcribe with compute_type "default" (the bundled
  model is the same float16 tiny.en, float32 on a CPU), temperature 0.0 only, Silero VAD with
  faster-whisper's defaults, beam 5, and faster-whisper's condition_on_previous_text=True;
- its main branch calls BatchedInferencePipeline instead: VAD with 160 ms silences and 30 s chunks,
  each chunk decoded without timestamps and without the previous text, temperature 0.0 only.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from bench.audio import SAMPLE_RATE, Clip, load_clip
from bench.isolated import WorkerFailed, run_worker, worker_main
from bench.longform import Alignment, align, cpu_seconds
from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.stats import median

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "bench" / "data" / "librispeech"
TRANSCRIPTS = "transcripts.txt"
# Silence between the clips when they are read one after another.
PAUSE_S = 1.0
# The configurations the WER target compares (bench.targets).
OURS = "service-default"
SPEACHES = ("speaches-0.8", "speaches-main")


class WerConfig(BaseModel):
    name: str
    differs: str = Field(description="What differs from this service's defaults.")
    settings: dict[str, str] = Field(default_factory=dict, description="WHISPER_* overrides.")
    temperature: float | None = Field(None, description="The request's; None: the fallback schedule.")
    chunks_without_timestamps: bool = Field(
        False,
        description="Batched chunks decoded without timestamps, as speaches main decodes them "
        "(faster-whisper's batched default); this service's batched mode keeps them.",
    )


class Pass(BaseModel):
    """One way through the audio: its alignment and its cost (medians over the runs)."""

    alignment: Alignment
    seconds: float
    cpu_seconds: float


class ClipText(BaseModel):
    clip: str
    text: str
    alignment: Alignment


class WerResult(BaseModel):
    config: WerConfig
    clips: Pass | None = None
    joined: Pass | None = None
    per_clip: list[ClipText] = Field(default_factory=list)
    joined_text: str = ""
    error: str | None = None


def default_configs() -> list[WerConfig]:
    """Ours, speaches' two, and each setting in which they differ flipped from ours alone."""
    return [
        WerConfig(name=OURS, differs="none: int8, beam 5, VAD, no conditioning, fallback"),
        WerConfig(
            name=SPEACHES[0],
            differs="float32, temperature 0 only, conditioning on previous text",
            settings={"WHISPER_COMPUTE_TYPE": "float32", "WHISPER_CONDITION_ON_PREVIOUS_TEXT": "true"},
            temperature=0.0,
        ),
        WerConfig(
            name=SPEACHES[1],
            differs="float32, temperature 0 only, batched (VAD 160 ms / 30 s chunks) without timestamps",
            settings={"WHISPER_COMPUTE_TYPE": "float32", "WHISPER_BATCH_SIZE": "8"},
            temperature=0.0,
            chunks_without_timestamps=True,
        ),
        WerConfig(name="float32", differs="float32", settings={"WHISPER_COMPUTE_TYPE": "float32"}),
        WerConfig(name="temperature-0", differs="temperature 0 only (no fallback)", temperature=0.0),
        WerConfig(
            name="conditioning",
            differs="conditioning on previous text",
            settings={"WHISPER_CONDITION_ON_PREVIOUS_TEXT": "true"},
        ),
        WerConfig(
            name="batched",
            differs="batched (VAD 160 ms / 30 s chunks), as this service's WHISPER_BATCH_SIZE does it",
            settings={"WHISPER_BATCH_SIZE": "8"},
        ),
        WerConfig(
            name="batched-no-timestamps",
            differs="batched, chunks without timestamps (speaches main's pipeline)",
            settings={"WHISPER_BATCH_SIZE": "8"},
            chunks_without_timestamps=True,
        ),
    ]


def read_clips(data_dir: Path) -> list[tuple[Clip, str]]:
    """Each clip of `data_dir` with its reference, in the order of its transcripts file."""
    clips = []
    for line in (data_dir / TRANSCRIPTS).read_text().splitlines():
        if not line.strip():
            continue
        clip_id, _, reference = line.partition(" ")
        found = sorted(data_dir.glob(f"{clip_id}.*"))
        if len(found) != 1 or not reference.strip():
            raise ValueError(f"{data_dir / TRANSCRIPTS}: {clip_id} needs one audio file and a reference")
        clips.append((Clip(found[0]), reference.strip()))
    if not clips:
        raise ValueError(f"{data_dir / TRANSCRIPTS} lists no clips")
    return clips


def join(audio: Sequence[np.ndarray]) -> np.ndarray:
    """The clips read one after another, PAUSE_S of silence after each."""
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([piece for clip in audio for piece in (clip, pause)])


def pooled(alignments: Sequence[Alignment]) -> Alignment:
    """The clips' errors over the clips' words (not the mean of the clips' rates)."""
    words = sum(a.reference_words for a in alignments)
    deletions = sum(a.deletions for a in alignments)
    insertions = sum(a.insertions for a in alignments)
    substitutions = sum(a.substitutions for a in alignments)
    return Alignment(
        reference_words=words,
        wer=(deletions + insertions + substitutions) / words,
        deletions=deletions,
        insertions=insertions,
        substitutions=substitutions,
        longest_deletion_words=max(a.longest_deletion_words for a in alignments),
    )


# ---- the worker: runs inside the subprocess ---------------------------------------------------


def _timed(transcribe: Callable[[np.ndarray], str], audio: np.ndarray) -> tuple[str, float, float]:
    started, cpu_started = time.perf_counter(), cpu_seconds()
    text = transcribe(audio)
    return text, time.perf_counter() - started, cpu_seconds() - cpu_started


def _decode_chunks_without_timestamps() -> None:
    """faster-whisper's batched pipeline as speaches main calls it: `without_timestamps=True`, its
    default, which this service's engine overrides. Only in this worker process (one configuration)."""
    from faster_whisper import BatchedInferencePipeline

    transcribe = BatchedInferencePipeline.transcribe

    def without_timestamps(self, audio, **arguments):  # type: ignore[no-untyped-def]
        return transcribe(self, audio, **{**arguments, "without_timestamps": True})

    BatchedInferencePipeline.transcribe = without_timestamps  # type: ignore[method-assign]


def worker(config: WerConfig, data_dir: Path, runs: int) -> WerResult:
    from whisper_api.engines import load_engine
    from whisper_api.schemas import TranscribeOptions
    from whisper_api.settings import Settings

    if config.chunks_without_timestamps:
        _decode_chunks_without_timestamps()
    os.environ.update(config.settings)
    engine = load_engine(Settings())
    engine.warmup()
    options = TranscribeOptions(language="en", temperature=config.temperature)

    def transcribe(audio: np.ndarray) -> str:
        return " ".join(segment.text for segment in engine.transcribe(audio, options).segments)

    clips = read_clips(data_dir)
    audio = [load_clip(clip) for clip, _ in clips]
    transcribe(audio[0])  # the first request's one-off costs are not the configuration's
    clip_costs, joined_costs = [], []
    for _ in range(runs):
        timed = [_timed(transcribe, samples) for samples in audio]
        texts = [text for text, _, _ in timed]
        clip_costs.append((sum(t[1] for t in timed), sum(t[2] for t in timed)))
        joined_text, wall, cpu = _timed(transcribe, join(audio))
        joined_costs.append((wall, cpu))
    per_clip = [
        ClipText(clip=clip.path.name, text=text.strip(), alignment=align(reference, text))
        for (clip, reference), text in zip(clips, texts, strict=True)
    ]
    references = " ".join(reference for _, reference in clips)
    return WerResult(
        config=config,
        clips=Pass(
            alignment=pooled([c.alignment for c in per_clip]),
            seconds=median([wall for wall, _ in clip_costs]),
            cpu_seconds=median([cpu for _, cpu in clip_costs]),
        ),
        joined=Pass(
            alignment=align(references, joined_text),
            seconds=median([wall for wall, _ in joined_costs]),
            cpu_seconds=median([cpu for _, cpu in joined_costs]),
        ),
        per_clip=per_clip,
        joined_text=joined_text.strip(),
    )


def run_config(config: WerConfig, data_dir: Path, runs: int, timeout_s: float = 600) -> WerResult:
    args = [config.model_dump_json(), str(data_dir), str(runs)]
    try:
        return WerResult.model_validate_json(run_worker("bench.wer", args, timeout_s, own_settings_only=True))
    except WorkerFailed as error:
        return WerResult(config=config, error=str(error))


def worker_from_args(args: Sequence[str]) -> WerResult:
    """The worker for the arguments run_config gave it."""
    return worker(WerConfig.model_validate_json(args[0]), Path(args[1]), int(args[2]))


# ---- the report ------------------------------------------------------------------------------


class WerReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    clips: list[str]
    audio_seconds: float
    pause_s: float
    runs: int
    results: list[WerResult]


def _pass_cells(found: Pass) -> str:
    a = found.alignment
    return (
        f"{a.wer * 100:.1f} % | {a.deletions}/{a.insertions}/{a.substitutions} "
        f"| {found.seconds:.2f} | {found.cpu_seconds:.2f}"
    )


def markdown(report: WerReport) -> str:
    words = next((r.clips.alignment.reference_words for r in report.results if r.clips), 0)
    lines = [
        "## WER on read speech (LibriSpeech clips)",
        "",
        report.machine.describe(report.load_average_after[0]),
        f"Audio: {len(report.clips)} clips, {report.audio_seconds:.0f} s, {words} reference words "
        "(Whisper's English normaliser), each transcribed on its own (*clips*), then all read one after "
        f"another with {report.pause_s:g} s pauses (*joined*). The service's engine in its own process "
        f"per configuration; wall and CPU seconds are medians of {report.runs} runs. "
        "D/I/S: deleted, inserted, substituted words.",
        "",
        "| configuration | differs from ours | clips WER | D/I/S | wall s | CPU s "
        "| joined WER | D/I/S | wall s | CPU s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        if r.error or r.clips is None or r.joined is None:
            lines.append(f"| {r.config.name} | {r.config.differs} | error: {r.error} |")
            continue
        lines.append(
            f"| {r.config.name} | {r.config.differs} | {_pass_cells(r.clips)} | {_pass_cells(r.joined)} |"
        )
    done = [r for r in report.results if r.per_clip]
    if done:
        lines += [
            "",
            "Errors per clip (deleted + inserted + substituted words):",
            "",
            "| clip | words | " + " | ".join(r.config.name for r in done) + " |",
            "|---|---:|" + "---:|" * len(done),
        ]
        for index, first in enumerate(done[0].per_clip):
            errors = []
            for r in done:
                a = r.per_clip[index].alignment
                errors.append(str(a.deletions + a.insertions + a.substitutions))
            lines.append(f"| {first.clip} | {first.alignment.reference_words} | " + " | ".join(errors) + " |")
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-wer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DATA_DIR, help="Folder of clips and their transcripts.txt."
    )
    parser.add_argument("--runs", type=int, default=3, help="Timed runs per configuration (medians).")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="Run only these configurations."
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/wer"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs must be within 1..20")
    try:
        clips = read_clips(args.data)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    configs = [c for c in default_configs() if not args.only or c.name in args.only]
    if not configs:
        parser.error(f"--only names no configuration; known: {', '.join(c.name for c in default_configs())}")
    machine = describe(with_gpu=False)
    results = []
    for config in configs:
        result = run_config(config, args.data, args.runs)
        summary = (
            f"WER {result.clips.alignment.wer * 100:.1f} % (clips), "
            f"{result.joined.alignment.wer * 100:.1f} % (joined)"
            if result.clips and result.joined
            else str(result.error)
        )
        print(f"{config.name}: {summary}")
        results.append(result)
    report = WerReport(
        machine=machine,
        load_average_after=load_average(),
        clips=[clip.path.name for clip, _ in clips],
        audio_seconds=sum(len(load_clip(clip)) for clip, _ in clips) / SAMPLE_RATE,
        pause_s=PAUSE_S,
        runs=args.runs,
        results=results,
    )
    write_results(args.out, "wer", report, markdown(report))
    print(markdown(report))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(worker_main(worker_from_args, main))
