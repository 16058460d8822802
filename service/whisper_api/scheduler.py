"""Admission control and the inference thread pool: the event loop never runs the model.

Two gates. At the door (`enter`/`admit`, which `admission.AdmissionMiddleware` calls before a
byte of the upload is read) a full or draining instance answers 429/503 at once; a request let in
holds nothing while its body arrives, however slowly. Once the body is complete the pipeline asks
`Scheduler.run` for a place in the queue (`queue_size` requests waiting or inferring, 429 beyond)
and then for one of `workers` inference slots; decoding and inference both run in that slot, on an
inference thread.

`queue_size` is the same number that the infrastructure gives Cloud Run as the instance's request
concurrency, so a full instance is rare and Cloud Run scales out instead. Every request carries a
deadline (from its arrival) and a "client went away" flag: when either trips, a queued request
never runs and a running one is told to stop (the engine stops within one segment), so its slot
is free again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from whisper_api.timing import StepTimer

T = TypeVar("T")

MAX_RETRY_AFTER_S = 60
# Until inferences have been measured, assume one takes a tenth of its audio's duration.
_PRIOR_REAL_TIME_FACTOR = 0.1
_PRIOR_AUDIO_S = 30.0
# Each finished inference weighs this much against the history (the history decays by 1 - it).
_LEARNING_RATE = 0.2


class SchedulerError(Exception):
    """A request the scheduler will not run; `admission` renders it in OpenAI's error envelope."""

    status_code = 503
    error_type = "server_error"
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


class QueueFullError(SchedulerError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, retry_after_s: int, queue_size: int = 0) -> None:
        super().__init__(
            f"The server is at capacity ({queue_size} requests admitted); retry after {retry_after_s} s.",
            retry_after_s,
        )


class ShuttingDownError(SchedulerError):
    status_code = 503
    code = "shutting_down"

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("This instance is shutting down; retry the request.", retry_after_s)


class DeadlineExceededError(SchedulerError):
    status_code = 504
    code = "deadline_exceeded"

    def __init__(self, timeout_s: float, where: str) -> None:
        super().__init__(
            f"The request exceeded the server's deadline of {timeout_s:g} s ({where}); "
            "send shorter audio or raise WHISPER_REQUEST_TIMEOUT_S.",
        )


