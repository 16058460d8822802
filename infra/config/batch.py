"""`whisper:batch`: batch transcription on Cloud Run Jobs (infra/batch.py), off unless the key is set."""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.config.cloud_run import MAX_GPU_TASK_TIMEOUT_SECONDS, MAX_TASK_COUNT, MAX_TASK_RETRIES
from infra.config.keys import BATCH_KEYS, NAMESPACE
from infra.config.reader import Reader

MAX_RETENTION_DAYS = 36500
_BUCKET = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class BatchConfig:
    """Batch transcription: an input and an output bucket and a Cloud Run Job on the service's image."""

    input_bucket: str
    output_bucket: str
    create_input_bucket: bool = True  # False: `inputBucket` names a bucket that exists already
    task_count: int = 1
    parallelism: int = 1  # read as min(taskCount, maxInstances) when unset
    max_retries: int = 1
    task_timeout_seconds: int = MAX_GPU_TASK_TIMEOUT_SECONDS
    input_retention_days: int = 0  # 0: recordings are kept until deleted
    output_retention_days: int = 30
    runners: tuple[str, ...] = ()
    service_account: str | None = None  # an existing account's e-mail; None: the stack makes `<name>-job`
    # Not the service's setting: a retried task needs no second zone, which costs more and has its own quota.
    zonal_redundancy: bool = False
    diarize: bool = False  # every run also writes diarized_json and RTTM speaker turns


DEFAULTS = BatchConfig(input_bucket="", output_bucket="")


def read_batch(
    r: Reader, project: str, service_name: str, max_instances: int, gpu_quota: int | None = None
) -> BatchConfig | None:
    batch = r.section("batch", "enabled", "true")
    enabled = batch.get("enabled", True) if batch is not None else False
    if batch is None or enabled in (False, "false"):
        return None
    key = batch.key
    batch.unknown_keys(BATCH_KEYS)
    if enabled not in (True, "true"):
        r.fail(f"{key}.enabled {enabled!r} is not true or false — {batch.fix('enabled', 'true')}")

    task_count = batch.whole(
        "taskCount",
        DEFAULTS.task_count,
        MAX_TASK_COUNT,
        "tasks per run, each with its share of the inputs",
        1,
    )
    parallelism = batch.whole(
        "parallelism", min(task_count, max_instances), MAX_TASK_COUNT, "tasks at once", 1
    )
    if gpu_quota is not None and max_instances + parallelism > gpu_quota:
        r.fail(
            f"{key}.parallelism {parallelism} and {NAMESPACE}:maxInstances {max_instances} need "
            f"{max_instances + parallelism} L4s at once, over {NAMESPACE}:gpuQuota {gpu_quota}: each task "
            "holds an L4 next to the service's instances, from the same regional quota — "
            f"{batch.fix('parallelism', max(gpu_quota - max_instances, 1))} (or request more quota)"
        )
    elif gpu_quota is None and parallelism > max_instances:
        r.fail(
            f"{key}.parallelism {parallelism} exceeds {NAMESPACE}:maxInstances {max_instances}: each task "
            f"holds an L4 on top of the service's up to {max_instances}, from the same regional quota, so "
            f"the stack may need {max_instances + parallelism} at once — "
            f"{batch.fix('parallelism', max_instances)} (or state the quota: "
            f"pulumi config set {NAMESPACE}:gpuQuota <L4 quota in the region>)"
        )
    max_retries = batch.whole(
        "maxRetries", DEFAULTS.max_retries, MAX_TASK_RETRIES, "retries of a failed task"
    )
    timeout = batch.whole(
        "taskTimeoutSeconds",
        DEFAULTS.task_timeout_seconds,
        MAX_GPU_TASK_TIMEOUT_SECONDS,
        "GPU tasks: 1 h at most",
        1,
    )
    input_days = batch.whole(
        "inputRetentionDays",
        DEFAULTS.input_retention_days,
        MAX_RETENTION_DAYS,
        "days until recordings are deleted; 0 keeps them",
    )
    output_days = batch.whole(
        "outputRetentionDays",
        DEFAULTS.output_retention_days,
        MAX_RETENTION_DAYS,
        "days until transcripts are deleted; 0 keeps them",
    )

    prefix = str(batch.get("bucketPrefix") or f"{project}-{service_name}")
    output_bucket = f"{prefix}-batch-out"
    if not _valid_bucket(output_bucket):
        r.fail(
            f"{key}.bucketPrefix {prefix!r} makes the bucket name {output_bucket!r}, which is not valid "
            "(3-63 lowercase letters, digits and hyphens, globally unique) — "
            f"{batch.fix('bucketPrefix', 'acme-whisper')}"
        )
    input_bucket = str(batch.get("inputBucket") or "")
    if input_bucket and not _valid_bucket(input_bucket):
        r.fail(
            f"{key}.inputBucket {input_bucket!r} is not a bucket name — {batch.fix('inputBucket', 'bucket')}"
        )
    if input_bucket and input_days:
        r.fail(
            f"{key}.inputRetentionDays applies to the input bucket the stack creates, not to "
            f"{input_bucket!r} (its owner's) — pulumi config rm --path '{key}.inputRetentionDays'"
        )

    runners = batch.get("runners", [])
    r.members(
        f"{key}.runners",
        batch.listed("runners", []),
        fix=batch.fix("runners[0]", "user:you@example.com"),
        public=f": a GPU job is never run by everyone — {batch.fix('runners[0]', 'user:you@example.com')}",
        email="e-mail",
    )

    zonal_redundancy = batch.flag("zonalRedundancy", DEFAULTS.zonal_redundancy)
    service_account = batch.get("serviceAccount") or None
    in_project = f"@{project}.iam.gserviceaccount.com"
    r.service_account(
        f"{key}.serviceAccount",
        service_account,
        project,
        batch.fix("serviceAccount", "whisper-job" + in_project),
    )

    return BatchConfig(
        input_bucket=input_bucket or f"{prefix}-batch-in",
        output_bucket=output_bucket,
        create_input_bucket=not input_bucket,
        task_count=task_count,
        parallelism=parallelism,
        max_retries=max_retries,
        task_timeout_seconds=timeout,
        input_retention_days=input_days,
        output_retention_days=output_days,
        runners=tuple(runners) if isinstance(runners, list) else (),
        service_account=service_account,
        zonal_redundancy=zonal_redundancy,
        diarize=batch.flag("diarize", DEFAULTS.diarize),
    )


def _valid_bucket(name: str) -> bool:
    return bool(_BUCKET.match(name)) and not name.startswith("goog") and ".." not in name
