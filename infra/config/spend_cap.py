"""`whisper:spendCap`: stop GPU spend once the month's cost passes a fraction of the budget
(infra/spend_cap.py). It acts on the budget's notifications, so it needs `whisper:budget`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.config.budget import MAX_THRESHOLD, BudgetConfig
from infra.config.keys import SPEND_CAP_KEYS
from infra.config.reader import Reader, Section

# The bootstrap's identities for the cap (outputs <env>SpendCap…); without them the stack creates its own.
SPEND_CAP_IDENTITY_KEYS = ("serviceAccount", "pushServiceAccount", "role")
# The bootstrap's budget (outputs <env>BudgetTopic, <env>BudgetId); without them the stack's budget publishes.
SPEND_CAP_BUDGET_KEYS = ("budgetTopic", "budgetId")
_TOPIC = re.compile(r"^projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/topics/[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")
_CUSTOM_ROLE = re.compile(r"^projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]{3,64}$")


@dataclass(frozen=True)
class SpendCapConfig:
    """Stop GPU spend once the month's actual cost passes `fraction` of the budget amount."""

    fraction: float = 1.0
    # The bootstrap's accounts and role (all three or none); None: the stack creates them.
    service_account: str | None = None
    push_service_account: str | None = None
    role: str | None = None
    # The bootstrap's budget topic and budget id (both or none); None: the stack's own budget publishes.
    budget_topic: str | None = None
    budget_id: str | None = None


DEFAULTS = SpendCapConfig()


def read_spend_cap(
    r: Reader, project: str, budget: BudgetConfig | None, budget_skipped: str | None
) -> SpendCapConfig | None:
    cap = r.section("spendCap", "enabled", "true") or Section(r, "spendCap", {})
    cap.unknown_keys(SPEND_CAP_KEYS)
    problems_before = len(r.problems)
    enabled = cap.flag("enabled", False)
    if len(r.problems) > problems_before:
        return None
    fraction = cap.number(
        "fraction",
        DEFAULTS.fraction,
        MAX_THRESHOLD,
        "a fraction of the budget amount",
        note=" (1.0 stops at 100 %)",
        example=str(DEFAULTS.fraction),
    )
    if len(r.problems) > problems_before:
        return None
    identities = {key: cap.get(key) for key in SPEND_CAP_IDENTITY_KEYS if cap.get(key) is not None}
    if not _identities_valid(r, cap, project, identities):
        return None
    budget_keys = {key: cap.get(key) for key in SPEND_CAP_BUDGET_KEYS if cap.get(key) is not None}
    if not _budget_valid(r, cap, project, budget_keys):
        return None
    if not enabled:
        return None
    if budget is None and budget_skipped is not None and not budget_keys:
        # The cap acts on the budget's Pub/Sub notifications: without a budget it would never fire.
        r.fail(
            f"{cap.key}.enabled needs a budget to listen to; {budget_skipped} "
            f"(or {cap.fix('enabled', 'false')})"
        )
        return None
    return SpendCapConfig(
        fraction=fraction,
        service_account=identities.get("serviceAccount"),
        push_service_account=identities.get("pushServiceAccount"),
        role=identities.get("role"),
        budget_topic=budget_keys.get("budgetTopic"),
        budget_id=budget_keys.get("budgetId"),
    )


def _budget_valid(r: Reader, cap: Section, project: str, keys: Mapping[str, Any]) -> bool:
    """The bootstrap's budget topic and id, both or none, the topic in this stack's project."""
    fix = cap.fix("KEY", "<the bootstrap's <env>BudgetTopic / <env>BudgetId output>")
    problems = len(r.problems)
    if keys and len(keys) != len(SPEND_CAP_BUDGET_KEYS):
        missing = [key for key in SPEND_CAP_BUDGET_KEYS if key not in keys]
        r.fail(f"{cap.key} needs budgetTopic and budgetId together; missing {', '.join(missing)} — {fix}")
    topic = keys.get("budgetTopic")
    if topic is not None and not (
        isinstance(topic, str) and _TOPIC.match(topic) and topic.startswith(f"projects/{project}/")
    ):
        r.fail(
            f"{cap.key}.budgetTopic {topic!r} must be a topic of {project} like "
            f"projects/{project}/topics/whisper-budget-prod — {fix}"
        )
    budget_id = keys.get("budgetId")
    if budget_id is not None and not (
        isinstance(budget_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,128}", budget_id)
    ):
        r.fail(f"{cap.key}.budgetId {budget_id!r} is not a budget id — {fix}")
    return len(r.problems) == problems


def _identities_valid(r: Reader, cap: Section, project: str, identities: Mapping[str, Any]) -> bool:
    """The bootstrap's three outputs, all or none, each in this stack's project."""
    fix = cap.fix("KEY", "<the bootstrap's <env>SpendCap… output>")
    problems = len(r.problems)
    if identities and len(identities) != len(SPEND_CAP_IDENTITY_KEYS):
        missing = [key for key in SPEND_CAP_IDENTITY_KEYS if key not in identities]
        r.fail(
            f"{cap.key} needs serviceAccount, pushServiceAccount and role together (the "
            f"bootstrap's <env>SpendCap… outputs); missing {', '.join(missing)} — {fix}"
        )
    for key in ("serviceAccount", "pushServiceAccount"):
        r.service_account(f"{cap.key}.{key}", identities.get(key), project, fix)
    role = identities.get("role")
    if role is not None and not (
        isinstance(role, str) and _CUSTOM_ROLE.match(role) and role.startswith(f"projects/{project}/")
    ):
        r.fail(
            f"{cap.key}.role {role!r} must be a custom role of {project} like "
            f"projects/{project}/roles/whisperSpendCapProd — {fix}"
        )
    return len(r.problems) == problems
