"""infra.config: every validation error names the key and the fix; good values become typed config."""

import json
from collections.abc import Mapping

import pytest

from infra.config import ConfigError, StackConfig, parse_config
from infra.mockrun import load_stack_config
from infra.shared import contract

VALID = {
    "gcp:project": "my-whisper-dev",
    "whisper:region": "us-central1",
    "whisper:cpu": "4",
    "whisper:memory": "16Gi",
}


def problems(**overrides: str | None) -> list[str]:
    raw = {**VALID, **{key.replace("__", ":"): value for key, value in overrides.items()}}
    raw = {key: value for key, value in raw.items() if value is not None}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def only_problem(**overrides: str | None) -> str:
    found = problems(**overrides)
    assert len(found) == 1, found
    return found[0]


def test_defaults_are_a_cheap_private_service() -> None:
    cfg = parse_config({"gcp:project": "my-whisper-dev"})
    assert cfg.engine == contract.DEFAULT_ENGINE
    assert cfg.model == contract.DEFAULT_IMAGE_MODEL
    assert (cfg.min_instances, cfg.max_instances) == (0, 1)
    assert cfg.invoker_members == ()
    assert cfg.public is False
    assert cfg.deletion_protection is True
    assert cfg.budget is None
    assert cfg.budget_skipped_reason is not None
    assert "whisper:budget.billingAccount" in cfg.budget_skipped_reason


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_example_stacks_are_valid(stack: str) -> None:
    assert isinstance(parse_config(load_stack_config(stack)), StackConfig)


def test_numbers_from_yaml_floats_are_accepted() -> None:
    cfg = parse_config({**VALID, "whisper:maxInstances": "3.0", "whisper:cpu": "6.0"})
    assert (cfg.max_instances, cfg.cpu) == (3, 6)


def test_public_grants_all_users_only() -> None:
    assert parse_config({**VALID, "whisper:public": "true"}).invoker_members == ("allUsers",)


def test_env_values_become_strings() -> None:
    cfg = parse_config({**VALID, "whisper:env": '{"WHISPER_BEAM_SIZE": 5, "WHISPER_VAD_FILTER": false}'})
    assert cfg.env == {"WHISPER_BEAM_SIZE": "5", "WHISPER_VAD_FILTER": "false"}


def test_budget_is_parsed_and_sorted() -> None:
    budget = (
        '{"billingAccount": "billingAccounts/012345-6789AB-CDEF01", "amount": 100, '
        '"thresholds": [1.0, 0.5], "emails": ["ops@example.com"]}'
    )
    cfg = parse_config({**VALID, "whisper:budget": budget})
    assert cfg.budget is not None
    assert cfg.budget.billing_account == "012345-6789AB-CDEF01"
    assert cfg.budget.thresholds == (0.5, 1.0)
    assert cfg.budget.forecast_thresholds == (1.0,)
    assert cfg.budget.currency == "USD"
    assert cfg.budget_skipped_reason is None


def test_budget_without_billing_account_is_skipped_not_an_error() -> None:
    cfg = parse_config({**VALID, "whisper:budget": '{"amount": 100, "emails": ["ops@example.com"]}'})
    assert cfg.budget is None
    assert "pulumi config set --path 'whisper:budget.billingAccount'" in (cfg.budget_skipped_reason or "")


