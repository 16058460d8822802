"""Both engines on the real bundled tiny.en and real speech clips, and the device/compute choice."""

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from difflib import SequenceMatcher
from itertools import pairwise
from pathlib import Path

import ctranslate2
import numpy as np
import pytest

from whisper_api.engines import (
    EngineConfigError,
    choose_compute_type,
    choose_device,
    load_engine,
    openai_supported_compute_types,
)
from whisper_api.engines.base import SAMPLE_RATE, TranscriptionCancelled
from whisper_api.models import StartupError
from whisper_api.schemas import Segment, TranscribeOptions

HAS_CUDA = ctranslate2.get_cuda_device_count() > 0


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, words(a), words(b)).ratio()


# --- device and compute type: pure functions, so the GPU branches are tested on CPU ------------


@pytest.mark.parametrize(
    ("requested", "gpus", "chosen"),
    [("auto", 0, "cpu"), ("auto", 1, "cuda"), ("cpu", 2, "cpu"), ("cuda", 1, "cuda")],
)
def test_choose_device(requested: str, gpus: int, chosen: str) -> None:
    assert choose_device(requested, gpus) == chosen


def test_cuda_without_a_gpu_fails_naming_the_setting() -> None:
    with pytest.raises(EngineConfigError, match="WHISPER_DEVICE=cuda"):
        choose_device("cuda", 0)


@pytest.mark.parametrize(
    ("engine", "device", "chosen"),
    [
        ("faster-whisper", "cpu", "int8"),
        ("faster-whisper", "cuda", "float16"),
        ("openai-whisper", "cpu", "float32"),
        ("openai-whisper", "cuda", "float16"),
    ],
)
def test_auto_compute_type(engine: str, device: str, chosen: str) -> None:
    supported = {"int8", "int8_float32", "float32", "float16", "int8_float16"}
    assert choose_compute_type(engine, device, "auto", supported) == chosen


def test_explicit_compute_type_is_kept_when_supported() -> None:
    cpu_types = ctranslate2.get_supported_compute_types("cpu")
    assert choose_compute_type("faster-whisper", "cpu", "float32", cpu_types) == "float32"
    assert choose_compute_type(
        "openai-whisper", "cuda", "float32", openai_supported_compute_types("cuda")
    ) == ("float32")


def test_float16_on_cpu_fails_for_openai_whisper() -> None:
    with pytest.raises(EngineConfigError, match=r"WHISPER_COMPUTE_TYPE=float16.*float16 only on CUDA"):
        choose_compute_type("openai-whisper", "cpu", "float16", openai_supported_compute_types("cpu"))


def test_unsupported_ctranslate2_type_on_cpu_fails() -> None:
    cpu_types = ctranslate2.get_supported_compute_types("cpu")
    assert "float16" not in cpu_types  # this CPU build of CTranslate2 has no float16 kernels
    with pytest.raises(EngineConfigError, match="choose one of"):
        choose_compute_type("faster-whisper", "cpu", "float16", cpu_types)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without a GPU")
@pytest.mark.parametrize("engine_name", ["faster-whisper", "openai-whisper"])
def test_load_engine_refuses_cuda_without_gpu(make_settings, engine_name: str) -> None:
    with pytest.raises(StartupError, match="no CUDA GPU"):
        load_engine(make_settings(engine_name, device="cuda"))


def test_load_engine_refuses_float16_openai_on_cpu(make_settings) -> None:
    with pytest.raises(StartupError, match="float16"):
        load_engine(make_settings("openai-whisper", compute_type="float16"))


def test_faster_whisper_service_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from whisper_api.engines import load_engine\n"
        "from whisper_api.formats import render\n"
        "from whisper_api.settings import Settings\n"
        "settings = Settings(engine='faster-whisper', model='tiny.en', model_dir=None, device='cpu')\n"
        "engine = load_engine(settings)\n"
        "print(engine.name, 'torch' in sys.modules, 'whisper' in sys.modules)\n"
    )
    service = Path(__file__).resolve().parents[2] / "service"
    env = {**os.environ, "PYTHONPATH": str(service)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, env=env
    )
    assert result.stdout.split() == ["faster-whisper", "False", "False"]


