"""infra.config's whisper:observability and whisper:spendCap keys: defaults, and every mistake named."""

import json

import pytest

from infra.config import ConfigError, ObservabilityConfig, SpendCapConfig, parse_config
from infra.mockrun import load_stack_config

VALID = {"gcp:project": "my-whisper-dev"}
BUDGET = json.dumps({"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "emails": ["a@example.com"]})


def problems(**config: object) -> list[str]:
    raw = {**VALID, **{f"whisper:{key}": json.dumps(value) for key, value in config.items()}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def only_problem(**config: object) -> str:
    found = problems(**config)
    assert len(found) == 1, found
    return found[0]


def test_defaults_observe_everything_but_never_wake_a_gpu_or_cap_spend() -> None:
    cfg = parse_config(VALID)
    assert cfg.observability == ObservabilityConfig()
    assert (cfg.observability.metrics, cfg.observability.alerts, cfg.observability.dashboard) == (
        True,
        True,
        True,
    )
    assert cfg.observability.uptime_check is False
    assert cfg.spend_cap is None


def test_uptime_check_defaults_on_when_an_instance_is_kept_warm() -> None:
    assert parse_config({**VALID, "whisper:minInstances": "1"}).observability.uptime_check is True


def test_no_uptime_check_on_an_internal_service() -> None:
    internal = {**VALID, "whisper:minInstances": "1", "whisper:ingress": "internal"}
    assert parse_config(internal).observability.uptime_check is False
    with pytest.raises(ConfigError) as caught:
        parse_config({**internal, "whisper:observability": json.dumps({"uptimeCheck": True})})
    [problem] = caught.value.problems
    assert "whisper:observability.uptimeCheck needs whisper:ingress all" in problem
    assert "'whisper:observability.uptimeCheck' false" in problem


def test_p95_default_stays_below_a_short_timeout() -> None:
    cfg = parse_config({**VALID, "whisper:timeoutSeconds": "60"})
    assert cfg.observability.p95_latency_seconds == 48


def test_prod_example_caps_spend_and_checks_uptime() -> None:
    cfg = parse_config(load_stack_config("prod"))
    assert cfg.spend_cap == SpendCapConfig(
        fraction=1.0,
        service_account="whisper-cap-prod@my-whisper-prod.iam.gserviceaccount.com",
        push_service_account="whisper-cap-push-prod@my-whisper-prod.iam.gserviceaccount.com",
        role="projects/my-whisper-prod/roles/whisperSpendCapProd",
    )
    assert cfg.observability.uptime_check is True
    assert cfg.observability.emails == ("platform-oncall@example.com",)


def test_dev_example_has_no_spend_cap() -> None:
    assert parse_config(load_stack_config("dev")).spend_cap is None


def test_thresholds_are_read() -> None:
    cfg = parse_config(
        {
            **VALID,
            "whisper:observability": json.dumps(
                {"errorRatio": 0.1, "p95LatencySeconds": 30, "queueFullRatio": 1}
            ),
        }
    )
    assert (cfg.observability.error_ratio, cfg.observability.p95_latency_seconds) == (0.1, 30.0)
    assert cfg.observability.queue_full_ratio == 1.0


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"alert": True}, "whisper:observability.alert is not a known key"),
        ({"alerts": "yes"}, "whisper:observability.alerts 'yes' is not true or false"),
        ({"errorRatio": 5}, "whisper:observability.errorRatio 5 must be a fraction of requests in (0, 1]"),
        ({"errorRatio": 0}, "whisper:observability.errorRatio 0 must be"),
        ({"queueFullRatio": True}, "whisper:observability.queueFullRatio True must be"),
        ({"p95LatencySeconds": 400}, "whisper:observability.p95LatencySeconds 400 must be seconds, at most"),
        ({"uptimePeriodSeconds": 30}, "whisper:observability.uptimePeriodSeconds 30 must be one of 60, 300"),
        ({"emails": ["oncall"]}, "whisper:observability.emails entry 'oncall' is not an email address"),
    ],
)
def test_observability_mistakes_name_the_key_and_the_fix(settings: dict[str, object], expected: str) -> None:
    problem = only_problem(observability=settings)
    assert expected in problem
    assert "pulumi config" in problem


def test_an_api_key_turns_metrics_off_because_it_also_guards_metrics() -> None:
    keyed = {**VALID, "whisper:apiKeySecret": "whisper-api-key"}
    assert parse_config(keyed).observability.metrics is False
    with pytest.raises(ConfigError) as caught:
        parse_config({**keyed, "whisper:observability": json.dumps({"metrics": True})})
    [problem] = caught.value.problems
    assert "whisper:observability.metrics is true but an API key" in problem
    assert "pulumi config set --path 'whisper:observability.metrics' false" in problem


def test_spend_cap_needs_a_budget_to_listen_to() -> None:
    problem = only_problem(spendCap={"enabled": True})
    assert "whisper:spendCap.enabled needs a budget" in problem
    assert "whisper:budget.billingAccount" in problem


def test_spend_cap_with_a_budget() -> None:
    raw = {
        **VALID,
        "whisper:budget": BUDGET,
        "whisper:spendCap": json.dumps({"enabled": True, "fraction": 0.8}),
    }
    assert parse_config(raw).spend_cap == SpendCapConfig(fraction=0.8)


def test_a_disabled_spend_cap_needs_nothing() -> None:
    assert parse_config({**VALID, "whisper:spendCap": json.dumps({"enabled": False})}).spend_cap is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"enabled": "true"}, "whisper:spendCap.enabled 'true' is not true or false"),
        (
            {"enabled": True, "fraction": 0},
            "whisper:spendCap.fraction 0 must be a fraction of the budget amount",
        ),
        ({"enabled": True, "fraction": 50}, "whisper:spendCap.fraction 50 must be"),
        ({"enabled": True, "at": 1}, "whisper:spendCap.at is not a known key"),
        (
            {"enabled": True, "serviceAccount": "whisper-cap-dev@my-whisper-dev.iam.gserviceaccount.com"},
            "whisper:spendCap needs serviceAccount, pushServiceAccount and role together",
        ),
        (
            {
                "enabled": True,
                "serviceAccount": "whisper-cap@other-project.iam.gserviceaccount.com",
                "pushServiceAccount": "whisper-cap-push-dev@my-whisper-dev.iam.gserviceaccount.com",
                "role": "projects/my-whisper-dev/roles/whisperSpendCapDev",
            },
            "whisper:spendCap.serviceAccount 'whisper-cap@other-project.iam.gserviceaccount.com' must be",
        ),
        (
            {
                "enabled": True,
                "serviceAccount": "whisper-cap-dev@my-whisper-dev.iam.gserviceaccount.com",
                "pushServiceAccount": "whisper-cap-push-dev@my-whisper-dev.iam.gserviceaccount.com",
                "role": "roles/run.developer",
            },
            "whisper:spendCap.role 'roles/run.developer' must be a custom role of my-whisper-dev",
        ),
    ],
)
def test_spend_cap_mistakes_name_the_key_and_the_fix(settings: dict[str, object], expected: str) -> None:
    raw = {**VALID, "whisper:budget": BUDGET, "whisper:spendCap": json.dumps(settings)}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert any(expected in problem and "pulumi config" in problem for problem in caught.value.problems)
