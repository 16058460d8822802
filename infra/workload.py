"""What the service and the batch job both run: the stack's image on one GPU, with the same model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi

from infra.config import StackConfig
from infra.shared import contract


@dataclass(frozen=True)
class GpuWorkload:
    """The validated stack settings, the image built from them (by digest) and the stack's labels."""

    settings: StackConfig
    image_ref: pulumi.Input[str]
    labels: Mapping[str, str]

    def limits(self) -> dict[str, str]:
        """One GPU per instance or task, with the CPU and memory Cloud Run requires next to it."""
        return {"cpu": str(self.settings.cpu), "memory": self.settings.memory, "nvidia.com/gpu": "1"}

    def model_env(self) -> dict[str, str]:
        """The model baked in the image, run on the GPU."""
        return {
            contract.ENV_ENGINE: self.settings.engine,
            contract.ENV_MODEL: self.settings.model,
            contract.ENV_MODEL_DIR: contract.MODEL_DIR,
            contract.ENV_DEVICE: "cuda",
        }
