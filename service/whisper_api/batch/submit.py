"""Start a batch run on the stack's Cloud Run Job, follow it, and summarise its manifest (`scripts/batch`).

The run goes through the Cloud Run Admin API (`google-cloud-run`, from requirements/infra.txt) with
the caller's own credentials (`gcloud auth application-default login`); the caller needs the
`whisper:batch.runners` roles. Overrides replace the job's arguments for this run only: input and
output prefixes, formats, task count. Each task writes its manifest part under
`<output>/_manifest/runs/<execution>/`, which the summary reads back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

from whisper_api.batch.manifest import RUNS_DIR, FileRecord, count_statuses, read_records
from whisper_api.batch.storage import GCS_SCHEME, Location

if TYPE_CHECKING:
    from google.cloud.run_v2 import Execution, RunJobRequest

POLL_SECONDS = 15.0
SHOWN_FAILURES = 20


class ExecutionReader(Protocol):
    def get_execution(self, *, name: str) -> Execution: ...


def run_request(
    job: str, input_url: str, output_url: str, worker_flags: Sequence[str], task_count: int | None
) -> RunJobRequest:
    """The RunJob call: the worker's arguments for this run and, optionally, its number of tasks."""
    from google.cloud.run_v2 import RunJobRequest

    for url in (input_url, output_url):
        if not url.startswith(GCS_SCHEME):
            raise ValueError(
                f"{url!r}: a Cloud Run task reads and writes gs://bucket/prefix, not local paths."
            )
    overrides = RunJobRequest.Overrides(
        container_overrides=[
            RunJobRequest.Overrides.ContainerOverride(args=[input_url, output_url, *worker_flags])
        ]
    )
    if task_count is not None:
        overrides.task_count = task_count
    return RunJobRequest(name=job, overrides=overrides)


def execution_id(execution_name: str) -> str:
    """`projects/p/locations/r/jobs/j/executions/j-abc12` → `j-abc12` (CLOUD_RUN_EXECUTION in the tasks)."""
    return execution_name.rsplit("/", 1)[-1]


def follow(
    reader: ExecutionReader,
    name: str,
    out: TextIO,
    poll_seconds: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Execution:
    """Print the tasks' progress whenever it changes, until the execution completes."""
    shown: tuple[int, ...] = ()
    while True:
        execution = reader.get_execution(name=name)
        state = (
            execution.running_count,
            execution.succeeded_count,
            execution.failed_count,
            execution.task_count,
        )
        if state != shown:
            running, succeeded, failed, total = state
            print(f"tasks: {succeeded} succeeded, {failed} failed, {running} running, of {total}", file=out)
            shown = state
        if execution.completion_time:
            return execution
        sleep(poll_seconds)


@dataclass(frozen=True)
class RunReport:
    records: list[FileRecord]
    parts: int

    @property
    def failed(self) -> list[FileRecord]:
        return [record for record in self.records if record.status == "failed"]

    def describe(self) -> str:
        counts = count_statuses(self.records)
        hours = sum(record.duration or 0.0 for record in self.records if record.status == "done") / 3600
        lines = [
            f"{len(self.records)} recording(s) from {self.parts} task(s): {counts['done']} done, "
            f"{counts['skipped']} skipped, {counts['failed']} failed; {hours:.2f} h transcribed"
        ]
        lines += [f"failed: {record.path}: {record.error}" for record in self.failed[:SHOWN_FAILURES]]
        if len(self.failed) > SHOWN_FAILURES:
            lines.append(f"... and {len(self.failed) - SHOWN_FAILURES} more (see the manifest)")
        return "\n".join(lines)


def read_run(output: Location, run_id: str) -> RunReport:
    """Every manifest part of one run. When Cloud Run retried a task, a recording that an earlier
    attempt finished counts as done (the retry lists it as skipped); otherwise the last attempt counts."""
    prefix = f"{RUNS_DIR}/{run_id}/"
    parts = [item.path for item in output.list() if item.path.startswith(prefix)]
    by_path: dict[str, FileRecord] = {}
    for part in sorted(parts, key=_attempt_order):
        for record in read_records(output.read(part).decode()):
            earlier = by_path.get(record.path)
            if earlier is None or not (earlier.status == "done" and record.status == "skipped"):
                by_path[record.path] = record
    tasks = {_attempt_order(part)[0] for part in parts}
    return RunReport(sorted(by_path.values(), key=lambda record: record.path), len(tasks))


def _attempt_order(part: str) -> tuple[str, int]:
    """`…/task-00001-of-00004.attempt-2.jsonl` → (`task-00001-of-00004`, 2); no attempt suffix is 0."""
    task, _, rest = part.rsplit("/", 1)[-1].partition(".")
    return task, int(rest.removeprefix("attempt-").split(".")[0]) if rest.startswith("attempt-") else 0


def start(request: RunJobRequest) -> str:
    """Run the job; the execution's full name (the call returns once the execution exists)."""
    from google.cloud.run_v2 import JobsClient

    operation = JobsClient().run_job(request=request)
    metadata = operation.metadata
    return str(metadata.name if metadata is not None and metadata.name else operation.result().name)
