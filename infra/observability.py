"""What on-call needs, declared with the service: metrics collected, alerts, a dashboard, an uptime check.

- `metrics_sidecars` is handed to the service component: Google Cloud Managed Service for Prometheus's
  Cloud Run sidecar scrapes the service's `/metrics` into Cloud Monitoring as the runtime account
  (its `roles/monitoring.metricWriter`). It starts after the API container passes its startup probe.
- `Observability` declares, once the service exists, the alert policies (5xx ratio, p95 latency,
  saturation, container start failures or crashes, uptime), the dashboard and the `/readyz` uptime
  check, which presents the Monitoring service agent's OIDC token to the private service.

Each alert's documentation block is what the e-mail says: what it means and the first thing to check.
docs/observability.md explains every policy, threshold and cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import METRICS_SIDECAR_CPU, METRICS_SIDECAR_MEMORY, ObservabilityConfig
from infra.service import INGRESS_CONTAINER
from infra.shared import contract, slug

run = gcp.cloudrunv2
monitoring = gcp.monitoring

# Managed Service for Prometheus's Cloud Run sidecar 1.9.2, by digest (the tag `1.9.2` and `latest`
# named this digest on 2026-09-05; the registry is unreachable from the machines this was written on).
GMP_SIDECAR_IMAGE = (
    "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar"
    "@sha256:ff1fc68871118f1032a3ce17e2b0abd703292e883989d220244330ebdf522fd1"
)
COLLECTOR_CONTAINER = "metrics-collector"
# Without a RunMonitoring config the sidecar scrapes localhost:8080/metrics every 30 s: the sidecar's
# own default, written here as its documentation gives it. It is exactly the service's contract
# (contract.PORT, contract.METRICS_PATH; a test holds the two together), so no config secret is needed.
SIDECAR_DEFAULT_SCRAPE = (8080, "/metrics")
SIDECAR_LIVENESS_PORT = 13133  # the sidecar's own /liveness endpoint
# Counted in the instance with the API container's; infra/config/observability.py checks that both fit.
SIDECAR_LIMITS = {"cpu": str(METRICS_SIDECAR_CPU), "memory": METRICS_SIDECAR_MEMORY}

# The service's Prometheus metrics (service/whisper_api/telemetry.py) and their kinds, which Cloud
# Monitoring appends to the name: prometheus.googleapis.com/<name>/<kind>.
REQUESTS_METRIC = "whisper_http_requests_total"
RTF_METRIC = "whisper_real_time_factor"
STEP_METRIC = "whisper_step_duration_seconds"
QUEUE_GAUGES = ("whisper_queue_depth", "whisper_inferences_in_flight", "whisper_requests_admitted")
CAPACITY_GAUGE = "whisper_queue_capacity"
SERVICE_METRICS: Mapping[str, str] = {
    REQUESTS_METRIC: "counter",
    RTF_METRIC: "histogram",
    STEP_METRIC: "histogram",
    CAPACITY_GAUGE: "gauge",
    **{gauge: "gauge" for gauge in QUEUE_GAUGES},
}
# The realtime sessions' metrics (service/whisper_api/realtime/metrics.py), exported when the stack
# turns whisper:realtime on.
FINALISATION_METRIC = "whisper_realtime_finalisation_seconds"
REALTIME_METRICS: Mapping[str, str] = {
    "whisper_realtime_sessions_active": "gauge",
    "whisper_realtime_sessions_capacity": "gauge",
    "whisper_realtime_sessions_total": "counter",
    "whisper_realtime_errors_total": "counter",
    "whisper_realtime_first_delta_seconds": "histogram",
    FINALISATION_METRIC: "histogram",
}
# End of speech to final transcript, p95, above which live captions feel late (a GPU takes ~0.2 s).
FINALISATION_P95_S = 2.0
PROMETHEUS = "prometheus.googleapis.com"
AUDIO_ENDPOINTS = f"{contract.AUDIO_PATH_PREFIX}.*"

# Cloud Run's built-in metrics (resource cloud_run_revision).
RUN = "run.googleapis.com"
UPTIME_PASSED = "monitoring.googleapis.com/uptime_check/check_passed"
INVOKER_ROLE = "roles/run.invoker"
WINDOW = "300s"
MONITORING_AGENT = "serviceAccount:service-{number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"


def metrics_sidecars(settings: ObservabilityConfig) -> list[run.ServiceTemplateContainerArgs]:
    """The collector container next to the API, or none when the stack turns metrics off."""
    if not settings.metrics:
        return []
    return [
        run.ServiceTemplateContainerArgs(
            name=COLLECTOR_CONTAINER,
            image=GMP_SIDECAR_IMAGE,
            # Started once the API passes its startup probe: the first scrape finds a loaded model.
            depends_ons=[INGRESS_CONTAINER],
            resources=run.ServiceTemplateContainerResourcesArgs(limits=dict(SIDECAR_LIMITS), cpu_idle=False),
            liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
                http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                    path="/liveness", port=SIDECAR_LIVENESS_PORT
                ),
                period_seconds=30,
                timeout_seconds=30,
            ),
        )
    ]


@dataclass(frozen=True)
class ObservabilityArgs:
    project: str
    region: str
    service_name: str
    service: pulumi.Input[str]  # the Cloud Run service's name output, so that everything waits for it
    max_instances: int
    settings: ObservabilityConfig
    # Notification channels that already exist (the budget's); `settings.emails` adds more.
    channels: Sequence[pulumi.Input[str]]
    channel_emails: Sequence[str]
    labels: Mapping[str, str]
    realtime: bool = False  # whisper:realtime on: its sessions are watched too


class Observability(Component):
    """Alert policies, the dashboard and the authenticated uptime check of one Cloud Run service."""

    def __init__(
        self,
        name: str,
        args: ObservabilityArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("Observability", name, opts, depends_on)
        self.args = args
        settings = args.settings
        extra = [email for email in settings.emails if email not in args.channel_emails]
        self.channels = [
            # Named after the address, like the budget's: removing one touches only its channel.
            monitoring.NotificationChannel(
                f"{name}-email-{slug(email)}",
                project=args.project,
                type="email",
                display_name=f"{args.service_name} alerts: {email}",
                labels={"email_address": email},
                opts=self.after(),
            )
            for email in extra
        ]
        self.channel_ids: list[pulumi.Input[str]] = [*args.channels, *(c.id for c in self.channels)]
        self.policies: dict[str, monitoring.AlertPolicy] = {}
        if settings.alerts:
            self._alerts(name)
        self.uptime_check = self._uptime_check(name) if settings.uptime_check else None
        self.dashboard = (
            monitoring.Dashboard(
                f"{name}-dashboard",
                project=args.project,
                dashboard_json=json.dumps(dashboard(args), sort_keys=True),
                opts=self.after(),
            )
            if settings.dashboard
            else None
        )
        self.register_outputs({"policies": sorted(self.policies)})

    # --- alert policies ---------------------------------------------------------------------------

    def _alerts(self, name: str) -> None:
        args, settings = self.args, self.args.settings
        run_filter = cloud_run_filter(args)
        requests = f'{run_filter} AND metric.type="{RUN}/request_count"'
        per_service = ["resource.label.service_name"]
        self._policy(
            name,
            "errors",
            f"{args.service_name}: 5xx responses above {settings.error_ratio:.0%}",
            "ERROR",
            [
                monitoring.AlertPolicyConditionArgs(
                    display_name=f"5xx / all requests > {settings.error_ratio:g} for 5 min",
                    condition_threshold=monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=f'{requests} AND metric.label.response_code_class="5xx"',
                        aggregations=[_aggregation("ALIGN_RATE", "REDUCE_SUM", per_service)],
                        denominator_filter=requests,
                        denominator_aggregations=[
                            monitoring.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs(
                                alignment_period=WINDOW,
                                per_series_aligner="ALIGN_RATE",
                                cross_series_reducer="REDUCE_SUM",
                                group_by_fields=per_service,
                            )
                        ],
                        comparison="COMPARISON_GT",
                        threshold_value=settings.error_ratio,
                        duration=WINDOW,
                    ),
                )
            ],
            "More than {ratio} of the requests that reached the service failed with a 5xx. A 500 is a bug "
            "(the service answers every client mistake with a 4xx); 503/504 mean instances were not ready "
            "or requests ran past the request timeout.\n\n**First check:** the service's ERROR log lines "
            "(one JSON line per request, with its timings) and whether a new revision just rolled out: "
            "roll back with `gcloud run services update-traffic {service} --to-revisions=PREVIOUS=100`.",
        )
        self._policy(
            name,
            "latency",
            f"{args.service_name}: p95 latency above {settings.p95_latency_seconds:g} s",
            "WARNING",
            [
                monitoring.AlertPolicyConditionArgs(
                    display_name=f"p95 request latency > {settings.p95_latency_seconds:g} s for 5 min",
                    condition_threshold=monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=f'{run_filter} AND metric.type="{RUN}/request_latencies"',
                        aggregations=[_aggregation("ALIGN_PERCENTILE_95", "REDUCE_MAX", per_service)],
                        comparison="COMPARISON_GT",
                        threshold_value=settings.p95_latency_seconds * 1000,  # the metric is in ms
                        duration=WINDOW,
                    ),
                )
            ],
            "The slowest 5 % of requests took longer than {latency} s. Long audio takes longer, so a few "
            "slow requests are normal; a sustained rise means requests wait in the queue or instances "
            "start cold.\n\n**First check:** the dashboard's queue depth and instance count (all instances "
            "busy: raise `whisper:maxInstances` within the GPU quota), then the `queue` and `inference` "
            "steps in the requests' Server-Timing / log timings.",
        )
        if args.max_instances > 1:
            self._saturation(name)
        if settings.metrics:
            # A policy with a PromQL condition may hold no other condition: its own policy.
            self._policy(
                name,
                "queue-full",
                f"{args.service_name}: audio requests refused with 429 queue_full",
                "WARNING",
                [
                    monitoring.AlertPolicyConditionArgs(
                        display_name=f"429 queue_full > {settings.queue_full_ratio:g} of audio requests",
                        condition_prometheus_query_language=monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                            query=queue_full_query(args.service_name, settings.queue_full_ratio),
                            duration=WINDOW,
                            evaluation_interval="60s",
                            # The series exist only after the sidecar's first scrape: no validation.
                            disable_metric_validation=True,
                        ),
                    )
                ],
                "Instances refuse audio requests with 429 `queue_full`: each admits `whisper:concurrency` "
                "requests, then answers 429 with Retry-After.\n\n**First check:** the dashboard's instance "
                f"count against `whisper:maxInstances` ({args.max_instances}) and the GPU quota; raise "
                "`whisper:maxInstances` if the quota allows, or ask the heaviest client to back off.",
            )
        if settings.metrics and args.realtime:
            self._policy(
                name,
                "realtime-finalisation",
                f"{args.service_name}: realtime transcripts arrive late",
                "WARNING",
                [
                    monitoring.AlertPolicyConditionArgs(
                        display_name=f"p95 end of speech → completed > {FINALISATION_P95_S:g} s for 5 min",
                        condition_prometheus_query_language=monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                            query=finalisation_query(args.service_name, FINALISATION_P95_S),
                            duration=WINDOW,
                            evaluation_interval="60s",
                            disable_metric_validation=True,
                        ),
                    )
                ],
                "Realtime sessions wait too long between the end of speech and the completed transcript: "
                "their passes share the inference slots with uploads.\n\n**First check:** the dashboard's "
                "queue depth and `whisper_realtime_sessions_active` against `whisper:realtime.sessions`; "
                "lower the sessions per instance (Cloud Run then scales out), or raise "
                "`whisper:maxInstances`.",
            )
        system_log = (
            f'resource.type="cloud_run_revision" AND resource.labels.service_name="{args.service_name}" '
            f'AND resource.labels.location="{args.region}" '
            f'AND logName="projects/{args.project}/logs/run.googleapis.com%2Fvarlog%2Fsystem" '
            "AND severity>=ERROR"
        )
        self._policy(
            name,
            "container-failures",
            f"{args.service_name}: container failed to start or crashed",
            "CRITICAL",
            [
                monitoring.AlertPolicyConditionArgs(
                    display_name="Cloud Run system log: startup probe failure, exit or kill",
                    condition_matched_log=monitoring.AlertPolicyConditionConditionMatchedLogArgs(
                        filter=system_log
                    ),
                )
            ],
            "Cloud Run logged an error for an instance: the startup probe on `/readyz` failed (the model "
            "did not load in time), the container exited, or it was killed (memory limit). Repeated, this "
            "is a crash loop and Cloud Run throttles restarts.\n\n**First check:** the service's logs just "
            "before the failure (`gcloud run services logs read {service} --region {region}`): a model "
            "that cannot load, CUDA errors, or `Memory limit exceeded` (raise `whisper:memory`).",
            alert_strategy=monitoring.AlertPolicyAlertStrategyArgs(
                notification_rate_limit=monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(
                    period="3600s"
                ),
                auto_close="1800s",
            ),
        )

    def _saturation(self, name: str) -> None:
        """Every instance busy for 15 min. Not with maxInstances 1: one active instance is then just use,
        and an overload shows as 429 queue_full (its own alert with the metrics sidecar) or latency."""
        args = self.args
        run_filter = cloud_run_filter(args)
        per_service = ["resource.label.service_name"]
        self._policy(
            name,
            "saturation",
            f"{args.service_name}: every instance busy",
            "WARNING",
            [
                monitoring.AlertPolicyConditionArgs(
                    display_name=f"active instances at maxInstances ({args.max_instances}) for 15 min",
                    condition_threshold=monitoring.AlertPolicyConditionConditionThresholdArgs(
                        filter=(
                            f'{run_filter} AND metric.type="{RUN}/container/instance_count" '
                            'AND metric.label.state="active"'
                        ),
                        aggregations=[_aggregation("ALIGN_MAX", "REDUCE_SUM", per_service, period="60s")],
                        comparison="COMPARISON_GT",
                        threshold_value=args.max_instances - 0.5,
                        duration="900s",
                    ),
                )
            ],
            "Every instance the service may run is running, so new load waits or is refused.\n\n"
            "**First check:** the dashboard's instance count against `whisper:maxInstances` "
            f"({args.max_instances}) and the GPU quota; raise `whisper:maxInstances` if the quota allows, "
            "or ask the heaviest client to back off.",
        )

    def _policy(
        self,
        name: str,
        key: str,
        title: str,
        severity: str,
        conditions: list[monitoring.AlertPolicyConditionArgs],
        documentation: str,
        alert_strategy: monitoring.AlertPolicyAlertStrategyArgs | None = None,
    ) -> monitoring.AlertPolicy:
        args, settings = self.args, self.args.settings
        content = documentation.format(
            ratio=f"{settings.error_ratio:.0%}",
            latency=f"{settings.p95_latency_seconds:g}",
            service=args.service_name,
            region=args.region,
            readyz=contract.READY_PATH,
        )
        policy = monitoring.AlertPolicy(
            f"{name}-{key}",
            project=args.project,
            display_name=title,
            combiner="OR",
            conditions=conditions,
            severity=severity,
            notification_channels=self.channel_ids,
            alert_strategy=alert_strategy,
            documentation=monitoring.AlertPolicyDocumentationArgs(
                subject=title,
                content=content,
                mime_type="text/markdown",
                links=[
                    monitoring.AlertPolicyDocumentationLinkArgs(
                        display_name="Cloud Run service",
                        url=(
                            f"https://console.cloud.google.com/run/detail/{args.region}/{args.service_name}"
                            f"/observability/metrics?project={args.project}"
                        ),
                    )
                ],
            ),
            user_labels=dict(args.labels),
            opts=self.after(),
        )
        self.policies[key] = policy
        return policy

    # --- uptime ---------------------------------------------------------------------------------

    def _uptime_check(self, name: str) -> monitoring.UptimeCheckConfig:
        """GET /readyz as the Monitoring service agent (an OIDC token Cloud Run IAM accepts)."""
        args = self.args
        number = gcp.organizations.get_project_output(project_id=args.project).number
        check = monitoring.UptimeCheckConfig(
            f"{name}-readyz",
            project=args.project,
            display_name=f"{args.service_name} {contract.READY_PATH}",
            period=f"{args.settings.uptime_period_seconds}s",
            timeout="10s",
            http_check=monitoring.UptimeCheckConfigHttpCheckArgs(
                path=contract.READY_PATH,
                port=443,
                use_ssl=True,
                request_method="GET",
                accepted_response_status_codes=[
                    monitoring.UptimeCheckConfigHttpCheckAcceptedResponseStatusCodeArgs(
                        status_class="STATUS_CLASS_2XX"
                    )
                ],
                service_agent_authentication=monitoring.UptimeCheckConfigHttpCheckServiceAgentAuthenticationArgs(
                    type="OIDC_TOKEN"
                ),
            ),
            monitored_resource=monitoring.UptimeCheckConfigMonitoredResourceArgs(
                type="cloud_run_revision",
                labels={"project_id": args.project, "location": args.region, "service_name": args.service},
            ),
            user_labels=dict(args.labels),
            # The API returns cloud_run_revision with two more labels (configuration_name and
            # revision_name) and the provider suppresses the diff of project_id only, on a field that
            # forces a new check: without this every `up` would replace the check and drift.yml would
            # fail daily. The three labels follow the service's name and region, which cannot change
            # without replacing the service itself.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=self.depends_on, ignore_changes=["monitoredResource"]
            ),
        )
        # After the check: the Monitoring notification agent is provisioned with the project's first
        # check or channel that uses it, so granting it first can fail on a brand-new project. Until
        # the grant lands the check gets 403s, well inside the alert's 10 minutes.
        run.ServiceIamMember(
            f"{name}-uptime-invoker",
            project=args.project,
            location=args.region,
            name=args.service,
            role=INVOKER_ROLE,
            member=number.apply(lambda n: MONITORING_AGENT.format(number=n)),
            opts=self.after(check),
        )
        if args.settings.alerts:
            self._policy(
                name,
                "uptime",
                f"{args.service_name}: {contract.READY_PATH} uptime check failing",
                "CRITICAL",
                [
                    monitoring.AlertPolicyConditionArgs(
                        display_name=f"{contract.READY_PATH} failed from more than one region",
                        condition_threshold=monitoring.AlertPolicyConditionConditionThresholdArgs(
                            filter=pulumi.Output.concat(
                                f'metric.type="{UPTIME_PASSED}" AND metric.label.check_id="',
                                check.uptime_check_id,
                                '"',
                            ),
                            aggregations=[
                                _aggregation(
                                    "ALIGN_NEXT_OLDER",
                                    "REDUCE_COUNT_FALSE",
                                    ["metric.label.check_id"],
                                    period="1200s",
                                )
                            ],
                            comparison="COMPARISON_GT",
                            threshold_value=1,
                            duration="600s",
                        ),
                    )
                ],
                "Google's uptime checkers could not get a 200 from `{readyz}` (authenticated as the "
                "Monitoring service agent) from more than one region for 10 minutes: callers are most "
                "likely failing too.\n\n**First check:** the Cloud Run service page (is a revision "
                "serving? did the spend cap switch ingress to internal? is the label `spend-cap` set?), "
                "then the container-failure alert and the service's logs.",
            )
        return check


# --- filters, queries and the dashboard ------------------------------------------------------------


def cloud_run_filter(args: ObservabilityArgs) -> str:
    return (
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{args.service_name}" '
        f'AND resource.labels.location="{args.region}"'
    )


def prometheus_filter(args: ObservabilityArgs, metric: str) -> str:
    """The sidecar writes as resource prometheus_target, `namespace` = the Cloud Run service's name."""
    return (
        f'metric.type="{PROMETHEUS}/{metric}/{SERVICE_METRICS[metric]}" '
        f'AND resource.type="prometheus_target" AND resource.labels.namespace="{args.service_name}" '
        f'AND resource.labels.location="{args.region}"'
    )


