"""The scheduler on its own: the door, the queue, slots, deadlines, disconnects, cancellation,
Retry-After, draining.

No model here: the "inference" is a blocking function gated by a threading.Event that also
honours the scheduler's cancel event (as the engines do), so each test controls exactly when work
finishes.
"""

import asyncio
import random
import threading
import time

import pytest

from tests.support.scheduling import BlockingWork, wait_until
from whisper_api.scheduler import (
    MAX_RETRY_AFTER_S,
    PRIOR_DECODE_PER_AUDIO_S,
    PRIOR_INFERENCE_PER_SPEECH_S,
    AudioTooLongForDeadlineError,
    ClientDisconnectedError,
    DeadlineExceededError,
    QueueFullError,
    Scheduler,
    ShuttingDownError,
)
from whisper_api.timing import StepTimer


@pytest.mark.anyio
async def test_inference_runs_off_the_event_loop() -> None:
    scheduler = Scheduler(workers=1, queue_size=2)
    work = BlockingWork()
    task = asyncio.create_task(scheduler.run(StepTimer(), work.job("done")))
    await wait_until(work.started.is_set)
    # The loop still turns while the work blocks its thread.
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.001)
        ticks += 1
    assert ticks == 10 and not task.done()
    assert scheduler.running == 1 and scheduler.admitted == 1
    work.release.set()
    assert await task == "done"
    assert scheduler.running == 0 and scheduler.admitted == 0
    scheduler.shutdown()


@pytest.mark.anyio
async def test_workers_bound_concurrent_inferences_and_time_the_queue() -> None:
    scheduler = Scheduler(workers=2, queue_size=5)
    work = BlockingWork()
    timers = [StepTimer() for _ in range(5)]
    tasks = [asyncio.create_task(scheduler.run(t, work.job(str(i)))) for i, t in enumerate(timers)]
    await wait_until(lambda: work.calls == 2)
    await asyncio.sleep(0.05)
    assert work.calls == 2 and scheduler.running == 2 and scheduler.waiting == 3
    work.release.set()
    assert await asyncio.gather(*tasks) == ["0", "1", "2", "3", "4"]
    assert work.max_concurrent == 2
    # The last ones waited for a slot, and the wait is on their timers.
    assert max(t.steps["queue"] for t in timers) > 0.03
    scheduler.shutdown()


@pytest.mark.anyio
async def test_the_queue_admits_uploads_while_their_bytes_fit_and_the_first_always() -> None:
    scheduler = Scheduler(workers=1, queue_size=64, queue_bytes=10_000_000)
    work = BlockingWork()
    first = asyncio.create_task(scheduler.run(StepTimer(), work.job("a"), upload_bytes=12_000_000))
    await wait_until(lambda: scheduler.admitted == 1)  # alone, larger than the budget: admitted
    with pytest.raises(QueueFullError) as refused:
        await scheduler.run(StepTimer(), work.job("b"), upload_bytes=1)
    assert refused.value.status_code == 429 and refused.value.retry_after_s >= 1
    assert "hold 12.0 MB of the 10.0 MB this instance keeps for them" in refused.value.message
    work.release.set()
    assert await first == "a" and scheduler.held_bytes == 0
    work.release.clear()
    small = [
        asyncio.create_task(scheduler.run(StepTimer(), work.job(str(i)), upload_bytes=4_000_000))
        for i in range(2)
    ]
    await wait_until(lambda: scheduler.admitted == 2)
    assert scheduler.held_bytes == 8_000_000
    with pytest.raises(QueueFullError):
        await scheduler.run(StepTimer(), work.job("c"), upload_bytes=4_000_000)
    tiny = asyncio.create_task(scheduler.run(StepTimer(), work.job("tiny"), upload_bytes=2_000_000))
    await wait_until(lambda: scheduler.admitted == 3)  # 10 MB: it fits
    work.release.set()
    assert await asyncio.gather(*small, tiny) == ["0", "1", "tiny"]
    scheduler.shutdown()