# --- both engines, real audio --------------------------------------------------------------------


def test_engine_describes_itself(engine) -> None:
    assert engine.name in ("faster-whisper", "openai-whisper")
    assert engine.model == "tiny.en"
    assert engine.device == "cpu"
    assert engine.compute_type == ("int8" if engine.name == "faster-whisper" else "float32")
    assert engine.multilingual is False


def test_short_clip_gives_the_spoken_words(engine, short_clip, expected_text) -> None:
    transcript = engine.transcribe(short_clip, TranscribeOptions())
    assert words(transcript.text) == words(expected_text["short"])
    assert transcript.language == "en"
    assert transcript.task == "transcribe"
    assert transcript.duration == pytest.approx(len(short_clip) / SAMPLE_RATE)


def test_every_segment_field_is_filled(engine, short_clip) -> None:
    transcript = engine.transcribe(short_clip, TranscribeOptions())
    assert transcript.segments
    for index, segment in enumerate(transcript.segments):
        assert segment.id == index or segment.id == index + 1  # openai-whisper counts from 0, faster from 1
        assert segment.seek >= 0
        assert 0 <= segment.start < segment.end <= transcript.duration + 0.5
        assert segment.text.strip()
        assert segment.tokens and all(isinstance(token, int) for token in segment.tokens)
        assert 0 <= segment.temperature <= 1
        assert segment.avg_logprob < 0
        assert segment.compression_ratio > 0
        assert 0 <= segment.no_speech_prob <= 1
        assert segment.words is None  # not asked for


def test_long_clip_is_transcribed_past_30_seconds(engine, transcribed, long_clip, expected_text) -> None:
    duration = len(long_clip) / SAMPLE_RATE
    assert duration > 35
    transcript = transcribed(engine.name, "long.ogg")
    assert transcript.duration == pytest.approx(duration)
    assert transcript.segments[-1].end > 30
    assert similarity(transcript.text, expected_text["long"]) > 0.9
    assert words(transcript.text)[-4:] == words(expected_text["long"])[-4:]  # the end is there


def test_word_timestamps_are_monotonic_and_inside_the_audio(engine, transcribed) -> None:
    transcript = transcribed(engine.name, "long.ogg", word_timestamps=True)
    duration = transcript.duration
    spoken = transcript.words
    assert len(spoken) > 50
    assert any(word.start > 30 for word in spoken)
    for word in spoken:
        assert 0 <= word.start <= word.end <= duration + 0.01
        assert word.probability is not None and 0 <= word.probability <= 1
    starts = [word.start for word in spoken]
    assert starts == sorted(starts)
    for previous, following in pairwise(spoken):
        assert following.start >= previous.end - 0.01
    assert words("".join(word.word for word in spoken)) == words(transcript.text)


def test_fixed_temperature_and_prompt_are_accepted(engine, short_clip, expected_text) -> None:
    options = TranscribeOptions(temperature=0.0, prompt="A sentence about a fox and a dog.")
    transcript = engine.transcribe(short_clip, options)
    assert similarity(transcript.text, expected_text["short"]) > 0.8
    assert all(segment.temperature == 0.0 for segment in transcript.segments)


def test_translate_on_an_english_only_model_transcribes_english(engine, short_clip, expected_text) -> None:
    transcript = engine.transcribe(short_clip, TranscribeOptions(task="translate"))
    assert transcript.task == "translate"
    assert transcript.language == "en"
    assert words(transcript.text) == words(expected_text["short"])


def test_concurrent_calls_from_a_thread_pool(engine, short_clip, expected_text) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: engine.transcribe(short_clip, TranscribeOptions()), range(3)))
    for transcript in results:
        assert words(transcript.text) == words(expected_text["short"])


