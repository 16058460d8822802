"""The service's own keys (`whisper:region`, `whisper:cpu`, ...): where it runs, on what, how it scales,
who may call it and how its images are kept."""

from __future__ import annotations

import re

from infra.config.cloud_run import (
    GPU_CPU_CHOICES,
    GPU_MIN_MEMORY_GIB,
    GPU_REGIONS,
    INGRESS_VALUES,
    MAX_CONCURRENCY,
    MAX_INSTANCES_CAP,
    MAX_MEMORY_GIB,
    MAX_MEMORY_GIB_PER_CPU,
    MAX_TIMEOUT_SECONDS,
    ZONAL_REDUNDANCY_REGIONS,
    memory_gib,
)
from infra.config.keys import KEYS, NAMESPACE, PROJECT_KEY
from infra.config.reader import Reader, fix
from infra.config.stack import DEFAULTS, StackConfig
from infra.shared import contract

INVOKERS_EXAMPLE = "'[\"user:you@example.com\"]'"
_SERVICE_NAME = re.compile(r"^[a-z][-a-z0-9]{0,24}[a-z0-9]$")
_PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def read_service(r: Reader) -> StackConfig:
    """The plain keys, in the order their problems are reported; the objects are read by their modules."""
    project = _project(r)
    r.unknown_keys(KEYS)
    gpu_type, region = _gpu_and_region(r)
    service_name = r.string("serviceName", DEFAULTS.service_name)
    if not _SERVICE_NAME.match(service_name):
        r.fail(
            f"{NAMESPACE}:serviceName {service_name!r} must be 2-26 lowercase letters, digits or "
            f"hyphens, starting with a letter (it also names the registry and service account) — "
            f"{fix('serviceName', DEFAULTS.service_name)}"
        )
    engine = r.choice("engine", DEFAULTS.engine, contract.ENGINES)
    model = r.string("model", DEFAULTS.model)
    if not model.strip() or any(ch.isspace() for ch in model):
        r.fail(
            f"{NAMESPACE}:model {model!r} must be a model name such as {DEFAULTS.model} — "
            f"{fix('model', DEFAULTS.model)}"
        )
    model_revision = _model_revision(r)
    cpu, memory = _cpu_and_memory(r)
    min_instances, max_instances = _instances(r)
    concurrency = r.integer("concurrency", DEFAULTS.concurrency)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        r.fail(
            f"{NAMESPACE}:concurrency {concurrency} must be between 1 and {MAX_CONCURRENCY} "
            f"(requests one instance admits, running + queued) — {fix('concurrency', DEFAULTS.concurrency)}"
        )
    timeout_seconds = r.integer("timeoutSeconds", DEFAULTS.timeout_seconds)
    if not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        r.fail(
            f"{NAMESPACE}:timeoutSeconds {timeout_seconds} is outside Cloud Run's 1..{MAX_TIMEOUT_SECONDS} s"
            f" — {fix('timeoutSeconds', DEFAULTS.timeout_seconds)}"
        )
    zonal_redundancy = r.boolean("zonalRedundancy", DEFAULTS.zonal_redundancy)
    if (
        zonal_redundancy
        and region in GPU_REGIONS.get(gpu_type, ())
        and region not in ZONAL_REDUNDANCY_REGIONS
    ):
        r.fail(
            f"{NAMESPACE}:zonalRedundancy is not offered for GPUs in {region} (Google lists it in "
            f"{', '.join(ZONAL_REDUNDANCY_REGIONS)}) — {fix('zonalRedundancy', 'false')}"
        )
    gpu_quota = _gpu_quota(r, max_instances)
    public = r.boolean("public", DEFAULTS.public)
    invokers = _invokers(r, public)
    ingress = r.choice("ingress", DEFAULTS.ingress, INGRESS_VALUES)
    deletion_protection = r.boolean("deletionProtection", DEFAULTS.deletion_protection)
    keep_images = r.integer("keepImages", DEFAULTS.keep_images)
    if keep_images < 1:
        r.fail(
            f"{NAMESPACE}:keepImages {keep_images} must be at least 1 (the image in use) — "
            f"{fix('keepImages', DEFAULTS.keep_images)}"
        )
    untagged_retention_days = r.integer("untaggedRetentionDays", DEFAULTS.untagged_retention_days)
    if untagged_retention_days < 1:
        r.fail(
            f"{NAMESPACE}:untaggedRetentionDays {untagged_retention_days} must be at least 1 — "
            f"{fix('untaggedRetentionDays', DEFAULTS.untagged_retention_days)}"
        )
    service_account = r.string("serviceAccount", "") or None
    r.service_account(
        f"{NAMESPACE}:serviceAccount",
        service_account,
        project,
        fix("serviceAccount", f"whisper-run-dev@{project}.iam.gserviceaccount.com"),
        note=" (the bootstrap's devRuntimeServiceAccount / prodRuntimeServiceAccount output)",
    )
    return StackConfig(
        project=project,
        region=region,
        service_name=service_name,
        engine=engine,
        model=model,
        model_revision=model_revision,
        gpu_type=gpu_type,
        cpu=cpu,
        memory=memory,
        min_instances=min_instances,
        max_instances=max_instances,
        concurrency=concurrency,
        timeout_seconds=timeout_seconds,
        zonal_redundancy=zonal_redundancy,
        gpu_quota=gpu_quota,
        invokers=invokers,
        public=public,
        ingress=ingress,
        deletion_protection=deletion_protection,
        keep_images=keep_images,
        untagged_retention_days=untagged_retention_days,
        service_account=service_account,
    )


