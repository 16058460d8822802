"""The batch worker with `--diarize`: diarized JSON and RTTM beside the transcripts, resumable."""

import json
import os
from pathlib import Path

import pytest
from openai.types.audio import TranscriptionDiarized

from tests.support.audio import call_recording, flac_of_constant
from tests.support.diarization import SAMPLE, diarization_model
from tests.support.engines import FIXTURES, engine_settings
from whisper_api.batch.cli import main
from whisper_api.engines.base import Engine
from whisper_api.schemas import Transcript


class CountingEngine:
    """The real engine, counting its transcriptions."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.calls = engine, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)

    def transcribe(self, *args: object, **kwargs: object) -> Transcript:
        self.calls += 1
        return self.engine.transcribe(*args, **kwargs)  # type: ignore[arg-type]


def test_diarize_writes_diarized_json_and_rttm_and_resumes(
    tmp_path: Path, engines, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    (source / "calls").mkdir(parents=True)
    (source / "calls" / "meeting.flac").write_bytes(SAMPLE.read_bytes())
    (source / "solo.wav").write_bytes((FIXTURES / "short.wav").read_bytes())
    with open(os.fsencode(source) + b"/caf\xe9.wav", "wb") as latin1:  # a name that is not UTF-8
        latin1.write((FIXTURES / "short.wav").read_bytes())
    (source / "calls" / "call.wav").write_bytes(call_recording(delay_s=4.0))  # one party per channel
    (source / "hum.flac").write_bytes(flac_of_constant(600))  # 10 minutes without speech
    settings = engine_settings("faster-whisper", diarization_model=diarization_model())

    def run(*extra: str) -> int:
        argv = [str(source), str(target), "--formats", "json", "--diarize", "--no-progress", *extra]
        return main(argv, settings=settings, load_engine=lambda: engine)

    engine = CountingEngine(engines["faster-whisper"])

    assert run() == 0
    assert "5 recording(s): 5 done" in capsys.readouterr().out
    meeting = TranscriptionDiarized.model_validate_json(
        (target / "calls" / "meeting.flac.diarized.json").read_text()
    )
    assert {segment.speaker for segment in meeting.segments} == {"A", "B"}
    assert meeting.text == json.loads((target / "calls" / "meeting.flac.json").read_text())["text"]
    rows = [line.split() for line in (target / "calls" / "meeting.flac.rttm").read_text().splitlines()]
    assert {row[0] for row in rows} == {"SPEAKER"} and {row[1] for row in rows} == {"meeting.flac"}
    assert {row[7] for row in rows} == {"A", "B"}
    assert all(float(row[4]) > 0 for row in rows)
    # A turn spoken over the other party's, found on its own channel: the turns overlap.
    call = [line.split() for line in (target / "calls" / "call.wav.rttm").read_text().splitlines()]
    turns = {row[7]: (float(row[3]), float(row[3]) + float(row[4])) for row in call}
    assert sorted(turns) == ["A", "B"]
    assert turns["A"][0] < 0.5 and turns["A"][1] > 16 and 3.6 < turns["B"][0] < turns["B"][1] < 11.1
    # The gate left nothing of the hum: no inference, no speakers, an empty RTTM.
    assert engine.calls == 4
    hum = TranscriptionDiarized.model_validate_json((target / "hum.flac.diarized.json").read_text())
    assert (hum.text, hum.segments) == ("", []) and (target / "hum.flac.rttm").read_text() == ""
    solo = TranscriptionDiarized.model_validate_json((target / "solo.wav.diarized.json").read_text())
    assert {segment.speaker for segment in solo.segments} == {"A"}
    # Named in text, the file id of its RTTM too.
    assert (target / "caf\\xe9.wav.rttm").read_text().startswith("SPEAKER caf\\xe9.wav 1 ")
    # Resumable: a rerun finds every output (the RTTM included) and does nothing.
    assert run() == 0
    assert "5 skipped" in capsys.readouterr().out
    (target / "solo.wav.rttm").unlink()
    assert run() == 0
    assert "1 done, 4 skipped" in capsys.readouterr().out
    assert (target / "solo.wav.rttm").read_text().startswith("SPEAKER solo.wav 1 ")


def test_diarize_without_the_network_or_with_translate_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "solo.wav").write_bytes((FIXTURES / "short.wav").read_bytes())
    missing = engine_settings("faster-whisper", diarization_model=tmp_path / "none.onnx")
    assert main([str(source), str(tmp_path / "out"), "--diarize"], settings=missing) == 2
    assert "WHISPER_DIARIZATION_MODEL" in capsys.readouterr().err
    assert main([str(source), str(tmp_path / "out"), "--diarize", "--translate"], settings=missing) == 2
    assert "--translate" in capsys.readouterr().err
    # The Cloud Run Job's way to ask (whisper:batch.diarize): the environment.
    monkeypatch.setenv("WHISPER_BATCH_DIARIZE", "true")
    assert main([str(source), str(tmp_path / "out")], settings=missing) == 2
    assert "WHISPER_DIARIZATION_MODEL" in capsys.readouterr().err
