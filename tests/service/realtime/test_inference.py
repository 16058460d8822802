"""A session's passes share the scheduler's slots with uploads without taking their queue places,
and an interim pass is declined whenever every slot is busy."""

from typing import Any

import anyio
import pytest

from tests.support.engines import load_clip
from whisper_api.realtime.inference import SchedulerTranscriber, SessionSlots
from whisper_api.scheduler import QueueFullError, Scheduler
from whisper_api.schemas import TranscribeOptions
from whisper_api.timing import StepTimer

pytestmark = pytest.mark.anyio


async def test_a_full_upload_queue_does_not_refuse_a_session_pass_and_interims_yield(engines: Any) -> None:
    scheduler = Scheduler(workers=1, queue_size=1)
    transcriber = SchedulerTranscriber(engines["faster-whisper"], scheduler)
    audio = load_clip("short.wav")
    release = anyio.Event()
    started = anyio.Event()

    def upload(cancel: Any) -> str:
        started.set()
        while not release.is_set():
            cancel.wait(0.01)
        return "upload done"

    results: dict[str, Any] = {}

    async def run_upload() -> None:
        results["upload"] = await scheduler.run(StepTimer(), upload, audio_seconds=5)

    async def run_final() -> None:
        results["final"] = await transcriber(audio, TranscribeOptions(), interim=False)

    async with anyio.create_task_group() as group:
        group.start_soon(run_upload)
        await started.wait()
        assert scheduler.admitted == 1
        with pytest.raises(QueueFullError):  # the upload queue is full for another upload
            await scheduler.run(StepTimer(), lambda cancel: None)
        assert await transcriber(audio, TranscribeOptions(), interim=True) is None  # the slot is busy
        group.start_soon(run_final)
        await anyio.sleep(0.1)
        assert scheduler.admitted == 1 and scheduler.waiting == 1  # queued for the slot, not a queue place
        release.set()
    assert results["upload"] == "upload done"
    assert "lazy dog" in results["final"].text.lower()
    scheduler.shutdown()


def test_session_places_are_bounded() -> None:
    slots = SessionSlots(2)
    assert slots.try_acquire() and slots.try_acquire() and not slots.try_acquire()
    slots.release()
    assert slots.try_acquire() and slots.active == 2
