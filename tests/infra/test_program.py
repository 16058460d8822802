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
from infra.service import STARTUP_MAX_FAILING_S, startup_window_problems
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
# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"
BUILD = "image-build"


@pytest.fixture(scope="module")
def dev() -> Plan:
    return run_program(load_stack_config("dev"), stack="dev")


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_program(load_stack_config("prod"), stack="prod")


def container(plan: Plan) -> dict:
    return plan.named(WHISPER).inputs["template"]["containers"][0]


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
    service = dev.named(WHISPER).inputs
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
    template = plan.named(WHISPER).inputs["template"]
    variables = env(plan)
    assert template["maxInstanceRequestConcurrency"] == int(config["whisper:concurrency"])
    assert variables[contract.ENV_QUEUE_SIZE] == config["whisper:concurrency"]
    assert template["timeout"] == f"{config['whisper:timeoutSeconds']}s"
    assert variables[contract.ENV_REQUEST_TIMEOUT] == config["whisper:timeoutSeconds"]


@pytest.mark.parametrize(
    ("engine", "concurrency", "workers"),
    [
        ("faster-whisper", "4", "4"),
        ("faster-whisper", "2", "2"),
        ("faster-whisper", "16", "4"),
        ("openai-whisper", "4", "1"),
    ],
)
def test_gpu_workers_follow_the_engine_and_never_exceed_concurrency(
    engine: str, concurrency: str, workers: str
) -> None:
    config = {**load_stack_config("dev"), "whisper:engine": engine, "whisper:concurrency": concurrency}
    assert env(run_program(config, stack="dev"))[contract.ENV_WORKERS] == workers


def test_workers_can_be_tuned_through_whisper_env() -> None:
    config = {**load_stack_config("dev"), "whisper:env": json.dumps({contract.ENV_WORKERS: "2"})}
    assert env(run_program(config, stack="dev"))[contract.ENV_WORKERS] == "2"


def test_service_env_matches_the_baked_model(prod: Plan) -> None:
    variables = env(prod)
    build_args = prod.named(BUILD).inputs["buildArgs"]
    assert variables[contract.ENV_ENGINE] == build_args[contract.BUILD_ARG_ENGINE] == "faster-whisper"
    assert variables[contract.ENV_MODEL] == build_args[contract.BUILD_ARG_MODEL] == "large-v3-turbo"
    assert variables[contract.ENV_MODEL_DIR] == contract.MODEL_DIR
    assert variables["WHISPER_BEAM_SIZE"] == "5"  # whisper:env passes through


def test_image_is_referenced_by_digest(dev: Plan) -> None:
    image_ref = dev.outputs["image_ref"]
    [tag] = dev.named(BUILD).inputs["tags"]
    # What pulumi-docker-build returns: the tag with the digest appended.
    assert re.fullmatch(re.escape(tag) + r"@sha256:[0-9a-f]{64}", image_ref)
    assert container(dev)["image"] == image_ref == dev.named(BUILD).outputs["ref"]


# --- the order in which the engine creates things -------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_service_is_created_after_apis_and_image(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert plan.not_waited_for(plan.named(WHISPER), [*plan.of_type(API), plan.named(BUILD)]) == []


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
        assert dev.waits_for(invoker, dev.named(WHISPER)), invoker.name


def test_image_build_settings(dev: Plan) -> None:
    build = dev.named(BUILD).inputs
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
        contract.BUILD_ARG_MODEL_REVISION: "",  # the commit service/fetch_model.py pins
    }
    assert build["registries"] == [
        {
            "address": "us-central1-docker.pkg.dev",
            "username": "oauth2accesstoken",
            "password": MOCK_ACCESS_TOKEN,
        }
    ]
    assert "registries" in dev.named(BUILD).secret_inputs  # the access token never shows in plain text
    cache_ref = f"{registry}/whisper:buildcache"
    assert build["cacheFrom"] == [{"registry": {"ref": cache_ref}}]
    cache_to = build["cacheTo"][0]["registry"]
    assert cache_to["ref"] == cache_ref
    # min: the dependency stages' layers are not exported a second time (docs/images.md measures it).
    assert (cache_to["mode"], cache_to["imageManifest"], cache_to["ociMediaTypes"]) == ("min", True, True)


