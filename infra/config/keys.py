"""Every key the program reads, in one registry: a key missing here is reported as a typo.

docs/deploy.md has one table row per key; tests/docs/test_docs.py walks `documented_keys()` to keep
the two in step. Adding a key: its name here, its field (with the default) on the section's
dataclass, its reading in the section's module, its row in docs/deploy.md.
"""

from __future__ import annotations

from collections.abc import Mapping

NAMESPACE = "whisper"
PROJECT_KEY = "gcp:project"
API_KEY = f"{NAMESPACE}:apiKey"

# The objects under `whisper:` and the keys each may hold.
BUDGET_KEYS = ("billingAccount", "amount", "currency", "thresholds", "forecastThresholds", "emails")
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
    "zonalRedundancy",
    "diarize",
)
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
SPEND_CAP_KEYS = (
    "enabled",
    "fraction",
    "serviceAccount",
    "pushServiceAccount",
    "role",
    "budgetTopic",
    "budgetId",
)
REALTIME_KEYS = ("enabled", "sessions", "sessionSeconds")
SECTIONS: Mapping[str, tuple[str, ...]] = {
    "budget": BUDGET_KEYS,
    "batch": BATCH_KEYS,
    "observability": OBSERVABILITY_KEYS,
    "spendCap": SPEND_CAP_KEYS,
    "realtime": REALTIME_KEYS,
}

# Every key this program reads under `whisper:`, in the order of the stack file's documentation.
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
    "gpuQuota",
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
    "realtime",
)


def documented_keys() -> set[str]:
    """`whisper:<key>` for plain keys, `whisper:<section>.<key>` for each key of an object."""
    plain = {f"{NAMESPACE}:{key}" for key in KEYS if key not in SECTIONS}
    return plain | {f"{NAMESPACE}:{section}.{key}" for section, keys in SECTIONS.items() for key in keys}
