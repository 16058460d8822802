"""The bootstrap project under Pulumi's mock runtime: keyless CI restricted to one repository."""

from __future__ import annotations

import pulumi
import pytest

from infra.bootstrap import keyless_ci
from infra.bootstrap.keyless_ci import BootstrapConfigError, KeylessCi, parse_config

REPO = "my-org/whisper-cloud-run"
PROJECT = "my-project"
VALID = {
    "project": PROJECT,
    "githubRepository": REPO,
    "billingAccount": "012345-6789AB-CDEF01",
    "deployProjects": ["my-whisper-dev", "my-whisper-prod"],
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource's inputs and returns the computed outputs the program reads."""

    def __init__(self) -> None:
        self.resources: list[tuple[str, str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append((args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
            pool_id = args.inputs["workloadIdentityPoolId"]
            outputs["name"] = f"projects/123456789012/locations/global/workloadIdentityPools/{pool_id}"
        elif args.typ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
            outputs["name"] = (
                "projects/123456789012/locations/global/workloadIdentityPools/github/providers/"
                + args.inputs["workloadIdentityPoolProviderId"]
            )
        elif args.typ == "gcp:serviceaccount/account:Account":
            email = f"{args.inputs['accountId']}@{args.inputs['project']}.iam.gserviceaccount.com"
            outputs.update(email=email, name=f"projects/{args.inputs['project']}/serviceAccounts/{email}")
        elif args.typ == "gcp:kms/keyRing:KeyRing":
            outputs["id"] = (
                f"projects/{PROJECT}/locations/{args.inputs['location']}/keyRings/{args.inputs['name']}"
            )
            return outputs["id"], outputs
        elif args.typ == "gcp:kms/cryptoKey:CryptoKey":
            key_id = f"{args.inputs['keyRing']}/cryptoKeys/{args.inputs['name']}"
            return key_id, outputs
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}

    def of_type(self, typ: str) -> list[dict]:
        return [inputs for kind, _, inputs in self.resources if kind == typ]


@pytest.fixture
def mocks():
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project="whisper-bootstrap", stack="admin", preview=False)
    return recording


def _evaluate(config: dict) -> KeylessCi:
    return KeylessCi("whisper-ci", parse_config(config))


def _settled(ci: KeylessCi) -> pulumi.Output:
    """Resolves once every resource of the component has been registered with the mocks."""
    resources = [
        ci.provider, ci.workload_identity_user, ci.state_access, ci.secrets_access,
        *ci.project_roles, *ci.act_as, *([ci.billing] if ci.billing else []),
    ]  # fmt: skip
    return pulumi.Output.all(*[resource.urn for resource in resources])


@pulumi.runtime.test
def test_provider_trusts_github_oidc_for_this_repository_only(mocks):
    ci = _evaluate(VALID)

    def check(_):
        [provider] = mocks.of_type("gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider")
        assert provider["oidc"]["issuerUri"] == "https://token.actions.githubusercontent.com"
        assert provider["attributeCondition"] == f"assertion.repository == '{REPO}'"
        assert provider["attributeMapping"]["attribute.repository"] == "assertion.repository"
        assert provider["attributeMapping"]["google.subject"] == "assertion.sub"

    return _settled(ci).apply(check)


@pulumi.runtime.test
def test_only_the_repository_principal_set_may_impersonate_the_deployer(mocks):
    ci = _evaluate(VALID)

    def check(_):
        [binding] = [
            inputs for inputs in mocks.of_type("gcp:serviceaccount/iAMMember:IAMMember")
            if inputs["role"] == "roles/iam.workloadIdentityUser"
        ]  # fmt: skip
        assert binding["member"] == (
            "principalSet://iam.googleapis.com/projects/123456789012/locations/global/"
            f"workloadIdentityPools/github/attribute.repository/{REPO}"
        )
        assert binding["serviceAccountId"].endswith("whisper-deployer@my-project.iam.gserviceaccount.com")

    return _settled(ci).apply(check)


@pulumi.runtime.test
def test_no_service_account_key_exists_anywhere(mocks):
    ci = _evaluate(VALID)

    def check(_):
        kinds = {kind for kind, _, _ in mocks.resources}
        assert "gcp:serviceaccount/key:Key" not in kinds
        assert not [kind for kind in kinds if kind.lower().endswith(":key")]

    return _settled(ci).apply(check)


@pulumi.runtime.test
def test_state_bucket_is_versioned_private_and_protected(mocks):
    ci = _evaluate(VALID)

    def check(_):
        [bucket] = mocks.of_type("gcp:storage/bucket:Bucket")
        assert bucket["versioning"] == {"enabled": True}
        assert bucket["uniformBucketLevelAccess"] is True
        assert bucket["publicAccessPrevention"] == "enforced"
        assert bucket["name"] == "my-project-pulumi-state"
        [rule] = bucket["lifecycleRules"]
        assert rule["condition"]["numNewerVersions"] == 20
        [access] = mocks.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")
        assert access["role"] == "roles/storage.objectAdmin"
        assert access["member"] == "serviceAccount:whisper-deployer@my-project.iam.gserviceaccount.com"

    return _settled(ci).apply(check)


@pulumi.runtime.test
def test_deployer_holds_exactly_the_documented_roles(mocks):
    ci = _evaluate(VALID)

    def check(_):
        grants = [(i["project"], i["role"]) for i in mocks.of_type("gcp:projects/iAMMember:IAMMember")]
        expected = [
            *keyless_ci.DEPLOYER_PROJECT_ROLES,
            keyless_ci.PROJECT_IAM_ROLE,
            "roles/iam.serviceAccountUser",
        ]
        manager = keyless_ci.SERVICE_ACCOUNT_MANAGER_ROLE_ID
        assert sorted(grants) == sorted(
            [(p, role) for p in VALID["deployProjects"] for role in expected]
            + [(p, f"projects/{p}/roles/{manager}") for p in VALID["deployProjects"]]
        )
        assert "roles/iam.serviceAccountAdmin" not in {role for _, role in grants}
        custom_roles = mocks.of_type("gcp:projects/iAMCustomRole:IAMCustomRole")
        assert sorted(r["project"] for r in custom_roles) == sorted(VALID["deployProjects"])
        for custom_role in custom_roles:
            assert custom_role["permissions"] == list(keyless_ci.SERVICE_ACCOUNT_MANAGER_PERMISSIONS)
            assert not any("setIamPolicy" in p for p in custom_role["permissions"])
        project_roles = [role for _, role in grants]
        assert not {"roles/owner", "roles/editor"} & set(project_roles)
        [iam_admin, _] = [
            inputs for inputs in mocks.of_type("gcp:projects/iAMMember:IAMMember")
            if inputs["role"] == keyless_ci.PROJECT_IAM_ROLE
        ]  # fmt: skip
        expression = iam_admin["condition"]["expression"]
        assert "modifiedGrantsByRole" in expression
        assert all(role in expression for role in keyless_ci.RUNTIME_GRANTABLE_ROLES)
        [billing] = mocks.of_type("gcp:billing/accountIamMember:AccountIamMember")
        assert billing == {
            "billingAccountId": "012345-6789AB-CDEF01",
            "role": "roles/billing.costsManager",
            "member": "serviceAccount:whisper-deployer@my-project.iam.gserviceaccount.com",
        }
        [kms] = mocks.of_type("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
        assert kms["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"

    return _settled(ci).apply(check)


@pulumi.runtime.test
def test_runtime_account_narrows_act_as_and_no_billing_without_account(mocks):
    runtime = "whisper-run@my-project.iam.gserviceaccount.com"
    config = {"project": PROJECT, "githubRepository": REPO, "runtimeServiceAccounts": [runtime]}
    ci = _evaluate(config)

    def check(_):
        project_roles = [inputs["role"] for inputs in mocks.of_type("gcp:projects/iAMMember:IAMMember")]
        assert "roles/iam.serviceAccountUser" not in project_roles
        act_as = [
            inputs for inputs in mocks.of_type("gcp:serviceaccount/iAMMember:IAMMember")
            if inputs["role"] == "roles/iam.serviceAccountUser"
        ]  # fmt: skip
        assert [inputs["serviceAccountId"] for inputs in act_as] == [
            f"projects/{PROJECT}/serviceAccounts/{runtime}"
        ]
        assert mocks.of_type("gcp:billing/accountIamMember:AccountIamMember") == []

    return _settled(ci).apply(check)


@pulumi.runtime.test
def test_outputs_are_what_the_workflows_and_stack_init_need(mocks):
    ci = _evaluate(VALID)

    def check(values):
        provider, email, backend, secrets = values
        assert provider.endswith("/workloadIdentityPools/github/providers/github-oidc")
        assert email == "whisper-deployer@my-project.iam.gserviceaccount.com"
        assert backend == "gs://my-project-pulumi-state"
        assert secrets == (
            f"gcpkms://projects/{PROJECT}/locations/us-central1/keyRings/pulumi/cryptoKeys/pulumi-secrets"
        )

    return pulumi.Output.all(
        ci.workload_identity_provider, ci.deployer_email, ci.backend_url, ci.secrets_provider
    ).apply(check)


# --- config validation (no runtime needed) -------------------------------------------------------


def test_valid_config_gets_defaults():
    config = parse_config({"project": PROJECT, "githubRepository": REPO})
    assert config.billing_account is None
    assert config.deploy_projects == (PROJECT,)
    assert config.state_bucket == "my-project-pulumi-state"
    assert config.principal_set_suffix == f"attribute.repository/{REPO}"


def test_billing_account_prefix_is_accepted():
    config = parse_config({**VALID, "billingAccount": "billingAccounts/012345-6789AB-CDEF01"})
    assert config.billing_account == "012345-6789AB-CDEF01"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"githubRepository": None}, "bootstrap:githubRepository"),
        ({"githubRepository": "just-a-repo"}, "bootstrap:githubRepository"),
        ({"githubRepository": "https://github.com/my-org/repo"}, "bootstrap:githubRepository"),
        ({"project": "My_Project"}, "bootstrap:project"),
        ({"billingAccount": "12345"}, "bootstrap:billingAccount"),
        ({"deployerAccountId": "x"}, "bootstrap:deployerAccountId"),
        ({"poolId": "gcp-github"}, "bootstrap:poolId"),
        ({"runtimeServiceAccounts": ["whisper-run"]}, "bootstrap:runtimeServiceAccounts"),
        (
            {"runtimeServiceAccounts": ["a-run@elsewhere.iam.gserviceaccount.com"]},
            "bootstrap:runtimeServiceAccounts",
        ),
        ({"deployProjects": ["Not A Project"]}, "bootstrap:deployProjects"),
        ({"stateBucket": "Bad Bucket"}, "bootstrap:stateBucket"),
        ({"keptStateVersions": "0"}, "bootstrap:keptStateVersions"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(overrides, key):
    with pytest.raises(BootstrapConfigError) as error:
        parse_config({**VALID, **overrides})
    message = str(error.value)
    assert key in message
    assert "pulumi config set" in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(BootstrapConfigError) as error:
        parse_config({"project": "", "githubRepository": ""})
    assert "bootstrap:project" in str(error.value) and "bootstrap:githubRepository" in str(error.value)


def test_no_service_account_key_in_bootstrap_source():
    source = keyless_ci.__file__
    with open(source, encoding="utf-8") as handle:
        text = handle.read()
    assert "serviceaccount.Key" not in text
