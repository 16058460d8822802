"""Admission control and the inference slots: the event loop never runs the model.

Two gates. At the door (`enter`/`admit`, which `admission.AdmissionMiddleware` calls before a
byte of the upload is read) a full or draining instance answers 429/503 at once; a request let in
holds nothing while its body arrives, however slowly. Once the body is complete the pipeline asks
`Scheduler.run` for a place in the queue: only while the uploads of the requests waiting or
inferring fit `queue_bytes` (what memory and disk allow: each holds its upload; the first always
fits), at most `queue_size` of them, and only when its predicted completion fits its deadline;
then for one of `workers` inference slots. Decoding and inference both run in that slot,
on an inference thread.

Slots go to the request with the least work left (shortest first), and a long one gives its slot
up at its next yield point (`checkpoint`: every 30 s of audio decoded, every segment transcribed)
when a request with at most half its remaining work is waiting, so a short request never waits
behind whole long ones. The work is predicted from what the scheduler has measured: decoding per
second of audio (every request pays it), inference per second of speech (learnt only from work
that had speech, so silent files cannot make the queue look fast). Until a request is decoded, its
audio counts as all speech (and a request that could not then finish by its deadline is refused at
once), except where that alone would exceed the deadline: such a file may be mostly silence, so
only its decoding counts until it is decoded and gated (`decoded`). Then its speech is known, and a
request that cannot finish before its deadline is refused before any inference.

`queue_size` is the same number that the infrastructure gives Cloud Run as the instance's request
concurrency, so a full instance is rare and Cloud Run scales out instead. Every request carries a
deadline (from its arrival) and a "client went away" flag: when either trips, a queued request
never runs and a running one is told to stop (the engine stops within one segment), so its slot
is free again at once.
"""

from __future__ import annotations

import asyncio
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
# Until measured: seconds of a slot per second of speech transcribed (tiny.en on 2 CPU cores takes
# 0.02-0.04; a GPU far less), and per second of audio decoded and gated (3 h of FLAC: 6 s).
PRIOR_INFERENCE_PER_SPEECH_S = 0.05
PRIOR_DECODE_PER_AUDIO_S = 0.0006
# The priors weigh as much as this much measured audio; each measurement then weighs in fully and
# older ones decay by this factor, so the estimates follow the machine within a few requests.
_PRIOR_WEIGHT_S = 5.0
_DECAY = 0.8
# Speech shorter than this says too little about the speed of inference to learn from.
_MIN_SPEECH_TO_LEARN_S = 1.0
# An inference costs as much again as this much more speech, whatever its length (the first
# window's encoder and prompt, the VAD): tiny.en on 2 cores took 1.3 s for 5 s of speech, 3.7 s for
# 41 s and 13 s for 163 s, 0.07-0.09 s per second of (speech + 10 s) alike. Learnt per speech
# second alone, a short clip made a long file's prediction three times too long.
_FIXED_WORK_SPEECH_S = 10.0
# A running request yields its slot to a waiting one with at most this share of its remaining work.
_YIELD_SHARE = 0.5
# Requests that gave up their slot and wait to resume, per worker: each holds its decoded audio
# (up to 330 MiB for 3 hours) and an inference thread.
PARKED_PER_WORKER = 2


class SchedulerError(Exception):
    """A request the scheduler will not run; `admission` renders it in OpenAI's error envelope."""

    status_code = 503
    error_type = "server_error"
    code = "unavailable"
    param: str | None = None

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

    def __init__(self, retry_after_s: int, queue_size: int = 0, *, reason: str | None = None) -> None:
        said = reason or f"The server is at capacity ({queue_size} requests admitted)"
        super().__init__(f"{said}; retry after {retry_after_s} s.", retry_after_s)


