"""Decoding uploads with PyAV: every accepted container, resampling, and every way a file is bad."""

from pathlib import Path

import numpy as np
import pytest

from tests.support.audio import flac_of_constant, flac_of_silence, pcm_wav, wav_bytes, wav_of_pattern
from whisper_api.audio import (
    SAMPLE_RATE,
    AudioError,
    decode_audio,
    duration_seconds,
    probe_audio,
    silence_non_speech,
)
from whisper_api.engines.base import as_float32
from whisper_api.engines.faster import speech_chunks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHORT_SECONDS = 5.17  # the short clip's length (espeak-ng sentence + padding)
CONTAINERS = ("short.flac", "short.mp3", "short.m4a", "short.mp4", "short.ogg", "short.wav", "short.webm")


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("name", CONTAINERS)
def test_every_accepted_container_decodes_to_16k_mono_pcm16(name: str) -> None:
    audio = decode_audio(read(name), max_seconds=60)
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert duration_seconds(audio) == pytest.approx(SHORT_SECONDS, abs=0.05)
    assert np.abs(as_float32(audio)).max() > 0.3  # real speech, not silence


def test_the_samples_are_faster_whispers_own(short_clip: np.ndarray) -> None:
    """The same samples as faster-whisper's decoder (which the engine tests feed the engines)."""
    assert np.array_equal(as_float32(decode_audio(read("short.wav"), max_seconds=60)), short_clip)


def test_a_file_object_and_a_path_decode_like_the_bytes() -> None:
    path = FIXTURES / "short.ogg"
    reference = decode_audio(path.read_bytes(), max_seconds=60)
    assert np.array_equal(decode_audio(path, max_seconds=60), reference)
    assert np.array_equal(decode_audio(str(path), max_seconds=60), reference)
    with path.open("rb") as file:
        file.read(100)  # a file object is read from its start, wherever it was left
        assert np.array_equal(decode_audio(file, max_seconds=60), reference)


def test_probe_reads_the_header_only() -> None:
    info = probe_audio(FIXTURES / "stereo_44k.mp3", max_seconds=60)
    assert info.sample_rate == 44_100 and info.channels == 2
    assert info.declared_seconds == pytest.approx(SHORT_SECONDS, abs=0.1)
    assert probe_audio(FIXTURES / "short.wav", max_seconds=60).channels == 1


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


def test_one_channel_decodes_alone() -> None:
    """A WAV whose left channel is short.wav and whose right is silent: each channel alone, at
    16 kHz like the mix."""
    mono = decode_audio(read("short.wav"), max_seconds=60)
    stereo = pcm_wav(as_float32(mono), np.zeros(10, np.float32))
    left = decode_audio(stereo, max_seconds=60, channel=0)
    right = decode_audio(stereo, max_seconds=60, channel=1)
    assert left.shape == right.shape == mono.shape
    assert np.abs(left.astype(np.int32) - mono).max() <= 1 and not right.any()
    with pytest.raises(ValueError, match="channel 2 of audio with 2 channels"):
        decode_audio(stereo, max_seconds=60, channel=2)


def test_long_clip_decodes_whole() -> None:
    audio = decode_audio(read("long.ogg"), max_seconds=60)
    assert duration_seconds(audio) > 35


def test_silence_decodes_to_near_zero() -> None:
    audio = decode_audio(read("silence.flac"), max_seconds=60)
    assert audio.size == 3 * SAMPLE_RATE
    assert np.abs(as_float32(audio)).max() < 1e-3


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


# --- Decompression bombs: a small file that declares or holds hours of audio --------------------


@pytest.mark.parametrize("rate", [1, 100, 3_999, 400_000, 1_000_000])
def test_an_absurd_sample_rate_is_refused_naming_it(rate: int) -> None:
    """10 KB at 1 Hz would be 2.8 hours (650 MB of float32) once resampled to 16 kHz."""
    bomb = wav_bytes(rate, 10_000)
    for check in (probe_audio, decode_audio):
        with pytest.raises(AudioError) as caught:
            check(bomb, max_seconds=3 * 3600)
        assert caught.value.code == "unsupported_sample_rate"
        assert f"{rate} Hz" in str(caught.value)


@pytest.mark.parametrize("rate", [4_000, 8_000, 192_000, 384_000])
def test_real_sample_rates_are_accepted(rate: int) -> None:
    audio = decode_audio(wav_bytes(rate, rate // 2), max_seconds=60)
    assert duration_seconds(audio) == pytest.approx(0.5, abs=0.01)


def test_a_declared_duration_over_the_limit_is_refused_from_the_header() -> None:
    bomb = flac_of_silence(600)
    assert len(bomb) < 200_000
    for check in (probe_audio, decode_audio):
        with pytest.raises(AudioError, match="declares 600 s") as caught:
            check(bomb, max_seconds=300)
        assert caught.value.code == "audio_too_long"


def test_a_long_file_is_decoded_into_one_buffer_of_its_size() -> None:
    """Ten minutes of silence: 2 bytes a sample, in one array sized from the header, nothing more."""
    audio = decode_audio(flac_of_silence(600), max_seconds=3 * 3600)
    assert audio.dtype == np.int16 and duration_seconds(audio) == pytest.approx(600, abs=0.1)
    assert audio.base is not None and audio.base.nbytes <= 1.06 * 600 * SAMPLE_RATE * 2 + 2 * SAMPLE_RATE
    assert not audio.any()


def test_a_header_that_says_nothing_still_stops_at_the_limit() -> None:
    """A raw (headerless) stream gives no duration: decoding itself stops at the limit."""
    wav = bytearray(wav_bytes(8_000, 8_000 * 20, width=2))
    wav[40:44] = b"\xff\xff\xff\xff"  # data size unknown, as streamed WAVs write it
    with pytest.raises(AudioError, match="longer than the limit of 10 seconds"):
        decode_audio(bytes(wav), max_seconds=10)


# --- The gate in front of VAD: what cannot be speech becomes digital silence -------------------

SPEECH_FIXTURES = sorted(
    path.name
    for path in FIXTURES.glob("*.*")
    if path.suffix not in {".json", ".md"} and path.name != "not_audio.wav"
)


@pytest.mark.parametrize("name", SPEECH_FIXTURES)
def test_the_gate_keeps_every_sample_that_vad_calls_speech(name: str) -> None:
    original = decode_audio((FIXTURES / name).read_bytes(), 3600)
    gated = original.copy()
    kept_s = silence_non_speech(gated)
    assert kept_s <= duration_seconds(original)
    chunks = speech_chunks(original)
    for chunk in chunks:
        span = slice(chunk["start"], chunk["end"])
        assert np.array_equal(gated[span], original[span]), chunk
    assert speech_chunks(gated) == chunks


def test_a_constant_value_and_a_repeating_pattern_are_gated_whole() -> None:
    constant = decode_audio(flac_of_constant(600), 3600)
    pattern = decode_audio(wav_of_pattern(600), 3600)
    assert constant.max() > 500 and pattern.max() > 500  # loud enough to pass a silence test
    assert silence_non_speech(constant) == 0 and not constant.any()
    assert silence_non_speech(pattern) == 0 and not pattern.any()


def test_quiet_speech_passes_the_gate() -> None:
    """Speech 30 dB down (peaks near -36 dBFS) keeps every sample VAD still calls speech."""
    quiet = (decode_audio(read("short.wav"), 3600) // 32).astype(np.int16)
    chunks = speech_chunks(quiet)
    assert chunks  # VAD still hears it
    gated = quiet.copy()
    silence_non_speech(gated)
    assert speech_chunks(gated) == chunks
