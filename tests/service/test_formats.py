"""Every response format, from hand-made transcripts (exact output) and from a real one (structure)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_api.formats import JSON_MEDIA_TYPE, TEXT_MEDIA_TYPE, render
from whisper_api.languages import language_name
from whisper_api.schemas import Segment, Transcript, TranscriptionJson, TranscriptionVerbose, Word

SERVICE = Path(__file__).resolve().parents[2] / "service"


def segment(index: int, start: float, end: float, text: str, words: list[Word] | None = None) -> Segment:
    return Segment(
        id=index,
        seek=int(start * 100),
        start=start,
        end=end,
        text=text,
        tokens=[50364 + index, 440],
        temperature=0.2,
        avg_logprob=-0.25,
        compression_ratio=1.1,
        no_speech_prob=0.02,
        words=words,
    )


@pytest.fixture
def transcript() -> Transcript:
    greeting = [
        Word(word=" Hello", start=0.0, end=0.6, probability=0.9),
        Word(word=" there.", start=0.6, end=2.5, probability=0.8),
    ]
    arrow = [
        Word(word=" A", start=3661.004, end=3661.5),
        Word(word=" -->", start=3661.5, end=3662.0),
        Word(word=" B", start=3662.0, end=3662.5),
    ]
    return Transcript(
        task="transcribe",
        language="en",
        duration=3725.5,
        segments=[
            segment(0, 0.0, 2.5, " Hello there.", greeting),
            segment(1, 3661.004, 3662.5, " A --> B", arrow),
        ],
    )


def test_json(transcript: Transcript) -> None:
    body, media_type = render(transcript, "json", frozenset())
    assert media_type == JSON_MEDIA_TYPE
    assert isinstance(body, TranscriptionJson)
    # usage as OpenAI bills whisper-1: whole seconds of audio, rounded up.
    assert body.model_dump() == {
        "text": "Hello there. A --> B",
        "languages": [{"code": "en"}],
        "usage": {"type": "duration", "seconds": 3726},
    }


def test_json_lists_each_language_decoded_once_in_order_of_appearance(transcript: Transcript) -> None:
    first, *rest = transcript.segments
    segments = [first.model_copy(update={"language": "en"})]
    segments += [segment.model_copy(update={"language": "de"}) for segment in rest]
    segments.append(first.model_copy(update={"language": "en"}))
    body, _ = render(transcript.model_copy(update={"segments": segments}), "json", frozenset())
    assert isinstance(body, TranscriptionJson)
    assert [language.code for language in body.languages] == ["en", "de"]


def test_text_ends_with_a_newline(transcript: Transcript) -> None:
    assert render(transcript, "text", frozenset()) == ("Hello there. A --> B\n", TEXT_MEDIA_TYPE)


def test_srt(transcript: Transcript) -> None:
    body, media_type = render(transcript, "srt", frozenset())
    assert media_type == TEXT_MEDIA_TYPE
    assert body == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n01:01:01,004 --> 01:01:02,500\nA -> B\n\n"  # "-->" in text would end the cue line
    )


def test_vtt(transcript: Transcript) -> None:
    body, media_type = render(transcript, "vtt", frozenset())
    assert media_type == TEXT_MEDIA_TYPE
    assert body == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nHello there.\n\n"  # always with hours, as OpenAI writes VTT
        "01:01:01.004 --> 01:01:02.500\nA -> B\n\n"
    )


def test_ids_count_from_zero_and_no_time_passes_the_end_of_the_audio() -> None:
    """faster-whisper numbers segments from 1 and rounds the last end up to its window."""
    words = [Word(word=" Bye", start=3.2, end=3.9), Word(word=" now.", start=3.9, end=4.4)]
    transcript = Transcript(
        task="transcribe",
        language="en",
        duration=4.0,
        segments=[segment(1, 0.0, 2.0, " Hi."), segment(2, 3.2, 4.4, " Bye now.", words)],
    )
    body, _ = render(transcript, "verbose_json", frozenset({"word", "segment"}))
    data = body.model_dump()
    assert [item["id"] for item in data["segments"]] == [0, 1]
    assert data["segments"][1]["end"] == 4.0 and data["words"][-1] == {
        "word": "now.",
        "start": 3.9,
        "end": 4.0,
    }
    assert render(transcript, "srt", frozenset())[0].splitlines()[5] == "00:00:03,200 --> 00:00:04,000"
    assert render(transcript, "vtt", frozenset())[0].splitlines()[5] == "00:00:03.200 --> 00:00:04.000"


def test_subtitles_of_an_empty_transcript() -> None:
    empty = Transcript(task="transcribe", language="en", duration=3.0, segments=[])
    assert render(empty, "srt", frozenset())[0] == ""
    assert render(empty, "vtt", frozenset())[0] == "WEBVTT\n\n"
    assert render(empty, "text", frozenset())[0] == "\n"
    assert render(empty, "json", frozenset())[0].model_dump() == {
        "text": "",
        "languages": [],  # no speech: no language heard
        "usage": {"type": "duration", "seconds": 3},
    }


SEGMENT_KEYS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


@pytest.mark.parametrize("granularities", [frozenset(), frozenset({"segment"})])
def test_verbose_json_with_segments(transcript: Transcript, granularities: frozenset[str]) -> None:
    body, media_type = render(transcript, "verbose_json", granularities)
    assert media_type == JSON_MEDIA_TYPE
    data = json.loads(body.model_dump_json())
    assert set(data) == {"task", "language", "duration", "text", "segments", "usage"}
    assert data["usage"] == {"type": "duration", "seconds": 3726}
    assert (data["task"], data["language"], data["duration"]) == ("transcribe", "english", 3725.5)
    assert data["text"] == "Hello there. A --> B"
    assert [set(item) for item in data["segments"]] == [SEGMENT_KEYS, SEGMENT_KEYS]
    first = data["segments"][0]
    assert first == {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": 2.5,
        "text": " Hello there.",
        "tokens": [50364, 440],
        "temperature": 0.2,
        "avg_logprob": -0.25,
        "compression_ratio": 1.1,
        "no_speech_prob": 0.02,
    }


def test_verbose_json_with_words_only(transcript: Transcript) -> None:
    body, _ = render(transcript, "verbose_json", frozenset({"word"}))
    data = json.loads(body.model_dump_json())
    assert "segments" not in data  # as OpenAI: only what was asked for
    assert data["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.6},
        {"word": "there.", "start": 0.6, "end": 2.5},
        {"word": "A", "start": 3661.004, "end": 3661.5},
        {"word": "-->", "start": 3661.5, "end": 3662.0},
        {"word": "B", "start": 3662.0, "end": 3662.5},
    ]


def test_verbose_json_with_words_and_segments(transcript: Transcript) -> None:
    body, _ = render(transcript, "verbose_json", frozenset({"word", "segment"}))
    assert isinstance(body, TranscriptionVerbose)
    data = body.model_dump()
    assert len(data["segments"]) == 2 and len(data["words"]) == 5
    assert "words" not in data["segments"][0]


def test_translation_reports_task_translate(transcript: Transcript) -> None:
    translated = transcript.model_copy(update={"task": "translate"})
    body, _ = render(translated, "verbose_json", frozenset())
    assert body.model_dump()["task"] == "translate"


@pytest.mark.parametrize(("code", "name"), [("en", "english"), ("de", "german"), ("yue", "cantonese")])
def test_language_names_as_openai_writes_them(code: str, name: str) -> None:
    assert language_name(code) == name


def test_unknown_format_is_a_programming_error(transcript: Transcript) -> None:
    with pytest.raises(ValueError, match="unknown response_format"):
        render(transcript, "docx", frozenset())  # type: ignore[arg-type]


def test_formats_need_neither_openai_whisper_nor_torch() -> None:
    """The faster-whisper image carries neither: every format must render without them."""
    code = (
        "import importlib.abc, sys\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'whisper', 'tiktoken', 'torch'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "from whisper_api.formats import render\n"
        "from whisper_api.schemas import Segment, Transcript\n"
        "segment = Segment(id=0, seek=0, start=0, end=1.5, text=' Hi.', tokens=[1], temperature=0,\n"
        "                  avg_logprob=0, compression_ratio=1, no_speech_prob=0)\n"
        "transcript = Transcript(task='transcribe', language='de', duration=2.0, segments=[segment])\n"
        "for name in ('json', 'text', 'srt', 'vtt', 'verbose_json'):\n"
        "    body, _ = render(transcript, name)\n"
        "    print(body if isinstance(body, str) else body.model_dump_json())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SERVICE), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "1\n00:00:00,000 --> 00:00:01,500\nHi." in result.stdout
    assert '"language":"german"' in result.stdout


def _reference(module: str):  # openai-whisper's own file, loaded without its package (and torch)
    import importlib.util

    package = importlib.util.find_spec("whisper")
    assert package is not None and package.origin is not None
    spec = importlib.util.spec_from_file_location(
        f"reference_{module}", Path(package.origin).parent / f"{module}.py"
    )
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def reference_subtitles(transcript: Transcript, response_format: str) -> str:
    """openai-whisper's writer on the segments as responses show them; VTT with hours, as OpenAI's API."""
    import io

    from whisper_api.formats import timed_segments

    utils = _reference("utils")
    writer = utils.WriteSRT(output_dir="") if response_format == "srt" else utils.WriteVTT(output_dir="")
    writer.always_include_hours = True
    out = io.StringIO()
    segments = [{"start": s.start, "end": s.end, "text": s.text} for s in timed_segments(transcript)]
    writer.write_result({"segments": segments}, file=out)
    return out.getvalue()


def test_language_names_are_openai_whispers() -> None:
    from whisper_api.languages import LANGUAGE_NAMES

    assert _reference("tokenizer").LANGUAGES == LANGUAGE_NAMES


@pytest.mark.parametrize("response_format", ["srt", "vtt"])
def test_subtitles_are_byte_for_byte_openai_whispers(
    transcript: Transcript, transcribed, response_format: str
) -> None:
    real = transcribed("faster-whisper", "long.ogg", word_timestamps=True)
    for case in (transcript, real, Transcript(task="transcribe", language="en", duration=1.0, segments=[])):
        assert render(case, response_format)[0] == reference_subtitles(case, response_format)


SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)")


def seconds(hours: str, minutes: str, secs: str, millis: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000


def test_real_transcript_in_every_format(transcribed) -> None:
    """The long clip through faster-whisper: one SRT/VTT cue per segment, at the segment's times."""
    transcript = transcribed("faster-whisper", "long.ogg", word_timestamps=True)
    srt, _ = render(transcript, "srt", frozenset())
    cues = [SRT_CUE.fullmatch(block) for block in srt.strip().split("\n\n")]
    assert all(cues) and len(cues) == len(transcript.segments)
    for cue, seg in zip(cues, transcript.segments, strict=True):
        assert seconds(*cue.group(2, 3, 4, 5)) == pytest.approx(seg.start, abs=0.001)
        assert seconds(*cue.group(6, 7, 8, 9)) == pytest.approx(min(seg.end, transcript.duration), abs=0.001)
        assert cue.group(10) == seg.text.strip()
    assert max(seconds(*cue.group(6, 7, 8, 9)) for cue in cues) > 30

    vtt, _ = render(transcript, "vtt", frozenset())
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(transcript.segments)

    verbose, _ = render(transcript, "verbose_json", frozenset({"word", "segment"}))
    data = json.loads(verbose.model_dump_json())
    assert data["duration"] == pytest.approx(transcript.duration)
    assert data["language"] == "english"
    assert len(data["segments"]) == len(transcript.segments)
    assert len(data["words"]) == len(transcript.words)
    assert " ".join(word["word"] for word in data["words"]) == data["text"]