def test_a_model_revision_is_passed_to_the_build() -> None:
    commit = "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf"
    config = {**load_stack_config("dev"), "whisper:modelRevision": commit}
    build_args = run_program(config, stack="dev").one(IMAGE).inputs["buildArgs"]
    assert build_args[contract.BUILD_ARG_MODEL_REVISION] == commit


def test_build_context_is_relative_to_where_pulumi_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # `pulumi up` runs the program from infra/ (Pulumi.yaml `main`); the paths must still find service/.
    monkeypatch.chdir(REPO_ROOT / "infra")
    build = run_program(load_stack_config("dev"), stack="dev").named(BUILD).inputs
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
    assert plan.named(WHISPER).inputs["template"]["serviceAccount"] == email
    # The bootstrap owns the account and its roles: a destroy here cannot take them away. (The spend
    # cap's own accounts, in stacks that have one, are the cap's: tests/infra/test_observability.py.)
    assert [a for a in plan.of_type(ACCOUNT) if a.parent != "spend-cap"] == []
    assert plan.of_type(PROJECT_IAM) == []


def test_without_a_bootstrap_account_the_stack_creates_one_that_only_writes_logs_and_metrics() -> None:
    config = {k: v for k, v in load_stack_config("dev").items() if k != "whisper:serviceAccount"}
    plan = run_program(config)
    email = plan.outputs["service_account_email"]
    assert email == "whisper-run@my-whisper-dev.iam.gserviceaccount.com"
    assert plan.one(ACCOUNT).inputs["accountId"] == "whisper-run"
    bindings = plan.of_type(PROJECT_IAM)
    assert sorted(b.inputs["role"] for b in bindings) == sorted(RUNTIME_ROLES)
    assert {b.inputs["member"] for b in bindings} == {f"serviceAccount:{email}"}
    assert plan.named(WHISPER).inputs["template"]["serviceAccount"] == email
    service = plan.named(WHISPER)
    assert plan.not_waited_for(service, [plan.one(ACCOUNT), *bindings, *plan.of_type(API)]) == []
    assert plan.not_waited_for(plan.one(ACCOUNT), plan.of_type(API)) == []