# One case per validation rule: (overrides, the key the message must name, a fragment of the fix).
CASES: Mapping[str, tuple[dict[str, str | None], str, str]] = {
    "project missing": ({"gcp__project": None}, "gcp:project", "pulumi config set gcp:project"),
    "project malformed": ({"gcp__project": "My Project"}, "gcp:project", "pulumi config set gcp:project"),
    "region without L4": ({"whisper__region": "us-west1"}, "whisper:region", "whisper:region us-central1"),
    "unknown gpu type": ({"whisper__gpuType": "nvidia-a100"}, "whisper:gpuType", "whisper:gpuType nvidia-l4"),
    "too few cpus": ({"whisper__cpu": "2"}, "whisper:cpu", "whisper:cpu 4"),
    "cpu not a number": ({"whisper__cpu": "four"}, "whisper:cpu", "whisper:cpu 4"),
    "too little memory": ({"whisper__memory": "8Gi"}, "whisper:memory", "whisper:memory 16Gi"),
    "memory malformed": ({"whisper__memory": "16GB"}, "whisper:memory", "whisper:memory 16Gi"),
    "max below min": (
        {"whisper__minInstances": "3", "whisper__maxInstances": "2"},
        "whisper:maxInstances",
        "whisper:maxInstances 3",
    ),
    "max zero": ({"whisper__maxInstances": "0"}, "whisper:maxInstances", "whisper:maxInstances 1"),
    "max unbounded": ({"whisper__maxInstances": "1000"}, "whisper:maxInstances", "whisper:maxInstances 1"),
    "min negative": ({"whisper__minInstances": "-1"}, "whisper:minInstances", "whisper:minInstances 0"),
    "concurrency zero": ({"whisper__concurrency": "0"}, "whisper:concurrency", "whisper:concurrency 4"),
    "timeout too long": ({"whisper__timeoutSeconds": "7200"}, "whisper:timeoutSeconds", "timeoutSeconds 300"),
    "timeout zero": ({"whisper__timeoutSeconds": "0"}, "whisper:timeoutSeconds", "timeoutSeconds 300"),
    "bool malformed": ({"whisper__public": "maybe"}, "whisper:public", "whisper:public false"),
    "unknown engine": ({"whisper__engine": "whisper.cpp"}, "whisper:engine", "whisper:engine faster-whisper"),
    "model with spaces": ({"whisper__model": "large v3"}, "whisper:model", "whisper:model large-v3-turbo"),
    "model revision a branch": (
        {"whisper__modelRevision": "main"},
        "whisper:modelRevision",
        "pulumi config set whisper:modelRevision",
    ),
    "service name": ({"whisper__serviceName": "Whisper_API"}, "whisper:serviceName", "serviceName whisper"),
    "ingress": ({"whisper__ingress": "public"}, "whisper:ingress", "whisper:ingress all"),
    "public with invokers": (
        {"whisper__public": "true", "whisper__invokers": '["user:a@example.com"]'},
        "whisper:public",
        "pulumi config rm whisper:invokers",
    ),
    "allUsers in invokers": (
        {"whisper__invokers": '["allUsers"]'},
        "whisper:invokers",
        "pulumi config set whisper:public true",
    ),
    "invoker without prefix": (
        {"whisper__invokers": '["a@example.com"]'},
        "whisper:invokers",
        "whisper:invokers",
    ),
    "invoker malformed email": (
        {"whisper__invokers": '["user:not-an-email"]'},
        "whisper:invokers",
        "whisper:invokers",
    ),
    "invokers not a list": ({"whisper__invokers": '"user:a@example.com"'}, "whisper:invokers", "invokers"),
    "keep images": ({"whisper__keepImages": "0"}, "whisper:keepImages", "whisper:keepImages 5"),
    "retention": (
        {"whisper__untaggedRetentionDays": "0"},
        "whisper:untaggedRetentionDays",
        "RetentionDays 7",
    ),
    "unknown key": (
        {"whisper__maxInstance": "3"},
        "whisper:maxInstance",
        "pulumi config rm whisper:maxInstance",
    ),
    "env outside prefix": ({"whisper__env": '{"HF_TOKEN": "x"}'}, "whisper:env", "whisper:env.WHISPER_"),
    "env managed": (
        {"whisper__env": '{"WHISPER_QUEUE_SIZE": "9"}'},
        "whisper:env",
        "pulumi config rm --path",
    ),
    "budget account malformed": (
        {"whisper__budget": '{"billingAccount": "12345", "amount": 100}'},
        "whisper:budget.billingAccount",
        "whisper:budget.billingAccount",
    ),
    "budget amount missing": (
        {"whisper__budget": '{"billingAccount": "012345-6789AB-CDEF01"}'},
        "whisper:budget.amount",
        "whisper:budget.amount' 100",
    ),
    "budget threshold as percent": (
        {"whisper__budget": '{"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "thresholds": [50]}'},
        "whisper:budget.thresholds",
        "0.5 means 50 %",
    ),
    "budget threshold zero": (
        {
            "whisper__budget": '{"billingAccount": "012345-6789AB-CDEF01", "amount": 100, '
            '"forecastThresholds": [0]}'
        },
        "whisper:budget.forecastThresholds",
        "budget.forecastThresholds[0]",
    ),
    "budget email malformed": (
        {"whisper__budget": '{"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "emails": ["ops"]}'},
        "whisper:budget.emails",
        "budget.emails[0]",
    ),
    "budget currency": (
        {"whisper__budget": '{"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "currency": "usd"}'},
        "whisper:budget.currency",
        "budget.currency' USD",
    ),
    "budget unknown key": (
        {"whisper__budget": '{"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "limit": 5}'},
        "whisper:budget.limit",
        "pulumi config rm --path 'whisper:budget.limit'",
    ),
}


