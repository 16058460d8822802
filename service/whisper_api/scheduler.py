"""Admission control and the inference thread pool: the event loop never runs the model.

A request is admitted (or refused with QueueFullError, which becomes a 429) before its upload is
read; admitted requests wait for one of `workers` inference slots. `queue_size` is the same number
that the infrastructure gives Cloud Run as the instance's request concurrency, so a full instance
is rare and Cloud Run scales out instead. An admitted request carries a deadline and a
"client went away" flag: a request whose client disconnected, or whose deadline passed, while it
waited never costs an inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_api.errors import error_response
from whisper_api.timing import StepTimer

T = TypeVar("T")

AUDIO_PATH_PREFIX = "/v1/audio/"
_MAX_RETRY_AFTER_S = 60


class SchedulerError(Exception):
    """A request the scheduler will not run; rendered in OpenAI's error envelope."""

    status_code = 503
    error_type = "server_error"
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}

    def to_response(self) -> JSONResponse:
        return error_response(
            self.status_code, self.message, type=self.error_type, code=self.code, headers=self.headers()
        )


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
    """The client left while its request waited; nobody reads this answer (logged as 499)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"

    def __init__(self) -> None:
        super().__init__("The client disconnected before its request ran.")


@dataclass
class Ticket:
    """One admitted request: its deadline and whether its client is still there."""

    deadline: float | None
    timeout_s: float | None
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


# The admitted request of the current task; set by `admit`, read by `run` (so routes pass nothing).
_current_ticket: ContextVar[Ticket | None] = ContextVar("whisper_ticket", default=None)


class Scheduler:
    """`workers` inferences at once, `queue_size` requests admitted at once (running + waiting)."""

    def __init__(self, workers: int, queue_size: int, request_timeout_s: float | None = None) -> None:
        self.workers = workers
        self.queue_size = max(queue_size, workers)
        self.request_timeout_s = request_timeout_s
        self.admitted = 0
        self.running = 0
        self.draining = False
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._idle = asyncio.Event()
        self._idle.set()
        # A running average of inference time, to tell refused clients when to come back.
        self._mean_inference_s = 1.0

    @property
    def waiting(self) -> int:
        return max(self.admitted - self.running, 0)

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free: the queue ahead of a newcomer, at the mean pace."""
        estimate = self._mean_inference_s * (self.waiting + 1) / self.workers
        return min(max(math.ceil(estimate), 1), _MAX_RETRY_AFTER_S)

    def try_admit(self) -> Ticket:
        """Admit a request now or raise (QueueFullError, ShuttingDownError); never waits."""
        if self.draining:
            raise ShuttingDownError(self.retry_after_s())
        if self.admitted >= self.queue_size:
            raise QueueFullError(self.retry_after_s(), self.queue_size)
        self.admitted += 1
        self._idle.clear()
        timeout = self.request_timeout_s
        return Ticket(deadline=None if timeout is None else time.monotonic() + timeout, timeout_s=timeout)

    def release(self, ticket: Ticket) -> None:
        self.admitted -= 1
        if self.admitted == 0:
            self._idle.set()

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[Ticket]:
        """Hold an admission (or raise at once) for the body of the `async with`; `run` inside it
        honours the ticket's deadline and disconnect flag."""
        ticket = self.try_admit()
        token = _current_ticket.set(ticket)
        try:
            yield ticket
        finally:
            _current_ticket.reset(token)
            self.release(ticket)

    async def run(self, timer: StepTimer, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` on an inference thread once a slot is free, timing the wait and the run.

        Raises ClientDisconnectedError or DeadlineExceededError instead of running when the client
        left or the deadline passed while waiting. A result that carries a `duration` (a Transcript)
        sets `timer.audio_seconds` when the route has not.
        """
        ticket = _current_ticket.get()
        if ticket is None and self.request_timeout_s is not None:
            ticket = Ticket(time.monotonic() + self.request_timeout_s, self.request_timeout_s)
        with timer.step("queue"):
            await self._acquire_slot(ticket)
        if ticket is not None and ticket.disconnected.is_set():
            self._slots.release()
            raise ClientDisconnectedError()
        self.running += 1
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

        def finished(_: object) -> None:
            # The slot is freed when the thread is done, even if the request stopped waiting for it.
            self.running -= 1
            self._slots.release()
            elapsed = time.perf_counter() - started
            self._mean_inference_s = 0.8 * self._mean_inference_s + 0.2 * elapsed

        future.add_done_callback(finished)
        with timer.step("inference"):
            remaining = ticket.remaining() if ticket else None
            try:
                result = await asyncio.wait_for(asyncio.shield(future), timeout=remaining)
            except TimeoutError:
                assert ticket is not None and ticket.timeout_s is not None
                raise DeadlineExceededError(ticket.timeout_s, "during inference") from None
        duration = getattr(result, "duration", None)
        if timer.audio_seconds is None and isinstance(duration, int | float):
            timer.audio_seconds = float(duration)
        return result

    async def _acquire_slot(self, ticket: Ticket | None) -> None:
        if ticket is None:
            await self._slots.acquire()
            return
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
        if not acquire.done():
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
        if acquire.cancelled():
            if ticket.disconnected.is_set():
                raise ClientDisconnectedError()
            assert ticket.timeout_s is not None
            raise DeadlineExceededError(ticket.timeout_s, "waiting in the queue")

    def start_draining(self) -> None:
        """Refuse new requests (503) from now on; admitted ones still run."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is admitted; False when `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def shutdown(self) -> None:
        """Drop queued work without blocking the loop; a running inference finishes on its thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class _DisconnectWatcher:
    """Wraps `receive`: once the body is read, watches for `http.disconnect` in the background."""

    def __init__(self, receive: Receive, disconnected: asyncio.Event) -> None:
        self._receive = receive
        self._disconnected = disconnected
        self._body_read = False
        self._task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if self._body_read:
            # The app listens for a disconnect (e.g. a streaming response): answer from the watcher.
            await self._disconnected.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._disconnected.set()
        elif message["type"] == "http.request" and not message.get("more_body", False):
            self._body_read = True
            self._task = asyncio.create_task(self._watch())
        return message

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._disconnected.set()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class AdmissionMiddleware:
    """Admits `POST /v1/audio/*` before a byte of the upload is read: a full instance answers 429
    (a draining one 503), both with Retry-After, without reading a 25 MB body."""

    def __init__(self, app: ASGIApp, scheduler: Scheduler | None = None) -> None:
        self.app = app
        self.scheduler = scheduler

    def _scheduler(self, scope: Scope) -> Scheduler | None:
        if self.scheduler is not None:
            return self.scheduler
        app = scope.get("app")
        return getattr(getattr(app, "state", None), "scheduler", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheduler = self._scheduler(scope)
        if (
            scope["type"] != "http"
            or scheduler is None
            or scope["method"] != "POST"
            or not scope["path"].startswith(AUDIO_PATH_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        admission = scheduler.admit()
        try:
            ticket = await admission.__aenter__()
        except SchedulerError as refusal:
            await refusal.to_response()(scope, receive, send)
            return
        watcher = _DisconnectWatcher(receive, ticket.disconnected)
        try:
            await self.app(scope, watcher.receive, send)
        finally:
            watcher.close()
            await admission.__aexit__(None, None, None)


def install_scheduler(app: Any, scheduler: Scheduler | None = None) -> None:
    """Add the admission middleware and render SchedulerError raised by routes in the envelope.

    With `scheduler=None` the middleware reads `app.state.scheduler`, which the lifespan sets.
    """

    async def handle(_: Any, error: Exception) -> JSONResponse:
        assert isinstance(error, SchedulerError)
        return error.to_response()

    app.add_exception_handler(SchedulerError, handle)
    app.add_middleware(AdmissionMiddleware, scheduler=scheduler)
