"""What an admin creates once so that GitHub Actions can run Pulumi with no long-lived key.

A Workload Identity Federation pool trusts GitHub's OIDC tokens from one repository, pinned by its
immutable ids. Four identities, each reachable only from where it belongs:

- the previewer (read-only, dev only), from any workflow of the repository: pull-request previews
  and dev's drift check;
- the prod previewer (read-only), only from `drift.yml` on `main`, scheduled or started by hand;
- each deployer, only from its own workflow files on `main`, for the event and GitHub environment
  they run with (prod's carries the `prod` environment, issued after its required reviewers).

The runtime service accounts live here too, so that a stack's destroy-and-recreate neither changes
the service's identity nor loses the deployer's `actAs` on it; the stacks take their e-mails
(`whisper:serviceAccount`). Nobody gets project-wide `iam.serviceAccountUser`. Each environment has
its own versioned state bucket and KMS key (a self-managed backend), so that no dev identity can
read prod's secrets or write prod's state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp

NAMESPACE = "bootstrap"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ENVIRONMENTS = ("dev", "prod")
PROD_ENVIRONMENT = "prod"
MAIN_REF = "refs/heads/main"
ACCOUNT_ID_MAX = 30  # Google's limit on a service account ID
BUCKET_NAME_MAX = 63


@dataclass(frozen=True)
class WorkflowRun:
    """A job allowed to impersonate an identity: its workflow file, event, GitHub environment and ref."""

    workflow: str  # a file under .github/workflows
    event: str  # the token's event_name
    environment: str = ""  # the token's environment; '' for jobs without one
    ref: str = MAIN_REF


# Exactly the jobs of .github/workflows that run as each identity (tests/workflows checks both ways).
DEPLOYER_RUNS: dict[str, tuple[WorkflowRun, ...]] = {
    "dev": (
        WorkflowRun("deploy-dev.yml", "push", "dev"),
        WorkflowRun("destroy.yml", "workflow_dispatch", "dev"),
    ),
    "prod": (
        WorkflowRun("deploy-prod.yml", "workflow_dispatch", "prod"),
        WorkflowRun("destroy.yml", "workflow_dispatch", "prod"),
    ),
}
PROD_PREVIEWER_RUNS = (WorkflowRun("drift.yml", "schedule"), WorkflowRun("drift.yml", "workflow_dispatch"))

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
    # Budgets on this one project only (billing.resourcebudgets.*), not on the whole billing account.
    "roles/billing.projectCostsManager": "the budget scoped to this project",
}
# The API key's secret without roles/secretmanager.admin: a custom role with no `versions.access`,
# limited by a condition to secrets named after the service. It keeps `secrets.setIamPolicy` (the
# stack grants the runtime account access to its secret), so the deployer could grant itself access
# to those secrets, and only those, in an audited IAM change: it cannot read them without one.
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
ROLE_PURPOSE_SECRETS = "The service's secrets and who may read them; reading one needs an IAM change first."
# The budget's topic, its publisher grant and the spend cap's push subscription, instead of
# roles/pubsub.admin: no topics.publish (a forged over-budget message would stop the service) and
# no subscriptions.consume. Publishing needs an audited IAM change on the topic first.
PUBSUB_ROLE_ID = "whisperPubSub"
PUBSUB_PERMISSIONS = (
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
    "pubsub.subscriptions.update",
    "pubsub.topics.attachSubscription",
    "pubsub.topics.create",
    "pubsub.topics.delete",
    "pubsub.topics.get",
    "pubsub.topics.getIamPolicy",
    "pubsub.topics.setIamPolicy",
    "pubsub.topics.update",
)
# With `bootstrap:spendCap`: what the spend cap may do to the service it is granted on, nothing more.
SPEND_CAP_ROLE_ID = "whisperSpendCap"
SPEND_CAP_PERMISSIONS = ("run.services.get", "run.services.update")
# What the running container calls: Cloud Logging and Cloud Monitoring. Image pulls are done by
# Cloud Run's service agent, which reads same-project repositories.
RUNTIME_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
# `pulumi preview --refresh` reads every resource of its stack (Viewer includes project budgets and
# IAM policies, not secret payloads), bills the budget provider's calls to the project
# (`user_project_override` needs serviceusage.services.use) and decrypts its stack's secrets; it
# writes only its lock file. Each previewer does this for one environment only.
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
BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
# Cloud Billing publishes budget notifications as this Google-managed account (infra/budget.py too).
BUDGET_PUBLISHER = "serviceAccount:billing-budget-alert@system.gserviceaccount.com"
BUDGET_APIS = ("pubsub.googleapis.com", "billingbudgets.googleapis.com")


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
    # Each environment's state lives in `<state_bucket>-<environment>`.
    state_bucket: str = ""
    state_bucket_location: str = "US"
    kept_state_versions: int = 20
    # The stacks' `whisper:batch`: a job account per environment and the deployers' bucket role.
    batch: bool = False
    # The stacks' `whisper:spendCap`: the cap's identities and role per environment.
    spend_cap: bool = False
    # The spend cap's budgets, made here by an admin with a role on the billing account (the supported
    # path) instead of by each stack with project-level permissions only (a Preview feature).
    budget_billing_account: str = ""
    budget_amounts: Mapping[str, int] = field(default_factory=dict)
    budget_currency: str = "USD"

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

    def prod_previewer_account_id(self) -> str:
        return f"{self.service_name}-preview-{PROD_ENVIRONMENT}"

    def state_bucket_of(self, environment: str) -> str:
        return f"{self.state_bucket}-{environment}"

    def account_ids(self) -> list[str]:
        """Every service account ID this config creates."""
        per_environment = [self.runtime_account_id, self.deployer_account_id]
        if self.batch:
            per_environment.append(self.job_account_id)
        if self.spend_cap:
            per_environment += [self.spend_cap_account_id, self.spend_cap_push_account_id]
        return [
            self.previewer_account_id,
            self.prod_previewer_account_id(),
            *(account(environment) for environment in ENVIRONMENTS for account in per_environment),
        ]


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
    billing_account = text("budgetBillingAccount")
    amounts: dict[str, int] = {}
    if billing_account:
        check(
            "budgetBillingAccount",
            billing_account,
            bool(BILLING_ACCOUNT.match(billing_account)),
            "a billing account ID",
            "012345-6789AB-CDEF01",
        )
        if spend_cap != "true":
            problems.append(
                f"{NAMESPACE}:budgetBillingAccount makes the spend cap's budgets, so it needs "
                f"{NAMESPACE}:spendCap true — {_fix('spendCap', 'true')}"
            )
        for environment in ENVIRONMENTS:
            key = f"{environment}BudgetAmount"
            amount = text(key)
            check(key, amount, amount.isdigit() and int(amount) > 0, "a whole amount above 0", "1500")
            amounts[environment] = int(amount) if amount.isdigit() else 0
    currency = text("budgetCurrency", "USD")
    check("budgetCurrency", currency, bool(re.fullmatch(r"[A-Z]{3}", currency)), "a currency code", "USD")
    for retired in ("deployerAccountId", "deployProjects", "runtimeServiceAccounts", "billingAccount"):
        if raw.get(retired) is not None:
            problems.append(
                f"{NAMESPACE}:{retired} is no longer read (one deployer per environment; runtime accounts "
                "and project-level budget roles now live here; see docs/platform.md) — "
                f"pulumi config rm {NAMESPACE}:{retired}"
            )

    if problems:
        raise BootstrapConfigError("invalid bootstrap config:\n  - " + "\n  - ".join(problems))
    config = BootstrapConfig(
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
        budget_billing_account=billing_account,
        budget_amounts=amounts,
        budget_currency=currency,
    )
    problems = _derived_name_problems(config)
    if problems:
        raise BootstrapConfigError("invalid bootstrap config:\n  - " + "\n  - ".join(problems))
    return config


def _derived_name_problems(config: BootstrapConfig) -> list[str]:
    """Names built from the config that Google would refuse half-way through `pulumi up`."""
    problems = []
    longest = max(config.account_ids(), key=len)
    if len(longest) > ACCOUNT_ID_MAX:
        fits = len(config.service_name) - (len(longest) - ACCOUNT_ID_MAX)
        problems.append(
            f"{NAMESPACE}:serviceName {config.service_name!r} makes the service account ID {longest!r} "
            f"{len(longest)} characters long, over Google's {ACCOUNT_ID_MAX} — use at most {fits} "
            f"characters (the stacks' whisper:serviceName too): "
            f"{_fix('serviceName', config.service_name[:fits])}"
        )
    longest_bucket = max((config.state_bucket_of(e) for e in ENVIRONMENTS), key=len)
    if len(longest_bucket) > BUCKET_NAME_MAX:
        fits = len(config.state_bucket) - (len(longest_bucket) - BUCKET_NAME_MAX)
        problems.append(
            f"{NAMESPACE}:stateBucket {config.state_bucket!r} makes the state bucket {longest_bucket!r} "
            f"longer than {BUCKET_NAME_MAX} characters — use at most {fits}: "
            f"{_fix('stateBucket', config.state_bucket[:fits].rstrip('-._'))}"
        )
    return problems


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
    "budgetBillingAccount",
    "devBudgetAmount",
    "prodBudgetAmount",
    "budgetCurrency",
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


def _claim(name: str) -> str:
    """A claim, or '' where the token has none (jobs without an environment carry no `environment`)."""
    return f"(has(assertion.{name}) ? assertion.{name} : '')"


# One binding matches one attribute, so the claims a deployer is bound to are joined into one. A ref
# never contains ':' (git forbids it) and neither do event names, so no other combination of claims
# spells the same value.
RUN_CLAIMS = ("job_workflow_ref", "ref", "event_name", "environment")
ATTRIBUTE_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.repository_id": "assertion.repository_id",
    "attribute.repository_owner_id": "assertion.repository_owner_id",
    "attribute.ref": "assertion.ref",
    "attribute.environment": _claim("environment"),
    "attribute.run": " + ':' + ".join(_claim(name) for name in RUN_CLAIMS),
}


def run_attribute(repository: str, run: WorkflowRun) -> str:
    """`attribute.run` of a token from this job: `<job_workflow_ref>:<ref>:<event>:<environment>`."""
    job_workflow_ref = f"{repository}/.github/workflows/{run.workflow}@{run.ref}"
    return ":".join((job_workflow_ref, run.ref, run.event, run.environment))


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

        self.key_ring = gcp.kms.KeyRing(
            f"{name}-keyring", project=project, name="pulumi", location=config.region, opts=after_apis
        )
        self.state_buckets = {env: self._state_bucket(env) for env in ENVIRONMENTS}
        self.secrets_keys = {env: self._secrets_key(env) for env in ENVIRONMENTS}

        # --- the previewers: read-only, one environment each ----------------------------------------
        # Any workflow of the repository (a pull request's code) may preview dev; prod only from the
        # drift check on main, so that no branch can decrypt prod's secrets.
        self.previewer = self._account(
            "previewer", project, config.previewer_account_id, "pulumi preview and drift of dev (read-only)"
        )
        self._impersonable_by(
            self.previewer,
            "previewer",
            [_principal_set(self.pool.name, f"repository_id/{config.github_repository_id}")],
        )
        self._previews("dev", self.previewer, "previewer")
        self.prod_previewer = self._account(
            "previewer-prod",
            project,
            config.prod_previewer_account_id(),
            "drift check of prod from main (read-only)",
        )
        self._impersonable_by(self.prod_previewer, "previewer-prod", self._runs(PROD_PREVIEWER_RUNS))
        self._previews(PROD_ENVIRONMENT, self.prod_previewer, "previewer-prod")

        # --- per environment: the runtime account and the deployer that may act as it only ----------
        self.runtime_accounts: dict[str, gcp.serviceaccount.Account] = {}
        self.job_accounts: dict[str, gcp.serviceaccount.Account] = {}
        self.spend_cap_outputs: dict[str, pulumi.Output[str]] = {}
        self.deployers: dict[str, gcp.serviceaccount.Account] = {}
        for environment in ENVIRONMENTS:
            self._environment(environment)

        self.workload_identity_provider = self.provider.name
        self.backend_urls = {
            env: bucket.name.apply(lambda name: f"gs://{name}") for env, bucket in self.state_buckets.items()
        }
        self.secrets_providers = {
            env: key.id.apply(lambda key_id: f"gcpkms://{key_id}") for env, key in self.secrets_keys.items()
        }
        self.register_outputs(self.outputs())

    def outputs(self) -> dict[str, Any]:
        """What the repository's Actions variables and each stack's config need (see docs/platform.md)."""
        return {
            "workloadIdentityProvider": self.workload_identity_provider,
            "previewerServiceAccount": self.previewer.email,
            "prodPreviewerServiceAccount": self.prod_previewer.email,
            "devDeployerServiceAccount": self.deployers["dev"].email,
            "prodDeployerServiceAccount": self.deployers["prod"].email,
            "devRuntimeServiceAccount": self.runtime_accounts["dev"].email,
            "prodRuntimeServiceAccount": self.runtime_accounts["prod"].email,
            **{f"{env}BackendUrl": url for env, url in self.backend_urls.items()},
            **{f"{env}SecretsProvider": provider for env, provider in self.secrets_providers.items()},
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
        self, account: gcp.serviceaccount.Account, label: str, principals: list[pulumi.Output[str]]
    ) -> None:
        for index, principal in enumerate(principals):
            gcp.serviceaccount.IAMMember(
                f"{self.name}-{label}-wif" + (f"-{index}" if index else ""),
                service_account_id=account.name,
                role=WORKLOAD_IDENTITY_USER_ROLE,
                member=principal,
                opts=pulumi.ResourceOptions(parent=self),
            )

    def _runs(self, runs: tuple[WorkflowRun, ...]) -> list[pulumi.Output[str]]:
        """The principal sets of exactly these jobs (workflow file, ref, event, environment)."""
        repository = self.config.github_repository
        return [_principal_set(self.pool.name, f"run/{run_attribute(repository, run)}") for run in runs]

    def _state_bucket(self, environment: str) -> gcp.storage.Bucket:
        """One environment's Pulumi state: a deployer's objectAdmin on it reaches no other stack."""
        config = self.config
        return gcp.storage.Bucket(
            f"{self.name}-state-{environment}",
            project=config.project,
            name=config.state_bucket_of(environment),
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
            # The state and the keys are the only things here that cannot be rebuilt.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.apis, protect=True),
        )

    def _secrets_key(self, environment: str) -> gcp.kms.CryptoKey:
        """One environment's secrets key: only that environment's identities may use it."""
        return gcp.kms.CryptoKey(
            f"{self.name}-secrets-key-{environment}",
            name=f"pulumi-secrets-{environment}",
            key_ring=self.key_ring.id,
            rotation_period="7776000s",
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )

    def _previews(self, environment: str, previewer: gcp.serviceaccount.Account, label: str) -> None:
        """Read one environment, write only its lock files, decrypt only its secrets."""
        name, child = self.name, pulumi.ResourceOptions(parent=self)
        member, bucket = previewer.member, self.state_buckets[environment]
        for role in PREVIEWER_PROJECT_ROLES:
            gcp.projects.IAMMember(
                f"{name}-{label}-{_role_slug(role)}",
                project=self.config.project_of(environment),
                role=role,
                member=member,
                opts=child,
            )
        gcp.storage.BucketIAMMember(
            f"{name}-{label}-state-viewer",
            bucket=bucket.name,
            role=STATE_READ_ROLE,
            member=member,
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-{label}-state-locks",
            bucket=bucket.name,
            role=STATE_BUCKET_ROLE,
            member=member,
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title="pulumi-locks-only",
                description="The previewer writes nothing but the backend's lock files.",
                expression=bucket.name.apply(
                    lambda bucket_name: (
                        f"resource.name.startsWith('projects/_/buckets/{bucket_name}/objects/{LOCKS_PREFIX}')"
                    )
                ),
            ),
            opts=child,
        )
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-{label}-secrets-decrypter",
            crypto_key_id=self.secrets_keys[environment].id,
            role=SECRETS_DECRYPT_ROLE,
            member=member,
            opts=child,
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
        self._impersonable_by(deployer, f"deployer-{environment}", self._runs(DEPLOYER_RUNS[environment]))
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
            description=ROLE_PURPOSE_SECRETS,
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
        pubsub = gcp.projects.IAMCustomRole(
            f"{name}-deployer-{environment}-pubsub",
            project=target,
            role_id=f"{PUBSUB_ROLE_ID}{environment.capitalize()}",
            title=f"Whisper Pub/Sub ({environment})",
            description="The budget's topic and publisher grant, the spend cap's subscription; no publish.",
            permissions=list(PUBSUB_PERMISSIONS),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.project_apis[target]),
        )
        gcp.projects.IAMMember(
            f"{name}-deployer-{environment}-pubsub",
            project=target,
            role=pubsub.name,
            member=deployer.member,
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-deployer-{environment}-state",
            bucket=self.state_buckets[environment].name,
            role=STATE_BUCKET_ROLE,
            member=deployer.member,
            opts=child,
        )
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-deployer-{environment}-secrets",
            crypto_key_id=self.secrets_keys[environment].id,
            role=SECRETS_KEY_ROLE,
            member=deployer.member,
            opts=child,
        )
        if config.batch:
            self._batch(environment, target, deployer)
        if config.spend_cap:
            self._spend_cap(environment, target, deployer, runtime)
        if config.budget_billing_account:
            self._budget(environment, target)

    def _budget(self, environment: str, target: str) -> None:
        """The spend cap's budget, its Pub/Sub topic and Cloud Billing's publisher grant.

        Made by whoever runs the bootstrap, with a role on the billing account: a budget managed at
        that level is the generally available path, and the topic's grant to Google's billing account
        (which a domain-restricted-sharing policy refuses) is made once, by an admin who can arrange the
        exception, never by CI. The stack's cap subscribes to the topic (whisper:spendCap.budgetTopic).
        """
        name, config = self.name, self.config
        apis = [
            gcp.projects.Service(
                f"{name}-{environment}-budget-{api.split('.')[0]}",
                project=target,
                service=api,
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in BUDGET_APIS
        ]
        topic = gcp.pubsub.Topic(
            f"{name}-budget-topic-{environment}",
            project=target,
            name=f"{config.service_name}-budget-{environment}",
            message_retention_duration="86400s",
            opts=pulumi.ResourceOptions(parent=self, depends_on=apis),
        )
        publisher = gcp.pubsub.TopicIAMMember(
            f"{name}-budget-topic-{environment}-publisher",
            project=target,
            topic=topic.name,
            role="roles/pubsub.publisher",
            member=BUDGET_PUBLISHER,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The Budget API wants a quota project even with an admin's user credentials.
        billing = gcp.Provider(
            f"{name}-billing-{environment}",
            project=target,
            billing_project=target,
            user_project_override=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        number = gcp.organizations.get_project_output(project_id=target).number
        budget = gcp.billing.Budget(
            f"{name}-budget-{environment}",
            billing_account=config.budget_billing_account,
            display_name=f"{config.service_name} {environment} spend cap ({target})",
            amount=gcp.billing.BudgetAmountArgs(
                specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code=config.budget_currency, units=str(config.budget_amounts[environment])
                )
            ),
            budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                projects=[number.apply(lambda n: f"projects/{n}")]
            ),
            threshold_rules=[
                gcp.billing.BudgetThresholdRuleArgs(threshold_percent=1.0, spend_basis="CURRENT_SPEND")
            ],
            all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(
                pubsub_topic=topic.id, schema_version="1.0", disable_default_iam_recipients=False
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=billing, depends_on=[*apis, publisher]),
        )
        self.spend_cap_outputs.update(
            {
                f"{environment}BudgetTopic": topic.id,
                f"{environment}BudgetId": budget.name.apply(
                    lambda budget_name: budget_name.rsplit("/", 1)[-1]
                ),
            }
        )

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
