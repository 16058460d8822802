"""The batch worker: every recording under one location → transcripts under another.

Each input goes through the path a request takes (`audio.decode_audio` → the gate,
`audio.silence_non_speech` → `Engine.transcribe` → `pipeline.render_text`, with the pipeline's
memory release after long audio), so a file gets the same transcript, and a bad file the same
message, as from the API. Transcripts mirror the input's relative path with the format's suffix
appended (`calls/a.mp3` → `calls/a.mp3.verbose.json`, `calls/a.mp3.srt`), so that `a.mp3` and
`a.wav` never collide. A name that is not UTF-8 is read by
its exact bytes and its outputs are named in text (`caf\\xe9.wav.srt`, see names); a recording
whose outputs would take the names of another's (a file really named `caf\\xe9.wav` beside it)
fails as `name_collision` without being read (see `plan`). The next file is decoded while the
current one is transcribed: at most two decoded recordings are in memory at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import PurePosixPath

import numpy as np
from pydantic import BaseModel, Field

from whisper_api.audio import (
    ACCEPTED_EXTENSIONS,
    SAMPLE_RATE,
    AudioError,
    decode_audio,
    probe_audio,
    silence_non_speech,
)
from whisper_api.batch.manifest import (
    JSON_MEDIA_TYPE,
    MANIFEST_DIR,
    SINGLE_TASK,
    FileRecord,
    ManifestPart,
    Shard,
    done_marker,
    manifest_part,
    record_identity,
    unusable_record,
)
from whisper_api.batch.names import fitting_name, raw_name, shown_name
from whisper_api.batch.storage import Location, StorageError, StoredFile, is_safe_path, relative_location
from whisper_api.diarization import load_diarizer
from whisper_api.diarization.diarizer import Diarizer
from whisper_api.diarization.speakers import rttm
from whisper_api.engines.base import Engine, TranscriptionCancelled
from whisper_api.pipeline import (
    DiarizationRequest,
    release_memory_after,
    render_text,
    stereo_channels,
    with_speakers,
    without_speech,
)
from whisper_api.schemas import ResponseFormat, Segment, TranscribeOptions, Transcript
from whisper_api.settings import Settings

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = tuple(f".{extension}" for extension in ACCEPTED_EXTENSIONS)
OUTPUT_SUFFIXES: dict[ResponseFormat, str] = {
    "json": ".json",
    "verbose_json": ".verbose.json",
    "text": ".txt",
    "srt": ".srt",
    "vtt": ".vtt",
    "diarized_json": ".diarized.json",
}
# With diarized_json, the speaker turns also go to NIST RTTM (what diarization tools read).
RTTM_SUFFIX = ".rttm"
DEFAULT_FORMATS: tuple[ResponseFormat, ...] = ("verbose_json", "srt")
FLUSH_INTERVAL_S = 10.0


class BatchJob(BaseModel):
    """What to make of every input: the formats to write and the options a request would send."""

    formats: tuple[ResponseFormat, ...] = Field(DEFAULT_FORMATS, min_length=1)
    options: TranscribeOptions = Field(default_factory=TranscribeOptions)
    force: bool = Field(False, description="Transcribe inputs whose transcripts are already there.")

    @property
    def diarize(self) -> bool:
        return "diarized_json" in self.formats

    def output_paths(self, path: str) -> list[str]:
        """Every file this input gets, in the order they are written (its done marker aside)."""
        paths = [fitting_name(path, OUTPUT_SUFFIXES[response_format]) for response_format in self.formats]
        return [*paths, fitting_name(path, RTTM_SUFFIX)] if self.diarize else paths


def owns(shard: Shard, path: str) -> bool:
    """Whether `path` belongs to this task: a hash of the path alone, so that every task agrees
    even when files are added while tasks start at different times (no overlaps, no gaps)."""
    return int.from_bytes(sha256(raw_name(path)).digest()[:8], "big") % shard.count == shard.index


@dataclass(frozen=True)
class Plan:
    """The task's share of the inputs, split into what to transcribe and what is already done."""

    todo: list[StoredFile]
    skipped: list[StoredFile]
    ignored: int  # files under the input that are not recordings (by suffix)
    unusable: list[StoredFile] = field(default_factory=list)  # entries that are not readable files
    # Recordings whose outputs would take another's names, each with the one that keeps them.
    collisions: list[tuple[StoredFile, StoredFile]] = field(default_factory=list)


