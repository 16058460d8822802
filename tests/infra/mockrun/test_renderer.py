"""What `make plan` prints: the resource tree, key settings, explicit waits, outputs and warnings."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.mockrun import lookup, render_plan, run_program


class Apis(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("test:index:Apis", name, None, None)
        gcp.projects.Service(
            f"{name}-run",
            project="p-123456",
            service="run.googleapis.com",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})


def program() -> dict[str, Any]:
    apis = Apis("apis")
    account = gcp.serviceaccount.Account(
        "account",
        project="p-123456",
        account_id="runner",
        opts=pulumi.ResourceOptions(depends_on=[apis], protect=True),
    )
    pulumi.log.warn("a warning for the reviewer")
    return {"email": account.email, "count": 3}


def test_components_come_first_with_their_children_and_waits_name_the_component() -> None:
    plan = run_program({}, stack="test", project="harness", program=program)
    # Top-level resources hang off the stack; the runtime keeps the first stack it registered in a process.
    stack = plan.named("apis").parent
    assert render_plan(plan, "test").splitlines() == [
        "Stack test: 3 resources (mock runtime, nothing was created)",
        "",
        f"apis  test:index:Apis (parent: {stack})",
        "  apis-run  gcp:projects/service:Service (parent: apis)",
        "      service = run.googleapis.com",
        f"account  gcp:serviceaccount/account:Account (parent: {stack}) [protected]",
        "    accountId = runner",
        "    waits for: apis",
        "",
        "Outputs:",
        "  count = 3",
        "  email = runner@p-123456.iam.gserviceaccount.com",
        "warning: a warning for the reviewer",
    ]


def test_lookup_follows_keys_and_list_indexes_and_gives_none_for_a_missing_path() -> None:
    inputs = {"template": {"containers": [{"image": "app:1"}]}}
    assert lookup(inputs, "template.containers.0.image") == "app:1"
    assert lookup(inputs, "template.containers.1.image") is None
    assert lookup(inputs, "template.containers.first") is None
    assert lookup(inputs, "template.volumes") is None
