"""Per-request step timings: measured once, reported in Server-Timing, the log line and metrics."""

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepTimer:
    """Durations in seconds of the named steps of one request, in the order they ran."""

    steps: dict[str, float] = field(default_factory=dict)
    # Seconds of audio the request carried, once known: for the real-time factor and the log line.
    audio_seconds: float | None = None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, time.perf_counter() - start)

    def record(self, name: str, seconds: float) -> None:
        self.steps[name] = self.steps.get(name, 0.0) + seconds


def request_timer(scope: MutableMapping[str, Any]) -> StepTimer:
    """The request's timer, kept in the ASGI scope's state (`request.state.timer`); made on first use."""
    state = scope.setdefault("state", {})
    timer = state.get("timer")
    if not isinstance(timer, StepTimer):
        timer = state["timer"] = StepTimer()
    return timer