class AudioTooLongForDeadlineError(SchedulerError):
    """Its speech alone takes longer to transcribe than the deadline allows: a retry cannot help
    (413, which the OpenAI SDK does not retry), so it is refused before any inference."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "audio_too_long_for_deadline"
    param = "file"

    def __init__(self, speech_s: float, needed_s: float, timeout_s: float) -> None:
        super().__init__(
            f"The audio holds about {speech_s:.0f} s of speech, which takes about {needed_s:.0f} s to "
            f"transcribe here: more than the request deadline of {timeout_s:g} s allows. Send it as a "
            "batch job (make batch; docs/batch.md), or with stream=true to receive the segments "
            "decoded within the deadline as they are ready."
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
    """An admitted request: the audio it brings, its speech once known, and the slot time it used."""

    ticket: Ticket
    audio_seconds: float
    speech_seconds: float | None = None  # set by `decoded`
    decode_s: float | None = None  # slot seconds spent decoding and gating
    started: float | None = None  # when it first got a slot
    holds_own_place: bool = False  # a realtime session's pass: not counted against queue_size
    upload_bytes: int = 0  # what its upload holds while it is queued or running
    used_s: float = 0.0  # slot seconds before its current turn
    resumed: float | None = None  # when its current turn in a slot began (None: holds no slot)
    grant: asyncio.Future[None] | None = None  # while it waits for a slot
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # its cancel was set
    cancel: threading.Event = field(default_factory=threading.Event)

    def slot_s(self, now: float) -> float:
        return self.used_s + (now - self.resumed if self.resumed is not None else 0.0)


def _inference_work(speech_s: float) -> float:
    """What an inference of `speech_s` seconds of speech costs, in seconds of speech: none without."""
    return speech_s + _FIXED_WORK_SPEECH_S if speech_s > 0 else 0.0


@dataclass
class _Speed:
    """Decayed sums of slot seconds and of the seconds they were for: their ratio is the speed."""

    slot_s: float
    for_s: float

    @classmethod
    def prior(cls, per_second: float) -> _Speed:
        return cls(per_second * _PRIOR_WEIGHT_S, _PRIOR_WEIGHT_S)

    @property
    def per_second(self) -> float:
        return self.slot_s / self.for_s

    def learn(self, slot_s: float, seconds: float) -> None:
        self.slot_s = _DECAY * self.slot_s + slot_s
        self.for_s = _DECAY * self.for_s + seconds


# The request of the current task; set at the door (`admit`), read by `run` (so routes pass nothing).
_current_ticket: ContextVar[Ticket | None] = ContextVar("whisper_ticket", default=None)
# The job an inference thread is running (for `checkpoint` and `decoded`, called from that thread).
_thread = threading.local()


class Scheduler:
    """`workers` inferences at once, `queue_size` requests admitted at once (running + waiting),
    each only when its predicted completion fits its deadline; shortest work first."""

    def __init__(
        self,
        workers: int,
        queue_size: int,
        request_timeout_s: float | None = None,
        *,
        queue_bytes: int | None = None,
        jitter: random.Random | None = None,
    ) -> None:
        self.workers = workers
        self.queue_size = max(queue_size, workers)
        self.queue_bytes = queue_bytes
        self.request_timeout_s = request_timeout_s
        self.max_parked = PARKED_PER_WORKER * workers
        self.entered = 0  # past the door: uploading, queued or inferring (what draining waits for)
        self.running = 0  # inference threads busy, including ones stopping after a cancel
        self.draining = False
        self._jobs: set[_Job] = set()
        self._free_slots = workers
        self._waiting: list[_Job] = []  # admitted jobs waiting for a slot (new or parked)
        self._parked = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=workers + self.max_parked, thread_name_prefix="inference"
        )
        self._idle = asyncio.Event()
        self._idle.set()
        self._jitter = jitter or random.Random()  # noqa: S311 (spreads retries; not a secret)
        self._inference = _Speed.prior(PRIOR_INFERENCE_PER_SPEECH_S)
        self._decoding = _Speed.prior(PRIOR_DECODE_PER_AUDIO_S)

    @property
    def admitted(self) -> int:
        """Requests in the queue: body complete, waiting for a slot or inferring."""
        return sum(1 for job in self._jobs if not job.holds_own_place)

    @property
    def held_bytes(self) -> int:
        """What the uploads of the requests in the queue hold."""
        return sum(job.upload_bytes for job in self._jobs if not job.holds_own_place)

    @property
    def waiting(self) -> int:
        return sum(1 for job in self._jobs if job.resumed is None)

    @property
    def real_time_factor(self) -> float:
        """Slot seconds of inference per second of speech (each inference counting
        `_FIXED_WORK_SPEECH_S` more), as measured here."""
        return self._inference.per_second

    @property
    def decode_factor(self) -> float:
        """Slot seconds of decoding and gating per second of audio, as measured here."""
        return self._decoding.per_second

    # --- predictions -------------------------------------------------------------------------

    def _predicted_s(self, job: _Job, *, certain: bool) -> float:
        """Slot seconds the job needs in all. Before it is decoded its speech is unknown: counted as
        all of its audio for its place in the line, as none against the deadlines (`certain`)."""
        decode = job.decode_s if job.decode_s is not None else job.audio_seconds * self.decode_factor
        speech = job.speech_seconds
        if speech is None:
            speech = 0.0 if certain else job.audio_seconds
        return decode + _inference_work(speech) * self.real_time_factor

    def _remaining_s(self, job: _Job, now: float, *, certain: bool = False) -> float:
        return max(self._predicted_s(job, certain=certain) - job.slot_s(now), 0.0)

    def backlog_s(self) -> float:
        """Expected seconds until every admitted request is done (their audio counted as speech
        until decoded), spread over the workers."""
        now = time.monotonic()
        return sum(self._remaining_s(job, now) for job in self._jobs) / self.workers

    def _ahead_s(self, key_s: float, now: float, exclude: _Job | None = None) -> float:
        """Certain work of the requests that go before one with `key_s` of work, per worker."""
        ahead = sum(
            self._remaining_s(job, now, certain=True)
            for job in self._jobs
            if job is not exclude and self._remaining_s(job, now) <= key_s
        )
        return ahead / self.workers

    def _spread(self, seconds: float) -> int:
        """Seconds to tell a refused client, spread by jitter (up to a quarter more, plus up to a
        second) so that clients refused together do not return together; never less."""
        estimate = seconds * self._jitter.uniform(1.0, 1.25) + self._jitter.uniform(0.0, 1.0)
        return min(max(math.ceil(estimate), 1), MAX_RETRY_AFTER_S)

    def retry_after_s(self) -> int:
        """When a client refused for want of a place should come back: when the first admitted
        request will be done and free its place (shortest first)."""
        now = time.monotonic()
        soonest = min((self._remaining_s(job, now) for job in self._jobs), default=0.0)
        return self._spread(soonest)

    def _retry_when_it_fits(self, own_s: float, ahead_s: float) -> int:
        """For a request refused because it would not finish in time: once the work ahead has
        drained enough that a new deadline would hold it."""
        timeout = self.request_timeout_s or 0.0
        return self._spread(max(ahead_s + own_s - timeout, 0.0))

    # --- the door --------------------------------------------------------------------------

    def enter(self) -> Ticket:
        """Let a request in (its body still to come) or raise QueueFullError/ShuttingDownError.

        Cheap and never waits; it reserves no queue place: a full queue is re-checked by `run`. A
        queue whose uploads already fill `queue_bytes` refuses here too, before an upload is read."""
        if self.draining:
            raise ShuttingDownError()
        if self.admitted >= self.queue_size:
            raise QueueFullError(self.retry_after_s(), self.queue_size)
        self._refuse_what_memory_cannot_hold(None)
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
        upload_bytes: int = 0,
        holds_own_place: bool = False,
    ) -> T:
        """Queue, then run `work(cancel)` on an inference thread once a slot is free.

        Raises QueueFullError when the queue is full or the work ahead (shortest first) and this
        request's decoding would not be done by its deadline; ClientDisconnectedError or
        DeadlineExceededError instead of running when the client left or the deadline passed while
        queued. When either happens during the run, `cancel` is set (the engine stops within one
        segment and frees the slot) and the error is raised at once. `audio_seconds` is what the
        predictions count; `upload_bytes` what its upload holds meanwhile (against `queue_bytes`).
        `work` may call `decoded` and `checkpoint` (from its thread). The queue
        wait is timed on `timer`. `holds_own_place`: the caller holds a place of its own (a realtime
        session, bounded separately), so neither a full upload queue nor the deadline prediction
        refuses it; it still waits for a slot and counts in the backlog.
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
        if not holds_own_place:
            self._refuse_what_memory_cannot_hold(upload_bytes)
        self._loop = asyncio.get_running_loop()
        job = _Job(ticket, audio_seconds, holds_own_place=holds_own_place, upload_bytes=upload_bytes)
        if not holds_own_place:
            self._refuse_what_cannot_fit(job)
        self._jobs.add(job)
        try:
            with timer.step("queue"):
                await self._acquire_slot(job)
            return await self._infer(job, work)
        finally:
            self._jobs.discard(job)

    def _refuse_what_memory_cannot_hold(self, upload_bytes: int | None) -> None:
        """Refuse an upload of `upload_bytes` that would overfill `queue_bytes`; at the door (None:
        its size is not known yet), only once the queue's uploads fill it. A queue of none always
        takes one."""
        if self.queue_bytes is None or self.admitted == 0:
            return
        held = self.held_bytes
        if held + (1 if upload_bytes is None else upload_bytes) <= self.queue_bytes:
            return
        brings = "" if upload_bytes is None else f", and this one brings {upload_bytes / 1e6:.1f} MB"
        raise QueueFullError(
            self.retry_after_s(),
            reason=f"The uploads queued here hold {held / 1e6:.1f} MB of the {self.queue_bytes / 1e6:.1f} MB "
            f"this instance keeps for them{brings}",
        )

    def _refuse_what_cannot_fit(self, job: _Job) -> None:
        remaining = job.ticket.remaining()
        if remaining is None:
            return
        now = time.monotonic()
        # As speech, it would fit a deadline alone: predicted so. Longer: it may hold silence only,
        # and only its decoding is certain (its speech is judged once decoded, before inference).
        own = as_speech = self._predicted_s(job, certain=False)
        if job.ticket.timeout_s is not None and as_speech > job.ticket.timeout_s:
            own = self._predicted_s(job, certain=True)
        ahead = self._ahead_s(as_speech, now)
        if ahead + own > remaining:
            raise QueueFullError(
                self._retry_when_it_fits(own, ahead),
                reason=f"The work queued here would not let this request finish within its deadline "
                f"(about {ahead:.0f} s ahead of it)",
            )

    async def _infer(self, job: _Job, work: Callable[[threading.Event], T]) -> T:
        ticket, cancel = job.ticket, job.cancel
        self.running += 1
        job.started = job.resumed = time.monotonic()
        future: asyncio.Future[Any] = asyncio.get_running_loop().run_in_executor(
            self._executor, self._on_thread, job, work
        )

        def finished(done: asyncio.Future[T]) -> None:
            # The slot is freed when the thread is done, even if the request stopped waiting for it.
            self.running -= 1
            now = time.monotonic()
            if job.resumed is not None:
                self._give_back_slot(job, now)
            if not done.cancelled() and done.exception() is None:
                self._learn(job, job.used_s)

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
                job.stopped.set()
        if future.done():
            return future.result()
        if ticket.disconnected.is_set():
            raise ClientDisconnectedError()
        assert ticket.timeout_s is not None
        raise DeadlineExceededError(ticket.timeout_s, "during inference")

    @staticmethod
    def _on_thread(job: _Job, work: Callable[[threading.Event], T]) -> T:
        _thread.job = job
        try:
            return work(job.cancel)
        finally:
            _thread.job = None

    def _learn(self, job: _Job, slot_s: float) -> None:
        if job.speech_seconds is None:  # not decoded here (`decoded` not called): all of it as speech
            if job.audio_seconds > 0:
                self._inference.learn(slot_s, _inference_work(job.audio_seconds))
            return
        if job.speech_seconds >= _MIN_SPEECH_TO_LEARN_S:
            inference_s = max(slot_s - (job.decode_s or 0.0), 0.0)
            self._inference.learn(inference_s, _inference_work(job.speech_seconds))

    # --- called from the inference thread ------------------------------------------------------

    def decoded(self, audio_seconds: float, speech_seconds: float, *, refuse_too_long: bool = True) -> None:
        """From `work`, once its audio is decoded and gated: learn the decoding speed, count its
        speech from now on, and refuse it (AudioTooLongForDeadlineError, or QueueFullError when the
        work ahead would make it late) before any inference when it cannot finish by its deadline.
        `refuse_too_long=False` (a stream) lets it run and deliver what the deadline allows."""
        job: _Job | None = getattr(_thread, "job", None)
        if job is None:
            return
        now = time.monotonic()
        job.decode_s = job.slot_s(now)
        job.audio_seconds = audio_seconds
        job.speech_seconds = speech_seconds
        if audio_seconds > 0:
            self._decoding.learn(job.decode_s, audio_seconds)
        remaining = job.ticket.remaining()
        if remaining is None or not refuse_too_long:
            return
        needed = _inference_work(speech_seconds) * self.real_time_factor
        if job.ticket.timeout_s is not None and needed > job.ticket.timeout_s:
            raise AudioTooLongForDeadlineError(speech_seconds, needed, job.ticket.timeout_s)
        ahead = self._ahead_s(needed, now, exclude=job)
        if ahead + needed > remaining:
            raise QueueFullError(
                self._retry_when_it_fits(needed, ahead),
                reason=f"The work queued here would not let this request finish within its deadline "
                f"(about {ahead:.0f} s ahead of it)",
            )

    def checkpoint(self) -> None:
        """From `work`, at a point where it may pause: give the slot to a waiting request with at
        most half this one's remaining work, and block until it is this one's turn again (or it
        was cancelled). A no-op off an inference thread and when nobody shorter waits."""
        job: _Job | None = getattr(_thread, "job", None)
        loop = self._loop
        if job is None or loop is None or job.cancel.is_set() or not self._should_yield(job):
            return
        asyncio.run_coroutine_threadsafe(self._park(job), loop).result()

    # --- slots (on the event loop) -------------------------------------------------------------

    def _should_yield(self, job: _Job) -> bool:
        if self._parked >= self.max_parked or job.resumed is None:
            return False
        now = time.monotonic()
        mine = self._remaining_s(job, now)
        return any(self._remaining_s(other, now) <= _YIELD_SHARE * mine for other in list(self._waiting))

    async def _park(self, job: _Job) -> None:
        if not self._should_yield(job):
            return
        self._parked += 1
        try:
            self._give_back_slot(job, time.monotonic())
            await self._wait_for_slot(job, stop=job.stopped)
            job.resumed = time.monotonic()
        finally:
            self._parked -= 1

    def _give_back_slot(self, job: _Job, now: float) -> None:
        job.used_s = job.slot_s(now)
        job.resumed = None
        self._release_slot()

    def _release_slot(self) -> None:
        """Hand the slot to the waiting request with the least work left, or free it."""
        now = time.monotonic()
        candidates = [job for job in self._waiting if job.grant is not None and not job.grant.done()]
        if not candidates:
            self._free_slots += 1
            return
        chosen = min(candidates, key=lambda job: self._remaining_s(job, now))
        self._waiting.remove(chosen)
        assert chosen.grant is not None
        chosen.grant.set_result(None)

    async def _wait_for_slot(self, job: _Job, *, stop: asyncio.Event, within_s: float | None = None) -> bool:
        """Take a free slot, or wait in line; True once this job holds one. On a timeout, `stop`
        or cancellation it leaves the line, passing on a slot granted meanwhile."""
        if self._free_slots > 0:
            self._free_slots -= 1
            return True
        grant = job.grant = asyncio.get_running_loop().create_future()
        self._waiting.append(job)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({grant, stopped}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._leave_line(job, grant)
            raise
        finally:
            stopped.cancel()
        if not grant.done() or grant.cancelled() or stop.is_set():
            self._leave_line(job, grant)
            return False
        job.grant = None
        return True

    def _leave_line(self, job: _Job, grant: asyncio.Future[None]) -> None:
        job.grant = None
        if grant.done() and not grant.cancelled():
            self._release_slot()  # granted just as it gave up
            return
        grant.cancel()
        if job in self._waiting:
            self._waiting.remove(job)

    async def _acquire_slot(self, job: _Job) -> None:
        ticket = job.ticket
        remaining = ticket.remaining()
        got = await self._wait_for_slot(
            job, stop=ticket.disconnected, within_s=None if remaining is None else max(remaining, 0)
        )
        if ticket.disconnected.is_set():
            if got:
                self._release_slot()
            raise ClientDisconnectedError()
        if not got:
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
