"""The mock harness itself: it records what the engine would act on, so that a missing option fails a test."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.mockrun import Plan, run_program

API = "gcp:projects/service:Service"
ACCOUNT = "gcp:serviceaccount/account:Account"


class Pair(pulumi.ComponentResource):
    """A component with two children, to check that depending on a component waits for its children."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("test:index:Pair", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.apis = [
            gcp.projects.Service(
                f"{name}-{api}", project="p-123456", service=f"{api}.googleapis.com", opts=child
            )
            for api in ("run", "iam")
        ]
        self.register_outputs({})


def evaluate(*, with_depends_on: bool) -> Plan:
    def program() -> dict[str, Any]:
        pair = Pair("apis")
        provider = gcp.Provider("billing", project="p-123456", user_project_override=True)
        ordered = pulumi.ResourceOptions(
            depends_on=[pair] if with_depends_on else [],
            protect=True,
            provider=provider,
            retain_on_delete=True,
        )
        account = gcp.serviceaccount.Account("account", project="p-123456", account_id="runner", opts=ordered)
        # An input taken from another resource's output is a dependency without any depends_on.
        gcp.projects.IAMMember("role", project="p-123456", role="roles/viewer", member=account.member)
        return {"email": account.email}

    return run_program({}, stack="test", project="harness", program=program)


def test_explicit_depends_on_on_a_component_waits_for_each_child() -> None:
    plan = evaluate(with_depends_on=True)
    account, component = plan.one(ACCOUNT), plan.named("apis")
    assert plan.waits_for(account, component)
    assert plan.not_waited_for(account, plan.of_type(API)) == []
    assert account.explicit_dependencies == {api.urn for api in plan.of_type(API)}


def test_without_depends_on_nothing_is_waited_for() -> None:
    plan = evaluate(with_depends_on=False)
    account = plan.one(ACCOUNT)
    assert not plan.waits_for(account, plan.named("apis"))
    assert sorted(plan.not_waited_for(account, plan.of_type(API))) == ["apis-iam", "apis-run"]


def test_an_input_from_another_output_is_a_dependency_and_is_transitive() -> None:
    plan = evaluate(with_depends_on=True)
    role, account = plan.named("role"), plan.one(ACCOUNT)
    assert role.property_dependencies["member"] == {account.urn}
    assert role.explicit_dependencies == set()
    assert plan.waits_for(role, account)
    assert plan.not_waited_for(role, plan.of_type(API)) == []  # through the account


def test_options_are_recorded() -> None:
    plan = evaluate(with_depends_on=True)
    account, role = plan.one(ACCOUNT), plan.named("role")
    assert (account.protect, account.retain_on_delete) == (True, True)
    assert (role.protect, role.retain_on_delete) == (False, False)
    provider = plan.provider_of(account)
    assert provider is not None and provider.inputs["userProjectOverride"] == "true"  # providers take strings
    assert plan.provider_of(role) is None
    assert [api.parent for api in plan.of_type(API)] == ["apis", "apis"]
    assert plan.children(plan.named("apis")) == plan.of_type(API)


def test_secret_inputs_are_unwrapped_and_named_and_ignore_changes_are_recorded() -> None:
    def program() -> dict[str, Any]:
        gcp.serviceaccount.Account(
            "account",
            project="p-123456",
            account_id="runner",
            display_name=pulumi.Output.secret("Runner"),
            opts=pulumi.ResourceOptions(ignore_changes=["display_name"]),
        )
        return {}

    account = run_program({}, stack="test", project="harness", program=program).one(ACCOUNT)
    assert account.inputs["displayName"] == "Runner"
    assert account.secret_inputs == {"displayName"}
    assert account.ignore_changes == ("displayName",)
