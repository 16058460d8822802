"""Where the image lives and how it gets there: an Artifact Registry repository that cleans up after
itself, and the image built from `service/` and pushed with pulumi-docker-build."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from infra.component import Component
from infra.config import StackConfig
from infra.shared import SERVICE_DIR, contract, relative_to_cwd

SECONDS_PER_DAY = 86_400
# Artifact Registry accepts an OAuth access token as the password of this user name.
TOKEN_USERNAME = "oauth2accesstoken"  # noqa: S105 - a fixed user name, not a secret

# The registry cache's tag; its manifest is one more version of the service's image.
BUILD_CACHE_TAG = "buildcache"
BUILD_CACHE_VERSIONS = 1


@dataclass(frozen=True)
class RegistryArgs:
    settings: StackConfig  # the repository is named after the service; keepImages, untaggedRetentionDays
    labels: Mapping[str, str]


class Registry(Component):
    """A Docker repository whose cleanup policies delete old untagged images but keep the newest N.

    Each build moves the tag, leaving the previous image untagged: without these policies every build
    stays (and bills) until someone deletes it by hand.
    """

    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: RegistryArgs,
        opts: pulumi.ResourceOptions | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> None:
        super().__init__("Registry", name, opts, depends_on)
        cfg = args.settings
        self.repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=cfg.project,
            location=cfg.region,
            repository_id=cfg.service_name,
            format="DOCKER",
            description="Whisper API images built by Pulumi.",
            labels=dict(args.labels),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-most-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        # The build cache (`:buildcache`) is a version of the same image, pushed by
                        # every build: one more, so that keepImages counts images only.
                        keep_count=cfg.keep_images + BUILD_CACHE_VERSIONS,
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED",
                        older_than=f"{cfg.untagged_retention_days * SECONDS_PER_DAY}s",
                    ),
                ),
            ],
            opts=self.after(),
        )
        # <region>-docker.pkg.dev/<project>/<repository>, from the repository's outputs so that
        # anything using it waits for the repository.
        self.url = pulumi.Output.concat(
            self.repository.location,
            "-docker.pkg.dev/",
            self.repository.project,
            "/",
            self.repository.repository_id,
        )
        self.register_outputs({"url": self.url})


@dataclass(frozen=True)
class ServiceImageArgs:
    registry_url: pulumi.Input[str]
    # The image is named after the service and bakes its engine and model (modelRevision empty: the
    # commit service/fetch_model.py pins).
    settings: StackConfig
    tag: str = "latest"


class ServiceImage(Component):
    """The GPU image of `service/` for the stack's engine (whose build arg picks the requirement files:
    no torch for faster-whisper), built for linux/amd64 and pushed; `ref` pins it by digest."""

    ref: pulumi.Output[str]

    def __init__(self, name: str, args: ServiceImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ServiceImage", name, opts)
        cfg = args.settings
        image = pulumi.Output.concat(args.registry_url, "/", cfg.service_name)
        registry_host = pulumi.Output.from_input(args.registry_url).apply(lambda url: url.split("/", 1)[0])
        # A short-lived token of whoever runs `pulumi up`: no `gcloud auth configure-docker` needed.
        access_token: pulumi.Output[str] = pulumi.Output.secret(
            gcp.organizations.get_client_config_output().access_token
        )
        cache_ref = pulumi.Output.concat(image, ":", BUILD_CACHE_TAG)
        self.image = docker_build.Image(
            f"{name}-build",
            context=docker_build.BuildContextArgs(location=relative_to_cwd(SERVICE_DIR)),
            dockerfile=docker_build.DockerfileArgs(location=relative_to_cwd(SERVICE_DIR / "Dockerfile")),
            target=contract.IMAGE_TARGET_GPU,
            platforms=[docker_build.Platform.LINUX_AMD64],
            build_args={
                contract.BUILD_ARG_ENGINE: cfg.engine,
                contract.BUILD_ARG_MODEL: cfg.model,
                contract.BUILD_ARG_MODEL_REVISION: cfg.model_revision,
            },
            tags=[pulumi.Output.concat(image, ":", args.tag)],
            push=True,
            registries=[
                docker_build.RegistryArgs(
                    address=registry_host, username=TOKEN_USERNAME, password=access_token
                )
            ],
            cache_from=[
                docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=cache_ref))
            ],
            # mode=min: the final image's layers only. mode=max would also export the dependency
            # stages, whose venv the target copies whole: measured, that doubles the push
            # (docs/images.md). A code change still reuses every dependency layer.
            cache_to=[
                docker_build.CacheToArgs(
                    registry=docker_build.CacheToRegistryArgs(
                        ref=cache_ref,
                        mode=docker_build.CacheMode.MIN,
                        image_manifest=True,
                        oci_media_types=True,
                    )
                )
            ],
            # `pulumi preview` stays fast and needs no Docker; `up` builds.
            build_on_preview=False,
            # Deleting the resource (a rename, a moved component) must never delete the pushed image a
            # revision runs by digest: the registry's cleanup policies age images out instead.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.ref = self.image.ref
        self.register_outputs({"ref": self.ref})
