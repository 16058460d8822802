"""What an admin creates once so that GitHub Actions can run `pulumi up` with no long-lived key.

A Workload Identity Federation pool trusts GitHub's OIDC tokens from one repository only; those tokens
may impersonate a deployer service account holding exactly the roles the Whisper stack needs; a
versioned bucket and a KMS key hold Pulumi's state and encrypt its secrets (a self-managed backend).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

NAMESPACE = "bootstrap"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"

# Each role the deployer holds on the project, and why `pulumi up/refresh/destroy` of the stack needs it.
DEPLOYER_PROJECT_ROLES: dict[str, str] = {
    "roles/run.admin": "create and update the Cloud Run service and set its invoker IAM "
    "(Cloud Run Developer cannot set IAM policy)",
    "roles/artifactregistry.admin": "create the image repository with its cleanup policies and push images",
    "roles/serviceusage.serviceUsageAdmin": "enable the APIs the stack uses (and bill its API calls)",
    "roles/monitoring.notificationChannelEditor": "the budget's e-mail notification channels",
}
# The runtime service account's lifecycle without roles/iam.serviceAccountAdmin, whose
# setIamPolicy would let the deployer grant itself actAs on any account: a custom role per project.
SERVICE_ACCOUNT_MANAGER_ROLE_ID = "whisperServiceAccountManager"
SERVICE_ACCOUNT_MANAGER_PERMISSIONS = (
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
)
# Project IAM is granted with a condition: the deployer may only grant the runtime account's roles.
RUNTIME_GRANTABLE_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
PROJECT_IAM_ROLE = "roles/resourcemanager.projectIamAdmin"
SERVICE_ACCOUNT_USER_ROLE = "roles/iam.serviceAccountUser"
BILLING_ROLE = "roles/billing.costsManager"
STATE_BUCKET_ROLE = "roles/storage.objectAdmin"
SECRETS_KEY_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"

BOOTSTRAP_APIS = (
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "storage.googleapis.com",
    "cloudkms.googleapis.com",
)

REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
POOL_ID = re.compile(r"^[a-z0-9-]{4,32}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


class BootstrapConfigError(ValueError):
    """Every problem with the bootstrap stack config at once, each with the command that fixes it."""


@dataclass(frozen=True)
class BootstrapConfig:
    project: str
    github_repository: str
    region: str = "us-central1"
    billing_account: str | None = None
    pool_id: str = "github"
    provider_id: str = "github-oidc"
    deployer_account_id: str = "whisper-deployer"
    # Projects the stacks deploy into (each stack's gcp:project); the deployer has its roles in each.
    deploy_projects: tuple[str, ...] = ()
    # After the first deploy: the runtime accounts, so that "act as" is granted on them only.
    runtime_service_accounts: tuple[str, ...] = ()
    state_bucket: str = ""
    state_bucket_location: str = "US"
    kept_state_versions: int = 20

    @property
    def principal_set_suffix(self) -> str:
        return f"attribute.repository/{self.github_repository}"


def _fix(key: str, example: str) -> str:
    return f"pulumi config set {NAMESPACE}:{key} {example}"


def _names(value: object) -> list[str]:
    """A list from config: a YAML list, or a comma-separated string."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def parse_config(raw: Mapping[str, object]) -> BootstrapConfig:
    """Validate the `bootstrap:` keys (given without namespace) and fail with every problem listed."""
    problems: list[str] = []

    def text(key: str, default: str | None = None) -> str | None:
        value = raw.get(key)
        return default if value is None or str(value).strip() == "" else str(value).strip()

    project = text("project") or ""
    if not PROJECT_ID.match(project):
        problems.append(
            f"{NAMESPACE}:project {project!r} is not a Google Cloud project ID — "
            f"{_fix('project', 'my-project')}"
        )
    repository = text("githubRepository") or ""
    if not REPOSITORY.match(repository):
        problems.append(
            f"{NAMESPACE}:githubRepository {repository!r} must be the GitHub 'owner/repo' that deploys — "
            f"{_fix('githubRepository', 'my-org/whisper-cloud-run')}"
        )
    billing_account = text("billingAccount")
    if billing_account is not None:
        billing_account = billing_account.removeprefix("billingAccounts/")
        if not BILLING_ACCOUNT.match(billing_account):
            problems.append(
                f"{NAMESPACE}:billingAccount {billing_account!r} is not a billing account ID "
                f"(gcloud billing accounts list) — {_fix('billingAccount', '012345-6789AB-CDEF01')}"
            )
    for key, default, pattern in (
        ("poolId", "github", POOL_ID),
        ("providerId", "github-oidc", POOL_ID),
        ("deployerAccountId", "whisper-deployer", ACCOUNT_ID),
    ):
        value = text(key, default) or ""
        if not pattern.match(value) or value.startswith("gcp-"):
            problems.append(f"{NAMESPACE}:{key} {value!r} is not a valid ID — {_fix(key, default)}")
    deploy_projects = _names(raw.get("deployProjects")) or [project]
    for deploy_project in deploy_projects:
        if not PROJECT_ID.match(deploy_project):
            problems.append(
                f"{NAMESPACE}:deployProjects has {deploy_project!r}, not a project ID — "
                f"pulumi config set --path '{NAMESPACE}:deployProjects[0]' my-whisper-dev"
            )
    runtime_accounts = _names(raw.get("runtimeServiceAccounts"))
    for account in runtime_accounts:
        account_project = account.partition("@")[2].removesuffix(".iam.gserviceaccount.com")
        if not account.endswith(".iam.gserviceaccount.com") or account_project not in deploy_projects:
            problems.append(
                f"{NAMESPACE}:runtimeServiceAccounts has {account!r}; it must be a runtime account e-mail in "
                "one of the deploy projects (pulumi stack output serviceAccountEmail) — "
                f"pulumi config set --path '{NAMESPACE}:runtimeServiceAccounts[0]' "
                "whisper-run@my-whisper-dev.iam.gserviceaccount.com"
            )
    bucket = text("stateBucket", f"{project}-pulumi-state") or ""
    if not BUCKET.match(bucket) or "goog" in bucket:
        problems.append(
            f"{NAMESPACE}:stateBucket {bucket!r} is not a valid bucket name — "
            f"{_fix('stateBucket', 'my-project-pulumi-state')}"
        )
    kept = text("keptStateVersions", "20") or ""
    if not kept.isdigit() or not 1 <= int(kept) <= 1000:
        problems.append(
            f"{NAMESPACE}:keptStateVersions {kept!r} must be a whole number from 1 to 1000 — "
            f"{_fix('keptStateVersions', '20')}"
        )

    if problems:
        raise BootstrapConfigError("invalid bootstrap config:\n  - " + "\n  - ".join(problems))
    return BootstrapConfig(
        project=project,
        github_repository=repository,
        region=text("region", "us-central1") or "us-central1",
        billing_account=billing_account,
        pool_id=text("poolId", "github") or "github",
        provider_id=text("providerId", "github-oidc") or "github-oidc",
        deployer_account_id=text("deployerAccountId", "whisper-deployer") or "whisper-deployer",
        deploy_projects=tuple(deploy_projects),
        runtime_service_accounts=tuple(runtime_accounts),
        state_bucket=bucket,
        state_bucket_location=text("stateBucketLocation", "US") or "US",
        kept_state_versions=int(kept),
    )