@pytest.mark.parametrize("clip", ["short.wav", "long.ogg"])
def test_converted_openai_whisper_matches_faster_whisper(transcribed, clip: str) -> None:
    """The converter's proof: the same weights through openai-whisper give faster-whisper's words."""
    faster = transcribed("faster-whisper", clip)
    reference = transcribed("openai-whisper", clip)
    assert words(faster.text)
    assert words(reference.text) == words(faster.text)


def test_silence_gives_no_text_with_vad(engines, silence_clip) -> None:
    transcript = engines["faster-whisper"].transcribe(silence_clip, TranscribeOptions())
    assert transcript.text == ""
    assert transcript.segments == []
    assert transcript.duration == pytest.approx(3.0, abs=0.05)


def test_silence_is_near_empty_for_openai_whisper(engines, silence_clip) -> None:
    """No VAD in openai-whisper: at most a stray word, and the model knows it heard no speech."""
    transcript = engines["openai-whisper"].transcribe(silence_clip, TranscribeOptions())
    assert len(words(transcript.text)) <= 2
    assert all(segment.no_speech_prob > 0.3 for segment in transcript.segments)


def test_batched_pipeline_transcribes_the_whole_file(make_settings, long_clip, expected_text) -> None:
    engine = load_engine(make_settings("faster-whisper", batch_size=4))
    transcript = engine.transcribe(long_clip, TranscribeOptions(word_timestamps=True))
    assert transcript.segments[-1].end > 30
    assert similarity(transcript.text, expected_text["long"]) > 0.9
    assert transcript.words


def test_batched_pipeline_times_each_utterance_not_each_chunk(make_settings, long_clip) -> None:
    """faster-whisper's batched default (no timestamps: one segment per 30 s chunk) lost a third of
    the words of long audio; segments as long as a chunk would mean it is back."""
    engine = load_engine(make_settings("faster-whisper", batch_size=4))
    transcript = engine.transcribe(long_clip, TranscribeOptions())
    assert max(segment.end - segment.start for segment in transcript.segments) < 15


def test_audio_is_never_trimmed_to_a_window(engines, short_clip) -> None:
    """Speech placed after 60 s of silence is still found (VAD skips the silence, the rest decodes)."""
    padded = np.concatenate([np.zeros(60 * SAMPLE_RATE, dtype=np.float32), short_clip])
    transcript = engines["faster-whisper"].transcribe(padded, TranscribeOptions())
    assert "fox" in words(transcript.text)
    assert transcript.segments[0].start >= 59


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 3), (8, 7)])
def test_faster_whisper_leaves_one_cpu_free_for_decoding_and_the_loop(cpus: int, threads: int) -> None:
    from whisper_api.engines.faster import default_cpu_threads

    assert default_cpu_threads(cpus) == threads


def test_on_segment_sees_every_segment_as_it_is_decoded(engine, transcribed, long_clip) -> None:
    seen: list[Segment] = []
    transcript = engine.transcribe(long_clip, TranscribeOptions(), on_segment=seen.append)
    assert len(seen) > 1
    assert seen == transcript.segments
    assert transcript.text == transcribed(engine.name, "long.ogg").text  # the hooks change nothing


def test_cancel_stops_within_one_window_and_the_engine_serves_the_next_call(
    engine, long_clip, short_clip, expected_text
) -> None:
    """Cancelled at the first segment, the engine stops before the end of the 40 s clip (for
    openai-whisper: at the end of the first 30 s window) and is free for the next call."""
    cancel = threading.Event()
    seen: list[Segment] = []

    def first_segment_cancels(segment: Segment) -> None:
        seen.append(segment)
        cancel.set()

    with pytest.raises(TranscriptionCancelled) as raised:
        engine.transcribe(long_clip, TranscribeOptions(), on_segment=first_segment_cancels, cancel=cancel)
    assert raised.value.segments_done == len(seen) >= 1
    assert seen[-1].end <= 30.5  # nothing past the first window was decoded
    transcript = engine.transcribe(short_clip, TranscribeOptions())
    assert words(transcript.text) == words(expected_text["short"])


