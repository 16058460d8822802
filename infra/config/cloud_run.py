"""What Cloud Run allows: GPU regions, CPU and memory with a GPU, scaling, timeouts, ingress, IAM members.

Google's Cloud Run GPU documentation and docs/deploy.md; each limit is checked once, in the section
that reads the key it bounds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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
# Where Google offers GPU zonal redundancy (Cloud Run's GPU page); not every L4 region: us-east4 and
# the invitation-only asia-south1 run GPUs without it.
ZONAL_REDUNDANCY_REGIONS = ("us-central1", "europe-west1", "europe-west4", "asia-southeast1")
GPU_CPU_CHOICES = (4, 6, 8)
GPU_MIN_MEMORY_GIB = 16
# Cloud Run's CPU/memory table: at most 4 GiB per vCPU (4 vCPU → 16 GiB, 6 → 24 GiB, 8 → 32 GiB).
MAX_MEMORY_GIB_PER_CPU = 4
MAX_MEMORY_GIB = 32
MAX_CPU = 8
# The metrics sidecar's limits (infra/observability.py). Cloud Run counts them in the instance: its
# tables cap an instance, not a container, at 8 vCPU / 32 GiB, and Google's sidecar pages give no
# separate allowance, so the API's share plus these must fit (checked in `check_instance_fits`).
# 1 vCPU is the least a container gets with instance-based billing (GPU services need it): Cloud
# Run's CPU page allows under 1 vCPU only with request-based billing.
METRICS_SIDECAR_CPU = 1
METRICS_SIDECAR_MEMORY = "512Mi"
MAX_INSTANCES_CAP = 100  # a typo guard: each GPU instance bills ~$0.7/h, quotas are usually single digits
MAX_CONCURRENCY = 1000  # Cloud Run's own limit per instance
MAX_TIMEOUT_SECONDS = 3600  # Cloud Run's own limit
INGRESS_VALUES: Mapping[str, str] = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
# Cloud Run Jobs' limits.
MAX_TASK_COUNT = 10_000
MAX_TASK_RETRIES = 10
MAX_GPU_TASK_TIMEOUT_SECONDS = 3600  # a GPU task runs at most 1 h (longer is a preview feature)
UPTIME_PERIODS_S = (60, 300, 600, 900)  # the periods Cloud Monitoring accepts
MAX_BUDGET_EMAILS = 5  # the Budget API's limit on monitoring notification channels per budget

MEMBER_PREFIXES = ("user:", "group:", "serviceAccount:", "domain:", "principal:", "principalSet:")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

_MEMORY = re.compile(r"^(\d+)(Gi|Mi)$")


def memory_gib(memory: str) -> float | None:
    """'16Gi' → 16.0, '20480Mi' → 20.0; None when it is not a Kubernetes-style quantity."""
    match = _MEMORY.match(memory)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    return amount if unit == "Gi" else amount / 1024