@pytest.mark.parametrize("overrides, key, fix", CASES.values(), ids=CASES.keys())
def test_each_mistake_names_its_key_and_fix(overrides: dict[str, str | None], key: str, fix: str) -> None:
    message = only_problem(**overrides)
    assert message.startswith(key), message
    assert fix in message, message


def test_every_mistake_is_reported_at_once() -> None:
    found = problems(whisper__region="us-west1", whisper__cpu="2", whisper__engine="nope")
    assert [p.split(" ", 1)[0] for p in found] == ["whisper:region", "whisper:engine", "whisper:cpu"]
    with pytest.raises(ConfigError, match=r"3 problem\(s\)"):
        parse_config({**VALID, "whisper:region": "us-west1", "whisper:cpu": "2", "whisper:engine": "nope"})


def test_service_account_must_be_an_account_of_the_stacks_project() -> None:
    good = "whisper-run-dev@my-whisper-dev.iam.gserviceaccount.com"
    assert parse_config({**VALID, "whisper:serviceAccount": good}).service_account == good
    assert parse_config(VALID).service_account is None
    for bad in ("whisper-run-dev", "whisper-run@other-project.iam.gserviceaccount.com", "me@example.com"):
        message = only_problem(whisper__serviceAccount=bad)
        assert message.startswith(f"whisper:serviceAccount {bad!r} must be a service account e-mail")
        assert "pulumi config set whisper:serviceAccount whisper-run-dev@my-whisper-dev" in message


@pytest.mark.parametrize(
    ("cpu", "memory", "fix"),
    [("4", "20Gi", "pulumi config set whisper:cpu 6"), ("6", "32Gi", "pulumi config set whisper:cpu 8")],
)
def test_memory_above_cloud_runs_table_for_the_cpu_is_refused(cpu: str, memory: str, fix: str) -> None:
    message = only_problem(whisper__cpu=cpu, whisper__memory=memory)
    assert message.startswith(f"whisper:memory {memory} is more than Cloud Run allows with {cpu} vCPU")
    assert fix in message


NO_METRICS = {"whisper:observability": '{"metrics": false}'}


@pytest.mark.parametrize(("cpu", "memory"), [("4", "16Gi"), ("6", "24Gi"), ("6", "24576Mi"), ("8", "32Gi")])
def test_memory_within_the_table_is_accepted(cpu: str, memory: str) -> None:
    config = {**VALID, **NO_METRICS, "whisper:cpu": cpu, "whisper:memory": memory}
    assert parse_config(config).memory == memory


@pytest.mark.parametrize(
    ("cpu", "memory", "total", "fixes"),
    [
        ("8", "32Gi", "9 vCPU / 32.5Gi", ["whisper:cpu 6 && pulumi config set whisper:memory 24Gi"]),
        ("8", "16Gi", "9 vCPU / 16.5Gi", ["pulumi config set whisper:cpu 6 (or"]),
    ],
)
def test_api_and_metrics_sidecar_beyond_one_instance_are_refused(
    cpu: str, memory: str, total: str, fixes: list[str]
) -> None:
    # Cloud Run's 8 vCPU / 32 GiB hold every container of the instance, the sidecar's 1 vCPU / 512Mi too.
    message = only_problem(whisper__cpu=cpu, whisper__memory=memory)
    assert message.startswith(f"whisper:cpu {cpu} and whisper:memory {memory} plus the metrics sidecar")
    assert f"come to {total}, more than one Cloud Run instance holds (8 vCPU, 32Gi" in message
    for fix in fixes:
        assert fix in message
    assert "pulumi config set --path 'whisper:observability.metrics' false" in message
    assert parse_config({**VALID, **NO_METRICS, "whisper:cpu": cpu, "whisper:memory": memory}).cpu == 8


