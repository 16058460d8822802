"""infra/api_key.py on the mock runtime: the key in Secret Manager, mounted into the service as a file."""

import json

import pytest

from infra.config import ConfigError
from infra.mockrun import Plan, load_stack_config, run_program
from infra.shared import contract

# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
API_KEY_VALUE = "sk-" + "0123456789abcdef" * 2


def container(plan: Plan) -> dict:
    return plan.named(WHISPER).inputs["template"]["containers"][0]


def env(plan: Plan) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(plan)["envs"]}


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
