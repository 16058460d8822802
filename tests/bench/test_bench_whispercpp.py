"""scripts/bench-whispercpp: what runs without a whisper.cpp build (none exists in CI), for real.

The measuring steps run against the real service over sockets (whisper.cpp's server answers the
same request); starting a peer is checked with a real child process; locating a build, reading
its log and the report are checked on files written here.
"""

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import targets
from bench.audio import Clip
from bench.coldstart import first_transcriptions, start_medians
from bench.machine import describe, load_average
from bench.serve import RunningService, free_port, serve, spawn
from bench.whispercpp import (
    CONCURRENT_REQUESTS,
    CONTENDERS,
    MODEL_IN_CACHE,
    SERVER_IN_CACHE,
    WHISPER_CPP,
    WHISPER_CPP_BEAM5,
    ContenderResult,
    VersusReport,
    alternating,
    command,
    concurrently,
    locate,
    main,
    markdown,
    settle,
    threads_in_log,
)

SERVICE_CONTENDER = CONTENDERS[0]


def fake_build(cache: Path) -> Path:
    """A cache folder laid out as scripts/build-whispercpp writes it (the files are not run here)."""
    (cache / SERVER_IN_CACHE).parent.mkdir(parents=True)
    (cache / SERVER_IN_CACHE).write_bytes(b"#!/bin/false\n")
    (cache / MODEL_IN_CACHE).write_bytes(b"ggml")
    (cache / "build-info.json").write_text(json.dumps({"version": "v1.9.3", "commit": "abc"}))
    return cache


def test_locate_reads_the_cache_and_says_how_to_build_when_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scripts/build-whispercpp SRC_DIR"):
        locate(tmp_path / "none")
    build = locate(fake_build(tmp_path / "cache"))
    assert build.server.name == "whisper-server" and build.info == {"version": "v1.9.3", "commit": "abc"}
    assert build.model_sha256 == hashlib.sha256(b"ggml").hexdigest()
    other = tmp_path / "other.bin"
    other.write_bytes(b"x")
    assert locate(tmp_path / "cache", model=other).model == other.resolve()  # explicit paths win


def test_whisper_cpp_is_started_on_openai_path_with_its_decode_flags(tmp_path: Path) -> None:
    build = locate(fake_build(tmp_path))
    beam5 = next(c for c in CONTENDERS if c.name == WHISPER_CPP_BEAM5)
    argv = command(beam5, build, 8123)
    assert argv[0] == str(build.server)
    assert argv[argv.index("--inference-path") + 1] == "/v1/audio/transcriptions"
    assert argv[argv.index("--port") + 1] == "8123" and argv[-2:] == ["--beam-size", "5"]
    assert "--port" not in command(beam5, build)  # as the report shows it
    assert command(SERVICE_CONTENDER, build)[1:] == ["-m", "whisper_api"]


def test_threads_come_from_whisper_cpps_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("system_info: n_threads = 2 / 2 | AVX = 1\nsystem_info: n_threads = 3 / 4 |\n")
    assert threads_in_log(log) == 3
    log.write_text("nothing yet")
    assert threads_in_log(log) is None and threads_in_log(tmp_path / "missing") is None


def test_main_refuses_without_a_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--whispercpp", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "no whisper.cpp server at" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["--whispercpp", str(fake_build(tmp_path / "c")), "--short-runs", "0"])


def test_a_peer_is_spawned_polled_on_its_own_path_and_stopped(tmp_path: Path) -> None:
    (tmp_path / "health").write_text("ok")
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with spawn(argv, None, port, "/health", timeout_s=30, cwd=tmp_path) as peer:
        assert peer.seconds_to_ready >= peer.seconds_to_http > 0 and peer.peak_rss_mib()
        settle([peer], quiet_s=0.3, timeout_s=10)  # idle: returns
        pid = peer.pid
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
    failing = [sys.executable, "-c", "print('nope'); raise SystemExit(1)"]
    with (
        pytest.raises(RuntimeError, match=r"exited with status 1 before ready; log tail:\n.*nope"),
        spawn(failing, None, free_port(), "/"),
    ):
        pass


def test_settle_waits_for_a_busy_server(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        server = RunningService("http://127.0.0.1:1", busy.pid, 0, 0, tmp_path / "log", 0)
        while (server.cpu_seconds() or 0) < 0.1:  # running (slowly, on a loaded machine)
            time.sleep(0.05)
        with pytest.raises(TimeoutError, match="still busy"):
            settle([server], quiet_s=0.5, timeout_s=2)
    finally:
        busy.kill()
        busy.wait()


@pytest.fixture(scope="module")
def service() -> Iterator[RunningService]:
    with serve({"WHISPER_BEAM_SIZE": "1"}) as running:
        yield running


def test_alternating_and_concurrent_rows_against_the_real_service(
    service: RunningService, tone: Path, tmp_path: Path
) -> None:
    clip = Clip(tone)
    rows = alternating({SERVICE_CONTENDER.name: service}, [SERVICE_CONTENDER], clip, 3)
    row = rows[SERVICE_CONTENDER.name]
    assert row.errors == 0 and row.latency is not None and row.latency.count == 3
    assert [r.index for r in row.records] == [0, 1, 2]
    assert row.wall_seconds == pytest.approx(sum(r.latency_s for r in row.records))

    loaded, probe = concurrently(SERVICE_CONTENDER, service, clip)
    assert loaded.requests == CONCURRENT_REQUESTS and loaded.errors == 0
    assert probe.failures == 0 and probe.latency is not None and probe.latency.count >= 1

    starts = [first_transcriptions(service, tone)]
    assert starts[0].first_transcription_s > starts[0].ready_s
    result = ContenderResult(
        name=SERVICE_CONTENDER.name,
        title=SERVICE_CONTENDER.title,
        command=["python", "-m", "whisper_api"],
        threads=None,
        starts=starts,
        start_medians=start_medians(starts),
        short=row,
        long=row,
        english=row,
        concurrent=loaded,
        probe=probe,
        peak_rss_single_mib=100.0,
        peak_rss_concurrent_mib=service.peak_rss_mib(),
    )
    # The same figures as whisper.cpp's, only slower: the verdicts follow the numbers.
    slower = result.model_copy(
        update={
            "name": WHISPER_CPP,
            "title": "whisper.cpp",
            "threads": 2,
            "start_medians": {k: v * 2 for k, v in result.start_medians.items()},
            "short": row.model_copy(update={"latency": row.latency.model_copy(update={"p50": 9.0})}),
            "peak_rss_single_mib": 50.0,
            "peak_rss_concurrent_mib": 50.0,
        }
    )
    build = locate(fake_build(tmp_path / "cache"))
    report = VersusReport(
        machine=describe(with_gpu=False),
        load_average_after=load_average(),
        whispercpp=build,
        clips={"short": clip.label, "long": clip.label, "english": clip.label},
        contenders=[result, slower],
    )
    text = markdown(report)
    assert "version v1.9.3" in text and "whisper.cpp: 2" in text
    assert f"| 11 s clip ({clip.label}), median of 3 | {row.latency.p50:.2f} s | 9.00 s |" in text

    versus = json.loads(report.model_dump_json())
    short = targets.short_clip(None, versus)
    assert short.met is True and "same run" in short.target
    rows_by_name = {v.target.split(" vs ")[0]: v for v in targets.versus_whispercpp(versus)}
    assert rows_by_name["process start → first transcription, median"].met is True
    assert rows_by_name["peak RSS, single and 8 concurrent"].met is False  # 50 MiB beats ours
