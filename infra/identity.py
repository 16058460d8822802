"""The service's own runtime identity: a dedicated account that may only write logs and metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

# Everything the container itself calls: Cloud Logging and Cloud Monitoring. Image pulls are done by
# Cloud Run's service agent, which can read same-project repositories, so no registry role is needed.
RUNTIME_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")


@dataclass(frozen=True)
class RuntimeIdentityArgs:
    project: str
    service_name: str


class RuntimeIdentity(pulumi.ComponentResource):
    """A service account per service, so that it never runs as the default compute account."""

    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: RuntimeIdentityArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("whisper:infra:RuntimeIdentity", name, None, opts)
        self.account = gcp.serviceaccount.Account(
            f"{name}-account",
            project=args.project,
            account_id=f"{args.service_name}-run",
            display_name=f"{args.service_name} Cloud Run runtime",
            description="Runs the Whisper API on Cloud Run; may only write logs and metrics.",
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.email = self.account.email
        self.member = self.account.email.apply(lambda email: f"serviceAccount:{email}")
        self.bindings = [
            gcp.projects.IAMMember(
                f"{name}-{role.removeprefix('roles/').replace('.', '-').lower()}",
                project=args.project,
                role=role,
                member=self.member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for role in RUNTIME_ROLES
        ]
        self.register_outputs({"email": self.email})
