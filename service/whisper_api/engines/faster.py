"""faster-whisper (CTranslate2): the default engine. int8 on CPU, float16 on GPU, VAD on by default."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import replace
from operator import attrgetter
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.transcribe import Segment as FasterSegment
from faster_whisper.transcribe import restore_speech_timestamps
from faster_whisper.vad import VadOptions, get_speech_timestamps

from whisper_api.engines import choose_compute_type, choose_device
from whisper_api.engines.base import SAMPLE_RATE, SegmentCallback, TranscriptionCancelled, as_float32
from whisper_api.engines.code_switching import is_repetition_loop, language_runs
from whisper_api.models import resolve_model
from whisper_api.schemas import Segment, TranscribeOptions, Transcript, Word
from whisper_api.settings import Settings

logger = logging.getLogger(__name__)
# What the segment generator yields: a segment, and the language its run was detected in (or None).
Decoded = tuple[FasterSegment, str | None]

# Silero VAD runs over this much audio at a time (a multiple of its 512-sample window).
VAD_PIECE_SAMPLES = 5 * 60 * SAMPLE_RATE
# Speech decoded per faster-whisper call (see speech_groups).
SPEECH_GROUP_SAMPLES = 5 * 60 * SAMPLE_RATE
# The loudest int16 sample of a piece skipped as digital silence (dither, a DC-free zero signal).
DIGITAL_SILENCE = 8
# A stretch of speech-only audio at least this long, with fewer words than this per second, holds
# speech the decoder skipped (see FasterWhisperEngine._redecode_skipped_speech). It skips at most
# the rest of one window, so longer stretches without words are what the decoder heard as silence.
SKIPPED_SPEECH_MIN_S = 5.0
SKIPPED_SPEECH_MAX_S = 30.0
SKIPPED_SPEECH_WORDS_PER_S = 0.5


def available_cpus() -> int:
    """CPUs this process may use (the container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_cpu_threads(cpus: int) -> int:
    """All CPUs but one, which stays free for decoding uploads, VAD and the event loop.

    Measured on 2 cores (docs/decisions/2026-11-25-cpu-threads.md): CTranslate2 with 1 thread
    answered an 11 s clip in 0.41 s and a minute in 1.61 s; with 2 threads 0.46 s and 1.96 s.
    """
    return max(1, cpus - 1)


def speech_chunks(audio: np.ndarray, cancel: threading.Event | None = None) -> list[dict[str, int]]:
    """Where the speech is (sample offsets), by faster-whisper's Silero VAD run over one piece of
    the audio at a time: on a whole file it holds three float32 copies of it (2.4 GB for 3 h); by
    pieces a few tens of MB, and a cancel is noticed between pieces. Speech running over a piece
    boundary is one chunk."""
    chunks: list[dict[str, int]] = []
    for offset in range(0, audio.shape[0], VAD_PIECE_SAMPLES):
        if cancel is not None and cancel.is_set():
            raise TranscriptionCancelled(0)
        piece = audio[offset : offset + VAD_PIECE_SAMPLES]
        if is_digital_silence(piece):
            continue
        # Speech longer than a group is cut at its quietest moment (Silero's own rule) near the limit.
        options = VadOptions(max_speech_duration_s=SPEECH_GROUP_SAMPLES / SAMPLE_RATE)
        for found in get_speech_timestamps(as_float32(piece), options):
            start, end = found["start"] + offset, found["end"] + offset
            if chunks and chunks[-1]["end"] >= start:
                chunks[-1]["end"] = max(chunks[-1]["end"], end)
            else:
                chunks.append({"start": start, "end": end})
    return chunks


def is_digital_silence(piece: np.ndarray) -> bool:
    """No sample above dither level (-72 dBFS): Silero finds no speech there, so it need not run
    (three hours of it would take a CPU half a minute)."""
    limit = DIGITAL_SILENCE if piece.dtype == np.int16 else DIGITAL_SILENCE / 32768
    return piece.size == 0 or bool(piece.max() <= limit and piece.min() >= -limit)


def speech_groups(chunks: list[dict[str, int]]) -> list[list[dict[str, int]]]:
    """Consecutive chunks with at most SPEECH_GROUP_SAMPLES of speech each; a longer chunk (speech
    running over a VAD piece boundary) is cut to that size.

    faster-whisper turns all the audio it is given into features at once, about 0.9 MB a second
    of speech (10 GB for three hours): speech is decoded a group at a time, so a request's memory
    no longer grows with its length. Groups meet at a VAD silence, where no word is cut.
    """
    groups: list[list[dict[str, int]]] = []
    size = 0
    limit = SPEECH_GROUP_SAMPLES
    pieces = (
        {"start": start, "end": min(start + limit, chunk["end"])}
        for chunk in chunks
        for start in range(chunk["start"], chunk["end"], limit)
    )
    for chunk in pieces:
        length = chunk["end"] - chunk["start"]
        if not groups or size + length > limit:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += length
    return groups


def gather(audio: np.ndarray, chunks: list[dict[str, int]]) -> np.ndarray:
    """The speech chunks end to end, as float32: the only audio the model sees (as faster-whisper's
    own VAD path feeds it), written once into one array."""
    speech = np.empty(sum(chunk["end"] - chunk["start"] for chunk in chunks), dtype=np.float32)
    position = 0
    for chunk in chunks:
        length = chunk["end"] - chunk["start"]
        as_float32(audio[chunk["start"] : chunk["end"]], out=speech[position : position + length])
        position += length
    return speech


def split_chunks(chunks: list[dict[str, int]], start: int, end: int) -> list[dict[str, int]]:
    """The part of `chunks` (original offsets) that gathered speech samples [start, end) came from."""
    part, position = [], 0
    for chunk in chunks:
        length = chunk["end"] - chunk["start"]
        low, high = max(start, position), min(end, position + length)
        if low < high:
            part.append({"start": chunk["start"] + low - position, "end": chunk["start"] + high - position})
        position += length
    return part


def skips_speech(start: float, end: float, window: list[FasterSegment]) -> bool:
    """Whether `window`, the segments decoded from `start`..`end` s of speech-only audio, leaves a
    stretch without words or has a segment with far too few words for its time."""
    return bool(unsaid(start, end, window)) or any(
        segment.end - segment.start >= SKIPPED_SPEECH_MIN_S
        and word_count([segment]) < (segment.end - segment.start) * SKIPPED_SPEECH_WORDS_PER_S
        for segment in window
    )


def unsaid(start: float, end: float, segments: list[FasterSegment]) -> list[tuple[float, float]]:
    """The stretches of `start`..`end` s that no segment covers, long enough to hold skipped speech."""
    stretches, said_until = [], start
    for segment in segments:
        stretches.append((said_until, segment.start))
        said_until = max(said_until, segment.end)
    stretches.append((said_until, end))
    return [(a, b) for a, b in stretches if SKIPPED_SPEECH_MIN_S <= b - a <= SKIPPED_SPEECH_MAX_S]


def word_count(segments: Iterable[FasterSegment]) -> int:
    return sum(len(segment.text.split()) for segment in segments)


def shifted(segment: FasterSegment, seconds: float) -> FasterSegment:
    """`segment` (decoded from audio starting `seconds` in) on the timeline of the whole audio."""
    words = segment.words and [
        replace(word, start=word.start + seconds, end=word.end + seconds) for word in segment.words
    ]
    return replace(segment, start=segment.start + seconds, end=segment.end + seconds, words=words)


def to_segment(segment: FasterSegment, language: str | None = None) -> Segment:
    words = None
    if segment.words is not None:
        words = [
            Word(word=word.word, start=word.start, end=word.end, probability=word.probability)
            for word in segment.words
        ]
    return Segment(
        id=segment.id,
        seek=segment.seek,
        start=segment.start,
        end=segment.end,
        text=segment.text,
        tokens=list(segment.tokens),
        temperature=segment.temperature if segment.temperature is not None else 0.0,
        avg_logprob=segment.avg_logprob,
        compression_ratio=segment.compression_ratio,
        no_speech_prob=segment.no_speech_prob,
        words=words,
        language=language,
    )


class FasterWhisperEngine:
    """A CTranslate2 WhisperModel. Thread-safe: CTranslate2 runs up to `workers` calls in parallel."""

    name = "faster-whisper"

    def __init__(
        self,
        model_path: Path,
        model_name: str,
        *,
        device: str,
        compute_type: str,
        cpu_threads: int,
        workers: int = 1,
        beam_size: int = 5,
        vad_filter: bool = True,
        condition_on_previous_text: bool = False,
        batch_size: int = 0,
    ) -> None:
        self.model = model_name
        self.model_path = model_path
        self.device = device
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.condition_on_previous_text = condition_on_previous_text
        self.vad_filter = vad_filter
        self.batch_size = batch_size
        self._whisper = WhisperModel(
            str(model_path),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
            local_files_only=True,
        )
        self._batched = BatchedInferencePipeline(self._whisper) if batch_size > 0 else None
        self.multilingual = bool(self._whisper.model.is_multilingual)

    @classmethod
    def from_settings(cls, settings: Settings) -> FasterWhisperEngine:
        resolved = resolve_model(settings)
        device = choose_device(settings.device, ctranslate2.get_cuda_device_count())
        compute_type = choose_compute_type(
            "faster-whisper", device, settings.compute_type, ctranslate2.get_supported_compute_types(device)
        )
        return cls(
            resolved.path,
            resolved.name,
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads or default_cpu_threads(available_cpus()),
            workers=settings.workers,
            beam_size=settings.beam_size,
            condition_on_previous_text=settings.condition_on_previous_text,
            vad_filter=settings.vad_filter,
            batch_size=settings.batch_size,
        )

    def _arguments(self, options: TranscribeOptions) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size or self.beam_size,
            "condition_on_previous_text": self.condition_on_previous_text,
            "initial_prompt": options.prompt or None,
            "word_timestamps": options.word_timestamps,
            # Hotwords go before every window's prompt (faster-whisper keeps their first 223 tokens).
            "hotwords": " ".join(options.keywords) or None,
        }
        if options.temperature is not None:  # otherwise faster-whisper's fallback schedule
            arguments["temperature"] = options.temperature
        return arguments

    def _segments(
        self,
        audio: np.ndarray,
        arguments: dict[str, Any],
        cancel: threading.Event | None,
        hints: tuple[str, ...] | None = None,
    ) -> tuple[Iterator[Decoded], str]:
        """The lazy segment generator and the language; only the VAD runs before it is consumed.

        With `hints` (a multilingual model, no language given) each speech group is cut into runs
        of one language, detected among the hints (`code_switching`), each decoded in its language.
        """
        if self._batched is not None:
            # The batched pipeline cuts the audio into chunks with VAD, so VAD is always on here. Its
            # default, one segment per 30 s chunk without timestamps, lost a third of the words of
            # long audio on tiny.en; with timestamps it loses far fewer
            # (docs/decisions/2026-11-29-no-batched-pipeline-by-default.md).
            segments, info = self._batched.transcribe(
                as_float32(audio),
                batch_size=self.batch_size,
                vad_filter=True,
                without_timestamps=False,
                **arguments,
            )
            return ((segment, None) for segment in segments), info.language
        if not self.vad_filter:
            segments, info = self._whisper.transcribe(as_float32(audio), vad_filter=False, **arguments)
            return ((segment, None) for segment in segments), info.language
        groups = speech_groups(speech_chunks(audio, cancel))
        if not groups:  # no speech at all: nothing to decode
            return iter(()), arguments["language"] or "en"
        if hints is not None:
            return self._by_language(audio, groups, arguments, hints), "en"
        first, language = self._decode_speech(audio, groups[0], arguments)
        # Later groups: the language found in the first, and the prompt only before the first window.
        rest = {**arguments, "language": language, "initial_prompt": None}
        return self._then(first, audio, groups[1:], rest), language

    def _then(
        self,
        first: Iterator[FasterSegment],
        audio: np.ndarray,
        groups: list[list[dict[str, int]]],
        arguments: dict[str, Any],
    ) -> Iterator[Decoded]:
        """The first group's segments, then each next group's, decoded only once they are reached
        (closing this generator closes the one in progress)."""
        yield from ((segment, None) for segment in first)
        for group in groups:
            segments, _ = self._decode_speech(audio, group, arguments)
            yield from ((segment, None) for segment in segments)

    def _by_language(
        self,
        audio: np.ndarray,
        groups: list[list[dict[str, int]]],
        arguments: dict[str, Any],
        hints: tuple[str, ...],
    ) -> Iterator[Decoded]:
        """Each group's runs of one language, each decoded in its own (the prompt before the first)."""
        prompt = arguments["initial_prompt"]
        for group in groups:
            runs = language_runs(gather(audio, group), self._detect_language, hints)
            for start, end, language in runs:
                run = {**arguments, "language": language, "initial_prompt": prompt}
                segments, _ = self._decode_speech(audio, split_chunks(group, start, end), run)
                prompt = None
                yield from ((segment, language) for segment in segments)

    def _detect_language(self, speech: np.ndarray) -> list[tuple[str, float]]:
        return self._whisper.detect_language(audio=speech)[2]

    def _decode_speech(
        self, audio: np.ndarray, chunks: list[dict[str, int]], arguments: dict[str, Any]
    ) -> tuple[Iterator[FasterSegment], str]:
        """One group of speech chunks, decoded with their original timestamps. faster-whisper
        computes the features of everything it is given at once, when called."""
        speech = gather(audio, chunks)
        segments, info = self._whisper.transcribe(speech, vad_filter=False, **arguments)
        redo = {**arguments, "language": info.language, "initial_prompt": None}
        checked = self._redecode_skipped_speech(segments, speech, redo)
        return restore_speech_timestamps(checked, chunks, SAMPLE_RATE), info.language

    def _redecode_skipped_speech(
        self, segments: Iterable[FasterSegment], speech: np.ndarray, arguments: dict[str, Any]
    ) -> Iterator[FasterSegment]:
        """Segments of `speech` as they come, except from a segment that skips speech
        (`skips_speech`) to the end of its window: that stretch, and the end after the last
        window, are decoded again alone (`_checked`).

        faster-whisper can write one short segment over seconds of speech and go on after them: on
        the long-form bench tiny.en wrote "the software." for 7-12 s that held an 11 s sentence (in
        json the segment claims the time; with word timestamps it shrinks to its words and leaves a
        gap before the next). Decoded alone, without the prompt, the stretch gives the sentence.
        A window is known whole once the next one's first segment arrives, so only such a window
        comes a window late; a redo decodes its stretch once and that redo's gaps once, so all redos
        together cost at most twice the audio's decoding again (rare on speech).
        """
        held: list[FasterSegment] = []  # from a segment that skips speech to the end of its window
        said_until = held_until = 0.0
        for segment in segments:
            if held and segment.seek != held[0].seek:
                yield from self._checked(said_until, held_until, held, speech, arguments)
                said_until, held = held_until, []
            end = segment.end  # read now: restore_speech_timestamps moves what it is given
            if held or skips_speech(said_until, end, [segment]):
                held.append(segment)
                held_until = max(held_until, end)
            else:
                yield segment
                said_until = max(said_until, end)
        if held:
            yield from self._checked(said_until, held_until, held, speech, arguments)
            said_until = held_until
        yield from self._checked(said_until, len(speech) / SAMPLE_RATE, [], speech, arguments)

    def _checked(
        self,
        start: float,
        end: float,
        decoded: list[FasterSegment],
        speech: np.ndarray,
        arguments: dict[str, Any],
    ) -> list[FasterSegment]:
        """`decoded`, the segments of `start`..`end` s, or, where it skips speech and decoding again
        finds more words, the stretch decoded again alone with each stretch that leaves unsaid."""
        if not skips_speech(start, end, decoded):
            return decoded
        redone = self._decoded_alone(start, end, speech, arguments)
        for since, until in unsaid(start, end, redone):
            redone += self._decoded_alone(since, until, speech, arguments)
        if word_count(redone) <= word_count(decoded):
            return decoded
        logger.info(
            "decoded %.1f-%.1f s of speech again: %d words where the decoder wrote %d",
            start,
            end,
            word_count(redone),
            word_count(decoded),
        )
        return sorted(redone, key=attrgetter("start"))

    def _decoded_alone(
        self, start: float, end: float, speech: np.ndarray, arguments: dict[str, Any]
    ) -> list[FasterSegment]:
        stretch = speech[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
        segments, _ = self._whisper.transcribe(stretch, vad_filter=False, **arguments)
        return [shifted(segment, start) for segment in segments]

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        *,
        on_segment: SegmentCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        if cancel is not None and cancel.is_set():  # cancelled before it started
            raise TranscriptionCancelled(0)
        # Code-switched audio: a multilingual model without a language detects it run by run.
        per_run = self.multilingual and options.language is None and self._batched is None
        hints = options.language_hints if per_run else None
        generator, language = self._segments(audio, self._arguments(options), cancel, hints)
        # The segments are a lazy generator: consuming it is the inference, one window at a time.
        segments: list[Segment] = []
        try:
            for decoded, run_language in generator:
                if is_repetition_loop(decoded.text):
                    logger.info("dropped a repetition loop at %.1f-%.1f s", decoded.start, decoded.end)
                    continue
                segment = to_segment(decoded, run_language)
                segments.append(segment)
                if on_segment is not None:
                    on_segment(segment)
                if cancel is not None and cancel.is_set():
                    raise TranscriptionCancelled(len(segments))
        finally:
            close = getattr(generator, "close", None)
            if close is not None:  # stop the generator now, not when it is collected
                close()
        return Transcript(
            task=options.task,
            language=(segments[0].language or language) if segments else language,
            duration=len(audio) / SAMPLE_RATE,
            segments=segments,
        )

    def warmup(self) -> None:
        """Before ready: Silero VAD's ONNX session, on 1 s of silence (about 30 ms of CPU).

        The model itself needs no warm-up to serve: the first request without one costs about
        10 % more CPU than the next, less than any decoding warm-up would
        (docs/decisions/2026-11-29-ready-after-vad-warm-up.md).
        """
        self._decode_silence(1, vad_filter=True)

    def background_warmup(self) -> None:
        """On GPU, after ready, while idle: decode 45 s of silence without VAD (two windows, the
        second with a previous-text prompt and a seek), as the GPU benchmarks did before measuring.

        Not on CPU: there its only effect was to raise glibc's dynamic mmap threshold, so that
        CTranslate2's buffers stayed in the heap (10 % less CPU per request for 50 MiB more);
        `python -m whisper_api` now keeps them in the heap from the start, with less memory and
        CPU than the warm-up gave (`keep_large_blocks_in_heap`, docs/decisions/2026-11-29-one-glibc-heap.md).
        """
        if self.device != "cpu":
            self._decode_silence(45, vad_filter=False)

    def _decode_silence(self, seconds: int, *, vad_filter: bool) -> None:
        silence = np.zeros(seconds * SAMPLE_RATE, dtype=np.float32)
        segments, _ = self._whisper.transcribe(
            silence, beam_size=self.beam_size, vad_filter=vad_filter, temperature=0.0, language=None
        )
        for _ in segments:
            pass
