"""Describe the machine a benchmark ran on, and how busy it was (numbers from a shared box are noisy)."""

import datetime as dt
import os
import platform
from pathlib import Path

from pydantic import BaseModel


class Machine(BaseModel):
    hostname: str
    cpu_model: str
    cores: int
    memory_gib: float | None
    python: str
    platform: str
    gpu: str | None
    load_average: tuple[float, float, float]
    taken_at: str

    def describe(self, load_average_after: float) -> str:
        """The line every report opens with: a number without its machine is not a measurement."""
        gpu = self.gpu or "none"
        before = self.load_average[0]
        return (
            f"Machine: {self.cpu_model}, {self.cores} cores, {self.memory_gib} GiB, GPU: {gpu}; "
            f"load average {before:.2f} before, {load_average_after:.2f} after; {self.taken_at}."
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() == 0:
            return None
    except Exception:
        return None
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:
        return "CUDA device"


def describe(with_gpu: bool = True) -> Machine:
    return Machine(
        hostname=platform.node(),
        cpu_model=_cpu_model(),
        cores=os.cpu_count() or 1,
        memory_gib=_memory_gib(),
        python=platform.python_version(),
        platform=platform.platform(),
        gpu=_gpu() if with_gpu else None,
        load_average=os.getloadavg(),
        taken_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
