"""What a batch run records under `<output>/_manifest/`.

- `runs/<run>/task-00000-of-00004.jsonl`: one line per input of the task's share, in the order
  processed (`done`, `failed` or `skipped`), rewritten atomically as the task goes; a Cloud Run
  retry of the task writes its own `.attempt-N` part beside it. A skipped line says why
  (`reason`): already done, or an entry that is not a readable file.
- `done/<input path>@<version>.json`: the commit point of one input, written after all of its
  transcripts. A rerun skips an input when this marker exists for the input's current version and
  its transcripts are all there; an interrupted run loses only the input it was working on.

A name that is not UTF-8 is transcribed like any other. It is recorded as text with its
undecodable bytes as `\\xNN` escapes (`path`) and exactly, as base64 of its bytes (`path_bytes`);
its transcripts and done marker are named after that text (see names).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from whisper_api.batch.names import encoded_name, fitting_name, shown_name
from whisper_api.batch.storage import UNUSABLE_MESSAGES, Location, StoredFile, Unusable

MANIFEST_DIR = "_manifest"
DONE_DIR = f"{MANIFEST_DIR}/done"
RUNS_DIR = f"{MANIFEST_DIR}/runs"
JSONL_MEDIA_TYPE = "application/x-ndjson"
JSON_MEDIA_TYPE = "application/json"

Status = Literal["done", "failed", "skipped"]
SkipReason = Literal["already_done"] | Unusable


class FileRecord(BaseModel):
    """One input's outcome: a line of the manifest."""

    path: str = Field(
        description="The input's path relative to the input location; bytes that are not UTF-8 as \\xNN."
    )
    path_bytes: str | None = Field(
        None, description="The path's exact bytes in base64, only when the path is not UTF-8."
    )
    size: int = Field(description="Bytes.")
    version: str = Field(description="GCS generation, or the local file's mtime in nanoseconds.")
    status: Status
    reason: SkipReason | None = Field(None, description="Why it was skipped.")
    error: str | None = Field(None, description="Why it failed (in the API's words) or was skipped.")
    error_code: str | None = Field(None, description="The API's error code, e.g. invalid_audio.")
    duration: float | None = Field(None, description="Seconds of audio.")
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per step.")
    outputs: list[str] = Field(default_factory=list, description="Transcripts, relative to the output.")
    engine: str | None = None
    model: str | None = None
    task: int = 0
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def name_bytes(self) -> bytes:
        """The input's name exactly as the file system has it."""
        return base64.b64decode(self.path_bytes) if self.path_bytes is not None else self.path.encode()


@dataclass(frozen=True)
class Shard:
    """This task's share of the inputs (Cloud Run's CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT)."""

    index: int = 0
    count: int = 1
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"task index {self.index} is not within a task count of {self.count}")
        if self.attempt < 0:
            raise ValueError(f"task attempt {self.attempt} is negative")


SINGLE_TASK = Shard()


def record_identity(item: StoredFile, task: int) -> dict[str, object]:
    """What every manifest line of `item` starts with: its name (as text, and exactly when it is
    not UTF-8), size, version and task."""
    return {
        "path": shown_name(item.path),
        "path_bytes": encoded_name(item.path),
        "size": item.size,
        "version": item.version,
        "task": task,
    }


def unusable_record(item: StoredFile, task: int) -> FileRecord:
    """The manifest line of an entry that is not a readable file."""
    assert item.unusable is not None
    return FileRecord(
        **record_identity(item, task),
        status="skipped",
        reason=item.unusable,
        error=UNUSABLE_MESSAGES[item.unusable],
    )


def done_marker(path: str, version: str) -> str:
    return f"{DONE_DIR}/{fitting_name(path, f'@{version}.json')}"


def manifest_part(run_id: str, shard: Shard) -> str:
    retry = f".attempt-{shard.attempt}" if shard.attempt else ""
    return f"{RUNS_DIR}/{run_id}/task-{shard.index:05d}-of-{shard.count:05d}{retry}.jsonl"


class ManifestPart:
    """A task's manifest part: kept in memory, rewritten whole and atomically by `flush`.

    Rewriting (not appending) works the same on a folder and on GCS, whose objects cannot be
    appended to; flushing at most every `flush_interval_s` respects GCS's one write per second
    per object.
    """

    def __init__(self, location: Location, name: str, flush_interval_s: float) -> None:
        self.location = location
        self.name = name
        self.flush_interval_s = flush_interval_s
        self.records: list[FileRecord] = []
        self._flushed_at = float("-inf")
        self._lock = threading.Lock()  # an interrupted run's last flush may come from another thread

    def add(self, record: FileRecord, now: float) -> None:
        self.records.append(record)
        if now - self._flushed_at >= self.flush_interval_s:
            self.flush(now)

    def flush(self, now: float) -> None:
        with self._lock:
            body = "".join(record.model_dump_json() + "\n" for record in list(self.records))
            self.location.write(self.name, body.encode(), JSONL_MEDIA_TYPE)
            self._flushed_at = now


def read_records(text: str) -> list[FileRecord]:
    return [FileRecord.model_validate(json.loads(line)) for line in text.splitlines() if line.strip()]


def count_statuses(records: Iterable[FileRecord]) -> Counter[str]:
    return Counter(record.status for record in records)
