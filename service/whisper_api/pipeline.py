"""The transcription path: probe, admit, decode, transcribe, release memory, render.

The API (`routes/audio.py`, through `Pipeline`) and the batch worker (`batch/worker.py`, through
`release_memory_after`, `with_speakers` and `render_text`) take the same steps, so a recording gets
the same transcript, and the process gives back the same memory, whichever way it came in.
"""

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from anyio import to_thread

from whisper_api.audio import (
    AudioError,
    AudioSource,
    decode_audio,
    duration_seconds,
    probe_audio,
    silence_non_speech,
)
from whisper_api.diarization.channels import ChannelDecoder
from whisper_api.diarization.diarizer import DiarizationCancelled, Diarizer
from whisper_api.diarization.speakers import diarize_transcript
from whisper_api.diarization.speech import VadTuning
from whisper_api.engines.base import Engine, SegmentCallback, TranscriptionCancelled
from whisper_api.errors import invalid_request
from whisper_api.formats import render
from whisper_api.memory import RELEASE_AFTER_AUDIO_S, release_freed_memory
from whisper_api.scheduler import Scheduler
from whisper_api.schemas import ResponseFormat, Segment, Speakers, TranscribeOptions, Transcript
from whisper_api.timing import StepTimer

# Without a declared duration, the queue guesses the audio's length from its size at 128 kbit/s.
_TYPICAL_BYTES_PER_S = 16_000


@dataclass(frozen=True)
class DiarizationRequest:
    """Who spoke when, asked for: the known speakers' voices (name → 16 kHz samples) and the VAD
    tuning of `chunking_strategy=server_vad`."""

    known: Mapping[str, np.ndarray] = field(default_factory=dict)
    vad: VadTuning | None = None


@dataclass(frozen=True)
class AudioRequest:
    """A validated audio request, as a route hands it on: the upload and what to make of it."""

    file: BinaryIO
    size: int | None
    options: TranscribeOptions
    response_format: ResponseFormat = "json"
    granularities: frozenset[str] = field(default_factory=lambda: frozenset({"segment"}))
    diarization: DiarizationRequest | None = None


@dataclass(frozen=True)
class Rendered:
    body: str
    media_type: str


def render_text(
    transcript: Transcript, response_format: ResponseFormat, granularities: frozenset[str]
) -> Rendered:
    """The transcript in `response_format`, as the text an answer or a transcript file holds."""
    body, media_type = render(transcript, response_format, granularities)
    return Rendered(body if isinstance(body, str) else body.model_dump_json(), media_type)


def without_speech(options: TranscribeOptions, duration: float, *, diarized: bool) -> Transcript:
    """The transcript of audio the gate left no speech in, made without inference: no segments,
    and no speakers (`diarized`: diarized_json needs them, empty)."""
    return Transcript(
        task=options.task,
        language=options.language or "en",
        duration=duration,
        segments=[],
        speakers=Speakers(segments=[], turns=[]) if diarized else None,
    )


def release_memory_after(audio_seconds: float | None) -> bool:
    """After long audio, give the heap's free pages back (`memory.release_freed_memory`).

    Call it once the recording's samples are freed: pages still in use cannot go back.
    """
    return (audio_seconds or 0) >= RELEASE_AFTER_AUDIO_S and release_freed_memory()


def with_speakers(
    diarizer: Diarizer,
    audio: np.ndarray,
    transcript: Transcript,
    request: DiarizationRequest,
    cancel: threading.Event | None = None,
    channel: ChannelDecoder | None = None,
) -> Transcript:
    """The transcript with its speakers, from the same samples (and from a stereo upload's
    `channel`s, each alone); a cancel stops it like the engine's."""
    try:
        return diarize_transcript(
            diarizer, audio, transcript, request.known, vad=request.vad, cancel=cancel, channel=channel
        )
    except DiarizationCancelled as error:
        raise TranscriptionCancelled(len(transcript.segments)) from error