def queue_full_query(service_name: str, ratio: float) -> str:
    """PromQL: the share of audio requests refused with 429 over 5 minutes, above `ratio`."""
    selector = f'namespace="{service_name}",endpoint=~"{AUDIO_ENDPOINTS}"'
    refused = f'sum(rate({REQUESTS_METRIC}{{{selector},status="429"}}[5m]))'
    total = f"sum(rate({REQUESTS_METRIC}{{{selector}}}[5m]))"
    return f"{refused} / {total} > {ratio:g}"


def finalisation_query(service_name: str, seconds: float) -> str:
    """PromQL: the p95 of realtime items' end of speech → completed over 5 minutes, above `seconds`."""
    buckets = f'rate({FINALISATION_METRIC}_bucket{{namespace="{service_name}"}}[5m])'
    return f"histogram_quantile(0.95, sum by (le) ({buckets})) > {seconds:g}"


def _aggregation(
    aligner: str, reducer: str, group_by: list[str], period: str = WINDOW
) -> monitoring.AlertPolicyConditionConditionThresholdAggregationArgs:
    return monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
        alignment_period=period,
        per_series_aligner=aligner,
        cross_series_reducer=reducer,
        group_by_fields=group_by,
    )


def _series(
    filter_: str,
    aligner: str,
    reducer: str,
    group_by: Sequence[str] = (),
    legend: str = "",
    plot: str = "LINE",
) -> dict[str, Any]:
    aggregation: dict[str, Any] = {
        "alignmentPeriod": "60s",
        "perSeriesAligner": aligner,
        "crossSeriesReducer": reducer,
    }
    if group_by:
        aggregation["groupByFields"] = list(group_by)
    data_set: dict[str, Any] = {
        "plotType": plot,
        "timeSeriesQuery": {"timeSeriesFilter": {"filter": filter_, "aggregation": aggregation}},
    }
    if legend:
        data_set["legendTemplate"] = legend
    return data_set


