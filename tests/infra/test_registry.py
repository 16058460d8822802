"""infra/registry.py on the mock runtime: the repository's cleanup policies and the image build."""

from pathlib import Path

import pytest

from infra.mockrun import MOCK_ACCESS_TOKEN, Plan, load_stack_config, run_program
from infra.shared import REPO_ROOT, SERVICE_DIR, contract

IMAGE = "docker-build:index:Image"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
API = "gcp:projects/service:Service"
BUILD = "image-build"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_registry_is_created_after_the_apis(stack: str, request: pytest.FixtureRequest) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert plan.not_waited_for(plan.one(REPOSITORY), plan.of_type(API)) == []


def test_image_build_settings(dev: Plan) -> None:
    build = dev.named(BUILD).inputs
    registry = "us-central1-docker.pkg.dev/my-whisper-dev/whisper"
    assert (Path.cwd() / build["context"]["location"]).resolve() == SERVICE_DIR
    assert (Path.cwd() / build["dockerfile"]["location"]).resolve() == SERVICE_DIR / "Dockerfile"
    assert build["target"] == contract.IMAGE_TARGET_GPU
    assert build["platforms"] == ["linux/amd64"]
    assert build["push"] is True
    assert build["tags"] == [f"{registry}/whisper:latest"]
    assert build["buildArgs"] == {
        contract.BUILD_ARG_ENGINE: "faster-whisper",
        contract.BUILD_ARG_MODEL: "tiny.en",
        contract.BUILD_ARG_MODEL_REVISION: "",  # the commit service/fetch_model.py pins
    }
    assert build["registries"] == [
        {
            "address": "us-central1-docker.pkg.dev",
            "username": "oauth2accesstoken",
            "password": MOCK_ACCESS_TOKEN,
        }
    ]
    assert "registries" in dev.named(BUILD).secret_inputs  # the access token never shows in plain text
    cache_ref = f"{registry}/whisper:buildcache"
    assert build["cacheFrom"] == [{"registry": {"ref": cache_ref}}]
    cache_to = build["cacheTo"][0]["registry"]
    assert cache_to["ref"] == cache_ref
    # min: the dependency stages' layers are not exported a second time (docs/images.md measures it).
    assert (cache_to["mode"], cache_to["imageManifest"], cache_to["ociMediaTypes"]) == ("min", True, True)


def test_a_model_revision_is_passed_to_the_build() -> None:
    commit = "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf"
    config = {**load_stack_config("dev"), "whisper:modelRevision": commit}
    build_args = run_program(config, stack="dev").one(IMAGE).inputs["buildArgs"]
    assert build_args[contract.BUILD_ARG_MODEL_REVISION] == commit


def test_build_context_is_relative_to_where_pulumi_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # `pulumi up` runs the program from infra/ (Pulumi.yaml `main`); the paths must still find service/.
    monkeypatch.chdir(REPO_ROOT / "infra")
    build = run_program(load_stack_config("dev"), stack="dev").named(BUILD).inputs
    assert build["context"]["location"] == "../service"
    assert build["dockerfile"]["location"] == "../service/Dockerfile"


@pytest.mark.parametrize(("stack", "keep", "days"), [("dev", 3, 3), ("prod", 10, 14)])
def test_registry_cleans_up_old_images(
    stack: str, keep: int, days: int, request: pytest.FixtureRequest
) -> None:
    repository = request.getfixturevalue(stack).one(REPOSITORY).inputs
    assert repository["format"] == "DOCKER"
    assert repository["cleanupPolicyDryRun"] is False
    policies = {policy["id"]: policy for policy in repository["cleanupPolicies"]}
    assert policies["keep-most-recent"]["action"] == "KEEP"
    # keepImages images, plus the build cache's manifest: a version of the same image, pushed by every build.
    assert policies["keep-most-recent"]["mostRecentVersions"]["keepCount"] == keep + 1
    assert policies["delete-old-untagged"]["action"] == "DELETE"
    assert policies["delete-old-untagged"]["condition"] == {
        "tagState": "UNTAGGED",
        "olderThan": f"{days * 86400}s",
    }


def test_a_pushed_image_outlives_its_resource(prod: Plan) -> None:
    """A rename or a moved component deletes the resource: the image a revision runs must stay."""
    builds = [r for r in prod.resources if r.type == "docker-build:index:Image"]
    assert {r.name for r in builds} == {"image-build", "spend-cap-build"}
    assert all(r.retain_on_delete for r in builds)