@pytest.mark.parametrize(("cpu", "memory"), [("4", "16Gi"), ("6", "24Gi")])
def test_api_and_metrics_sidecar_within_one_instance_are_accepted(cpu: str, memory: str) -> None:
    config = parse_config({**VALID, "whisper:cpu": cpu, "whisper:memory": memory})
    assert (config.observability.metrics, config.cpu, config.memory) == (True, int(cpu), memory)


def budget_with(emails: list[str]) -> str:
    return json.dumps({"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "emails": emails})


def test_more_budget_emails_than_the_budget_api_notifies_are_refused() -> None:
    six = [f"ops{i}@example.com" for i in range(6)]
    message = only_problem(whisper__budget=budget_with(six))
    assert "whisper:budget.emails has 6 addresses; a budget notifies at most 5 channels" in message
    assert parse_config({**VALID, "whisper:budget": budget_with(six[:5])}).budget is not None


def test_a_budget_email_listed_twice_is_refused() -> None:
    message = only_problem(whisper__budget=budget_with(["a@example.com", "a@example.com"]))
    assert "lists a@example.com more than once" in message


@pytest.mark.parametrize("name", ["WHISPER_API_KEY", "WHISPER_API_KEY_FILE"])
def test_api_key_in_env_is_refused_and_points_to_secret_manager(name: str) -> None:
    message = only_problem(whisper__env=json.dumps({name: "sk-abcdefabcdefabcdef"}))
    assert f"whisper:env {name!r} would put the API key in the stack file" in message
    assert "pulumi config set --secret whisper:apiKey" in message
    assert "sk-abcdef" not in message


def test_api_key_from_a_stack_secret_or_an_existing_secret() -> None:
    key = "k" * 32
    cfg = parse_config({**VALID, "whisper:apiKey": key}, secret_keys={"whisper:apiKey"})
    assert (cfg.api_key, cfg.api_key_secret, cfg.has_api_key) == (key, None, True)
    assert key not in repr(cfg)
    cfg = parse_config({**VALID, "whisper:apiKeySecret": "whisper-api-key"})
    assert (cfg.api_key, cfg.api_key_secret) == (None, "whisper-api-key")
    assert not parse_config(VALID).has_api_key


@pytest.mark.parametrize(
    ("extra", "secret_keys", "expected"),
    [
        ({"whisper:apiKey": "k" * 32}, set(), "whisper:apiKey is stored in plain text"),
        ({"whisper:apiKey": "short"}, {"whisper:apiKey"}, "whisper:apiKey is shorter than 16 characters"),
        (
            {"whisper:apiKeySecret": "projects/x/secrets/y"},
            set(),
            "whisper:apiKeySecret 'projects/x/secrets/y'",
        ),
        (
            {"whisper:apiKey": "k" * 32, "whisper:apiKeySecret": "s"},
            {"whisper:apiKey"},
            "whisper:apiKey and whisper:apiKeySecret are both set",
        ),
    ],
)
def test_api_key_mistakes_are_refused(extra: dict[str, str], secret_keys: set[str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**VALID, **extra}, secret_keys=secret_keys)
    [problem] = caught.value.problems
    assert problem.startswith(expected)
    assert "k" * 32 not in problem


# --- what would otherwise fail half-way through `pulumi up` -------------------------------------------


@pytest.mark.parametrize("region", ["us-east4", "asia-south1"])
def test_zonal_redundancy_is_refused_where_google_does_not_offer_it(region: str) -> None:
    problem = only_problem(whisper__region=region, whisper__zonalRedundancy="true")
    assert f"whisper:zonalRedundancy is not offered for GPUs in {region}" in problem
    assert "pulumi config set whisper:zonalRedundancy false" in problem
    assert parse_config({**VALID, "whisper:region": region}).zonal_redundancy is False


def test_zonal_redundancy_is_accepted_where_google_lists_it() -> None:
    cfg = parse_config({**VALID, "whisper:region": "europe-west4", "whisper:zonalRedundancy": "true"})
    assert cfg.zonal_redundancy is True


def test_the_gpu_quota_bounds_the_service_and_the_batch_job_together() -> None:
    ci_free = {"serviceAccount": "whisper-job@my-whisper-dev.iam.gserviceaccount.com"}
    batch = json.dumps({**ci_free, "taskCount": 4, "parallelism": 2})
    problem = only_problem(whisper__maxInstances="3", whisper__gpuQuota="4", whisper__batch=batch)
    assert "need 5 L4s at once, over whisper:gpuQuota 4" in problem
    assert "pulumi config set --path 'whisper:batch.parallelism' 1" in problem
    fits = parse_config(
        {**VALID, "whisper:maxInstances": "3", "whisper:gpuQuota": "5", "whisper:batch": batch}
    )
    assert fits.batch is not None and fits.batch.parallelism == 2
    assert "exceeds whisper:gpuQuota 2" in only_problem(whisper__maxInstances="3", whisper__gpuQuota="2")


def test_without_a_stated_quota_the_job_stays_within_max_instances_and_says_why() -> None:
    batch = json.dumps({"taskCount": 4, "parallelism": 3})
    problem = only_problem(whisper__maxInstances="2", whisper__batch=batch)
    assert "on top of the service's up to 2" in problem and "whisper:gpuQuota" in problem
    assert "bounds the GPUs this stack may use" not in problem


def test_the_batch_job_has_no_zonal_redundancy_unless_asked() -> None:
    base = {**VALID, "whisper:region": "europe-west1", "whisper:zonalRedundancy": "true"}
    cfg = parse_config({**base, "whisper:batch": json.dumps({"taskCount": 2})})
    assert cfg.zonal_redundancy is True and cfg.batch is not None and cfg.batch.zonal_redundancy is False
    asked = parse_config({**base, "whisper:batch": json.dumps({"zonalRedundancy": True})})
    assert asked.batch is not None and asked.batch.zonal_redundancy is True


CI_RUNTIME = "whisper-run-dev@my-whisper-dev.iam.gserviceaccount.com"
BUDGET = json.dumps({"billingAccount": "012345-6789AB-CDEF01", "amount": 100, "emails": ["a@example.com"]})


def test_a_ci_deployed_stack_with_batch_needs_the_bootstraps_job_account() -> None:
    problem = only_problem(whisper__serviceAccount=CI_RUNTIME, whisper__batch=json.dumps({"taskCount": 2}))
    assert "whisper:batch needs the bootstrap's job account" in problem
    assert "bootstrap:batch true" in problem and "whisper:batch.serviceAccount" in problem
    job = "whisper-job-dev@my-whisper-dev.iam.gserviceaccount.com"
    cfg = parse_config(
        {**VALID, "whisper:serviceAccount": CI_RUNTIME, "whisper:batch": json.dumps({"serviceAccount": job})}
    )
    assert cfg.batch is not None and cfg.batch.service_account == job
    assert (
        parse_config({**VALID, "whisper:batch": json.dumps({"taskCount": 2})}).batch is not None
    )  # an owner


def test_a_ci_deployed_stack_with_a_spend_cap_needs_the_bootstraps_cap_identities() -> None:
    cap = json.dumps({"enabled": True})
    problem = only_problem(whisper__serviceAccount=CI_RUNTIME, whisper__budget=BUDGET, whisper__spendCap=cap)
    assert "whisper:spendCap needs the bootstrap's cap accounts and role" in problem
    assert "bootstrap:spendCap true" in problem and "SpendCapRole" in problem
    assert parse_config({**VALID, "whisper:budget": BUDGET, "whisper:spendCap": cap}).spend_cap is not None