@pytest.mark.anyio
async def test_the_door_refuses_once_the_queued_uploads_fill_their_budget() -> None:
    scheduler = Scheduler(workers=1, queue_size=64, queue_bytes=10_000_000)
    work = BlockingWork()
    first = asyncio.create_task(scheduler.run(StepTimer(), work.job("a"), upload_bytes=9_000_000))
    await wait_until(lambda: scheduler.admitted == 1)
    scheduler.leave(scheduler.enter())  # 1 MB is left: a request may still come in
    second = asyncio.create_task(scheduler.run(StepTimer(), work.job("b"), upload_bytes=1_000_000))
    await wait_until(lambda: scheduler.admitted == 2)
    with pytest.raises(QueueFullError) as refused:  # full: refused before its upload is read
        scheduler.enter()
    assert refused.value.status_code == 429 and refused.value.retry_after_s >= 1
    assert refused.value.message.startswith("The uploads queued here hold 10.0 MB of the 10.0 MB")
    work.release.set()
    assert await asyncio.gather(first, second) == ["a", "b"]
    scheduler.leave(scheduler.enter())
    scheduler.shutdown()


@pytest.mark.anyio
async def test_the_queue_refuses_beyond_queue_size_and_the_door_refuses_early() -> None:
    scheduler = Scheduler(workers=1, queue_size=2)
    work = BlockingWork()
    tasks = [asyncio.create_task(scheduler.run(StepTimer(), work.job(v))) for v in "ab"]
    await wait_until(lambda: scheduler.admitted == 2)
    with pytest.raises(QueueFullError) as refused:
        await scheduler.run(StepTimer(), work.job("c"))
    assert refused.value.status_code == 429 and refused.value.retry_after_s >= 1
    assert refused.value.headers() == {"Retry-After": str(refused.value.retry_after_s)}
    with pytest.raises(QueueFullError):
        scheduler.enter()  # the door says the same before any body is read
    work.release.set()
    assert await asyncio.gather(*tasks) == ["a", "b"]
    assert scheduler.admitted == 0
    scheduler.leave(scheduler.enter())  # room again
    scheduler.shutdown()


@pytest.mark.anyio
async def test_requests_past_the_door_hold_no_queue_place_until_they_run() -> None:
    """Uploads in transit are let in without limit of the queue: only `run` takes a place."""
    scheduler = Scheduler(workers=1, queue_size=1)
    uploading = [scheduler.enter() for _ in range(8)]
    work = BlockingWork()
    work.release.set()
    assert await scheduler.run(StepTimer(), work.job("served")) == "served"
    assert scheduler.entered == 8 and scheduler.admitted == 0
    for ticket in uploading:
        scheduler.leave(ticket)
    scheduler.shutdown()


@pytest.mark.anyio
async def test_client_gone_while_queued_costs_no_inference() -> None:
    scheduler = Scheduler(workers=1, queue_size=2)
    work = BlockingWork()
    busy = asyncio.create_task(scheduler.run(StepTimer(), work.job("first")))
    await wait_until(work.started.is_set)

    async def queued_request() -> str:
        async with scheduler.admit() as ticket:
            asyncio.get_running_loop().call_later(0.05, ticket.disconnected.set)
            return await scheduler.run(StepTimer(), work.job("second"))

    with pytest.raises(ClientDisconnectedError):
        await queued_request()
    work.release.set()
    assert await busy == "first"
    assert work.calls == 1
    # The slot it waited for is still usable.
    assert await scheduler.run(StepTimer(), work.job("third")) == "third"
    scheduler.shutdown()


@pytest.mark.anyio
async def test_client_gone_during_inference_stops_it_and_frees_the_slot_at_once() -> None:
    scheduler = Scheduler(workers=1, queue_size=2)
    work = BlockingWork()

    async def request() -> str:
        async with scheduler.admit() as ticket:
            asyncio.get_running_loop().call_later(0.1, ticket.disconnected.set)
            return await scheduler.run(StepTimer(), work.job("abandoned"))

    with pytest.raises(ClientDisconnectedError):
        await request()
    await wait_until(lambda: scheduler.running == 0, within_s=1)  # without any release
    assert work.cancelled == 1
    work.release.set()
    assert await scheduler.run(StepTimer(), work.job("next")) == "next"
    scheduler.shutdown()


@pytest.mark.anyio
async def test_deadline_passed_in_the_queue_skips_the_inference() -> None:
    scheduler = Scheduler(workers=1, queue_size=2)
    work = BlockingWork()
    busy = asyncio.create_task(scheduler.run(StepTimer(), work.job("first")))
    await wait_until(work.started.is_set)
    timer = StepTimer()
    async with scheduler.admit() as ticket:
        ticket.deadline, ticket.timeout_s = time.monotonic() + 0.3, 0.3
        with pytest.raises(DeadlineExceededError, match=r"0\.3 s.*waiting in the queue") as late:
            await scheduler.run(timer, work.job("second"))
    assert late.value.status_code == 504
    assert timer.steps["queue"] >= 0.25
    work.release.set()
    assert await busy == "first"
    assert work.calls == 1
    scheduler.shutdown()


