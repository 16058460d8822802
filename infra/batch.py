"""Batch transcription on Cloud Run Jobs: the buckets, the job on the service's image, its identity,
and who may run it. Composed by infra/program.py only when `whisper:batch` is enabled.

The job runs `python -m whisper_api.batch gs://<input> gs://<output>` (the image's other entry
point) on as many L4 tasks as a run asks for; each task takes its share of the recordings from
CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT. `scripts/batch` starts runs with other prefixes,
formats or task counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import BatchConfig
from infra.shared import contract, slug
from infra.workload import GpuWorkload

run = gcp.cloudrunv2

WORKER_COMMAND = ("python", "-m", "whisper_api.batch")
# The job's own account: list and read recordings; list, read, create and replace transcripts.
# Nothing else: no project role, no bucket settings or IAM (its logs are collected by Cloud Run).
JOB_INPUT_ROLE = "roles/storage.objectViewer"
JOB_OUTPUT_ROLE = "roles/storage.objectUser"
# Runners: start runs with overrides (other prefixes, formats, task count) and cancel them, follow
# executions, upload recordings and read transcripts and manifests.
RUNNER_JOB_ROLES = ("roles/run.jobsExecutorWithOverrides", "roles/run.viewer")
RUNNER_INPUT_ROLE = "roles/storage.objectUser"
RUNNER_OUTPUT_ROLE = "roles/storage.objectViewer"
# A dropped multipart upload leaves invisible parts that are billed; clean them after a day.
ABANDONED_UPLOAD_DAYS = 1


@dataclass(frozen=True)
class BatchTranscriptionArgs:
    workload: GpuWorkload
    settings: BatchConfig


def lifecycle_rules(retention_days: int) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    rules = [
        gcp.storage.BucketLifecycleRuleArgs(
            action=gcp.storage.BucketLifecycleRuleActionArgs(type="AbortIncompleteMultipartUpload"),
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=ABANDONED_UPLOAD_DAYS),
        )
    ]
    if retention_days:
        rules.append(
            gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=retention_days),
            )
        )
    return rules


class BatchTranscription(Component):
    """Private input/output buckets, a GPU job that reads one and writes the other, and its runners."""

    job_name: pulumi.Output[str]
    service_account_email: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: BatchTranscriptionArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),  # the APIs: Cloud Run, IAM, Cloud Storage
    ) -> None:
        super().__init__("BatchTranscription", name, opts, depends_on)
        cfg, batch, labels = args.workload.settings, args.settings, dict(args.workload.labels)
        self.input_url = f"gs://{batch.input_bucket}"
        self.output_url = f"gs://{batch.output_bucket}"

        if batch.service_account is not None:
            email: pulumi.Output[str] = pulumi.Output.from_input(batch.service_account)
        else:
            email = gcp.serviceaccount.Account(
                f"{name}-account",
                project=cfg.project,
                account_id=f"{cfg.service_name}-job",
                display_name=f"{cfg.service_name} batch job",
                description="Runs batch transcription: reads the input bucket, writes the output bucket.",
                opts=self.after(),
            ).email
        job_member = email.apply(lambda address: f"serviceAccount:{address}")
        input_bucket: pulumi.Input[str] = batch.input_bucket  # an existing bucket, or one made here
        if batch.create_input_bucket:
            input_bucket = self._bucket(
                f"{name}-input", batch.input_bucket, args, batch.input_retention_days, force_destroy=False
            ).name
        # Transcripts can be made again; recordings cannot: only the output empties itself on destroy.
        output = self._bucket(
            f"{name}-output",
            batch.output_bucket,
            args,
            batch.output_retention_days,
            force_destroy=not cfg.deletion_protection,
        )
        grants = [
            self._grant(f"{name}-job-reads-input", input_bucket, JOB_INPUT_ROLE, job_member),
            self._grant(f"{name}-job-writes-output", output.name, JOB_OUTPUT_ROLE, job_member),
        ]

        container = run.JobTemplateTemplateContainerArgs(
            name="whisper-batch",
            # The service's image, by digest: the job runs exactly the code and model the API serves.
            image=args.workload.image_ref,
            commands=list(WORKER_COMMAND),
            args=[self.input_url, self.output_url],
            resources=run.JobTemplateTemplateContainerResourcesArgs(limits=args.workload.limits()),
            envs=[
                run.JobTemplateTemplateContainerEnvArgs(name=key, value=value)
                for key, value in {
                    **args.workload.model_env(),
                    **cfg.env,
                    **_diarize_env(batch.diarize),
                }.items()
            ],
        )
        self.job = run.Job(
            f"{name}-job",
            name=f"{cfg.service_name}-batch",
            project=cfg.project,
            location=cfg.region,
            # The job holds no state (its buckets do, and they are protected): a protected job would
            # make turning batch off (`whisper:batch.enabled: false`) fail in prod.
            deletion_protection=False,
            labels=labels,
            template=run.JobTemplateArgs(
                task_count=batch.task_count,
                parallelism=batch.parallelism,
                labels=labels,
                template=run.JobTemplateTemplateArgs(
                    service_account=email,
                    timeout=f"{batch.task_timeout_seconds}s",
                    max_retries=batch.max_retries,
                    node_selector=run.JobTemplateTemplateNodeSelectorArgs(accelerator=cfg.gpu_type),
                    # A failed task is retried anyway: redundancy would only cost more and use its own quota.
                    gpu_zonal_redundancy_disabled=not batch.zonal_redundancy,
                    containers=[container],
                ),
            ),
            # A run started right after `pulumi up` must find its bucket roles in place.
            opts=self.after(*grants),
        )

        for member in batch.runners:
            for role in RUNNER_JOB_ROLES:
                run.JobIamMember(
                    f"{name}-runner-{slug(member)}-{role.removeprefix('roles/run.').lower()}",
                    project=cfg.project,
                    location=cfg.region,
                    name=self.job.name,
                    role=role,
                    member=member,
                    opts=self.own(),
                )
            self._grant(f"{name}-runner-{slug(member)}-uploads", input_bucket, RUNNER_INPUT_ROLE, member)
            self._grant(f"{name}-runner-{slug(member)}-reads", output.name, RUNNER_OUTPUT_ROLE, member)

        self.job_name = pulumi.Output.concat(
            "projects/", cfg.project, "/locations/", cfg.region, "/jobs/", self.job.name
        )
        self.service_account_email = email
        self.register_outputs({"job": self.job_name, "input": self.input_url, "output": self.output_url})

    def _bucket(
        self,
        name: str,
        bucket: str,
        args: BatchTranscriptionArgs,
        retention_days: int,
        *,
        force_destroy: bool,
    ) -> gcp.storage.Bucket:
        cfg = args.workload.settings
        return gcp.storage.Bucket(
            name,
            name=bucket,
            project=cfg.project,
            location=cfg.region,
            storage_class="STANDARD",
            uniform_bucket_level_access=True,  # IAM only, no per-object ACLs
            public_access_prevention="enforced",  # no allUsers grant can ever make it public
            force_destroy=force_destroy,
            labels=dict(args.workload.labels),
            lifecycle_rules=lifecycle_rules(retention_days),
            # The buckets hold the recordings and transcripts: the only batch state worth `protect`.
            opts=self.after(protect=cfg.deletion_protection),
        )

    def _grant(
        self, name: str, bucket: pulumi.Input[str], role: str, member: pulumi.Input[str]
    ) -> gcp.storage.BucketIAMMember:
        return gcp.storage.BucketIAMMember(name, bucket=bucket, role=role, member=member, opts=self.own())


def _diarize_env(diarize: bool) -> dict[str, str]:
    """`whisper:batch.diarize` as the worker reads it (an env value survives a run's arg overrides)."""
    return {contract.ENV_BATCH_DIARIZE: "true"} if diarize else {}
