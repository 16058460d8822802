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
PROD_PREVIEWER = "whisper-preview-prod@my-project.iam.gserviceaccount.com"
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


def token(
    *,
    ref: str,
    environment: str | None = None,
    workflow: str = "ci.yml",
    event: str = "push",
    **overrides: str,
) -> dict[str, str]:
    """The claims of a GitHub Actions OIDC token from this repository's `.github/workflows/<workflow>`."""
    claims = {
        "sub": f"repo:{REPO}:ref:{ref}",
        "repository": REPO,
        "repository_id": REPO_ID,
        "repository_owner": REPO.split("/")[0],
        "repository_owner_id": OWNER_ID,
        "ref": ref,
        "event_name": event,
        "job_workflow_ref": f"{REPO}/.github/workflows/{workflow}@{ref}",
    }
    if environment is not None:
        claims["environment"] = environment
        claims["sub"] = f"repo:{REPO}:environment:{environment}"
    return {**claims, **overrides}


# --- a small model of STS + IAM for the expressions the bootstrap writes ---------------------------

_EQUALS = re.compile(r"^assertion\.(\w+) == '([^']*)'$")
_CLAIM = re.compile(r"^assertion\.(\w+)$")
_OPTIONAL_CLAIM = re.compile(r"^\(has\(assertion\.(\w+)\) \? assertion\.\1 : ''\)$")
_JOIN = " + ':' + "


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
        elif _JOIN in expression:
            parts = [_OPTIONAL_CLAIM.match(part) for part in expression.split(_JOIN)]
            assert all(parts), f"unmodelled mapping {attribute} = {expression!r}"
            mapped[attribute] = ":".join(claims.get(part.group(1), "") for part in parts if part)
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
    assert impersonable(
        plan, token(ref="refs/pull/7/merge", workflow="preview.yml", event="pull_request")
    ) == {PREVIEWER}


def test_a_push_to_another_branch_gets_the_previewer_only(plan: Plan) -> None:
    assert impersonable(plan, token(ref="refs/heads/feature", workflow="deploy-dev.yml")) == {PREVIEWER}
    feature = token(ref="refs/heads/feature", environment="dev", workflow="deploy-dev.yml")
    assert impersonable(plan, feature) == {PREVIEWER}


DEV_RUNS = [("deploy-dev.yml", "push"), ("destroy.yml", "workflow_dispatch")]
PROD_RUNS = [("deploy-prod.yml", "workflow_dispatch"), ("destroy.yml", "workflow_dispatch")]


@pytest.mark.parametrize(("workflow", "event"), DEV_RUNS)
def test_main_gets_the_dev_deployer_from_its_workflows_only(plan: Plan, workflow: str, event: str) -> None:
    job = token(ref="refs/heads/main", environment="dev", workflow=workflow, event=event)
    assert impersonable(plan, job) == {PREVIEWER, DEV_DEPLOYER}


@pytest.mark.parametrize(
    "claims",
    [
        # A future workflow on main, or pull_request_target running a PR's code on main's ref.
        {"workflow": "release.yml", "event": "push", "environment": "dev"},
        {"workflow": "deploy-dev.yml", "event": "pull_request_target", "environment": "dev"},
        {"workflow": "deploy-dev.yml", "event": "workflow_dispatch", "environment": "dev"},
        {"workflow": "deploy-dev.yml", "event": "push"},  # no environment
        {"workflow": "destroy.yml", "event": "workflow_dispatch", "environment": "prod"},
    ],
)
def test_anything_else_on_main_does_not_get_the_dev_deployer(plan: Plan, claims: dict[str, str]) -> None:
    assert DEV_DEPLOYER not in impersonable(plan, token(ref="refs/heads/main", **claims))


def test_the_bound_workflow_on_another_ref_gets_no_deployer(plan: Plan) -> None:
    for ref in ("refs/heads/feature", "refs/tags/v1", "refs/pull/7/merge"):
        dev = token(ref=ref, environment="dev", workflow="deploy-dev.yml")
        prod = token(ref=ref, environment="prod", workflow="deploy-prod.yml", event="workflow_dispatch")
        assert impersonable(plan, dev) == impersonable(plan, prod) == {PREVIEWER}