def _project(r: Reader) -> str:
    project = r.raw.get(PROJECT_KEY) or ""
    if not project:
        r.fail(f"{PROJECT_KEY} is not set — {fix(PROJECT_KEY, 'my-project-id')}")
    elif not _PROJECT_ID.match(project):
        r.fail(
            f"{PROJECT_KEY} {project!r} is not a project ID (not the name or number) — "
            f"{fix(PROJECT_KEY, 'my-project-id')}"
        )
    return project


def _gpu_and_region(r: Reader) -> tuple[str, str]:
    gpu_type = r.string("gpuType", DEFAULTS.gpu_type)
    if gpu_type not in GPU_REGIONS:
        r.fail(
            f"{NAMESPACE}:gpuType {gpu_type!r} is not supported; use one of {', '.join(GPU_REGIONS)} — "
            f"{fix('gpuType', DEFAULTS.gpu_type)}"
        )
    gpu_regions = GPU_REGIONS.get(gpu_type, GPU_REGIONS[DEFAULTS.gpu_type])
    region = r.string("region", DEFAULTS.region)
    if region not in gpu_regions:
        r.fail(
            f"{NAMESPACE}:region {region!r} has no Cloud Run {gpu_type} GPUs; use one of "
            f"{', '.join(gpu_regions)} — {fix('region', gpu_regions[0])}"
        )
    return gpu_type, region


def _model_revision(r: Reader) -> str:
    """Empty, or a full commit id: a branch or tag such as `main` can change what the image bakes."""
    revision = r.string("modelRevision", DEFAULTS.model_revision)
    if revision and not _COMMIT.match(revision):
        r.fail(
            f"{NAMESPACE}:modelRevision {revision!r} is not a commit id (40 lowercase hex digits); a branch "
            "or tag can move — use the commit of the model's Hugging Face repository, or remove the key to "
            f"bake the pinned one — {fix('modelRevision', '<40-hex commit>')}"
        )
    return revision


