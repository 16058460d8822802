"""The Cloud Run v2 service on an L4 GPU, and who may call it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pulumi
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import StackConfig
from infra.shared import contract, slug
from infra.spend_cap_function.cap import CAP_LABEL, CAP_LABEL_VALUE, CAPPED_MAX_INSTANCES, INTERNAL_ONLY
from infra.workload import GpuWorkload

run = gcp.cloudrunv2

INVOKER_ROLE = "roles/run.invoker"
# The container that receives requests; sidecars (infra/observability.py) start after it is ready.
INGRESS_CONTAINER = "whisper-api"
# Cloud Run's limits for a service's startup probe ("Configure container health checks", Google's
# Cloud Run docs): initialDelaySeconds and periodSeconds at most 240 each, and the time it may keep
# failing, failureThreshold x periodSeconds, at most 240 s (the smallest value the docs have given;
# newer pages allow more with a GPU). Past initial delay + that, the container is shut down.
STARTUP_MAX_DELAY_S = 240
STARTUP_MAX_PERIOD_S = 240
STARTUP_MAX_FAILING_S = 240
# Probe every 5 s from the start, so a fast load is served at once; give up after 4 minutes.
STARTUP_INITIAL_DELAY_S = 0
STARTUP_PERIOD_S = 5
STARTUP_FAILURE_THRESHOLD = 48  # 48 x 5 s = 240 s
LIVENESS_PERIOD_S = 30
LIVENESS_FAILURE_THRESHOLD = 3
PROBE_TIMEOUT_S = 5
API_KEY_VOLUME = "api-key"
# The service's own request deadline ends this much before Cloud Run's timeout (at most a tenth of
# it), so that a slow request gets the service's 504 in OpenAI's envelope rather than a cut connection.
REQUEST_DEADLINE_MARGIN_S = 5.0


def request_deadline_s(timeout_seconds: int) -> float:
    """WHISPER_REQUEST_TIMEOUT_S for a Cloud Run timeout: strictly below it."""
    return timeout_seconds - min(REQUEST_DEADLINE_MARGIN_S, timeout_seconds / 10)


def startup_window_problems(initial_delay_s: int, period_s: int, failure_threshold: int) -> list[str]:
    """What Cloud Run would refuse in a startup probe (empty: within its limits)."""
    problems = []
    if not 0 <= initial_delay_s <= STARTUP_MAX_DELAY_S:
        problems.append(f"initialDelaySeconds {initial_delay_s} is outside 0..{STARTUP_MAX_DELAY_S}")
    if not PROBE_TIMEOUT_S <= period_s <= STARTUP_MAX_PERIOD_S:
        problems.append(f"periodSeconds {period_s} is outside {PROBE_TIMEOUT_S}..{STARTUP_MAX_PERIOD_S}")
    if failure_threshold * period_s > STARTUP_MAX_FAILING_S:
        problems.append(
            f"failureThreshold x periodSeconds = {failure_threshold * period_s} s "
            f"exceeds {STARTUP_MAX_FAILING_S} s"
        )
    return problems


@dataclass(frozen=True)
class WhisperServiceArgs:
    workload: GpuWorkload
    service_account_email: pulumi.Input[str]
    # The API key's Secret Manager secret (id in the project) and version; None: no key, IAM only.
    api_key_secret: pulumi.Input[str] | None = None
    api_key_version: pulumi.Input[str] = "latest"
    # Containers next to the API (the metrics collector); only the API has a port and takes requests.
    sidecars: Sequence[run.ServiceTemplateContainerArgs] = ()
    # The live service carries the spend cap's label: keep what the cap set (infra/spend_cap.py).
    capped: bool = False


def exposure(args: WhisperServiceArgs) -> tuple[str, int, int, dict[str, str]]:
    """Ingress, min and max instances and labels: the stack's, or the spend cap's while it is engaged."""
    cfg, labels = args.workload.settings, dict(args.workload.labels)
    if args.capped:
        capped_max = min(CAPPED_MAX_INSTANCES, cfg.max_instances)
        return INTERNAL_ONLY, 0, capped_max, {**labels, CAP_LABEL: CAP_LABEL_VALUE}
    return cfg.ingress_value, cfg.min_instances, cfg.max_instances, labels


def inference_workers(engine: str, concurrency: int) -> int:
    """Inferences a GPU instance runs at once: never more than the requests it admits."""
    return min(concurrency, contract.GPU_WORKERS) if engine == "faster-whisper" else 1


def service_env(args: WhisperServiceArgs) -> dict[str, str]:
    """The service's settings as env vars; queue size and deadline follow Cloud Run's own limits."""
    cfg = args.workload.settings
    return {
        # Cloud Run does not set it; the logs need it to link each line to its request's trace.
        contract.ENV_GOOGLE_CLOUD_PROJECT: cfg.project,
        **args.workload.model_env(),
        # Cloud Run sends an instance at most `concurrency` requests; the service admits exactly
        # that many, so a full instance makes Cloud Run scale out rather than queue blindly.
        contract.ENV_QUEUE_SIZE: str(cfg.concurrency),
        contract.ENV_WORKERS: str(inference_workers(cfg.engine, cfg.concurrency)),
        contract.ENV_REQUEST_TIMEOUT: f"{request_deadline_s(cfg.timeout_seconds):g}",
        # Sessions beyond these would exceed the concurrency Cloud Run counts for them: none when off.
        contract.ENV_REALTIME_MAX_SESSIONS: str(cfg.realtime.sessions if cfg.realtime else 0),
        **(
            {contract.ENV_REALTIME_MAX_SESSION_S: str(cfg.realtime.server_session_seconds)}
            if cfg.realtime
            else {}
        ),
        **({contract.ENV_API_KEY_FILE: contract.API_KEY_FILE} if args.api_key_secret is not None else {}),
        **cfg.env,
    }


def api_key_volume(
    args: WhisperServiceArgs,
) -> tuple[list[run.ServiceTemplateVolumeArgs], list[run.ServiceTemplateContainerVolumeMountArgs]]:
    """The key as a file from Secret Manager: never in the environment, the state or the revision."""
    if args.api_key_secret is None:
        return [], []
    key_file = PurePosixPath(contract.API_KEY_FILE)
    volume = run.ServiceTemplateVolumeArgs(
        name=API_KEY_VOLUME,
        secret=run.ServiceTemplateVolumeSecretArgs(
            secret=args.api_key_secret,
            items=[run.ServiceTemplateVolumeSecretItemArgs(path=key_file.name, version=args.api_key_version)],
        ),
    )
    mount = run.ServiceTemplateContainerVolumeMountArgs(name=API_KEY_VOLUME, mount_path=str(key_file.parent))
    return [volume], [mount]


class WhisperService(Component):
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
        super().__init__("WhisperService", name, opts, depends_on)
        cfg = args.workload.settings
        volumes, mounts = api_key_volume(args)
        ingress, min_instances, max_instances, labels = exposure(args)
        container = run.ServiceTemplateContainerArgs(
            name=INGRESS_CONTAINER,
            # By digest: every new build is a new revision, and a tag moved elsewhere changes nothing.
            image=args.workload.image_ref,
            ports=run.ServiceTemplateContainerPortsArgs(container_port=contract.PORT, name="http1"),
            resources=run.ServiceTemplateContainerResourcesArgs(
                limits=args.workload.limits(),
                # GPUs need instance-based billing; the boost shortens the model load at start.
                cpu_idle=False,
                startup_cpu_boost=True,
            ),
            startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(
                    path=contract.READY_PATH, port=contract.PORT
                ),
                initial_delay_seconds=STARTUP_INITIAL_DELAY_S,
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
            volume_mounts=mounts or None,
        )
        self.service = run.Service(
            f"{name}-service",
            name=cfg.service_name,
            project=cfg.project,
            location=cfg.region,
            description="OpenAI-compatible Whisper API on an NVIDIA L4 GPU.",
            labels=labels,
            ingress=ingress,
            deletion_protection=cfg.deletion_protection,
            # Callers need roles/run.invoker (ServiceInvokers); never switch the IAM check off.
            invoker_iam_disabled=False,
            template=run.ServiceTemplateArgs(
                service_account=args.service_account_email,
                timeout=f"{cfg.request_timeout_seconds}s",
                max_instance_request_concurrency=cfg.request_concurrency,
                # A client reconnecting to its session's instance, where Cloud Run can (best effort).
                session_affinity=True if cfg.realtime else None,
                gpu_zonal_redundancy_disabled=not cfg.zonal_redundancy,
                node_selector=run.ServiceTemplateNodeSelectorArgs(accelerator=cfg.gpu_type),
                scaling=run.ServiceTemplateScalingArgs(
                    min_instance_count=min_instances,
                    max_instance_count=max_instances,
                ),
                labels=dict(args.workload.labels),
                containers=[container, *args.sidecars],
                volumes=volumes or None,
            ),
            opts=self.after(),
        )
        self.url = self.service.uri
        self.name = self.service.name
        self.register_outputs({"url": self.url})


@dataclass(frozen=True)
class ServiceInvokersArgs:
    settings: StackConfig
    service_name: pulumi.Input[str]  # the service's name output, so that grants wait for it


class ServiceInvokers(Component):
    """roles/run.invoker for the listed members only; `allUsers` appears only for public stacks."""

    def __init__(
        self, name: str, args: ServiceInvokersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ServiceInvokers", name, opts)
        members = args.settings.invoker_members
        # Named after the member, not its position: reordering the list changes nothing.
        self.members = [
            run.ServiceIamMember(
                f"{name}-{slug(member)}",
                project=args.settings.project,
                location=args.settings.region,
                name=args.service_name,
                role=INVOKER_ROLE,
                member=member,
                opts=self.own(),
            )
            for member in members
        ]
        self.register_outputs({"members": list(members)})
