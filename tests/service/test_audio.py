"""Decoding uploads with PyAV: every accepted container, resampling, and every way a file is bad."""

from pathlib import Path

import numpy as np
import pytest

from whisper_api.audio import SAMPLE_RATE, AudioError, decode_audio, duration_seconds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHORT_SECONDS = 5.17  # the short clip's length (espeak-ng sentence + padding)
CONTAINERS = ("short.flac", "short.mp3", "short.m4a", "short.mp4", "short.ogg", "short.wav", "short.webm")


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("name", CONTAINERS)
def test_every_accepted_container_decodes_to_16k_mono_float32(name: str) -> None:
    audio = decode_audio(read(name), max_seconds=60)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert duration_seconds(audio) == pytest.approx(SHORT_SECONDS, abs=0.05)
    assert np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0.3  # real speech, not silence


def test_containers_decode_to_the_same_signal() -> None:
    """Lossless containers give the very samples of the wav; lossy ones stay close to them."""
    reference = decode_audio(read("short.wav"), max_seconds=60)
    assert np.array_equal(decode_audio(read("short.flac"), max_seconds=60), reference)
    ogg = decode_audio(read("short.ogg"), max_seconds=60)
    assert np.corrcoef(ogg[: reference.size], reference[: ogg.size])[0, 1] > 0.9


def test_stereo_44k_is_resampled_and_downmixed() -> None:
    audio = decode_audio(read("stereo_44k.mp3"), max_seconds=60)
    assert audio.ndim == 1
    assert duration_seconds(audio) == pytest.approx(SHORT_SECONDS, abs=0.1)


def test_long_clip_decodes_whole() -> None:
    audio = decode_audio(read("long.ogg"), max_seconds=60)
    assert duration_seconds(audio) > 35


def test_silence_decodes_to_near_zero() -> None:
    audio = decode_audio(read("silence.flac"), max_seconds=60)
    assert audio.size == 3 * SAMPLE_RATE
    assert np.abs(audio).max() < 1e-3


def test_audio_over_the_duration_limit_is_refused() -> None:
    with pytest.raises(AudioError, match="longer than the limit of 10 seconds") as caught:
        decode_audio(read("long.ogg"), max_seconds=10)
    assert caught.value.code == "audio_too_long"


def test_audio_just_under_the_limit_is_accepted() -> None:
    assert decode_audio(read("short.wav"), max_seconds=5.5).size > 0


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        ((FIXTURES / "not_audio.wav").read_bytes(), "invalid_audio"),
        (bytes(range(256)) * 64, "invalid_audio"),
        (b'{"text": "json, not audio"}', "invalid_audio"),
        ((FIXTURES / "short.mp3").read_bytes()[:200], "invalid_audio"),
        ((FIXTURES / "short.m4a").read_bytes()[:4000], "invalid_audio"),  # moov atom cut off
        ((FIXTURES / "short.wav").read_bytes()[:44], "empty_audio"),  # a header, no samples
    ],
    ids=["empty", "text", "random-bytes", "json", "truncated-mp3", "truncated-m4a", "wav-header-only"],
)
def test_bad_files_raise_a_clear_audio_error(data: bytes, code: str) -> None:
    with pytest.raises(AudioError) as caught:
        decode_audio(data, max_seconds=60)
    assert caught.value.code == code
    assert "Traceback" not in str(caught.value) and "BytesIO" not in str(caught.value)


def test_an_image_is_refused_as_an_unsupported_format() -> None:
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + b"\0" * 64
    with pytest.raises(AudioError) as caught:
        decode_audio(png, max_seconds=60)
    assert caught.value.code == "unsupported_format"