@pytest.mark.parametrize(("workflow", "event"), PROD_RUNS)
def test_only_the_prod_environment_gets_the_prod_deployer(plan: Plan, workflow: str, event: str) -> None:
    # GitHub puts the `environment` claim in the token only after the environment's protection rules passed.
    prod_job = token(ref="refs/heads/main", environment="prod", workflow=workflow, event=event)
    assert impersonable(plan, prod_job) == {PREVIEWER, PROD_DEPLOYER}
    for environment in ("production", "dev", None):
        other = token(ref="refs/heads/main", environment=environment, workflow=workflow, event=event)
        assert PROD_DEPLOYER not in impersonable(plan, other)
    assert PROD_DEPLOYER not in impersonable(plan, token(ref="refs/heads/prod", environment="prod"))
    assert PROD_DEPLOYER not in impersonable(
        plan, token(ref="refs/heads/main", environment="prod", workflow="other.yml", event=event)
    )


@pytest.mark.parametrize("event", ["schedule", "workflow_dispatch"])
def test_only_the_drift_check_on_main_gets_the_prod_previewer(plan: Plan, event: str) -> None:
    drift = token(ref="refs/heads/main", workflow="drift.yml", event=event)
    assert impersonable(plan, drift) == {PREVIEWER, PROD_PREVIEWER}
    for claims in (
        {"ref": "refs/heads/feature", "workflow": "drift.yml", "event": event},
        {"ref": "refs/pull/7/merge", "workflow": "preview.yml", "event": "pull_request"},
        {"ref": "refs/heads/main", "workflow": "preview.yml", "event": event},
        {"ref": "refs/heads/main", "workflow": "drift.yml", "event": "push"},
    ):
        assert PROD_PREVIEWER not in impersonable(plan, token(**claims)), claims


def test_the_run_bindings_are_the_documented_workflow_runs(plan: Plan) -> None:
    runs = {
        binding.inputs["member"].split("/attribute.run/", 1)[1]
        for binding in plan.of_type(ACCOUNT_IAM)
        if "/attribute.run/" in binding.inputs["member"]
    }
    expected = {
        keyless_ci.run_attribute(REPO, run)
        for run in (
            *keyless_ci.PROD_PREVIEWER_RUNS,
            *keyless_ci.DEPLOYER_RUNS["dev"],
            *keyless_ci.DEPLOYER_RUNS["prod"],
        )
    }
    assert runs == expected
    assert (
        f"{REPO}/.github/workflows/deploy-prod.yml@refs/heads/main:refs/heads/main:workflow_dispatch:prod"
        in runs
    )


@pytest.mark.parametrize(
    "claims",
    [
        {"repository": "someone/whisper-cloud-run", "repository_owner": "someone"},
        {"repository_id": "111"},  # deleted and re-created under the same name
        {"repository_owner_id": "222"},  # the owner's name taken over by another account
    ],
)
def test_other_repositories_get_nothing(plan: Plan, claims: dict[str, str]) -> None:
    job = token(
        ref="refs/heads/main", environment="prod", workflow="deploy-prod.yml", event="workflow_dispatch"
    )
    assert impersonable(plan, {**job, **claims}) == set()


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


def state_access(plan: Plan, email: str) -> dict[tuple[str, str], Any]:
    """(bucket, role) -> condition of every state-bucket grant to this account."""
    return {
        (b.inputs["bucket"], b.inputs["role"]): b.inputs.get("condition")
        for b in plan.of_type(BUCKET_IAM)
        if b.inputs["member"] == f"serviceAccount:{email}"
    }


def key_access(plan: Plan, email: str) -> dict[str, str]:
    """key name -> role of every KMS grant to this account."""
    return {
        b.inputs["cryptoKeyId"].rsplit("/", 1)[-1]: b.inputs["role"]
        for b in plan.of_type(KMS_IAM)
        if b.inputs["member"] == f"serviceAccount:{email}"
    }


