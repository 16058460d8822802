"""The Google APIs the stack uses, enabled before anything that needs them is created."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

# API → why it is needed. Left enabled on destroy: other workloads in the project may use them.
REQUIRED_APIS: dict[str, str] = {
    "run.googleapis.com": "the Cloud Run service",
    "artifactregistry.googleapis.com": "the image repository",
    "iam.googleapis.com": "the runtime service account",
    "cloudresourcemanager.googleapis.com": "project IAM bindings and the project number",
    "logging.googleapis.com": "the service's logs",
    "monitoring.googleapis.com": "metrics and the budget's notification channels",
    "billingbudgets.googleapis.com": "the budget alerts",
    "pubsub.googleapis.com": "the budget's topic, which the spend cap listens to",
}


@dataclass(frozen=True)
class ProjectApisArgs:
    project: str


class ProjectApis(pulumi.ComponentResource):
    """Enables REQUIRED_APIS; other components `depends_on=apis.services`."""

    services: list[gcp.projects.Service]

    def __init__(self, name: str, args: ProjectApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("whisper:infra:ProjectApis", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=args.project,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=child,
            )
            for api in REQUIRED_APIS
        ]
        self.register_outputs({"services": [service.service for service in self.services]})
