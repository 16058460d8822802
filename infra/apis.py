"""The Google APIs the stack uses, enabled (and given time to take effect) before anything needs them."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time as time

from infra.component import Component

# API → why it is needed. Left enabled on destroy: other workloads in the project may use them.
REQUIRED_APIS: dict[str, str] = {
    "run.googleapis.com": "the Cloud Run service",
    "artifactregistry.googleapis.com": "the image repository",
    "iam.googleapis.com": "the runtime service account",
    "cloudresourcemanager.googleapis.com": "project IAM bindings and the project number",
    "logging.googleapis.com": "the service's logs",
    "monitoring.googleapis.com": "metrics and the budget's notification channels",
    "billingbudgets.googleapis.com": "the budget alerts",
    "secretmanager.googleapis.com": "the API key's secret",
    "storage.googleapis.com": "the batch job's buckets (whisper:batch)",
    "pubsub.googleapis.com": "the budget's topic, which the spend cap listens to",
}
# An API answers "has not been used in project … or it is disabled" for a while after its enablement
# operation finished; Google's guidance is to wait and retry. One pause the first time (and again
# only when the list changes) replaces "run it again" on a brand-new project.
PROPAGATION_DELAY = "90s"


@dataclass(frozen=True)
class ProjectApisArgs:
    project: str


class ProjectApis(Component):
    """Enables REQUIRED_APIS; other components `depends_on=apis.ready`."""

    services: list[gcp.projects.Service]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ProjectApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ProjectApis", name, opts)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=args.project,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=self.own(),
            )
            for api in REQUIRED_APIS
        ]
        propagation = time.Sleep(
            f"{name}-propagation",
            create_duration=PROPAGATION_DELAY,
            triggers={api: service.id for api, service in zip(REQUIRED_APIS, self.services, strict=True)},
            opts=self.own(*self.services),
        )
        self.ready = [*self.services, propagation]
        self.register_outputs({"services": [service.service for service in self.services]})
