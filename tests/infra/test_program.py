"""The whole program on Pulumi's mock runtime, from Pulumi.dev.yaml and Pulumi.prod.yaml as they are:
every resource in a component, what prod protects, the outputs, the entry point and `scripts/plan`."""

import os
import runpy
import subprocess
import sys

import pytest

from infra.config import ConfigError
from infra.mockrun import MOCK_PROJECT_NUMBER, Plan, load_stack_config, lookup, run_program
from infra.shared import REPO_ROOT

SERVICE = "gcp:cloudrunv2/service:Service"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
BUDGET = "gcp:billing/budget:Budget"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
API = "gcp:projects/service:Service"
# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"
BUILD = "image-build"


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
