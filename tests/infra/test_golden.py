"""The committed plans of the example stacks (tests/infra/golden/<stack>.txt) are what the program
declares today, so that every pull request shows in its diff how dev's and prod's plans change.

After a deliberate infra change, `make golden` rewrites them; review the diff like code.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from infra.mockrun import Plan, load_stack_config, render_plan, run_program

GOLDEN = Path(__file__).resolve().parent / "golden"


def rendered(plan: Plan, stack: str) -> str:
    """`scripts/plan --stack <stack>` output. In one process the mock runtime keeps the first root stack
    it registered, so top-level parents are named as a fresh `scripts/plan` names them."""
    root = next(resource.parent for resource in plan.resources if resource.name == "apis")
    text = render_plan(plan, stack).replace(f"(parent: {root})", f"(parent: whisper-{stack})")
    return text + "\n"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_committed_plan_is_what_the_program_declares(stack: str, request: pytest.FixtureRequest) -> None:
    expected = (GOLDEN / f"{stack}.txt").read_text()
    actual = rendered(request.getfixturevalue(stack), stack)
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"tests/infra/golden/{stack}.txt",
            "the program now",
        )
    )
    assert not diff, f"the {stack} plan changed; review and run `make golden`:\n{diff}"


def test_a_change_to_the_stack_shows_in_the_plans_diff() -> None:
    """What a reviewer would see: raising dev's maxInstances changes the service's scaling line."""
    config = load_stack_config("dev")
    config["whisper:maxInstances"] = "2"
    changed = rendered(run_program(config, stack="dev"), "dev").splitlines()
    committed = (GOLDEN / "dev.txt").read_text().splitlines()
    lines = [line for line in difflib.unified_diff(committed, changed, lineterm="") if line[:1] in "+-"]
    assert any(line.startswith("+") and '"maxInstanceCount": 2' in line for line in lines), lines
