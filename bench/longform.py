"""Long-form completeness: how much speech each engine and decode option loses on minutes of audio.

A long recording is built at benchmark time from the shared recordings that have reference
transcripts (jfk.flac and the English half of multilingual.mp3), repeated with pauses of several
lengths between them, so that the whole reference is known word for word. Each configuration runs
in its own subprocess (clean peak memory) and reports its wall time and the word alignment against
the reference after Whisper's English normaliser: deleted, inserted and substituted words, and the
longest run of consecutive deleted words (a dropped sentence shows up there, not in the WER alone).

The configurations call the libraries with explicit arguments, so every decode option is named in
the report; the `service` rows go through the service's own engine with its default settings.
"""

import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from bench.audio import DEFAULT_AUDIO_DIR, SAMPLE_RATE, Clip, load_clip, normalise
from bench.isolated import WorkerFailed, run_worker, worker_main
from bench.machine import Machine, describe, load_average
from bench.report import write_results

# Seconds of silence after each recording, in turn: a breath, a pause, a gap, a long gap.
PAUSES_S = (0.4, 1.5, 4.0, 9.0)
# The recordings with a reference (bench.audio.REFERENCES), in the order they are repeated.
PIECES = ("jfk.flac", "multilingual.mp3@0-30")

EngineKind = Literal["faster-whisper", "openai-whisper", "service"]


class LongformConfig(BaseModel):
    name: str
    engine: EngineKind
    compute_type: str = "int8"
    beam_size: int = 5
    vad: bool = True
    condition_on_previous_text: bool = True
    word_timestamps: bool = False
    hallucination_silence_threshold: float | None = None
    temperature: float | None = Field(None, description="None: the library's fallback schedule.")
    settings: dict[str, str] = Field(default_factory=dict, description="service: WHISPER_* overrides.")

    def library_arguments(self) -> dict[str, Any]:
        """The transcribe() keyword arguments both libraries share (language fixed: English audio)."""
        arguments: dict[str, Any] = {
            "language": "en",
            "beam_size": self.beam_size,
            "condition_on_previous_text": self.condition_on_previous_text,
            "word_timestamps": self.word_timestamps,
        }
        if self.hallucination_silence_threshold is not None:
            arguments["hallucination_silence_threshold"] = self.hallucination_silence_threshold
        if self.temperature is not None:
            arguments["temperature"] = self.temperature
        return arguments


class Alignment(BaseModel):
    reference_words: int
    wer: float
    deletions: int
    insertions: int
    substitutions: int
    longest_deletion_words: int


class LongformResult(BaseModel):
    config: LongformConfig
    audio_seconds: float
    seconds: float | None = None
    cpu_seconds: float | None = Field(None, description="User + system CPU time: steadier than wall time.")
    real_time_factor: float | None = None
    peak_rss_mib: float | None = None
    alignment: Alignment | None = None
    text: str = ""
    error: str | None = None


def default_configs() -> list[LongformConfig]:
    fw, ow = "faster-whisper", "openai-whisper"
    return [
        LongformConfig(name="service-default", engine="service"),
        LongformConfig(name="service-words", engine="service", word_timestamps=True),
        LongformConfig(name="fw-vad-cond", engine=fw),
        LongformConfig(name="fw-novad-cond", engine=fw, vad=False),
        LongformConfig(name="fw-vad-nocond", engine=fw, condition_on_previous_text=False),
        LongformConfig(name="fw-novad-nocond", engine=fw, vad=False, condition_on_previous_text=False),
        LongformConfig(name="fw-vad-cond-words", engine=fw, word_timestamps=True),
        LongformConfig(
            name="fw-vad-nocond-words", engine=fw, condition_on_previous_text=False, word_timestamps=True
        ),
        LongformConfig(
            name="fw-vad-cond-words-hst2", engine=fw, word_timestamps=True, hallucination_silence_threshold=2
        ),
        LongformConfig(
            name="fw-novad-cond-words-hst2",
            engine=fw,
            vad=False,
            word_timestamps=True,
            hallucination_silence_threshold=2,
        ),
        LongformConfig(name="fw-vad-cond-t0", engine=fw, temperature=0.0),
        LongformConfig(name="ow-cond", engine=ow, compute_type="float32", vad=False),
        LongformConfig(
            name="ow-nocond", engine=ow, compute_type="float32", vad=False, condition_on_previous_text=False
        ),
    ]


