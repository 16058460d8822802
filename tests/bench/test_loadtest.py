"""scripts/loadtest (bench.loadtest): its percentiles, its refusals, its accounting against a stand-in
server over sockets, its time limit, and a real run of the service it starts itself."""

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from bench.loadtest import MAX_CLIENTS, MAX_REQUESTS, MAX_SECONDS, PROBE_PATHS, latency_summary, main
from bench.stats import percentile
from whisper_api.contract import HEALTH_PATH, METRICS_PATH, READY_PATH, TRANSCRIPTIONS_PATH


def run(tmp_path: Path, *argv: str) -> dict[str, Any]:
    output = tmp_path / "results.json"
    assert main([*argv, "--output", str(output)]) == 0
    return json.loads(output.read_text())


def test_percentiles_interpolate_as_every_other_benchmark_does() -> None:
    values = [0.1 * n for n in range(10, 0, -1)]
    summary = latency_summary(values)
    # Nearest rank, the load test's former method, gave 0.9 s for p90 here.
    assert summary["p90_s"] == pytest.approx(0.91) == percentile(values, 90)
    assert summary["p50_s"] == pytest.approx(0.55) and summary["p99_s"] == pytest.approx(0.991)
    assert summary["count"] == 10 and summary["max_s"] == pytest.approx(1.0)
    assert summary["mean_s"] == pytest.approx(0.55)
    assert latency_summary([]) == {
        "count": 0,
        "p50_s": None,
        "p90_s": None,
        "p99_s": None,
        "max_s": None,
        "mean_s": None,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://10.0.0.1:8080"],
        ["--url", "https://example.com"],
        ["--serve", "--url", "http://127.0.0.1:8080"],
        ["--clients", "0"],
        ["--clients", str(MAX_CLIENTS + 1)],
        ["--requests", "0"],
        ["--requests", str(MAX_REQUESTS + 1)],
        ["--max-seconds", "0"],
        ["--max-seconds", str(MAX_SECONDS + 1)],
    ],
)
def test_other_hosts_and_unbounded_runs_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def stand_in() -> FastAPI:
    """Every third request refused as the service refuses (429, Retry-After, error envelope), the fifth
    a bare 503 with no envelope, the rest 200 with Server-Timing; /metrics fails, the probes answer."""
    app = FastAPI()
    seen: list[int] = []

    @app.post(TRANSCRIPTIONS_PATH)
    async def transcribe(request: Request) -> Response:
        await request.form()
        seen.append(len(seen) + 1)
        number = seen[-1]
        await asyncio.sleep(0.05)
        if number % 3 == 0:
            body = {"error": {"message": "busy", "type": "rate_limit_error", "code": "queue_full"}}
            return Response(json.dumps(body), status_code=429, headers={"Retry-After": "2"})
        if number == 5:
            return Response("upstream went away", status_code=503)
        timing = 'read;dur=4, inference;dur=20;desc="model, beam 5", format'
        return Response('{"text": "hi"}', media_type="application/json", headers={"Server-Timing": timing})

    @app.get(HEALTH_PATH)
    @app.get(READY_PATH)
    async def probe() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(METRICS_PATH)
    async def metrics() -> Response:
        return Response("", status_code=503)

    return app


def test_every_answer_is_accounted_for(serve_app: Callable[[FastAPI], str], tmp_path: Path) -> None:
    url = serve_app(stand_in())
    argv = ["--url", url, "--pid", str(os.getpid()), "--clients", "2", "--requests", "6"]
    results = run(tmp_path, *argv, "--probe-interval", "0.01")
    assert results["requests_sent"] == results["requests_answered"] == 6 and results["unfinished"] == 0
    assert not results["stopped_by_time_limit"]
    assert results["status_counts"] == {"200": 3, "429": 2, "503": 1}
    assert results["error_codes"] == {"queue_full": 2, "not-an-envelope": 1}
    assert results["retry_after_values"] == ["2"]
    assert results["latency_all"]["count"] == 6 and results["latency_200"]["count"] == 3
    assert results["latency_200"]["p50_s"] >= 0.05
    # Server-Timing durations arrive in milliseconds and are reported in seconds; `format` has none.
    assert results["server_steps_mean_s"] == {"inference": pytest.approx(0.02), "read": pytest.approx(0.004)}
    assert list(results["probe_latency"]) == list(PROBE_PATHS)
    metrics_probes = results["probe_latency"][METRICS_PATH]["count"]
    assert metrics_probes >= 1 and results["probe_failures"] == {f"{METRICS_PATH} 503": metrics_probes}
    assert results["server_peak_rss_mib"] > 0  # this process serves the stand-in


def test_the_time_limit_stops_the_load(serve_app: Callable[[FastAPI], str], tmp_path: Path) -> None:
    app = FastAPI()

    @app.post(TRANSCRIPTIONS_PATH)
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"text": ""}

    @app.get(READY_PATH)
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    url = serve_app(app)
    results = run(tmp_path, "--url", url, "--clients", "2", "--requests", "8", "--max-seconds", "0.5")
    assert results["stopped_by_time_limit"]
    assert results["requests_sent"] == 2 and results["requests_answered"] == 0 and results["unfinished"] == 2
    assert results["wall_s"] < 3
    assert results["latency_200"]["p50_s"] is None and results["server_peak_rss_mib"] is None


def test_a_server_that_is_not_there_ends_the_run_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="was not ready"):
        main(["--url", "http://127.0.0.1:9", "--output", str(tmp_path / "results.json")])
    assert not (tmp_path / "results.json").exists()


def test_serve_loads_the_real_service_and_stops_it(tmp_path: Path) -> None:
    """`python -m whisper_api` (bundled tiny.en) started on a free port, loaded with real speech, stopped."""
    results = run(tmp_path, "--serve", "--clients", "2", "--requests", "2", "--probe-interval", "0.1")
    assert results["status_counts"] == {"200": 2}
    assert {"decode", "inference"} <= set(results["server_steps_mean_s"])
    assert results["server_peak_rss_mib"] > 50
    assert results["probe_failures"] == {}
    assert (tmp_path / "results.server.log").stat().st_size > 0
    with pytest.raises(httpx.TransportError):
        httpx.get(results["url"] + READY_PATH, timeout=2)
