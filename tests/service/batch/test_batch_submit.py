"""scripts/batch's parts: the RunJob request, following an execution, and the run's manifest summary
(read from a real GCS API server, written by real worker runs). Only Cloud Run's API is stood in for."""

from __future__ import annotations

import io

import pytest
from google.cloud.run_v2 import Execution, RunJobRequest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support.gcs import run_task, upload_fixtures
from whisper_api.batch.manifest import Shard
from whisper_api.batch.storage import open_location
from whisper_api.batch.submit import execution_id, follow, read_run, run_request

JOB = "projects/p/locations/us-central1/jobs/whisper-batch"


def test_a_run_overrides_the_workers_arguments_and_task_count() -> None:
    request = run_request(JOB, "gs://in/calls", "gs://out/calls", ["--formats=srt", "--force"], 8)
    assert isinstance(request, RunJobRequest)
    assert request.name == JOB
    [override] = request.overrides.container_overrides
    assert list(override.args) == ["gs://in/calls", "gs://out/calls", "--formats=srt", "--force"]
    assert request.overrides.task_count == 8
    assert "task_count" not in RunJobRequest.to_dict(run_request(JOB, "gs://a", "gs://b", [], None))[
        "overrides"
    ] or (run_request(JOB, "gs://a", "gs://b", [], None).overrides.task_count == 0)


def test_a_cloud_run_task_cannot_read_a_local_folder() -> None:
    with pytest.raises(ValueError, match="not local paths"):
        run_request(JOB, "recordings/", "gs://out", [], None)


class Executions:
    """Cloud Run's executions.get, answering from a script of states."""

    def __init__(self, states: list[Execution]) -> None:
        self.states = states
        self.asked: list[str] = []

    def get_execution(self, *, name: str) -> Execution:
        self.asked.append(name)
        return self.states.pop(0)


def test_following_prints_each_change_until_the_execution_completes() -> None:
    done = Timestamp(seconds=1_800_000_000)
    executions = Executions(
        [
            Execution(task_count=2, running_count=2),
            Execution(task_count=2, running_count=2),
            Execution(task_count=2, running_count=1, succeeded_count=1),
            Execution(task_count=2, succeeded_count=1, failed_count=1, completion_time=done),
        ]
    )
    out = io.StringIO()
    final = follow(executions, f"{JOB}/executions/whisper-batch-x1", out, sleep=lambda _: None)
    assert final.failed_count == 1
    assert out.getvalue().splitlines() == [
        "tasks: 0 succeeded, 0 failed, 2 running, of 2",
        "tasks: 1 succeeded, 0 failed, 1 running, of 2",
        "tasks: 1 succeeded, 1 failed, 0 running, of 2",
    ]
    assert execution_id(executions.asked[0]) == "whisper-batch-x1"


def test_the_summary_reads_every_tasks_manifest_part_and_counts_a_retried_task_once(
    gcs, make_bucket, engines
) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    upload_fixtures(gcs, source, {"a/1.wav": "short.wav", "b/2.wav": "short.wav", "c/bad.mp3": b"nope"})
    run_id = "whisper-batch-x1"
    for shard in (Shard(0, 2), Shard(1, 2), Shard(0, 2, attempt=1), Shard(1, 2, attempt=1)):
        run_task(engines, f"gs://{source}", f"gs://{target}/out", shard=shard, run_id=run_id)

    report = read_run(open_location(f"gs://{target}/out"), run_id)

    assert report.parts == 2
    assert {(record.path, record.status) for record in report.records} == {
        ("a/1.wav", "done"),
        ("b/2.wav", "done"),
        ("c/bad.mp3", "failed"),
    }
    text = report.describe()
    assert text.startswith("3 recording(s) from 2 task(s): 2 done, 0 skipped, 1 failed")
    assert "failed: c/bad.mp3: The file could not be decoded as audio" in text
