"""The whole stack: config → components → exports. No resource code lives here."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.api_key import ApiKey, ApiKeyArgs
from infra.apis import ProjectApis, ProjectApisArgs
from infra.batch import BatchTranscription, BatchTranscriptionArgs
from infra.budget import BudgetAlerts, BudgetAlertsArgs
from infra.config import StackConfig, provider_settings, read_stack_config
from infra.identity import RuntimeIdentity, RuntimeIdentityArgs
from infra.observability import Observability, ObservabilityArgs, metrics_sidecars
from infra.registry import Registry, RegistryArgs, ServiceImage, ServiceImageArgs
from infra.service import ServiceInvokers, ServiceInvokersArgs, WhisperService, WhisperServiceArgs
from infra.spend_cap import SpendCap, SpendCapArgs

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


def main() -> dict[str, Any]:
    """Declare every resource for the running stack; returns (and exports) the stack outputs."""
    cfg = read_stack_config()
    outputs = build(cfg)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def build(cfg: StackConfig) -> dict[str, Any]:
    # `protect` only where state lives or a rebuild is costly (the repository with its images, the
    # service with its URL): protect is inherited by children, so it is never set on other components,
    # and revoking an invoker or dropping a budget e-mail in prod goes through.
    protected = pulumi.ResourceOptions(protect=cfg.protect)
    labels = {"app": cfg.service_name, "stack": _label(pulumi.get_stack()), "managed-by": "pulumi"}

    apis = ProjectApis("apis", ProjectApisArgs(project=cfg.project))
    registry = Registry(
        "registry",
        RegistryArgs(
            project=cfg.project,
            region=cfg.region,
            repository_id=cfg.service_name,
            keep_images=cfg.keep_images,
            untagged_retention_days=cfg.untagged_retention_days,
            labels=labels,
        ),
        opts=protected,
        depends_on=apis.ready,
    )
    # Not protected: an image is rebuilt on every change and its old versions are the registry's to clean.
    image = ServiceImage(
        "image",
        ServiceImageArgs(
            registry_url=registry.url,
            image_name=cfg.service_name,
            engine=cfg.engine,
            model=cfg.model,
            model_revision=cfg.model_revision,
        ),
    )
    identity = RuntimeIdentity(
        "identity",
        RuntimeIdentityArgs(
            project=cfg.project, service_name=cfg.service_name, existing_email=cfg.service_account
        ),
        depends_on=apis.ready,
    )
    api_key = (
        ApiKey(
            "api-key",
            ApiKeyArgs(
                project=cfg.project,
                service_name=cfg.service_name,
                value=cfg.api_key,
                existing_secret=cfg.api_key_secret,
                reader=identity.member,
            ),
            depends_on=apis.ready,
        )
        if cfg.has_api_key
        else None
    )
    service = WhisperService(
        "service",
        WhisperServiceArgs(
            project=cfg.project,
            region=cfg.region,
            service_name=cfg.service_name,
            image_ref=image.ref,
            service_account_email=identity.email,
            engine=cfg.engine,
            model=cfg.model,
            gpu_type=cfg.gpu_type,
            cpu=cfg.cpu,
            memory=cfg.memory,
            min_instances=cfg.min_instances,
            max_instances=cfg.max_instances,
            concurrency=cfg.concurrency,
            timeout_seconds=cfg.timeout_seconds,
            zonal_redundancy=cfg.zonal_redundancy,
            ingress=cfg.ingress_value,
            deletion_protection=cfg.deletion_protection,
            labels=labels,
            extra_env=cfg.env,
            api_key_secret=api_key.secret if api_key else None,
            api_key_version=api_key.version if api_key else "latest",
            sidecars=metrics_sidecars(cfg.observability),
        ),
        opts=protected,
        depends_on=[*apis.ready, *identity.resources, *(api_key.resources if api_key else [])],
    )
    ServiceInvokers(
        "invokers",
        ServiceInvokersArgs(
            project=cfg.project, region=cfg.region, service_name=service.name, members=cfg.invoker_members
        ),
    )
    budget = None
    if cfg.budget is not None:
        budget = BudgetAlerts(
            "budget",
            BudgetAlertsArgs(
                project=cfg.project,
                service_name=cfg.service_name,
                billing_account=cfg.budget.billing_account,
                amount=cfg.budget.amount,
                currency=cfg.budget.currency,
                thresholds=cfg.budget.thresholds,
                forecast_thresholds=cfg.budget.forecast_thresholds,
                emails=cfg.budget.emails,
                provider_settings=provider_settings(),
                publish_to_topic=cfg.spend_cap is not None,
            ),
            depends_on=apis.ready,
        )
    else:
        pulumi.log.warn(cfg.budget_skipped_reason or "no budget configured")
    observe(cfg, labels, apis, service, budget, registry_url=registry.url, runtime=identity.email)

    outputs: dict[str, Any] = {}
    if cfg.batch is not None:
        batch = BatchTranscription(
            "batch",
            BatchTranscriptionArgs(
                project=cfg.project,
                region=cfg.region,
                service_name=cfg.service_name,
                image_ref=image.ref,
                engine=cfg.engine,
                model=cfg.model,
                gpu_type=cfg.gpu_type,
                cpu=cfg.cpu,
                memory=cfg.memory,
                zonal_redundancy=cfg.zonal_redundancy,
                input_bucket=cfg.batch.input_bucket,
                output_bucket=cfg.batch.output_bucket,
                create_input_bucket=cfg.batch.create_input_bucket,
                task_count=cfg.batch.task_count,
                parallelism=cfg.batch.parallelism,
                max_retries=cfg.batch.max_retries,
                task_timeout_seconds=cfg.batch.task_timeout_seconds,
                input_retention_days=cfg.batch.input_retention_days,
                output_retention_days=cfg.batch.output_retention_days,
                runners=cfg.batch.runners,
                deletion_protection=cfg.deletion_protection,
                labels=labels,
                extra_env=cfg.env,
                existing_account=cfg.batch.service_account,
            ),
            depends_on=apis.ready,
        )
        outputs |= {
            "batch_job": batch.job_name,
            "batch_input": batch.input_url,
            "batch_output": batch.output_url,
            "batch_example": batch.job_name.apply(
                lambda job: batch_example(job, batch.input_url, batch.output_url)
            ),
        }

    return {
        **outputs,
        "url": service.url,
        "image_ref": image.ref,
        "service_account_email": identity.email,
        "curl_example": service.url.apply(lambda url: curl_example(url, api_key=cfg.has_api_key)),
        "openai_example": service.url.apply(lambda url: openai_example(url, api_key=cfg.has_api_key)),
    }


def observe(
    cfg: StackConfig,
    labels: dict[str, str],
    apis: ProjectApis,
    service: WhisperService,
    budget: BudgetAlerts | None,
    registry_url: pulumi.Output[str],
    runtime: pulumi.Output[str],
) -> None:
    """Alerts, dashboard and uptime check on the service; the spend cap on the budget's topic."""
    settings = cfg.observability
    channels = [channel.id for channel in budget.channels] if budget else []
    channel_emails = cfg.budget.emails if cfg.budget else ()
    observability = Observability(
        "observability",
        ObservabilityArgs(
            project=cfg.project,
            region=cfg.region,
            service_name=cfg.service_name,
            service=service.name,
            max_instances=cfg.max_instances,
            settings=settings,
            channels=channels,
            channel_emails=channel_emails,
            labels=labels,
        ),
        depends_on=apis.ready,
    )
    if settings.alerts and not observability.channel_ids:
        pulumi.log.warn(
            "alert policies notify no one: set whisper:observability.emails or whisper:budget.emails"
        )
    if settings.uptime_check and cfg.min_instances == 0:
        pulumi.log.warn(
            "whisper:observability.uptimeCheck with minInstances 0: every check starts a GPU instance"
        )
    if cfg.spend_cap is not None and budget is not None and budget.topic is not None:
        SpendCap(
            "spend-cap",
            SpendCapArgs(
                project=cfg.project,
                region=cfg.region,
                service_name=cfg.service_name,
                service=service.name,
                runtime_account_email=runtime,
                registry_url=registry_url,
                topic=budget.topic.id,
                budget_id=budget.budget_id,
                fraction=cfg.spend_cap.fraction,
                channels=observability.channel_ids,
                labels=labels,
                deletion_protection=cfg.deletion_protection,
                service_account=cfg.spend_cap.service_account,
                push_service_account=cfg.spend_cap.push_service_account,
                role=cfg.spend_cap.role,
            ),
            depends_on=apis.ready,
        )


