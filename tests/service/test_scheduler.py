"""The scheduler on its own: admission, slots, deadlines, disconnects, draining, the ASGI gate.

No model here: the "inference" is a blocking function gated by a threading.Event, so each test
controls exactly when work finishes.
"""

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from whisper_api.scheduler import (
    AdmissionMiddleware,
    ClientDisconnectedError,
    DeadlineExceededError,
    QueueFullError,
    Scheduler,
    ShuttingDownError,
)
from whisper_api.timing import StepTimer


class BlockingWork:
    """A stand-in for `engine.transcribe`: blocks its thread until released; counts its calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.started = threading.Event()
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def __call__(self, value: str) -> str:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.started.set()
        try:
            assert self.release.wait(10), "the test never released the work"
            return value
        finally:
            with self._lock:
                self.concurrent -= 1


async def wait_until(condition: Callable[[], bool], within_s: float = 5) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


def test_inference_runs_off_the_event_loop() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2)
        work = BlockingWork()
        task = asyncio.create_task(scheduler.run(StepTimer(), work, "done"))
        await wait_until(work.started.is_set)
        # The loop still turns while the work blocks its thread.
        ticks = 0
        for _ in range(10):
            await asyncio.sleep(0.001)
            ticks += 1
        assert ticks == 10 and not task.done()
        assert scheduler.running == 1
        work.release.set()
        assert await task == "done"
        assert scheduler.running == 0
        scheduler.shutdown()

    asyncio.run(scenario())


def test_workers_bound_concurrent_inferences_and_time_the_queue() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=2, queue_size=5)
        work = BlockingWork()
        timers = [StepTimer() for _ in range(5)]
        tasks = [asyncio.create_task(scheduler.run(t, work, str(i))) for i, t in enumerate(timers)]
        await wait_until(lambda: work.calls == 2)
        await asyncio.sleep(0.05)
        assert work.calls == 2 and scheduler.running == 2
        work.release.set()
        assert await asyncio.gather(*tasks) == ["0", "1", "2", "3", "4"]
        assert work.max_concurrent == 2
        assert all({"queue", "inference"} <= t.steps.keys() for t in timers)
        # The last ones waited for a slot, and the wait is on their timers.
        assert max(t.steps["queue"] for t in timers) > 0.03
        scheduler.shutdown()

    asyncio.run(scenario())


def test_admission_refuses_beyond_queue_size_with_retry_after() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2)
        first, second = scheduler.try_admit(), scheduler.try_admit()
        with pytest.raises(QueueFullError) as refused:
            scheduler.try_admit()
        assert refused.value.status_code == 429 and refused.value.retry_after_s >= 1
        assert refused.value.headers() == {"Retry-After": str(refused.value.retry_after_s)}
        scheduler.release(first)
        third = scheduler.try_admit()  # room again
        scheduler.release(second)
        scheduler.release(third)
        assert scheduler.admitted == 0

    asyncio.run(scenario())


def test_client_gone_while_queued_costs_no_inference() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2)
        work = BlockingWork()
        busy = asyncio.create_task(scheduler.run(StepTimer(), work, "first"))
        await wait_until(work.started.is_set)

        async def queued_request() -> str:
            async with scheduler.admit() as ticket:
                asyncio.get_running_loop().call_later(0.05, ticket.disconnected.set)
                return await scheduler.run(StepTimer(), work, "second")

        with pytest.raises(ClientDisconnectedError):
            await queued_request()
        work.release.set()
        assert await busy == "first"
        assert work.calls == 1
        # The slot it waited for is still usable.
        assert await scheduler.run(StepTimer(), work, "third") == "third"
        scheduler.shutdown()

    asyncio.run(scenario())


def test_deadline_passed_in_the_queue_skips_the_inference() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2, request_timeout_s=0.1)
        work = BlockingWork()
        busy = asyncio.create_task(scheduler.run(StepTimer(), work, "first"))
        await wait_until(work.started.is_set)
        timer = StepTimer()
        async with scheduler.admit():
            with pytest.raises(DeadlineExceededError, match=r"0\.1 s.*waiting in the queue") as late:
                await scheduler.run(timer, work, "second")
        assert late.value.status_code == 504
        assert timer.steps["queue"] >= 0.09
        with pytest.raises(DeadlineExceededError, match="during inference"):
            await busy  # its own deadline passed too, while its thread still held the only slot
        work.release.set()
        await wait_until(lambda: scheduler.running == 0)
        assert work.calls == 1
        scheduler.shutdown()

    asyncio.run(scenario())


def test_deadline_during_inference_answers_and_frees_the_slot_when_the_thread_ends() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2, request_timeout_s=0.1)
        work = BlockingWork()
        with pytest.raises(DeadlineExceededError, match="during inference"):
            await scheduler.run(StepTimer(), work, "slow")
        # The thread still runs: the slot stays taken until it ends.
        assert scheduler.running == 1
        work.release.set()
        await wait_until(lambda: scheduler.running == 0)
        assert await scheduler.run(StepTimer(), work, "next") == "next"
        scheduler.shutdown()

    asyncio.run(scenario())


def test_draining_refuses_new_work_and_waits_for_admitted_work() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=4)
        ticket = scheduler.try_admit()
        scheduler.start_draining()
        with pytest.raises(ShuttingDownError) as refused:
            scheduler.try_admit()
        assert refused.value.status_code == 503 and refused.value.retry_after_s is not None
        assert not await scheduler.wait_idle(0.05)
        asyncio.get_running_loop().call_later(0.05, scheduler.release, ticket)
        assert await scheduler.wait_idle(2)

    asyncio.run(scenario())


def test_audio_seconds_come_from_the_result_duration() -> None:
    class Result:
        duration = 12.5

    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=1)
        timer = StepTimer()
        await scheduler.run(timer, lambda: Result())
        assert timer.audio_seconds == 12.5
        scheduler.shutdown()

    asyncio.run(scenario())


# --- The ASGI gate, driven with raw ASGI messages ---------------------------------------------


class FakeClient:
    """One HTTP request as ASGI sees it: a body in one message, then (optionally) a disconnect."""

    def __init__(self, path: str = "/v1/audio/transcriptions", body: bytes = b"audio") -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(b"content-length", str(len(body)).encode())],
            "query_string": b"",
        }
        self.body = body
        self.body_reads = 0
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.body_reads == 0:
            self.body_reads += 1
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def audio_app(scheduler: Scheduler, work: BlockingWork) -> Callable[..., Awaitable[None]]:
    """A minimal ASGI app that reads the body and runs `work` through the scheduler."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        result = await scheduler.run(StepTimer(), work, message["body"].decode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": result.encode()})

    return app