def plan(inputs: Location, outputs: Location, shard: Shard, job: BatchJob) -> Plan:
    """The task's share, sorted by path.

    Outputs are named after an input's name as text, so two inputs can ask for the same outputs:
    b"caf\\xe9.wav" (not UTF-8) and a file really named `caf\\xe9.wav`. Of such inputs, one keeps
    the outputs: the one whose done marker for its current version is there and was written for
    it (so a rerun never hands another's finished transcripts over), else the first by the bytes
    of its name (the one spelling the escapes in plain text). The others are `collisions`, never
    read nor written. Every task looks at all inputs for this, so that all agree.
    """
    recordings: list[StoredFile] = []
    unusable: list[StoredFile] = []
    ignored = 0
    for item in _without_outputs(list(inputs.list()), relative_location(inputs, outputs)):
        if item.unusable is not None:
            if owns(shard, item.path):
                unusable.append(item)
        elif not item.path.lower().endswith(AUDIO_SUFFIXES):
            ignored += 1
        else:
            recordings.append(item)
    groups = _sharing_outputs(recordings, job)
    existing = set() if job.force and not groups else {stored.path for stored in outputs.list()}
    colliding = {item.path for group in groups for item in group}
    keepers: dict[str, StoredFile] = {}  # a colliding recording's path → the one that keeps the outputs
    committed: set[str] = set()  # colliding recordings whose done marker is their own
    for group in groups:
        own = [item for item in group if _marker_is_own(outputs, existing, item)]
        committed.update(item.path for item in own)
        keeper = own[0] if own else group[0]
        keepers.update((item.path, keeper) for item in group if item is not keeper)
    mine = sorted((item for item in recordings if owns(shard, item.path)), key=lambda item: item.path)
    todo: list[StoredFile] = []
    skipped: list[StoredFile] = []
    collisions: list[tuple[StoredFile, StoredFile]] = []
    for item in mine:
        if item.path in keepers:
            collisions.append((item, keepers[item.path]))
            continue
        finished = (
            not job.force
            and done_marker(item.path, item.version) in existing
            and all(path in existing for path in job.output_paths(item.path))
            and (item.path not in colliding or item.path in committed)
        )
        (skipped if finished else todo).append(item)
    return Plan(todo, skipped, ignored, unusable, collisions)


def _sharing_outputs(recordings: list[StoredFile], job: BatchJob) -> list[list[StoredFile]]:
    """The groups of two or more recordings with the same outputs, each sorted by name bytes."""
    by_outputs: dict[tuple[str, ...], list[StoredFile]] = {}
    for item in recordings:
        by_outputs.setdefault(tuple(job.output_paths(item.path)), []).append(item)
    return [
        sorted(group, key=lambda item: raw_name(item.path)) for group in by_outputs.values() if len(group) > 1
    ]


def _marker_is_own(outputs: Location, existing: set[str], item: StoredFile) -> bool:
    """Whether `item`'s done marker is there and was written for `item` (colliding names share
    their marker's name when their versions are the same)."""
    marker = done_marker(item.path, item.version)
    if marker not in existing:
        return False
    try:
        return FileRecord.model_validate_json(outputs.read(marker)).name_bytes == raw_name(item.path)
    except Exception:  # unreadable or not a record: not known to be its own
        logger.warning("done marker %s could not be read", marker, exc_info=True)
        return False


def _without_outputs(listed: list[StoredFile], output: str | None) -> list[StoredFile]:
    """The input's entries less what batch runs wrote there when OUTPUT lies inside INPUT (its
    whole folder), or is INPUT (the manifest and the transcripts of the recordings listed)."""
    if output is None:
        return listed
    if output:
        return [item for item in listed if item.path != output and not item.path.startswith(f"{output}/")]
    written = {
        fitting_name(item.path, suffix)
        for item in listed
        if item.path.lower().endswith(AUDIO_SUFFIXES)
        for suffix in (*OUTPUT_SUFFIXES.values(), RTTM_SUFFIX)
    }
    return [
        item for item in listed if item.path not in written and not item.path.startswith(f"{MANIFEST_DIR}/")
    ]


