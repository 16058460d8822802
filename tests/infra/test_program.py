"""The program on Pulumi's mock runtime, from Pulumi.dev.yaml and Pulumi.prod.yaml as they are."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from infra.apis import REQUIRED_APIS
from infra.config import ConfigError
from infra.identity import RUNTIME_ROLES
from infra.mockrun import MOCK_ACCESS_TOKEN, MOCK_PROJECT_NUMBER, Plan, load_stack_config, lookup, run_program
from infra.shared import REPO_ROOT, SERVICE_DIR, contract

SERVICE = "gcp:cloudrunv2/service:Service"
IMAGE = "docker-build:index:Image"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
BUDGET = "gcp:billing/budget:Budget"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
API = "gcp:projects/service:Service"


@pytest.fixture(scope="module")
def dev() -> Plan:
    return run_program(load_stack_config("dev"), stack="dev")


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_program(load_stack_config("prod"), stack="prod")


def container(plan: Plan) -> dict:
    return plan.one(SERVICE).inputs["template"]["containers"][0]


def env(plan: Plan) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(plan)["envs"]}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_resource_belongs_to_a_component(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    components = {r.urn: r for r in plan.resources if not r.custom}
    assert {c.type.rsplit(":", 1)[-1] for c in components.values()} >= {
        "ProjectApis",
        "Registry",
        "ServiceImage",
        "RuntimeIdentity",
        "WhisperService",
        "ServiceInvokers",
    }
    for resource in plan.resources:
        if resource.custom:
            assert resource.parent_urn in components, resource.name
            assert resource.name.startswith(components[resource.parent_urn].name + "-"), resource.name


def test_cloud_run_service_runs_on_an_l4_with_dev_settings(dev: Plan) -> None:
    service = dev.one(SERVICE).inputs
    template = service["template"]
    assert service["name"] == "whisper"
    assert service["location"] == "us-central1"
    assert service["project"] == "my-whisper-dev"
    assert service["invokerIamDisabled"] is False
    assert service["deletionProtection"] is False
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert template["gpuZonalRedundancyDisabled"] is True
    assert template["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}
    assert template["timeout"] == "300s"
    resources = container(dev)["resources"]
    assert resources["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert resources["cpuIdle"] is False
    assert resources["startupCpuBoost"] is True


def test_probes_and_port_come_from_the_service_contract(dev: Plan) -> None:
    c = container(dev)
    assert c["ports"]["containerPort"] == contract.PORT
    assert c["startupProbe"]["httpGet"] == {"path": contract.READY_PATH, "port": contract.PORT}
    assert c["livenessProbe"]["httpGet"] == {"path": contract.HEALTH_PATH, "port": contract.PORT}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] <= 240 and startup["initialDelaySeconds"] <= 240


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_concurrency_and_timeout_are_one_setting_each(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    config = load_stack_config(stack)
    template = plan.one(SERVICE).inputs["template"]
    variables = env(plan)
    assert template["maxInstanceRequestConcurrency"] == int(config["whisper:concurrency"])
    assert variables[contract.ENV_QUEUE_SIZE] == config["whisper:concurrency"]
    assert template["timeout"] == f"{config['whisper:timeoutSeconds']}s"
    assert variables[contract.ENV_REQUEST_TIMEOUT] == config["whisper:timeoutSeconds"]


def test_service_env_matches_the_baked_model(prod: Plan) -> None:
    variables = env(prod)
    build_args = prod.one(IMAGE).inputs["buildArgs"]
    assert variables[contract.ENV_ENGINE] == build_args[contract.BUILD_ARG_ENGINE] == "faster-whisper"
    assert variables[contract.ENV_MODEL] == build_args[contract.BUILD_ARG_MODEL] == "large-v3-turbo"
    assert variables[contract.ENV_MODEL_DIR] == contract.MODEL_DIR
    assert variables["WHISPER_BEAM_SIZE"] == "5"  # whisper:env passes through


def test_image_is_referenced_by_digest(dev: Plan) -> None:
    image_ref = dev.outputs["image_ref"]
    [tag] = dev.one(IMAGE).inputs["tags"]
    # What pulumi-docker-build returns: the tag with the digest appended.
    assert re.fullmatch(re.escape(tag) + r"@sha256:[0-9a-f]{64}", image_ref)
    assert container(dev)["image"] == image_ref == dev.one(IMAGE).outputs["ref"]


# --- the order in which the engine creates things -------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_service_is_created_after_apis_and_image(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert plan.not_waited_for(plan.one(SERVICE), [*plan.of_type(API), plan.one(IMAGE)]) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_registry_is_created_after_the_apis(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert plan.not_waited_for(plan.one(REPOSITORY), plan.of_type(API)) == []


def test_budget_and_its_channels_are_created_after_the_apis(prod: Plan) -> None:
    for resource in [prod.one(BUDGET), *prod.of_type(CHANNEL)]:
        assert prod.not_waited_for(resource, prod.of_type(API)) == [], resource.name
    assert prod.not_waited_for(prod.one(BUDGET), prod.of_type(CHANNEL)) == []


def test_invokers_are_granted_on_the_created_service(dev: Plan) -> None:
    for invoker in dev.of_type(INVOKER):
        assert dev.waits_for(invoker, dev.one(SERVICE)), invoker.name


def test_image_build_settings(dev: Plan) -> None:
    build = dev.one(IMAGE).inputs
    registry = "us-central1-docker.pkg.dev/my-whisper-dev/whisper"
    assert (Path.cwd() / build["context"]["location"]).resolve() == SERVICE_DIR
    assert (Path.cwd() / build["dockerfile"]["location"]).resolve() == SERVICE_DIR / "Dockerfile"
    assert build["target"] == contract.IMAGE_TARGET_GPU
    assert build["platforms"] == ["linux/amd64"]
    assert build["push"] is True
    assert build["tags"] == [f"{registry}/whisper:latest"]
    assert build["buildArgs"] == {
        contract.BUILD_ARG_ENGINE: "faster-whisper",
        contract.BUILD_ARG_MODEL: "tiny.en",
    }
    assert build["registries"] == [
        {
            "address": "us-central1-docker.pkg.dev",
            "username": "oauth2accesstoken",
            "password": MOCK_ACCESS_TOKEN,
        }
    ]
    assert "registries" in dev.one(IMAGE).secret_inputs  # the access token never shows in plain text
    cache_ref = f"{registry}/whisper:buildcache"
    assert build["cacheFrom"] == [{"registry": {"ref": cache_ref}}]
    cache_to = build["cacheTo"][0]["registry"]
    assert cache_to["ref"] == cache_ref
    assert (cache_to["mode"], cache_to["imageManifest"], cache_to["ociMediaTypes"]) == ("max", True, True)


def test_build_context_is_relative_to_where_pulumi_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # `pulumi up` runs the program from infra/ (Pulumi.yaml `main`); the paths must still find service/.
    monkeypatch.chdir(REPO_ROOT / "infra")
    build = run_program(load_stack_config("dev"), stack="dev").one(IMAGE).inputs
    assert build["context"]["location"] == "../service"
    assert build["dockerfile"]["location"] == "../service/Dockerfile"


@pytest.mark.parametrize(("stack", "keep", "days"), [("dev", 3, 3), ("prod", 10, 14)])
def test_registry_cleans_up_old_images(
    stack: str, keep: int, days: int, request: pytest.FixtureRequest
) -> None:
    repository = request.getfixturevalue(stack).one(REPOSITORY).inputs
    assert repository["format"] == "DOCKER"
    assert repository["cleanupPolicyDryRun"] is False
    policies = {policy["id"]: policy for policy in repository["cleanupPolicies"]}
    assert policies["keep-most-recent"]["action"] == "KEEP"
    assert policies["keep-most-recent"]["mostRecentVersions"]["keepCount"] == keep
    assert policies["delete-old-untagged"]["action"] == "DELETE"
    assert policies["delete-old-untagged"]["condition"] == {
        "tagState": "UNTAGGED",
        "olderThan": f"{days * 86400}s",
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stacks_run_as_the_bootstraps_account_and_create_no_identity(
    stack: str, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    email = f"whisper-run-{stack}@my-whisper-{stack}.iam.gserviceaccount.com"
    assert load_stack_config(stack)["whisper:serviceAccount"] == email
    assert plan.outputs["service_account_email"] == email
    assert plan.one(SERVICE).inputs["template"]["serviceAccount"] == email
    # The bootstrap owns the account and its roles: a destroy here cannot take them away.
    assert plan.of_type(ACCOUNT) == [] and plan.of_type(PROJECT_IAM) == []


def test_without_a_bootstrap_account_the_stack_creates_one_that_only_writes_logs_and_metrics() -> None:
    config = {k: v for k, v in load_stack_config("dev").items() if k != "whisper:serviceAccount"}
    plan = run_program(config)
    email = plan.outputs["service_account_email"]
    assert email == "whisper-run@my-whisper-dev.iam.gserviceaccount.com"
    assert plan.one(ACCOUNT).inputs["accountId"] == "whisper-run"
    bindings = plan.of_type(PROJECT_IAM)
    assert sorted(b.inputs["role"] for b in bindings) == sorted(RUNTIME_ROLES)
    assert {b.inputs["member"] for b in bindings} == {f"serviceAccount:{email}"}
    assert plan.one(SERVICE).inputs["template"]["serviceAccount"] == email
    service = plan.one(SERVICE)
    assert plan.not_waited_for(service, [plan.one(ACCOUNT), *bindings, *plan.of_type(API)]) == []
    assert plan.not_waited_for(plan.one(ACCOUNT), plan.of_type(API)) == []


def test_apis_are_enabled_and_left_on_at_destroy(dev: Plan) -> None:
    apis = dev.of_type(API)
    assert sorted(api.inputs["service"] for api in apis) == sorted(REQUIRED_APIS)
    assert all(api.inputs["disableOnDestroy"] is False for api in apis)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_public_invoker_by_default(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    members = sorted(member.inputs["member"] for member in plan.of_type(INVOKER))
    assert members == sorted(json.loads(load_stack_config(stack)["whisper:invokers"]))
    assert "allUsers" not in members and "allAuthenticatedUsers" not in members
    assert all(member.inputs["role"] == "roles/run.invoker" for member in plan.of_type(INVOKER))
    assert all(member.inputs["name"] == "whisper" for member in plan.of_type(INVOKER))


def test_no_invoker_at_all_without_a_list() -> None:
    config = {k: v for k, v in load_stack_config("dev").items() if k != "whisper:invokers"}
    assert run_program(config).of_type(INVOKER) == []


def test_public_stack_grants_all_users_only() -> None:
    config = {k: v for k, v in load_stack_config("dev").items() if k != "whisper:invokers"}
    plan = run_program({**config, "whisper:public": "true"})
    assert [member.inputs["member"] for member in plan.of_type(INVOKER)] == ["allUsers"]


def test_dev_is_destroyable(dev: Plan) -> None:
    assert not any(resource.protect for resource in dev.resources)


def test_prod_is_protected_except_the_image(prod: Plan) -> None:
    unprotected = {resource.type for resource in prod.resources if not resource.protect}
    assert unprotected == {"whisper:infra:ServiceImage", IMAGE}
    service = prod.one(SERVICE).inputs
    assert service["deletionProtection"] is True
    assert service["template"]["gpuZonalRedundancyDisabled"] is False
    assert service["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 3}


def test_prod_budget_alerts(prod: Plan) -> None:
    budget = prod.one(BUDGET).inputs
    assert budget["billingAccount"] == "012345-6789AB-CDEF01"
    assert budget["amount"] == {"specifiedAmount": {"currencyCode": "USD", "units": "1500"}}
    assert budget["budgetFilter"]["projects"] == [f"projects/{MOCK_PROJECT_NUMBER}"]
    rules = sorted((rule["spendBasis"], rule["thresholdPercent"]) for rule in budget["thresholdRules"])
    assert rules == [
        ("CURRENT_SPEND", 0.5),
        ("CURRENT_SPEND", 0.9),
        ("CURRENT_SPEND", 1.0),
        ("FORECASTED_SPEND", 1.0),
    ]
    channels = prod.of_type(CHANNEL)
    assert sorted(c.inputs["labels"]["email_address"] for c in channels) == [
        "finance@example.com",
        "platform-oncall@example.com",
    ]
    assert all(c.inputs["type"] == "email" for c in channels)
    assert sorted(budget["allUpdatesRule"]["monitoringNotificationChannels"]) == sorted(
        c.outputs["name"] for c in channels
    )
    assert prod.warnings == []


def test_budget_skipped_with_a_warning_without_billing_account(dev: Plan) -> None:
    assert dev.of_type(BUDGET) == [] and dev.of_type(CHANNEL) == []
    assert len(dev.warnings) == 1
    assert "whisper:budget.billingAccount is not set" in dev.warnings[0]


def test_outputs_are_ready_to_paste(dev: Plan) -> None:
    url = dev.outputs["url"]
    assert url == f"https://whisper-{MOCK_PROJECT_NUMBER}.us-central1.run.app"
    assert "$(gcloud auth print-identity-token)" in dev.outputs["curl_example"]
    assert f"{url}/v1/audio/transcriptions" in dev.outputs["curl_example"]
    assert f'OPENAI_BASE_URL="{url}/v1"' in dev.outputs["openai_example"]
    assert 'OPENAI_API_KEY="$(gcloud auth print-identity-token)"' in dev.outputs["openai_example"]


def test_invalid_config_stops_the_program_before_any_resource() -> None:
    with pytest.raises(ConfigError, match="whisper:region 'us-west1' has no Cloud Run nvidia-l4 GPUs"):
        run_program({**load_stack_config("dev"), "whisper:region": "us-west1"})


def test_pulumi_entry_point_runs_the_whole_program(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the Pulumi CLI does with `main: infra/`: run the folder's __main__.py from infra/.
    monkeypatch.chdir(REPO_ROOT / "infra")
    monkeypatch.syspath_prepend(str(REPO_ROOT / "infra"))

    def entry_point() -> dict:
        runpy.run_path(str(REPO_ROOT / "infra"), run_name="__main__")
        return {}

    plan = run_program(load_stack_config("dev"), program=entry_point)
    assert plan.one(SERVICE).inputs["name"] == "whisper"
    assert plan.one(IMAGE).inputs["context"]["location"] == "../service"


def test_lookup_walks_lists_and_dicts() -> None:
    assert lookup({"a": [{"b": 1}]}, "a.0.b") == 1
    assert lookup({"a": []}, "a.0.b") is None


def run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'service'}{os.pathsep}{REPO_ROOT}"}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "plan"), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=environment,
        check=False,
        timeout=120,
    )


def test_plan_script_prints_resources_and_settings() -> None:
    result = run_plan("--stack", "dev")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "service-service  gcp:cloudrunv2/service:Service (parent: service)" in out
    assert "template.nodeSelector.accelerator = nvidia-l4" in out
    assert "WHISPER_QUEUE_SIZE=4" in out
    assert "warning: whisper:budget.billingAccount is not set" in out
    assert "[protected]" not in out


def test_plan_script_reports_a_missing_stack() -> None:
    missing = run_plan("--stack", "nope")
    assert missing.returncode == 2
    assert "Pulumi.nope.yaml does not exist" in missing.stderr