def test_full_instance_answers_429_before_reading_the_upload() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=1)
        work = BlockingWork()
        gate = AdmissionMiddleware(audio_app(scheduler, work), scheduler)
        first = FakeClient()
        running = asyncio.create_task(gate(first.scope, first.receive, first.send))
        await wait_until(work.started.is_set)

        refused = FakeClient()
        await gate(refused.scope, refused.receive, refused.send)
        assert refused.status == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
        assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
        assert refused.body_reads == 0  # the upload was never read

        # Other paths are not gated.
        other = FakeClient(path="/healthz")
        other_app_called = asyncio.Event()

        async def other_app(scope: Any, receive: Any, send: Any) -> None:
            other_app_called.set()

        await AdmissionMiddleware(other_app, scheduler)(other.scope, other.receive, other.send)
        assert other_app_called.is_set()

        work.release.set()
        await running
        assert first.status == 200 and scheduler.admitted == 0
        scheduler.shutdown()

    asyncio.run(scenario())


def test_client_disconnect_while_queued_behind_the_gate_costs_no_inference() -> None:
    async def scenario() -> None:
        scheduler = Scheduler(workers=1, queue_size=2)
        work = BlockingWork()
        gate = AdmissionMiddleware(audio_app(scheduler, work), scheduler)
        first, leaver = FakeClient(body=b"first"), FakeClient(body=b"leaver")
        running = asyncio.create_task(gate(first.scope, first.receive, first.send))
        await wait_until(work.started.is_set)
        waiting = asyncio.create_task(gate(leaver.scope, leaver.receive, leaver.send))
        await wait_until(lambda: scheduler.waiting == 1)
        leaver.gone.set()  # the client hangs up while queued
        with pytest.raises(ClientDisconnectedError):
            await waiting
        work.release.set()
        await running
        assert work.calls == 1
        assert scheduler.admitted == 0
        scheduler.shutdown()

    asyncio.run(scenario())
