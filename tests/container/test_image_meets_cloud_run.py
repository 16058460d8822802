"""The image and the Cloud Run service the Pulumi program declares agree: the port Cloud Run sends
traffic to, the probe paths it calls, the build target and args, and every env var it sets."""

import pytest
from fastapi.testclient import TestClient

from infra.mockrun import Plan, load_stack_config, run_program
from tests.container.dockerfile_model import Dockerfile
from whisper_api import contract
from whisper_api.app import create_app
from whisper_api.settings import Settings

# The API's service and image (a stack with the spend cap has a second of each).
WHISPER = "service-service"
BUILD = "image-build"


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request: pytest.FixtureRequest) -> Plan:
    return run_program(load_stack_config(request.param), stack=request.param)


def container(plan: Plan) -> dict:
    return plan.named(WHISPER).inputs["template"]["containers"][0]


def test_cloud_run_sends_traffic_to_the_port_the_image_listens_on(plan: Plan, dockerfile: Dockerfile) -> None:
    env = dockerfile.env(contract.IMAGE_TARGET_GPU)
    assert container(plan)["ports"]["containerPort"] == float(env["PORT"])
    assert dockerfile.last(contract.IMAGE_TARGET_GPU, "EXPOSE").value == env["PORT"]
    assert env["HOST"] == "0.0.0.0"


def test_the_probe_paths_are_routes_the_service_serves(plan: Plan) -> None:
    # Without the lifespan no model loads: liveness answers 200, readiness 503 "still loading", never 404.
    client = TestClient(create_app(Settings()))
    probes = container(plan)
    assert client.get(probes["livenessProbe"]["httpGet"]["path"]).status_code == 200
    assert client.get(probes["startupProbe"]["httpGet"]["path"]).status_code == 503


def test_infra_builds_the_gpu_target_with_the_build_args_the_dockerfile_declares(
    plan: Plan, dockerfile: Dockerfile
) -> None:
    build = plan.named(BUILD).inputs
    assert build["target"] == contract.IMAGE_TARGET_GPU
    assert set(build["buildArgs"]) <= set(dockerfile.global_args)


def test_every_env_var_cloud_run_sets_is_a_service_setting(plan: Plan, dockerfile: Dockerfile) -> None:
    settings = {f"{contract.ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    env = {item["name"]: item["value"] for item in container(plan)["envs"]}
    # Plus Google's own project variable, which telemetry reads for trace correlation.
    assert set(env) - {contract.ENV_GOOGLE_CLOUD_PROJECT} <= settings
    assert env[contract.ENV_MODEL_DIR] == dockerfile.env(contract.IMAGE_TARGET_GPU)[contract.ENV_MODEL_DIR]
