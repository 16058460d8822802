"""Every Pulumi SDK internal the harness relies on, in one place: written against pulumi==3.272.0.

The version is pinned in requirements/infra.txt. The SDK's public mock API (`pulumi.runtime.Mocks`,
`set_mocks`) shows a test each resource's inputs and outputs, but not the options and dependencies the
engine acts on (protect, depends_on, provider, retain_on_delete), which is what the ordering and
protection tests assert. Reading those needs the names below, none of them documented API; when an
upgrade changes one, tests/infra/mockrun/ fails here first:

- `pulumi.runtime.mocks.MockMonitor`: the in-process engine `set_mocks(monitor=...)` accepts; the harness
  subclasses it to keep every registration. Its `get_registered_resources()` gives each resource's state
  after `Mocks.new_resource`.
- `MockMonitor.RegisterResource(request)` and the fields of its request (the engine protocol's
  `RegisterResourceRequest`: type, name, parent, object, protect, custom, dependencies,
  propertyDependencies, provider, retainOnDelete, ignoreChanges): where options and dependencies arrive.
- `pulumi.runtime.rpc.deserialize_properties`: turns the request's protobuf `object` into Python values.
- `pulumi.runtime.rpc._special_sig_key` and `_special_secret_sig`: how a secret is marked among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor


@dataclass(frozen=True)
class Registration:
    """One `RegisterResource` request as plain Python, with the state the mocks gave the resource."""

    type: str
    name: str
    urn: str
    inputs: Mapping[str, Any]  # secrets still wrapped: see is_secret
    state: Mapping[str, Any] | None  # None: the monitor kept no state for it
    parent_urn: str
    protect: bool
    custom: bool
    dependencies: frozenset[str]
    property_dependencies: Mapping[str, frozenset[str]]
    provider_urn: str
    retain_on_delete: bool
    ignore_changes: tuple[str, ...]


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping each registration's options and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self._requests: list[tuple[Any, str]] = []  # (the request, its URN)

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._requests.append((request, response.urn))
        return response

    def registrations(self) -> list[Registration]:
        """What was registered, in registration order (call once the runtime has settled)."""
        states = self.get_registered_resources()
        return [_registration(request, urn, states.get(urn)) for request, urn in self._requests]


def _registration(request: Any, urn: str, registered: Any) -> Registration:
    return Registration(
        type=request.type,
        name=request.name,
        urn=urn,
        inputs=dict(pulumi.runtime.rpc.deserialize_properties(request.object)),
        state=registered.state if registered else None,
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


def is_secret(value: Any) -> bool:
    """True for a deserialized secret: `{<sig key>: <secret sig>, "value": ...}`."""
    return isinstance(value, Mapping) and value.get(pulumi.runtime.rpc._special_sig_key) == (
        pulumi.runtime.rpc._special_secret_sig
    )