def test_a_call_cancelled_before_it_starts_decodes_nothing(engine, short_clip) -> None:
    cancel = threading.Event()
    cancel.set()
    seen: list[Segment] = []
    with pytest.raises(TranscriptionCancelled):
        engine.transcribe(short_clip, TranscribeOptions(), on_segment=seen.append, cancel=cancel)
    assert seen == []


def test_vad_by_pieces_keeps_speech_that_runs_over_a_piece_boundary(
    engines, transcribed, long_clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VAD runs over 5-minute pieces; cut every 20 s instead, the 40 s clip loses no speech."""
    from whisper_api.engines import faster

    boundary = 625 * 512  # 20 s
    monkeypatch.setattr(faster, "VAD_PIECE_SAMPLES", boundary)
    chunks = faster.speech_chunks(long_clip)
    assert any(c["start"] < boundary < c["end"] for c in chunks)  # one chunk across the cut
    transcript = engines["faster-whisper"].transcribe(long_clip, TranscribeOptions())
    assert similarity(transcript.text, transcribed("faster-whisper", "long.ogg").text) > 0.95


def test_speech_groups_hold_at_most_a_group_of_speech_and_keep_every_chunk() -> None:
    from whisper_api.engines import faster

    size = faster.SPEECH_GROUP_SAMPLES
    chunks = [{"start": i * size, "end": i * size + size // 3} for i in range(7)]
    chunks.append({"start": 8 * size, "end": 10 * size + 5})  # longer than a group: cut to size
    groups = faster.speech_groups(chunks)
    assert [chunk for group in groups for chunk in group][:7] == chunks[:7]
    assert [len(group) for group in groups] == [3, 3, 1, 1, 1, 1]
    assert groups[-3] == [{"start": 8 * size, "end": 9 * size}]
    assert groups[-1] == [{"start": 10 * size, "end": 10 * size + 5}]
    assert all(sum(c["end"] - c["start"] for c in group) <= size for group in groups)
    assert faster.speech_groups([]) == []


def test_long_speech_is_decoded_a_group_at_a_time_with_its_own_timestamps(
    engines, transcribed, long_clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Features are computed for one group of speech at a time (memory no longer grows with the
    file); cut into ~10 s groups, the 40 s clip keeps its words and its timeline."""
    from whisper_api.engines import faster

    engine = engines["faster-whisper"]
    fed: list[int] = []
    original = engine._whisper.transcribe

    def recording(audio: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
        fed.append(audio.shape[0])
        return original(audio, **kwargs)

    monkeypatch.setattr(faster, "SPEECH_GROUP_SAMPLES", 10 * SAMPLE_RATE)
    monkeypatch.setattr(engine._whisper, "transcribe", recording)
    transcript = engine.transcribe(long_clip, TranscribeOptions(prompt="Weekly meeting."))
    assert len(fed) >= 3
    assert sum(fed) <= long_clip.shape[0]
    assert similarity(transcript.text, transcribed("faster-whisper", "long.ogg").text) > 0.9
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1].end > 30


def test_pieces_skipped_as_digital_silence_are_ones_silero_finds_no_speech_in() -> None:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from whisper_api.engines.base import as_float32
    from whisper_api.engines.faster import DIGITAL_SILENCE, is_digital_silence

    dither = np.random.default_rng(0).integers(-DIGITAL_SILENCE, DIGITAL_SILENCE + 1, 60 * SAMPLE_RATE)
    dither = dither.astype(np.int16)
    assert is_digital_silence(dither) and is_digital_silence(as_float32(dither))
    assert get_speech_timestamps(as_float32(dither), VadOptions()) == []
    assert not is_digital_silence(dither * 2)


# --- what a transcript must not lose, or invent ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "loop"),
    [
        (" We had to focus on the rest of the rest of the rest of the rest of the rest.", True),
        (" the the the the the the the the", True),
        (" Thank you. Thank you. Thank you. Thank you. Thank you.", True),
        (" No, no, no, no.", False),  # said, not looped: too few words
        (" Permission is hereby granted, free of charge, to any person obtaining a copy.", False),
        (" We will test it, test it again, and test it once more.", False),
    ],
)
def test_a_repetition_loop_is_a_phrase_said_over_and_over(text: str, loop: bool) -> None:
    from whisper_api.engines.code_switching import is_repetition_loop

    assert is_repetition_loop(text) is loop


