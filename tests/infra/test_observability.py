"""infra/observability.py and infra/spend_cap.py on Pulumi's mock runtime, from the example stacks.

Asserts what on-call and the bill depend on: the sidecar's wiring, each alert's filter, threshold and
channels, the dashboard's metrics, the authenticated uptime check, the budget's topic, and that the
spend cap's identities can touch nothing but the one service.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import identity, observability
from infra.bootstrap import keyless_ci
from infra.budget import BUDGET_PUBLISHER
from infra.mockrun import MOCK_PROJECT_NUMBER, Plan, load_stack_config, run_program
from infra.shared import contract
from whisper_api.telemetry import Metrics

RUN_SERVICE = "gcp:cloudrunv2/service:Service"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
DASHBOARD = "gcp:monitoring/dashboard:Dashboard"
UPTIME = "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig"
RUN_IAM = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
ACCOUNT_IAM = "gcp:serviceaccount/iAMMember:IAMMember"
CUSTOM_ROLE = "gcp:projects/iAMCustomRole:IAMCustomRole"
TOPIC = "gcp:pubsub/topic:Topic"
TOPIC_IAM = "gcp:pubsub/topicIAMMember:TopicIAMMember"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
BUDGET = "gcp:billing/budget:Budget"
ACCOUNT = "gcp:serviceaccount/account:Account"
IMAGE = "docker-build:index:Image"

# The bootstrap's (Pulumi.prod.yaml), and the ones a stack creates without them.
CAP_EMAIL = "whisper-cap-prod@my-whisper-prod.iam.gserviceaccount.com"
PUSH_EMAIL = "whisper-cap-push-prod@my-whisper-prod.iam.gserviceaccount.com"
CAP_ROLE = "projects/my-whisper-prod/roles/whisperSpendCapProd"
OWN_CAP_EMAIL = "whisper-cap@my-whisper-prod.iam.gserviceaccount.com"
OWN_PUSH_EMAIL = "whisper-cap-push@my-whisper-prod.iam.gserviceaccount.com"
RUNTIME_EMAIL = "whisper-run-prod@my-whisper-prod.iam.gserviceaccount.com"
MONITORING_AGENT = (
    f"serviceAccount:service-{MOCK_PROJECT_NUMBER}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
)


def with_observability(stack: str, **settings: Any) -> Plan:
    config = load_stack_config(stack)
    current = json.loads(config.get("whisper:observability", "{}"))
    config["whisper:observability"] = json.dumps({**current, **settings})
    return run_program(config, stack=stack)


def policies(plan: Plan) -> dict[str, dict[str, Any]]:
    return {
        p.name.removeprefix("observability-"): p.inputs
        for p in plan.of_type(POLICY)
        if p.parent == "observability"
    }


def containers(plan: Plan) -> list[dict[str, Any]]:
    return plan.named("service-service").inputs["template"]["containers"]


def threshold(policy: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return policy["conditions"][index]["conditionThreshold"]


# --- metrics: the sidecar -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_collector_runs_next_to_the_api_and_starts_after_it(
    stack: str, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    api, collector = containers(plan)
    assert api["name"] == "whisper-api"
    assert api["ports"] == {"containerPort": contract.PORT, "name": "http1"}  # the ingress container
    assert api["startupProbe"]["httpGet"]["path"] == contract.READY_PATH  # dependencies need its probe
    assert collector["name"] == "metrics-collector"
    assert collector["dependsOns"] == ["whisper-api"]
    assert "ports" not in collector
    assert collector["image"].startswith(
        "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/"
    )
    assert "@sha256:" in collector["image"] and len(collector["image"].rsplit(":", 1)[1]) == 64
    assert collector["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert collector["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": 13133}


def test_the_sidecars_default_scrape_is_the_services_metrics_endpoint() -> None:
    """No RunMonitoring config is mounted: the sidecar's default target must be the contract's."""
    assert observability.SIDECAR_DEFAULT_SCRAPE == (contract.PORT, contract.METRICS_PATH)


def test_the_runtime_account_may_write_the_metrics() -> None:
    """The sidecar writes as the runtime account: the bootstrap's, or the one a stack creates."""
    assert "roles/monitoring.metricWriter" in keyless_ci.RUNTIME_ROLES
    assert "roles/monitoring.metricWriter" in identity.RUNTIME_ROLES


def test_metrics_off_leaves_one_container_and_no_service_metric_alert() -> None:
    plan = with_observability("prod", metrics=False)
    assert [c["name"] for c in containers(plan)] == ["whisper-api"]
    [instances_at_max] = policies(plan)["saturation"]["conditions"]
    assert "conditionThreshold" in instances_at_max
    assert "queue-full" not in policies(plan)
    dashboard = plan.one(DASHBOARD).inputs["dashboardJson"]
    assert "prometheus.googleapis.com" not in dashboard


