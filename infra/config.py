"""The whole stack configuration, read once and validated before any resource is declared.

Every mistake is collected (not only the first) and reported in one `ConfigError` whose lines
name the key, what is wrong and the command that fixes it. `parse_config` is a pure function of
the raw values, so that tests and `scripts/plan` check exactly what `pulumi up` would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi

from infra.shared import contract

NAMESPACE = "whisper"
PROJECT_KEY = "gcp:project"

# Cloud Run GPU facts (docs/deploy.md, Google's Cloud Run GPU documentation).
GPU_REGIONS: Mapping[str, tuple[str, ...]] = {
    "nvidia-l4": (
        "us-central1",
        "europe-west1",
        "europe-west4",
        "asia-southeast1",
        "us-east4",
        "asia-south1",
    ),
}
GPU_CPU_CHOICES = (4, 6, 8)
GPU_MIN_MEMORY_GIB = 16
# Cloud Run's CPU/memory table: at most 4 GiB per vCPU (4 vCPU → 16 GiB, 6 → 24 GiB, 8 → 32 GiB).
MAX_MEMORY_GIB_PER_CPU = 4
MAX_MEMORY_GIB = 32
MAX_CPU = 8
# The metrics sidecar's limits (infra/observability.py). Cloud Run counts them in the instance: its
# tables cap an instance, not a container, at 8 vCPU / 32 GiB, and Google's sidecar pages give no
# separate allowance, so the API's share plus these must fit (checked in `_check_instance_fits`).
# 1 vCPU is the least a container gets with instance-based billing (GPU services need it): Cloud
# Run's CPU page allows under 1 vCPU only with request-based billing.
METRICS_SIDECAR_CPU = 1
METRICS_SIDECAR_MEMORY = "512Mi"
MIN_API_KEY_CHARS = 16  # a guessable key is no key
MAX_BUDGET_EMAILS = 5  # the Budget API's limit on monitoring notification channels per budget
MAX_INSTANCES_CAP = 100  # a typo guard: each GPU instance bills ~$0.7/h, quotas are usually single digits
MAX_CONCURRENCY = 1000  # Cloud Run's own limit per instance
MAX_TIMEOUT_SECONDS = 3600  # Cloud Run's own limit
MAX_THRESHOLD = 5.0  # 500 %: thresholds are fractions, a 50 meant as "50 %" is caught here
INGRESS_VALUES: Mapping[str, str] = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
MEMBER_PREFIXES = ("user:", "group:", "serviceAccount:", "domain:", "principal:", "principalSet:")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

# Env vars the program sets from typed keys; `whisper:env` may not override them.
MANAGED_ENV = frozenset(
    {
        contract.ENV_ENGINE,
        contract.ENV_MODEL,
        contract.ENV_MODEL_DIR,
        contract.ENV_DEVICE,
        contract.ENV_QUEUE_SIZE,
        contract.ENV_REQUEST_TIMEOUT,
    }
)

# The service's API key settings: the program sets the file from whisper:apiKey / apiKeySecret.
API_KEY_ENV = frozenset({contract.ENV_API_KEY, contract.ENV_API_KEY_FILE})

INVOKERS_EXAMPLE = "'[\"user:you@example.com\"]'"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SERVICE_NAME = re.compile(r"^[a-z][-a-z0-9]{0,24}[a-z0-9]$")
_PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MEMORY = re.compile(r"^(\d+)(Gi|Mi)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SERVICE_ACCOUNT = re.compile(
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)

# Every key this program reads under `whisper:`; anything else in the stack file is a typo.
KEYS = (
    "region",
    "serviceName",
    "engine",
    "model",
    "modelRevision",
    "gpuType",
    "cpu",
    "memory",
    "minInstances",
    "maxInstances",
    "concurrency",
    "timeoutSeconds",
    "zonalRedundancy",
    "invokers",
    "public",
    "ingress",
    "deletionProtection",
    "keepImages",
    "untaggedRetentionDays",
    "budget",
    "env",
    "serviceAccount",
    "apiKey",
    "apiKeySecret",
    "batch",
    "observability",
    "spendCap",
)
API_KEY = f"{NAMESPACE}:apiKey"
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# The `gcp:` settings an explicit provider must be handed again: key → (argument, is a credential).
FORWARDED_PROVIDER_SETTINGS = {
    "impersonateServiceAccount": ("impersonate_service_account", False),
    "credentials": ("credentials", True),
    "accessToken": ("access_token", True),
}
BUDGET_KEYS = ("billingAccount", "amount", "currency", "thresholds", "forecastThresholds", "emails")


class ConfigError(ValueError):
    """The stack configuration is invalid; `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the stack configuration:\n{lines}")


@dataclass(frozen=True)
class BudgetConfig:
    """A monthly budget on the project's spend, alerting by email."""

    billing_account: str
    amount: int
    currency: str
    thresholds: tuple[float, ...]
    forecast_thresholds: tuple[float, ...]
    emails: tuple[str, ...]


@dataclass(frozen=True)
class StackConfig:
    """The validated stack settings; see docs/deploy.md for each key's meaning and default."""

    project: str
    region: str = "us-central1"
    service_name: str = "whisper"
    engine: str = contract.DEFAULT_ENGINE
    model: str = contract.DEFAULT_IMAGE_MODEL
    # A commit of the model's Hugging Face repository; empty: the one service/fetch_model.py pins.
    model_revision: str = ""
    gpu_type: str = "nvidia-l4"
    cpu: int = 4
    memory: str = "16Gi"
    min_instances: int = 0
    max_instances: int = 1
    concurrency: int = 4
    timeout_seconds: int = 300
    zonal_redundancy: bool = False
    invokers: tuple[str, ...] = ()
    public: bool = False
    ingress: str = "all"
    deletion_protection: bool = True
    keep_images: int = 5
    untagged_retention_days: int = 7
    budget: BudgetConfig | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # The bootstrap's runtime account (e-mail); None: the stack creates `<serviceName>-run` itself.
    service_account: str | None = None
    # The API key: a stack secret the program stores in Secret Manager, or an existing secret's id.
    api_key: str | None = field(default=None, repr=False)
    api_key_secret: str | None = None
    observability: ObservabilityConfig = field(default_factory=lambda: ObservabilityConfig())
    spend_cap: SpendCapConfig | None = None
    # Why the budget was skipped, for a warning at deploy time (None when there is a budget).
    budget_skipped_reason: str | None = None
    batch: BatchConfig | None = None  # None: whisper:batch absent or enabled: false

    @property
    def protect(self) -> bool:
        """Pulumi `protect` follows deletion protection: prod cannot be destroyed by accident."""
        return self.deletion_protection

    @property
    def has_api_key(self) -> bool:
        return self.api_key is not None or self.api_key_secret is not None

    @property
    def ingress_value(self) -> str:
        return INGRESS_VALUES[self.ingress]

    @property
    def invoker_members(self) -> tuple[str, ...]:
        """The members granted roles/run.invoker: the list, or allUsers only when public."""
        return ("allUsers",) if self.public else self.invokers


T = TypeVar("T")


def _fix(key: str, example: str) -> str:
    ns_key = key if ":" in key else f"{NAMESPACE}:{key}"
    return f"pulumi config set {ns_key} {example}"


class _Reader:
    """Parses raw Pulumi config strings, collecting every problem instead of stopping at one."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def value(self, key: str) -> str | None:
        return self.raw.get(f"{NAMESPACE}:{key}")

    def _typed(self, key: str, default: T, parse: Callable[[str], T], kind: str, example: str) -> T:
        text = self.value(key)
        if text is None or text == "":
            return default
        try:
            return parse(text)
        except (ValueError, TypeError):
            self.fail(f"{NAMESPACE}:{key} {text!r} is not {kind} — {_fix(key, example)}")
            return default

    def string(self, key: str, default: str) -> str:
        return self._typed(key, default, str, "a string", default)

    def integer(self, key: str, default: int) -> int:
        return self._typed(key, default, _parse_int, "a whole number", str(default))

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, default, _parse_bool, "true or false", str(default).lower())

    def json(self, key: str, default: Any, kind: type, example: str) -> Any:
        def parse(text: str) -> Any:
            value = json.loads(text)
            if not isinstance(value, kind):
                raise TypeError(kind)
            return value

        return self._typed(key, default, parse, f"a {kind.__name__} (JSON or YAML)", example)


def _parse_int(text: str) -> int:
    number = float(text)  # YAML numbers may arrive as "4.0"
    if not number.is_integer():
        raise ValueError(text)
    return int(number)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1"}:
        return True
    if lowered in {"false", "no", "0"}:
        return False
    raise ValueError(text)


def _parse_model_revision(r: _Reader) -> str:
    """Empty, or a full commit id: a branch or tag such as `main` can change what the image bakes."""
    revision = r.string("modelRevision", "")
    if revision and not _COMMIT.match(revision):
        r.fail(
            f"{NAMESPACE}:modelRevision {revision!r} is not a commit id (40 lowercase hex digits); a branch "
            "or tag can move — use the commit of the model's Hugging Face repository, or remove the key to "
            f"bake the pinned one — {_fix('modelRevision', '<40-hex commit>')}"
        )
    return revision


def memory_gib(memory: str) -> float | None:
    """'16Gi' → 16.0, '20480Mi' → 20.0; None when it is not a Kubernetes-style quantity."""
    match = _MEMORY.match(memory)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    return amount if unit == "Gi" else amount / 1024


def parse_config(raw: Mapping[str, str], secret_keys: Collection[str] = ()) -> StackConfig:
    """Validate raw stack config (`{"whisper:region": "us-central1", "gcp:project": ...}`).

    `secret_keys` are the keys set with `--secret` (encrypted in the stack file).
    """
    r = _Reader(raw)

    project = raw.get(PROJECT_KEY) or ""
    if not project:
        r.fail(f"{PROJECT_KEY} is not set — {_fix(PROJECT_KEY, 'my-project-id')}")
    elif not _PROJECT_ID.match(project):
        r.fail(
            f"{PROJECT_KEY} {project!r} is not a project ID (not the name or number) — "
            f"{_fix(PROJECT_KEY, 'my-project-id')}"
        )

    for key in sorted(raw):
        if key.startswith(f"{NAMESPACE}:") and key.split(":", 1)[1] not in KEYS:
            r.fail(f"{key} is not a known key (known: {', '.join(KEYS)}) — pulumi config rm {key}")

    gpu_type = r.string("gpuType", "nvidia-l4")
    if gpu_type not in GPU_REGIONS:
        r.fail(
            f"{NAMESPACE}:gpuType {gpu_type!r} is not supported; use one of {', '.join(GPU_REGIONS)} — "
            f"{_fix('gpuType', 'nvidia-l4')}"
        )
    gpu_regions = GPU_REGIONS.get(gpu_type, GPU_REGIONS["nvidia-l4"])

    region = r.string("region", "us-central1")
    if region not in gpu_regions:
        r.fail(
            f"{NAMESPACE}:region {region!r} has no Cloud Run {gpu_type} GPUs; use one of "
            f"{', '.join(gpu_regions)} — {_fix('region', gpu_regions[0])}"
        )

    service_name = r.string("serviceName", "whisper")
    if not _SERVICE_NAME.match(service_name):
        r.fail(
            f"{NAMESPACE}:serviceName {service_name!r} must be 2-26 lowercase letters, digits or "
            f"hyphens, starting with a letter (it also names the registry and service account) — "
            f"{_fix('serviceName', 'whisper')}"
        )

    engine = r.string("engine", contract.DEFAULT_ENGINE)
    if engine not in contract.ENGINES:
        r.fail(
            f"{NAMESPACE}:engine {engine!r} is unknown; use one of {', '.join(contract.ENGINES)} — "
            f"{_fix('engine', contract.DEFAULT_ENGINE)}"
        )

    model = r.string("model", contract.DEFAULT_IMAGE_MODEL)
    if not model.strip() or any(ch.isspace() for ch in model):
        r.fail(
            f"{NAMESPACE}:model {model!r} must be a model name such as {contract.DEFAULT_IMAGE_MODEL} — "
            f"{_fix('model', contract.DEFAULT_IMAGE_MODEL)}"
        )

    model_revision = _parse_model_revision(r)

    cpu = r.integer("cpu", 4)
    if cpu not in GPU_CPU_CHOICES:
        choices = ", ".join(map(str, GPU_CPU_CHOICES))
        r.fail(
            f"{NAMESPACE}:cpu {cpu} is not allowed with a GPU; Cloud Run needs at least 4 vCPU "
            f"(one of {choices}) — {_fix('cpu', '4')}"
        )

    memory = r.string("memory", "16Gi")
    gib = memory_gib(memory)
    if gib is None:
        r.fail(f"{NAMESPACE}:memory {memory!r} is not a size like 16Gi or 20480Mi — {_fix('memory', '16Gi')}")
    elif not GPU_MIN_MEMORY_GIB <= gib <= MAX_MEMORY_GIB:
        r.fail(
            f"{NAMESPACE}:memory {memory} is out of range; Cloud Run with a GPU needs "
            f"{GPU_MIN_MEMORY_GIB}Gi to {MAX_MEMORY_GIB}Gi — {_fix('memory', '16Gi')}"
        )
    elif cpu in GPU_CPU_CHOICES and gib > cpu * MAX_MEMORY_GIB_PER_CPU:
        needed_cpu = next(choice for choice in GPU_CPU_CHOICES if gib <= choice * MAX_MEMORY_GIB_PER_CPU)
        r.fail(
            f"{NAMESPACE}:memory {memory} is more than Cloud Run allows with {cpu} vCPU "
            f"({cpu * MAX_MEMORY_GIB_PER_CPU}Gi, 4 GiB per vCPU) — {_fix('cpu', str(needed_cpu))} "
            f"(or {_fix('memory', f'{cpu * MAX_MEMORY_GIB_PER_CPU}Gi')})"
        )

    min_instances = r.integer("minInstances", 0)
    max_instances = r.integer("maxInstances", 1)
    if min_instances < 0:
        r.fail(f"{NAMESPACE}:minInstances {min_instances} is negative — {_fix('minInstances', '0')}")
    if not 1 <= max_instances <= MAX_INSTANCES_CAP:
        r.fail(
            f"{NAMESPACE}:maxInstances {max_instances} must be between 1 and {MAX_INSTANCES_CAP} "
            f"(and within your GPU quota) — {_fix('maxInstances', '1')}"
        )
    if max_instances < min_instances:
        r.fail(
            f"{NAMESPACE}:maxInstances {max_instances} is below minInstances {min_instances} — "
            f"{_fix('maxInstances', str(max(min_instances, 1)))}"
        )

    concurrency = r.integer("concurrency", 4)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        r.fail(
            f"{NAMESPACE}:concurrency {concurrency} must be between 1 and {MAX_CONCURRENCY} "
            f"(requests one instance admits, running + queued) — {_fix('concurrency', '4')}"
        )

    timeout_seconds = r.integer("timeoutSeconds", 300)
    if not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        r.fail(
            f"{NAMESPACE}:timeoutSeconds {timeout_seconds} is outside Cloud Run's 1..{MAX_TIMEOUT_SECONDS} s"
            f" — {_fix('timeoutSeconds', '300')}"
        )

    zonal_redundancy = r.boolean("zonalRedundancy", False)
    public = r.boolean("public", False)

    invokers = tuple(r.json("invokers", [], list, INVOKERS_EXAMPLE))
    for member in invokers:
        _check_member(r, member)
    if public and invokers:
        r.fail(
            f"{NAMESPACE}:public is true together with {NAMESPACE}:invokers; a public service needs no "
            f"invoker list — pulumi config rm {NAMESPACE}:invokers (or pulumi config set "
            f"{NAMESPACE}:public false)"
        )

    ingress = r.string("ingress", "all")
    if ingress not in INGRESS_VALUES:
        r.fail(
            f"{NAMESPACE}:ingress {ingress!r} is unknown; use one of {', '.join(INGRESS_VALUES)} — "
            f"{_fix('ingress', 'all')}"
        )

    deletion_protection = r.boolean("deletionProtection", True)

    keep_images = r.integer("keepImages", 5)
    if keep_images < 1:
        r.fail(
            f"{NAMESPACE}:keepImages {keep_images} must be at least 1 (the image in use) — "
            f"{_fix('keepImages', '5')}"
        )
    untagged_retention_days = r.integer("untaggedRetentionDays", 7)
    if untagged_retention_days < 1:
        r.fail(
            f"{NAMESPACE}:untaggedRetentionDays {untagged_retention_days} must be at least 1 — "
            f"{_fix('untaggedRetentionDays', '7')}"
        )

    service_account = r.string("serviceAccount", "") or None
    in_project = f"@{project}.iam.gserviceaccount.com"
    if service_account is not None and (
        not _SERVICE_ACCOUNT.match(service_account) or not service_account.endswith(in_project)
    ):
        r.fail(
            f"{NAMESPACE}:serviceAccount {service_account!r} must be a service account e-mail in {project} "
            "(the bootstrap's devRuntimeServiceAccount / prodRuntimeServiceAccount output) — "
            f"{_fix('serviceAccount', 'whisper-run-dev' + in_project)}"
        )

    api_key, api_key_secret = _parse_api_key(r, secret_keys)
    env = _parse_env(r)
    budget, budget_skipped_reason = _parse_budget(r)
    batch = _parse_batch(r, project, service_name, max_instances)
    observability = _parse_observability(
        r,
        min_instances,
        timeout_seconds,
        has_api_key=api_key is not None or api_key_secret is not None,
        public_ingress=ingress == "all",
    )
    spend_cap = _parse_spend_cap(r, project, budget, budget_skipped_reason)
    _check_instance_fits(r, cpu, memory, observability)

    if r.problems:
        raise ConfigError(r.problems)
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
        invokers=invokers,
        public=public,
        ingress=ingress,
        deletion_protection=deletion_protection,
        keep_images=keep_images,
        untagged_retention_days=untagged_retention_days,
        budget=budget,
        env=env,
        service_account=service_account,
        api_key=api_key,
        api_key_secret=api_key_secret,
        observability=observability,
        spend_cap=spend_cap,
        budget_skipped_reason=budget_skipped_reason,
        batch=batch,
    )


def _check_instance_fits(r: _Reader, cpu: int, memory: str, observability: ObservabilityConfig) -> None:
    """The API container plus the metrics sidecar must fit in one instance's 8 vCPU / 32 GiB."""
    gib = memory_gib(memory)
    if not observability.metrics or cpu not in GPU_CPU_CHOICES or gib is None:
        return
    if gib > min(MAX_MEMORY_GIB, cpu * MAX_MEMORY_GIB_PER_CPU):
        return  # already reported against whisper:memory
    sidecar_gib = memory_gib(METRICS_SIDECAR_MEMORY) or 0.0
    if cpu + METRICS_SIDECAR_CPU <= MAX_CPU and gib + sidecar_gib <= MAX_MEMORY_GIB:
        return
    fit_cpu = max(choice for choice in GPU_CPU_CHOICES if choice + METRICS_SIDECAR_CPU <= MAX_CPU)
    fit_gib = min(fit_cpu * MAX_MEMORY_GIB_PER_CPU, int(MAX_MEMORY_GIB - sidecar_gib))
    fixes = [_fix("cpu", str(fit_cpu))] if cpu > fit_cpu else []
    fixes += [_fix("memory", f"{fit_gib}Gi")] if gib > fit_gib else []
    r.fail(
        f"{NAMESPACE}:cpu {cpu} and {NAMESPACE}:memory {memory} plus the metrics sidecar "
        f"({METRICS_SIDECAR_CPU} vCPU, {METRICS_SIDECAR_MEMORY}) come to {cpu + METRICS_SIDECAR_CPU} vCPU "
        f"/ {gib + sidecar_gib:g}Gi, more than one Cloud Run instance holds ({MAX_CPU} vCPU, "
        f"{MAX_MEMORY_GIB}Gi for all its containers) — {' && '.join(fixes)} (or, without metrics, "
        f"{_observability_fix('metrics', 'false')})"
    )


def _check_member(r: _Reader, member: Any) -> None:
    key = f"{NAMESPACE}:invokers"
    if member in PUBLIC_MEMBERS:
        r.fail(
            f"{key} contains {member!r}; a public service is opted into explicitly — "
            f"pulumi config set {NAMESPACE}:public true (and remove it from {key})"
        )
        return
    if not isinstance(member, str) or not member.startswith(MEMBER_PREFIXES):
        r.fail(
            f"{key} entry {member!r} is not an IAM member like user:you@example.com, group:..., "
            f"serviceAccount:... or domain:example.com — {_fix('invokers', INVOKERS_EXAMPLE)}"
        )
        return
    kind, _, identity = member.partition(":")
    if kind in {"user", "group", "serviceAccount"} and not _EMAIL.match(identity):
        r.fail(f"{key} entry {member!r} has a malformed email address — {_fix('invokers', INVOKERS_EXAMPLE)}")


def _parse_env(r: _Reader) -> dict[str, str]:
    env = r.json("env", {}, dict, '\'{"WHISPER_BEAM_SIZE": "5"}\'')
    result: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(contract.ENV_PREFIX):
            r.fail(
                f"{NAMESPACE}:env {name!r} is not a service setting (they start with "
                f"{contract.ENV_PREFIX}) — pulumi config set --path '{NAMESPACE}:env.WHISPER_BEAM_SIZE' 5"
            )
        elif name in API_KEY_ENV:
            r.fail(
                f"{NAMESPACE}:env {name!r} would put the API key in the stack file, the state and the "
                f"revision's environment in plain text; keep it in Secret Manager — pulumi config rm --path "
                f"'{NAMESPACE}:env.{name}' && pulumi config set --secret {API_KEY} <key> (or "
                f"{_fix('apiKeySecret', '<existing secret id>')})"
            )
        elif name in MANAGED_ENV:
            r.fail(
                f"{NAMESPACE}:env {name!r} is set by the program from a typed key (engine, model, "
                f"concurrency, timeoutSeconds); set that key instead — pulumi config rm --path "
                f"'{NAMESPACE}:env.{name}'"
            )
        elif isinstance(value, dict | list) or value is None:
            r.fail(f"{NAMESPACE}:env {name!r} must be a string, number or boolean")
        else:
            result[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return result


def _parse_api_key(r: _Reader, secret_keys: Collection[str]) -> tuple[str | None, str | None]:
    """The API key from a stack secret, or the id of an existing Secret Manager secret; never both."""
    api_key = r.value("apiKey") or None
    secret_id = r.value("apiKeySecret") or None
    set_secret = f"pulumi config set --secret {API_KEY} <key>"
    if api_key is not None and API_KEY not in secret_keys:
        # Never echo the value: it is already in the stack file in plain text.
        r.fail(f"{API_KEY} is stored in plain text; set it as a secret — {set_secret}")
    elif api_key is not None and len(api_key.strip()) < MIN_API_KEY_CHARS:
        r.fail(
            f"{API_KEY} is shorter than {MIN_API_KEY_CHARS} characters — "
            f"{set_secret} (e.g. openssl rand -hex 32)"
        )
    if secret_id is not None and not _SECRET_ID.match(secret_id):
        r.fail(
            f"{NAMESPACE}:apiKeySecret {secret_id!r} is not a secret id in this project (letters, digits, "
            f"- and _) — {_fix('apiKeySecret', 'whisper-api-key')}"
        )
    if api_key is not None and secret_id is not None:
        r.fail(
            f"{API_KEY} and {NAMESPACE}:apiKeySecret are both set; keep one — pulumi config rm {API_KEY} "
            f"(or pulumi config rm {NAMESPACE}:apiKeySecret)"
        )
    return (api_key.strip() if api_key else None), secret_id


def _parse_budget(r: _Reader) -> tuple[BudgetConfig | None, str | None]:
    raw = r.json("budget", None, dict, "--path 'budget.amount' 100")
    set_account = f"pulumi config set --path '{NAMESPACE}:budget.billingAccount' 012345-6789AB-CDEF01"
    if raw is None or not raw.get("billingAccount"):
        return None, f"{NAMESPACE}:budget.billingAccount is not set, so no budget alerts — {set_account}"
    problems_before = len(r.problems)
    for key in sorted(set(raw) - set(BUDGET_KEYS)):
        r.fail(
            f"{NAMESPACE}:budget.{key} is not a known key (known: {', '.join(BUDGET_KEYS)}) — "
            f"pulumi config rm --path '{NAMESPACE}:budget.{key}'"
        )

    account = str(raw["billingAccount"]).removeprefix("billingAccounts/")
    if not _BILLING_ACCOUNT.match(account):
        r.fail(
            f"{NAMESPACE}:budget.billingAccount {account!r} is not a billing account ID like "
            f"012345-6789AB-CDEF01 (gcloud billing accounts list) — {set_account}"
        )

    amount = raw.get("amount")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or amount <= 0
        or amount != int(amount)
    ):
        r.fail(
            f"{NAMESPACE}:budget.amount {amount!r} must be a positive whole amount of money — "
            f"pulumi config set --path '{NAMESPACE}:budget.amount' 100"
        )
        amount = 0

    currency = str(raw.get("currency", "USD"))
    if not _CURRENCY.match(currency):
        r.fail(
            f"{NAMESPACE}:budget.currency {currency!r} must be an ISO 4217 code such as USD, matching the "
            f"billing account's currency — pulumi config set --path '{NAMESPACE}:budget.currency' USD"
        )

    thresholds = _thresholds(r, raw, "thresholds", [0.5, 0.9, 1.0])
    forecast = _thresholds(r, raw, "forecastThresholds", [1.0])

    emails = _emails(r, raw, "budget", "you@example.com")
    if len(emails) > MAX_BUDGET_EMAILS:
        r.fail(
            f"{NAMESPACE}:budget.emails has {len(emails)} addresses; a budget notifies at most "
            f"{MAX_BUDGET_EMAILS} channels (use a group address for more people) — pulumi config rm --path "
            f"'{NAMESPACE}:budget.emails[{MAX_BUDGET_EMAILS}]'"
        )
    duplicates = sorted({email for email in emails if isinstance(email, str) and emails.count(email) > 1})
    if duplicates:
        r.fail(
            f"{NAMESPACE}:budget.emails lists {', '.join(duplicates)} more than once — "
            f"keep one entry per address (pulumi config edit)"
        )

    if len(r.problems) > problems_before:
        return None, None
    budget = BudgetConfig(
        billing_account=account,
        amount=int(amount),
        currency=currency,
        thresholds=thresholds,
        forecast_thresholds=forecast,
        emails=tuple(emails),
    )
    return budget, None


def _emails(r: _Reader, raw: Mapping[str, Any], section: str, example: str) -> list[Any]:
    """`<section>.emails` as a list (a single address is accepted), each entry checked."""
    emails = raw.get("emails", [])
    if not isinstance(emails, list):
        emails = [emails]
    for email in emails:
        if not isinstance(email, str) or not _EMAIL.match(email):
            r.fail(
                f"{NAMESPACE}:{section}.emails entry {email!r} is not an email address — "
                f"pulumi config set --path '{NAMESPACE}:{section}.emails[0]' {example}"
            )
    return emails


def _thresholds(r: _Reader, raw: Mapping[str, Any], key: str, default: list[float]) -> tuple[float, ...]:
    values = raw.get(key, default)
    if not isinstance(values, list):
        values = [values]
    fix = f"pulumi config set --path '{NAMESPACE}:budget.{key}[0]' 0.5"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_THRESHOLD:
            r.fail(
                f"{NAMESPACE}:budget.{key} entry {value!r} must be a fraction of the amount in "
                f"(0, {MAX_THRESHOLD:g}] (0.5 means 50 %) — {fix}"
            )
    return tuple(sorted(float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)))


# --- whisper:batch: batch transcription on Cloud Run Jobs (infra/batch.py) ---------------------------

BATCH_KEYS = (
    "enabled",
    "taskCount",
    "parallelism",
    "maxRetries",
    "taskTimeoutSeconds",
    "inputBucket",
    "bucketPrefix",
    "inputRetentionDays",
    "outputRetentionDays",
    "runners",
    "serviceAccount",
)
MAX_TASK_COUNT = 10_000  # Cloud Run Jobs' limits
MAX_TASK_RETRIES = 10
MAX_GPU_TASK_TIMEOUT_SECONDS = 3600  # a GPU task runs at most 1 h (longer is a preview feature)
_BUCKET = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class BatchConfig:
    """Batch transcription: an input and an output bucket and a Cloud Run Job on the service's image."""

    input_bucket: str
    output_bucket: str
    create_input_bucket: bool = True  # False: `inputBucket` names a bucket that exists already
    task_count: int = 1
    parallelism: int = 1
    max_retries: int = 1
    task_timeout_seconds: int = MAX_GPU_TASK_TIMEOUT_SECONDS
    input_retention_days: int = 0  # 0: recordings are kept until deleted
    output_retention_days: int = 30
    runners: tuple[str, ...] = ()
    service_account: str | None = None  # an existing account's e-mail; None: the stack makes `<name>-job`


def _parse_batch(r: _Reader, project: str, service_name: str, max_instances: int) -> BatchConfig | None:
    key = f"{NAMESPACE}:batch"
    raw = r.json("batch", None, dict, "--path 'batch.enabled' true")
    enabled = raw.get("enabled", True) if raw is not None else False
    if enabled in (False, "false"):
        return None

    def set_path(name: str, example: object) -> str:
        return f"pulumi config set --path '{key}.{name}' {example}"

    for unknown in sorted(set(raw) - set(BATCH_KEYS)):
        r.fail(
            f"{key}.{unknown} is not a known key (known: {', '.join(BATCH_KEYS)}) — "
            f"pulumi config rm --path '{key}.{unknown}'"
        )
    if enabled not in (True, "true"):
        r.fail(f"{key}.enabled {enabled!r} is not true or false — {set_path('enabled', 'true')}")

    def whole(name: str, default: int, high: int, meaning: str, low: int = 0) -> int:
        value = raw.get(name, default)
        try:
            number = None if isinstance(value, bool) else _parse_int(str(value))
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            r.fail(
                f"{key}.{name} {value!r} must be a whole number from {low} to {high} ({meaning}) — "
                f"{set_path(name, default)}"
            )
            return default
        return number

    task_count = whole("taskCount", 1, MAX_TASK_COUNT, "tasks per run, each with its share of the inputs", 1)
    parallelism = whole("parallelism", min(task_count, max_instances), MAX_TASK_COUNT, "tasks at once", 1)
    if parallelism > max_instances:
        r.fail(
            f"{key}.parallelism {parallelism} exceeds {NAMESPACE}:maxInstances {max_instances}: each task "
            f"holds an L4, and maxInstances bounds the GPUs this stack may use (within your quota) — "
            f"{set_path('parallelism', max_instances)} (or raise {NAMESPACE}:maxInstances)"
        )
    max_retries = whole("maxRetries", 1, MAX_TASK_RETRIES, "retries of a failed task")
    timeout = whole(
        "taskTimeoutSeconds",
        MAX_GPU_TASK_TIMEOUT_SECONDS,
        MAX_GPU_TASK_TIMEOUT_SECONDS,
        "GPU tasks: 1 h at most",
        1,
    )
    input_days = whole("inputRetentionDays", 0, 36500, "days until recordings are deleted; 0 keeps them")
    output_days = whole("outputRetentionDays", 30, 36500, "days until transcripts are deleted; 0 keeps them")

    prefix = str(raw.get("bucketPrefix") or f"{project}-{service_name}")
    output_bucket = f"{prefix}-batch-out"
    if not _valid_bucket(output_bucket):
        r.fail(
            f"{key}.bucketPrefix {prefix!r} makes the bucket name {output_bucket!r}, which is not valid "
            "(3-63 lowercase letters, digits and hyphens, globally unique) — "
            f"{set_path('bucketPrefix', 'acme-whisper')}"
        )
    input_bucket = str(raw.get("inputBucket") or "")
    if input_bucket and not _valid_bucket(input_bucket):
        r.fail(
            f"{key}.inputBucket {input_bucket!r} is not a bucket name — {set_path('inputBucket', 'bucket')}"
        )
    if input_bucket and input_days:
        r.fail(
            f"{key}.inputRetentionDays applies to the input bucket the stack creates, not to "
            f"{input_bucket!r} (its owner's) — pulumi config rm --path '{key}.inputRetentionDays'"
        )

    runners = raw.get("runners", [])
    fix_runners = f"pulumi config set --path '{key}.runners[0]' user:you@example.com"
    for member in runners if isinstance(runners, list) else [runners]:
        kind, _, identity = str(member).partition(":")
        if member in PUBLIC_MEMBERS:
            r.fail(f"{key}.runners contains {member!r}: a GPU job is never run by everyone — {fix_runners}")
        elif not isinstance(member, str) or not member.startswith(MEMBER_PREFIXES):
            r.fail(f"{key}.runners entry {member!r} is not an IAM member — {fix_runners}")
        elif kind in {"user", "group", "serviceAccount"} and not _EMAIL.match(identity):
            r.fail(f"{key}.runners entry {member!r} has a malformed e-mail address — {fix_runners}")

    service_account = raw.get("serviceAccount") or None
    in_project = f"@{project}.iam.gserviceaccount.com"
    if service_account is not None and not str(service_account).endswith(in_project):
        r.fail(
            f"{key}.serviceAccount {service_account!r} must be a service account e-mail in {project} — "
            f"{set_path('serviceAccount', 'whisper-job' + in_project)}"
        )

    return BatchConfig(
        input_bucket=input_bucket or f"{prefix}-batch-in",
        output_bucket=output_bucket,
        create_input_bucket=not input_bucket,
        task_count=task_count,
        parallelism=parallelism,
        max_retries=max_retries,
        task_timeout_seconds=timeout,
        input_retention_days=input_days,
        output_retention_days=output_days,
        runners=tuple(runners) if isinstance(runners, list) else (),
        service_account=service_account,
    )


def _valid_bucket(name: str) -> bool:
    return bool(_BUCKET.match(name)) and not name.startswith("goog") and ".." not in name


def raw_stack_config() -> dict[str, str]:
    """Every `whisper:*` key and `gcp:project` of the running stack, as Pulumi hands them over."""
    keys = [f"{NAMESPACE}:{key}" for key in KEYS] + [PROJECT_KEY]
    raw = {key: value for key in keys if (value := _get(key)) is not None}
    # Unknown keys (typos such as `maxInstance`) are reported too: look at the whole config map.
    for key in _all_config_keys():
        if key.startswith(f"{NAMESPACE}:") and key not in raw and (value := _get(key)) is not None:
            raw[key] = value
    return raw


def _get(full_key: str) -> str | None:
    namespace, key = full_key.split(":", 1)
    return pulumi.Config(namespace).get(key)


def _all_config_keys() -> list[str]:
    # The runtime's config map is internal API; without it only the known keys are read.
    try:
        from pulumi.runtime import config as runtime_config

        return sorted({*runtime_config.CONFIG.get(), *runtime_config.get_config_env()})
    except (ImportError, AttributeError):  # pragma: no cover - depends on the SDK version
        return []


def read_stack_config() -> StackConfig:
    """Read and validate the running stack's configuration (raises ConfigError)."""
    from pulumi.runtime import config as runtime_config

    raw = raw_stack_config()
    secret_keys = {key for key in raw if runtime_config.is_config_secret(key)}
    return parse_config(raw, secret_keys | set(runtime_config.get_config_secret_keys_env()))


def provider_settings() -> dict[str, pulumi.Input[str]]:
    """The stack's `gcp:` credentials settings, for explicit providers (which do not inherit them)."""
    gcp = pulumi.Config("gcp")
    settings: dict[str, pulumi.Input[str]] = {}
    for key, (argument, credential) in FORWARDED_PROVIDER_SETTINGS.items():
        value = gcp.get_secret(key) if credential else gcp.get(key)
        if value is not None:
            settings[argument] = value
    return settings


# --- Observability and the spend cap (whisper:observability, whisper:spendCap) ---------------------

OBSERVABILITY_KEYS = (
    "metrics",
    "alerts",
    "dashboard",
    "uptimeCheck",
    "uptimePeriodSeconds",
    "emails",
    "errorRatio",
    "p95LatencySeconds",
    "queueFullRatio",
)
SPEND_CAP_KEYS = ("enabled", "fraction", "serviceAccount", "pushServiceAccount", "role")
# The bootstrap's identities for the cap (outputs <env>SpendCap…); without them the stack creates its own.
SPEND_CAP_IDENTITY_KEYS = ("serviceAccount", "pushServiceAccount", "role")
_CUSTOM_ROLE = re.compile(r"^projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/roles/[A-Za-z0-9_.]{3,64}$")
UPTIME_PERIODS_S = (60, 300, 600, 900)  # the periods Cloud Monitoring accepts
DEFAULT_P95_LATENCY_S = 120.0  # a 25 MB upload decodes well inside this on an L4; see docs/observability.md


@dataclass(frozen=True)
class ObservabilityConfig:
    """What `pulumi up` declares for on-call: metrics sidecar, alert policies, dashboard, uptime check."""

    metrics: bool = True
    alerts: bool = True
    dashboard: bool = True
    # Off unless an instance is kept warm: each check would otherwise start a GPU instance.
    uptime_check: bool = False
    uptime_period_seconds: int = 300
    # Alert recipients; empty means the budget's emails.
    emails: tuple[str, ...] = ()
    error_ratio: float = 0.05
    p95_latency_seconds: float = DEFAULT_P95_LATENCY_S
    queue_full_ratio: float = 0.05


@dataclass(frozen=True)
class SpendCapConfig:
    """Stop GPU spend once the month's actual cost passes `fraction` of the budget amount."""

    fraction: float = 1.0
    # The bootstrap's accounts and role (all three or none); None: the stack creates them.
    service_account: str | None = None
    push_service_account: str | None = None
    role: str | None = None


def _observability_fix(key: str, example: str) -> str:
    return f"pulumi config set --path '{NAMESPACE}:observability.{key}' {example}"


def _parse_observability(
    r: _Reader, min_instances: int, timeout_seconds: int, has_api_key: bool, public_ingress: bool
) -> ObservabilityConfig:
    raw = r.json("observability", {}, dict, "--path 'observability.alerts' true")
    for key in sorted(set(raw) - set(OBSERVABILITY_KEYS)):
        r.fail(
            f"{NAMESPACE}:observability.{key} is not a known key (known: {', '.join(OBSERVABILITY_KEYS)}) — "
            f"pulumi config rm --path '{NAMESPACE}:observability.{key}'"
        )

    def flag(key: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            fix = _observability_fix(key, "true")
            r.fail(f"{NAMESPACE}:observability.{key} {value!r} is not true or false — {fix}")
            return default
        return value

    def number(key: str, default: float, low: float, high: float, meaning: str) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            r.fail(
                f"{NAMESPACE}:observability.{key} {value!r} must be {meaning} in ({low:g}, {high:g}] — "
                f"{_observability_fix(key, f'{default:g}')}"
            )
            return default
        return float(value)

    period = raw.get("uptimePeriodSeconds", 300)
    if isinstance(period, bool) or period not in UPTIME_PERIODS_S:
        r.fail(
            f"{NAMESPACE}:observability.uptimePeriodSeconds {period!r} must be one of "
            f"{', '.join(map(str, UPTIME_PERIODS_S))} — {_observability_fix('uptimePeriodSeconds', '300')}"
        )
        period = 300

    emails = _emails(r, raw, "observability", "oncall@example.com")

    # The service's API key also guards /metrics, and the sidecar cannot present it: with a key,
    # metrics are off unless asked for, and asking for both is refused.
    metrics = flag("metrics", not has_api_key)
    if metrics and has_api_key:
        r.fail(
            f"{NAMESPACE}:observability.metrics is true but an API key ({API_KEY} or "
            f"{NAMESPACE}:apiKeySecret) also guards /metrics, which the metrics sidecar cannot present — "
            f"{_observability_fix('metrics', 'false')}"
        )
    # Uptime checkers call from the internet: an internal-only service cannot answer them.
    uptime_check = flag("uptimeCheck", min_instances > 0 and public_ingress)
    if uptime_check and not public_ingress:
        r.fail(
            f"{NAMESPACE}:observability.uptimeCheck needs {NAMESPACE}:ingress all (Google's checkers call "
            f"from the internet; IAM still guards the service) — {_observability_fix('uptimeCheck', 'false')}"
        )
    timeout = max(timeout_seconds, 1)
    return ObservabilityConfig(
        metrics=metrics,
        alerts=flag("alerts", True),
        dashboard=flag("dashboard", True),
        uptime_check=uptime_check,
        uptime_period_seconds=int(period),
        emails=tuple(email for email in emails if isinstance(email, str)),
        error_ratio=number("errorRatio", 0.05, 0, 1, "a fraction of requests"),
        p95_latency_seconds=number(
            "p95LatencySeconds",
            min(DEFAULT_P95_LATENCY_S, 0.8 * timeout),
            0,
            timeout,
            f"seconds, at most {NAMESPACE}:timeoutSeconds,",
        ),
        queue_full_ratio=number("queueFullRatio", 0.05, 0, 1, "a fraction of audio requests"),
    )


def _parse_spend_cap(
    r: _Reader, project: str, budget: BudgetConfig | None, budget_skipped: str | None
) -> SpendCapConfig | None:
    raw = r.json("spendCap", {}, dict, "--path 'spendCap.enabled' true")
    for key in sorted(set(raw) - set(SPEND_CAP_KEYS)):
        r.fail(
            f"{NAMESPACE}:spendCap.{key} is not a known key (known: {', '.join(SPEND_CAP_KEYS)}) — "
            f"pulumi config rm --path '{NAMESPACE}:spendCap.{key}'"
        )
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        r.fail(
            f"{NAMESPACE}:spendCap.enabled {enabled!r} is not true or false — "
            f"pulumi config set --path '{NAMESPACE}:spendCap.enabled' true"
        )
        return None
    fraction = raw.get("fraction", 1.0)
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not 0 < fraction <= MAX_THRESHOLD
    ):
        r.fail(
            f"{NAMESPACE}:spendCap.fraction {fraction!r} must be a fraction of the budget amount in "
            f"(0, {MAX_THRESHOLD:g}] (1.0 stops at 100 %) — "
            f"pulumi config set --path '{NAMESPACE}:spendCap.fraction' 1.0"
        )
        return None
    identities = {key: raw.get(key) for key in SPEND_CAP_IDENTITY_KEYS if raw.get(key) is not None}
    if not _spend_cap_identities_valid(r, project, identities):
        return None
    if not enabled:
        return None
    if budget is None and budget_skipped is not None:
        # The cap acts on the budget's Pub/Sub notifications: without a budget it would never fire.
        r.fail(
            f"{NAMESPACE}:spendCap.enabled needs a budget to listen to; {budget_skipped} "
            f"(or pulumi config set --path '{NAMESPACE}:spendCap.enabled' false)"
        )
        return None
    return SpendCapConfig(
        fraction=float(fraction),
        service_account=identities.get("serviceAccount"),
        push_service_account=identities.get("pushServiceAccount"),
        role=identities.get("role"),
    )


def _spend_cap_identities_valid(r: _Reader, project: str, identities: Mapping[str, Any]) -> bool:
    """The bootstrap's three outputs, all or none, each in this stack's project."""
    fix = f"pulumi config set --path '{NAMESPACE}:spendCap.KEY' <the bootstrap's <env>SpendCap… output>"
    problems = len(r.problems)
    if identities and len(identities) != len(SPEND_CAP_IDENTITY_KEYS):
        missing = [key for key in SPEND_CAP_IDENTITY_KEYS if key not in identities]
        r.fail(
            f"{NAMESPACE}:spendCap needs serviceAccount, pushServiceAccount and role together (the "
            f"bootstrap's <env>SpendCap… outputs); missing {', '.join(missing)} — {fix}"
        )
    in_project = f"@{project}.iam.gserviceaccount.com"
    for key in ("serviceAccount", "pushServiceAccount"):
        email = identities.get(key)
        if email is not None and (
            not isinstance(email, str) or not _SERVICE_ACCOUNT.match(email) or not email.endswith(in_project)
        ):
            r.fail(
                f"{NAMESPACE}:spendCap.{key} {email!r} must be a service account e-mail in {project} — {fix}"
            )
    role = identities.get("role")
    if role is not None and not (
        isinstance(role, str) and _CUSTOM_ROLE.match(role) and role.startswith(f"projects/{project}/")
    ):
        r.fail(
            f"{NAMESPACE}:spendCap.role {role!r} must be a custom role of {project} like "
            f"projects/{project}/roles/whisperSpendCapProd — {fix}"
        )
    return len(r.problems) == problems
