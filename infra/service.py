"""The Cloud Run v2 service on an L4 GPU, and who may call it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.shared import contract

run = gcp.cloudrunv2

INVOKER_ROLE = "roles/run.invoker"
# The container that receives requests; sidecars (infra/observability.py) start after it is ready.
INGRESS_CONTAINER = "whisper-api"
# The startup probe allows this long for the model to load (Cloud Run caps period and delay at 240 s).
STARTUP_PERIOD_S = 10
STARTUP_FAILURE_THRESHOLD = 30  # 30 x 10 s = 5 minutes
LIVENESS_PERIOD_S = 30
LIVENESS_FAILURE_THRESHOLD = 3
PROBE_TIMEOUT_S = 5


@dataclass(frozen=True)
class WhisperServiceArgs:
    project: str
    region: str
    service_name: str
    image_ref: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    engine: str
    model: str
    gpu_type: str
    cpu: int
    memory: str
    min_instances: int
    max_instances: int
    concurrency: int
    timeout_seconds: int
    zonal_redundancy: bool
    ingress: str
    deletion_protection: bool
    labels: Mapping[str, str]
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Containers next to the API (the metrics collector); only the API has a port and takes requests.
    sidecars: Sequence[run.ServiceTemplateContainerArgs] = ()


def service_env(args: WhisperServiceArgs) -> dict[str, str]:
    """The service's settings as env vars; queue size and timeout mirror Cloud Run's own limits."""
    return {
        contract.ENV_ENGINE: args.engine,
        contract.ENV_MODEL: args.model,
        contract.ENV_MODEL_DIR: contract.MODEL_DIR,
        contract.ENV_DEVICE: "cuda",
        # Cloud Run sends an instance at most `concurrency` requests; the service admits exactly
        # that many, so a full instance makes Cloud Run scale out rather than queue blindly.
        contract.ENV_QUEUE_SIZE: str(args.concurrency),
        contract.ENV_REQUEST_TIMEOUT: str(args.timeout_seconds),
        **args.extra_env,
    }


class WhisperService(pulumi.ComponentResource):
    """The API on Cloud Run: GPU, always-allocated CPU, probes on the service's own health paths."""

    url: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: WhisperServiceArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("whisper:infra:WhisperService", name, None, opts)
        container = run.ServiceTemplateContainerArgs(
            name=INGRESS_CONTAINER,
            # By digest: every new build is a new revision, and a tag moved elsewhere changes nothing.
            image=args.image_ref,
            ports=run.ServiceTemplateContainerPortsArgs(container_port=contract.PORT, name="http1"),
            resources=run.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": str(args.cpu), "memory": args.memory, "nvidia.com/gpu": "1"},
                # GPUs need instance-based billing; the boost shortens the model load at start.
                cpu_idle=False,
                startup_cpu_boost=True,
            ),
            startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(
                    path=contract.READY_PATH, port=contract.PORT
                ),
                initial_delay_seconds=0,
                period_seconds=STARTUP_PERIOD_S,
                timeout_seconds=PROBE_TIMEOUT_S,
                failure_threshold=STARTUP_FAILURE_THRESHOLD,
            ),
            liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
                http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                    path=contract.HEALTH_PATH, port=contract.PORT
                ),
                period_seconds=LIVENESS_PERIOD_S,
                timeout_seconds=PROBE_TIMEOUT_S,
                failure_threshold=LIVENESS_FAILURE_THRESHOLD,
            ),
            envs=[run.ServiceTemplateContainerEnvArgs(name=k, value=v) for k, v in service_env(args).items()],
        )
        self.service = run.Service(
            f"{name}-service",
            name=args.service_name,
            project=args.project,
            location=args.region,
            description="OpenAI-compatible Whisper API on an NVIDIA L4 GPU.",
            labels=dict(args.labels),
            ingress=args.ingress,
            deletion_protection=args.deletion_protection,
            # Callers need roles/run.invoker (ServiceInvokers); never switch the IAM check off.
            invoker_iam_disabled=False,
            template=run.ServiceTemplateArgs(
                service_account=args.service_account_email,
                timeout=f"{args.timeout_seconds}s",
                max_instance_request_concurrency=args.concurrency,
                gpu_zonal_redundancy_disabled=not args.zonal_redundancy,
                node_selector=run.ServiceTemplateNodeSelectorArgs(accelerator=args.gpu_type),
                scaling=run.ServiceTemplateScalingArgs(
                    min_instance_count=args.min_instances,
                    max_instance_count=args.max_instances,
                ),
                labels=dict(args.labels),
                containers=[container, *args.sidecars],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.url = self.service.uri
        self.name = self.service.name
        self.register_outputs({"url": self.url})


@dataclass(frozen=True)
class ServiceInvokersArgs:
    project: str
    region: str
    service_name: pulumi.Input[str]
    members: Sequence[str]


class ServiceInvokers(pulumi.ComponentResource):
    """roles/run.invoker for the listed members only; `allUsers` appears only for public stacks."""

    def __init__(
        self, name: str, args: ServiceInvokersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("whisper:infra:ServiceInvokers", name, None, opts)
        # Named after the member, not its position: reordering the list changes nothing.
        self.members = [
            run.ServiceIamMember(
                f"{name}-{_slug(member)}",
                project=args.project,
                location=args.region,
                name=args.service_name,
                role=INVOKER_ROLE,
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for member in args.members
        ]
        self.register_outputs({"members": list(args.members)})


def _slug(member: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", member.lower()).strip("-")
