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
from infra.shared import contract
from infra.spend_cap import SpendCap, SpendCapArgs, cap_engaged, lift_instructions
from infra.workload import GpuWorkload


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
    registry = Registry("registry", RegistryArgs(cfg, labels), opts=protected, depends_on=apis.ready)
    # Not protected: an image is rebuilt on every change and its old versions are the registry's to clean.
    image = ServiceImage("image", ServiceImageArgs(registry.url, cfg))
    workload = GpuWorkload(cfg, image.ref, labels)
    identity = RuntimeIdentity("identity", RuntimeIdentityArgs(cfg), depends_on=apis.ready)
    capped = cap_engaged(cfg.project, cfg.region, cfg.service_name)
    if capped:
        pulumi.log.warn(lift_instructions(cfg.project, cfg.region, cfg.service_name))
    api_key = (
        ApiKey("api-key", ApiKeyArgs(cfg, reader=identity.member), depends_on=apis.ready)
        if cfg.has_api_key
        else None
    )
    service = WhisperService(
        "service",
        WhisperServiceArgs(
            workload,
            service_account_email=identity.email,
            api_key_secret=api_key.secret if api_key else None,
            api_key_version=api_key.version if api_key else "latest",
            sidecars=metrics_sidecars(cfg.observability),
            capped=capped,
        ),
        opts=protected,
        depends_on=[*apis.ready, *identity.resources, *(api_key.resources if api_key else [])],
    )
    ServiceInvokers("invokers", ServiceInvokersArgs(cfg, service_name=service.name))
    budget = None
    if cfg.budget is not None:
        budget = BudgetAlerts(
            "budget",
            BudgetAlertsArgs(
                cfg.project,
                cfg.service_name,
                cfg.budget,
                provider_settings=provider_settings(),
                # The bootstrap's budget publishes instead when the stack names its topic.
                publish_to_topic=cfg.spend_cap is not None and cfg.spend_cap.budget_topic is None,
            ),
            depends_on=apis.ready,
        )
    else:
        pulumi.log.warn(cfg.budget_skipped_reason or "no budget configured")
    observe(cfg, labels, apis, service, budget, registry_url=registry.url, runtime=identity.email)

    outputs: dict[str, Any] = {}
    if cfg.batch is not None:
        batch = BatchTranscription(
            "batch", BatchTranscriptionArgs(workload, cfg.batch), depends_on=apis.ready
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
    observability = Observability(
        "observability",
        ObservabilityArgs(
            project=cfg.project,
            region=cfg.region,
            service_name=cfg.service_name,
            service=service.name,
            max_instances=cfg.max_instances,
            settings=settings,
            channels=[channel.id for channel in budget.channels] if budget else [],
            channel_emails=cfg.budget.emails if cfg.budget else (),
            labels=labels,
            realtime=cfg.realtime is not None,
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
    topic, budget_id = _cap_budget(cfg, budget)
    if cfg.spend_cap is not None and topic is not None and budget_id is not None:
        SpendCap(
            "spend-cap",
            SpendCapArgs(
                project=cfg.project,
                region=cfg.region,
                service_name=cfg.service_name,
                service=service.name,
                runtime_account_email=runtime,
                registry_url=registry_url,
                topic=topic,
                budget_id=budget_id,
                settings=cfg.spend_cap,
                channels=observability.channel_ids,
                labels=labels,
            ),
            depends_on=apis.ready,
        )


def _cap_budget(
    cfg: StackConfig, budget: BudgetAlerts | None
) -> tuple[pulumi.Input[str] | None, pulumi.Input[str] | None]:
    """The topic the cap listens to and the budget it acts on: the bootstrap's, or the stack's own."""
    if cfg.spend_cap is not None and cfg.spend_cap.budget_topic is not None:
        return cfg.spend_cap.budget_topic, cfg.spend_cap.budget_id
    if budget is not None and budget.topic is not None:
        return budget.topic.id, budget.budget_id
    return None, None


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
    return f"curl -sS {headers} -F file=@audio.wav -F model=whisper-1 {url}{contract.TRANSCRIPTIONS_PATH}"


def openai_example(url: str, api_key: bool = False) -> str:
    """The same with the official SDK: the identity token as the API key, or as an extra header."""
    transcribe = 'print(c.audio.transcriptions.create(model="whisper-1", file=open("audio.wav", "rb")).text)'
    if api_key:
        client = (
            f'c = OpenAI(base_url="{url}{contract.API_PREFIX}", api_key=os.environ["WHISPER_API_KEY"], '
            'default_headers={"X-Serverless-Authorization": "Bearer " + os.environ["ID_TOKEN"]})'
        )
        code = f"import os; from openai import OpenAI; {client}; {transcribe}"
        return f"ID_TOKEN=\"{IDENTITY_TOKEN}\" python -c '{code}'"
    client = "c = OpenAI()"
    return (
        f'OPENAI_BASE_URL="{url}{contract.API_PREFIX}" OPENAI_API_KEY="{IDENTITY_TOKEN}" '
        f"python -c 'from openai import OpenAI; {client}; {transcribe}'"
    )


def _label(value: str) -> str:
    """GCP label values: lowercase letters, digits, `-` and `_`, at most 63 characters."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())[:63]
