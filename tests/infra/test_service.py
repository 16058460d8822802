"""infra/service.py's WhisperService on the mock runtime: the L4, probes, scaling, env from the contract."""

import json
import re

import pytest

from infra.mockrun import Plan, load_stack_config, run_program
from infra.service import STARTUP_MAX_FAILING_S, startup_window_problems
from infra.shared import contract

API = "gcp:projects/service:Service"
# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"
BUILD = "image-build"


def container(plan: Plan) -> dict:
    return plan.named(WHISPER).inputs["template"]["containers"][0]


def env(plan: Plan) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(plan)["envs"]}


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
    # The service's own deadline ends first, so that a caller gets its 504 rather than a cut connection.
    deadline = float(variables[contract.ENV_REQUEST_TIMEOUT])
    assert int(config["whisper:timeoutSeconds"]) - 5 <= deadline < int(config["whisper:timeoutSeconds"])


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


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_service_is_created_after_apis_and_image(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert plan.not_waited_for(plan.named(WHISPER), [*plan.of_type(API), plan.named(BUILD)]) == []


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
