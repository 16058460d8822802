"""The policy pack run against what the program itself declares, for each stack, as the CLI would run it.

Each resource the program registers on the mock runtime goes through every resource policy with that
stack's `infra/policy/config/<stack>.json`, and the whole list through the stack policies: the
stacks as committed pass, and a mutated program or resource fails the policy that guards it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from infra.mockrun import Plan, RecordedResource, load_stack_config, run_program
from infra.policy import guardrails

POLICY_CONFIG = Path(__file__).resolve().parents[3] / "infra" / "policy" / "config"
SERVICE = guardrails.CLOUD_RUN_SERVICE


def policy_config(stack: str) -> dict[str, dict[str, Any]]:
    return json.loads((POLICY_CONFIG / f"{stack}.json").read_text())


def _options(resource: RecordedResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(resource.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def violations(
    resources: list[RecordedResource], stack: str, inputs_of: Callable[[RecordedResource], Mapping[str, Any]]
) -> list[str]:
    """`policy name: message` for every violation, the analyzer's way (inputs as the engine sends them)."""
    config = policy_config(stack)
    found: list[str] = []
    for policy in guardrails.POLICIES:

        def report(message: str, urn: str | None = None, name: str = policy.name) -> None:
            found.append(f"{name}: {message}")

        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                args = ResourceValidationArgs(
                    resource.type,
                    unknown_checking_proxy(copy.deepcopy(dict(inputs_of(resource)))),
                    resource.urn,
                    resource.name,
                    _options(resource),
                    None,
                    config.get(policy.name),
                )
                policy.validate(args, report)
        elif isinstance(policy, StackValidationPolicy):
            policy_resources = [
                PolicyResource(
                    resource.type,
                    unknown_checking_proxy(copy.deepcopy(dict(inputs_of(resource)))),
                    resource.urn,
                    resource.name,
                    _options(resource),
                    None,
                    None,
                    [],
                    {},
                )
                for resource in resources
            ]
            policy.validate(StackValidationArgs(policy_resources, config.get(policy.name)), report)
    return found


def check(
    plan: Plan, stack: str, mutate: Callable[[RecordedResource, dict[str, Any]], None] | None = None
) -> list[str]:
    def inputs_of(resource: RecordedResource) -> Mapping[str, Any]:
        inputs = copy.deepcopy(dict(resource.inputs))
        if mutate is not None:
            mutate(resource, inputs)
        return inputs

    return violations([r for r in plan.resources if r.custom], stack, inputs_of)


@pytest.fixture(scope="module", params=["dev", "prod"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def plan(stack: str) -> Plan:
    return run_program(load_stack_config(stack), stack=stack)


def test_each_stack_as_committed_passes_its_own_guardrails(plan: Plan, stack: str) -> None:
    assert plan.of_type(SERVICE), "the program declared no service to check"
    assert check(plan, stack) == []


def with_config(stack: str, **changes: Any) -> Plan:
    config = {**load_stack_config(stack), **{key.replace("__", ":"): value for key, value in changes.items()}}
    return run_program(config, stack=stack)


def test_a_public_stack_fails_where_its_policy_config_does_not_allow_it(stack: str) -> None:
    config = {k: v for k, v in load_stack_config(stack).items() if k != "whisper:invokers"}
    plan = run_program({**config, "whisper:public": "true"}, stack=stack)
    found = check(plan, stack)
    assert found and all(
        v.startswith("no-public-invoker: allUsers would make this service public") for v in found
    )


def test_more_instances_than_the_stacks_cap_fail(stack: str) -> None:
    cap = policy_config(stack)["gpu-service-bounded"]["maxInstanceCap"]
    found = check(with_config(stack, whisper__maxInstances=str(cap + 1)), stack)
    assert found == [
        f"gpu-service-bounded: template.scaling.maxInstanceCount is {cap + 1}; it must be between 1 and "
        f'{cap} (raise "maxInstanceCap" in infra/policy/config/<stack>.json only with matching GPU quota).'
    ]


def test_prod_without_its_budget_fails() -> None:
    # The spend cap listens to the budget, so it goes too (config refuses a cap without a budget).
    dropped = ("whisper:budget", "whisper:spendCap")
    config = {k: v for k, v in load_stack_config("prod").items() if k not in dropped}
    found = check(run_program(config, stack="prod"), "prod")
    assert len(found) == 1 and found[0].startswith(
        "budget-required: This stack has a billing account configured"
    )


def mutate_service(
    change: Callable[[dict[str, Any]], None],
) -> Callable[[RecordedResource, dict[str, Any]], None]:
    def mutate(resource: RecordedResource, inputs: dict[str, Any]) -> None:
        if resource.type == SERVICE:
            change(inputs)

    return mutate


@pytest.mark.parametrize(
    ("change", "policy"),
    [
        (
            lambda s: s["template"]["containers"][0].update(
                image=s["template"]["containers"][0]["image"].split("@")[0]
            ),
            "image-by-digest",
        ),
        (lambda s: s["template"].pop("serviceAccount"), "runtime-service-account"),
        (lambda s: s["template"]["containers"][0]["resources"].update(cpuIdle=True), "gpu-service-bounded"),
        (lambda s: s["template"]["scaling"].pop("maxInstanceCount"), "gpu-service-bounded"),
        (lambda s: s.update(invokerIamDisabled=True), "no-public-invoker"),
        (
            lambda s: s["template"]["containers"][0]["envs"].append(
                {"name": "WHISPER_API_KEY", "value": "k"}
            ),
            "no-plaintext-secrets",
        ),
    ],
    ids=["image-by-tag", "default-account", "cpu-idle", "unbounded", "iam-off", "key-in-env"],
)
def test_a_mutated_service_fails_the_policy_that_guards_it(
    plan: Plan, stack: str, change: Callable[[dict[str, Any]], None], policy: str
) -> None:
    found = check(plan, stack, mutate_service(change))
    assert found and all(v.startswith(f"{policy}: ") for v in found), found


def test_a_registry_without_active_cleanup_fails(plan: Plan, stack: str) -> None:
    def dry_run(resource: RecordedResource, inputs: dict[str, Any]) -> None:
        if resource.type == guardrails.ARTIFACT_REGISTRY_REPOSITORY:
            inputs["cleanupPolicyDryRun"] = True

    assert check(plan, stack, dry_run) == [
        "registry-cleanup-policies: cleanupPolicyDryRun is true, so the cleanup policies never delete "
        "anything; set it to false."
    ]
