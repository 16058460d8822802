"""bench/batch.py reads the worker's own summary line: the two must agree on its wording."""

from bench.batch import _SUMMARY, BatchBenchReport, Round, markdown
from bench.machine import describe
from whisper_api.batch.worker import Summary


def test_the_benchmark_parses_the_workers_summary() -> None:
    summary = Summary("out/_manifest/runs/x/task-00000-of-00001.jsonl", done=3, audio_seconds=79.9)
    summary.wall_seconds, summary.model_load_seconds = 12.5, 2.25
    found = _SUMMARY.search(summary.describe())
    assert found is not None
    assert (float(found["wall"]), float(found["load"])) == (12.5, 2.2)  # as printed: one decimal


def test_the_report_shows_each_path_and_the_cost_per_audio_hour() -> None:
    report = BatchBenchReport(
        machine=describe(with_gpu=False),
        load_average_after=1.0,
        files=["a.wav"],
        audio_seconds=80.0,
        rounds=[Round(api_s=10.0, batch_process_s=12.0, batch_run_s=8.0)],
        api_s=10.0,
        batch_process_s=12.0,
        batch_run_s=8.0,
    )
    text = markdown(report)
    assert "| API, one file at a time (server warm) | 10.00 | 8.0 |" in text
    assert "| `make batch`, after the model loaded | 8.00 | 10.0 |" in text
    assert "1.25x the API's throughput" in text
    assert "$0.1047 per audio hour" in text  # $1.0465/h at 10 audio s per wall s


def test_the_report_shows_how_soon_ctrl_c_stopped_the_worker() -> None:
    stops = {"loading the model": 0.21, "transcribing": 0.4}
    report = BatchBenchReport(
        machine=describe(with_gpu=False),
        load_average_after=1.0,
        files=["a.wav"],
        audio_seconds=80.0,
        rounds=[Round(api_s=10.0, batch_process_s=12.0, batch_run_s=8.0, ctrl_c_stop_s=stops)],
        api_s=10.0,
        batch_process_s=12.0,
        batch_run_s=8.0,
        ctrl_c_stop_s=stops,
    )
    assert "to the exit (130): 0.21 s while loading the model, 0.40 s while transcribing." in markdown(report)
