"""Server-Timing, the per-request JSON log line and the Prometheus metrics, on small apps of their own."""

import io
import json
import logging

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from whisper_api import contract
from whisper_api.settings import Settings
from whisper_api.telemetry import (
    ACCESS_LOGGER,
    CloudLoggingFormatter,
    Metrics,
    configure_logging,
    install_telemetry,
    server_timing,
    trace_fields,
)
from whisper_api.timing import StepTimer, request_timer

TRACE_ID = "105445aa7843bc8bf206b12000100000"


def timed_app(project_id: str | None = None) -> FastAPI:
    """An app whose one route records the steps a transcription records, and some audio seconds."""
    app = FastAPI()

    @app.post("/v1/audio/items/{item_id}")
    async def work(item_id: int, request: Request) -> dict[str, int]:
        timer = request_timer(request.scope)
        assert timer is request.state.timer
        timer.record("decode", 0.002)
        timer.record("queue", 0.001)
        timer.record("inference", 0.5)
        timer.record("format", 0.0001)
        timer.audio_seconds = 10.0
        await request.body()
        return {"item": item_id}

    install_telemetry(app, project_id=project_id)
    return app


def parse_server_timing(header: str) -> dict[str, float]:
    return {part.split(";dur=")[0]: float(part.split(";dur=")[1]) for part in header.split(", ")}


def test_server_timing_lists_known_steps_in_order_then_total() -> None:
    timer = StepTimer()
    timer.record("inference", 1.23456)
    timer.record("read", 0.0123)
    timer.record("custom", 0.5)
    assert (
        server_timing(timer, 2.0) == "read;dur=12.3, inference;dur=1234.6, custom;dur=500.0, total;dur=2000.0"
    )


def test_every_response_has_server_timing_with_the_route_steps() -> None:
    with TestClient(timed_app()) as client:
        response = client.post("/v1/audio/items/3", content=b"x" * 1000)
        probe = client.get("/nowhere")
    assert response.status_code == 200
    steps = parse_server_timing(response.headers["server-timing"])
    assert list(steps) == ["decode", "queue", "inference", "format", "total"]
    assert steps["inference"] == 500.0
    assert steps["total"] >= 0
    # Even an error answer carries the header (with just the total).
    assert probe.status_code == 404
    assert list(parse_server_timing(probe.headers["server-timing"])) == ["total"]


def test_metrics_count_requests_by_route_template_and_status() -> None:
    with TestClient(timed_app()) as client:
        for item in (1, 2):
            client.post(f"/v1/audio/items/{item}")
        client.get("/nowhere/1")
        client.get("/nowhere/2")
        text = client.get(contract.METRICS_PATH).text
    assert (
        'whisper_http_requests_total{endpoint="/v1/audio/items/{item_id}",method="POST",status="200"} 2.0'
        in text
    )
    assert 'whisper_http_requests_total{endpoint="unmatched",method="GET",status="404"} 2.0' in text
    assert 'whisper_step_duration_seconds_count{step="inference"} 2.0' in text
    assert "whisper_audio_processed_seconds_total 20.0" in text
    # real-time factor = 0.5 s of inference / 10 s of audio, twice
    assert "whisper_real_time_factor_sum 0.1" in text
    assert 'whisper_http_request_duration_seconds_count{endpoint="/v1/audio/items/{item_id}"} 2.0' in text


def test_each_app_has_its_own_registry() -> None:
    first, second = timed_app(), timed_app()
    with TestClient(first) as one, TestClient(second) as two:
        one.post("/v1/audio/items/1")
        assert 'status="200"} 1.0' in one.get("/metrics").text
        assert 'endpoint="/v1/audio/items/{item_id}"' not in two.get("/metrics").text


