"""The plan as `make plan` prints it (scripts/plan): a resource tree with the settings reviewers check."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from infra.mockrun.recorder import Plan, RecordedResource

# The settings a reviewer looks for, per resource type (paths into the camelCase inputs).
KEY_SETTINGS: Mapping[str, tuple[str, ...]] = {
    "gcp:projects/service:Service": ("service", "disableOnDestroy"),
    "gcp:artifactregistry/repository:Repository": (
        "repositoryId",
        "location",
        "format",
        "cleanupPolicies",
    ),
    "docker-build:index:Image": ("tags", "target", "platforms", "buildArgs", "push", "cacheTo"),
    "gcp:serviceaccount/account:Account": ("accountId",),
    "gcp:projects/iAMMember:IAMMember": ("role", "member"),
    "gcp:cloudrunv2/service:Service": (
        "name",
        "location",
        "ingress",
        "deletionProtection",
        "invokerIamDisabled",
        "template.serviceAccount",
        "template.nodeSelector.accelerator",
        "template.gpuZonalRedundancyDisabled",
        "template.scaling",
        "template.maxInstanceRequestConcurrency",
        "template.timeout",
        "template.containers.0.image",
        "template.containers.0.resources",
        "template.containers.0.startupProbe.httpGet.path",
        "template.containers.0.livenessProbe.httpGet.path",
        "template.containers.0.envs",
        # The metrics collector sidecar, when the stack has one (infra/observability.py).
        "template.containers.1.image",
        "template.containers.1.dependsOns",
        "template.volumes",
    ),
    "gcp:secretmanager/secret:Secret": ("secretId",),
    "gcp:secretmanager/secretIamMember:SecretIamMember": ("secretId", "role", "member"),
    "time:index/sleep:Sleep": ("createDuration",),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ("role", "member"),
    "gcp:monitoring/notificationChannel:NotificationChannel": ("type", "labels"),
    "gcp:billing/budget:Budget": (
        "billingAccount",
        "amount",
        "budgetFilter",
        "thresholdRules",
        "allUpdatesRule.pubsubTopic",
    ),
    "gcp:monitoring/alertPolicy:AlertPolicy": ("displayName", "severity", "notificationChannels"),
    "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig": (
        "httpCheck.path",
        "httpCheck.serviceAgentAuthentication",
        "period",
    ),
    "gcp:pubsub/topic:Topic": ("name",),
    "gcp:pubsub/topicIAMMember:TopicIAMMember": ("role", "member"),
    "gcp:pubsub/subscription:Subscription": ("topic", "pushConfig.pushEndpoint", "pushConfig.oidcToken"),
    "gcp:projects/iAMCustomRole:IAMCustomRole": ("roleId", "permissions"),
    "gcp:serviceaccount/iAMMember:IAMMember": ("serviceAccountId", "role", "member"),
    "pulumi:providers:gcp": ("billingProject", "userProjectOverride"),
    "gcp:storage/bucket:Bucket": (
        "name",
        "location",
        "uniformBucketLevelAccess",
        "publicAccessPrevention",
        "forceDestroy",
        "lifecycleRules",
    ),
    "gcp:storage/bucketIAMMember:BucketIAMMember": ("bucket", "role", "member"),
    "gcp:cloudrunv2/job:Job": (
        "name",
        "location",
        "deletionProtection",
        "template.taskCount",
        "template.parallelism",
        "template.template.serviceAccount",
        "template.template.nodeSelector.accelerator",
        "template.template.maxRetries",
        "template.template.timeout",
        "template.template.containers.0.image",
        "template.template.containers.0.commands",
        "template.template.containers.0.args",
        "template.template.containers.0.resources",
    ),
    "gcp:cloudrunv2/jobIamMember:JobIamMember": ("role", "member"),
}


def lookup(inputs: Mapping[str, Any], path: str) -> Any:
    """`lookup(inputs, "template.containers.0.image")`; None where the path does not exist."""
    value: Any = inputs
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def render_plan(plan: Plan, stack: str) -> str:
    """The resources as a tree (components, then their children), each with its key settings."""
    children: dict[str, list[RecordedResource]] = {}
    for resource in plan.resources:
        children.setdefault(resource.parent_urn, []).append(resource)
    roots = sorted(
        (r for r in plan.resources if r.parent_urn not in {x.urn for x in plan.resources}), key=_sort_key
    )
    lines = [f"Stack {stack}: {len(plan.resources)} resources (mock runtime, nothing was created)", ""]

    def emit(resource: RecordedResource, depth: int) -> None:
        indent = "  " * depth
        flags = " [protected]" if resource.protect else ""
        parent = f" (parent: {resource.parent})" if resource.parent else ""
        lines.append(f"{indent}{resource.name}  {resource.type}{parent}{flags}")
        for path in KEY_SETTINGS.get(resource.type, ()):
            value = lookup(resource.inputs, path)
            if value is not None:
                lines.append(f"{indent}    {path} = {_compact(value)}")
        if waits_for := _owners(plan, resource.explicit_dependencies):
            lines.append(f"{indent}    waits for: {', '.join(waits_for)}")
        for child in sorted(children.get(resource.urn, []), key=_sort_key):
            emit(child, depth + 1)

    for root in roots:
        emit(root, 0)
    lines += ["", "Outputs:"]
    lines += [f"  {key} = {value}" for key, value in sorted(plan.outputs.items())]
    lines += [f"warning: {message}" for message in plan.warnings]
    return "\n".join(lines)


def _owners(plan: Plan, urns: frozenset[str]) -> list[str]:
    """Dependencies by the component that owns them (`apis`, not its eight services)."""
    owners = set()
    for urn in urns:
        resource = plan.by_urn(urn)
        owners.add(resource.parent or resource.name)
    return sorted(owners)


def _sort_key(resource: RecordedResource) -> tuple[bool, str]:
    return (resource.custom, resource.name)


def _compact(value: Any) -> str:
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, Mapping) and set(v) == {"name", "value"} for v in value)
    ):
        return ", ".join(f"{v['name']}={v['value']}" for v in value)  # env vars
    if isinstance(value, str):
        return value
    return json.dumps(_whole_numbers(value), sort_keys=True, default=str)


def _whole_numbers(value: Any) -> Any:
    """The runtime turns every number into a float; print 3.0 as 3 again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value
