"""Input formats: 24 kHz PCM16 and G.711 appends become continuous 16 kHz audio."""

import io

import av
import numpy as np
import pytest

from whisper_api.realtime.audio import G711_TABLES, InputAudioError, InputDecoder, decode_base64
from whisper_api.realtime.events import AudioFormat


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16)


def dominant_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float32)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[spectrum.argmax()])


def test_pcm_appends_of_any_size_make_one_continuous_16k_signal() -> None:
    decoder = InputDecoder(AudioFormat(type="audio/pcm"))
    source = tone(24_000, 2.0)
    pieces, start = [], 0
    for size in [1, 7, 480, 2400, 999, 24_000, 10_000]:
        pieces.append(decoder.decode(source[start : start + size].astype("<i2").tobytes()))
        start += size
    pieces.append(decoder.decode(source[start:].astype("<i2").tobytes()))
    out = np.concatenate(pieces)
    assert abs(out.size - 32_000) < 64  # the resampler keeps a few samples of filter delay
    assert dominant_hz(out) == pytest.approx(440, abs=2)
    # No clicks at the append boundaries: sample-to-sample steps stay those of the tone.
    assert np.abs(np.diff(out[100:].astype(np.int32))).max() < 12000 * 2 * np.pi * 440 / 16_000 * 1.2


@pytest.mark.parametrize(("kind", "codec"), [("audio/pcmu", "pcm_mulaw"), ("audio/pcma", "pcm_alaw")])
def test_g711_tables_decode_as_ffmpeg_does(kind: str, codec: str) -> None:
    """All 256 codes decoded by FFmpeg's own G.711 decoder give the same samples as the table."""
    codes = np.arange(256, dtype=np.uint8)
    with av.open(io.BytesIO(_wav_with_codes(codes, codec)), "r") as raw:
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in raw.decode(audio=0)])
    np.testing.assert_array_equal(G711_TABLES[kind], decoded.astype(np.int16))


def _wav_with_codes(codes: np.ndarray, codec: str) -> bytes:
    """A WAV file whose samples are the raw codes 0..255 of `codec` (format 7 µ-law, 6 A-law)."""
    fmt = 7 if codec == "pcm_mulaw" else 6
    data = codes.tobytes()
    header = b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt "
    header += (16).to_bytes(4, "little") + fmt.to_bytes(2, "little") + (1).to_bytes(2, "little")
    header += (8000).to_bytes(4, "little") + (8000).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    return header + b"data" + len(data).to_bytes(4, "little") + data


def test_g711_is_resampled_from_8k() -> None:
    decoder = InputDecoder(AudioFormat(type="audio/pcmu"))
    mulaw = np.searchsorted(np.sort(G711_TABLES["audio/pcmu"]), 0)  # any code: checks the length only
    out = decoder.decode(bytes([int(mulaw)]) * 8000)
    assert abs(out.size - 16_000) < 64


def test_bad_appends_say_why() -> None:
    with pytest.raises(InputAudioError, match="base64"):
        decode_base64("not base64!")
    with pytest.raises(InputAudioError, match="even number of bytes"):
        InputDecoder(AudioFormat(type="audio/pcm")).decode(b"\x00\x01\x02")