def test_every_service_metric_used_is_exported_by_the_service() -> None:
    """The names in alerts and the dashboard are the ones service/whisper_api/telemetry.py exposes."""
    families = {family.name: family.type for family in Metrics().registry.collect()}
    for name, kind in observability.SERVICE_METRICS.items():
        # prometheus_client names a counter's family without the `_total` its samples carry.
        assert families.get(name.removesuffix("_total") if kind == "counter" else name) == kind, name


# --- alert policies -------------------------------------------------------------------------------


def test_one_instance_at_most_has_no_every_instance_busy_alert() -> None:
    """With maxInstances 1 (dev), one active instance is ordinary use, not saturation."""
    plan = with_observability("dev", alerts=True, emails=["oncall@example.com"])
    assert "saturation" not in policies(plan)
    assert {"errors", "latency", "container-failures"} <= set(policies(plan))


def test_prod_has_every_alert_with_documentation_and_the_budget_channels(prod: Plan) -> None:
    found = policies(prod)
    assert set(found) == {"errors", "latency", "saturation", "queue-full", "container-failures", "uptime"}
    channels = sorted(c.outputs["name"] for c in prod.of_type(CHANNEL))
    # platform-oncall@ is a budget recipient already: one channel per address, shared.
    assert len(channels) == 2
    for key, policy in found.items():
        assert sorted(policy["notificationChannels"]) == channels, key
        assert policy["combiner"] == "OR"
        assert policy["project"] == "my-whisper-prod"
        assert policy["documentation"]["mimeType"] == "text/markdown"
        assert "**First check:**" in policy["documentation"]["content"], key
        assert "{" not in policy["documentation"]["content"], key  # every placeholder filled
        assert policy["userLabels"]["app"] == "whisper"


def test_error_ratio_alert_divides_5xx_by_all_requests(prod: Plan) -> None:
    condition = threshold(policies(prod)["errors"])
    scope = (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="whisper" '
        'AND resource.labels.location="europe-west1"'
    )
    assert condition["filter"] == (
        f'{scope} AND metric.type="run.googleapis.com/request_count" '
        'AND metric.label.response_code_class="5xx"'
    )
    assert condition["denominatorFilter"] == f'{scope} AND metric.type="run.googleapis.com/request_count"'
    assert condition["aggregations"][0]["perSeriesAligner"] == "ALIGN_RATE"
    assert condition["denominatorAggregations"][0]["perSeriesAligner"] == "ALIGN_RATE"
    assert (condition["comparison"], condition["thresholdValue"]) == ("COMPARISON_GT", 0.05)


def test_latency_alert_is_p95_of_cloud_runs_latencies_in_ms(prod: Plan) -> None:
    condition = threshold(policies(prod)["latency"])
    assert 'metric.type="run.googleapis.com/request_latencies"' in condition["filter"]
    assert condition["aggregations"][0]["perSeriesAligner"] == "ALIGN_PERCENTILE_95"
    assert condition["thresholdValue"] == 120_000


def test_saturation_watches_max_instances_and_queue_full(prod: Plan) -> None:
    [instances] = policies(prod)["saturation"]["conditions"]
    [queue_full] = policies(prod)["queue-full"]["conditions"]  # PromQL: alone in its policy
    condition = instances["conditionThreshold"]
    assert 'metric.type="run.googleapis.com/container/instance_count"' in condition["filter"]
    assert 'metric.label.state="active"' in condition["filter"]
    assert condition["thresholdValue"] == 2.5  # more than 2.5 active = all 3 (maxInstances)
    assert condition["duration"] == "900s"
    promql = queue_full["conditionPrometheusQueryLanguage"]
    assert promql["query"] == (
        'sum(rate(whisper_http_requests_total{namespace="whisper",endpoint=~"/v1/audio/.*",status="429"}'
        '[5m])) / sum(rate(whisper_http_requests_total{namespace="whisper",endpoint=~"/v1/audio/.*"}[5m]))'
        " > 0.05"
    )
    assert promql["disableMetricValidation"] is True  # the series appear after the first scrape


