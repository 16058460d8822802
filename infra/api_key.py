"""The API key that callers send besides their Cloud Run identity: a Secret Manager secret that only
the service's runtime account may read, mounted into the container as a file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import StackConfig

SECRET_ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"  # noqa: S105 - a role name


@dataclass(frozen=True)
class ApiKeyArgs:
    # Exactly one of whisper:apiKey (a stack secret, stored here) and whisper:apiKeySecret (an
    # existing secret's id).
    settings: StackConfig
    reader: pulumi.Input[str]  # the runtime account's IAM member


class ApiKey(Component):
    """`secret` and `version` for the service's volume; `resources` must exist before a revision starts."""

    secret: pulumi.Output[str]
    version: pulumi.Output[str]
    resources: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        args: ApiKeyArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("ApiKey", name, opts, depends_on)
        cfg = args.settings
        if cfg.api_key is not None:
            secret = gcp.secretmanager.Secret(
                f"{name}-secret",
                project=cfg.project,
                # The bootstrap's deployers may manage only secrets named after the service.
                secret_id=f"{cfg.service_name}-api-key",
                replication=gcp.secretmanager.SecretReplicationArgs(
                    auto=gcp.secretmanager.SecretReplicationAutoArgs()
                ),
                labels={"app": cfg.service_name, "managed-by": "pulumi"},
                opts=self.after(),
            )
            version = gcp.secretmanager.SecretVersion(
                f"{name}-version",
                secret=secret.id,
                secret_data=pulumi.Output.secret(cfg.api_key),
                opts=self.own(),
            )
            self.secret = secret.secret_id
            # A new key is a new version, and so a new revision that reads it.
            self.version = version.version
            self.resources = [secret, version]
        else:
            self.secret = pulumi.Output.from_input(str(cfg.api_key_secret))
            # An existing secret is rotated by its owner: each new instance reads the newest version.
            self.version = pulumi.Output.from_input("latest")
            self.resources = []
        accessor = gcp.secretmanager.SecretIamMember(
            f"{name}-accessor",
            project=cfg.project,
            secret_id=self.secret,
            role=SECRET_ACCESSOR_ROLE,
            member=args.reader,
            opts=self.after(),
        )
        self.resources.append(accessor)
        self.register_outputs({"secret": self.secret})
