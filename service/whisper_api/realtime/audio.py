"""A session's input audio: base64 appends in the session's format → 16 kHz int16, the rate the
models and the VAD take.

`audio/pcm` (24 kHz, 16-bit little-endian, mono) is resampled with FFmpeg's resampler (PyAV), which
keeps its filter state between appends, so that chunk boundaries leave no clicks. G.711 (`audio/pcmu`,
`audio/pcma`, 8 kHz) is expanded by a 256-entry table first.
"""

from __future__ import annotations

import base64
import binascii

import av
import numpy as np

from whisper_api.engines.base import SAMPLE_RATE
from whisper_api.realtime.events import AudioFormat


class InputAudioError(ValueError):
    """An append whose audio cannot be used; the message says why (sent in an `error` event)."""


def _mulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


G711_TABLES = {"audio/pcmu": _mulaw_table(), "audio/pcma": _alaw_table()}


def decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputAudioError("`audio` is not valid base64.") from None


class InputDecoder:
    """Bytes of one format → 16 kHz int16 samples, continuous across appends."""

    def __init__(self, audio_format: AudioFormat) -> None:
        self.format = audio_format
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def bytes_per_second(self) -> int:
        return self.format.sample_rate * (2 if self.format.type == "audio/pcm" else 1)

    def decode(self, payload: bytes) -> np.ndarray:
        if self.format.type == "audio/pcm":
            if len(payload) % 2:
                raise InputAudioError(
                    "audio/pcm is 16-bit samples: an append must hold a whole number of them (an even "
                    f"number of bytes), not {len(payload)}."
                )
            samples = np.frombuffer(payload, dtype="<i2").astype(np.int16, copy=False)
        else:
            samples = G711_TABLES[self.format.type][np.frombuffer(payload, dtype=np.uint8)]
        return self._resample(samples)

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        if samples.size == 0:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.format.sample_rate
        pieces = [out.to_ndarray().reshape(-1) for out in self._resampler.resample(frame)]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
