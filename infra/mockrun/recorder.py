"""Run the program on Pulumi's mock runtime and record what the engine would act on, as a queryable Plan.

Each resource keeps its inputs and outputs and also its options and dependencies (protect, depends_on,
provider, retain_on_delete), so that a missing option fails a test rather than a deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.mockrun.mocks import CloudMocks
from infra.mockrun.sdk_private import RecordingMonitor, Registration, is_secret
from infra.mockrun.stack_files import project_name


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
    mocks: CloudMocks | None = None,
) -> Plan:
    """Run `program` (infra.program.main) for `config` (Pulumi's flat `ns:key → string` map) on mocks.

    `secret_keys` are the keys the stack file holds encrypted (`pulumi config set --secret`);
    `mocks` stands in for the cloud (CloudMocks by default; a subclass shows live resources).

    Raises what the program raises (e.g. infra.config.ConfigError) after the runtime has settled.
    """
    if program is None:
        from infra.program import main

        program = main

    mocks = mocks or CloudMocks()
    monitor = RecordingMonitor(mocks)
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
    plan.resources.extend(_recorded(registration) for registration in monitor.registrations())
    plan.warnings.extend(collector.messages)
    return plan


def _recorded(registration: Registration) -> RecordedResource:
    return RecordedResource(
        type=registration.type,
        name=registration.name,
        urn=registration.urn,
        inputs=_plain(registration.inputs),
        outputs=_plain(registration.state) if registration.state is not None else {},
        secret_inputs=_secret_keys(registration.inputs),
        parent_urn=registration.parent_urn,
        protect=registration.protect,
        custom=registration.custom,
        dependencies=registration.dependencies,
        property_dependencies=registration.property_dependencies,
        provider_urn=registration.provider_urn,
        retain_on_delete=registration.retain_on_delete,
        ignore_changes=registration.ignore_changes,
    )


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if "::" in urn else ""


def _plain(value: Any) -> Any:
    """Dicts and lists all the way down (the runtime hands back its own mapping types), secrets unwrapped."""
    if is_secret(value):
        return _plain(value["value"])
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _secret_keys(inputs: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key, value in inputs.items() if is_secret(value))
