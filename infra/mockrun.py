"""Evaluate the program on Pulumi's mock runtime: no cloud credentials, no pulumi CLI, no Docker.

Shared by the tests (tests/infra/) and `scripts/plan`, so that what reviewers read is what is tested.
Only the cloud is mocked: the program, its config validation and every resource's inputs are real.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from infra.shared import REPO_ROOT

MOCK_PROJECT_NUMBER = "123456789012"
GET_PROJECT = "gcp:organizations/getProject:getProject"
GET_CLIENT_CONFIG = "gcp:organizations/getClientConfig:getClientConfig"
MOCK_ACCESS_TOKEN = "mock-access-token"  # noqa: S105 - a placeholder the mocks hand out


@dataclass(frozen=True)
class RecordedResource:
    """One registered resource: its type token, logical name, inputs (camelCase) and options.

    `dependencies` are the URNs the engine waits for before creating it, as the SDK sends them:
    explicit `depends_on` (a component expanded to its children) and every resource whose output
    flows into an input; `property_dependencies` says which input brought which.
    """

    type: str
    name: str
    urn: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    parent_urn: str
    protect: bool
    custom: bool
    secret_inputs: frozenset[str] = frozenset()
    dependencies: frozenset[str] = frozenset()
    property_dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    provider_urn: str = ""
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()

    @property
    def parent(self) -> str:
        """The parent's logical name ('' for top-level resources)."""
        return _name_of(self.parent_urn)

    @property
    def explicit_dependencies(self) -> frozenset[str]:
        """What `depends_on` added: the dependencies that no input accounts for."""
        implied = frozenset().union(*self.property_dependencies.values())
        return self.dependencies - implied


@dataclass
class Plan:
    """Everything one evaluation declared, in registration order."""

    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [resource for resource in self.resources if resource.type == type_]

    def one(self, type_: str) -> RecordedResource:
        found = self.of_type(type_)
        if len(found) != 1:
            raise LookupError(f"expected one {type_}, found {len(found)}")
        return found[0]

    def named(self, name: str) -> RecordedResource:
        return next(resource for resource in self.resources if resource.name == name)

    def by_urn(self, urn: str) -> RecordedResource:
        return next(resource for resource in self.resources if resource.urn == urn)

    def children(self, component: RecordedResource) -> list[RecordedResource]:
        """Every resource below `component`, at any depth."""
        below = [resource for resource in self.resources if resource.parent_urn == component.urn]
        return below + [grandchild for child in below for grandchild in self.children(child)]

    def upstream(self, resource: RecordedResource) -> set[str]:
        """Every URN `resource` waits for, directly or through a chain of dependencies."""
        seen: set[str] = set()
        pending = list(resource.dependencies)
        while pending:
            urn = pending.pop()
            if urn not in seen:
                seen.add(urn)
                pending.extend(self.by_urn(urn).dependencies)
        return seen

    def waits_for(self, resource: RecordedResource, other: RecordedResource) -> bool:
        """True when the engine creates `other` (or, for a component, all its children) first."""
        targets = [child for child in self.children(other) if child.custom] if not other.custom else [other]
        upstream = self.upstream(resource)
        return bool(targets) and all(target.urn in upstream for target in targets)

    def not_waited_for(self, resource: RecordedResource, others: list[RecordedResource]) -> list[str]:
        """The names of `others` that `resource` may be created before (empty: the order is right)."""
        return [other.name for other in others if not self.waits_for(resource, other)]

    def provider_of(self, resource: RecordedResource) -> RecordedResource | None:
        """The explicit provider resource (None: the stack's default provider)."""
        return next((r for r in self.resources if r.urn == resource.provider_urn), None)


class CloudMocks(pulumi.runtime.Mocks):
    """Stands in for the providers: echoes inputs and adds the computed outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        state = {**inputs, **_computed_outputs(args.typ, args.name, inputs)}
        return _resource_id(args.typ, args.name, state), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return self._data_source(args), []  # (result, no check failures)

    def _data_source(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        token = args.token  # the data source's type token, not a credential
        if token == GET_PROJECT:
            project_id = args.args.get("projectId", "mock-project")
            return {"projectId": project_id, "number": MOCK_PROJECT_NUMBER, "name": project_id}
        if token == GET_CLIENT_CONFIG:
            return {"accessToken": MOCK_ACCESS_TOKEN, "id": "mock", "project": "", "region": "", "zone": ""}
        return {}


def _resource_id(type_: str, name: str, state: Mapping[str, Any]) -> str:
    """The provider's id where the program reads it: a resource path for these types."""
    if type_ == "gcp:kms/keyRing:KeyRing":
        return f"projects/{state['project']}/locations/{state['location']}/keyRings/{state['name']}"
    if type_ == "gcp:kms/cryptoKey:CryptoKey":
        return f"{state['keyRing']}/cryptoKeys/{state['name']}"
    if type_ in {
        "gcp:monitoring/notificationChannel:NotificationChannel",
        "gcp:secretmanager/secret:Secret",
        "gcp:secretmanager/secretVersion:SecretVersion",
    }:
        return str(state["name"])
    return f"{name}-id"


