"""The admission middleware on its own, driven with raw ASGI messages: 429 before the upload is
read, a disconnect while queued, stalled uploads holding no queue place.

No model here: the "inference" is `BlockingWork` (tests/support/scheduling.py), run through the
real scheduler.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.scheduling import BlockingWork, wait_until
from whisper_api import contract
from whisper_api.admission import AdmissionMiddleware
from whisper_api.scheduler import ClientDisconnectedError, Scheduler
from whisper_api.timing import StepTimer


class FakeClient:
    """One HTTP request as ASGI sees it: a body in one message, then (optionally) a disconnect."""

    def __init__(
        self, path: str = contract.TRANSCRIPTIONS_PATH, body: bytes = b"audio", *, stalls: bool = False
    ) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(b"content-length", str(len(body)).encode())],
            "query_string": b"",
        }
        self.body = body
        self.stalls = stalls  # sends nothing until it is gone
        self.body_reads = 0
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.body_reads == 0 and not self.stalls:
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
        result = await scheduler.run(StepTimer(), work.job(message["body"].decode()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": result.encode()})

    return app


@pytest.mark.anyio
async def test_full_instance_answers_429_before_reading_the_upload() -> None:
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


@pytest.mark.anyio
async def test_client_disconnect_while_queued_behind_the_gate_costs_no_inference() -> None:
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


@pytest.mark.anyio
async def test_stalled_uploads_behind_the_gate_hold_no_queue_place() -> None:
    scheduler = Scheduler(workers=1, queue_size=1)
    work = BlockingWork()
    work.release.set()
    gate = AdmissionMiddleware(audio_app(scheduler, work), scheduler)
    stalled = [FakeClient(stalls=True) for _ in range(8)]
    tasks = [asyncio.create_task(gate(c.scope, c.receive, c.send)) for c in stalled]
    await wait_until(lambda: scheduler.entered == 8)
    served = FakeClient(body=b"served")
    await gate(served.scope, served.receive, served.send)
    assert served.status == 200 and served.sent[1]["body"] == b"served"
    for client in stalled:
        client.gone.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert scheduler.entered == 0 and scheduler.admitted == 0
    scheduler.shutdown()
