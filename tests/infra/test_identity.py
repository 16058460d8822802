"""infra/identity.py: the runtime account, the bootstrap's or one that only writes logs and metrics."""

import pytest

from infra.identity import RUNTIME_ROLES
from infra.mockrun import Plan, load_stack_config, run_program

ACCOUNT = "gcp:serviceaccount/account:Account"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
API = "gcp:projects/service:Service"
# A stack with the spend cap has a second Cloud Run service and image: these are the API's.
WHISPER = "service-service"


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