def _computed_outputs(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    pools = f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools"
    if type_ == "gcp:serviceaccount/account:Account":
        email = f"{inputs['accountId']}@{inputs['project']}.iam.gserviceaccount.com"
        return {
            "email": email,
            "member": f"serviceAccount:{email}",
            "name": f"projects/{inputs['project']}/serviceAccounts/{email}",
        }
    if type_ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
        return {"name": f"{pools}/{inputs['workloadIdentityPoolId']}"}
    if type_ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
        pool, provider = inputs["workloadIdentityPoolId"], inputs["workloadIdentityPoolProviderId"]
        return {"name": f"{pools}/{pool}/providers/{provider}"}
    if type_ == "gcp:projects/iAMCustomRole:IAMCustomRole":
        return {"name": f"projects/{inputs['project']}/roles/{inputs['roleId']}"}
    if type_ == "gcp:secretmanager/secret:Secret":
        return {"name": f"projects/{MOCK_PROJECT_NUMBER}/secrets/{inputs['secretId']}"}
    if type_ == "gcp:secretmanager/secretVersion:SecretVersion":
        return {"name": f"{inputs['secret']}/versions/1", "version": "1"}
    if type_ == "docker-build:index:Image":
        # A digest that follows the build inputs, like a real build of changed sources would; `ref`
        # is the first tag with the digest appended (`repo:tag@sha256:…`), as the provider returns it.
        digest = (
            "sha256:" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        )
        return {"digest": digest, "ref": f"{inputs['tags'][0]}@{digest}"}
    if type_ == "gcp:cloudrunv2/service:Service":
        return {"uri": f"https://{inputs['name']}-{MOCK_PROJECT_NUMBER}.{inputs['location']}.run.app"}
    if type_ == "gcp:monitoring/notificationChannel:NotificationChannel":
        return {"name": f"projects/{inputs['project']}/notificationChannels/{name}"}
    if type_ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
        return {"uptimeCheckId": f"{name}-check-id"}
    if type_ == "gcp:projects/iAMCustomRole:IAMCustomRole":
        return {"name": f"projects/{inputs['project']}/roles/{inputs['roleId']}"}
    if type_ == "gcp:billing/budget:Budget":
        return {"name": f"billingAccounts/{inputs['billingAccount']}/budgets/{name}"}
    return {}


class _RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also keeping each registration's options and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[tuple[Any, str]] = []  # (the request, its URN)

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append((request, response.urn))
        return response


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(
    config: Mapping[str, str],
    stack: str = "dev",
    project: str | None = None,
    program: Callable[[], Mapping[str, Any]] | None = None,
    secret_keys: Collection[str] = (),
) -> Plan:
    """Run `program` (infra.program.main) for `config` (Pulumi's flat `ns:key → string` map) on mocks.

    `secret_keys` are the keys the stack file holds encrypted (`pulumi config set --secret`).

    Raises what the program raises (e.g. infra.config.ConfigError) after the runtime has settled.
    """
    if program is None:
        from infra.program import main

        program = main

    mocks = CloudMocks()
    monitor = _RecordingMonitor(mocks)
    collector = _WarningCollector()
    logger = logging.getLogger(f"infra.mockrun.{stack}")
    logger.handlers = [collector]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)

    pulumi.runtime.set_mocks(
        mocks, project=project or project_name(), stack=stack, preview=False, logger=logger, monitor=monitor
    )
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    plan = Plan()

    run_main = program  # a name the closure below can see as never None

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        return pulumi.Output.all(**run_main()).apply(plan.outputs.update)

    evaluate()  # type: ignore[misc]  # pulumi.runtime.test is annotated as returning None
    outputs_by_urn = monitor.get_registered_resources()
    plan.resources.extend(
        _recorded(request, urn, outputs_by_urn.get(urn)) for request, urn in monitor.registrations
    )
    plan.warnings.extend(collector.messages)
    return plan


def _recorded(request: Any, urn: str, registered: Any) -> RecordedResource:
    inputs = dict(pulumi.runtime.rpc.deserialize_properties(request.object))
    return RecordedResource(
        type=request.type,
        name=request.name,
        urn=urn,
        inputs=_plain(inputs),
        outputs=_plain(registered.state) if registered else {},
        secret_inputs=_secret_keys(inputs),
        parent_urn=request.parent,
        protect=bool(request.protect),
        custom=bool(request.custom),
        dependencies=frozenset(request.dependencies),
        property_dependencies={
            key: frozenset(deps.urns) for key, deps in request.propertyDependencies.items()
        },
        # A provider reference is `<urn>::<id>`.
        provider_urn=request.provider.rsplit("::", 1)[0] if request.provider else "",
        retain_on_delete=bool(request.retainOnDelete),
        ignore_changes=tuple(request.ignoreChanges),
    )


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if "::" in urn else ""


def _plain(value: Any) -> Any:
    """Dicts and lists all the way down (the runtime hands back its own mapping types), secrets unwrapped."""
    if _is_secret(value):
        return _plain(value["value"])
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(pulumi.runtime.rpc._special_sig_key) == (
        pulumi.runtime.rpc._special_secret_sig
    )


def _secret_keys(inputs: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key, value in inputs.items() if _is_secret(value))


# --- stack files --------------------------------------------------------------------------------


def project_name(root: Path = REPO_ROOT) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def load_stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, str]:
    """`Pulumi.<stack>.yaml`'s config as the CLI hands it to a program: every value a string."""
    document = yaml.safe_load(stack_file(stack, root).read_text()) or {}
    return to_pulumi_config(document.get("config") or {})


def to_pulumi_config(values: Mapping[str, Any]) -> dict[str, str]:
    """YAML values → Pulumi's wire format: strings as-is, booleans lowercase, the rest as JSON."""
    result: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and "secure" in value:
            raise ValueError(f"{key} is an encrypted secret; the mock runtime cannot decrypt it")
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, bool):
            result[key] = "true" if value else "false"
        else:
            result[key] = json.dumps(value)
    return result


# --- rendering (scripts/plan) ---------------------------------------------------------------------

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