def test_container_failures_alert_on_cloud_runs_system_log(prod: Plan) -> None:
    policy = policies(prod)["container-failures"]
    log_filter = policy["conditions"][0]["conditionMatchedLog"]["filter"]
    assert 'resource.labels.service_name="whisper"' in log_filter
    assert 'logName="projects/my-whisper-prod/logs/run.googleapis.com%2Fvarlog%2Fsystem"' in log_filter
    assert "severity>=ERROR" in log_filter
    assert policy["alertStrategy"]["notificationRateLimit"]["period"] == "3600s"  # required for log alerts
    assert policy["severity"] == "CRITICAL"


def test_thresholds_come_from_stack_config() -> None:
    plan = with_observability("prod", errorRatio=0.2, p95LatencySeconds=30, queueFullRatio=0.5)
    found = policies(plan)
    assert threshold(found["errors"])["thresholdValue"] == 0.2
    assert threshold(found["latency"])["thresholdValue"] == 30_000
    assert found["queue-full"]["conditions"][0]["conditionPrometheusQueryLanguage"]["query"].endswith("> 0.5")
    assert "20%" in found["errors"]["documentation"]["content"]


def test_dev_alerts_exist_but_warn_that_nobody_is_notified(dev: Plan) -> None:
    assert all(policy["notificationChannels"] == [] for policy in policies(dev).values())
    assert any("alert policies notify no one" in warning for warning in dev.warnings)


def test_alert_emails_without_a_budget_get_their_own_channels() -> None:
    plan = with_observability("dev", emails=["oncall@example.com"])
    [channel] = plan.of_type(CHANNEL)
    assert channel.name == "observability-email-oncall-example-com"
    assert channel.inputs["labels"] == {"email_address": "oncall@example.com"}
    assert channel.parent == "observability"
    assert all(p["notificationChannels"] == [channel.outputs["name"]] for p in policies(plan).values())
    assert not any("notify no one" in warning for warning in plan.warnings)


def test_everything_is_optional() -> None:
    plan = with_observability("prod", alerts=False, dashboard=False, uptimeCheck=False, metrics=False)
    assert policies(plan) == {}
    assert plan.of_type(DASHBOARD) == [] and plan.of_type(UPTIME) == []


# --- uptime check ---------------------------------------------------------------------------------


def test_uptime_check_authenticates_to_the_private_service(prod: Plan) -> None:
    check = prod.one(UPTIME)
    http = check.inputs["httpCheck"]
    assert http["path"] == contract.READY_PATH
    assert (http["port"], http["useSsl"]) == (443, True)
    assert http["serviceAgentAuthentication"] == {"type": "OIDC_TOKEN"}
    assert http["acceptedResponseStatusCodes"] == [{"statusClass": "STATUS_CLASS_2XX"}]
    assert check.inputs["monitoredResource"] == {
        "type": "cloud_run_revision",
        "labels": {"project_id": "my-whisper-prod", "location": "europe-west1", "service_name": "whisper"},
    }
    assert check.inputs["period"] == "300s"
    [agent] = [m for m in prod.of_type(RUN_IAM) if m.inputs["member"] == MONITORING_AGENT]
    assert (agent.inputs["role"], agent.inputs["name"]) == ("roles/run.invoker", "whisper")
    assert prod.waits_for(agent, prod.named("service-service"))


def test_the_monitoring_agent_is_granted_only_after_the_check_that_brings_it(prod: Plan) -> None:
    """On a new project the notification agent exists once a check uses it: grant it afterwards."""
    [agent] = [m for m in prod.of_type(RUN_IAM) if m.inputs["member"] == MONITORING_AGENT]
    check = prod.one(UPTIME)
    assert prod.waits_for(agent, check)
    assert not prod.waits_for(check, agent)
    assert prod.waits_for(check, prod.named("apis"))


def test_the_checks_monitored_resource_cannot_replace_it_on_every_up(prod: Plan) -> None:
    """The API adds configuration_name and revision_name to cloud_run_revision; the provider suppresses
    only project_id, on a field that forces replacement."""
    assert prod.one(UPTIME).ignore_changes == ("monitoredResource",)


def test_uptime_alert_follows_the_check(prod: Plan) -> None:
    condition = threshold(policies(prod)["uptime"])
    check_id = prod.one(UPTIME).outputs["uptimeCheckId"]
    assert condition["filter"] == (
        'metric.type="monitoring.googleapis.com/uptime_check/check_passed" '
        f'AND metric.label.check_id="{check_id}"'
    )
    assert condition["aggregations"][0]["crossSeriesReducer"] == "REDUCE_COUNT_FALSE"
    assert (condition["comparison"], condition["thresholdValue"]) == ("COMPARISON_GT", 1)


def test_no_uptime_check_when_it_would_wake_a_gpu(dev: Plan) -> None:
    """Dev scales to zero: a check every 5 minutes would keep an L4 instance running all month."""
    assert dev.of_type(UPTIME) == []
    assert MONITORING_AGENT not in {m.inputs["member"] for m in dev.of_type(RUN_IAM)}


