"""What an admin creates once so that GitHub Actions can run Pulumi with no long-lived key.

A Workload Identity Federation pool trusts GitHub's OIDC tokens from one repository, pinned by its
immutable ids. Three identities, each reachable only from where it belongs:

- the previewer (read-only), from any workflow of the repository: pull-request previews and drift;
- the dev deployer, only from jobs on `refs/heads/main`;
- the prod deployer, only from jobs in the GitHub environment `prod` (its required reviewers).

The runtime service accounts live here too, so that a stack's destroy-and-recreate neither changes
the service's identity nor loses the deployer's `actAs` on it; the stacks take their e-mails
(`whisper:serviceAccount`). Nobody gets project-wide `iam.serviceAccountUser`. A versioned bucket
and a KMS key hold Pulumi's state and encrypt its secrets (a self-managed backend).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

NAMESPACE = "bootstrap"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ENVIRONMENTS = ("dev", "prod")
PROD_ENVIRONMENT = "prod"
DEV_REF = "refs/heads/main"

# Each role a deployer holds on its environment's project, and why `pulumi up/refresh/destroy` needs it.
DEPLOYER_PROJECT_ROLES: dict[str, str] = {
    "roles/run.admin": "create and update the Cloud Run service and set its invoker IAM "
    "(Cloud Run Developer cannot set IAM policy)",
    "roles/artifactregistry.admin": "create the image repository with its cleanup policies and push images",
    "roles/serviceusage.serviceUsageAdmin": "enable the APIs the stack uses (and bill its API calls)",
    "roles/monitoring.notificationChannelEditor": "the budget's e-mail notification channels",
    "roles/monitoring.alertPolicyEditor": "the alert policies (infra/observability.py, infra/spend_cap.py)",
    "roles/monitoring.dashboardEditor": "the service's dashboard",
    "roles/monitoring.uptimeCheckConfigEditor": "the authenticated /readyz uptime check",
    "roles/pubsub.admin": "the budget's topic, who may publish to it, and the spend cap's subscription",
    # Budgets on this one project only (billing.resourcebudgets.*), not on the whole billing account.
    "roles/billing.projectCostsManager": "the budget scoped to this project",
}
# The API key's secret without roles/secretmanager.admin, which could read every secret's payload:
# a custom role with no `versions.access`, limited by a condition to secrets named after the service.
SECRET_MANAGER_ROLE_ID = "whisperSecretManager"  # noqa: S105 - a role id, not a secret
SECRET_MANAGER_PERMISSIONS = (
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.secrets.get",
    "secretmanager.secrets.getIamPolicy",
    "secretmanager.secrets.setIamPolicy",
    "secretmanager.secrets.update",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.disable",
    "secretmanager.versions.enable",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
)
# With `bootstrap:spendCap`: what the spend cap may do to the service it is granted on, nothing more.
SPEND_CAP_ROLE_ID = "whisperSpendCap"
SPEND_CAP_PERMISSIONS = ("run.services.get", "run.services.update")
# What the running container calls: Cloud Logging and Cloud Monitoring. Image pulls are done by
# Cloud Run's service agent, which reads same-project repositories.
RUNTIME_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
# `pulumi preview --refresh` reads every resource of the stack (Viewer includes project budgets and
# IAM policies, not secret payloads), bills the budget provider's calls to the project
# (`user_project_override` needs serviceusage.services.use) and decrypts the stack's secrets; it
# writes only its lock file.
PREVIEWER_PROJECT_ROLES = ("roles/viewer", "roles/serviceusage.serviceUsageConsumer")
SERVICE_ACCOUNT_USER_ROLE = "roles/iam.serviceAccountUser"
# With `bootstrap:batch`: the batch buckets and their IAM, limited by a condition to their names.
BATCH_BUCKETS_ROLE = "roles/storage.admin"
WORKLOAD_IDENTITY_USER_ROLE = "roles/iam.workloadIdentityUser"
STATE_BUCKET_ROLE = "roles/storage.objectAdmin"
STATE_READ_ROLE = "roles/storage.objectViewer"
SECRETS_KEY_ROLE = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
SECRETS_DECRYPT_ROLE = "roles/cloudkms.cryptoKeyDecrypter"
# Where the self-managed backend keeps its locks (pulumi/pkg/backend/diy).
LOCKS_PREFIX = ".pulumi/locks/"

ENVIRONMENT_PROJECT_APIS = ("iam.googleapis.com", "cloudresourcemanager.googleapis.com")
BOOTSTRAP_APIS = (
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "storage.googleapis.com",
    "cloudkms.googleapis.com",
)

REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
NUMERIC_ID = re.compile(r"^[1-9][0-9]{0,19}$")
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,17}$")
POOL_ID = re.compile(r"^[a-z0-9-]{4,32}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


class BootstrapConfigError(ValueError):
    """Every problem with the bootstrap stack config at once, each with the command that fixes it."""


@dataclass(frozen=True)
class BootstrapConfig:
    project: str
    github_repository: str
    # Immutable: a deleted and re-created repository (or owner) of the same name gets new ids.
    github_repository_id: str
    github_repository_owner_id: str
    region: str = "us-central1"
    pool_id: str = "github"
    provider_id: str = "github-oidc"
    # The stacks' `whisper:serviceName`: names the accounts and bounds the secrets a deployer manages.
    service_name: str = "whisper"
    dev_project: str = ""
    prod_project: str = ""
    state_bucket: str = ""
    state_bucket_location: str = "US"
    kept_state_versions: int = 20
    # The stacks' `whisper:batch`: a job account per environment and the deployers' bucket role.
    batch: bool = False
    # The stacks' `whisper:spendCap`: the cap's identities and role per environment.
    spend_cap: bool = False

    def project_of(self, environment: str) -> str:
        return self.dev_project if environment == "dev" else self.prod_project

    def runtime_account_id(self, environment: str) -> str:
        return f"{self.service_name}-run-{environment}"

    def deployer_account_id(self, environment: str) -> str:
        return f"{self.service_name}-deploy-{environment}"

    def job_account_id(self, environment: str) -> str:
        return f"{self.service_name}-job-{environment}"

    def spend_cap_account_id(self, environment: str) -> str:
        return f"{self.service_name}-cap-{environment}"

    def spend_cap_push_account_id(self, environment: str) -> str:
        return f"{self.service_name}-cap-push-{environment}"

    @property
    def previewer_account_id(self) -> str:
        return f"{self.service_name}-previewer"


def _fix(key: str, example: str) -> str:
    return f"pulumi config set {NAMESPACE}:{key} {example}"


def parse_config(raw: Mapping[str, object]) -> BootstrapConfig:
    """Validate the `bootstrap:` keys (given without namespace) and fail with every problem listed."""
    problems: list[str] = []

    def text(key: str, default: str = "") -> str:
        value = raw.get(key)
        return default if value is None or str(value).strip() == "" else str(value).strip()

    def check(key: str, value: str, valid: bool, what: str, example: str) -> None:
        if not valid:
            problems.append(f"{NAMESPACE}:{key} {value!r} is not {what} — {_fix(key, example)}")

    project = text("project")
    check("project", project, bool(PROJECT_ID.match(project)), "a Google Cloud project ID", "my-project")
    repository = text("githubRepository")
    check(
        "githubRepository",
        repository,
        bool(REPOSITORY.match(repository)),
        "the GitHub 'owner/repo' that deploys",
        "my-org/whisper-cloud-run",
    )
    find_ids = "(gh api repos/OWNER/REPO --jq '.id, .owner.id')"
    repository_id = text("githubRepositoryId")
    check(
        "githubRepositoryId",
        repository_id,
        bool(NUMERIC_ID.match(repository_id)),
        f"a repository id {find_ids}",
        "123456789",
    )
    owner_id = text("githubRepositoryOwnerId")
    check(
        "githubRepositoryOwnerId",
        owner_id,
        bool(NUMERIC_ID.match(owner_id)),
        f"an owner id {find_ids}",
        "987654",
    )
    service_name = text("serviceName", "whisper")
    check(
        "serviceName",
        service_name,
        bool(SERVICE_NAME.match(service_name)),
        "a service name of 2-18 lowercase letters, digits or hyphens",
        "whisper",
    )
    for key, default in (("poolId", "github"), ("providerId", "github-oidc")):
        value = text(key, default)
        check(key, value, bool(POOL_ID.match(value)) and not value.startswith("gcp-"), "a valid ID", default)
    dev_project, prod_project = text("devProject", project), text("prodProject", project)
    for key, value in (("devProject", dev_project), ("prodProject", prod_project)):
        check(
            key,
            value,
            bool(PROJECT_ID.match(value)),
            "a project ID (the stack's gcp:project)",
            f"my-whisper-{key[:-7]}",
        )
    bucket = text("stateBucket", f"{project}-pulumi-state")
    check(
        "stateBucket",
        bucket,
        bool(BUCKET.match(bucket)) and "goog" not in bucket,
        "a valid bucket name",
        "my-project-pulumi-state",
    )
    kept = text("keptStateVersions", "20")
    check(
        "keptStateVersions",
        kept,
        kept.isdigit() and 1 <= int(kept) <= 1000,
        "a whole number from 1 to 1000",
        "20",
    )
    batch = text("batch", "false").lower()
    check("batch", batch, batch in {"true", "false"}, "true or false", "true")
    spend_cap = text("spendCap", "false").lower()
    check("spendCap", spend_cap, spend_cap in {"true", "false"}, "true or false", "true")
    for retired in ("deployerAccountId", "deployProjects", "runtimeServiceAccounts", "billingAccount"):
        if raw.get(retired) is not None:
            problems.append(
                f"{NAMESPACE}:{retired} is no longer read (one deployer per environment; runtime accounts "
                "and project-level budget roles now live here; see docs/platform.md) — "
                f"pulumi config rm {NAMESPACE}:{retired}"
            )

    if problems:
        raise BootstrapConfigError("invalid bootstrap config:\n  - " + "\n  - ".join(problems))
    return BootstrapConfig(
        project=project,
        github_repository=repository,
        github_repository_id=repository_id,
        github_repository_owner_id=owner_id,
        region=text("region", "us-central1"),
        pool_id=text("poolId", "github"),
        provider_id=text("providerId", "github-oidc"),
        service_name=service_name,
        dev_project=dev_project,
        prod_project=prod_project,
        state_bucket=bucket,
        state_bucket_location=text("stateBucketLocation", "US"),
        kept_state_versions=int(kept),
        batch=batch == "true",
        spend_cap=spend_cap == "true",
    )


CONFIG_KEYS = (
    "project",
    "githubRepository",
    "githubRepositoryId",
    "githubRepositoryOwnerId",
    "region",
    "poolId",
    "providerId",
    "serviceName",
    "devProject",
    "prodProject",
    "stateBucket",
    "stateBucketLocation",
    "keptStateVersions",
    "batch",
    "spendCap",
    "deployerAccountId",
    "deployProjects",
    "runtimeServiceAccounts",
    "billingAccount",
)


def load_config() -> BootstrapConfig:
    config = pulumi.Config(NAMESPACE)
    raw: dict[str, object] = {key: config.get(key) for key in CONFIG_KEYS}
    raw["project"] = raw["project"] or pulumi.Config("gcp").get("project")
    return parse_config(raw)


def provider_condition(config: BootstrapConfig) -> str:
    """Only this repository's tokens: its name, and the ids that a look-alike re-creation cannot reuse."""
    return (
        f"assertion.repository == '{config.github_repository}'"
        f" && assertion.repository_id == '{config.github_repository_id}'"
        f" && assertion.repository_owner_id == '{config.github_repository_owner_id}'"
    )


