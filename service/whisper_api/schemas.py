"""Models shared by the routes, the engines and the formats.

`Transcript` is the engine-neutral result: both engines return it, every response format is
rendered from it. HTTP request/response models live here too, below the engine-neutral part.
"""

from typing import Literal

from pydantic import BaseModel, Field

Task = Literal["transcribe", "translate"]
ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
TimestampGranularity = Literal["word", "segment"]


class TranscribeOptions(BaseModel):
    """What the caller asked for, already validated; engines map it onto their own arguments."""

    task: Task = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = Field(None, ge=0, le=1, description="None: the fallback schedule.")
    word_timestamps: bool = False
    # False when the response format shows no timestamps (json, text): decoding is cheaper.
    with_timestamps: bool = True


class Word(BaseModel):
    word: str
    start: float
    end: float
    probability: float | None = None


class Segment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None


class Transcript(BaseModel):
    task: Task
    language: str
    duration: float
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for word in segment.words or []]
