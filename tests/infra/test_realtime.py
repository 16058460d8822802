"""`whisper:realtime` on the mock runtime: a session is one Cloud Run request for its whole length,
so the request timeout covers it, affinity is on, the concurrency counts sessions on top of uploads,
the service is told how many it may hold, and an alert watches their finalisation latency."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from infra import observability
from infra.config import ConfigError, parse_config
from infra.mockrun import Plan, load_stack_config, run_program
from infra.service import request_deadline_s
from infra.shared import contract
from whisper_api.realtime.metrics import RealtimeMetrics

WHISPER = "service-service"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"


def with_realtime(stack: str, **realtime: object) -> Plan:
    config = {**load_stack_config(stack), "whisper:realtime": json.dumps(realtime)}
    return run_program(config, stack=stack)


def template(plan: Plan) -> dict:
    return plan.named(WHISPER).inputs["template"]


def env(plan: Plan) -> dict[str, str]:
    return {item["name"]: item["value"] for item in template(plan)["containers"][0]["envs"]}


def test_off_by_default_the_service_holds_no_session(dev: Plan) -> None:
    assert env(dev)[contract.ENV_REALTIME_MAX_SESSIONS] == "0"
    assert contract.ENV_REALTIME_MAX_SESSION_S not in env(dev)
    assert not template(dev).get("sessionAffinity")


def test_sessions_raise_the_timeout_turn_affinity_on_and_count_in_the_concurrency() -> None:
    config = load_stack_config("prod")
    plan = with_realtime("prod", enabled=True, sessions=6, sessionSeconds=1800)
    run = template(plan)
    assert run["timeout"] == "1800s"
    assert run["sessionAffinity"] is True
    assert run["maxInstanceRequestConcurrency"] == int(config["whisper:concurrency"]) + 6
    variables = env(plan)
    assert variables[contract.ENV_REALTIME_MAX_SESSIONS] == "6"
    assert variables[contract.ENV_REALTIME_MAX_SESSION_S] == "1770"  # ends before Cloud Run cuts it
    # Uploads keep their own deadline and queue.
    upload_deadline = request_deadline_s(int(config["whisper:timeoutSeconds"]))
    assert variables[contract.ENV_REQUEST_TIMEOUT] == f"{upload_deadline:g}"
    assert variables[contract.ENV_QUEUE_SIZE] == config["whisper:concurrency"]


def test_an_alert_watches_the_finalisation_latency_with_metrics_on() -> None:
    plan = with_realtime("prod", enabled=True)
    found = {p.name.removeprefix("observability-"): p.inputs for p in plan.of_type(POLICY)}
    [condition] = found["realtime-finalisation"]["conditions"]
    query = condition["conditionPrometheusQueryLanguage"]["query"]
    assert query == observability.finalisation_query("whisper", observability.FINALISATION_P95_S)
    assert "whisper_realtime_finalisation_seconds_bucket" in query and 'namespace="whisper"' in query
    assert "realtime-finalisation" not in {
        p.name.removeprefix("observability-")
        for p in run_program(load_stack_config("prod"), stack="prod").of_type(POLICY)
    }


def test_the_realtime_metrics_infra_names_are_the_ones_the_service_exports() -> None:
    registry = CollectorRegistry()
    RealtimeMetrics(registry)
    families = {family.name: family.type for family in registry.collect()}
    for name, kind in observability.REALTIME_METRICS.items():
        assert families.get(name.removesuffix("_total") if kind == "counter" else name) == kind, name


@pytest.mark.parametrize(
    ("realtime", "message"),
    [
        ({"enabled": True, "sessions": 0}, "whisper:realtime.sessions 0 must be a whole number from 1"),
        (
            {"enabled": True, "sessionSeconds": 7200},
            "whisper:realtime.sessionSeconds 7200 must be a whole number",
        ),
        (
            {"enabled": True, "sessionSeconds": 100},
            "whisper:realtime.sessionSeconds 100 must be a whole number from 300",
        ),
        ({"enabled": "yes"}, "whisper:realtime.enabled 'yes' is not true or false"),
        ({"enabled": True, "affinity": False}, "whisper:realtime.affinity is not a known key"),
    ],
)
def test_bad_realtime_settings_say_how_to_fix_them(realtime: dict[str, object], message: str) -> None:
    config = {**load_stack_config("dev"), "whisper:realtime": json.dumps(realtime)}
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert message in str(error.value)
    assert "pulumi config" in str(error.value)
