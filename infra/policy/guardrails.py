"""Guardrails for the Whisper stack, checked by `pulumi preview/up --policy-pack infra/policy`.

Policies read resource *inputs* as the engine sends them (camelCase keys, numbers as floats), so they
work on any program that declares these resource types, not only on this repository's components.
Per-stack choices (a public service, the instance cap, whether a budget is required) come from the
policy pack config file that the workflow passes with `--policy-pack-config`
(`infra/policy/config/<stack>.json`), so relaxing a guardrail is a reviewed change in this folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

CLOUD_RUN_SERVICE = "gcp:cloudrunv2/service:Service"
ARTIFACT_REGISTRY_REPOSITORY = "gcp:artifactregistry/repository:Repository"
BILLING_BUDGET = "gcp:billing/budget:Budget"

# Every resource type through which a Cloud Run service can be made invocable by anyone.
INVOKER_MEMBER_TYPES = frozenset(
    {"gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "gcp:cloudrun/iamMember:IamMember"}
)
INVOKER_BINDING_TYPES = frozenset(
    {"gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding", "gcp:cloudrun/iamBinding:IamBinding"}
)
INVOKER_POLICY_TYPES = frozenset(
    {"gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy", "gcp:cloudrun/iamPolicy:IamPolicy"}
)

PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})
INVOKER_ROLE = "roles/run.invoker"
GPU_LIMIT_KEY = "nvidia.com/gpu"
DEFAULT_SERVICE_ACCOUNT_SUFFIXES = ("-compute@developer.gserviceaccount.com", "@appspot.gserviceaccount.com")
IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

DEFAULT_MAX_INSTANCE_CAP = 3

Validation = Callable[[ResourceValidationArgs, ReportViolation], None]


def _config(args: ResourceValidationArgs | StackValidationArgs, key: str, default: Any) -> Any:
    """A policy config value; the CLI fills schema defaults, direct callers (tests) may not."""
    value = (args.get_config() or {}).get(key)
    return default if value is None else value


def _containers(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    template = props.get("template") or {}
    return list(template.get("containers") or [])


def _has_gpu(props: Mapping[str, Any]) -> bool:
    """A service asks for a GPU through the node selector or a container's `nvidia.com/gpu` limit."""
    template = props.get("template") or {}
    if (template.get("nodeSelector") or {}).get("accelerator"):
        return True
    return any(
        ((container.get("resources") or {}).get("limits") or {}).get(GPU_LIMIT_KEY)
        for container in _containers(props)
    )


def _public_members(members: Iterable[str]) -> list[str]:
    return sorted({member for member in members if member in PUBLIC_MEMBERS})


# --- no-public-invoker ---------------------------------------------------------------------------


def check_public_invoker(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Nothing is invocable by `allUsers`/`allAuthenticatedUsers` unless the stack opts in."""
    allow_public = bool(_config(args, "allowPublicInvoker", False))
    opt_in_hint = 'set "allowPublicInvoker": true for this stack in infra/policy/config/<stack>.json'

    grants: list[tuple[str, list[str]]] = []  # (role, public members)
    if args.resource_type in INVOKER_MEMBER_TYPES:
        grants.append((args.props.get("role", ""), _public_members([args.props.get("member", "")])))
    elif args.resource_type in INVOKER_BINDING_TYPES:
        grants.append((args.props.get("role", ""), _public_members(args.props.get("members") or [])))
    elif args.resource_type in INVOKER_POLICY_TYPES:
        policy = json.loads(args.props.get("policyData") or "{}")
        for binding in policy.get("bindings", []):
            grants.append((binding.get("role", ""), _public_members(binding.get("members", []))))
    elif args.resource_type == CLOUD_RUN_SERVICE and args.props.get("invokerIamDisabled"):
        if not allow_public:
            report_violation(
                "invokerIamDisabled=true lets anyone on the internet call this service; "
                f"keep the IAM check on, or {opt_in_hint}.",
                None,
            )
        return

    for role, members in grants:
        if not members:
            continue
        if role == INVOKER_ROLE and allow_public:
            continue
        if role != INVOKER_ROLE:
            report_violation(f"{', '.join(members)} must never hold {role} on a Cloud Run service.", None)
        else:
            report_violation(
                f"{', '.join(members)} would make this service public ({role}); grant named members "
                f"instead, or {opt_in_hint}.",
                None,
            )


no_public_invoker = ResourceValidationPolicy(
    name="no-public-invoker",
    description="Cloud Run services are private: no allUsers/allAuthenticatedUsers unless the stack opts in.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_public_invoker,
    config_schema=PolicyConfigSchema(
        properties={"allowPublicInvoker": {"type": "boolean", "default": False}},
    ),
)


# --- gpu-service-bounded -------------------------------------------------------------------------


def check_gpu_service_bounded(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A GPU service needs instance-based billing and a max instance count that fits the cap."""
    if args.resource_type != CLOUD_RUN_SERVICE or not _has_gpu(args.props):
        return
    cap = int(_config(args, "maxInstanceCap", DEFAULT_MAX_INSTANCE_CAP))

    for index, container in enumerate(_containers(args.props)):
        if (container.get("resources") or {}).get("cpuIdle") is not False:
            report_violation(
                f"template.containers[{index}].resources.cpuIdle must be false: Cloud Run GPUs "
                "require instance-based billing (cpu_idle=False).",
                None,
            )

    template_scaling = (args.props.get("template") or {}).get("scaling") or {}
    template_max = template_scaling.get("maxInstanceCount")
    if template_max is None:
        report_violation(
            f"template.scaling.maxInstanceCount is unset: a GPU service must set it (at most {cap}) "
            "so that a traffic spike cannot run up an unbounded GPU bill.",
            None,
        )
    elif not 1 <= template_max <= cap:
        report_violation(
            f"template.scaling.maxInstanceCount is {int(template_max)}; it must be between 1 and {cap} "
            '(raise "maxInstanceCap" in infra/policy/config/<stack>.json only with matching GPU quota).',
            None,
        )

    service_max = (args.props.get("scaling") or {}).get("maxInstanceCount")
    if service_max is not None and service_max > cap:
        report_violation(f"scaling.maxInstanceCount is {int(service_max)}; it must be at most {cap}.", None)


gpu_service_bounded = ResourceValidationPolicy(
    name="gpu-service-bounded",
    description="Cloud Run GPU services bill per instance (cpu_idle false) and cap their max instances.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_gpu_service_bounded,
    config_schema=PolicyConfigSchema(
        properties={
            "maxInstanceCap": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_INSTANCE_CAP},
        },
    ),
)