class ClientDisconnectedError(SchedulerError):
    """The client left; its work was skipped or stopped, and nobody reads this answer (logged as 499)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"

    def __init__(self) -> None:
        super().__init__("The client disconnected; its request was stopped.")


@dataclass
class Ticket:
    """One request let in at the door: its deadline and whether its client is still there."""

    deadline: float | None
    timeout_s: float | None
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass(eq=False)
class _Job:
    """An admitted request: the audio it brings, and when its inference started."""

    audio_seconds: float
    started: float | None = None
    holds_own_place: bool = False  # a realtime session's pass: not counted against queue_size


# The request of the current task; set at the door (`admit`), read by `run` (so routes pass nothing).
_current_ticket: ContextVar[Ticket | None] = ContextVar("whisper_ticket", default=None)


class Scheduler:
    """`workers` inferences at once, `queue_size` requests admitted at once (running + waiting)."""

    def __init__(
        self,
        workers: int,
        queue_size: int,
        request_timeout_s: float | None = None,
        *,
        jitter: random.Random | None = None,
    ) -> None:
        self.workers = workers
        self.queue_size = max(queue_size, workers)
        self.request_timeout_s = request_timeout_s
        self.entered = 0  # past the door: uploading, queued or inferring (what draining waits for)
        self.running = 0  # inference threads busy, including ones stopping after a cancel
        self.draining = False
        self._jobs: set[_Job] = set()
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._idle = asyncio.Event()
        self._idle.set()
        self._jitter = jitter or random.Random()  # noqa: S311 (spreads retries; not a secret)
        # Decayed sums of inference seconds and audio seconds: their ratio is the real-time factor,
        # weighted by audio length, so that a burst of tiny clips does not swing the estimate.
        self._inference_s = _PRIOR_REAL_TIME_FACTOR * _PRIOR_AUDIO_S
        self._audio_s = _PRIOR_AUDIO_S

    @property
    def admitted(self) -> int:
        """Requests in the queue: body complete, waiting for a slot or inferring."""
        return sum(1 for job in self._jobs if not job.holds_own_place)

    @property
    def waiting(self) -> int:
        return sum(1 for job in self._jobs if job.started is None)

    @property
    def real_time_factor(self) -> float:
        """Seconds of inference (decoding included) per second of audio, as measured here."""
        return self._inference_s / self._audio_s

    def backlog_s(self) -> float:
        """Expected seconds until every admitted request is done: the queued audio at the measured
        real-time factor, less what running inferences already did, spread over the workers."""
        now = time.monotonic()
        factor = self.real_time_factor
        work = 0.0
        for job in self._jobs:
            expected = job.audio_seconds * factor
            work += expected if job.started is None else max(expected - (now - job.started), 0.0)
        return work / self.workers

    def retry_after_s(self) -> int:
        """When a refused client should come back: the backlog, spread by jitter (up to a quarter
        more, plus up to a second) so that clients refused together do not return together."""
        estimate = self.backlog_s() * self._jitter.uniform(1.0, 1.25) + self._jitter.uniform(0.0, 1.0)
        return min(max(math.ceil(estimate), 1), MAX_RETRY_AFTER_S)

    # --- the door --------------------------------------------------------------------------

    def enter(self) -> Ticket:
        """Let a request in (its body still to come) or raise QueueFullError/ShuttingDownError.

        Cheap and never waits; it reserves no queue place: a full queue is re-checked by `run`."""
        if self.draining:
            raise ShuttingDownError()
        if self.admitted >= self.queue_size:
            raise QueueFullError(self.retry_after_s(), self.queue_size)
        self.entered += 1
        self._idle.clear()
        timeout = self.request_timeout_s
        return Ticket(deadline=None if timeout is None else time.monotonic() + timeout, timeout_s=timeout)

    def leave(self, ticket: Ticket) -> None:
        self.entered -= 1
        if self.entered == 0:
            self._idle.set()

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[Ticket]:
        """Hold a place past the door for the body of the `async with` (or raise at once); `run`
        inside it honours the ticket's deadline and disconnect flag."""
        ticket = self.enter()
        token = _current_ticket.set(ticket)
        try:
            yield ticket
        finally:
            _current_ticket.reset(token)
            self.leave(ticket)

    # --- the queue and the slots -------------------------------------------------------------

    async def run(
        self,
        timer: StepTimer,
        work: Callable[[threading.Event], T],
        *,
        audio_seconds: float = 0.0,
        holds_own_place: bool = False,
    ) -> T:
        """Queue, then run `work(cancel)` on an inference thread once a slot is free.

        Raises QueueFullError when the queue is full; ClientDisconnectedError or
        DeadlineExceededError instead of running when the client left or the deadline passed while
        queued. When either happens during the run, `cancel` is set (the engine stops within one
        segment and frees the slot) and the error is raised at once. `audio_seconds` is what the
        queue estimate and the measured real-time factor count. The queue wait is timed on `timer`.
        `holds_own_place`: the caller holds a place of its own (a realtime session, bounded separately), so
        a full upload queue does not refuse it; it still waits for a slot and counts in the backlog.
        """
        ticket = _current_ticket.get()
        if ticket is None:  # called without the door (tests, tools): a deadline from now
            ticket = Ticket(
                None if self.request_timeout_s is None else time.monotonic() + self.request_timeout_s,
                self.request_timeout_s,
            )
        if self.draining:
            raise ShuttingDownError()
        if not holds_own_place and self.admitted >= self.queue_size:
            raise QueueFullError(self.retry_after_s(), self.queue_size)
        job = _Job(audio_seconds, holds_own_place=holds_own_place)
        self._jobs.add(job)
        try:
            with timer.step("queue"):
                await self._acquire_slot(ticket)
            return await self._infer(ticket, job, work)
        finally:
            self._jobs.discard(job)

    async def _infer(self, ticket: Ticket, job: _Job, work: Callable[[threading.Event], T]) -> T:
        cancel = threading.Event()
        self.running += 1
        job.started = time.monotonic()
        future: asyncio.Future[Any] = asyncio.get_running_loop().run_in_executor(self._executor, work, cancel)

        def finished(done: asyncio.Future[T]) -> None:
            # The slot is freed when the thread is done, even if the request stopped waiting for it.
            self.running -= 1
            self._slots.release()
            if not done.cancelled() and done.exception() is None:
                assert job.started is not None
                self._learn(time.monotonic() - job.started, job.audio_seconds)

        future.add_done_callback(finished)
        gone = asyncio.ensure_future(ticket.disconnected.wait())
        try:
            await asyncio.wait(
                {future, gone}, timeout=ticket.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
            if not future.done():
                cancel.set()  # the client left, the deadline passed, or this task was cancelled
        if future.done():
            return future.result()
        if ticket.disconnected.is_set():
            raise ClientDisconnectedError()
        assert ticket.timeout_s is not None
        raise DeadlineExceededError(ticket.timeout_s, "during inference")

    def _learn(self, inference_s: float, audio_seconds: float) -> None:
        if audio_seconds <= 0:
            return
        self._inference_s = (1 - _LEARNING_RATE) * self._inference_s + _LEARNING_RATE * inference_s
        self._audio_s = (1 - _LEARNING_RATE) * self._audio_s + _LEARNING_RATE * audio_seconds

    async def _acquire_slot(self, ticket: Ticket) -> None:
        acquire = asyncio.ensure_future(self._slots.acquire())
        gone = asyncio.ensure_future(ticket.disconnected.wait())
        remaining = ticket.remaining()
        try:
            await asyncio.wait(
                {acquire, gone},
                timeout=None if remaining is None else max(remaining, 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            gone.cancel()
            if acquire.done() and not acquire.cancelled():
                self._slots.release()
            acquire.cancel()
            raise
        gone.cancel()
        if acquire.done() and ticket.disconnected.is_set():
            self._slots.release()
            raise ClientDisconnectedError()
        if not acquire.done():
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
        if acquire.cancelled():
            if ticket.disconnected.is_set():
                raise ClientDisconnectedError()
            assert ticket.timeout_s is not None
            raise DeadlineExceededError(ticket.timeout_s, "waiting in the queue")

    # --- shutdown ------------------------------------------------------------------------------

    def start_draining(self) -> None:
        """Refuse new requests (503) from now on; the ones already let in still run."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is past the door; False when `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def shutdown(self) -> None:
        """Drop queued work without blocking the loop; a running inference finishes on its thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)
