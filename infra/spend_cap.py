"""The spend cap: the budget's Pub/Sub topic pushes to a small Cloud Run service that stops GPU spend.

Built by the same `pulumi up` as the API, the same way: pulumi-docker-build pushes the image of
infra/spend_cap_function/ (standard-library Python on the service's pinned base) to the stack's
Artifact Registry repository. A Cloud Run service rather than a Cloud Run function: a function would
add Cloud Build, Eventarc, a source bucket and a build identity to the stack; this needs nothing the
stack does not already have (Docker where `pulumi up` runs, the registry, Cloud Run).

Identities, each with one job:
- `<service>-cap` runs the cap. It may read and update this one Cloud Run service (a custom role with
  `run.services.get` and `run.services.update`, granted on the service, not the project) and act as
  the service's runtime account (an update deploys a revision that runs as it). Nothing else.
- `<service>-cap-push` is the identity Pub/Sub presents (an OIDC token); it may only invoke the cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import SpendCapConfig
from infra.registry import TOKEN_USERNAME
from infra.shared import relative_to_cwd
from infra.spend_cap_function.cap import CAP_LABEL, CAP_LABEL_VALUE

run = gcp.cloudrunv2

FUNCTION_DIR = Path(__file__).resolve().parent / "spend_cap_function"
CAP_PERMISSIONS = ("run.services.get", "run.services.update")
INVOKER_ROLE = "roles/run.invoker"
ACT_AS_ROLE = "roles/iam.serviceAccountUser"
ACCOUNT_PREFIX_MAX = 20  # service account IDs are at most 30 characters


@dataclass(frozen=True)
class SpendCapArgs:
    project: str
    region: str
    service_name: str
    service: pulumi.Input[str]  # the capped service's name output
    runtime_account_email: pulumi.Input[str]  # the capped service's runtime account
    registry_url: pulumi.Input[str]
    topic: pulumi.Input[str]  # the budget's topic ID
    budget_id: pulumi.Input[str]
    settings: SpendCapConfig
    channels: Sequence[pulumi.Input[str]]
    labels: Mapping[str, str]


def cap_engaged(project: str, region: str, service_name: str) -> bool:
    """Whether the live service carries the cap's `spend-cap=engaged` label.

    Every update writes the whole service (the provider sends no update mask), so a deploy that changes
    anything, such as a new image digest, would restore the ingress and instances the cap took away.
    The program reads the label first and keeps the capped values while it is there. A service that
    does not exist yet (the first deploy) is not capped; any other failure stops the deploy.
    """
    service_id = f"projects/{project}/locations/{region}/services/{service_name}"
    try:
        live = run.get_service(name=service_name, location=region, project=project)
    except Exception as error:  # the invoke's error carries the provider's message only
        if f"{service_id} not found" in str(error):
            return False
        raise
    labels = {**(live.effective_labels or {}), **(live.labels or {})}
    return labels.get(CAP_LABEL) == CAP_LABEL_VALUE


def lift_instructions(project: str, region: str, service_name: str) -> str:
    """What a person runs to lift an engaged cap on purpose."""
    unlabel = (
        f"gcloud run services update {service_name} --project {project} --region {region} "
        f"--remove-labels {CAP_LABEL}"
    )
    return (
        f"the spend cap has capped {service_name} (label {CAP_LABEL}={CAP_LABEL_VALUE}); this deploy keeps "
        "it capped (internal ingress, 0 to 1 instances). To lift it deliberately, raise "
        "whisper:budget.amount or whisper:spendCap.fraction (or set whisper:spendCap.enabled false) so "
        f"that the next budget message does not cap it again, then run: {unlabel} && pulumi up --refresh"
    )


class SpendCap(Component):
    """The cap's image, identities, Cloud Run service, push subscription and an alert when it fires."""

    def __init__(
        self,
        name: str,
        args: SpendCapArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("SpendCap", name, opts, depends_on)
        cap = args.settings
        cap_name = f"{args.service_name}-spend-cap"

        self.image = self._image(name, args)
        cap_email, push_email, role, grants = (
            (cap.service_account, cap.push_service_account, cap.role, [])
            if cap.service_account and cap.push_service_account and cap.role
            else self._own_identities(name, args)
        )
        cap_member = pulumi.Output.concat("serviceAccount:", cap_email)
        self.grants = [
            run.ServiceIamMember(
                f"{name}-updates-service",
                project=args.project,
                location=args.region,
                name=args.service,
                role=role,
                member=cap_member,
                opts=self.own(),
            ),
            *grants,
        ]
        self.service = run.Service(
            f"{name}-service",
            name=cap_name,
            project=args.project,
            location=args.region,
            description=f"Stops {args.service_name}'s GPU spend when its budget is spent.",
            labels=dict(args.labels),
            # Pub/Sub push reaches internal services of its own project; nobody else needs to.
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            invoker_iam_disabled=False,
            # Stateless and rebuilt by every `up`: protecting it would make turning the cap off
            # (`whisper:spendCap.enabled: false`, the way out after it fired) fail in prod.
            deletion_protection=False,
            template=run.ServiceTemplateArgs(
                service_account=cap_email,
                timeout="60s",
                max_instance_request_concurrency=1,
                scaling=run.ServiceTemplateScalingArgs(min_instance_count=0, max_instance_count=1),
                labels=dict(args.labels),
                containers=[
                    run.ServiceTemplateContainerArgs(
                        name="spend-cap",
                        image=self.image.ref,
                        resources=run.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": "1", "memory": "512Mi"}, cpu_idle=True
                        ),
                        envs=[
                            run.ServiceTemplateContainerEnvArgs(name=key, value=value)
                            for key, value in {
                                "CAP_SERVICE": pulumi.Output.concat(
                                    "projects/",
                                    args.project,
                                    "/locations/",
                                    args.region,
                                    "/services/",
                                    args.service,
                                ),
                                "CAP_BUDGET_ID": args.budget_id,
                                "CAP_FRACTION": f"{cap.fraction:g}",
                            }.items()
                        ],
                    )
                ],
            ),
            opts=self.after(*self.grants),
        )
        invoker = run.ServiceIamMember(
            f"{name}-push-invokes",
            project=args.project,
            location=args.region,
            name=self.service.name,
            role=INVOKER_ROLE,
            member=pulumi.Output.concat("serviceAccount:", push_email),
            opts=self.own(),
        )
        self.subscription = gcp.pubsub.Subscription(
            f"{name}-subscription",
            project=args.project,
            name=cap_name,
            topic=args.topic,
            ack_deadline_seconds=60,
            message_retention_duration="86400s",
            # Never deleted for inactivity (the default is 31 days without messages).
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            retry_policy=gcp.pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff="10s", maximum_backoff="600s"
            ),
            push_config=gcp.pubsub.SubscriptionPushConfigArgs(
                push_endpoint=self.service.uri,
                oidc_token=gcp.pubsub.SubscriptionPushConfigOidcTokenArgs(service_account_email=push_email),
            ),
            labels=dict(args.labels),
            opts=self.own(invoker),
        )
        self.alert = gcp.monitoring.AlertPolicy(
            f"{name}-engaged",
            project=args.project,
            display_name=f"{args.service_name}: spend cap engaged",
            combiner="OR",
            severity="CRITICAL",
            conditions=[
                gcp.monitoring.AlertPolicyConditionArgs(
                    display_name="the spend cap capped the service",
                    condition_matched_log=gcp.monitoring.AlertPolicyConditionConditionMatchedLogArgs(
                        filter=(
                            f'resource.type="cloud_run_revision" '
                            f'AND resource.labels.service_name="{cap_name}" '
                            'AND jsonPayload.event=("spend_cap_engaged" OR "spend_cap_failed")'
                        )
                    ),
                )
            ],
            alert_strategy=gcp.monitoring.AlertPolicyAlertStrategyArgs(
                notification_rate_limit=gcp.monitoring.AlertPolicyAlertStrategyNotificationRateLimitArgs(
                    period="3600s"
                ),
                auto_close="86400s",
            ),
            notification_channels=list(args.channels),
            documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                subject=f"{args.service_name}: spend cap engaged",
                mime_type="text/markdown",
                content=(
                    f"The month's actual spend passed {cap.fraction:.0%} of the budget, so the spend cap "
                    f"switched `{args.service_name}` to internal ingress with 0 to 1 instances and labelled "
                    "it `spend-cap=engaged` (or tried to: `spend_cap_failed` means the service is still "
                    "running and Pub/Sub retries).\n\n**To restore:** raise the budget "
                    "(`whisper:budget.amount`) or `whisper:spendCap.fraction`, or turn the cap off for the "
                    "month, and deploy that. Deploys keep the service capped while the label is there; "
                    f"remove it (`gcloud run services update {args.service_name} --project {args.project} "
                    f"--region {args.region} --remove-labels spend-cap`), then run `pulumi up --refresh` "
                    "(the refresh sees what the cap changed and puts the stack's values back)."
                ),
            ),
            user_labels=dict(args.labels),
            opts=self.after(),
        )
        self.register_outputs({"service": self.service.name, "subscription": self.subscription.name})

    def _own_identities(
        self, name: str, args: SpendCapArgs
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str], list[pulumi.Resource]]:
        """Without the bootstrap's: the two accounts, the role and "act as" the runtime account.

        Creating them needs a project owner (or iam.serviceAccounts.create, iam.roles.create and
        setIamPolicy on the runtime account), which the keyless CI deployer does not have.
        """
        prefix = args.service_name[:ACCOUNT_PREFIX_MAX]
        account = gcp.serviceaccount.Account(
            f"{name}-account",
            project=args.project,
            account_id=f"{prefix}-cap",
            display_name=f"{args.service_name} spend cap",
            description=f"Caps the {args.service_name} Cloud Run service when its budget is spent.",
            opts=self.after(),
        )
        pusher = gcp.serviceaccount.Account(
            f"{name}-pusher",
            project=args.project,
            account_id=f"{prefix}-cap-push",
            display_name=f"{args.service_name} spend cap: Pub/Sub push",
            description="Presented by Pub/Sub to invoke the spend cap; may do nothing else.",
            opts=self.after(),
        )
        role = gcp.projects.IAMCustomRole(
            f"{name}-role",
            project=args.project,
            role_id=f"{args.service_name.replace('-', '_')}_spend_cap",
            title=f"{args.service_name} spend cap",
            description="Read and update one Cloud Run service (granted on that service only).",
            permissions=list(CAP_PERMISSIONS),
            opts=self.after(),
        )
        acts_as_runtime = gcp.serviceaccount.IAMMember(
            f"{name}-acts-as-runtime",
            service_account_id=pulumi.Output.concat(
                "projects/", args.project, "/serviceAccounts/", args.runtime_account_email
            ),
            role=ACT_AS_ROLE,
            member=account.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=self.own(),
        )
        return account.email, pusher.email, role.name, [acts_as_runtime]

    def _image(self, name: str, args: SpendCapArgs) -> docker_build.Image:
        """The cap's image, pushed next to the API's with the same short-lived credentials."""
        image = pulumi.Output.concat(args.registry_url, "/spend-cap")
        registry_host = pulumi.Output.from_input(args.registry_url).apply(lambda url: url.split("/", 1)[0])
        token: pulumi.Output[str] = pulumi.Output.secret(
            gcp.organizations.get_client_config_output().access_token
        )
        return docker_build.Image(
            f"{name}-build",
            context=docker_build.BuildContextArgs(location=relative_to_cwd(FUNCTION_DIR)),
            platforms=[docker_build.Platform.LINUX_AMD64],
            tags=[pulumi.Output.concat(image, ":latest")],
            push=True,
            registries=[
                docker_build.RegistryArgs(address=registry_host, username=TOKEN_USERNAME, password=token)
            ],
            build_on_preview=False,
            # Like the API's image: rebuilt on every change of its sources, never protected, and its
            # pushed image kept when the resource goes (the running revision pulls it by digest).
            opts=pulumi.ResourceOptions(parent=self, protect=False, retain_on_delete=True),
        )
