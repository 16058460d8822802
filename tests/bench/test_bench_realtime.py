"""scripts/bench-realtime: the captions' cadence is what the client saw before the speaker stopped."""

from bench.realtime import gaps_before


def test_only_deltas_before_speech_stopped_count_towards_the_cadence() -> None:
    assert gaps_before([10.0, 11.0, 11.5, 13.0, 14.0], stopped_at=13.5) == [1.0, 0.5, 1.5]
    assert gaps_before([10.0], stopped_at=13.5) == []  # one delta: no cadence yet
    assert gaps_before([14.0, 15.0], stopped_at=13.5) == []  # all after the turn ended


def test_the_results_table_gives_the_cadence_where_the_results_have_it() -> None:
    from bench.results_table import realtime

    def run(sessions: int, cadence: float | None) -> dict:
        return {
            "sessions": sessions,
            "stop_to_completed_p50_s": 0.15,
            "items_within_target": 1.0,
            "items_with_deltas_while_spoken": 0.75,
            "delta_gap_while_spoken_p50_s": cadence,
        }

    measured = realtime({"target_s": 0.5, "runs": [run(1, 1.06), run(16, None)]})
    assert measured.endswith("deltas while spoken on 75.0 % of items at 1, 1.06 s apart (p50)")
    before_the_cadence = {key: value for key, value in run(1, None).items() if "gap" not in key}
    older = {"target_s": 0.5, "runs": [before_the_cadence, run(16, None)]}
    assert realtime(older).endswith("of items at 1")
