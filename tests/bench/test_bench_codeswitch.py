"""bench/codeswitch.py: the halves of a code-switched transcript, each scored as the report says."""

import pytest

from bench.codeswitch import CodeSwitchReport, Transcribed, half_error_rates, markdown
from bench.machine import describe


def test_each_error_counts_in_the_half_of_the_reference_it_falls_in() -> None:
    english, german = (
        "Permission is hereby granted, free of charge.",
        "Hiermit wird unentgeltlich jeder Person",
    )
    assert half_error_rates(english, german, english + " hiermit Wird, unentgeltlich jeder Person.") == (
        0.0,
        0.0,
        5,
    )
    # The German half dropped: every German word deleted, the English half untouched.
    assert half_error_rates(english, german, english) == (0.0, 1.0, 0)
    # The German half heard as English: substitutions in the German half only.
    en_wer, de_wer, matched = half_error_rates(english, german, english + " here it will be free")
    assert en_wer == 0.0 and de_wer == 1.0 and matched == 0
    # A word lost from each half.
    assert half_error_rates(
        english, german, "Permission is hereby granted free Hiermit wird jeder Person"
    ) == (
        pytest.approx(2 / 7),
        pytest.approx(1 / 5),
        4,
    )


def test_the_report_shows_each_paths_languages_and_both_halves() -> None:
    path = Transcribed(
        name="service (base, its defaults)",
        languages=["en", "de"],
        english_wer=0.035,
        german_wer=0.1,
        german_words=40,
        seconds=12.0,
        text="Permission ... Hiermit ...",
    )
    report = CodeSwitchReport(
        machine=describe(with_gpu=False),
        load_average_after=1.0,
        model="base",
        german_reference="Hiermit wird ...",
        paths=[path],
    )
    assert "| service (base, its defaults) | en, de | 3.5 % | 10.0 % | 40 | 12.0 |" in markdown(report)