@pytest.mark.anyio
async def test_deadline_during_inference_stops_it_and_frees_the_slot_at_once() -> None:
    scheduler = Scheduler(workers=1, queue_size=2, request_timeout_s=0.1)
    work = BlockingWork()
    with pytest.raises(DeadlineExceededError, match="during inference"):
        await scheduler.run(StepTimer(), work.job("slow"))
    await wait_until(lambda: scheduler.running == 0, within_s=1)
    assert work.cancelled == 1
    work.release.set()
    assert await scheduler.run(StepTimer(), work.job("next")) == "next"
    scheduler.shutdown()


@pytest.mark.anyio
async def test_work_that_fits_the_deadline_is_never_cancelled() -> None:
    scheduler = Scheduler(workers=1, queue_size=2, request_timeout_s=2)
    work = BlockingWork()
    asyncio.get_running_loop().call_later(0.3, work.release.set)
    assert await scheduler.run(StepTimer(), work.job("long but in time")) == "long but in time"
    assert work.cancelled == 0
    scheduler.shutdown()


@pytest.mark.anyio
async def test_draining_refuses_new_work_and_waits_for_requests_let_in() -> None:
    scheduler = Scheduler(workers=1, queue_size=4)
    ticket = scheduler.enter()  # e.g. still uploading
    scheduler.start_draining()
    with pytest.raises(ShuttingDownError) as refused:
        scheduler.enter()
    assert refused.value.status_code == 503 and refused.value.retry_after_s is not None
    assert not await scheduler.wait_idle(0.05)
    asyncio.get_running_loop().call_later(0.05, scheduler.leave, ticket)
    assert await scheduler.wait_idle(2)


# --- Predictions: learnt from speech, shortest first, refused before inference when late ------


@pytest.mark.anyio
async def test_the_real_time_factor_is_learned_from_finished_inferences() -> None:
    scheduler = Scheduler(workers=1, queue_size=4)
    before = scheduler.real_time_factor

    def sleeps(_: threading.Event) -> None:
        time.sleep(0.1)

    for _ in range(20):  # 0.1 s of work per 10 s of audio, as much work as 20 s of speech
        await scheduler.run(StepTimer(), sleeps, audio_seconds=10)
    assert before == pytest.approx(PRIOR_INFERENCE_PER_SPEECH_S)
    assert 0.0045 < scheduler.real_time_factor < 0.01
    scheduler.shutdown()


@pytest.mark.anyio
async def test_silent_audio_teaches_the_decoding_speed_but_never_the_inference_speed() -> None:
    """Three hours without speech decode in seconds: they must not make speech look fast."""
    scheduler = Scheduler(workers=1, queue_size=4)

    def decodes_silence(_: threading.Event) -> None:
        time.sleep(0.05)
        scheduler.decoded(3 * 3600, 0.0)

    for _ in range(3):
        await scheduler.run(StepTimer(), decodes_silence, audio_seconds=3 * 3600)
    assert scheduler.real_time_factor == pytest.approx(PRIOR_INFERENCE_PER_SPEECH_S)
    assert scheduler.decode_factor < PRIOR_DECODE_PER_AUDIO_S

    def speech(_: threading.Event) -> None:
        scheduler.decoded(10, 10)
        time.sleep(0.2)  # 0.01 s of inference per second of speech, 10 s more counted for each

    for _ in range(10):
        await scheduler.run(StepTimer(), speech, audio_seconds=10)
    assert 0.0075 < scheduler.real_time_factor < 0.015
    scheduler.shutdown()


@pytest.mark.anyio
async def test_a_short_request_overtakes_a_long_one_at_its_next_checkpoint() -> None:
    scheduler = Scheduler(workers=1, queue_size=4)
    finished: list[str] = []
    long_started = threading.Event()

    def long_work(cancel: threading.Event) -> str:
        scheduler.decoded(3600, 3600)
        long_started.set()
        for _ in range(200):  # 2 s of "segments", a checkpoint after each
            time.sleep(0.01)
            scheduler.checkpoint()
        finished.append("long")
        return "long"

    def short_work(cancel: threading.Event) -> str:
        scheduler.decoded(10, 10)
        finished.append("short")
        return "short"

    long_task = asyncio.create_task(scheduler.run(StepTimer(), long_work, audio_seconds=3600))
    await wait_until(long_started.is_set)
    timer = StepTimer()
    assert await scheduler.run(timer, short_work, audio_seconds=10) == "short"
    assert finished == ["short"] and not long_task.done()
    assert timer.steps["queue"] < 1  # one segment's wait, not the long request's 2 s
    assert await long_task == "long"
    assert finished == ["short", "long"]
    scheduler.shutdown()


