"""Every guardrail in infra/policy, passing and failing, called the way the policy analyzer calls it.

Props are wrapped with pulumi_policy's own unknown-checking proxy and use the engine's camelCase keys
and float numbers, as in a real `pulumi preview --policy-pack infra/policy`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from infra.policy import guardrails
from infra.policy.guardrails import (
    budget_required,
    gpu_service_bounded,
    image_by_digest,
    no_plaintext_secrets,
    no_public_invoker,
    registry_cleanup_policies,
    runtime_service_account,
)

POLICY_DIR = Path(__file__).resolve().parents[3] / "infra" / "policy"
DIGEST = "sha256:" + "a" * 64
RUNTIME_SA = "whisper-runtime@my-project.iam.gserviceaccount.com"


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def resource_args(resource_type: str, props: dict[str, Any], config: dict[str, Any] | None = None):
    name = resource_type.rsplit(":", 1)[-1].lower()
    return ResourceValidationArgs(
        resource_type,
        unknown_checking_proxy(props),
        f"urn:pulumi:dev::whisper::{resource_type}::{name}",
        name,
        _options(),
        None,
        config,
    )


def violations(policy, args) -> list[str]:
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def gpu_service(**overrides: Any) -> dict[str, Any]:
    """Inputs of a compliant Cloud Run GPU service, as the engine sends them."""
    props: dict[str, Any] = {
        "location": "us-central1",
        "ingress": "INGRESS_TRAFFIC_ALL",
        "template": {
            "serviceAccount": RUNTIME_SA,
            "gpuZonalRedundancyDisabled": True,
            "nodeSelector": {"accelerator": "nvidia-l4"},
            "scaling": {"minInstanceCount": 0.0, "maxInstanceCount": 1.0},
            "containers": [
                {
                    "image": f"us-central1-docker.pkg.dev/my-project/whisper/api@{DIGEST}",
                    "resources": {
                        "cpuIdle": False,
                        "startupCpuBoost": True,
                        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
                    },
                }
            ],
        },
    }
    props.update(overrides)
    return props


def with_container(**changes: Any) -> dict[str, Any]:
    props = gpu_service()
    props["template"]["containers"][0].update(changes)
    return props


def test_every_policy_is_mandatory_and_in_the_pack():
    assert {policy.name for policy in guardrails.POLICIES} == {
        "no-public-invoker",
        "gpu-service-bounded",
        "registry-cleanup-policies",
        "image-by-digest",
        "runtime-service-account",
        "no-plaintext-secrets",
        "budget-required",
    }
    assert all(policy.enforcement_level is EnforcementLevel.MANDATORY for policy in guardrails.POLICIES)


def test_compliant_gpu_service_passes_every_resource_policy():
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, gpu_service(), {"maxInstanceCap": 1})
    for policy in (no_public_invoker, gpu_service_bounded, image_by_digest, runtime_service_account):
        assert violations(policy, args) == [], policy.name


# --- no-public-invoker ---------------------------------------------------------------------------

MEMBER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
BINDING = "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding"
IAM_POLICY = "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy"


def test_named_invoker_passes():
    args = resource_args(MEMBER, {"role": "roles/run.invoker", "member": "group:ml-team@example.com"})
    assert violations(no_public_invoker, args) == []


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers"])
def test_public_invoker_member_fails_without_opt_in(member):
    args = resource_args(MEMBER, {"role": "roles/run.invoker", "member": member})
    [message] = violations(no_public_invoker, args)
    assert member in message and "allowPublicInvoker" in message


def test_public_invoker_passes_when_the_stack_opts_in():
    args = resource_args(
        MEMBER, {"role": "roles/run.invoker", "member": "allUsers"}, {"allowPublicInvoker": True}
    )
    assert violations(no_public_invoker, args) == []


def test_opt_in_never_allows_other_roles_to_the_public():
    args = resource_args(
        MEMBER, {"role": "roles/run.admin", "member": "allUsers"}, {"allowPublicInvoker": True}
    )
    [message] = violations(no_public_invoker, args)
    assert "roles/run.admin" in message


def test_public_member_in_a_binding_fails():
    members = ["user:a@example.com", "allUsers"]
    args = resource_args(BINDING, {"role": "roles/run.invoker", "members": members})
    assert len(violations(no_public_invoker, args)) == 1


def test_public_member_in_an_iam_policy_document_fails():
    document = {"bindings": [{"role": "roles/run.invoker", "members": ["allAuthenticatedUsers"]}]}
    args = resource_args(IAM_POLICY, {"policyData": json.dumps(document)})
    assert len(violations(no_public_invoker, args)) == 1
    private = {"bindings": [{"role": "roles/run.invoker", "members": ["serviceAccount:" + RUNTIME_SA]}]}
    assert violations(no_public_invoker, resource_args(IAM_POLICY, {"policyData": json.dumps(private)})) == []


def test_legacy_cloud_run_iam_member_is_checked_too():
    args = resource_args(
        "gcp:cloudrun/iamMember:IamMember", {"role": "roles/run.invoker", "member": "allUsers"}
    )
    assert len(violations(no_public_invoker, args)) == 1


def test_disabling_the_invoker_check_counts_as_public():
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, gpu_service(invokerIamDisabled=True))
    [message] = violations(no_public_invoker, args)
    assert "invokerIamDisabled" in message
    opted_in = resource_args(
        guardrails.CLOUD_RUN_SERVICE, gpu_service(invokerIamDisabled=True), {"allowPublicInvoker": True}
    )
    assert violations(no_public_invoker, opted_in) == []


# --- gpu-service-bounded -------------------------------------------------------------------------


def test_gpu_service_with_idle_cpu_fails():
    props = gpu_service()
    props["template"]["containers"][0]["resources"]["cpuIdle"] = True
    [message] = violations(gpu_service_bounded, resource_args(guardrails.CLOUD_RUN_SERVICE, props))
    assert "cpuIdle must be false" in message


def test_gpu_service_with_cpu_idle_unset_fails():
    props = gpu_service()
    del props["template"]["containers"][0]["resources"]["cpuIdle"]
    assert len(violations(gpu_service_bounded, resource_args(guardrails.CLOUD_RUN_SERVICE, props))) == 1


def test_gpu_service_without_max_instances_fails():
    props = gpu_service()
    del props["template"]["scaling"]
    [message] = violations(gpu_service_bounded, resource_args(guardrails.CLOUD_RUN_SERVICE, props))
    assert "maxInstanceCount is unset" in message


def test_gpu_service_above_the_configured_cap_fails():
    props = gpu_service()
    props["template"]["scaling"]["maxInstanceCount"] = 4.0
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, props, {"maxInstanceCap": 3.0})
    [message] = violations(gpu_service_bounded, args)
    assert "is 4" in message and "between 1 and 3" in message
    raised = resource_args(guardrails.CLOUD_RUN_SERVICE, props, {"maxInstanceCap": 4.0})
    assert violations(gpu_service_bounded, raised) == []


def test_gpu_service_uses_the_default_cap_without_config():
    props = gpu_service()
    props["template"]["scaling"]["maxInstanceCount"] = float(guardrails.DEFAULT_MAX_INSTANCE_CAP + 1)
    assert len(violations(gpu_service_bounded, resource_args(guardrails.CLOUD_RUN_SERVICE, props))) == 1


def test_service_level_scaling_above_the_cap_fails():
    props = gpu_service(scaling={"maxInstanceCount": 10.0})
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, props, {"maxInstanceCap": 3})
    [message] = violations(gpu_service_bounded, args)
    assert message.startswith("scaling.maxInstanceCount is 10")


def test_gpu_detected_from_the_container_limit_alone():
    props = gpu_service()
    del props["template"]["nodeSelector"]
    props["template"]["containers"][0]["resources"]["cpuIdle"] = True
    assert len(violations(gpu_service_bounded, resource_args(guardrails.CLOUD_RUN_SERVICE, props))) == 1


def test_cpu_only_service_is_not_held_to_gpu_rules():
    props = gpu_service()
    del props["template"]["nodeSelector"]
    props["template"]["containers"][0]["resources"] = {"cpuIdle": True, "limits": {"cpu": "2"}}
    del props["template"]["scaling"]
    assert violations(gpu_service_bounded, resource_args(guardrails.CLOUD_RUN_SERVICE, props)) == []


# --- registry-cleanup-policies -------------------------------------------------------------------

REPOSITORY = {
    "repositoryId": "whisper",
    "format": "DOCKER",
    "location": "us-central1",
    "cleanupPolicyDryRun": False,
    "cleanupPolicies": [
        {"id": "keep-recent", "action": "KEEP", "mostRecentVersions": {"keepCount": 5.0}},
        {
            "id": "delete-untagged",
            "action": "DELETE",
            "condition": {"tagState": "UNTAGGED", "olderThan": "604800s"},
        },
    ],
}


def test_repository_with_active_cleanup_policies_passes():
    args = resource_args(guardrails.ARTIFACT_REGISTRY_REPOSITORY, REPOSITORY)
    assert violations(registry_cleanup_policies, args) == []


def test_repository_without_cleanup_policies_fails():
    props = {key: value for key, value in REPOSITORY.items() if key != "cleanupPolicies"}
    [message] = violations(
        registry_cleanup_policies, resource_args(guardrails.ARTIFACT_REGISTRY_REPOSITORY, props)
    )
    assert "no cleanupPolicies" in message


def test_repository_with_cleanup_in_dry_run_fails():
    props = {**REPOSITORY, "cleanupPolicyDryRun": True}
    [message] = violations(
        registry_cleanup_policies, resource_args(guardrails.ARTIFACT_REGISTRY_REPOSITORY, props)
    )
    assert "cleanupPolicyDryRun" in message


# --- image-by-digest -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "us-central1-docker.pkg.dev/my-project/whisper/api:latest",
        "us-central1-docker.pkg.dev/my-project/whisper/api",
        "us-central1-docker.pkg.dev/my-project/whisper/api@sha256:abc",
    ],
)
def test_image_by_tag_or_truncated_digest_fails(image):
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, with_container(image=image))
    [message] = violations(image_by_digest, args)
    assert image in message


def test_image_with_tag_and_digest_passes():
    image = f"us-central1-docker.pkg.dev/my-project/whisper/api:v1@{DIGEST}"
    assert (
        violations(image_by_digest, resource_args(guardrails.CLOUD_RUN_SERVICE, with_container(image=image)))
        == []
    )


def test_unknown_image_during_preview_is_reported_as_unknown_not_passed():
    """The analyzer turns UnknownValueError into an advisory note; `pulumi up` sees the real digest."""
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, with_container(image=UNKNOWN_STRING_VALUE))
    with pytest.raises(UnknownValueError):
        violations(image_by_digest, args)


# --- runtime-service-account ---------------------------------------------------------------------


def test_service_without_service_account_fails():
    props = gpu_service()
    del props["template"]["serviceAccount"]
    [message] = violations(runtime_service_account, resource_args(guardrails.CLOUD_RUN_SERVICE, props))
    assert "unset" in message


@pytest.mark.parametrize(
    "account",
    ["123456789012-compute@developer.gserviceaccount.com", "my-project@appspot.gserviceaccount.com"],
)
def test_service_running_as_a_default_account_fails(account):
    props = gpu_service()
    props["template"]["serviceAccount"] = account
    [message] = violations(runtime_service_account, resource_args(guardrails.CLOUD_RUN_SERVICE, props))
    assert account in message


def test_resource_policies_ignore_unrelated_resource_types():
    bucket = resource_args("gcp:storage/bucket:Bucket", {"name": "x", "location": "US"})
    for policy in guardrails.POLICIES[:-1]:
        assert violations(policy, bucket) == [], policy.name


# --- no-plaintext-secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["WHISPER_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "DB_PASSWORD", "APIKEY"])
def test_a_literal_credential_in_the_env_fails(name):
    args = resource_args(
        guardrails.CLOUD_RUN_SERVICE, with_container(envs=[{"name": name, "value": "sk-123"}])
    )
    [message] = violations(no_plaintext_secrets, args)
    assert f"envs {name} holds a literal value" in message
    assert "sk-123" not in message


@pytest.mark.parametrize(
    "env",
    [
        {"name": "WHISPER_API_KEY_FILE", "value": "/secrets/api-key/key"},
        {"name": "WHISPER_API_KEY", "valueSource": {"secretKeyRef": {"secret": "k", "version": "1"}}},
        {"name": "WHISPER_BEAM_SIZE", "value": "5"},
        {"name": "WHISPER_MAX_TOKENS_PER_SEGMENT", "value": "200"},
    ],
)
def test_file_paths_secret_refs_and_ordinary_settings_pass(env):
    args = resource_args(guardrails.CLOUD_RUN_SERVICE, with_container(envs=[env]))
    assert violations(no_plaintext_secrets, args) == []


# --- budget-required (stack) ---------------------------------------------------------------------

BUDGET_PROPS = {
    "billingAccount": "012345-6789AB-CDEF01",
    "amount": {"specifiedAmount": {"currencyCode": "USD", "units": "200"}},
    "thresholdRules": [{"thresholdPercent": 0.5, "spendBasis": "CURRENT_SPEND"}],
}


def stack(
    *resources: tuple[str, dict[str, Any]], config: dict[str, Any] | None = None
) -> StackValidationArgs:
    policy_resources = [
        PolicyResource(
            kind,
            unknown_checking_proxy(copy.deepcopy(props)),
            f"urn:{i}",
            f"r{i}",
            _options(),
            None,
            None,
            [],
            {},
        )
        for i, (kind, props) in enumerate(resources)
    ]
    return StackValidationArgs(policy_resources, config)


def test_stack_with_a_budget_passes():
    args = stack((guardrails.CLOUD_RUN_SERVICE, gpu_service()), (guardrails.BILLING_BUDGET, BUDGET_PROPS))
    assert violations(budget_required, args) == []


def test_stack_without_a_budget_fails_when_required():
    args = stack((guardrails.CLOUD_RUN_SERVICE, gpu_service()), config={"requireBudget": True})
    [message] = violations(budget_required, args)
    assert "no gcp:billing/budget:Budget" in message


def test_budget_is_required_by_default():
    assert len(violations(budget_required, stack((guardrails.CLOUD_RUN_SERVICE, gpu_service())))) == 1


def test_stack_without_billing_account_needs_no_budget():
    args = stack((guardrails.CLOUD_RUN_SERVICE, gpu_service()), config={"requireBudget": False})
    assert violations(budget_required, args) == []


def test_budget_without_thresholds_fails():
    silent = {key: value for key, value in BUDGET_PROPS.items() if key != "thresholdRules"}
    [message] = violations(budget_required, stack((guardrails.BILLING_BUDGET, silent)))
    assert "thresholdRules" in message


# --- the pack's files ----------------------------------------------------------------------------


@pytest.mark.parametrize("config_file", sorted((POLICY_DIR / "config").glob("*.json")), ids=lambda p: p.stem)
def test_stack_policy_configs_name_real_policies_and_match_their_schemas(config_file):
    config = json.loads(config_file.read_text())
    policies = {policy.name: policy for policy in guardrails.POLICIES}
    assert set(config) <= set(policies), f"unknown policy names in {config_file.name}"
    for name, values in config.items():
        schema = policies[name].config_schema
        assert schema is not None, f"{name} takes no config"
        for key, value in values.items():
            assert key in schema.properties, f"{config_file.name}: {name}.{key} is not in the schema"
            expected = {"boolean": bool, "integer": int}[schema.properties[key]["type"]]
            assert type(value) is expected, f"{config_file.name}: {name}.{key} should be {expected.__name__}"


def test_policy_configs_exist_for_dev_and_prod_and_prod_stays_private():
    configs = {path.stem for path in (POLICY_DIR / "config").glob("*.json")}
    assert {"dev", "prod"} <= configs
    prod = json.loads((POLICY_DIR / "config" / "prod.json").read_text())
    assert prod["no-public-invoker"]["allowPublicInvoker"] is False
    assert prod["budget-required"]["requireBudget"] is True


def test_pack_project_file_declares_python_runtime_and_pins_its_sdk():
    import yaml

    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    requirements = (POLICY_DIR / "requirements.txt").read_text().split()
    assert any(line.startswith("pulumi-policy==") for line in requirements)
    assert "PolicyPack(" in (POLICY_DIR / "__main__.py").read_text()


# --- the policy config agrees with each stack's own config ---------------------------------------

STACK_FILES = sorted(POLICY_DIR.parents[1].glob("Pulumi.*.yaml"))


@pytest.mark.skipif(not STACK_FILES, reason="no Pulumi.<stack>.yaml in this checkout")
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_each_stack_passes_its_own_guardrails_as_configured(stack_file):
    """A stack's config must fit its policy config, or every deploy of it would be refused."""
    import yaml

    stack = stack_file.name.split(".")[1]
    policy_config_file = POLICY_DIR / "config" / f"{stack}.json"
    assert policy_config_file.exists(), f"{stack_file.name} has no infra/policy/config/{stack}.json"
    policy = json.loads(policy_config_file.read_text())
    config = yaml.safe_load(stack_file.read_text()).get("config", {})

    if config.get("whisper:public"):
        assert policy["no-public-invoker"]["allowPublicInvoker"] is True
    max_instances = config.get("whisper:maxInstances", 1)
    assert max_instances <= policy["gpu-service-bounded"]["maxInstanceCap"]
    has_billing_account = bool((config.get("whisper:budget") or {}).get("billingAccount"))
    assert policy["budget-required"]["requireBudget"] is has_billing_account
