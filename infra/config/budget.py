"""`whisper:budget`: a monthly budget on the project's spend, alerting by e-mail (infra/budget.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.config.cloud_run import MAX_BUDGET_EMAILS
from infra.config.keys import BUDGET_KEYS, NAMESPACE
from infra.config.reader import Reader, Section, is_number

MAX_THRESHOLD = 5.0  # 500 %: thresholds are fractions, a 50 meant as "50 %" is caught here
_BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
SET_ACCOUNT = f"pulumi config set --path '{NAMESPACE}:budget.billingAccount' 012345-6789AB-CDEF01"


@dataclass(frozen=True)
class BudgetConfig:
    """A monthly budget on the project's spend, alerting by email."""

    billing_account: str
    amount: int
    currency: str = "USD"
    thresholds: tuple[float, ...] = (0.5, 0.9, 1.0)
    forecast_thresholds: tuple[float, ...] = (1.0,)
    emails: tuple[str, ...] = ()


DEFAULTS = BudgetConfig(billing_account="", amount=0)


def read_budget(r: Reader) -> tuple[BudgetConfig | None, str | None]:
    """The budget, or None and why there is none (a warning at deploy time, not an error)."""
    budget = r.section("budget", "amount", "100")
    if budget is None or not budget.get("billingAccount"):
        return None, f"{NAMESPACE}:budget.billingAccount is not set, so no budget alerts — {SET_ACCOUNT}"
    problems_before = len(r.problems)
    budget.unknown_keys(BUDGET_KEYS)

    account = str(budget.get("billingAccount")).removeprefix("billingAccounts/")
    if not _BILLING_ACCOUNT.match(account):
        r.fail(
            f"{budget.key}.billingAccount {account!r} is not a billing account ID like "
            f"012345-6789AB-CDEF01 (gcloud billing accounts list) — {SET_ACCOUNT}"
        )

    amount = budget.get("amount")
    if not is_number(amount) or amount <= 0 or amount != int(amount):
        r.fail(
            f"{budget.key}.amount {amount!r} must be a positive whole amount of money — "
            f"{budget.fix('amount', 100)}"
        )
        amount = 0

    currency = str(budget.get("currency", DEFAULTS.currency))
    if not _CURRENCY.match(currency):
        r.fail(
            f"{budget.key}.currency {currency!r} must be an ISO 4217 code such as USD, matching the "
            f"billing account's currency — {budget.fix('currency', DEFAULTS.currency)}"
        )

    thresholds = _thresholds(budget, "thresholds", DEFAULTS.thresholds)
    forecast = _thresholds(budget, "forecastThresholds", DEFAULTS.forecast_thresholds)

    emails = budget.emails("you@example.com")
    if len(emails) > MAX_BUDGET_EMAILS:
        r.fail(
            f"{budget.key}.emails has {len(emails)} addresses; a budget notifies at most "
            f"{MAX_BUDGET_EMAILS} channels (use a group address for more people) — pulumi config rm --path "
            f"'{budget.key}.emails[{MAX_BUDGET_EMAILS}]'"
        )
    duplicates = sorted({email for email in emails if isinstance(email, str) and emails.count(email) > 1})
    if duplicates:
        r.fail(
            f"{budget.key}.emails lists {', '.join(duplicates)} more than once — "
            f"keep one entry per address (pulumi config edit)"
        )

    if len(r.problems) > problems_before:
        return None, None
    config = BudgetConfig(account, int(amount), currency, thresholds, forecast, tuple(emails))
    return config, None


def _thresholds(budget: Section, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    values = budget.listed(key, list(default))
    for value in values:
        if not is_number(value) or not 0 < value <= MAX_THRESHOLD:
            budget.fail(
                f"{budget.key}.{key} entry {value!r} must be a fraction of the amount in "
                f"(0, {MAX_THRESHOLD:g}] (0.5 means 50 %) — {budget.fix(f'{key}[0]', 0.5)}"
            )
    return tuple(sorted(float(value) for value in values if is_number(value)))