def test_a_segment_that_repeats_itself_is_dropped_and_the_speech_around_it_kept(engine) -> None:
    """repetition.ogg says what a decoder that lost its way writes ("the rest of the rest of ...")."""
    from tests.support.engines import load_clip

    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([load_clip("short.ogg"), pause, load_clip("repetition.ogg")])
    transcript = engine.transcribe(audio, TranscribeOptions(language="en"))
    assert "fox" in transcript.text.lower()
    assert "the rest" not in transcript.text.lower()  # tiny.en hears "on the rest, on the rest, ..."


def test_word_mode_keeps_every_word_of_minutes_of_speech(engines, tmp_path: Path) -> None:
    """5.4 minutes (long.ogg 8 times, over a group boundary): asking for words loses nothing."""
    from tests.support.engines import load_clip

    engine = engines["faster-whisper"]
    audio = np.tile(load_clip("long.ogg"), 8)
    plain = engine.transcribe(audio, TranscribeOptions())
    timed = engine.transcribe(audio, TranscribeOptions(word_timestamps=True))
    # Word mode moves each next window to the last word's end, so a word may differ here and there;
    # a lost sentence would not: the same words in order, up to the same end.
    import jiwer

    assert jiwer.wer(" ".join(words(plain.text)), " ".join(words(timed.text))) <= 0.03
    assert abs(len(words(timed.text)) - len(words(plain.text))) <= 5
    assert (
        words(timed.text)[-9:]
        == words(plain.text)[-9:]
        == words("Thank you all for your hard work this month.")
    )
    assert timed.words[-1].end >= plain.segments[-1].end - 2.0


@pytest.mark.parametrize("skip", ["a segment claims the time", "a gap before a segment"])
def test_speech_a_window_skips_is_decoded_again(engines, skip: str) -> None:
    """The decoder's failure on the long-form bench (jfk after the MIT licence, only in the shared
    recordings): a window's text leaves out the next sentence. In json one segment's timestamps claim
    its time; with word timestamps the segments shrink to their words and leave a gap. Here the first
    window of long.ogg is given as only its first segment, and that segment is made to claim the next
    20 s of speech or is moved 20 s later: either way the next sentences are unsaid."""
    from dataclasses import replace

    from tests.support.engines import load_clip
    from whisper_api.engines.faster import skips_speech

    engine = engines["faster-whisper"]
    speech = load_clip("long.ogg")
    arguments = {**engine._arguments(TranscribeOptions()), "language": "en"}
    decoded, _ = engine._whisper.transcribe(speech, vad_filter=False, **arguments)
    first = next(iter(decoded))
    if skip == "a segment claims the time":
        window = [replace(first, end=first.end + 20.0)]
    else:
        window = [replace(first, start=first.start + 20.0, end=first.end + 20.0)]
    assert skips_speech(0.0, window[-1].end, window) and not skips_speech(0.0, first.end, [first])

    kept = list(engine._redecode_skipped_speech([first], speech[: round(first.end * SAMPLE_RATE)], arguments))
    assert kept == [first]  # a window that says what it spans is not decoded again
    found = list(
        engine._redecode_skipped_speech(window, speech[: round(window[-1].end * SAMPLE_RATE)], arguments)
    )
    heard = words(" ".join(segment.text for segment in found))
    assert heard[:3] == words(first.text)[:3]
    assert {"budget", "website", "customers"} <= set(heard)  # the sentences the skip hid
    assert [s.start for s in found] == sorted(s.start for s in found)
    assert found[-1].end <= window[-1].end + 0.5