def _cpu_and_memory(r: Reader) -> tuple[int, str]:
    """A GPU instance's vCPU choices, and memory within Cloud Run's range and 4 GiB per vCPU."""
    cpu = r.integer("cpu", DEFAULTS.cpu)
    if cpu not in GPU_CPU_CHOICES:
        choices = ", ".join(map(str, GPU_CPU_CHOICES))
        r.fail(
            f"{NAMESPACE}:cpu {cpu} is not allowed with a GPU; Cloud Run needs at least 4 vCPU "
            f"(one of {choices}) — {fix('cpu', DEFAULTS.cpu)}"
        )
    memory = r.string("memory", DEFAULTS.memory)
    gib = memory_gib(memory)
    if gib is None:
        r.fail(
            f"{NAMESPACE}:memory {memory!r} is not a size like 16Gi or 20480Mi — "
            f"{fix('memory', DEFAULTS.memory)}"
        )
    elif not GPU_MIN_MEMORY_GIB <= gib <= MAX_MEMORY_GIB:
        r.fail(
            f"{NAMESPACE}:memory {memory} is out of range; Cloud Run with a GPU needs "
            f"{GPU_MIN_MEMORY_GIB}Gi to {MAX_MEMORY_GIB}Gi — {fix('memory', DEFAULTS.memory)}"
        )
    elif cpu in GPU_CPU_CHOICES and gib > cpu * MAX_MEMORY_GIB_PER_CPU:
        needed_cpu = next(choice for choice in GPU_CPU_CHOICES if gib <= choice * MAX_MEMORY_GIB_PER_CPU)
        r.fail(
            f"{NAMESPACE}:memory {memory} is more than Cloud Run allows with {cpu} vCPU "
            f"({cpu * MAX_MEMORY_GIB_PER_CPU}Gi, 4 GiB per vCPU) — {fix('cpu', needed_cpu)} "
            f"(or {fix('memory', f'{cpu * MAX_MEMORY_GIB_PER_CPU}Gi')})"
        )
    return cpu, memory


def _instances(r: Reader) -> tuple[int, int]:
    min_instances = r.integer("minInstances", DEFAULTS.min_instances)
    max_instances = r.integer("maxInstances", DEFAULTS.max_instances)
    if min_instances < 0:
        r.fail(
            f"{NAMESPACE}:minInstances {min_instances} is negative — "
            f"{fix('minInstances', DEFAULTS.min_instances)}"
        )
    if not 1 <= max_instances <= MAX_INSTANCES_CAP:
        r.fail(
            f"{NAMESPACE}:maxInstances {max_instances} must be between 1 and {MAX_INSTANCES_CAP} "
            f"(and within your GPU quota) — {fix('maxInstances', DEFAULTS.max_instances)}"
        )
    if max_instances < min_instances:
        r.fail(
            f"{NAMESPACE}:maxInstances {max_instances} is below minInstances {min_instances} — "
            f"{fix('maxInstances', max(min_instances, 1))}"
        )
    return min_instances, max_instances


def _gpu_quota(r: Reader, max_instances: int) -> int | None:
    """The stated regional L4 quota: the service must fit it alone, and with the batch job (read_batch)."""
    text = r.value("gpuQuota")
    if text is None or text == "":
        return None
    quota = r.integer("gpuQuota", 0)
    if quota < 1:
        r.fail(
            f"{NAMESPACE}:gpuQuota {text!r} must be the project's L4 quota in the region, at least 1 — "
            f"{fix('gpuQuota', max(max_instances, 1))} (or pulumi config rm {NAMESPACE}:gpuQuota)"
        )
        return None
    if max_instances > quota:
        r.fail(
            f"{NAMESPACE}:maxInstances {max_instances} exceeds {NAMESPACE}:gpuQuota {quota}: Cloud Run "
            f"could not start that many L4 instances — {fix('maxInstances', quota)} (or request more quota)"
        )
    return quota


def _invokers(r: Reader, public: bool) -> tuple[str, ...]:
    key = f"{NAMESPACE}:invokers"
    invokers = tuple(r.json("invokers", list(DEFAULTS.invokers), list, INVOKERS_EXAMPLE))
    r.members(
        key,
        invokers,
        fix=fix("invokers", INVOKERS_EXAMPLE),
        public=f"; a public service is opted into explicitly — pulumi config set {NAMESPACE}:public true "
        f"(and remove it from {key})",
        like=" like user:you@example.com, group:..., serviceAccount:... or domain:example.com",
    )
    if public and invokers:
        r.fail(
            f"{NAMESPACE}:public is true together with {key}; a public service needs no "
            f"invoker list — pulumi config rm {key} (or pulumi config set {NAMESPACE}:public false)"
        )
    return invokers