def test_apis_are_enabled_and_left_on_at_destroy(dev: Plan) -> None:
    apis = dev.of_type(API)
    assert sorted(api.inputs["service"] for api in apis) == sorted(REQUIRED_APIS)
    assert all(api.inputs["disableOnDestroy"] is False for api in apis)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_public_invoker_by_default(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    callers = [member for member in plan.of_type(INVOKER) if member.parent == "invokers"]
    members = sorted(member.inputs["member"] for member in callers)
    assert members == sorted(json.loads(load_stack_config(stack)["whisper:invokers"]))
    assert "allUsers" not in members and "allAuthenticatedUsers" not in members
    assert all(member.inputs["role"] == "roles/run.invoker" for member in callers)
    assert all(member.inputs["name"] == "whisper" for member in callers)


def test_no_invoker_at_all_without_a_list() -> None:
    config = {k: v for k, v in load_stack_config("dev").items() if k != "whisper:invokers"}
    assert run_program(config).of_type(INVOKER) == []


def test_public_stack_grants_all_users_only() -> None:
    config = {k: v for k, v in load_stack_config("dev").items() if k != "whisper:invokers"}
    plan = run_program({**config, "whisper:public": "true"})
    assert [member.inputs["member"] for member in plan.of_type(INVOKER)] == ["allUsers"]


def test_dev_is_destroyable(dev: Plan) -> None:
    assert not any(resource.protect for resource in dev.resources)


def test_prod_protects_only_the_repository_and_the_service(prod: Plan) -> None:
    protected = {resource.type for resource in prod.resources if resource.protect and resource.custom}
    assert protected == {REPOSITORY, SERVICE}
    # Everything else can change in prod: revoke an invoker, drop a budget e-mail, re-create a binding.
    for type_ in (INVOKER, CHANNEL, BUDGET, API):
        assert prod.of_type(type_) and not any(r.protect for r in prod.of_type(type_)), type_
    service = prod.named(WHISPER).inputs
    assert service["deletionProtection"] is True
    assert service["template"]["gpuZonalRedundancyDisabled"] is False
    assert service["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 3}


def test_budget_channels_are_named_after_their_address_not_their_position() -> None:
    config = load_stack_config("prod")
    budget = json.loads(config["whisper:budget"])
    reordered = {**config, "whisper:budget": json.dumps({**budget, "emails": budget["emails"][::-1]})}
    names = {
        c.name: c.inputs["labels"]["email_address"]
        for c in run_program(config, stack="prod").of_type(CHANNEL)
    }
    assert names == {
        c.name: c.inputs["labels"]["email_address"]
        for c in run_program(reordered, stack="prod").of_type(CHANNEL)
    }
    assert names["budget-email-finance-example-com"] == "finance@example.com"


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
    assert len(dev.warnings) == 2
    assert "whisper:budget.billingAccount is not set" in dev.warnings[0]
    assert "alert policies notify no one" in dev.warnings[1]


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
    assert plan.named(WHISPER).inputs["name"] == "whisper"
    assert plan.named(BUILD).inputs["context"]["location"] == "../service"


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
    service_block = out.split("service-service  gcp:cloudrunv2/service:Service")[1].split("\n  invokers")[0]
    assert "waits for: apis" in service_block  # the explicit depends_on, by component
    assert "warning: whisper:budget.billingAccount is not set" in out
    assert "[protected]" not in out


def test_plan_script_reports_a_missing_stack() -> None:
    missing = run_plan("--stack", "nope")
    assert missing.returncode == 2
    assert "Pulumi.nope.yaml does not exist" in missing.stderr


# --- APIs, probes, env -----------------------------------------------------------------------------

SLEEP = "time:index/sleep:Sleep"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_everything_waits_for_the_apis_to_take_effect(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    [pause] = plan.of_type(SLEEP)
    assert pause.inputs["createDuration"] == "90s"
    assert plan.not_waited_for(pause, plan.of_type(API)) == []
    assert sorted(pause.inputs["triggers"]) == sorted(REQUIRED_APIS)  # a new API pauses again
    users = [plan.named(WHISPER), plan.one(REPOSITORY), *plan.of_type(BUDGET), *plan.of_type(CHANNEL)]
    for resource in users:
        assert plan.waits_for(resource, pause), resource.name


def test_startup_probe_fits_cloud_runs_window(dev: Plan) -> None:
    probe = container(dev)["startupProbe"]
    window = (int(probe["initialDelaySeconds"]), int(probe["periodSeconds"]), int(probe["failureThreshold"]))
    assert startup_window_problems(*window) == []
    assert window[1] * window[2] == STARTUP_MAX_FAILING_S  # all the time Cloud Run allows for the load
    assert probe["timeoutSeconds"] <= probe["periodSeconds"]


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ((0, 10, 30), "failureThreshold x periodSeconds = 300 s exceeds 240 s"),  # the old probe
        ((300, 10, 3), "initialDelaySeconds 300"),
        ((0, 241, 1), "periodSeconds 241"),
    ],
)
def test_startup_windows_cloud_run_refuses_are_caught(window: tuple[int, int, int], problem: str) -> None:
    assert any(problem in found for found in startup_window_problems(*window))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_service_knows_its_project_for_trace_correlation(
    stack: str, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert env(plan)[contract.ENV_GOOGLE_CLOUD_PROJECT] == f"my-whisper-{stack}"


def test_budget_provider_gets_the_stacks_gcp_credentials_settings() -> None:
    config = {
        **load_stack_config("prod"),
        "gcp:impersonateServiceAccount": "ops@my-whisper-prod.iam.gserviceaccount.com",
        "gcp:accessToken": "ya29.token",
    }
    plan = run_program(config, stack="prod", secret_keys=["gcp:accessToken"])
    budget = plan.one(BUDGET)
    provider = plan.provider_of(budget)
    assert provider is not None and provider.type == "pulumi:providers:gcp"
    assert provider.inputs["impersonateServiceAccount"] == "ops@my-whisper-prod.iam.gserviceaccount.com"
    assert provider.inputs["accessToken"] == "ya29.token"
    assert "accessToken" in provider.secret_inputs
    assert (provider.inputs["billingProject"], provider.inputs["userProjectOverride"]) == (
        "my-whisper-prod",
        "true",
    )


def test_budget_provider_without_gcp_settings_sets_only_the_quota_project(prod: Plan) -> None:
    provider = prod.provider_of(prod.one(BUDGET))
    assert provider is not None
    assert not {"impersonateServiceAccount", "accessToken", "credentials"} & set(provider.inputs)


# --- the API key -----------------------------------------------------------------------------------

SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
API_KEY_VALUE = "sk-" + "0123456789abcdef" * 2


def with_api_key(**extra: str) -> Plan:
    return run_program({**load_stack_config("dev"), **extra}, secret_keys=["whisper:apiKey"])


def test_stack_secret_api_key_is_stored_in_secret_manager_and_mounted_as_a_file() -> None:
    plan = with_api_key(**{"whisper:apiKey": API_KEY_VALUE})
    secret, version = plan.one(SECRET), plan.one(SECRET_VERSION)
    assert secret.inputs["secretId"] == "whisper-api-key"
    assert version.inputs["secretData"] == API_KEY_VALUE and "secretData" in version.secret_inputs
    [accessor] = plan.of_type(SECRET_IAM)
    assert accessor.inputs["role"] == "roles/secretmanager.secretAccessor"
    assert accessor.inputs["secretId"] == "whisper-api-key"
    assert (
        accessor.inputs["member"] == "serviceAccount:whisper-run-dev@my-whisper-dev.iam.gserviceaccount.com"
    )
    [volume] = plan.named(WHISPER).inputs["template"]["volumes"]
    assert volume["secret"]["secret"] == "whisper-api-key"
    assert volume["secret"]["items"] == [{"path": "key", "version": version.outputs["version"]}]
    assert container(plan)["volumeMounts"] == [{"name": volume["name"], "mountPath": "/secrets/api-key"}]
    variables = env(plan)
    assert variables[contract.ENV_API_KEY_FILE] == contract.API_KEY_FILE == "/secrets/api-key/key"
    assert contract.ENV_API_KEY not in variables
    assert API_KEY_VALUE not in json.dumps(plan.named(WHISPER).inputs)
    assert plan.not_waited_for(plan.named(WHISPER), [secret, version, accessor]) == []
    assert (
        "X-Serverless-Authorization: Bearer $(gcloud auth print-identity-token)"
        in plan.outputs["curl_example"]
    )
    assert 'Authorization: Bearer $WHISPER_API_KEY"' in plan.outputs["curl_example"]
    assert "X-Serverless-Authorization" in plan.outputs["openai_example"]


def test_existing_secret_is_mounted_and_only_it_is_readable_by_the_service() -> None:
    plan = with_api_key(**{"whisper:apiKeySecret": "team-whisper-key"})
    assert plan.of_type(SECRET) == [] and plan.of_type(SECRET_VERSION) == []
    [accessor] = plan.of_type(SECRET_IAM)
    assert accessor.inputs["secretId"] == "team-whisper-key"
    [volume] = plan.named(WHISPER).inputs["template"]["volumes"]
    assert volume["secret"] == {"secret": "team-whisper-key", "items": [{"path": "key", "version": "latest"}]}
    assert plan.waits_for(plan.named(WHISPER), accessor)


def test_without_an_api_key_nothing_is_mounted(dev: Plan) -> None:
    assert dev.of_type(SECRET_IAM) == []
    assert "volumes" not in dev.named(WHISPER).inputs["template"]
    assert contract.ENV_API_KEY_FILE not in env(dev)
    assert 'Authorization: Bearer $(gcloud auth print-identity-token)"' in dev.outputs["curl_example"]


def test_plain_text_api_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="whisper:apiKey is stored in plain text") as error:
        run_program({**load_stack_config("dev"), "whisper:apiKey": API_KEY_VALUE})
    assert API_KEY_VALUE not in str(error.value)
