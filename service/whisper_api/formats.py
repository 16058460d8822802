"""Transcript → the five OpenAI response formats: json, text, srt, vtt, verbose_json.

Subtitles and language names follow openai-whisper's reference (`whisper.utils.WriteSRT` /
`WriteVTT`, `whisper.tokenizer.LANGUAGES`) byte for byte; tests compare them with it. They are
written here rather than loaded from openai-whisper because the faster-whisper image carries
neither openai-whisper nor torch (service/requirements-image-faster-whisper.txt).

Media types: `application/json` for json and verbose_json, `text/plain; charset=utf-8` for text,
srt and vtt (as OpenAI answers).
"""

from __future__ import annotations

from pydantic import BaseModel

from whisper_api.schemas import (
    ResponseFormat,
    SegmentOut,
    Transcript,
    TranscriptionJson,
    TranscriptionVerbose,
    WordOut,
)

JSON_MEDIA_TYPE = "application/json"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"


# openai-whisper's `whisper.tokenizer.LANGUAGES`: ISO 639-1 code → the English name verbose_json shows.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}


def language_name(code: str) -> str:
    """`en` → `english`, as OpenAI's verbose_json names languages; unknown codes pass through."""
    return LANGUAGE_NAMES.get(code, code)


def timestamp(seconds: float, *, always_include_hours: bool, decimal_marker: str) -> str:
    """`whisper.utils.format_timestamp`: `01:02:03,004` (SRT) or `02:03.004` (WebVTT under an hour)."""
    milliseconds = round(max(seconds, 0.0) * 1000.0)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole_seconds, milliseconds = divmod(milliseconds, 1_000)
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{whole_seconds:02d}{decimal_marker}{milliseconds:03d}"


def subtitles(transcript: Transcript, response_format: str) -> str:
    """SRT or WebVTT with one cue per segment, as openai-whisper's WriteSRT / WriteVTT write it."""
    srt = response_format == "srt"
    cues = [
        (
            timestamp(segment.start, always_include_hours=srt, decimal_marker="," if srt else "."),
            timestamp(segment.end, always_include_hours=srt, decimal_marker="," if srt else "."),
            segment.text.strip().replace("-->", "->"),  # "-->" in the text would end the cue line
        )
        for segment in transcript.segments
    ]
    if srt:
        return "".join(
            f"{index}\n{start} --> {end}\n{text}\n\n" for index, (start, end, text) in enumerate(cues, 1)
        )
    return "WEBVTT\n\n" + "".join(f"{start} --> {end}\n{text}\n\n" for start, end, text in cues)


def verbose(transcript: Transcript, granularities: frozenset[str]) -> TranscriptionVerbose:
    with_segments = "segment" in granularities or not granularities
    with_words = "word" in granularities
    return TranscriptionVerbose(
        task=transcript.task,
        language=language_name(transcript.language),
        duration=transcript.duration,
        text=transcript.text,
        segments=[
            SegmentOut.model_validate(segment.model_dump(exclude={"words"}))
            for segment in transcript.segments
        ]
        if with_segments
        else None,
        words=[WordOut(word=word.word.strip(), start=word.start, end=word.end) for word in transcript.words]
        if with_words
        else None,
    )


def render(
    transcript: Transcript, response_format: ResponseFormat, granularities: frozenset[str] = frozenset()
) -> tuple[BaseModel | str, str]:
    """The response body (a model for json/verbose_json, text otherwise) and its media type.

    `granularities` (`word`, `segment`) matter for verbose_json only.
    """
    if response_format == "json":
        return TranscriptionJson(text=transcript.text), JSON_MEDIA_TYPE
    if response_format == "verbose_json":
        return verbose(transcript, granularities), JSON_MEDIA_TYPE
    if response_format == "text":
        return transcript.text + "\n", TEXT_MEDIA_TYPE
    if response_format in ("srt", "vtt"):
        return subtitles(transcript, response_format), TEXT_MEDIA_TYPE
    raise ValueError(f"unknown response_format {response_format!r}")