def stereo_channels(
    open_source: Callable[[], AbstractContextManager[AudioSource]],
    channels: int,
    max_seconds: float,
    progress: Callable[[], None] | None = None,
) -> ChannelDecoder | None:
    """A two-channel upload's channels, each opened (`open_source`), decoded alone and gated like
    the mix, for diarization (a call's parties are usually recorded one per channel); None for any
    other layout."""
    if channels != 2:
        return None

    def decode(channel: int) -> np.ndarray:
        with open_source() as source:
            samples = decode_audio(source, max_seconds, progress, channel=channel)
        silence_non_speech(samples)
        return samples

    return decode


class Pipeline:
    """One API request's way through the steps, timed on its StepTimer (Server-Timing, log line)."""

    def __init__(
        self,
        engine: Engine,
        scheduler: Scheduler,
        timer: StepTimer,
        *,
        max_audio_seconds: float,
        diarizer: Diarizer | None = None,
    ) -> None:
        self.engine = engine
        self.diarizer = diarizer
        self.scheduler = scheduler
        self.timer = timer
        self.max_audio_seconds = max_audio_seconds

    async def render(self, request: AudioRequest) -> Rendered:
        transcript = await self.transcribe(request)
        with self.timer.step("format"):
            return render_text(transcript, request.response_format, request.granularities)

    async def transcribe(
        self, request: AudioRequest, on_segment: SegmentCallback | None = None
    ) -> Transcript:
        """Check the header, queue, then decode, gate and transcribe in an inference slot.

        Only the header is read before the queue (a bomb is refused at once, and the queue learns
        how much audio is coming); the samples are decoded in the slot, so that at most `workers`
        decoded files (and the few that gave their slot up) are in memory. The gate sets what
        cannot be speech to silence; audio with none left is not transcribed at all. The scheduler
        may pause the work to let shorter requests through (every 30 s of audio decoded, every
        segment). `on_segment` runs on the inference thread for each segment.
        """
        limit = self.max_audio_seconds
        timer = self.timer
        scheduler = self.scheduler
        try:
            with timer.step("decode"):
                info = await to_thread.run_sync(probe_audio, request.file, limit)
            declared = info.declared_seconds
            expected_s = declared if declared is not None else (request.size or 0) / _TYPICAL_BYTES_PER_S

            def pause(cancel: threading.Event) -> None:
                scheduler.checkpoint()
                if cancel.is_set():
                    raise TranscriptionCancelled(0)

            def each_segment(segment: Segment) -> None:
                if on_segment is not None:
                    on_segment(segment)
                scheduler.checkpoint()

            def decode_and_transcribe(cancel: threading.Event) -> Transcript:
                with timer.step("decode"):
                    audio = decode_audio(request.file, limit, progress=lambda: pause(cancel))
                duration = timer.audio_seconds = duration_seconds(audio)
                with timer.step("gate"):
                    speech_s = silence_non_speech(audio)
                scheduler.decoded(duration, speech_s, refuse_too_long=on_segment is None)
                if speech_s == 0:
                    return without_speech(request.options, duration, diarized=request.diarization is not None)
                with timer.step("inference"):
                    transcript = self.engine.transcribe(
                        audio, request.options, on_segment=each_segment, cancel=cancel
                    )
                if request.diarization is None:
                    return transcript
                if self.diarizer is None:
                    raise RuntimeError("diarization asked of a pipeline without a diarizer")
                channels = stereo_channels(
                    lambda: nullcontext(request.file), info.channels, limit, lambda: pause(cancel)
                )
                with timer.step("diarization"):
                    return with_speakers(
                        self.diarizer, audio, transcript, request.diarization, cancel, channels
                    )

            def work(cancel: threading.Event) -> Transcript:
                try:
                    return decode_and_transcribe(cancel)  # its samples are freed when it returns
                finally:
                    release_memory_after(timer.audio_seconds)

            return await self.scheduler.run(
                timer, work, audio_seconds=min(expected_s, limit), upload_bytes=request.size or 0
            )
        except AudioError as error:
            raise invalid_request(str(error), param="file", code=error.code) from error
