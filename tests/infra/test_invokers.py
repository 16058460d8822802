"""infra/service.py's ServiceInvokers on the mock runtime: who may call the service."""

import json

import pytest

from infra.mockrun import Plan, load_stack_config, run_program

INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"


def test_invokers_are_granted_on_the_created_service(dev: Plan) -> None:
    for invoker in dev.of_type(INVOKER):
        assert dev.waits_for(invoker, dev.named(WHISPER)), invoker.name


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
