"""Audio made in the test: decompression bombs (a few kilobytes that decode to hours), long speech."""

import io
import wave
from pathlib import Path

import av
import numpy as np

from tests.support.engines import SAMPLE_RATE, load_clip


def wav_bytes(rate: int, samples: int, width: int = 1) -> bytes:
    """A WAV header declaring `samples` samples at `rate` Hz, then the (silent) samples."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x80" * samples * width)
    return out.getvalue()


def flac_of_silence(seconds: float, rate: int = 8_000) -> bytes:
    """A FLAC of digital silence: a few kilobytes per minute, encoded here with PyAV."""
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        frame_samples = 4096
        silence = np.zeros((1, frame_samples), dtype=np.int16)
        for start in range(0, int(seconds * rate), frame_samples):
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def long_recording(tmp_path: Path, repeats: int) -> bytes:
    """Real speech, minutes long: long.ogg said `repeats` times, as a 16 kHz 16-bit WAV."""
    samples = np.tile(load_clip("long.ogg"), repeats)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def flac_of_constant(seconds: float, value: int = 1000, rate: int = SAMPLE_RATE) -> bytes:
    """A FLAC of one non-zero sample value (a DC offset): hours in a few MB, and not digital silence."""
    out = io.BytesIO()
    frame_samples = 16_384
    block = np.full((1, frame_samples), value, dtype=np.int16)
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        for start in range(0, int(seconds * rate) - frame_samples + 1, frame_samples):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def wav_of_pattern(seconds: float, rate: int = 4_000) -> bytes:
    """A 4 kHz 8-bit WAV of a low repeating pattern (a soft 500 Hz triangle): 24 MB per 100 minutes."""
    pattern = bytes([128, 131, 134, 131, 128, 125, 122, 125])
    samples = int(seconds * rate)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(rate)
        wav.writeframes((pattern * (samples // len(pattern) + 1))[:samples])
    return out.getvalue()


LIBRISPEECH = Path(__file__).resolve().parents[2] / "bench" / "data" / "librispeech"


def librispeech(utterance: str) -> np.ndarray:
    """A committed LibriSpeech clip (bench/data/librispeech, CC BY 4.0) as 16 kHz float32."""
    with av.open(str(LIBRISPEECH / f"{utterance}.wav")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frames = [
            resampled.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for resampled in resampler.resample(frame)
        ]
    return np.concatenate(frames)


def pcm_wav(*channels: np.ndarray) -> bytes:
    """16 kHz 16-bit WAV of float32 channels (the shorter ones padded with silence)."""
    length = max(len(channel) for channel in channels)
    interleaved = np.stack([np.pad(channel, (0, length - len(channel))) for channel in channels], axis=1)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(len(channels))
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes((np.clip(interleaved, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def call_recording(delay_s: float) -> bytes:
    """Two LibriSpeech readers, one per channel, as a call is recorded: reader 1221 on the left from
    0 s (16.7 s), reader 1089 on the right from `delay_s` (6.6 s)."""
    right = np.concatenate(
        [np.zeros(round(delay_s * SAMPLE_RATE), np.float32), librispeech("1089-134686-0001")]
    )
    return pcm_wav(librispeech("1221-135766-0001"), right)