@dataclass
class Summary:
    """What one task did; `exit_code` is 0 only when every input of its share has its transcripts."""

    manifest: str
    done: int = 0
    failed: int = 0
    skipped: int = 0
    ignored: int = 0
    unusable: int = 0  # entries that are not readable files: skipped, with their reason
    planned: int = 0  # every entry of the task's share: recordings and unusable entries
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0  # the whole task, model load included
    model_load_seconds: float = 0.0
    interrupted: bool = False
    failures: list[FileRecord] = field(default_factory=list)
    unusable_entries: list[FileRecord] = field(default_factory=list)

    @property
    def not_reached(self) -> int:
        return self.planned - self.done - self.failed - self.skipped - self.unusable

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def describe(self) -> str:
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        counts = [f"{self.done} done", f"{self.skipped} skipped (already done)", f"{self.failed} failed"]
        if self.unusable:
            counts.append(f"{self.unusable} skipped (not a readable file)")
        if self.not_reached or self.interrupted:
            counts.append(f"{self.not_reached} not reached")
        lines = [
            f"{self.planned} recording(s): {', '.join(counts)}; {self.audio_seconds / 3600:.2f} h of audio "
            f"in {self.wall_seconds:.1f} s ({speed:.1f} audio s per wall s; "
            f"model load {self.model_load_seconds:.1f} s of it)",
            f"manifest: {self.manifest}",
        ]
        if self.ignored:
            lines.append(f"{self.ignored} file(s) ignored: not {', '.join(ACCEPTED_EXTENSIONS)}")
        if self.interrupted:
            lines.append("interrupted: rerun the same command to resume")
        lines += [f"failed: {record.path}: {record.error}" for record in self.failures]
        lines += [f"skipped: {record.path}: {record.error}" for record in self.unusable_entries]
        return "\n".join(lines)


