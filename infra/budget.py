"""A monthly budget on the project's spend, so that an idle GPU left running is noticed early."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import BudgetConfig
from infra.shared import slug

CURRENT_SPEND = "CURRENT_SPEND"
FORECASTED_SPEND = "FORECASTED_SPEND"
# Cloud Billing publishes budget notifications as this Google-managed account.
BUDGET_PUBLISHER = "serviceAccount:billing-budget-alert@system.gserviceaccount.com"


@dataclass(frozen=True)
class BudgetAlertsArgs:
    project: str
    service_name: str
    settings: BudgetConfig
    # The stack's `gcp:` credentials settings (impersonation, credentials, access token): an explicit
    # provider does not inherit them from the default one.
    provider_settings: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Also publish every update to a Pub/Sub topic (the spend cap listens there).
    publish_to_topic: bool = False


class BudgetAlerts(Component):
    """A billing.Budget scoped to this project with current and forecasted thresholds, emailing alerts."""

    def __init__(
        self,
        name: str,
        args: BudgetAlertsArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("BudgetAlerts", name, opts, depends_on)
        budget = args.settings
        # The Budget API wants a quota project even with user credentials (ADC): bill the calls to
        # this project instead of failing with "requires a quota project".
        billing_provider = gcp.Provider(
            f"{name}-provider",
            project=args.project,
            billing_project=args.project,
            user_project_override=True,
            **args.provider_settings,  # type: ignore[arg-type]
            opts=self.own(),
        )
        # Named after the address, not its position: removing one e-mail touches only its channel.
        self.channels = [
            gcp.monitoring.NotificationChannel(
                f"{name}-email-{slug(email)}",
                project=args.project,
                type="email",
                display_name=f"{args.service_name} budget: {email}",
                labels={"email_address": email},
                opts=self.after(),
            )
            for email in budget.emails
        ]
        self.topic: gcp.pubsub.Topic | None = None
        publisher = None
        if args.publish_to_topic:
            self.topic, publisher = self._topic(name, args)
        project_number = gcp.organizations.get_project_output(project_id=args.project).number
        threshold_rules = [
            gcp.billing.BudgetThresholdRuleArgs(threshold_percent=value, spend_basis=CURRENT_SPEND)
            for value in budget.thresholds
        ] + [
            gcp.billing.BudgetThresholdRuleArgs(threshold_percent=value, spend_basis=FORECASTED_SPEND)
            for value in budget.forecast_thresholds
        ]
        self.budget = gcp.billing.Budget(
            f"{name}-budget",
            billing_account=budget.billing_account,
            display_name=f"{args.service_name} ({args.project})",
            amount=gcp.billing.BudgetAmountArgs(
                specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code=budget.currency, units=str(budget.amount)
                )
            ),
            budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                projects=[pulumi.Output.concat("projects/", project_number)],
            ),
            threshold_rules=threshold_rules,
            all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(
                monitoring_notification_channels=[channel.id for channel in self.channels],
                # Billing admins keep getting the default emails as well.
                disable_default_iam_recipients=False,
                pubsub_topic=self.topic.id if self.topic else None,
                schema_version="1.0" if self.topic else None,
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=billing_provider,
                depends_on=[*self.depends_on, *([publisher] if publisher else [])],
            ),
        )
        # billingAccounts/<account>/budgets/<id>: notifications carry the <id> as attribute `budgetId`.
        self.budget_id = self.budget.name.apply(lambda budget: budget.rsplit("/", 1)[-1])
        self.register_outputs({"budget": self.budget.name})

    def _topic(self, name: str, args: BudgetAlertsArgs) -> tuple[gcp.pubsub.Topic, gcp.pubsub.TopicIAMMember]:
        topic = gcp.pubsub.Topic(
            f"{name}-topic",
            project=args.project,
            name=f"{args.service_name}-budget",
            message_retention_duration="86400s",
            opts=self.after(),
        )
        # Only Cloud Billing publishes here: a forged "over budget" message would stop the service.
        publisher = gcp.pubsub.TopicIAMMember(
            f"{name}-topic-publisher",
            project=args.project,
            topic=topic.name,
            role="roles/pubsub.publisher",
            member=BUDGET_PUBLISHER,
            opts=self.own(),
        )
        return topic, publisher
