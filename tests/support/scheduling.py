"""Work for the scheduler that the test controls: no model, a blocking function gated by an event."""

import asyncio
import threading
import time
from collections.abc import Callable

from whisper_api.engines.base import TranscriptionCancelled


class BlockingWork:
    """A stand-in for decode + `engine.transcribe`: blocks its thread until released or cancelled
    (then raises TranscriptionCancelled, as the engines do); counts its calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.cancelled = 0
        self.started = threading.Event()
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def job(self, value: str) -> Callable[[threading.Event], str]:
        return lambda cancel: self(value, cancel)

    def __call__(self, value: str, cancel: threading.Event) -> str:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.started.set()
        try:
            deadline = time.monotonic() + 10
            while not self.release.wait(0.005):
                if cancel.is_set():
                    with self._lock:
                        self.cancelled += 1
                    raise TranscriptionCancelled()
                assert time.monotonic() < deadline, "the test never released the work"
            return value
        finally:
            with self._lock:
                self.concurrent -= 1


async def wait_until(condition: Callable[[], bool], within_s: float = 5) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)
