"""The spend cap's component and what a deploy does when the cap has fired, on Pulumi's mock runtime.

The live service is what `Mocks.call` answers for `gcp:cloudrunv2/getService:getService`: labelled
`spend-cap=engaged` as the cap leaves it, without the label, or absent (a first deploy).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
import pulumi
import pytest

from infra.config import ConfigError, parse_config
from infra.mockrun import CloudMocks, Plan, load_stack_config, run_program

SERVICE = "gcp:cloudrunv2/service:Service"
GET_SERVICE = "gcp:cloudrunv2/getService:getService"
WHISPER = "service-service"
CAP_SERVICE = "spend-cap-service"


class ProviderError(grpc.RpcError):
    """A data source's failure as the engine hands it to the program: a gRPC error with details."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


class LiveService(CloudMocks):
    """The cloud with the stack's service already deployed, carrying `labels`."""

    def __init__(self, labels: Mapping[str, str] | None) -> None:
        super().__init__()
        self.labels = labels
        self.reads: list[Mapping[str, Any]] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token != GET_SERVICE:
            return super().call(args)
        self.reads.append(dict(args.args))
        if self.labels is None:
            where = f"projects/{args.args['project']}/locations/{args.args['location']}"
            raise ProviderError(f"{where}/services/{args.args['name']} not found")
        return {
            "name": args.args["name"],
            "labels": dict(self.labels),
            "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY",
        }, []


def deploy(stack: str, labels: Mapping[str, str] | None) -> tuple[Plan, LiveService]:
    cloud = LiveService(labels)
    return run_program(load_stack_config(stack), stack=stack, mocks=cloud), cloud


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_deploy_keeps_an_engaged_cap_and_says_how_to_lift_it(stack: str) -> None:
    """A new image digest on main must not re-open what the cap closed."""
    plan, cloud = deploy(stack, {"app": "whisper", "spend-cap": "engaged"})
    config = load_stack_config(stack)
    assert cloud.reads == [
        {"name": "whisper", "location": config["whisper:region"], "project": config["gcp:project"]}
    ]
    service = plan.named(WHISPER).inputs
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert service["template"]["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}
    assert service["labels"]["spend-cap"] == "engaged"
    [warning] = [w for w in plan.warnings if "spend-cap=engaged" in w]
    assert "--remove-labels spend-cap" in warning and "pulumi up --refresh" in warning
    # Everything else deploys as usual: the new image, by digest.
    assert service["template"]["containers"][0]["image"] == plan.outputs["image_ref"]


@pytest.mark.parametrize("labels", [None, {"app": "whisper"}], ids=["first deploy", "not capped"])
def test_without_the_label_the_stack_declares_its_own_values(labels: Mapping[str, str] | None) -> None:
    plan, _ = deploy("prod", labels)
    service = plan.named(WHISPER).inputs
    config = load_stack_config("prod")
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert service["template"]["scaling"] == {
        "minInstanceCount": int(config["whisper:minInstances"]),
        "maxInstanceCount": int(config["whisper:maxInstances"]),
    }
    assert "spend-cap" not in service["labels"]
    assert not [w for w in plan.warnings if "spend-cap=engaged" in w]


def test_a_failed_read_of_the_live_service_stops_the_deploy() -> None:
    class Forbidden(LiveService):
        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            if args.token == GET_SERVICE:
                raise ProviderError("googleapi: Error 403: Permission 'run.services.get' denied")
            return super().call(args)

    with pytest.raises(Exception, match="403"):
        run_program(load_stack_config("prod"), stack="prod", mocks=Forbidden({}))


def test_the_caps_own_service_is_never_deletion_protected_even_in_prod(prod: Plan) -> None:
    """`whisper:spendCap.enabled: false`, the way out after it fired, must be able to delete it."""
    assert prod.named(WHISPER).inputs["deletionProtection"] is True  # the API's service still is
    cap = prod.named(CAP_SERVICE)
    assert cap.inputs["deletionProtection"] is False
    assert not cap.protect


# --- the bootstrap's budget (whisper:spendCap.budgetTopic / budgetId) ------------------------------

BOOTSTRAP_TOPIC = "projects/my-whisper-prod/topics/whisper-budget-prod"


def with_bootstrap_budget(**cap: Any) -> dict[str, str]:
    config = load_stack_config("prod")
    current = json.loads(config["whisper:spendCap"])
    config["whisper:spendCap"] = json.dumps({**current, **cap})
    return config


def test_with_the_bootstraps_budget_the_cap_listens_to_it_and_the_stack_publishes_nothing() -> None:
    config = with_bootstrap_budget(budgetTopic=BOOTSTRAP_TOPIC, budgetId="bootstrap-budget-id")
    plan = run_program(config, stack="prod")
    assert plan.of_type("gcp:pubsub/topic:Topic") == []
    assert plan.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember") == []
    subscription = plan.one("gcp:pubsub/subscription:Subscription").inputs
    assert subscription["topic"] == BOOTSTRAP_TOPIC
    [container] = plan.named(CAP_SERVICE).inputs["template"]["containers"]
    assert {"name": "CAP_BUDGET_ID", "value": "bootstrap-budget-id"} in container["envs"]
    # The stack's own budget still e-mails, without a topic of its own.
    stack_budget = plan.one("gcp:billing/budget:Budget").inputs
    assert "pubsubTopic" not in stack_budget["allUpdatesRule"]


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        ({"budgetTopic": BOOTSTRAP_TOPIC}, "needs budgetTopic and budgetId together; missing budgetId"),
        (
            {"budgetTopic": "projects/someone-else/topics/whisper-budget-prod", "budgetId": "x"},
            "must be a topic of my-whisper-prod",
        ),
        ({"budgetTopic": BOOTSTRAP_TOPIC, "budgetId": "not an id"}, "is not a budget id"),
    ],
)
def test_the_bootstraps_budget_keys_are_checked(cap: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(with_bootstrap_budget(**cap))


def test_the_bootstraps_budget_stands_in_for_the_stacks_own() -> None:
    config = with_bootstrap_budget(budgetTopic=BOOTSTRAP_TOPIC, budgetId="bootstrap-budget-id")
    del config["whisper:budget"]
    cfg = parse_config(config)
    assert cfg.budget is None and cfg.spend_cap is not None and cfg.spend_cap.budget_topic == BOOTSTRAP_TOPIC