@pytest.mark.anyio
async def test_speech_that_cannot_fit_the_deadline_is_refused_before_inference() -> None:
    scheduler = Scheduler(workers=1, queue_size=4, request_timeout_s=10)
    inferred = threading.Event()

    def work(_: threading.Event) -> None:
        scheduler.decoded(3600, 3600)  # an hour of speech at the prior: 180 s of work
        inferred.set()

    with pytest.raises(AudioTooLongForDeadlineError, match=r"stream=true.*|make batch") as refused:
        await scheduler.run(StepTimer(), work, audio_seconds=3600)
    assert refused.value.status_code == 413 and refused.value.code == "audio_too_long_for_deadline"
    assert "make batch" in refused.value.message and "stream=true" in refused.value.message
    assert not inferred.is_set()
    scheduler.shutdown()


@pytest.mark.anyio
async def test_a_request_whose_predicted_completion_cannot_fit_is_refused_at_once() -> None:
    scheduler = Scheduler(workers=1, queue_size=8, request_timeout_s=20, jitter=random.Random(0))
    work = BlockingWork()

    def decoded_speech(cancel: threading.Event) -> str:
        scheduler.decoded(300, 300)  # 15.5 s of work at the prior (310 s as speech)
        return work("first", cancel)

    first = asyncio.create_task(scheduler.run(StepTimer(), decoded_speech, audio_seconds=300))
    await wait_until(work.started.is_set)
    # Another 300 s (15.5 s as speech) behind 15.5 s of known work: not within 20 s.
    with pytest.raises(QueueFullError, match="deadline") as refused:
        await scheduler.run(StepTimer(), work.job("never"), audio_seconds=300)
    assert work.calls == 1 and scheduler.admitted == 1
    # Back once 11 s of the first are done (when it would fit), not sooner, not after all 15.5 s.
    assert 11 <= refused.value.retry_after_s <= 16
    # Three hours would not fit as speech even alone: admitted, and judged once decoded.
    provisional = asyncio.create_task(scheduler.run(StepTimer(), work.job("long"), audio_seconds=3 * 3600))
    await wait_until(lambda: scheduler.admitted == 2)
    work.release.set()
    assert await first == "first" and await provisional == "long"
    scheduler.shutdown()


# --- Retry-After: when a place will really be free ---------------------------------------------


@pytest.mark.anyio
async def test_retry_after_is_when_the_first_admitted_request_will_be_done() -> None:
    scheduler = Scheduler(workers=1, queue_size=2, jitter=random.Random(0))
    work = BlockingWork()
    assert scheduler.backlog_s() == 0
    # 400 s of audio, as speech at the prior until decoded: 20.5 s of work, plus its decoding.
    long_job = asyncio.create_task(scheduler.run(StepTimer(), work.job("long"), audio_seconds=400))
    await wait_until(work.started.is_set)
    assert 19 < scheduler.backlog_s() <= 21
    waiting = asyncio.create_task(scheduler.run(StepTimer(), work.job("short"), audio_seconds=100))
    await wait_until(lambda: scheduler.waiting == 1)
    assert 25 < scheduler.backlog_s() <= 27
    # A place is free once the shorter one is done (it goes first): 5.5 s, not the whole 26 s.
    assert 5 <= scheduler.retry_after_s() <= 8
    work.release.set()
    await asyncio.gather(long_job, waiting)
    # Nothing queued any more: a refused client is told to come back at once.
    assert scheduler.backlog_s() == 0
    assert scheduler.retry_after_s() <= 2
    scheduler.shutdown()


@pytest.mark.anyio
async def test_retry_after_is_spread_so_refused_clients_do_not_return_together() -> None:
    scheduler = Scheduler(workers=1, queue_size=1)
    work = BlockingWork()
    task = asyncio.create_task(scheduler.run(StepTimer(), work.job("x"), audio_seconds=400))
    await wait_until(work.started.is_set)
    values = [scheduler.retry_after_s() for _ in range(50)]
    assert len(set(values)) >= 4  # about 20 s of work left, spread over 20..26 s
    assert min(values) >= 19 and max(values) <= 27 <= MAX_RETRY_AFTER_S
    work.release.set()
    await task
    scheduler.shutdown()