class _Failure(Exception):
    """An input that could not be transcribed, with the message and code for its manifest line."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Decoded:
    """A recording's samples and the seconds decoding took; the samples are handed over once, so
    that the decode-ahead future does not keep them alive after the transcription."""

    samples: np.ndarray | None
    seconds: float
    channels: int
    speech_s: float  # what the gate left that may be speech (0: answered without inference)

    def take(self) -> np.ndarray:
        samples, self.samples = self.samples, None
        assert samples is not None, "the samples were already taken"
        return samples


class BatchRunner:
    """Runs one task's share: plan, then decode → transcribe → write, one recording at a time."""

    def __init__(
        self,
        inputs: Location,
        outputs: Location,
        job: BatchJob,
        settings: Settings,
        load_engine: Callable[[], Engine],
        *,
        shard: Shard = SINGLE_TASK,
        run_id: str,
        cancel: threading.Event | None = None,
        progress: bool | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.job = job
        self.settings = settings
        self._load_engine = load_engine
        self._engine: Engine | None = None
        self._diarizer: Diarizer | None = None
        self.model_load_seconds = 0.0
        self.shard = shard
        self.cancel = cancel or threading.Event()
        self.progress = progress
        self.manifest = ManifestPart(outputs, manifest_part(run_id, shard), flush_interval_s)
        self.granularities = frozenset({"segment", "word"} if job.options.word_timestamps else {"segment"})
        self.summary: Summary | None = None  # once the inputs are listed; what an interrupt reports
        # Speakers are put on words: with diarized_json the engine gives word timestamps, whichever
        # granularity verbose_json shows.
        self.options = (
            job.options.model_copy(update={"word_timestamps": True}) if job.diarize else job.options
        )

    @property
    def diarizer(self) -> Diarizer:
        """Loaded with the engine, on the first recording (main checked that the graph exists)."""
        if self._diarizer is None:
            diarizer = load_diarizer(self.settings.diarization_model)
            if diarizer is None:
                raise _Failure("diarized_json needs WHISPER_DIARIZATION_MODEL.", "diarization_unavailable")
            self._diarizer = diarizer
        return self._diarizer

    @property
    def engine(self) -> Engine:
        """Loaded on the first recording that decodes: a task with nothing to do never loads a model."""
        if self._engine is None:
            started = time.perf_counter()
            self._engine = self._load_engine()
            self.model_load_seconds = time.perf_counter() - started
        return self._engine

    def run(self) -> Summary:
        started = time.perf_counter()
        try:
            # Written first: an output the task cannot write fails it before any work is done.
            self.manifest.flush(started)
            work = plan(self.inputs, self.outputs, self.shard, self.job)
        except StorageError:
            raise
        except Exception as error:  # no such bucket, no permission: the message names which
            raise StorageError(
                f"{self.inputs.url} → {self.outputs.url}: {type(error).__name__}: {error}"
            ) from error
        summary = Summary(
            shown_name(self.outputs.url_of(self.manifest.name)),
            ignored=work.ignored,
            planned=len(work.todo) + len(work.skipped) + len(work.unusable) + len(work.collisions),
        )
        self.summary = summary
        for entry in work.unusable:
            self._record(summary, unusable_record(entry, self.shard.index))
        for item, keeper in work.collisions:
            self._record(summary, self._collision(item, keeper))
        for item in work.skipped:
            self._record(summary, FileRecord(**self._identity(item), status="skipped", reason="already_done"))
        try:
            self._transcribe_all(work.todo, summary)
        finally:
            summary.wall_seconds = time.perf_counter() - started
            summary.model_load_seconds = self.model_load_seconds
            summary.interrupted = self.cancel.is_set()
            self.manifest.flush(time.perf_counter())
        return summary

    def _transcribe_all(self, todo: list[StoredFile], summary: Summary) -> None:
        bar = _ProgressBar(todo, self.progress)
        decoder = ThreadPoolExecutor(1, thread_name_prefix="batch-decode")
        try:
            for item, decoding in _decode_ahead(decoder, todo, self._decode):
                if self.cancel.is_set():
                    break
                record = self._process(item, decoding, bar)
                if self.cancel.is_set() and record.status != "done":
                    break  # stopped mid-file: the rerun does this one again
                self._record(summary, record)
                bar.advance(item, record)
        finally:
            decoder.shutdown(wait=True, cancel_futures=True)
            bar.close()

    def _process(self, item: StoredFile, decoding: Future[Decoded], progress: _ProgressBar) -> FileRecord:
        identity = self._identity(item)
        duration = None
        try:
            decoded = decoding.result()
            audio = decoded.take()
            duration = audio.shape[0] / SAMPLE_RATE
            started = time.perf_counter()
            try:
                if decoded.speech_s == 0:
                    transcript = without_speech(self.options, duration, diarized=self.job.diarize)
                else:
                    transcript = self.engine.transcribe(
                        audio, self.options, on_segment=progress.on_segment(duration), cancel=self.cancel
                    )
                if self.job.diarize and decoded.speech_s > 0:
                    channel = stereo_channels(
                        lambda: self.inputs.open(item), decoded.channels, self.settings.max_audio_seconds
                    )
                    transcript = with_speakers(
                        self.diarizer, audio, transcript, DiarizationRequest(), self.cancel, channel
                    )
            finally:
                del audio
                release_memory_after(duration)
            record = FileRecord(
                **identity,
                status="done",
                duration=duration,
                timings={
                    "decode": round(decoded.seconds, 3),
                    "transcribe": round(time.perf_counter() - started, 3),
                },
                outputs=self.job.output_paths(item.path),
                engine=self.engine.name,
                model=self.engine.model,
            )
            started = time.perf_counter()
            self._write(item, transcript, record)
            record.timings["write"] = round(time.perf_counter() - started, 3)
            return record
        except TranscriptionCancelled:
            return FileRecord(**identity, status="failed", error="Interrupted.", error_code="cancelled")
        except _Failure as failure:
            logger.warning("failed: %s: %s", shown_name(item.path), failure)
            return FileRecord(
                **identity, status="failed", error=str(failure), error_code=failure.code, duration=duration
            )
        # The engine, or storage beyond its retries: this recording fails, the run goes on.
        except Exception as error:
            logger.exception("failed: %s", shown_name(item.path))
            return FileRecord(
                **identity,
                status="failed",
                error=f"Transcription failed ({type(error).__name__}: {error}).",
                error_code="server_error",
                duration=duration,
            )

    def _decode(self, item: StoredFile) -> Decoded:
        started = time.perf_counter()
        if not is_safe_path(item.path):
            raise _Failure(
                "The name is not a plain relative path (an empty, '.' or '..' part, or a '.' or '..' "
                "between backslashes); rename the recording.",
                "invalid_name",
            )
        try:
            with self.inputs.open(item) as stream:  # streamed: the file itself is never held whole
                # Only diarization reads the channels apart (a stereo call's parties).
                channels = (
                    probe_audio(stream, self.settings.max_audio_seconds).channels if self.job.diarize else 1
                )
                audio = decode_audio(stream, self.settings.max_audio_seconds)
            speech_s = silence_non_speech(audio)  # as the API: what cannot be speech is not decoded
        except AudioError as error:
            raise _Failure(str(error), error.code) from error
        except Exception as error:
            raise _Failure(
                f"The recording could not be read from storage ({type(error).__name__}: {error}).",
                "storage_error",
            ) from error
        return Decoded(audio, time.perf_counter() - started, channels, speech_s)

    def _write(self, item: StoredFile, transcript: Transcript, record: FileRecord) -> None:
        """Every transcript first, then the done marker (the record): the marker commits the input."""
        for response_format, path in zip(self.job.formats, record.outputs, strict=False):
            rendered = render_text(transcript, response_format, self.granularities)
            self.outputs.write(path, rendered.body.encode(), rendered.media_type)
        if self.job.diarize and transcript.speakers is not None:
            turns = rttm(transcript.speakers.turns, PurePosixPath(shown_name(item.path)).name)
            rttm_path = record.outputs[-1]  # output_paths puts the RTTM last
            self.outputs.write(rttm_path, turns.encode(), "text/plain; charset=utf-8")
        marker = record.model_dump_json().encode()
        self.outputs.write(done_marker(item.path, item.version), marker, JSON_MEDIA_TYPE)

    def _identity(self, item: StoredFile) -> dict[str, object]:
        return record_identity(item, self.shard.index)

    def _collision(self, item: StoredFile, keeper: StoredFile) -> FileRecord:
        """The failed line of a recording whose outputs `keeper` has (see `plan`)."""
        message = (
            f"Another recording, {raw_name(keeper.path)!r}, has the same output names "
            f"({self.job.output_paths(keeper.path)[0]}, ...) and keeps them (a name that is not UTF-8 "
            "is written with \\xNN escapes): rename one of the two."
        )
        logger.warning("failed: %s: %s", shown_name(item.path), message)
        return FileRecord(**self._identity(item), status="failed", error=message, error_code="name_collision")

    def _record(self, summary: Summary, record: FileRecord) -> None:
        self.manifest.add(record, time.perf_counter())
        if record.status == "done":
            summary.done += 1
            summary.audio_seconds += record.duration or 0.0
        elif record.reason == "already_done":
            summary.skipped += 1
        elif record.status == "skipped":
            summary.unusable += 1
            summary.unusable_entries.append(record)
        else:
            summary.failed += 1
            summary.failures.append(record)


def _decode_ahead(
    decoder: ThreadPoolExecutor, todo: list[StoredFile], decode: Callable[[StoredFile], Decoded]
) -> Iterator[tuple[StoredFile, Future[Decoded]]]:
    """Each item with its decoding, the next item's decoding already started."""
    items = iter(todo)
    pending: deque[tuple[StoredFile, Future[Decoded]]] = deque()
    while True:
        while len(pending) < 2 and (item := next(items, None)) is not None:
            pending.append((item, decoder.submit(decode, item)))
        if not pending:
            return
        yield pending.popleft()


class _ProgressBar:
    """Files, hours of audio and an ETA (by bytes, the only size known before decoding) on stderr."""

    def __init__(self, todo: list[StoredFile], enabled: bool | None) -> None:
        from tqdm import tqdm

        self.files = len(todo)
        self.finished = 0
        self.audio_seconds = 0.0
        self.bar = tqdm(
            total=sum(item.size for item in todo),
            unit="B",
            unit_scale=True,
            disable=None if enabled is None else not enabled,  # None: only on a terminal
            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}{postfix}",
        )
        self._describe()

    def _describe(self) -> None:
        self.bar.set_description_str(
            f"{self.finished}/{self.files} files, {self.audio_seconds / 3600:.2f} h audio", refresh=False
        )

    def on_segment(self, duration: float) -> Callable[[Segment], None]:
        """Shows how far into the current recording the engine is: hours-long files move the bar."""

        def show(segment: Segment) -> None:
            self.bar.set_postfix_str(f"current file {segment.end / 60:.1f}/{duration / 60:.1f} min")

        return show

    def advance(self, item: StoredFile, record: FileRecord) -> None:
        self.finished += 1
        if record.status == "done":
            self.audio_seconds += record.duration or 0.0
        self._describe()
        self.bar.update(item.size)

    def close(self) -> None:
        self.bar.close()


__all__ = ["DEFAULT_FORMATS", "MANIFEST_DIR", "OUTPUT_SUFFIXES", "BatchJob", "BatchRunner", "Summary", "plan"]
