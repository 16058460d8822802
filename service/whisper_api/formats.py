"""Transcript → OpenAI's response formats: json, text, srt, vtt, verbose_json, diarized_json.

Subtitles and language names (`languages`) follow openai-whisper's reference (`whisper.utils.WriteSRT`
/ `WriteVTT`, `whisper.tokenizer.LANGUAGES`) byte for byte, except that VTT cues always carry hours
(`00:00:08.000`), as OpenAI's API writes them; tests compare them with the reference. They are
written here rather than loaded from openai-whisper because the faster-whisper image carries
neither openai-whisper nor torch. Segment ids count from 0, and no time ends after the audio does,
whichever engine decoded it.

Media types: `application/json` for json and verbose_json, `text/plain; charset=utf-8` for text,
srt and vtt (as OpenAI answers).
"""

from __future__ import annotations

import math

from pydantic import BaseModel

from whisper_api.languages import language_name
from whisper_api.schemas import (
    DetectedLanguage,
    ResponseFormat,
    Segment,
    SegmentOut,
    TokenUsage,
    Transcript,
    TranscriptionDiarized,
    TranscriptionDiarizedSegment,
    TranscriptionJson,
    TranscriptionVerbose,
    Usage,
    WordOut,
)

# Whisper's encoder turns each second of audio into 50 positions (1500 per 30 s window).
AUDIO_TOKENS_PER_S = 50

JSON_MEDIA_TYPE = "application/json"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"


def usage(transcript: Transcript) -> Usage:
    return Usage(seconds=math.ceil(transcript.duration))


def token_usage(transcript: Transcript) -> TokenUsage:
    """The usage a streamed `transcript.text.done` carries (the SDK types it as token usage)."""
    audio_tokens = math.ceil(transcript.duration * AUDIO_TOKENS_PER_S)
    output_tokens = sum(len(segment.tokens) for segment in transcript.segments)
    return TokenUsage(
        input_tokens=audio_tokens,
        output_tokens=output_tokens,
        total_tokens=audio_tokens + output_tokens,
        input_token_details={"audio_tokens": audio_tokens, "text_tokens": 0},
    )


def languages(transcript: Transcript) -> list[DetectedLanguage]:
    return [DetectedLanguage(code=code) for code in transcript.languages]


def _within(seconds: float, duration: float) -> float:
    return min(max(seconds, 0.0), duration)


def timed_segments(transcript: Transcript) -> list[Segment]:
    """The segments as responses show them: ids 0, 1, 2, ... and every start and end (words'
    too) within [0, duration]; engines round timestamps up to their frame or window."""
    duration = transcript.duration
    return [
        segment.model_copy(
            update={
                "id": index,
                "start": _within(segment.start, duration),
                "end": _within(segment.end, duration),
                "words": None
                if segment.words is None
                else [
                    word.model_copy(
                        update={"start": _within(word.start, duration), "end": _within(word.end, duration)}
                    )
                    for word in segment.words
                ],
            }
        )
        for index, segment in enumerate(transcript.segments)
    ]


def timestamp(seconds: float, *, decimal_marker: str) -> str:
    """`whisper.utils.format_timestamp`, hours always shown: `01:02:03,004` (SRT), `00:02:03.004` (VTT)."""
    milliseconds = round(max(seconds, 0.0) * 1000.0)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1_000)
    return f"{hours:02d}:{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"


def subtitles(segments: list[Segment], response_format: str) -> str:
    """SRT or WebVTT, one cue per segment (as OpenAI's srt/vtt), as openai-whisper's writers write it."""
    marker = "," if response_format == "srt" else "."
    cues = [
        (
            timestamp(segment.start, decimal_marker=marker),
            timestamp(segment.end, decimal_marker=marker),
            segment.text.strip().replace("-->", "->"),  # "-->" in the text would end the cue line
        )
        for segment in segments
    ]
    if response_format == "srt":
        return "".join(
            f"{index}\n{start} --> {end}\n{text}\n\n" for index, (start, end, text) in enumerate(cues, 1)
        )
    return "WEBVTT\n\n" + "".join(f"{start} --> {end}\n{text}\n\n" for start, end, text in cues)


def verbose(transcript: Transcript, granularities: frozenset[str]) -> TranscriptionVerbose:
    with_segments = "segment" in granularities or not granularities
    with_words = "word" in granularities
    segments = timed_segments(transcript)
    return TranscriptionVerbose(
        task=transcript.task,
        language=language_name(transcript.language),
        duration=transcript.duration,
        text=transcript.text,
        segments=[SegmentOut.model_validate(segment.model_dump(exclude={"words"})) for segment in segments]
        if with_segments
        else None,
        words=[
            WordOut(word=word.word.strip(), start=word.start, end=word.end)
            for segment in segments
            for word in segment.words or []
        ]
        if with_words
        else None,
        usage=usage(transcript),
    )


def render(
    transcript: Transcript, response_format: ResponseFormat, granularities: frozenset[str] = frozenset()
) -> tuple[BaseModel | str, str]:
    """The response body (a model for json/verbose_json, text otherwise) and its media type.

    `granularities` (`word`, `segment`) matter for verbose_json only.
    """
    if response_format == "json":
        body = TranscriptionJson(
            text=transcript.text, languages=languages(transcript), usage=usage(transcript)
        )
        return body, JSON_MEDIA_TYPE
    if response_format == "verbose_json":
        return verbose(transcript, granularities), JSON_MEDIA_TYPE
    if response_format == "text":
        return transcript.text + "\n", TEXT_MEDIA_TYPE
    if response_format in ("srt", "vtt"):
        return subtitles(timed_segments(transcript), response_format), TEXT_MEDIA_TYPE
    if response_format == "diarized_json":
        return diarized(transcript), JSON_MEDIA_TYPE
    raise ValueError(f"unknown response_format {response_format!r}")


def diarized_segments(transcript: Transcript) -> list[TranscriptionDiarizedSegment]:
    """The speaker segments as diarized_json shows them: ids `seg_0`, `seg_1`, ..., times within the
    audio, text without its leading space."""
    if transcript.speakers is None:
        raise ValueError("diarized_json needs a diarized transcript")
    duration = transcript.duration
    return [
        TranscriptionDiarizedSegment(
            id=f"seg_{index}",
            start=_within(segment.start, duration),
            end=_within(segment.end, duration),
            speaker=segment.speaker,
            text=segment.text.strip(),
        )
        for index, segment in enumerate(transcript.speakers.segments)
    ]


def diarized(transcript: Transcript) -> TranscriptionDiarized:
    return TranscriptionDiarized(
        duration=transcript.duration,
        text=transcript.text,
        segments=diarized_segments(transcript),
        usage=usage(transcript),
    )