def batch_example(job: str, input_url: str, output_url: str) -> str:
    """Upload recordings, then transcribe them all on the job's GPU tasks."""
    return (
        f"gcloud storage cp -r recordings/ {input_url}/ && "
        f"scripts/batch --job {job} {input_url}/recordings {output_url}/recordings"
    )


IDENTITY_TOKEN = "$(gcloud auth print-identity-token)"  # noqa: S105 - a shell command, not a token


def curl_example(url: str, api_key: bool = False) -> str:
    """A transcription request with the caller's own identity token (roles/run.invoker needed).

    With an API key, Cloud Run reads the identity token from `X-Serverless-Authorization` and passes
    `Authorization` (the key) through to the service untouched.
    """
    headers = (
        f'-H "X-Serverless-Authorization: Bearer {IDENTITY_TOKEN}" '
        '-H "Authorization: Bearer $WHISPER_API_KEY"'
        if api_key
        else f'-H "Authorization: Bearer {IDENTITY_TOKEN}"'
    )
    return f"curl -sS {headers} -F file=@audio.wav -F model=whisper-1 {url}{TRANSCRIPTIONS_PATH}"


def openai_example(url: str, api_key: bool = False) -> str:
    """The same with the official SDK: the identity token as the API key, or as an extra header."""
    transcribe = 'print(c.audio.transcriptions.create(model="whisper-1", file=open("audio.wav", "rb")).text)'
    if api_key:
        client = (
            f'c = OpenAI(base_url="{url}/v1", api_key=os.environ["WHISPER_API_KEY"], '
            'default_headers={"X-Serverless-Authorization": "Bearer " + os.environ["ID_TOKEN"]})'
        )
        code = f"import os; from openai import OpenAI; {client}; {transcribe}"
        return f"ID_TOKEN=\"{IDENTITY_TOKEN}\" python -c '{code}'"
    client = "c = OpenAI()"
    return (
        f'OPENAI_BASE_URL="{url}/v1" OPENAI_API_KEY="{IDENTITY_TOKEN}" '
        f"python -c 'from openai import OpenAI; {client}; {transcribe}'"
    )


def _label(value: str) -> str:
    """GCP label values: lowercase letters, digits, `-` and `_`, at most 63 characters."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())[:63]
