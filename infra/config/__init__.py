"""The whole stack configuration, read once and validated before any resource is declared.

Every mistake is collected (not only the first) and reported in one `ConfigError` whose lines name the
key, what is wrong and the command that fixes it. Where each concern lives:

- `keys`: the registry of every key and section; `stack`: `StackConfig`, the defaults;
- `service`, `environment`, `budget`, `batch`, `observability`, `spend_cap`: one reader per section;
- `reader`: the shared checks and their messages; `cloud_run`: Cloud Run's limits;
- `parse`: `parse_config`, the composition; `runtime`: reading the running stack from Pulumi.
"""

from infra.config.batch import BatchConfig
from infra.config.budget import MAX_THRESHOLD, BudgetConfig
from infra.config.cloud_run import (
    GPU_CPU_CHOICES,
    GPU_MIN_MEMORY_GIB,
    GPU_REGIONS,
    INGRESS_VALUES,
    MAX_BUDGET_EMAILS,
    MAX_CONCURRENCY,
    MAX_CPU,
    MAX_GPU_TASK_TIMEOUT_SECONDS,
    MAX_INSTANCES_CAP,
    MAX_MEMORY_GIB,
    MAX_MEMORY_GIB_PER_CPU,
    MAX_TASK_COUNT,
    MAX_TASK_RETRIES,
    MAX_TIMEOUT_SECONDS,
    MEMBER_PREFIXES,
    METRICS_SIDECAR_CPU,
    METRICS_SIDECAR_MEMORY,
    PUBLIC_MEMBERS,
    UPTIME_PERIODS_S,
    memory_gib,
)
from infra.config.environment import API_KEY_ENV, MANAGED_ENV, MIN_API_KEY_CHARS
from infra.config.keys import (
    API_KEY,
    BATCH_KEYS,
    BUDGET_KEYS,
    KEYS,
    NAMESPACE,
    OBSERVABILITY_KEYS,
    PROJECT_KEY,
    REALTIME_KEYS,
    SECTIONS,
    SPEND_CAP_KEYS,
    documented_keys,
)
from infra.config.observability import DEFAULT_P95_LATENCY_S, ObservabilityConfig
from infra.config.parse import parse_config
from infra.config.reader import ConfigError
from infra.config.realtime import RealtimeConfig
from infra.config.runtime import (
    FORWARDED_PROVIDER_SETTINGS,
    provider_settings,
    raw_stack_config,
    read_stack_config,
)
from infra.config.service import INVOKERS_EXAMPLE
from infra.config.spend_cap import SPEND_CAP_IDENTITY_KEYS, SpendCapConfig
from infra.config.stack import StackConfig

__all__ = [
    "API_KEY",
    "API_KEY_ENV",
    "BATCH_KEYS",
    "BUDGET_KEYS",
    "DEFAULT_P95_LATENCY_S",
    "FORWARDED_PROVIDER_SETTINGS",
    "GPU_CPU_CHOICES",
    "GPU_MIN_MEMORY_GIB",
    "GPU_REGIONS",
    "INGRESS_VALUES",
    "INVOKERS_EXAMPLE",
    "KEYS",
    "MANAGED_ENV",
    "MAX_BUDGET_EMAILS",
    "MAX_CONCURRENCY",
    "MAX_CPU",
    "MAX_GPU_TASK_TIMEOUT_SECONDS",
    "MAX_INSTANCES_CAP",
    "MAX_MEMORY_GIB",
    "MAX_MEMORY_GIB_PER_CPU",
    "MAX_TASK_COUNT",
    "MAX_TASK_RETRIES",
    "MAX_THRESHOLD",
    "MAX_TIMEOUT_SECONDS",
    "MEMBER_PREFIXES",
    "METRICS_SIDECAR_CPU",
    "METRICS_SIDECAR_MEMORY",
    "MIN_API_KEY_CHARS",
    "NAMESPACE",
    "OBSERVABILITY_KEYS",
    "PROJECT_KEY",
    "PUBLIC_MEMBERS",
    "REALTIME_KEYS",
    "SECTIONS",
    "SPEND_CAP_IDENTITY_KEYS",
    "SPEND_CAP_KEYS",
    "UPTIME_PERIODS_S",
    "BatchConfig",
    "BudgetConfig",
    "ConfigError",
    "ObservabilityConfig",
    "RealtimeConfig",
    "SpendCapConfig",
    "StackConfig",
    "documented_keys",
    "memory_gib",
    "parse_config",
    "provider_settings",
    "raw_stack_config",
    "read_stack_config",
]