def load_config() -> BootstrapConfig:
    config = pulumi.Config(NAMESPACE)
    keys = (
        "project", "githubRepository", "region", "billingAccount", "poolId", "providerId",
        "deployerAccountId", "stateBucket", "stateBucketLocation", "keptStateVersions",
    )  # fmt: skip
    raw: dict[str, object] = {key: config.get(key) for key in keys}
    raw["deployProjects"] = config.get_object("deployProjects")
    raw["runtimeServiceAccounts"] = config.get_object("runtimeServiceAccounts")
    raw["project"] = raw["project"] or pulumi.Config("gcp").get("project")
    return parse_config(raw)


def _role_slug(role: str) -> str:
    return role.removeprefix("roles/").replace(".", "-").lower()


class KeylessCi(pulumi.ComponentResource):
    """WIF pool + GitHub provider, the deployer account and its roles, and the state backend."""

    def __init__(
        self, name: str, config: BootstrapConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("whisper:bootstrap:KeylessCi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project = config.project

        apis = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=project,
                service=api,
                disable_on_destroy=False,
                opts=child,
            )
            for api in BOOTSTRAP_APIS
        ]
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=apis)

        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            project=project,
            workload_identity_pool_id=config.pool_id,
            display_name="GitHub Actions",
            description=f"GitHub Actions OIDC tokens from {config.github_repository}",
            opts=after_apis,
        )
        self.provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider",
            project=project,
            workload_identity_pool_id=self.pool.workload_identity_pool_id,
            workload_identity_pool_provider_id=config.provider_id,
            display_name="GitHub OIDC",
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER),
            attribute_mapping={
                "google.subject": "assertion.sub",
                "attribute.repository": "assertion.repository",
                "attribute.repository_owner": "assertion.repository_owner",
                "attribute.ref": "assertion.ref",
            },
            # Tokens from any other repository are rejected before any binding is even considered.
            attribute_condition=f"assertion.repository == '{config.github_repository}'",
            opts=child,
        )

        self.deployer = gcp.serviceaccount.Account(
            f"{name}-deployer",
            project=project,
            account_id=config.deployer_account_id,
            display_name="Whisper deployer (GitHub Actions)",
            description=f"Runs pulumi preview/up/destroy from {config.github_repository}; no keys.",
            opts=after_apis,
        )
        member = self.deployer.email.apply(lambda email: f"serviceAccount:{email}")

        self.workload_identity_user = gcp.serviceaccount.IAMMember(
            f"{name}-deployer-wif",
            service_account_id=self.deployer.name,
            role="roles/iam.workloadIdentityUser",
            member=self.pool.name.apply(
                lambda pool: f"principalSet://iam.googleapis.com/{pool}/{config.principal_set_suffix}"
            ),
            opts=child,
        )

        grantable = ", ".join(f"'{role}'" for role in RUNTIME_GRANTABLE_ROLES)
        only_runtime_roles = (
            f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([{grantable}])"
        )
        self.project_roles: list[gcp.projects.IAMMember] = []
        self.act_as: list[pulumi.CustomResource] = []
        for target in config.deploy_projects:
            account_manager = gcp.projects.IAMCustomRole(
                f"{name}-{target}-service-account-manager",
                project=target,
                role_id=SERVICE_ACCOUNT_MANAGER_ROLE_ID,
                title="Whisper service account manager",
                description="Create, update and delete the Whisper runtime service account; no IAM policy.",
                permissions=list(SERVICE_ACCOUNT_MANAGER_PERMISSIONS),
                opts=after_apis,
            )
            self.project_roles.append(
                gcp.projects.IAMMember(
                    f"{name}-{target}-service-account-manager",
                    project=target,
                    role=f"projects/{target}/roles/{SERVICE_ACCOUNT_MANAGER_ROLE_ID}",
                    member=member,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[account_manager]),
                )
            )
            for role in DEPLOYER_PROJECT_ROLES:
                self.project_roles.append(
                    gcp.projects.IAMMember(
                        f"{name}-{target}-{_role_slug(role)}",
                        project=target,
                        role=role,
                        member=member,
                        opts=child,
                    )
                )
            self.project_roles.append(
                gcp.projects.IAMMember(
                    f"{name}-{target}-project-iam-admin",
                    project=target,
                    role=PROJECT_IAM_ROLE,
                    member=member,
                    condition=gcp.projects.IAMMemberConditionArgs(
                        title="runtime-roles-only",
                        description="The deployer may grant only the runtime service account's roles.",
                        expression=only_runtime_roles,
                    ),
                    opts=child,
                )
            )
            if not config.runtime_service_accounts:
                self.act_as.append(
                    gcp.projects.IAMMember(
                        f"{name}-{target}-act-as",
                        project=target,
                        role=SERVICE_ACCOUNT_USER_ROLE,
                        member=member,
                        opts=child,
                    )
                )
        for account in config.runtime_service_accounts:
            account_name, _, domain = account.partition("@")
            account_project = domain.removesuffix(".iam.gserviceaccount.com")
            self.act_as.append(
                gcp.serviceaccount.IAMMember(
                    f"{name}-act-as-{account_name}-{account_project}",
                    service_account_id=f"projects/{account_project}/serviceAccounts/{account}",
                    role=SERVICE_ACCOUNT_USER_ROLE,
                    member=member,
                    opts=child,
                )
            )
        if not config.runtime_service_accounts:
            pulumi.log.warn(
                "bootstrap:runtimeServiceAccounts is not set, so the deployer may act as any service account"
                " in the deploy projects; after the first deploy, list the runtime accounts' e-mails and run "
                "`pulumi up` here again to narrow it."
            )
        self.billing = (
            gcp.billing.AccountIamMember(
                f"{name}-billing-costs-manager",
                billing_account_id=config.billing_account,
                role=BILLING_ROLE,
                member=member,
                opts=child,
            )
            if config.billing_account
            else None
        )

        self.state_bucket = gcp.storage.Bucket(
            f"{name}-state",
            project=project,
            name=config.state_bucket,
            location=config.state_bucket_location,
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=False,
            lifecycle_rules=[
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        num_newer_versions=config.kept_state_versions, with_state="ARCHIVED"
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=apis, protect=True),
        )
        self.state_access = gcp.storage.BucketIAMMember(
            f"{name}-state-object-admin",
            bucket=self.state_bucket.name,
            role=STATE_BUCKET_ROLE,
            member=member,
            opts=child,
        )

        self.key_ring = gcp.kms.KeyRing(
            f"{name}-keyring", project=project, name="pulumi", location=config.region, opts=after_apis
        )
        self.secrets_key = gcp.kms.CryptoKey(
            f"{name}-secrets-key",
            name="pulumi-secrets",
            key_ring=self.key_ring.id,
            rotation_period="7776000s",
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.secrets_access = gcp.kms.CryptoKeyIAMMember(
            f"{name}-secrets-encrypter-decrypter",
            crypto_key_id=self.secrets_key.id,
            role=SECRETS_KEY_ROLE,
            member=member,
            opts=child,
        )

        self.workload_identity_provider = self.provider.name
        self.deployer_email = self.deployer.email
        self.backend_url = self.state_bucket.name.apply(lambda bucket: f"gs://{bucket}")
        self.secrets_provider = self.secrets_key.id.apply(lambda key: f"gcpkms://{key}")
        self.register_outputs(
            {
                "workloadIdentityProvider": self.workload_identity_provider,
                "deployerServiceAccount": self.deployer_email,
                "backendUrl": self.backend_url,
                "secretsProvider": self.secrets_provider,
            }
        )
