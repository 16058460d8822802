"""The bootstrap program on the mock runtime: who may impersonate whom, and who may act as whom.

GitHub's OIDC tokens are modelled by their claims; the provider's attribute condition and mapping and
each `principalSet` binding are evaluated the way Security Token Service and IAM evaluate them, for
the expression forms this program writes (any other form fails the test instead of passing it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from infra.bootstrap import keyless_ci
from infra.bootstrap.keyless_ci import BootstrapConfigError, parse_config
from infra.mockrun import MOCK_PROJECT_NUMBER, Plan, RecordedResource, run_program, to_pulumi_config

REPO = "my-org/whisper-cloud-run"
REPO_ID, OWNER_ID = "123456789", "987654"
PROJECT = "my-project"
VALID: dict[str, Any] = {
    "project": PROJECT,
    "githubRepository": REPO,
    "githubRepositoryId": REPO_ID,
    "githubRepositoryOwnerId": OWNER_ID,
    "devProject": "my-whisper-dev",
    "prodProject": "my-whisper-prod",
}
ACCOUNT = "gcp:serviceaccount/account:Account"
ACCOUNT_IAM = "gcp:serviceaccount/iAMMember:IAMMember"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
KMS_IAM = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"

PREVIEWER = "whisper-previewer@my-project.iam.gserviceaccount.com"
DEV_DEPLOYER = "whisper-deploy-dev@my-whisper-dev.iam.gserviceaccount.com"
PROD_DEPLOYER = "whisper-deploy-prod@my-whisper-prod.iam.gserviceaccount.com"
DEV_RUNTIME = "whisper-run-dev@my-whisper-dev.iam.gserviceaccount.com"
PROD_RUNTIME = "whisper-run-prod@my-whisper-prod.iam.gserviceaccount.com"


def evaluate(config: Mapping[str, Any] = VALID) -> Plan:
    raw = to_pulumi_config({f"bootstrap:{key}": value for key, value in config.items()})
    return run_program(raw, stack="admin", project="whisper-bootstrap", program=keyless_ci.main)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return evaluate()


def token(*, ref: str, environment: str | None = None, **overrides: str) -> dict[str, str]:
    """The claims of a GitHub Actions OIDC token from this repository."""
    claims = {
        "sub": f"repo:{REPO}:ref:{ref}",
        "repository": REPO,
        "repository_id": REPO_ID,
        "repository_owner": REPO.split("/")[0],
        "repository_owner_id": OWNER_ID,
        "ref": ref,
    }
    if environment is not None:
        claims["environment"] = environment
        claims["sub"] = f"repo:{REPO}:environment:{environment}"
    return {**claims, **overrides}


# --- a small model of STS + IAM for the expressions the bootstrap writes ---------------------------

_EQUALS = re.compile(r"^assertion\.(\w+) == '([^']*)'$")
_CLAIM = re.compile(r"^assertion\.(\w+)$")
_OPTIONAL_CLAIM = re.compile(r"^has\(assertion\.(\w+)\) \? assertion\.\1 : ''$")


def accepted(provider: RecordedResource, claims: Mapping[str, str]) -> bool:
    """The provider's attribute condition: `assertion.x == 'v'` terms joined by `&&`."""
    for term in provider.inputs["attributeCondition"].split(" && "):
        match = _EQUALS.match(term)
        assert match, f"unmodelled condition term {term!r}"
        if claims.get(match.group(1)) != match.group(2):
            return False
    return True


def attributes(provider: RecordedResource, claims: Mapping[str, str]) -> dict[str, str]:
    mapped = {}
    for attribute, expression in provider.inputs["attributeMapping"].items():
        if match := _CLAIM.match(expression):
            mapped[attribute] = claims[match.group(1)]  # a missing claim fails the exchange
        elif match := _OPTIONAL_CLAIM.match(expression):
            mapped[attribute] = claims.get(match.group(1), "")
        else:
            raise AssertionError(f"unmodelled mapping {attribute} = {expression!r}")
    return mapped


def impersonable(plan: Plan, claims: Mapping[str, str]) -> set[str]:
    """The service accounts a token with these claims can impersonate."""
    [provider] = plan.of_type(PROVIDER)
    if not accepted(provider, claims):
        return set()
    mapped = attributes(provider, claims)
    pool = provider.outputs["name"].split("/providers/")[0]
    principals = {f"principalSet://iam.googleapis.com/{pool}/{key}/{value}" for key, value in mapped.items()}
    return {
        _email(binding.inputs["serviceAccountId"])
        for binding in plan.of_type(ACCOUNT_IAM)
        if binding.inputs["role"] == keyless_ci.WORKLOAD_IDENTITY_USER_ROLE
        and binding.inputs["member"] in principals
    }


