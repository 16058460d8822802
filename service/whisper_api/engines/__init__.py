"""Choosing and loading the inference engine.

`load_engine` imports the chosen engine's module only when asked, so that a faster-whisper
service never imports torch or openai-whisper. The device and compute-type choice are small
pure functions, so that their GPU branches are tested on a CPU-only machine.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from whisper_api import contract
from whisper_api.engines.base import SAMPLE_RATE, Engine, SegmentCallback, TranscriptionCancelled
from whisper_api.models import StartupError

if TYPE_CHECKING:
    from whisper_api.settings import Settings

__all__ = [
    "OPENAI_COMPUTE_TYPES",
    "SAMPLE_RATE",
    "Engine",
    "EngineConfigError",
    "SegmentCallback",
    "TranscriptionCancelled",
    "choose_compute_type",
    "choose_device",
    "load_and_warm_up",
    "load_engine",
]

# openai-whisper runs in float32, or float16 on a GPU (its `fp16` flag).
OPENAI_COMPUTE_TYPES = ("float32", "float16")


class EngineConfigError(StartupError):
    """A device or compute type that this machine or engine cannot run."""


def choose_device(requested: str, gpu_count: int) -> str:
    """`auto` → `cuda` when a GPU is visible, else `cpu`; an explicit `cuda` needs a GPU."""
    if requested == "auto":
        return "cuda" if gpu_count > 0 else "cpu"
    if requested == "cuda" and gpu_count == 0:
        raise EngineConfigError(
            f"{contract.ENV_DEVICE}=cuda but no CUDA GPU is visible. Use {contract.ENV_DEVICE}=cpu or auto, "
            "or run on a machine with an NVIDIA GPU and its driver."
        )
    if requested not in ("cpu", "cuda"):
        raise EngineConfigError(f"{contract.ENV_DEVICE}={requested} is not one of auto, cpu, cuda.")
    return requested


def choose_compute_type(engine: str, device: str, requested: str, supported: Collection[str]) -> str:
    """`auto` → faster-whisper: int8 on CPU, float16 on CUDA; openai-whisper: float32 / float16.

    `supported` is what the engine can run on `device` (for faster-whisper:
    `ctranslate2.get_supported_compute_types(device)`); anything else fails at start-up.
    """
    if requested == "auto":
        chosen = "float16" if device == "cuda" else ("int8" if engine == "faster-whisper" else "float32")
    else:
        chosen = requested
    if chosen not in supported:
        hint = (
            " openai-whisper runs float16 only on CUDA."
            if engine == "openai-whisper" and device == "cpu"
            else ""
        )
        raise EngineConfigError(
            f"{contract.ENV_COMPUTE_TYPE}={requested} cannot run with {engine} on {device}: "
            f"choose one of {', '.join(sorted(supported))} (or auto).{hint}"
        )
    return chosen


def openai_supported_compute_types(device: str) -> tuple[str, ...]:
    return OPENAI_COMPUTE_TYPES if device == "cuda" else ("float32",)


def load_engine(settings: Settings) -> Engine:
    """Resolve the model, pick device and compute type, and load the engine that settings name.

    Raises `StartupError` (a `RuntimeError`) with a message naming the setting to fix.
    """
    if settings.engine == "faster-whisper":
        from whisper_api.engines.faster import FasterWhisperEngine

        return FasterWhisperEngine.from_settings(settings)
    if settings.engine == "openai-whisper":
        from whisper_api.engines.openai import OpenAIWhisperEngine

        return OpenAIWhisperEngine.from_settings(settings)
    raise EngineConfigError(
        f"{contract.ENV_ENGINE}={settings.engine} is not one of {', '.join(contract.ENGINES)}."
    )


def load_and_warm_up(settings: Settings) -> Engine:
    """The engine `settings` names, with its short pre-ready warm-up done (`Engine.warmup`)."""
    engine = load_engine(settings)
    engine.warmup()
    return engine
