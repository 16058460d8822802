"""`parse_config`: every section read in turn from the raw values, every mistake collected."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from infra.config.batch import BatchConfig, read_batch
from infra.config.budget import read_budget
from infra.config.environment import read_api_key, read_env
from infra.config.keys import NAMESPACE
from infra.config.observability import check_instance_fits, read_observability
from infra.config.reader import Reader
from infra.config.realtime import read_realtime
from infra.config.service import read_service
from infra.config.spend_cap import SpendCapConfig, read_spend_cap
from infra.config.stack import StackConfig


def parse_config(raw: Mapping[str, str], secret_keys: Collection[str] = ()) -> StackConfig:
    """Validate raw stack config (`{"whisper:region": "us-central1", "gcp:project": ...}`).

    A pure function of the raw values, so that tests and `scripts/plan` check exactly what `pulumi up`
    would. `secret_keys` are the keys set with `--secret` (encrypted in the stack file). Raises one
    `ConfigError` listing every mistake, each with the command that fixes it.
    """
    r = Reader(raw)
    service = read_service(r)
    api_key, api_key_secret = read_api_key(r, secret_keys)
    env = read_env(r)
    budget, budget_skipped_reason = read_budget(r)
    batch = read_batch(r, service.project, service.service_name, service.max_instances, service.gpu_quota)
    observability = read_observability(
        r,
        service.min_instances,
        service.timeout_seconds,
        has_api_key=api_key is not None or api_key_secret is not None,
        public_ingress=service.ingress == "all",
    )
    spend_cap = read_spend_cap(r, service.project, budget, budget_skipped_reason)
    realtime = read_realtime(r, service.concurrency, service.timeout_seconds)
    check_instance_fits(r, service.cpu, service.memory, observability)
    _ci_identities(r, service, batch, spend_cap)
    r.check()
    return replace(
        service,
        api_key=api_key,
        api_key_secret=api_key_secret,
        env=env,
        budget=budget,
        budget_skipped_reason=budget_skipped_reason,
        batch=batch,
        observability=observability,
        spend_cap=spend_cap,
        realtime=realtime,
    )


def _ci_identities(
    r: Reader, service: StackConfig, batch: BatchConfig | None, spend_cap: SpendCapConfig | None
) -> None:
    """A stack deployed by CI (the bootstrap's runtime account) cannot create service accounts or roles.

    Without the bootstrap's accounts for the job and the cap, such a stack would build and push its
    image and then fail with a 403 creating them: refuse it before anything is created.
    """
    if service.service_account is None:
        return
    ci = f"{NAMESPACE}:serviceAccount is set (a stack deployed by the bootstrap's CI deployer)"
    if batch is not None and batch.service_account is None:
        r.fail(
            f"{NAMESPACE}:batch needs the bootstrap's job account when {ci}, which may not create one — "
            f"set bootstrap:batch true, run pulumi up in infra/bootstrap, then pulumi config set --path "
            f"'{NAMESPACE}:batch.serviceAccount' <its <env>BatchServiceAccount output> (or deploy as a "
            f"project owner without {NAMESPACE}:serviceAccount)"
        )
    if spend_cap is not None and spend_cap.service_account is None:
        r.fail(
            f"{NAMESPACE}:spendCap needs the bootstrap's cap accounts and role when {ci}, which may not "
            "create them — set bootstrap:spendCap true, run pulumi up in infra/bootstrap, then set "
            f"{NAMESPACE}:spendCap.serviceAccount, .pushServiceAccount and .role to its "
            f"<env>SpendCapServiceAccount, <env>SpendCapPushServiceAccount and <env>SpendCapRole outputs "
            f"(pulumi config set --path '{NAMESPACE}:spendCap.serviceAccount' ...)"
        )
