"""infra/apis.py on the mock runtime: the APIs enabled, left on at destroy, and waited for."""

import pytest

from infra.apis import REQUIRED_APIS
from infra.mockrun import Plan

REPOSITORY = "gcp:artifactregistry/repository:Repository"
BUDGET = "gcp:billing/budget:Budget"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
API = "gcp:projects/service:Service"
# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"
SLEEP = "time:index/sleep:Sleep"


def test_apis_are_enabled_and_left_on_at_destroy(dev: Plan) -> None:
    apis = dev.of_type(API)
    assert sorted(api.inputs["service"] for api in apis) == sorted(REQUIRED_APIS)
    assert all(api.inputs["disableOnDestroy"] is False for api in apis)


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
