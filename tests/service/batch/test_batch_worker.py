"""The batch worker against a real GCS API server: the real model, real recordings, real objects."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.engines import FIXTURES, engine_settings
from tests.support.gcs import FlakyProxy, run_task, upload_fixtures
from whisper_api.audio import AudioError, decode_audio
from whisper_api.batch.cli import main
from whisper_api.batch.manifest import DONE_DIR, FileRecord, Shard, read_records
from whisper_api.batch.storage import GcsPrefix, LocalFolder, StorageError, open_location
from whisper_api.batch.worker import BatchJob, owns
from whisper_api.formats import render
from whisper_api.schemas import TranscribeOptions

REPO = Path(__file__).resolve().parents[3]
GOOD = {
    "calls/2024/03/standup.mp3": "short.mp3",
    "calls/2024/review.flac": "short.flac",
    "calls/intro.wav": "short.wav",
    "lectures/week1/meeting.ogg": "long.ogg",
}
BAD = {
    "calls/2024/broken.wav": "not_audio.wav",
    "empty.m4a": b"",
}
NOT_AUDIO = {"notes/README.txt": b"not a recording"}


def api_message(data: bytes) -> tuple[str, str]:
    """What the API answers for an unusable upload: the same function decides."""
    with pytest.raises(AudioError) as raised:
        decode_audio(data, 3600)
    return str(raised.value), raised.value.code


def manifest_lines(gcs, bucket: str, run_id: str = "run-1") -> list[FileRecord]:
    records: list[FileRecord] = []
    for blob in gcs.list_blobs(bucket, prefix=f"out/_manifest/runs/{run_id}/"):
        records += read_records(blob.download_as_text())
    return records


def object_names(gcs, bucket: str, prefix: str = "out/") -> set[str]:
    return {blob.name.removeprefix(prefix) for blob in gcs.list_blobs(bucket, prefix=prefix)}


def never_load() -> None:
    raise AssertionError("the model was loaded although nothing needed transcribing")


def test_every_recording_in_nested_prefixes_gets_its_transcripts_and_bad_ones_the_api_message(
    gcs, make_bucket, engines, expected_text
) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    upload_fixtures(gcs, source, {**GOOD, **BAD, **NOT_AUDIO})

    summary = run_task(engines, f"gs://{source}", f"gs://{target}/out")

    assert (summary.done, summary.failed, summary.skipped, summary.ignored) == (4, 2, 0, 1)
    assert summary.exit_code == 1
    names = object_names(gcs, target)
    for path in GOOD:
        assert {f"{path}.verbose.json", f"{path}.srt"} <= names
    assert not any(name.startswith(("calls/2024/broken", "empty", "notes")) for name in names)

    # One code path: the stored transcript is what the engine and the formats make of the same file.
    stored = json.loads(gcs.bucket(target).blob("out/calls/intro.wav.verbose.json").download_as_text())
    direct = engines["faster-whisper"].transcribe(
        decode_audio((FIXTURES / "short.wav").read_bytes(), 3600), TranscribeOptions()
    )
    body, _ = render(direct, "verbose_json", frozenset({"segment"}))
    assert stored == json.loads(body.model_dump_json())
    assert stored["text"] == expected_text["short"]
    srt = gcs.bucket(target).blob("out/lectures/week1/meeting.ogg.srt").download_as_text()
    assert (
        srt
        == render(
            engines["faster-whisper"].transcribe(
                decode_audio((FIXTURES / "long.ogg").read_bytes(), 3600), TranscribeOptions()
            ),
            "srt",
        )[0]
    )

    records = {record.path: record for record in manifest_lines(gcs, target)}
    assert set(records) == set(GOOD) | set(BAD)
    for path, source_name in BAD.items():
        data = source_name if isinstance(source_name, bytes) else (FIXTURES / source_name).read_bytes()
        message, code = api_message(data)
        assert (records[path].status, records[path].error, records[path].error_code) == (
            "failed",
            message,
            code,
        )
    blobs = {blob.name: blob for blob in gcs.list_blobs(source)}
    for path in GOOD:
        record = records[path]
        assert record.status == "done" and record.error is None
        assert (record.size, record.version) == (blobs[path].size, str(blobs[path].generation))
        assert record.duration and record.duration > 1
        assert set(record.timings) == {"decode", "transcribe", "write"}
        assert (record.engine, record.model) == ("faster-whisper", "tiny.en")


def test_a_rerun_skips_everything_done_without_loading_the_model(gcs, make_bucket, engines) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    upload_fixtures(gcs, source, {"a/one.wav": "short.wav", "b/two.mp3": "short.mp3"})
    first = run_task(engines, f"gs://{source}", f"gs://{target}/out")
    assert (first.done, first.exit_code) == (2, 0)
    before = {blob.name: blob.generation for blob in gcs.list_blobs(target)}

    again = run_task(engines, f"gs://{source}", f"gs://{target}/out", run_id="run-2", load_engine=never_load)

    assert (again.done, again.skipped, again.failed, again.exit_code) == (0, 2, 0, 0)
    after = {blob.name: blob.generation for blob in gcs.list_blobs(target)}
    transcripts = {name for name in before if "/_manifest/" not in name}
    assert {name: after[name] for name in transcripts} == {name: before[name] for name in transcripts}
    assert {record.status for record in manifest_lines(gcs, target, "run-2")} == {"skipped"}


def test_a_changed_recording_a_new_format_or_force_is_transcribed_again(gcs, make_bucket, engines) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    upload_fixtures(gcs, source, {"one.wav": "short.wav", "two.mp3": "short.mp3"})
    run_task(engines, f"gs://{source}", f"gs://{target}/out")

    upload_fixtures(gcs, source, {"two.mp3": "short.ogg"})  # same name, new generation
    changed = run_task(engines, f"gs://{source}", f"gs://{target}/out", run_id="run-2")
    assert (changed.done, changed.skipped) == (1, 1)
    assert {r.path for r in manifest_lines(gcs, target, "run-2") if r.status == "done"} == {"two.mp3"}

    vtt = run_task(
        engines, f"gs://{source}", f"gs://{target}/out", run_id="run-3", job=BatchJob(formats=("vtt",))
    )
    assert (vtt.done, vtt.skipped) == (2, 0)
    assert {"one.wav.vtt", "two.mp3.vtt"} <= object_names(gcs, target)

    forced = run_task(
        engines, f"gs://{source}", f"gs://{target}/out", run_id="run-4", job=BatchJob(force=True)
    )
    assert (forced.done, forced.skipped) == (2, 0)


def test_two_shards_cover_every_input_exactly_once(gcs, make_bucket, engines) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    layout = {f"batch/{index:02d}/clip-{index}.wav": "short.wav" for index in range(6)}
    upload_fixtures(gcs, source, layout)
    shards = [Shard(0, 2), Shard(1, 2)]
    assert all(any(owns(shard, path) for path in layout) for shard in shards)  # both get work

    summaries = [run_task(engines, f"gs://{source}", f"gs://{target}/out", shard=shard) for shard in shards]

    parts = sorted(name for name in object_names(gcs, target) if name.startswith("_manifest/runs/run-1/"))
    assert parts == [
        "_manifest/runs/run-1/task-00000-of-00002.jsonl",
        "_manifest/runs/run-1/task-00001-of-00002.jsonl",
    ]
    per_task = [
        {record.path for record in read_records(gcs.bucket(target).blob(f"out/{part}").download_as_text())}
        for part in parts
    ]
    assert per_task[0].isdisjoint(per_task[1])
    assert per_task[0] | per_task[1] == set(layout)
    assert sum(summary.done for summary in summaries) == len(layout)
    for index, paths in enumerate(per_task):
        assert all(owns(Shard(index, 2), path) for path in paths)


def test_transient_storage_errors_are_retried(flaky_gcs: FlakyProxy, engines) -> None:
    from google.cloud import storage

    client = storage.Client()  # through the proxy: creating the buckets is retried as well
    source, target = "flaky-in", "flaky-out"
    for name in (source, target):
        client.create_bucket(name)
    upload_fixtures(client, source, {"x/one.wav": "short.wav"})

    summary = run_task(engines, f"gs://{source}", f"gs://{target}/out")

    assert (summary.done, summary.failed, summary.exit_code) == (1, 0, 0)
    assert set(flaky_gcs.failed) >= {"list", "read", "upload"}  # each kind failed once, then succeeded
    assert all(flaky_gcs.forwarded[kind] for kind in ("list", "read", "upload"))
    assert {"x/one.wav.verbose.json", "x/one.wav.srt"} <= {
        blob.name.removeprefix("out/") for blob in client.list_blobs(target)
    }


def worker_after_its_first_commit(gcs, gcs_server: str, source: str, target: str) -> subprocess.Popen[bytes]:
    """`python -m whisper_api.batch` in a process of its own, once it has committed one recording."""
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": gcs_server,
        "WHISPER_MODEL": "tiny.en",
        "WHISPER_DEVICE": "cpu",
        "WHISPER_LOG_JSON": "false",
        "PYTHONPATH": f"{REPO / 'service'}:{REPO}",
    }
    command = [sys.executable, "-m", "whisper_api.batch", f"gs://{source}", f"gs://{target}/out"]
    worker = subprocess.Popen(
        [*command, "--run-id", "interrupted", "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not any(name.startswith(DONE_DIR) for name in object_names(gcs, target)):
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()[0].decode()
        time.sleep(0.05)
    return worker


def test_an_interrupted_run_resumes_losing_at_most_the_file_in_progress(
    gcs, gcs_server, make_bucket, engines
) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    layout = {f"part-{index}/clip.wav": "short.wav" for index in range(5)}
    upload_fixtures(gcs, source, layout)

    worker = worker_after_its_first_commit(gcs, gcs_server, source, target)
    worker.send_signal(signal.SIGKILL)  # no chance to clean up: the harshest interruption
    worker.wait()
    committed = {name for name in object_names(gcs, target) if name.startswith(DONE_DIR)}
    assert 1 <= len(committed) < len(layout)
    for name in object_names(gcs, target):  # what is visible is whole
        if name.endswith(".json"):
            json.loads(gcs.bucket(target).blob(f"out/{name}").download_as_text())

    resumed = run_task(engines, f"gs://{source}", f"gs://{target}/out", run_id="resumed")

    assert resumed.skipped == len(committed)
    assert resumed.done == len(layout) - len(committed)
    assert resumed.exit_code == 0
    names = object_names(gcs, target)
    assert all({f"{path}.verbose.json", f"{path}.srt"} <= names for path in layout)


def test_sigterm_stops_the_current_file_and_records_what_was_done(gcs, gcs_server, make_bucket) -> None:
    source, target = make_bucket("in"), make_bucket("out")
    upload_fixtures(gcs, source, {f"{index}.wav": "short.wav" for index in range(6)})

    worker = worker_after_its_first_commit(gcs, gcs_server, source, target)
    worker.send_signal(signal.SIGTERM)
    output = worker.communicate(timeout=60)[0].decode()

    assert worker.returncode == 130, output
    assert "interrupted: rerun the same command to resume" in output
    committed = {name for name in object_names(gcs, target) if name.startswith(DONE_DIR)}
    records = manifest_lines(gcs, target, "interrupted")
    assert {record.status for record in records} == {"done"}
    assert len(records) == len(committed) < 6


def test_exit_status_and_usage_errors(tmp_path: Path, engines, capsys: pytest.CaptureFixture[str]) -> None:

    source = tmp_path / "in"
    (source / "a").mkdir(parents=True)
    (source / "a" / "one.wav").write_bytes((FIXTURES / "short.wav").read_bytes())
    settings = engine_settings("faster-whisper")

    def run(*argv: str) -> int:
        return main(list(argv), settings=settings, load_engine=lambda: engines["faster-whisper"])

    assert run(str(source), str(tmp_path / "out"), "--no-progress") == 0
    assert "1 recording(s): 1 done" in capsys.readouterr().out
    (source / "bad.mp3").write_bytes(b"ID3 but nothing else")
    assert run(str(source), str(tmp_path / "out"), "--no-progress") == 1
    assert "failed: bad.mp3: The file could not be decoded as audio" in capsys.readouterr().out

    assert run(str(source), str(tmp_path / "out"), "--formats", "json,docx") == 2
    assert "--formats 'json,docx'" in capsys.readouterr().err
    assert run(str(tmp_path / "missing"), str(tmp_path / "out")) == 2
    assert "is not a folder (or does not exist)" in capsys.readouterr().err


def test_an_output_bucket_that_does_not_exist_fails_before_any_work(gcs, make_bucket, capsys) -> None:
    source = make_bucket("in")
    upload_fixtures(gcs, source, {"one.wav": "short.wav"})
    code = main([f"gs://{source}", "gs://no-such-bucket-here/out"], load_engine=never_load)
    assert code == 2
    assert "gs://no-such-bucket-here/out" in capsys.readouterr().err


def test_audio_over_the_duration_limit_fails_with_the_api_message(tmp_path: Path, engines) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "long.ogg").write_bytes((FIXTURES / "long.ogg").read_bytes())
    summary = run_task(engines, str(source), str(tmp_path / "out"), max_audio_seconds=10)
    with pytest.raises(AudioError) as raised:
        decode_audio((FIXTURES / "long.ogg").read_bytes(), 10)
    assert [(record.error, record.error_code) for record in summary.failures] == [
        (str(raised.value), "audio_too_long")
    ]


def test_local_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = LocalFolder(tmp_path)
    folder.write("a/b.srt", b"old", "text/plain")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        folder.write("a/b.srt", b"new content that never lands", "text/plain")
    assert (tmp_path / "a" / "b.srt").read_bytes() == b"old"
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["b.srt"]  # no partial file left


def test_locations_parse_and_reject_bad_urls() -> None:
    location = open_location("gs://bucket/some/prefix/")
    assert isinstance(location, GcsPrefix)
    assert (location.bucket_name, location.prefix, location.url_of("x.srt")) == (
        "bucket",
        "some/prefix",
        "gs://bucket/some/prefix/x.srt",
    )
    assert open_location("gs://bucket").url_of("x.srt") == "gs://bucket/x.srt"
    with pytest.raises(StorageError, match="names no bucket"):
        open_location("gs:///prefix")
    with pytest.raises(ValueError, match="task index 2"):
        Shard(2, 2)


def write_flac(path: Path, audio: np.ndarray) -> None:
    """16 kHz mono FLAC, encoded by PyAV (FFmpeg), as a recorder would write it."""
    import av

    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16_000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.slow
def test_a_four_minute_recording_is_transcribed_to_its_end(tmp_path: Path, engines) -> None:
    long_clip = decode_audio((FIXTURES / "long.ogg").read_bytes(), 3600)
    long_clip = long_clip.astype(np.float32) / (32768 if long_clip.dtype == np.int16 else 1)
    recording = np.concatenate([long_clip] * 6)  # six times the 41 s meeting: over 4 minutes
    source = tmp_path / "in" / "meetings"
    source.mkdir(parents=True)
    write_flac(source / "four-minutes.flac", recording)

    summary = run_task(
        engines, str(tmp_path / "in"), str(tmp_path / "out"), job=BatchJob(formats=("verbose_json",))
    )

    assert (summary.done, summary.failed) == (1, 0)
    stored = json.loads((tmp_path / "out" / "meetings" / "four-minutes.flac.verbose.json").read_text())
    assert stored["duration"] == pytest.approx(len(recording) / 16_000, abs=0.1) and stored["duration"] > 240
    assert stored["segments"][-1]["end"] > stored["duration"] - 15  # the last repetition is there
    last_sentence = "Thank you all for your hard work this month."
    assert stored["text"].count(last_sentence) >= 5, stored["text"]


def test_object_names_that_would_leave_the_output_folder_fail_and_write_nothing_outside(
    gcs, make_bucket, engines, tmp_path: Path
) -> None:
    source = make_bucket("in")
    hostile = ["a/../../escape.wav", "b//double.wav", "./dot.wav", "c\\..\\..\\climb.wav"]
    fine = ["fine/ok.wav", "fine/back\\slash.wav"]  # a backslash alone is a plain character
    upload_fixtures(gcs, source, {name: "short.wav" for name in [*hostile, *fine]})
    listed = {blob.name for blob in gcs.list_blobs(source)}
    output = tmp_path / "deep" / "out"

    summary = run_task(engines, f"gs://{source}", str(output))

    assert summary.done == 2
    assert {record.path for record in summary.failures} == listed - set(fine)
    assert (output / "fine" / "back\\slash.wav.srt").is_file()
    assert {record.error_code for record in summary.failures} == {"invalid_name"}
    written = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
    assert all(path.startswith("deep/out/") for path in written), written
    with pytest.raises(StorageError, match="not a relative path"):
        LocalFolder(output).write("../x.srt", b"", "text/plain")


# --- names whose outputs would be the same ------------------------------------------------------


def put(folder: Path, raw: bytes, fixture: str) -> bytes:
    """A copy of the fixture at `folder`/`raw` (a name as bytes); its full path as bytes."""
    os.makedirs(folder, exist_ok=True)
    path = os.fsencode(folder) + b"/" + raw
    shutil.copy(FIXTURES / fixture, path)
    return path


def done_markers(target: Path) -> list[FileRecord]:
    return [FileRecord.model_validate_json(path.read_text()) for path in (target / DONE_DIR).rglob("*.json")]


def local_records(target: Path, run_id: str) -> list[FileRecord]:
    return [
        record
        for part in sorted((target / "_manifest" / "runs" / run_id).glob("*.jsonl"))
        for record in read_records(part.read_text())
    ]


def test_of_two_names_with_the_same_outputs_the_first_by_bytes_keeps_them_and_every_task_agrees(
    tmp_path: Path, engines
) -> None:
    def shard_of(raw: bytes) -> bool:
        return owns(Shard(0, 2), os.fsdecode(raw))

    # b"x3\xe9.wav" is shown as x3\xe9.wav, which a file may really be named: a pair in different tasks.
    literal, latin1 = next(
        pair
        for index in range(100)
        if shard_of((pair := (b"x%d\\xe9.wav" % index, b"x%d\xe9.wav" % index))[0]) != shard_of(pair[1])
    )
    source, target = tmp_path / "in", tmp_path / "out"
    put(source, latin1, "short.mp3")
    put(source, literal, "short.wav")

    summaries = [run_task(engines, str(source), str(target), shard=Shard(index, 2)) for index in range(2)]

    assert sorted((summary.done, summary.failed) for summary in summaries) == [(0, 1), (1, 0)]
    (failure,) = [record for summary in summaries for record in summary.failures]
    assert (failure.name_bytes, failure.error_code, failure.outputs) == (latin1, "name_collision", [])
    assert failure.path == literal.decode()  # shown alike: the message names the other by its bytes
    assert repr(literal) in (failure.error or "") and "rename one of the two" in (failure.error or "")
    (marker,) = done_markers(target)
    assert (marker.name_bytes, marker.path_bytes) == (literal, None)
    shown = literal.decode()
    assert marker.outputs == [f"{shown}.verbose.json", f"{shown}.srt"]
    assert all((target / output).is_file() for output in marker.outputs)
    records = {(record.name_bytes, record.status) for record in local_records(target, "run-1")}
    assert records == {(literal, "done"), (latin1, "failed")}

    again = run_task(engines, str(source), str(target), run_id="run-2", load_engine=never_load)

    assert (again.done, again.skipped, again.failed) == (0, 1, 1)
    assert {(record.name_bytes, record.status) for record in local_records(target, "run-2")} == {
        (literal, "skipped"),
        (latin1, "failed"),
    }


def test_a_name_that_collides_with_one_already_done_never_takes_its_outputs(tmp_path: Path, engines) -> None:
    """The recording done first keeps its transcripts, even when the newcomer comes first by bytes
    and has the same version, so that the done marker's name is the same for both."""
    source, target = tmp_path / "in", tmp_path / "out"
    latin1 = put(source, b"caf\xe9.wav", "short.wav")
    first = run_task(engines, str(source), str(target))
    assert (first.done, first.failed) == (1, 0)
    written = {
        path: (path.read_bytes(), path.stat().st_mtime_ns) for path in target.rglob("*") if path.is_file()
    }
    transcripts = {path: state for path, state in written.items() if "_manifest" not in path.parts}
    assert {path.name for path in transcripts} == {"caf\\xe9.wav.verbose.json", "caf\\xe9.wav.srt"}

    literal = put(source, b"caf\\xe9.wav", "short.mp3")  # a file really named caf\xe9.wav
    version = os.stat(latin1).st_mtime_ns
    os.utime(literal, ns=(version, version))
    for force in (False, True):
        again = run_task(
            engines, str(source), str(target), run_id=f"again-{force}", job=BatchJob(force=force)
        )

        (failure,) = again.failures
        assert (failure.name_bytes, failure.error_code) == (b"caf\\xe9.wav", "name_collision")
        assert repr(b"caf\xe9.wav") in (failure.error or "")
        if force:  # the keeper is redone; its outputs stay its own
            assert again.done == 1
        else:
            assert (again.done, again.skipped) == (0, 1)
            assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in transcripts} == transcripts
        (marker,) = done_markers(target)
        assert marker.name_bytes == b"caf\xe9.wav"