ATTRIBUTE_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.repository_id": "assertion.repository_id",
    "attribute.repository_owner_id": "assertion.repository_owner_id",
    "attribute.ref": "assertion.ref",
    # Only jobs that name an environment carry the claim.
    "attribute.environment": "has(assertion.environment) ? assertion.environment : ''",
}


def _role_slug(role: str) -> str:
    return role.removeprefix("roles/").replace(".", "-").lower()


def _principal_set(pool: pulumi.Output[str], attribute: str) -> pulumi.Output[str]:
    return pool.apply(lambda name: f"principalSet://iam.googleapis.com/{name}/attribute.{attribute}")


class KeylessCi(pulumi.ComponentResource):
    """WIF pool + GitHub provider, the previewer and per-environment deployer and runtime accounts, their
    roles, and the state backend."""

    def __init__(
        self, name: str, config: BootstrapConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("whisper:bootstrap:KeylessCi", name, None, opts)
        self.config = config
        self.name = name
        child = pulumi.ResourceOptions(parent=self)
        project = config.project

        self.apis = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=project,
                service=api,
                disable_on_destroy=False,
                opts=child,
            )
            for api in BOOTSTRAP_APIS
        ]
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=self.apis)
        # The accounts and custom roles made in each environment's project need its IAM API.
        self.project_apis = {project: self.apis} | {
            target: [
                gcp.projects.Service(
                    f"{name}-{target}-{api.split('.')[0]}",
                    project=target,
                    service=api,
                    disable_on_destroy=False,
                    opts=child,
                )
                for api in ENVIRONMENT_PROJECT_APIS
            ]
            for target in sorted({config.dev_project, config.prod_project} - {project})
        }

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
            attribute_mapping=ATTRIBUTE_MAPPING,
            # Tokens from any other repository are rejected before any binding is even considered.
            attribute_condition=provider_condition(config),
            opts=child,
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
            # The state and the key are the only things here that cannot be rebuilt.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.apis, protect=True),
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

        # --- the previewer: read-only, from any workflow of the repository ---------------------------
        self.previewer = self._account(
            "previewer", project, config.previewer_account_id, "pulumi preview and drift (read-only)"
        )
        self._impersonable_by(
            self.previewer,
            "previewer",
            _principal_set(self.pool.name, f"repository_id/{config.github_repository_id}"),
        )
        previewer = self.previewer.member
        for target in sorted({config.dev_project, config.prod_project}):
            for role in PREVIEWER_PROJECT_ROLES:
                gcp.projects.IAMMember(
                    f"{name}-previewer-{target}-{_role_slug(role)}",
                    project=target,
                    role=role,
                    member=previewer,
                    opts=child,
                )
        gcp.storage.BucketIAMMember(
            f"{name}-previewer-state-viewer",
            bucket=self.state_bucket.name,
            role=STATE_READ_ROLE,
            member=previewer,
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-previewer-state-locks",
            bucket=self.state_bucket.name,
            role=STATE_BUCKET_ROLE,
            member=previewer,
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title="pulumi-locks-only",
                description="The previewer writes nothing but the backend's lock files.",
                expression=self.state_bucket.name.apply(
                    lambda bucket: (
                        f"resource.name.startsWith('projects/_/buckets/{bucket}/objects/{LOCKS_PREFIX}')"
                    )
                ),
            ),
            opts=child,
        )
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-previewer-secrets-decrypter",
            crypto_key_id=self.secrets_key.id,
            role=SECRETS_DECRYPT_ROLE,
            member=previewer,
            opts=child,
        )

        # --- per environment: the runtime account and the deployer that may act as it only ----------
        self.runtime_accounts: dict[str, gcp.serviceaccount.Account] = {}
        self.job_accounts: dict[str, gcp.serviceaccount.Account] = {}
        self.spend_cap_outputs: dict[str, pulumi.Output[str]] = {}
        self.deployers: dict[str, gcp.serviceaccount.Account] = {}
        for environment in ENVIRONMENTS:
            self._environment(environment)

        self.workload_identity_provider = self.provider.name
        self.backend_url = self.state_bucket.name.apply(lambda bucket: f"gs://{bucket}")
        self.secrets_provider = self.secrets_key.id.apply(lambda key: f"gcpkms://{key}")
        self.register_outputs(self.outputs())

    def outputs(self) -> dict[str, Any]:
        """What the repository's Actions variables and each stack's config need (see docs/platform.md)."""
        return {
            "workloadIdentityProvider": self.workload_identity_provider,
            "previewerServiceAccount": self.previewer.email,
            "devDeployerServiceAccount": self.deployers["dev"].email,
            "prodDeployerServiceAccount": self.deployers["prod"].email,
            "devRuntimeServiceAccount": self.runtime_accounts["dev"].email,
            "prodRuntimeServiceAccount": self.runtime_accounts["prod"].email,
            "backendUrl": self.backend_url,
            "secretsProvider": self.secrets_provider,
            **{f"{env}BatchServiceAccount": account.email for env, account in self.job_accounts.items()},
            **self.spend_cap_outputs,
        }

    def _account(self, label: str, project: str, account_id: str, purpose: str) -> gcp.serviceaccount.Account:
        return gcp.serviceaccount.Account(
            f"{self.name}-{label}",
            project=project,
            account_id=account_id,
            display_name=f"Whisper {label}",
            description=f"{purpose}; {self.config.github_repository}; no keys.",
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.project_apis[project]),
        )

    def _impersonable_by(
        self, account: gcp.serviceaccount.Account, label: str, principal: pulumi.Output[str]
    ) -> None:
        gcp.serviceaccount.IAMMember(
            f"{self.name}-{label}-wif",
            service_account_id=account.name,
            role=WORKLOAD_IDENTITY_USER_ROLE,
            member=principal,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _environment(self, environment: str) -> None:
        name, config, child = self.name, self.config, pulumi.ResourceOptions(parent=self)
        target = config.project_of(environment)

        runtime = self._account(
            f"runtime-{environment}",
            target,
            config.runtime_account_id(environment),
            f"runs the {environment} Cloud Run service",
        )
        self.runtime_accounts[environment] = runtime
        for role in RUNTIME_ROLES:
            gcp.projects.IAMMember(
                f"{name}-runtime-{environment}-{_role_slug(role)}",
                project=target,
                role=role,
                member=runtime.member,
                opts=child,
            )

        deployer = self._account(
            f"deployer-{environment}",
            target,
            config.deployer_account_id(environment),
            f"pulumi up/destroy of the {environment} stack",
        )
        self.deployers[environment] = deployer
        principal = (
            _principal_set(self.pool.name, f"environment/{PROD_ENVIRONMENT}")
            if environment == PROD_ENVIRONMENT
            else _principal_set(self.pool.name, f"ref/{DEV_REF}")
        )
        self._impersonable_by(deployer, f"deployer-{environment}", principal)
        for role in DEPLOYER_PROJECT_ROLES:
            gcp.projects.IAMMember(
                f"{name}-deployer-{environment}-{_role_slug(role)}",
                project=target,
                role=role,
                member=deployer.member,
                opts=child,
            )
        # actAs on this environment's runtime account only (it outlives any stack).
        gcp.serviceaccount.IAMMember(
            f"{name}-deployer-{environment}-act-as-runtime",
            service_account_id=runtime.name,
            role=SERVICE_ACCOUNT_USER_ROLE,
            member=deployer.member,
            opts=child,
        )
        secret_manager = gcp.projects.IAMCustomRole(
            f"{name}-deployer-{environment}-secret-manager",
            project=target,
            role_id=f"{SECRET_MANAGER_ROLE_ID}{environment.capitalize()}",
            title=f"Whisper secret manager ({environment})",
            description="Create the API key's secret and grant access to it; cannot read any secret's value.",
            permissions=list(SECRET_MANAGER_PERMISSIONS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.project_apis[target]),
        )
        number = gcp.organizations.get_project_output(project_id=target).number
        gcp.projects.IAMMember(
            f"{name}-deployer-{environment}-secret-manager",
            project=target,
            role=secret_manager.name,
            member=deployer.member,
            condition=gcp.projects.IAMMemberConditionArgs(
                title="service-secrets-only",
                description=f"Only secrets whose id starts with {config.service_name}.",
                expression=number.apply(lambda n: _secrets_only(n, config.service_name)),
            ),
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-deployer-{environment}-state",
            bucket=self.state_bucket.name,
            role=STATE_BUCKET_ROLE,
            member=deployer.member,
            opts=child,
        )
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-deployer-{environment}-secrets",
            crypto_key_id=self.secrets_key.id,
            role=SECRETS_KEY_ROLE,
            member=deployer.member,
            opts=child,
        )
        if config.batch:
            self._batch(environment, target, deployer)
        if config.spend_cap:
            self._spend_cap(environment, target, deployer, runtime)

    def _spend_cap(
        self,
        environment: str,
        target: str,
        deployer: gcp.serviceaccount.Account,
        runtime: gcp.serviceaccount.Account,
    ) -> None:
        """The spend cap's two accounts and its role; the stack grants the role on its service only."""
        name, config, child = self.name, self.config, pulumi.ResourceOptions(parent=self)
        cap = self._account(
            f"spend-cap-{environment}",
            target,
            config.spend_cap_account_id(environment),
            f"caps the {environment} service when its budget is spent",
        )
        pusher = self._account(
            f"spend-cap-push-{environment}",
            target,
            config.spend_cap_push_account_id(environment),
            f"Pub/Sub's identity when it pushes the {environment} budget's notifications to the cap",
        )
        # Never granted on the project: the stack binds it on the one Cloud Run service it caps.
        role = gcp.projects.IAMCustomRole(
            f"{name}-spend-cap-{environment}",
            project=target,
            role_id=f"{SPEND_CAP_ROLE_ID}{environment.capitalize()}",
            title=f"Whisper spend cap ({environment})",
            description="Read and update a Cloud Run service; granted on that service only.",
            permissions=list(SPEND_CAP_PERMISSIONS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.project_apis[target]),
        )
        # The cap's update deploys a revision that runs as the runtime account; the deployer deploys
        # the cap as its account and names the pusher on the subscription.
        for label, account, member in (
            (f"spend-cap-{environment}-act-as-runtime", runtime, cap.member),
            (f"deployer-{environment}-act-as-spend-cap", cap, deployer.member),
            (f"deployer-{environment}-act-as-spend-cap-push", pusher, deployer.member),
        ):
            gcp.serviceaccount.IAMMember(
                f"{name}-{label}",
                service_account_id=account.name,
                role=SERVICE_ACCOUNT_USER_ROLE,
                member=member,
                opts=child,
            )
        self.spend_cap_outputs.update(
            {
                f"{environment}SpendCapServiceAccount": cap.email,
                f"{environment}SpendCapPushServiceAccount": pusher.email,
                f"{environment}SpendCapRole": role.name,
            }
        )

    def _batch(self, environment: str, target: str, deployer: gcp.serviceaccount.Account) -> None:
        """The batch job's account (its bucket roles are the stack's) and what the deployer needs for it."""
        name, config, child = self.name, self.config, pulumi.ResourceOptions(parent=self)
        job = self._account(
            f"job-{environment}",
            target,
            config.job_account_id(environment),
            f"runs the {environment} batch job",
        )
        self.job_accounts[environment] = job
        gcp.serviceaccount.IAMMember(
            f"{name}-deployer-{environment}-act-as-job",
            service_account_id=job.name,
            role=SERVICE_ACCOUNT_USER_ROLE,
            member=deployer.member,
            opts=child,
        )
        # The stack's default bucket names are `<project>-<serviceName>-batch-in/-out`.
        prefix = f"projects/_/buckets/{target}-{config.service_name}-batch-"
        gcp.projects.IAMMember(
            f"{name}-deployer-{environment}-batch-buckets",
            project=target,
            role=BATCH_BUCKETS_ROLE,
            member=deployer.member,
            condition=gcp.projects.IAMMemberConditionArgs(
                title="batch-buckets-only",
                description="Only the stack's batch buckets (and creating them).",
                expression=f"!resource.type.startsWith('storage.googleapis.com/') || "
                f"resource.name.startsWith('{prefix}')",
            ),
            opts=child,
        )


def _secrets_only(project_number: str, prefix: str) -> str:
    """Secret Manager resources must be named `<prefix>…`; the project itself (secrets.create) passes."""
    return (
        "!resource.type.startsWith('secretmanager.googleapis.com/') || "
        f"resource.name.startsWith('projects/{project_number}/secrets/{prefix}')"
    )


def main() -> dict[str, Any]:
    """The bootstrap program (infra/bootstrap/__main__.py): returns and exports its outputs."""
    config = load_config()
    outputs = {**KeylessCi("whisper-ci", config).outputs(), "githubRepository": config.github_repository}
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
