"""infra/budget.py on the mock runtime: the budget, its e-mail channels and its provider."""

import json

from infra.mockrun import MOCK_PROJECT_NUMBER, Plan, load_stack_config, run_program

BUDGET = "gcp:billing/budget:Budget"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
API = "gcp:projects/service:Service"


def test_budget_and_its_channels_are_created_after_the_apis(prod: Plan) -> None:
    for resource in [prod.one(BUDGET), *prod.of_type(CHANNEL)]:
        assert prod.not_waited_for(resource, prod.of_type(API)) == [], resource.name
    assert prod.not_waited_for(prod.one(BUDGET), prod.of_type(CHANNEL)) == []


def test_budget_channels_are_named_after_their_address_not_their_position() -> None:
    config = load_stack_config("prod")
    budget = json.loads(config["whisper:budget"])
    reordered = {**config, "whisper:budget": json.dumps({**budget, "emails": budget["emails"][::-1]})}
    names = {
        c.name: c.inputs["labels"]["email_address"]
        for c in run_program(config, stack="prod").of_type(CHANNEL)
    }
    assert names == {
        c.name: c.inputs["labels"]["email_address"]
        for c in run_program(reordered, stack="prod").of_type(CHANNEL)
    }
    assert names["budget-email-finance-example-com"] == "finance@example.com"


def test_prod_budget_alerts(prod: Plan) -> None:
    budget = prod.one(BUDGET).inputs
    assert budget["billingAccount"] == "012345-6789AB-CDEF01"
    assert budget["amount"] == {"specifiedAmount": {"currencyCode": "USD", "units": "1500"}}
    assert budget["budgetFilter"]["projects"] == [f"projects/{MOCK_PROJECT_NUMBER}"]
    rules = sorted((rule["spendBasis"], rule["thresholdPercent"]) for rule in budget["thresholdRules"])
    assert rules == [
        ("CURRENT_SPEND", 0.5),
        ("CURRENT_SPEND", 0.9),
        ("CURRENT_SPEND", 1.0),
        ("FORECASTED_SPEND", 1.0),
    ]
    channels = prod.of_type(CHANNEL)
    assert sorted(c.inputs["labels"]["email_address"] for c in channels) == [
        "finance@example.com",
        "platform-oncall@example.com",
    ]
    assert all(c.inputs["type"] == "email" for c in channels)
    assert sorted(budget["allUpdatesRule"]["monitoringNotificationChannels"]) == sorted(
        c.outputs["name"] for c in channels
    )
    assert prod.warnings == []


def test_budget_skipped_with_a_warning_without_billing_account(dev: Plan) -> None:
    assert dev.of_type(BUDGET) == [] and dev.of_type(CHANNEL) == []
    assert len(dev.warnings) == 2
    assert "whisper:budget.billingAccount is not set" in dev.warnings[0]
    assert "alert policies notify no one" in dev.warnings[1]


def test_budget_provider_gets_the_stacks_gcp_credentials_settings() -> None:
    config = {
        **load_stack_config("prod"),
        "gcp:impersonateServiceAccount": "ops@my-whisper-prod.iam.gserviceaccount.com",
        "gcp:accessToken": "ya29.token",
    }
    plan = run_program(config, stack="prod", secret_keys=["gcp:accessToken"])
    budget = plan.one(BUDGET)
    provider = plan.provider_of(budget)
    assert provider is not None and provider.type == "pulumi:providers:gcp"
    assert provider.inputs["impersonateServiceAccount"] == "ops@my-whisper-prod.iam.gserviceaccount.com"
    assert provider.inputs["accessToken"] == "ya29.token"
    assert "accessToken" in provider.secret_inputs
    assert (provider.inputs["billingProject"], provider.inputs["userProjectOverride"]) == (
        "my-whisper-prod",
        "true",
    )


def test_budget_provider_without_gcp_settings_sets_only_the_quota_project(prod: Plan) -> None:
    provider = prod.provider_of(prod.one(BUDGET))
    assert provider is not None
    assert not {"impersonateServiceAccount", "accessToken", "credentials"} & set(provider.inputs)
