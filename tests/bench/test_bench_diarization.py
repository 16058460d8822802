"""DER as NIST's md-eval defines it, on cases worked out by hand."""

import pytest

from bench.diarization import der, stereo_reference


def test_perfect_hypothesis_with_other_labels_is_zero() -> None:
    reference = [(0.0, 4.0, "alice"), (4.0, 10.0, "bob")]
    hypothesis = [(0.0, 4.0, "1"), (4.0, 10.0, "0")]
    assert der(reference, hypothesis).rate == 0.0


def test_hand_computed_case_with_collar_and_overlap() -> None:
    # Reference: alice 0-10, bob 8-14 (overlap 8-10). Collar 0.25 s removes 0.5 s around each of
    # the boundaries 0, 8, 10, 14 (0 and 14 sit at the edge: 0.25 s each scored away inside).
    # Scored reference time: alice 0.25-7.75 and 8.25-9.75 = 9.0; bob 8.25-9.75 and 10.25-13.75 = 5.0.
    reference = [(0.0, 10.0, "alice"), (8.0, 14.0, "bob")]
    # Hypothesis: one speaker 0-12 (X), another 12-16 (Y). Best pairing: alice-X, bob-Y.
    hypothesis = [(0.0, 12.0, "X"), (12.0, 16.0, "Y")]
    result = der(reference, hypothesis)
    assert result.scored_s == pytest.approx(14.0)
    # Missed: the overlap 8.25-9.75 has 2 reference speakers, 1 hypothesis: 1.5 s.
    assert result.missed_s == pytest.approx(1.5)
    # False alarm: Y speaks 14.25-16 where nobody does: 1.75 s.
    assert result.false_alarm_s == pytest.approx(1.75)
    # Confusion: bob's 10.25-12 is labelled X (alice's): 1.75 s.
    assert result.confusion_s == pytest.approx(1.75)
    assert result.rate == pytest.approx((1.5 + 1.75 + 1.75) / 14.0)


def test_stereo_reference_follows_each_channels_energy() -> None:
    import numpy as np

    loud = np.full(16_000, 3000, dtype=np.int16)
    quiet = np.zeros(16_000, dtype=np.int16)
    left = np.concatenate([loud, quiet])
    right = np.concatenate([quiet, loud])
    assert stereo_reference(left, right) == [(0.0, 1.0, "left"), (1.0, 2.0, "right")]
