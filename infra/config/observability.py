"""`whisper:observability`: what `pulumi up` declares for on-call (infra/observability.py), and whether
the metrics sidecar fits in the instance next to the API."""

from __future__ import annotations

from dataclasses import dataclass

from infra.config.cloud_run import (
    GPU_CPU_CHOICES,
    MAX_CPU,
    MAX_MEMORY_GIB,
    MAX_MEMORY_GIB_PER_CPU,
    METRICS_SIDECAR_CPU,
    METRICS_SIDECAR_MEMORY,
    UPTIME_PERIODS_S,
    memory_gib,
)
from infra.config.keys import API_KEY, NAMESPACE, OBSERVABILITY_KEYS
from infra.config.reader import Reader, Section, fix

DEFAULT_P95_LATENCY_S = 120.0  # a 25 MB upload decodes well inside this on an L4; see docs/observability.md


@dataclass(frozen=True)
class ObservabilityConfig:
    """What `pulumi up` declares for on-call: metrics sidecar, alert policies, dashboard, uptime check."""

    metrics: bool = True  # read as off when an API key guards /metrics
    alerts: bool = True
    dashboard: bool = True
    # Off unless an instance is kept warm: each check would otherwise start a GPU instance.
    uptime_check: bool = False
    uptime_period_seconds: int = 300
    # Alert recipients; empty means the budget's emails.
    emails: tuple[str, ...] = ()
    error_ratio: float = 0.05
    p95_latency_seconds: float = DEFAULT_P95_LATENCY_S  # read as at most 80 % of the request timeout
    queue_full_ratio: float = 0.05


DEFAULTS = ObservabilityConfig()


def read_observability(
    r: Reader, min_instances: int, timeout_seconds: int, has_api_key: bool, public_ingress: bool
) -> ObservabilityConfig:
    section = r.section("observability", "alerts", "true") or Section(r, "observability", {})
    section.unknown_keys(OBSERVABILITY_KEYS)
    key = section.key
    period = section.one_of("uptimePeriodSeconds", DEFAULTS.uptime_period_seconds, UPTIME_PERIODS_S)
    emails = section.emails("oncall@example.com")

    # The service's API key also guards /metrics, and the sidecar cannot present it: with a key,
    # metrics are off unless asked for, and asking for both is refused.
    metrics = section.flag("metrics", DEFAULTS.metrics and not has_api_key)
    if metrics and has_api_key:
        r.fail(
            f"{key}.metrics is true but an API key ({API_KEY} or {NAMESPACE}:apiKeySecret) also guards "
            f"/metrics, which the metrics sidecar cannot present — {section.fix('metrics', 'false')}"
        )
    # Uptime checkers call from the internet: an internal-only service cannot answer them.
    uptime_check = section.flag("uptimeCheck", min_instances > 0 and public_ingress)
    if uptime_check and not public_ingress:
        r.fail(
            f"{key}.uptimeCheck needs {NAMESPACE}:ingress all (Google's checkers call from the internet; "
            f"IAM still guards the service) — {section.fix('uptimeCheck', 'false')}"
        )
    timeout = max(timeout_seconds, 1)
    p95_default = min(DEFAULTS.p95_latency_seconds, 0.8 * timeout)

    return ObservabilityConfig(
        metrics=metrics,
        alerts=section.flag("alerts", DEFAULTS.alerts),
        dashboard=section.flag("dashboard", DEFAULTS.dashboard),
        uptime_check=uptime_check,
        uptime_period_seconds=period,
        emails=tuple(email for email in emails if isinstance(email, str)),
        error_ratio=section.number("errorRatio", DEFAULTS.error_ratio, 1, "a fraction of requests"),
        p95_latency_seconds=section.number(
            "p95LatencySeconds", p95_default, timeout, f"seconds, at most {NAMESPACE}:timeoutSeconds,"
        ),
        queue_full_ratio=section.number(
            "queueFullRatio", DEFAULTS.queue_full_ratio, 1, "a fraction of audio requests"
        ),
    )


def check_instance_fits(r: Reader, cpu: int, memory: str, observability: ObservabilityConfig) -> None:
    """The API container plus the metrics sidecar must fit in one instance's 8 vCPU / 32 GiB."""
    gib = memory_gib(memory)
    if not observability.metrics or cpu not in GPU_CPU_CHOICES or gib is None:
        return
    if gib > min(MAX_MEMORY_GIB, cpu * MAX_MEMORY_GIB_PER_CPU):
        return  # already reported against whisper:memory
    sidecar_gib = memory_gib(METRICS_SIDECAR_MEMORY) or 0.0
    if cpu + METRICS_SIDECAR_CPU <= MAX_CPU and gib + sidecar_gib <= MAX_MEMORY_GIB:
        return
    fit_cpu = max(choice for choice in GPU_CPU_CHOICES if choice + METRICS_SIDECAR_CPU <= MAX_CPU)
    fit_gib = min(fit_cpu * MAX_MEMORY_GIB_PER_CPU, int(MAX_MEMORY_GIB - sidecar_gib))
    fixes = [fix("cpu", fit_cpu)] if cpu > fit_cpu else []
    fixes += [fix("memory", f"{fit_gib}Gi")] if gib > fit_gib else []
    r.fail(
        f"{NAMESPACE}:cpu {cpu} and {NAMESPACE}:memory {memory} plus the metrics sidecar "
        f"({METRICS_SIDECAR_CPU} vCPU, {METRICS_SIDECAR_MEMORY}) come to {cpu + METRICS_SIDECAR_CPU} vCPU "
        f"/ {gib + sidecar_gib:g}Gi, more than one Cloud Run instance holds ({MAX_CPU} vCPU, "
        f"{MAX_MEMORY_GIB}Gi for all its containers) — {' && '.join(fixes)} (or, without metrics, "
        f"pulumi config set --path '{NAMESPACE}:observability.metrics' false)"
    )