def build_long_audio(audio_dir: Path, cycles: int) -> tuple[np.ndarray, str]:
    """`cycles` times (jfk, pause, English minute half, pause), the pauses taken from PAUSES_S in turn."""
    from bench.audio import REFERENCES

    pieces, words = [], []
    pause = 0
    for _ in range(cycles):
        for spec in PIECES:
            clip = Clip.parse(str(audio_dir / spec))
            reference = REFERENCES[(clip.path.name, clip.slice_key)]
            pieces.append(load_clip(clip))
            pieces.append(np.zeros(int(PAUSES_S[pause % len(PAUSES_S)] * SAMPLE_RATE), dtype=np.float32))
            words.append(reference)
            pause += 1
    return np.concatenate(pieces), " ".join(words)


def align(reference: str, hypothesis: str) -> Alignment:
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    output = jiwer.process_words(ref, hyp if hyp.split() else "<empty>")
    longest = max(
        (chunk.ref_end_idx - chunk.ref_start_idx for chunk in output.alignments[0] if chunk.type == "delete"),
        default=0,
    )
    return Alignment(
        reference_words=len(ref.split()),
        wer=float(output.wer),
        deletions=output.deletions,
        insertions=output.insertions,
        substitutions=output.substitutions,
        longest_deletion_words=longest,
    )


# ---- the worker: runs inside the subprocess ---------------------------------------------------


