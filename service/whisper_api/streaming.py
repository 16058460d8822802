"""`stream=true`: the transcript as server-sent events, in the shape the official `openai` SDK parses.

(diarized_json streams differently: `stream_speaker_segments`.)

Each segment the engine decodes (on the inference thread) is handed to the event loop and sent at
once as `data: {"type": "transcript.text.delta", "delta": "..."}`; the deltas add up to the text.
The last event is `transcript.text.done` with the whole text and its `languages`, as `json` would
answer, and `usage` in the shape the SDK types for this event: tokens (the audio as Whisper's encoder
positions, the text as the tokens decoded), not json's duration. Once the stream ends, the request's
whole step timing is logged (its Server-Timing header went out with the first event).

The response starts with the first segment (or the end, for audio without speech), so that a
request refused before then (bad audio, full queue, deadline) is still an ordinary HTTP error. An
error after it is an event `{"error": {...}}` (OpenAI's envelope), which the SDK raises as an
`APIError`. A client that goes away stops the inference (the scheduler sets the engine's `cancel`).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel

from whisper_api.engines.base import SegmentCallback
from whisper_api.errors import ApiError, internal_error
from whisper_api.formats import diarized_segments, languages, token_usage
from whisper_api.scheduler import SchedulerError
from whisper_api.schemas import (
    ErrorBody,
    ErrorResponse,
    Segment,
    Transcript,
    TranscriptTextDelta,
    TranscriptTextDone,
    TranscriptTextSegment,
)

logger = logging.getLogger(__name__)

SegmentedRun = Callable[[SegmentCallback], Awaitable[Transcript]]
# Proxies (nginx and its kin) must pass each event on at once, and nobody may cache the stream.
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


Closer = Callable[[], Awaitable[None]]


async def stream_transcript(run: SegmentedRun, on_close: Closer) -> EventSourceResponse:
    """Start `run(on_segment)` and answer with its segments as events; `on_close` runs once it is over."""
    loop = asyncio.get_running_loop()
    segments: asyncio.Queue[Segment | None] = asyncio.Queue()

    def on_segment(segment: Segment) -> None:  # on the inference thread
        loop.call_soon_threadsafe(segments.put_nowait, segment)

    task = asyncio.ensure_future(run(on_segment))
    # Queued after every segment's put (the loop runs callbacks in order): None marks the end.
    task.add_done_callback(lambda _: segments.put_nowait(None))
    try:
        first = await segments.get()
        if first is None:
            task.result()  # a refusal before any segment: raised, answered as an HTTP error
    except BaseException:
        task.cancel()
        await on_close()
        raise
    return EventSourceResponse(_events(task, segments, first, on_close), headers=_HEADERS)


async def _events(
    task: "asyncio.Future[Transcript]",
    segments: "asyncio.Queue[Segment | None]",
    first: Segment | None,
    on_close: Closer,
) -> AsyncIterator[bytes]:
    sent = ""
    try:
        segment = first
        while segment is not None:
            text = (sent + segment.text).lstrip()  # as Transcript.text, which strips the first space
            yield _event(TranscriptTextDelta(delta=text[len(sent) :]))
            sent = text
            segment = await segments.get()
        transcript = task.result()
        yield _event(
            TranscriptTextDone(
                text=transcript.text, languages=languages(transcript), usage=token_usage(transcript)
            )
        )
    except Exception as error:  # after the first event the status is sent: the error is an event
        yield _event(ErrorResponse(error=_error_body(error)))
    finally:
        task.cancel()  # a no-op once it is done; otherwise the scheduler sets the engine's cancel
        await on_close()


async def stream_speaker_segments(
    run: Callable[[], Awaitable[Transcript]], on_close: Closer
) -> EventSourceResponse:
    """`stream=true` with diarized_json: a `transcript.text.segment` event per speaker segment, then
    `transcript.text.done`. Speakers are known only once the whole file is diarized (clustering
    compares every voice with every other), so the events follow the transcription; a failure
    before then is an ordinary HTTP error."""
    try:
        transcript = await run()
    except BaseException:
        await on_close()
        raise
    return EventSourceResponse(_segment_events(transcript, on_close), headers=_HEADERS)


async def _segment_events(transcript: Transcript, on_close: Closer) -> AsyncIterator[bytes]:
    try:
        for segment in diarized_segments(transcript):
            yield _event(TranscriptTextSegment.model_validate(segment.model_dump()))
        yield _event(
            TranscriptTextDone(
                text=transcript.text, languages=languages(transcript), usage=token_usage(transcript)
            )
        )
    finally:
        await on_close()


def _error_body(error: Exception) -> ErrorBody:
    if isinstance(error, ApiError):
        return error.body
    if isinstance(error, SchedulerError):
        return ErrorBody(message=error.message, type=error.error_type, code=error.code)
    logger.exception("unhandled error while streaming a transcript", exc_info=error)
    return internal_error()


def _event(body: BaseModel) -> bytes:
    return format_sse_event(data_str=body.model_dump_json())