# --- registry-cleanup-policies -------------------------------------------------------------------


def check_registry_cleanup(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Old images cost money until something deletes them: the registry must do it itself."""
    if args.resource_type != ARTIFACT_REGISTRY_REPOSITORY:
        return
    if not args.props.get("cleanupPolicies"):
        report_violation(
            "This Artifact Registry repository has no cleanupPolicies: add a KEEP policy for the most "
            "recent versions and a DELETE policy for old untagged images.",
            None,
        )
    if args.props.get("cleanupPolicyDryRun"):
        report_violation(
            "cleanupPolicyDryRun is true, so the cleanup policies never delete anything; set it to false.",
            None,
        )


registry_cleanup_policies = ResourceValidationPolicy(
    name="registry-cleanup-policies",
    description="Artifact Registry repositories have active cleanup policies.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_registry_cleanup,
)


# --- image-by-digest -----------------------------------------------------------------------------


def check_image_by_digest(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A tag can move under a running service; a digest pins exactly what was built and reviewed."""
    if args.resource_type != CLOUD_RUN_SERVICE:
        return
    for index, container in enumerate(_containers(args.props)):
        image = container.get("image") or ""
        if not IMAGE_DIGEST.search(image):
            report_violation(
                f"template.containers[{index}].image is {image!r}; reference it by digest "
                "(…@sha256:<64 hex>), e.g. the `ref` output of the docker-build Image.",
                None,
            )


image_by_digest = ResourceValidationPolicy(
    name="image-by-digest",
    description="Cloud Run containers reference their image by digest (@sha256:).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_image_by_digest,
)


# --- runtime-service-account ---------------------------------------------------------------------


def check_runtime_service_account(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """The default compute account has Editor on the project; the service gets its own identity."""
    if args.resource_type != CLOUD_RUN_SERVICE:
        return
    account = (args.props.get("template") or {}).get("serviceAccount")
    if not account:
        report_violation(
            "template.serviceAccount is unset, so Cloud Run would run as the default compute service "
            "account; set it to the dedicated runtime service account.",
            None,
        )
    elif account.endswith(DEFAULT_SERVICE_ACCOUNT_SUFFIXES):
        report_violation(
            f"template.serviceAccount is the default service account {account}; use the dedicated "
            "runtime service account.",
            None,
        )


runtime_service_account = ResourceValidationPolicy(
    name="runtime-service-account",
    description="Cloud Run services run as a dedicated service account, never the default compute account.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_runtime_service_account,
)


# --- no-plaintext-secrets ------------------------------------------------------------------------

# Env var names that hold a credential; `…_FILE` names a mounted file and holds only its path.
SECRET_ENV_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)


def check_no_plaintext_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A literal env value sits in the stack file, the state and the revision: use Secret Manager."""
    if args.resource_type != CLOUD_RUN_SERVICE:
        return
    for index, container in enumerate(_containers(args.props)):
        for env in container.get("envs") or []:
            name = env.get("name") or ""
            if SECRET_ENV_NAME.search(name) and env.get("value"):
                report_violation(
                    f"template.containers[{index}].envs {name} holds a literal value, readable in the state "
                    "and the revision; mount it from Secret Manager (whisper:apiKey / whisper:apiKeySecret) "
                    "or use valueSource.secretKeyRef.",
                    None,
                )


no_plaintext_secrets = ResourceValidationPolicy(
    name="no-plaintext-secrets",
    description="Cloud Run env vars named like credentials come from Secret Manager, never a literal.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_no_plaintext_secrets,
)


# --- budget-required (stack) ---------------------------------------------------------------------


def check_budget_required(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """A stack with a billing account configured must declare a budget that alerts someone."""
    if not _config(args, "requireBudget", True):
        return
    budgets = [resource for resource in args.resources if resource.resource_type == BILLING_BUDGET]
    if not budgets:
        report_violation(
            "This stack has a billing account configured (requireBudget) but declares no "
            "gcp:billing/budget:Budget; configure the budget (whisper:budget) so GPU spend raises alerts.",
            None,
        )
    for budget in budgets:
        if not budget.props.get("thresholdRules"):
            report_violation("This budget has no thresholdRules, so it never alerts anyone.", budget.urn)


budget_required = StackValidationPolicy(
    name="budget-required",
    description="A billing.Budget exists wherever a billing account is configured.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=check_budget_required,
    config_schema=PolicyConfigSchema(
        properties={"requireBudget": {"type": "boolean", "default": True}},
    ),
)


POLICIES = [
    no_public_invoker,
    gpu_service_bounded,
    registry_cleanup_policies,
    image_by_digest,
    runtime_service_account,
    no_plaintext_secrets,
    budget_required,
]
