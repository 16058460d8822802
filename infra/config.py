"""The whole stack configuration, read once and validated before any resource is declared.

Every mistake is collected (not only the first) and reported in one `ConfigError` whose lines
name the key, what is wrong and the command that fixes it. `parse_config` is a pure function of
the raw values, so that tests and `scripts/plan` check exactly what `pulumi up` would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
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
MAX_MEMORY_GIB = 32
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

INVOKERS_EXAMPLE = "'[\"user:you@example.com\"]'"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SERVICE_NAME = re.compile(r"^[a-z][-a-z0-9]{0,24}[a-z0-9]$")
_PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_BILLING_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MEMORY = re.compile(r"^(\d+)(Gi|Mi)$")
_SERVICE_ACCOUNT = re.compile(
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)

# Every key this program reads under `whisper:`; anything else in the stack file is a typo.
KEYS = (
    "region",
    "serviceName",
    "engine",
    "model",
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
)
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
    # Why the budget was skipped, for a warning at deploy time (None when there is a budget).
    budget_skipped_reason: str | None = None

    @property
    def protect(self) -> bool:
        """Pulumi `protect` follows deletion protection: prod cannot be destroyed by accident."""
        return self.deletion_protection

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


def memory_gib(memory: str) -> float | None:
    """'16Gi' → 16.0, '20480Mi' → 20.0; None when it is not a Kubernetes-style quantity."""
    match = _MEMORY.match(memory)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    return amount if unit == "Gi" else amount / 1024


def parse_config(raw: Mapping[str, str]) -> StackConfig:
    """Validate raw stack config (`{"whisper:region": "us-central1", "gcp:project": ...}`)."""
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

    env = _parse_env(r)
    budget, budget_skipped_reason = _parse_budget(r)

    if r.problems:
        raise ConfigError(r.problems)
    return StackConfig(
        project=project,
        region=region,
        service_name=service_name,
        engine=engine,
        model=model,
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
        budget_skipped_reason=budget_skipped_reason,
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

    emails = raw.get("emails", [])
    if not isinstance(emails, list):
        emails = [emails]
    for email in emails:
        if not isinstance(email, str) or not _EMAIL.match(email):
            r.fail(
                f"{NAMESPACE}:budget.emails entry {email!r} is not an email address — "
                f"pulumi config set --path '{NAMESPACE}:budget.emails[0]' you@example.com"
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
    return parse_config(raw_stack_config())