def test_queue_gauges_read_the_scheduler_at_scrape_time() -> None:
    class FakeScheduler:
        waiting, running, admitted, queue_size = 3, 1, 4, 8

    metrics = Metrics()
    metrics.bind_scheduler(FakeScheduler())  # type: ignore[arg-type]
    text = metrics.render().decode()
    assert "whisper_queue_depth 3.0" in text
    assert "whisper_inferences_in_flight 1.0" in text
    assert "whisper_queue_capacity 8.0" in text


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter = CloudLoggingFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == ACCESS_LOGGER]


def test_one_cloud_logging_line_per_request_with_trace_and_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    body = b"SECRET-TRANSCRIPT-WORDS"
    with TestClient(timed_app(project_id="my-project")) as client:
        response = client.post(
            "/v1/audio/items/7?prompt=SECRET-PROMPT",
            content=body,
            headers={
                "X-Cloud-Trace-Context": f"{TRACE_ID}/1;o=1",
                "Authorization": "Bearer SECRET-KEY",
                "User-Agent": "tests/1.0",
            },
        )
    assert response.status_code == 200
    [line] = access_lines(caplog)
    assert line["severity"] == "INFO"
    assert line["message"].startswith("POST /v1/audio/items/7 200")
    http = line["httpRequest"]
    assert http["requestMethod"] == "POST"
    assert http["requestUrl"] == "/v1/audio/items/7"
    assert http["status"] == 200
    assert http["latency"].endswith("s") and float(http["latency"][:-1]) >= 0
    assert http["userAgent"] == "tests/1.0"
    assert http["requestSize"] == str(len(body))
    assert http["responseSize"] == str(len(response.content))
    assert http["remoteIp"]
    assert line["logging.googleapis.com/trace"] == f"projects/my-project/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/trace_sampled"] is True
    assert line["timings_ms"]["inference"] == 500.0
    assert line["audio_seconds"] == 10.0
    raw = json.dumps(line)
    for secret in ("SECRET-TRANSCRIPT-WORDS", "SECRET-PROMPT", "SECRET-KEY"):
        assert secret not in raw


def test_error_answers_log_as_warning_and_probes_as_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOGGER)
    app = timed_app()

    @app.get(contract.HEALTH_PATH)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    with TestClient(app) as client:
        client.get("/nowhere")
        client.get(contract.HEALTH_PATH)
    severities = {line["httpRequest"]["requestUrl"]: line["severity"] for line in access_lines(caplog)}
    assert severities == {"/nowhere": "WARNING", contract.HEALTH_PATH: "DEBUG"}


def test_trace_fields_need_a_project_and_accept_traceparent() -> None:
    header = {"x-cloud-trace-context": f"{TRACE_ID}/17;o=0"}
    assert trace_fields(header, None) == {}
    fields = trace_fields(header, "p")
    assert fields["logging.googleapis.com/spanId"] == f"{17:016x}"
    assert fields["logging.googleapis.com/trace_sampled"] is False
    w3c = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    assert trace_fields(w3c, "p")["logging.googleapis.com/trace"] == f"projects/p/traces/{TRACE_ID}"
    assert trace_fields({"x-cloud-trace-context": "garbage"}, "p") == {}


def test_configure_logging_makes_uvicorn_and_app_logs_json_or_plain() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        stream = io.StringIO()
        configure_logging(Settings(log_json=True, log_level="INFO"), stream=stream)
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("whisper_api.app").warning("careful")
        logging.getLogger("faster_whisper").info("Processing audio with duration 00:11.000")
        first, second = (json.loads(line) for line in stream.getvalue().splitlines())
        assert first == {**first, "severity": "INFO", "message": "Started server process [42]"}
        assert second["severity"] == "WARNING" and second["logger"] == "whisper_api.app"

        plain = io.StringIO()
        configure_logging(Settings(log_json=False, log_level="INFO"), stream=plain)
        logging.getLogger("uvicorn.error").info("hello")
        assert "INFO" in plain.getvalue() and "hello" in plain.getvalue()
        assert not plain.getvalue().startswith("{")
    finally:
        root.handlers, level = saved
        root.setLevel(level)
