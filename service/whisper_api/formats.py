"""Transcript → the five OpenAI response formats: json, text, srt, vtt, verbose_json.

Subtitles are written by openai-whisper's own writers (`whisper.utils.WriteSRT` / `WriteVTT`),
so timestamps match the reference implementation; VTT cues always carry hours (`00:00:08.000`),
as OpenAI's API writes them. Segment ids count from 0, and no time ends after the audio does,
whichever engine decoded it. `import whisper.utils` would run the
`whisper` package's `__init__`, which imports torch (about a second and hundreds of MB that a
faster-whisper service never needs); `whisper/utils.py` and `whisper/tokenizer.py` themselves use
no torch, so they are loaded from their files on their own.

Media types: `application/json` for json and verbose_json, `text/plain; charset=utf-8` for text,
srt and vtt (as OpenAI answers).
"""

from __future__ import annotations

import importlib.util
import io
import math
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from whisper_api.schemas import (
    ResponseFormat,
    Segment,
    SegmentOut,
    Transcript,
    TranscriptionJson,
    TranscriptionVerbose,
    Usage,
    WordOut,
)

JSON_MEDIA_TYPE = "application/json"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"


@cache
def whisper_module(name: str) -> ModuleType:
    """`whisper.<name>` without importing the `whisper` package (and torch) when it is not loaded yet."""
    qualified = f"whisper.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    package = importlib.util.find_spec("whisper")  # finds, does not import, a top-level package
    if package is None or package.origin is None:
        raise ImportError("openai-whisper is not installed")
    spec = importlib.util.spec_from_file_location(
        f"whisper_api._whisper_{name}", Path(package.origin).parent / f"{name}.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {qualified}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def language_name(code: str) -> str:
    """`en` → `english`, as OpenAI's verbose_json names languages; unknown codes pass through."""
    return whisper_module("tokenizer").LANGUAGES.get(code, code)


def usage(transcript: Transcript) -> Usage:
    return Usage(seconds=math.ceil(transcript.duration))


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


@cache
def _writers() -> dict[str, Any]:
    utils = whisper_module("utils")

    class WriteVTTWithHours(utils.WriteVTT):  # type: ignore[name-defined,misc]
        always_include_hours = True

    return {"srt": utils.WriteSRT, "vtt": WriteVTTWithHours}


def subtitles(segments: list[Segment], response_format: str) -> str:
    """SRT or WebVTT text, written by openai-whisper's writer into memory."""
    writer = _writers()[response_format](output_dir="")
    buffer = io.StringIO()
    # Segment-level cues, as OpenAI's srt/vtt: no "words" key, so the writers keep one cue per segment.
    result = {"segments": [{"start": s.start, "end": s.end, "text": s.text} for s in segments]}
    writer.write_result(result, file=buffer)
    return buffer.getvalue()


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
        return TranscriptionJson(text=transcript.text, usage=usage(transcript)), JSON_MEDIA_TYPE
    if response_format == "verbose_json":
        return verbose(transcript, granularities), JSON_MEDIA_TYPE
    if response_format == "text":
        return transcript.text + "\n", TEXT_MEDIA_TYPE
    if response_format in ("srt", "vtt"):
        return subtitles(timed_segments(transcript), response_format), TEXT_MEDIA_TYPE
    raise ValueError(f"unknown response_format {response_format!r}")
