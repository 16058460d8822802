"""The base of every component: a named group of resources, and the rule for `depends_on`."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi


class Component(pulumi.ComponentResource):
    """A component whose children wait for what the program says the component depends on.

    Pulumi hands a parent's `protect` and providers down to its children, but never its `depends_on`:
    a child waits only for its own inputs and its own `depends_on`. So a child created without it
    would be created as soon as its inputs are known, before the project's APIs are enabled, and fail
    on a new project. Components therefore take `depends_on` apart from `opts` and pass it, through
    `after()`, to every child that calls such an API; children that only follow a sibling (an IAM
    member on a bucket made here) get `own()` and wait through their inputs.
    """

    def __init__(
        self,
        type_name: str,
        name: str,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__(f"whisper:infra:{type_name}", name, None, opts)
        self.depends_on = list(depends_on)

    def after(self, *also: pulumi.Resource, protect: bool | None = None) -> pulumi.ResourceOptions:
        """A child's options: parented here, waiting for the component's `depends_on` (and `also`)."""
        return pulumi.ResourceOptions(parent=self, depends_on=[*self.depends_on, *also], protect=protect)

    def own(self, *also: pulumi.Resource) -> pulumi.ResourceOptions:
        """A child's options when its inputs already order it: parented here, waiting only for `also`."""
        return pulumi.ResourceOptions(parent=self, depends_on=list(also) or None)