# --- dashboard ------------------------------------------------------------------------------------


def test_dashboard_charts_what_on_call_needs(prod: Plan) -> None:
    board = json.loads(prod.one(DASHBOARD).inputs["dashboardJson"])
    tiles = board["mosaicLayout"]["tiles"]
    filters = [
        data_set["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
        for tile in tiles
        for data_set in tile["widget"]["xyChart"]["dataSets"]
    ]
    text = "\n".join(filters)
    for metric in (
        "run.googleapis.com/request_count",
        "run.googleapis.com/request_latencies",
        "run.googleapis.com/container/instance_count",
        "run.googleapis.com/container/billable_instance_time",
        "run.googleapis.com/container/gpu/utilizations",
        "run.googleapis.com/container/gpu/memory_utilizations",
        "prometheus.googleapis.com/whisper_real_time_factor/histogram",
        "prometheus.googleapis.com/whisper_queue_depth/gauge",
        "prometheus.googleapis.com/whisper_requests_admitted/gauge",
        "prometheus.googleapis.com/whisper_http_requests_total/counter",
    ):
        assert f'metric.type="{metric}"' in text, metric
    assert all('"whisper"' in f for f in filters)  # every chart is scoped to this service
    for tile in tiles:  # tiles never overlap in the 12-column grid
        assert tile["xPos"] >= 0 and tile["xPos"] + tile["width"] <= board["mosaicLayout"]["columns"]
    positions = {(t["xPos"], t["yPos"]) for t in tiles}
    assert len(positions) == len(tiles)
    [instances] = [t for t in tiles if t["widget"]["title"] == "Instances by state"]
    assert instances["widget"]["xyChart"]["thresholds"] == [{"label": "maxInstances", "value": 3}]


# --- the budget's topic and the spend cap -----------------------------------------------------------


def test_the_budget_publishes_to_a_topic_only_billing_may_publish_to(prod: Plan) -> None:
    topic = prod.one(TOPIC)
    rule = prod.one(BUDGET).inputs["allUpdatesRule"]
    assert rule["pubsubTopic"] == "budget-topic-id"  # the topic's ID, as the mocks hand it out
    assert topic.inputs["name"] == "whisper-budget"
    assert rule["schemaVersion"] == "1.0"
    assert len(rule["monitoringNotificationChannels"]) == 2  # the e-mails still go out
    [publisher] = prod.of_type(TOPIC_IAM)
    assert (publisher.inputs["role"], publisher.inputs["member"]) == (
        "roles/pubsub.publisher",
        BUDGET_PUBLISHER,
    )
    assert prod.waits_for(prod.one(BUDGET), publisher)


def test_dev_has_no_spend_cap(dev: Plan) -> None:
    assert dev.of_type(TOPIC) == [] and dev.of_type(SUBSCRIPTION) == []
    assert [s.inputs["name"] for s in dev.of_type(RUN_SERVICE)] == ["whisper"]


@pytest.fixture(scope="module")
def own_identities() -> Plan:
    """prod without the bootstrap's identities: the stack creates them, so a project owner deploys it
    (without whisper:serviceAccount, which marks a CI-deployed stack and would be refused)."""
    config = load_stack_config("prod")
    del config["whisper:serviceAccount"]
    cap = json.loads(config["whisper:spendCap"])
    config["whisper:spendCap"] = json.dumps({"enabled": True, "fraction": cap["fraction"]})
    return run_program(config, stack="prod")


def test_with_the_bootstraps_identities_the_stack_only_grants_the_role_on_the_service(prod: Plan) -> None:
    assert prod.of_type(CUSTOM_ROLE) == [] and prod.of_type(ACCOUNT_IAM) == []
    assert not [a for a in prod.of_type(ACCOUNT) if a.parent == "spend-cap"]
    grants = [r for r in prod.resources if r.inputs.get("member") == f"serviceAccount:{CAP_EMAIL}"]
    assert [(g.type, g.inputs["role"], g.inputs["name"]) for g in grants] == [(RUN_IAM, CAP_ROLE, "whisper")]
    assert not [b for b in prod.of_type(PROJECT_IAM) if "cap" in b.inputs["member"]]  # nothing project-wide


def test_the_cap_may_only_read_and_update_this_service(own_identities: Plan) -> None:
    plan = own_identities
    role = plan.one(CUSTOM_ROLE)
    assert sorted(role.inputs["permissions"]) == ["run.services.get", "run.services.update"]
    cap_accounts = [a for a in plan.of_type(ACCOUNT) if a.parent == "spend-cap"]
    assert sorted(a.inputs["accountId"] for a in cap_accounts) == ["whisper-cap", "whisper-cap-push"]
    cap_member = f"serviceAccount:{OWN_CAP_EMAIL}"
    grants = [r for r in plan.resources if r.inputs.get("member") == cap_member]
    assert sorted((g.type, g.inputs["role"]) for g in grants) == sorted(
        [(RUN_IAM, role.outputs["name"]), (ACCOUNT_IAM, "roles/iam.serviceAccountUser")]
    )
    [on_service] = [g for g in grants if g.type == RUN_IAM]
    assert (on_service.inputs["name"], on_service.inputs["location"]) == ("whisper", "europe-west1")
    [act_as] = [g for g in grants if g.type == ACCOUNT_IAM]
    runtime = plan.outputs["service_account_email"]
    assert act_as.inputs["serviceAccountId"] == f"projects/my-whisper-prod/serviceAccounts/{runtime}"
    assert not [b for b in plan.of_type(PROJECT_IAM) if "cap" in b.inputs["member"]]  # nothing project-wide
    cap = plan.named("spend-cap-service").inputs["template"]
    assert cap["serviceAccount"] == OWN_CAP_EMAIL
    subscription = plan.one(SUBSCRIPTION).inputs
    assert subscription["pushConfig"]["oidcToken"] == {"serviceAccountEmail": OWN_PUSH_EMAIL}


def test_the_cap_runs_privately_as_its_own_account(prod: Plan) -> None:
    cap = prod.named("spend-cap-service").inputs
    assert cap["name"] == "whisper-spend-cap"
    assert cap["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert cap["invokerIamDisabled"] is False
    template = cap["template"]
    assert template["serviceAccount"] == CAP_EMAIL
    assert template["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}
    [container] = template["containers"]
    env = {e["name"]: e["value"] for e in container["envs"]}
    assert env == {
        "CAP_SERVICE": "projects/my-whisper-prod/locations/europe-west1/services/whisper",
        "CAP_BUDGET_ID": "budget-budget",
        "CAP_FRACTION": "1",
    }
    assert container["image"] == prod.named("spend-cap-build").outputs["ref"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    build = prod.named("spend-cap-build")
    assert build.inputs["context"]["location"] == "infra/spend_cap_function"
    assert build.inputs["tags"] == ["europe-west1-docker.pkg.dev/my-whisper-prod/whisper/spend-cap:latest"]
    assert "registries" in build.secret_inputs
    assert build.protect is False


def test_pubsub_pushes_to_the_cap_as_an_identity_that_may_only_invoke_it(prod: Plan) -> None:
    subscription = prod.one(SUBSCRIPTION).inputs
    assert subscription["topic"] == "budget-topic-id"
    cap = prod.named("spend-cap-service")
    assert subscription["pushConfig"]["pushEndpoint"] == cap.outputs["uri"]
    assert subscription["pushConfig"]["oidcToken"] == {"serviceAccountEmail": PUSH_EMAIL}
    assert subscription["expirationPolicy"] == {"ttl": ""}
    grants = [r for r in prod.resources if r.inputs.get("member") == f"serviceAccount:{PUSH_EMAIL}"]
    assert [(g.type, g.inputs["role"], g.inputs["name"]) for g in grants] == [
        (RUN_IAM, "roles/run.invoker", "whisper-spend-cap")
    ]
    assert prod.waits_for(prod.one(SUBSCRIPTION), grants[0])


def test_an_engaged_cap_pages_the_alert_channels(prod: Plan) -> None:
    alert = prod.named("spend-cap-engaged").inputs
    log_filter = alert["conditions"][0]["conditionMatchedLog"]["filter"]
    assert 'resource.labels.service_name="whisper-spend-cap"' in log_filter
    assert '"spend_cap_engaged"' in log_filter
    assert len(alert["notificationChannels"]) == 2
    assert "pulumi up --refresh" in alert["documentation"]["content"]
    # Deploys keep an engaged cap: lifting it starts with removing its label.
    assert "--remove-labels spend-cap" in alert["documentation"]["content"]


def test_a_lower_fraction_reaches_the_function() -> None:
    config = load_stack_config("prod")
    config["whisper:spendCap"] = json.dumps({**json.loads(config["whisper:spendCap"]), "fraction": 0.8})
    plan = run_program(config, stack="prod")
    [container] = plan.named("spend-cap-service").inputs["template"]["containers"]
    assert {"name": "CAP_FRACTION", "value": "0.8"} in container["envs"]
