"""Admission control and the inference thread pool: the event loop never runs the model.

A request is admitted (or refused with QueueFullError, which becomes a 429) before its upload is
read; admitted requests wait for one of `workers` inference slots. `queue_size` is the same number
that the infrastructure gives Cloud Run as the instance's request concurrency.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from whisper_api.timing import StepTimer

T = TypeVar("T")


class QueueFullError(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("the server is at capacity")
        self.retry_after_s = retry_after_s


class Scheduler:
    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self.admitted = 0
        self.running = 0
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.admitted >= self.queue_size:
            raise QueueFullError(retry_after_s=1)
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, timer: StepTimer, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on an inference thread once a slot is free, timing the wait and the run."""
        with timer.step("queue"):
            await self._slots.acquire()
        try:
            self.running += 1
            with timer.step("inference"):
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.running -= 1
            self._slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
