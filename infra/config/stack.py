"""The validated stack settings: the service's own keys as fields, each object under `whisper:` as its
section's dataclass. The defaults written here are the only ones: readers and fixes take them from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.config.batch import BatchConfig
from infra.config.budget import BudgetConfig
from infra.config.cloud_run import INGRESS_VALUES
from infra.config.observability import ObservabilityConfig
from infra.config.realtime import RealtimeConfig
from infra.config.spend_cap import SpendCapConfig
from infra.shared import contract


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
    # The project's L4 quota in the region, when stated: the service's and the batch job's GPUs together
    # must fit it (they draw on the same regional quota). None: not checked beyond maxInstances.
    gpu_quota: int | None = None
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
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    spend_cap: SpendCapConfig | None = None
    # Why the budget was skipped, for a warning at deploy time (None when there is a budget).
    budget_skipped_reason: str | None = None
    batch: BatchConfig | None = None  # None: whisper:batch absent or enabled: false
    realtime: RealtimeConfig | None = None  # None: whisper:realtime absent or enabled: false

    @property
    def protect(self) -> bool:
        """Pulumi `protect` follows deletion protection: prod cannot be destroyed by accident."""
        return self.deletion_protection

    @property
    def request_concurrency(self) -> int:
        """Cloud Run's requests per instance: the uploads admitted, plus the open realtime sessions."""
        return self.concurrency + (self.realtime.sessions if self.realtime else 0)

    @property
    def request_timeout_seconds(self) -> int:
        """Cloud Run's request timeout: a realtime session is one request for its whole length."""
        return (
            max(self.timeout_seconds, self.realtime.session_seconds)
            if self.realtime
            else self.timeout_seconds
        )

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


# Every default, for the readers and the examples in their fixes.
DEFAULTS = StackConfig(project="")
