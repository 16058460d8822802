"""The real server under load and on SIGTERM: `python -m whisper_api` in a subprocess on loopback,
the real model and real audio, driven by `scripts/loadtest` and by plain HTTP clients."""

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import Server, start_server, stop

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
LOADTEST = REPO / "scripts" / "loadtest"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker, four admitted at once: 16 simultaneous clients must meet backpressure."""
    running = start_server(tmp_path_factory.mktemp("server"), WHISPER_WORKERS="1", WHISPER_QUEUE_SIZE="4")
    yield running
    stop(running)


def run_loadtest(server: Server, tmp_path: Path, *args: str) -> dict[str, Any]:
    output = tmp_path / "results.json"
    command = [sys.executable, str(LOADTEST), "--url", server.url, "--pid", str(server.process.pid)]
    result = subprocess.run(
        [*command, "--output", str(output), "--max-seconds", "240", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(output.read_text())


def test_16_concurrent_clients_get_200_or_429_and_none_is_lost(server: Server, tmp_path: Path) -> None:
    results = run_loadtest(server, tmp_path, "--clients", "16", "--requests", "16")
    statuses = results["status_counts"]
    assert results["requests_answered"] == 16 and results["unfinished"] == 0
    assert set(statuses) <= {"200", "429"}, statuses
    assert sum(statuses.values()) == 16
    # Four are admitted at once; the rest are refused at the door with a Retry-After.
    assert statuses.get("200", 0) >= 4 and statuses.get("429", 0) >= 1, statuses
    assert set(results["error_codes"]) <= {"queue_full"}
    assert results["retry_after_values"] and all(int(v) >= 1 for v in results["retry_after_values"])
    assert (
        results["latency_200"]["p50_s"] > 0
        and results["latency_200"]["p99_s"] >= results["latency_200"]["p50_s"]
    )
    assert {"read", "decode", "queue", "inference", "format"} <= set(results["server_steps_mean_s"])
    assert results["server_peak_rss_mib"] > 50
    # The instance recovered: nothing is left admitted.
    assert server.metric("whisper_requests_admitted") == 0


def test_probes_answer_fast_while_a_long_file_is_transcribed(server: Server, tmp_path: Path) -> None:
    results = run_loadtest(
        server, tmp_path, "--file", str(FIXTURES / "long.ogg"), "--clients", "2", "--requests", "2",
        "--probe-interval", "0.1",
    )  # fmt: skip
    assert results["status_counts"] == {"200": 2}
    assert results["latency_200"]["max_s"] > 1  # the inference took a while...
    for path, latency in results["probe_latency"].items():
        assert latency["count"] >= 5, path  # ...and the probes were asked throughout...
        assert latency["max_s"] < 1, (path, latency)  # ...and never waited for it.
    assert results["probe_failures"] == {}


def test_sigterm_drains_in_flight_work_refuses_new_work_and_exits_0(tmp_path: Path) -> None:
    server = start_server(tmp_path, WHISPER_SHUTDOWN_GRACE_S="8", WHISPER_QUEUE_SIZE="4")
    try:
        in_flight: dict[str, Any] = {}

        def long_request() -> None:
            with (FIXTURES / "long.ogg").open("rb") as audio:
                response = httpx.post(
                    f"{server.url}/v1/audio/transcriptions",
                    files={"file": ("long.ogg", audio)},
                    data={"model": "whisper-1", "response_format": "text"},
                    timeout=60,
                )
            in_flight["status"], in_flight["text"] = response.status_code, response.text

        client = threading.Thread(target=long_request)
        client.start()
        deadline = time.monotonic() + 30
        while server.metric("whisper_inferences_in_flight") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)

        sent_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        refused = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            files={"file": ("short.wav", (FIXTURES / "short.wav").read_bytes())},
            timeout=10,
            data={"model": "whisper-1"},
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert int(refused.headers["retry-after"]) >= 1
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 503
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200

        client.join(timeout=30)
        assert in_flight.get("status") == 200, in_flight
        assert "weekly meeting" in in_flight["text"].lower()
        assert server.process.wait(timeout=15) == 0
        assert time.monotonic() - sent_at < 8 + 2
        log = server.log.read_text()
        assert "drained: every admitted request finished" in log
    finally:
        stop(server)