def _chart(title: str, data_sets: list[dict[str, Any]], label: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "xyChart": {"dataSets": data_sets, "yAxis": {"label": label, "scale": "LINEAR"}, **extra},
    }


def _percentiles(filter_: str) -> list[dict[str, Any]]:
    return [_series(filter_, "ALIGN_DELTA", f"REDUCE_PERCENTILE_{p}", legend=f"p{p}") for p in (50, 95, 99)]


def dashboard(args: ObservabilityArgs) -> dict[str, Any]:
    """The Cloud Monitoring dashboard (projects.dashboards JSON): Cloud Run's metrics, then the service's."""
    run_filter = cloud_run_filter(args)

    def run_metric(metric: str) -> str:
        return f'{run_filter} AND metric.type="{RUN}/{metric}"'

    charts = [
        _chart(
            "Requests per second by status class",
            [
                _series(
                    run_metric("request_count"),
                    "ALIGN_RATE",
                    "REDUCE_SUM",
                    ["metric.label.response_code_class"],
                    plot="STACKED_BAR",
                )
            ],
            "requests/s",
        ),
        _chart("Request latency (Cloud Run, ms)", _percentiles(run_metric("request_latencies")), "ms"),
        _chart(
            "Instances by state",
            [
                _series(
                    run_metric("container/instance_count"),
                    "ALIGN_MAX",
                    "REDUCE_SUM",
                    ["metric.label.state"],
                    plot="STACKED_AREA",
                )
            ],
            "instances",
            thresholds=[{"label": "maxInstances", "value": args.max_instances}],
        ),
        _chart(
            "Billable instance time (instances billed)",
            [_series(run_metric("container/billable_instance_time"), "ALIGN_RATE", "REDUCE_SUM")],
            "s/s",
        ),
        _chart("GPU utilisation", _percentiles(run_metric("container/gpu/utilizations")), "ratio"),
        _chart(
            "GPU memory utilisation",
            _percentiles(run_metric("container/gpu/memory_utilizations")),
            "ratio",
        ),
    ]
    if args.settings.metrics:
        charts += [
            _chart(
                "Audio requests per second by status (service)",
                [
                    _series(
                        f"{prometheus_filter(args, REQUESTS_METRIC)} "
                        f'AND metric.label.endpoint=monitoring.regex.full_match("{AUDIO_ENDPOINTS}")',
                        "ALIGN_RATE",
                        "REDUCE_SUM",
                        ["metric.label.status"],
                        plot="STACKED_BAR",
                    )
                ],
                "requests/s",
            ),
            _chart(
                "Queue: waiting, inferring, admitted (all instances)",
                [
                    _series(prometheus_filter(args, gauge), "ALIGN_MEAN", "REDUCE_SUM", legend=gauge)
                    for gauge in QUEUE_GAUGES
                ]
                + [
                    _series(
                        prometheus_filter(args, CAPACITY_GAUGE),
                        "ALIGN_MEAN",
                        "REDUCE_SUM",
                        legend="capacity (429 beyond)",
                    )
                ],
                "requests",
            ),
            _chart(
                "Real-time factor (inference time / audio time)",
                _percentiles(prometheus_filter(args, RTF_METRIC)),
                "ratio",
            ),
            _chart(
                "Step durations p95 (read, decode, queue, inference, format)",
                [
                    _series(
                        prometheus_filter(args, STEP_METRIC),
                        "ALIGN_DELTA",
                        "REDUCE_PERCENTILE_95",
                        ["metric.label.step"],
                    )
                ],
                "s",
            ),
        ]
    width = 6
    tiles = [
        {"xPos": (index % 2) * width, "yPos": (index // 2) * 4, "width": width, "height": 4, "widget": chart}
        for index, chart in enumerate(charts)
    ]
    return {
        "displayName": f"{args.service_name} ({args.region})",
        "mosaicLayout": {"columns": 2 * width, "tiles": tiles},
    }
