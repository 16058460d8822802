"""The whole stack: config → components → exports. No resource code lives here."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.apis import ProjectApis, ProjectApisArgs
from infra.budget import BudgetAlerts, BudgetAlertsArgs
from infra.config import StackConfig, read_stack_config
from infra.identity import RuntimeIdentity, RuntimeIdentityArgs
from infra.registry import Registry, RegistryArgs, ServiceImage, ServiceImageArgs
from infra.service import ServiceInvokers, ServiceInvokersArgs, WhisperService, WhisperServiceArgs

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


def main() -> dict[str, Any]:
    """Declare every resource for the running stack; returns (and exports) the stack outputs."""
    cfg = read_stack_config()
    outputs = build(cfg)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def build(cfg: StackConfig) -> dict[str, Any]:
    # `protect` is inherited by every child: a protected stack refuses `pulumi destroy`.
    protected = pulumi.ResourceOptions(protect=cfg.protect)
    labels = {"app": cfg.service_name, "stack": _label(pulumi.get_stack()), "managed-by": "pulumi"}

    apis = ProjectApis("apis", ProjectApisArgs(project=cfg.project), opts=protected)
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
        depends_on=apis.services,
    )
    # Not protected: an image is rebuilt on every change and its old versions are the registry's to clean.
    image = ServiceImage(
        "image",
        ServiceImageArgs(
            registry_url=registry.url, image_name=cfg.service_name, engine=cfg.engine, model=cfg.model
        ),
    )
    identity = RuntimeIdentity(
        "identity",
        RuntimeIdentityArgs(
            project=cfg.project, service_name=cfg.service_name, existing_email=cfg.service_account
        ),
        opts=protected,
        depends_on=apis.services,
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
        ),
        opts=protected,
        depends_on=[*apis.services, *identity.resources],
    )
    ServiceInvokers(
        "invokers",
        ServiceInvokersArgs(
            project=cfg.project, region=cfg.region, service_name=service.name, members=cfg.invoker_members
        ),
        opts=protected,
    )
    if cfg.budget is not None:
        BudgetAlerts(
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
            ),
            opts=protected,
            depends_on=apis.services,
        )
    else:
        pulumi.log.warn(cfg.budget_skipped_reason or "no budget configured")

    return {
        "url": service.url,
        "image_ref": image.ref,
        "service_account_email": identity.email,
        "curl_example": service.url.apply(curl_example),
        "openai_example": service.url.apply(openai_example),
    }


def curl_example(url: str) -> str:
    """A transcription request with the caller's own identity token (roles/run.invoker needed)."""
    return (
        f'curl -sS -H "Authorization: Bearer $(gcloud auth print-identity-token)" '
        f"-F file=@audio.wav -F model=whisper-1 {url}{TRANSCRIPTIONS_PATH}"
    )


def openai_example(url: str) -> str:
    """The same with the official SDK: a Cloud Run identity token is presented as the API key."""
    return (
        f'OPENAI_BASE_URL="{url}/v1" OPENAI_API_KEY="$(gcloud auth print-identity-token)" '
        "python -c 'from openai import OpenAI; "
        'print(OpenAI().audio.transcriptions.create(model="whisper-1", file=open("audio.wav", "rb")).text)\''
    )


def _label(value: str) -> str:
    """GCP label values: lowercase letters, digits, `-` and `_`, at most 63 characters."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in value.lower())[:63]