def _transcriber(config: LongformConfig):  # type: ignore[no-untyped-def]
    if config.engine == "service":
        from whisper_api.engines import load_engine
        from whisper_api.schemas import TranscribeOptions
        from whisper_api.settings import Settings

        os.environ.update(config.settings)
        engine = load_engine(Settings())
        options = TranscribeOptions(word_timestamps=config.word_timestamps)
        return lambda audio: " ".join(s.text for s in engine.transcribe(audio, options).segments)
    if config.engine == "faster-whisper":
        from faster_whisper import WhisperModel

        from whisper_api.models import bundled_model_path

        model = WhisperModel(str(bundled_model_path()), device="cpu", compute_type=config.compute_type)

        def faster(audio: np.ndarray) -> str:
            segments, _ = model.transcribe(audio, vad_filter=config.vad, **config.library_arguments())
            return " ".join(segment.text for segment in segments)

        return faster
    import torch

    from whisper_api.engines.openai import build_model
    from whisper_api.models import bundled_model_path, convert_ct2_to_openai

    ct2 = bundled_model_path()
    assert ct2 is not None
    whisper_model = build_model(convert_ct2_to_openai(ct2), "tiny.en", "cpu")

    def openai(audio: np.ndarray) -> str:
        arguments = config.library_arguments()
        arguments.setdefault("temperature", (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
        with torch.inference_mode():
            result = whisper_model.transcribe(audio, fp16=False, best_of=5, verbose=None, **arguments)
        return str(result["text"])

    return openai


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(config: LongformConfig, audio_dir: Path, cycles: int) -> LongformResult:
    from bench.engines import peak_rss_mib

    audio, reference = build_long_audio(audio_dir, cycles)
    transcribe = _transcriber(config)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    text = transcribe(audio)
    seconds, cpu_used = time.perf_counter() - started, cpu_seconds() - cpu_started
    duration = len(audio) / SAMPLE_RATE
    return LongformResult(
        config=config,
        audio_seconds=duration,
        seconds=seconds,
        cpu_seconds=cpu_used,
        real_time_factor=seconds / duration,
        peak_rss_mib=peak_rss_mib(),
        alignment=align(reference, text),
        text=text.strip(),
    )


def run_config(
    config: LongformConfig, audio_dir: Path, cycles: int, timeout_s: float = 600
) -> LongformResult:
    args = [config.model_dump_json(), str(audio_dir), str(cycles)]
    try:
        return LongformResult.model_validate_json(run_worker("bench.longform", args, timeout_s))
    except WorkerFailed as error:
        return LongformResult(config=config, audio_seconds=0, error=str(error))


def worker_from_args(args: Sequence[str]) -> LongformResult:
    """The worker for the arguments run_config gave it."""
    return worker(LongformConfig.model_validate_json(args[0]), Path(args[1]), int(args[2]))


# ---- the report ------------------------------------------------------------------------------


class LongformReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    audio_seconds: float
    pieces: list[str]
    pauses_s: list[float]
    cycles: int
    results: list[LongformResult]


def _options(config: LongformConfig) -> str:
    if config.engine == "service":
        parts = [f"{k}={v}" for k, v in config.settings.items()] or ["the service's defaults"]
        return ", ".join(parts + ["word timestamps"] * config.word_timestamps)
    parts = [config.compute_type, f"beam {config.beam_size}", "VAD" if config.vad else "no VAD"]
    parts.append("condition on previous text" if config.condition_on_previous_text else "no conditioning")
    if config.word_timestamps:
        parts.append("word timestamps")
    if config.hallucination_silence_threshold is not None:
        parts.append(f"hallucination_silence_threshold {config.hallucination_silence_threshold:g}")
    if config.temperature is not None:
        parts.append(f"temperature {config.temperature:g} only")
    return ", ".join(parts)


def markdown(report: LongformReport) -> str:
    lines = [
        "## Long-form completeness",
        "",
        report.machine.describe(report.load_average_after[0]),
        f"Audio: {report.audio_seconds:.0f} s built from {report.cycles} x ({', '.join(report.pieces)}) with "
        f"pauses of {', '.join(f'{p:g}' for p in report.pauses_s)} s in turn; reference "
        f"{next((r.alignment.reference_words for r in report.results if r.alignment), 0)} words "
        "(Whisper's English normaliser). One run per configuration, each in its own process.",
        "",
        "| configuration | engine | options | WER | deleted | inserted | substituted "
        "| longest deletion (words) | wall s | CPU s | RTF | peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        a = r.alignment
        if r.error or a is None or r.seconds is None:
            lines.append(f"| {r.config.name} | {r.config.engine} | {_options(r.config)} | error: {r.error} |")
            continue
        lines.append(
            f"| {r.config.name} | {r.config.engine} | {_options(r.config)} | {a.wer * 100:.1f} % "
            f"| {a.deletions} | {a.insertions} | {a.substitutions} | {a.longest_deletion_words} "
            f"| {r.seconds:.1f} | {r.cpu_seconds or 0:.1f} | {r.real_time_factor or 0:.3f} "
            f"| {r.peak_rss_mib or 0:.0f} |"
        )
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-longform", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--audio", type=Path, default=DEFAULT_AUDIO_DIR, help="Folder of the shared recordings."
    )
    parser.add_argument(
        "--cycles", type=int, default=7, help="Repetitions of the recordings (7: about 6 min)."
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="Run only these configurations."
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/longform"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not 1 <= args.cycles <= 50:
        parser.error("--cycles must be within 1..50")
    missing = [p for p in PIECES if not (args.audio / p.partition("@")[0]).is_file()]
    if missing:
        parser.error(f"{args.audio} lacks {', '.join(missing)} (the shared recordings with references)")
    configs = [c for c in default_configs() if not args.only or c.name in args.only]
    if not configs:
        parser.error(f"--only names no configuration; known: {', '.join(c.name for c in default_configs())}")
    machine = describe(with_gpu=False)
    results = []
    for config in configs:
        result = run_config(config, args.audio, args.cycles)
        a = result.alignment
        print(
            f"{config.name}: "
            + (f"WER {a.wer * 100:.1f} %, {result.seconds:.1f} s" if a else str(result.error))
        )
        results.append(result)
    audio, _ = build_long_audio(args.audio, args.cycles)
    report = LongformReport(
        machine=machine,
        load_average_after=load_average(),
        audio_seconds=len(audio) / SAMPLE_RATE,
        pieces=list(PIECES),
        pauses_s=list(PAUSES_S),
        cycles=args.cycles,
        results=results,
    )
    write_results(args.out, "longform", report, markdown(report))
    print(markdown(report))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(worker_main(worker_from_args, main))