def acts_as(plan: Plan) -> dict[str, set[str]]:
    """Who holds roles/iam.serviceAccountUser on which account."""
    grants: dict[str, set[str]] = {}
    for binding in plan.of_type(ACCOUNT_IAM):
        if binding.inputs["role"] == keyless_ci.SERVICE_ACCOUNT_USER_ROLE:
            member = binding.inputs["member"].removeprefix("serviceAccount:")
            grants.setdefault(member, set()).add(_email(binding.inputs["serviceAccountId"]))
    return grants


def _email(account_name: str) -> str:
    return account_name.rsplit("/", 1)[-1]


def roles_of(plan: Plan, email: str, type_: str = PROJECT_IAM) -> set[tuple[str, str]]:
    member = f"serviceAccount:{email}"
    return {
        (binding.inputs.get("project", ""), binding.inputs["role"])
        for binding in plan.of_type(type_)
        if binding.inputs["member"] == member
    }


# --- impersonation ---------------------------------------------------------------------------------


def test_a_pull_request_gets_the_read_only_previewer_only(plan: Plan) -> None:
    assert impersonable(plan, token(ref="refs/pull/7/merge")) == {PREVIEWER}


def test_a_push_to_another_branch_gets_the_previewer_only(plan: Plan) -> None:
    assert impersonable(plan, token(ref="refs/heads/feature")) == {PREVIEWER}
    assert impersonable(plan, token(ref="refs/heads/feature", environment="dev")) == {PREVIEWER}


def test_main_gets_the_dev_deployer(plan: Plan) -> None:
    assert impersonable(plan, token(ref="refs/heads/main", environment="dev")) == {PREVIEWER, DEV_DEPLOYER}
    assert impersonable(plan, token(ref="refs/heads/main")) == {PREVIEWER, DEV_DEPLOYER}


def test_only_the_prod_environment_gets_the_prod_deployer(plan: Plan) -> None:
    # GitHub issues the `environment` claim only after the environment's protection rules passed.
    prod_job = token(ref="refs/heads/main", environment="prod")
    assert PROD_DEPLOYER in impersonable(plan, prod_job)
    assert PROD_DEPLOYER not in impersonable(plan, token(ref="refs/heads/main", environment="production"))
    assert PROD_DEPLOYER not in impersonable(plan, token(ref="refs/heads/prod"))


@pytest.mark.parametrize(
    "claims",
    [
        {"repository": "someone/whisper-cloud-run", "repository_owner": "someone"},
        {"repository_id": "111"},  # deleted and re-created under the same name
        {"repository_owner_id": "222"},  # the owner's name taken over by another account
    ],
)
def test_other_repositories_get_nothing(plan: Plan, claims: dict[str, str]) -> None:
    assert impersonable(plan, token(ref="refs/heads/main", environment="prod", **claims)) == set()