@pytest.mark.parametrize(
    ("email", "environment"), [(PREVIEWER, "dev"), (PROD_PREVIEWER, "prod")], ids=["previewer", "prod"]
)
def test_each_previewer_reads_one_environment_and_writes_only_its_lock_files(
    plan: Plan, email: str, environment: str
) -> None:
    project, bucket = f"my-whisper-{environment}", f"my-project-pulumi-state-{environment}"
    assert roles_of(plan, email) == {
        (project, role) for role in ("roles/viewer", "roles/serviceusage.serviceUsageConsumer")
    }
    state = state_access(plan, email)
    assert set(state) == {(bucket, "roles/storage.objectViewer"), (bucket, "roles/storage.objectAdmin")}
    assert state[(bucket, "roles/storage.objectViewer")] is None
    assert state[(bucket, "roles/storage.objectAdmin")]["expression"] == (
        f"resource.name.startsWith('projects/_/buckets/{bucket}/objects/.pulumi/locks/')"
    )
    assert key_access(plan, email) == {f"pulumi-secrets-{environment}": "roles/cloudkms.cryptoKeyDecrypter"}


@pytest.mark.parametrize(("email", "environment"), [(DEV_DEPLOYER, "dev"), (PROD_DEPLOYER, "prod")])
def test_each_deployer_writes_its_own_state_and_uses_its_own_key_only(
    plan: Plan, email: str, environment: str
) -> None:
    assert state_access(plan, email) == {
        (f"my-project-pulumi-state-{environment}", "roles/storage.objectAdmin"): None
    }
    assert key_access(plan, email) == {
        f"pulumi-secrets-{environment}": "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    }


def test_nothing_reachable_from_a_branch_can_decrypt_prod_secrets_or_touch_prod_state(plan: Plan) -> None:
    branch = token(ref="refs/heads/feature", environment="dev", workflow="deploy-dev.yml")
    main = token(ref="refs/heads/main", environment="dev", workflow="deploy-dev.yml")
    for email in impersonable(plan, branch) | impersonable(plan, main):
        assert "pulumi-secrets-prod" not in key_access(plan, email), email
        assert not [bucket for bucket, _ in state_access(plan, email) if bucket.endswith("-prod")], email


@pytest.mark.parametrize(
    ("email", "project"), [(DEV_DEPLOYER, "my-whisper-dev"), (PROD_DEPLOYER, "my-whisper-prod")]
)
def test_deployers_hold_exactly_the_documented_roles_on_their_own_project(
    plan: Plan, email: str, project: str
) -> None:
    environment = project.rsplit("-", 1)[-1].capitalize()
    custom_roles = {
        (project, f"projects/{project}/roles/{role_id}{environment}")
        for role_id in (keyless_ci.SECRET_MANAGER_ROLE_ID, keyless_ci.PUBSUB_ROLE_ID)
    }
    expected = {(project, role) for role in keyless_ci.DEPLOYER_PROJECT_ROLES} | custom_roles
    assert roles_of(plan, email) == expected
    assert ("", "roles/billing.projectCostsManager") not in roles_of(plan, email)
    assert (project, "roles/pubsub.admin") not in roles_of(plan, email)


def test_deployers_manage_the_budget_topic_but_cannot_publish_or_read_messages(plan: Plan) -> None:
    roles = [
        r for r in plan.of_type("gcp:projects/iAMCustomRole:IAMCustomRole") if "PubSub" in r.inputs["roleId"]
    ]
    assert len(roles) == 2
    for role in roles:
        permissions = set(role.inputs["permissions"])
        assert {
            "pubsub.topics.create",
            "pubsub.topics.setIamPolicy",
            "pubsub.subscriptions.create",
        } <= permissions
        assert "pubsub.topics.attachSubscription" in permissions  # a subscription to the budget's topic
        assert not permissions & {"pubsub.topics.publish", "pubsub.subscriptions.consume"}


def test_secret_manager_role_cannot_read_secrets_and_is_limited_to_the_services_secrets(plan: Plan) -> None:
    for role in plan.of_type("gcp:projects/iAMCustomRole:IAMCustomRole"):
        assert not [p for p in role.inputs["permissions"] if p.endswith(".access")]
        if "SecretManager" in role.inputs["roleId"]:
            # It can change a secret's IAM policy (the stack grants the runtime account), so it does
            # not claim that reading is impossible: only that it needs an IAM change first.
            assert "secretmanager.secrets.setIamPolicy" in role.inputs["permissions"]
            assert "cannot read" not in role.inputs["description"]
            assert "IAM change" in role.inputs["description"]
    bindings = [b for b in plan.of_type(PROJECT_IAM) if "/roles/whisperSecretManager" in b.inputs["role"]]
    assert len(bindings) == 2
    for binding in bindings:
        expression = binding.inputs["condition"]["expression"]
        assert f"resource.name.startsWith('projects/{MOCK_PROJECT_NUMBER}/secrets/whisper')" in expression


def test_state_buckets_and_keys_are_the_only_protected_resources(plan: Plan) -> None:
    protected = {resource.type for resource in plan.resources if resource.protect}
    assert protected == {"gcp:storage/bucket:Bucket", "gcp:kms/cryptoKey:CryptoKey"}
    buckets = plan.of_type("gcp:storage/bucket:Bucket")
    assert sorted(b.inputs["name"] for b in buckets) == [
        "my-project-pulumi-state-dev",
        "my-project-pulumi-state-prod",
    ]
    keys = plan.of_type("gcp:kms/cryptoKey:CryptoKey")
    assert sorted(k.inputs["name"] for k in keys) == ["pulumi-secrets-dev", "pulumi-secrets-prod"]
    for bucket in buckets:
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
    assert plan.outputs["prodPreviewerServiceAccount"] == PROD_PREVIEWER
    assert plan.outputs["devDeployerServiceAccount"] == DEV_DEPLOYER
    assert plan.outputs["prodDeployerServiceAccount"] == PROD_DEPLOYER
    for environment in ("dev", "prod"):
        assert plan.outputs[f"{environment}BackendUrl"] == f"gs://my-project-pulumi-state-{environment}"
        assert plan.outputs[f"{environment}SecretsProvider"] == (
            f"gcpkms://projects/{PROJECT}/locations/us-central1/keyRings/pulumi/cryptoKeys/pulumi-secrets-{environment}"
        )
    assert "backendUrl" not in plan.outputs and "secretsProvider" not in plan.outputs


def test_dev_and_prod_may_share_one_project() -> None:
    shared = evaluate({**VALID, "devProject": PROJECT, "prodProject": PROJECT})
    emails = sorted(a.outputs["email"] for a in shared.of_type(ACCOUNT))
    assert len(emails) == len(set(emails)) == 6
    roles = [r.inputs["roleId"] for r in shared.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")]
    assert sorted(roles) == [
        "whisperPubSubDev",
        "whisperPubSubProd",
        "whisperSecretManagerDev",
        "whisperSecretManagerProd",
    ]


# --- config validation (no runtime needed) ---------------------------------------------------------


def test_valid_config_gets_defaults() -> None:
    config = parse_config(
        {
            key: VALID[key]
            for key in ("project", "githubRepository", "githubRepositoryId", "githubRepositoryOwnerId")
        }
    )
    assert (config.dev_project, config.prod_project) == (PROJECT, PROJECT)
    assert config.state_bucket_of("prod") == "my-project-pulumi-state-prod"
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


@pytest.mark.parametrize("name", ["whisper-transcribe", "whisper-transcrib"])  # 18 and 17 characters
def test_a_service_name_too_long_for_the_cap_push_account_names_the_key_and_the_fix(name: str) -> None:
    with pytest.raises(BootstrapConfigError) as error:
        parse_config({**VALID, "serviceName": name, "spendCap": "true"})
    message = str(error.value)
    assert f"{name}-cap-push-prod" in message and "over Google's 30" in message
    assert "bootstrap:serviceName" in message and "use at most 16 characters" in message
    assert f"pulumi config set bootstrap:serviceName {name[:16]}" in message
    assert parse_config({**VALID, "serviceName": name[:16], "spendCap": "true"}).service_name == name[:16]


def test_every_account_id_fits_for_the_longest_accepted_service_name() -> None:
    config = parse_config({**VALID, "serviceName": "a" * 16, "spendCap": "true", "batch": "true"})
    assert max(len(account_id) for account_id in config.account_ids()) == 30


def test_a_state_bucket_name_too_long_for_the_environment_suffix_is_refused() -> None:
    with pytest.raises(BootstrapConfigError, match=r"bootstrap:stateBucket .* longer than 63"):
        parse_config({**VALID, "stateBucket": "b" * 60})


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


def test_the_mapping_and_condition_fit_the_providers_limits(plan: Plan) -> None:
    """Google's limits: 2048 characters per attribute mapping expression, 4096 for the condition."""
    [provider] = plan.of_type(PROVIDER)
    assert all(len(expression) <= 2048 for expression in provider.inputs["attributeMapping"].values())
    assert len(provider.inputs["attributeCondition"]) <= 4096
    assert provider.inputs["attributeMapping"]["google.subject"] == "assertion.sub"


# --- the spend cap's budgets (bootstrap:budgetBillingAccount) ---------------------------------------

BUDGETED = {
    **VALID,
    "spendCap": "true",
    "budgetBillingAccount": "012345-6789AB-CDEF01",
    "devBudgetAmount": "100",
    "prodBudgetAmount": "1500",
}


def test_the_bootstrap_makes_each_environments_budget_topic_and_publisher_grant() -> None:
    """The supported path: a budget an admin makes on the billing account, not a stack's Preview one."""
    plan = evaluate(BUDGETED)
    budgets = {b.inputs["displayName"]: b for b in plan.of_type("gcp:billing/budget:Budget")}
    assert set(budgets) == {
        "whisper dev spend cap (my-whisper-dev)",
        "whisper prod spend cap (my-whisper-prod)",
    }
    prod = budgets["whisper prod spend cap (my-whisper-prod)"]
    assert prod.inputs["billingAccount"] == "012345-6789AB-CDEF01"
    assert prod.inputs["amount"]["specifiedAmount"] == {"currencyCode": "USD", "units": "1500"}
    assert prod.inputs["budgetFilter"]["projects"] == [f"projects/{MOCK_PROJECT_NUMBER}"]
    topics = {t.inputs["name"]: t for t in plan.of_type("gcp:pubsub/topic:Topic")}
    assert set(topics) == {"whisper-budget-dev", "whisper-budget-prod"}
    topic_id = "whisper-ci-budget-topic-prod-id"  # the mock's id of the prod topic
    assert topics["whisper-budget-prod"].name == "whisper-ci-budget-topic-prod"
    assert prod.inputs["allUpdatesRule"]["pubsubTopic"] == topic_id
    grants = plan.of_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
    assert {(g.inputs["role"], g.inputs["member"]) for g in grants} == {
        ("roles/pubsub.publisher", "serviceAccount:billing-budget-alert@system.gserviceaccount.com")
    }
    assert len(grants) == 2
    assert plan.waits_for(prod, next(g for g in grants if g.inputs["project"] == "my-whisper-prod"))
    assert plan.outputs["prodBudgetTopic"] == topic_id
    assert plan.outputs["prodBudgetId"] == "whisper-ci-budget-prod"
    # Nothing of it is granted to CI: the deployers still hold no billing-account role.
    assert plan.of_type("gcp:billing/accountIamMember:AccountIamMember") == []


def test_without_a_billing_account_the_bootstrap_makes_no_budget(plan: Plan) -> None:
    assert plan.of_type("gcp:billing/budget:Budget") == [] and "prodBudgetTopic" not in plan.outputs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"spendCap": "false"}, "bootstrap:budgetBillingAccount makes the spend cap's budgets"),
        ({"prodBudgetAmount": None}, "bootstrap:prodBudgetAmount"),
        ({"budgetBillingAccount": "not-an-account"}, "bootstrap:budgetBillingAccount 'not-an-account'"),
        ({"budgetCurrency": "dollars"}, "bootstrap:budgetCurrency 'dollars'"),
    ],
)
def test_bad_budget_config_names_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BootstrapConfigError, match=message):
        parse_config({**BUDGETED, **overrides})
