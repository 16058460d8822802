"""What a session needs from the service: its transcriptions on the scheduler's inference slots,
and a place among the instance's bounded number of sessions."""

from __future__ import annotations

import threading

import numpy as np

from whisper_api.engines.base import SAMPLE_RATE, Engine
from whisper_api.scheduler import Scheduler
from whisper_api.schemas import TranscribeOptions, Transcript
from whisper_api.timing import StepTimer


class SchedulerTranscriber:
    """Runs a session's passes through the scheduler that uploads use: same slots, same queue.

    Sessions are admitted at their own door (`SessionSlots`), so their passes do not take the
    uploads' queue places; an interim pass (captions, an early final) is declined whenever every
    slot is busy, so it never delays a final transcript or an upload.
    """

    def __init__(self, engine: Engine, scheduler: Scheduler) -> None:
        self.engine = engine
        self.scheduler = scheduler

    async def __call__(
        self, audio: np.ndarray, options: TranscribeOptions, *, interim: bool
    ) -> Transcript | None:
        if interim and (self.scheduler.running >= self.scheduler.workers or self.scheduler.waiting):
            return None

        def work(cancel: threading.Event) -> Transcript:
            return self.engine.transcribe(audio, options, cancel=cancel)

        return await self.scheduler.run(
            StepTimer(), work, audio_seconds=audio.size / SAMPLE_RATE, holds_own_place=True
        )


class SessionSlots:
    """At most `limit` sessions at once on this instance; each open session counts against Cloud
    Run's request concurrency, which the infrastructure sets to uploads + sessions."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1