def test_provider_is_github_pinned_by_name_and_immutable_ids(plan: Plan) -> None:
    [provider] = plan.of_type(PROVIDER)
    assert provider.inputs["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
    condition = provider.inputs["attributeCondition"]
    for claim, value in (("repository", REPO), ("repository_id", REPO_ID), ("repository_owner_id", OWNER_ID)):
        assert f"assertion.{claim} == '{value}'" in condition


# --- act as ----------------------------------------------------------------------------------------


def test_each_deployer_acts_as_its_own_runtime_account_only(plan: Plan) -> None:
    assert acts_as(plan) == {DEV_DEPLOYER: {DEV_RUNTIME}, PROD_DEPLOYER: {PROD_RUNTIME}}


def test_nobody_gets_project_wide_service_account_user_or_admin(plan: Plan) -> None:
    project_roles = {binding.inputs["role"] for binding in plan.of_type(PROJECT_IAM)}
    assert not project_roles & {
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountAdmin",
        "roles/iam.serviceAccountTokenCreator",
        "roles/resourcemanager.projectIamAdmin",
        "roles/secretmanager.admin",
        "roles/owner",
        "roles/editor",
    }
    assert plan.of_type("gcp:billing/accountIamMember:AccountIamMember") == []


def test_runtime_accounts_belong_to_the_bootstrap_and_only_write_logs_and_metrics(plan: Plan) -> None:
    emails = {account.outputs["email"] for account in plan.of_type(ACCOUNT)}
    assert {DEV_RUNTIME, PROD_RUNTIME} <= emails
    assert roles_of(plan, DEV_RUNTIME) == {("my-whisper-dev", role) for role in keyless_ci.RUNTIME_ROLES}
    assert roles_of(plan, PROD_RUNTIME) == {("my-whisper-prod", role) for role in keyless_ci.RUNTIME_ROLES}
    assert plan.outputs["devRuntimeServiceAccount"] == DEV_RUNTIME
    assert plan.outputs["prodRuntimeServiceAccount"] == PROD_RUNTIME


# --- what each identity may do ---------------------------------------------------------------------


def test_previewer_reads_and_writes_only_lock_files(plan: Plan) -> None:
    assert roles_of(plan, PREVIEWER) == {
        (project, role)
        for project in ("my-whisper-dev", "my-whisper-prod")
        for role in ("roles/viewer", "roles/serviceusage.serviceUsageConsumer")
    }
    state = {
        b.inputs["role"]: b.inputs.get("condition")
        for b in plan.of_type(BUCKET_IAM)
        if PREVIEWER in b.inputs["member"]
    }
    assert state["roles/storage.objectViewer"] is None
    locks = state["roles/storage.objectAdmin"]["expression"]
    assert (
        locks
        == "resource.name.startsWith('projects/_/buckets/my-project-pulumi-state/objects/.pulumi/locks/')"
    )
    [kms] = [b for b in plan.of_type(KMS_IAM) if PREVIEWER in b.inputs["member"]]
    assert kms.inputs["role"] == "roles/cloudkms.cryptoKeyDecrypter"


@pytest.mark.parametrize(
    ("email", "project"), [(DEV_DEPLOYER, "my-whisper-dev"), (PROD_DEPLOYER, "my-whisper-prod")]
)
def test_deployers_hold_exactly_the_documented_roles_on_their_own_project(
    plan: Plan, email: str, project: str
) -> None:
    environment = project.rsplit("-", 1)[-1]
    custom_role = f"projects/{project}/roles/{keyless_ci.SECRET_MANAGER_ROLE_ID}{environment.capitalize()}"
    expected = {(project, role) for role in keyless_ci.DEPLOYER_PROJECT_ROLES} | {(project, custom_role)}
    assert roles_of(plan, email) == expected
    assert ("", "roles/billing.projectCostsManager") not in roles_of(plan, email)


def test_secret_manager_role_cannot_read_secrets_and_is_limited_to_the_services_secrets(plan: Plan) -> None:
    for role in plan.of_type("gcp:projects/iAMCustomRole:IAMCustomRole"):
        assert not [p for p in role.inputs["permissions"] if p.endswith(".access")]
    bindings = [b for b in plan.of_type(PROJECT_IAM) if "/roles/whisperSecretManager" in b.inputs["role"]]
    assert len(bindings) == 2
    for binding in bindings:
        expression = binding.inputs["condition"]["expression"]
        assert f"resource.name.startsWith('projects/{MOCK_PROJECT_NUMBER}/secrets/whisper')" in expression


def test_state_bucket_and_key_are_the_only_protected_resources(plan: Plan) -> None:
    protected = {resource.type for resource in plan.resources if resource.protect}
    assert protected == {"gcp:storage/bucket:Bucket", "gcp:kms/cryptoKey:CryptoKey"}
    [bucket] = plan.of_type("gcp:storage/bucket:Bucket")
    assert bucket.inputs["versioning"] == {"enabled": True}
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.inputs["uniformBucketLevelAccess"] is True


def test_no_service_account_key_exists_anywhere(plan: Plan) -> None:
    assert not [r.type for r in plan.resources if r.type.lower().endswith(("/key:key", "hmackey:hmackey"))]


def test_accounts_and_roles_wait_for_the_iam_api_of_their_own_project(plan: Plan) -> None:
    def iam_api(project: str) -> list[RecordedResource]:
        return [
            api
            for api in plan.of_type("gcp:projects/service:Service")
            if api.inputs["project"] == project and api.inputs["service"] == "iam.googleapis.com"
        ]

    custom_roles = plan.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")
    for resource in [*plan.of_type(ACCOUNT), *custom_roles]:
        [api] = iam_api(resource.inputs["project"])
        assert plan.waits_for(resource, api), resource.name
    [pool] = plan.of_type("gcp:iam/workloadIdentityPool:WorkloadIdentityPool")
    assert plan.waits_for(pool, iam_api(PROJECT)[0])


def test_outputs_are_what_the_workflows_and_stacks_need(plan: Plan) -> None:
    assert plan.outputs["workloadIdentityProvider"].endswith(
        "/workloadIdentityPools/github/providers/github-oidc"
    )
    assert plan.outputs["previewerServiceAccount"] == PREVIEWER
    assert plan.outputs["devDeployerServiceAccount"] == DEV_DEPLOYER
    assert plan.outputs["prodDeployerServiceAccount"] == PROD_DEPLOYER
    assert plan.outputs["backendUrl"] == "gs://my-project-pulumi-state"
    assert plan.outputs["secretsProvider"] == (
        f"gcpkms://projects/{PROJECT}/locations/us-central1/keyRings/pulumi/cryptoKeys/pulumi-secrets"
    )


def test_dev_and_prod_may_share_one_project() -> None:
    shared = evaluate({**VALID, "devProject": PROJECT, "prodProject": PROJECT})
    emails = sorted(a.outputs["email"] for a in shared.of_type(ACCOUNT))
    assert len(emails) == len(set(emails)) == 5
    roles = [r.inputs["roleId"] for r in shared.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")]
    assert sorted(roles) == ["whisperSecretManagerDev", "whisperSecretManagerProd"]


# --- config validation (no runtime needed) ---------------------------------------------------------


def test_valid_config_gets_defaults() -> None:
    config = parse_config(
        {
            key: VALID[key]
            for key in ("project", "githubRepository", "githubRepositoryId", "githubRepositoryOwnerId")
        }
    )
    assert (config.dev_project, config.prod_project) == (PROJECT, PROJECT)
    assert config.state_bucket == "my-project-pulumi-state"
    assert config.runtime_account_id("prod") == "whisper-run-prod"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"githubRepository": None}, "bootstrap:githubRepository"),
        ({"githubRepository": "just-a-repo"}, "bootstrap:githubRepository"),
        ({"githubRepository": "https://github.com/my-org/repo"}, "bootstrap:githubRepository"),
        ({"githubRepositoryId": None}, "bootstrap:githubRepositoryId"),
        ({"githubRepositoryId": "my-org/whisper"}, "bootstrap:githubRepositoryId"),
        ({"githubRepositoryOwnerId": "my-org"}, "bootstrap:githubRepositoryOwnerId"),
        ({"project": "My_Project"}, "bootstrap:project"),
        ({"prodProject": "Not A Project"}, "bootstrap:prodProject"),
        ({"serviceName": "a-very-long-service-name"}, "bootstrap:serviceName"),
        ({"poolId": "gcp-github"}, "bootstrap:poolId"),
        ({"stateBucket": "Bad Bucket"}, "bootstrap:stateBucket"),
        ({"keptStateVersions": "0"}, "bootstrap:keptStateVersions"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(BootstrapConfigError) as error:
        parse_config({**VALID, **overrides})
    assert key in str(error.value)
    assert "pulumi config set" in str(error.value)


@pytest.mark.parametrize("retired", ["billingAccount", "deployProjects", "runtimeServiceAccounts"])
def test_retired_keys_are_refused_with_what_replaced_them(retired: str) -> None:
    with pytest.raises(BootstrapConfigError, match=f"bootstrap:{retired} is no longer read"):
        parse_config({**VALID, retired: "x"})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(BootstrapConfigError) as error:
        parse_config({"project": "", "githubRepository": ""})
    assert "bootstrap:project" in str(error.value) and "bootstrap:githubRepositoryId" in str(error.value)


# --- batch (bootstrap:batch) -----------------------------------------------------------------------


def test_without_batch_there_is_no_job_account_or_bucket_role(plan: Plan) -> None:
    assert not [a for a in plan.of_type(ACCOUNT) if "-job-" in a.outputs["email"]]
    assert not [b for b in plan.of_type(PROJECT_IAM) if b.inputs["role"] == keyless_ci.BATCH_BUCKETS_ROLE]
    assert "devBatchServiceAccount" not in plan.outputs


def test_batch_adds_a_job_account_each_deployer_acts_as_and_bucket_admin_on_the_batch_buckets_only() -> None:
    batch = evaluate({**VALID, "batch": "true"})
    dev_job = "whisper-job-dev@my-whisper-dev.iam.gserviceaccount.com"
    prod_job = "whisper-job-prod@my-whisper-prod.iam.gserviceaccount.com"
    assert acts_as(batch) == {DEV_DEPLOYER: {DEV_RUNTIME, dev_job}, PROD_DEPLOYER: {PROD_RUNTIME, prod_job}}
    assert (batch.outputs["devBatchServiceAccount"], batch.outputs["prodBatchServiceAccount"]) == (
        dev_job,
        prod_job,
    )
    assert (
        roles_of(batch, dev_job) == set() and roles_of(batch, prod_job) == set()
    )  # the stack grants buckets
    buckets = [b for b in batch.of_type(PROJECT_IAM) if b.inputs["role"] == keyless_ci.BATCH_BUCKETS_ROLE]
    assert sorted(b.inputs["member"].removeprefix("serviceAccount:") for b in buckets) == [
        DEV_DEPLOYER,
        PROD_DEPLOYER,
    ]
    for binding in buckets:
        project = binding.inputs["project"]
        assert binding.inputs["condition"]["expression"] == (
            "!resource.type.startsWith('storage.googleapis.com/') || "
            f"resource.name.startsWith('projects/_/buckets/{project}-whisper-batch-')"
        )
    assert impersonable(batch, token(ref="refs/pull/7/merge")) == {PREVIEWER}


def test_batch_must_be_a_boolean() -> None:
    with pytest.raises(BootstrapConfigError, match="bootstrap:batch 'yes please' is not true or false"):
        parse_config({**VALID, "batch": "yes please"})


# --- spend cap (bootstrap:spendCap) ------------------------------------------------------------------

DEV_CAP = "whisper-cap-dev@my-whisper-dev.iam.gserviceaccount.com"
PROD_CAP = "whisper-cap-prod@my-whisper-prod.iam.gserviceaccount.com"
DEV_CAP_PUSH = "whisper-cap-push-dev@my-whisper-dev.iam.gserviceaccount.com"
PROD_CAP_PUSH = "whisper-cap-push-prod@my-whisper-prod.iam.gserviceaccount.com"


def test_without_spend_cap_there_are_no_cap_identities(plan: Plan) -> None:
    assert not [a for a in plan.of_type(ACCOUNT) if "-cap-" in a.outputs["email"]]
    assert "prodSpendCapServiceAccount" not in plan.outputs


def test_spend_cap_identities_can_change_one_service_and_nothing_else() -> None:
    capped = evaluate({**VALID, "spendCap": "true"})
    # The cap acts as the runtime account (its update deploys a revision running as it); each
    # deployer acts as its environment's cap and pusher, to deploy the cap and name the pusher.
    assert acts_as(capped) == {
        DEV_DEPLOYER: {DEV_RUNTIME, DEV_CAP, DEV_CAP_PUSH},
        PROD_DEPLOYER: {PROD_RUNTIME, PROD_CAP, PROD_CAP_PUSH},
        DEV_CAP: {DEV_RUNTIME},
        PROD_CAP: {PROD_RUNTIME},
    }
    for email in (DEV_CAP, PROD_CAP, DEV_CAP_PUSH, PROD_CAP_PUSH):
        assert roles_of(capped, email) == set(), (
            email
        )  # nothing project-wide: the stack grants on the service
    roles = {r.inputs["roleId"]: r for r in capped.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")}
    assert sorted(roles["whisperSpendCapProd"].inputs["permissions"]) == [
        "run.services.get",
        "run.services.update",
    ]
    assert roles["whisperSpendCapProd"].inputs["project"] == "my-whisper-prod"
    assert capped.outputs["prodSpendCapServiceAccount"] == PROD_CAP
    assert capped.outputs["prodSpendCapPushServiceAccount"] == PROD_CAP_PUSH
    assert capped.outputs["prodSpendCapRole"] == "projects/my-whisper-prod/roles/whisperSpendCapProd"
    assert impersonable(capped, token(ref="refs/pull/7/merge")) == {PREVIEWER}


def test_spend_cap_must_be_a_boolean() -> None:
    with pytest.raises(BootstrapConfigError, match="bootstrap:spendCap 'sure' is not true or false"):
        parse_config({**VALID, "spendCap": "sure"})
