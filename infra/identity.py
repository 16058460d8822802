"""The service's runtime identity: a dedicated account that may only write logs and metrics.

In CI the account belongs to the bootstrap (`whisper:serviceAccount`), so that a destroy-and-recreate
of the stack keeps its identity and the deployer's `actAs` on it; a stack deployed by hand without
it creates `<serviceName>-run` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import StackConfig

# Everything the container itself calls: Cloud Logging and Cloud Monitoring. Image pulls are done by
# Cloud Run's service agent, which can read same-project repositories, so no registry role is needed.
# infra/bootstrap/keyless_ci.py grants the same roles to the accounts it owns.
RUNTIME_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")


@dataclass(frozen=True)
class RuntimeIdentityArgs:
    settings: StackConfig  # whisper:serviceAccount, or the account `<serviceName>-run` made here


class RuntimeIdentity(Component):
    """A service account per service, so that it never runs as the default compute account."""

    email: pulumi.Output[str]
    member: pulumi.Output[str]
    # What must exist before a revision can run as the account (empty for a bootstrap account).
    resources: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        args: RuntimeIdentityArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("RuntimeIdentity", name, opts, depends_on)
        cfg = args.settings
        if cfg.service_account is not None:
            self.email = pulumi.Output.from_input(cfg.service_account)
            self.resources = []
        else:
            account = gcp.serviceaccount.Account(
                f"{name}-account",
                project=cfg.project,
                account_id=f"{cfg.service_name}-run",
                display_name=f"{cfg.service_name} Cloud Run runtime",
                description="Runs the Whisper API on Cloud Run; may only write logs and metrics.",
                opts=self.after(),
            )
            roles = [
                gcp.projects.IAMMember(
                    f"{name}-{role.removeprefix('roles/').replace('.', '-').lower()}",
                    project=cfg.project,
                    role=role,
                    member=account.member,
                    opts=self.own(),
                )
                for role in RUNTIME_ROLES
            ]
            self.email = account.email
            self.resources = [account, *roles]
        self.member = self.email.apply(lambda email: f"serviceAccount:{email}")
        self.register_outputs({"email": self.email})
