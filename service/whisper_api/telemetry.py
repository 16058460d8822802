"""Where time goes, in three places: a `Server-Timing` header, one JSON log line per request, and
Prometheus metrics at `GET /metrics`.

Everything is measured once, on the request's `StepTimer` (`request.state.timer`), which the
`TelemetryMiddleware` creates before the app runs. Metrics live in a registry owned by the app,
not prometheus_client's global one, so that several apps (tests) can coexist in one process.
Logs never carry audio, transcript text, prompts or credentials: only sizes, timings and status.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whisper_api import contract
from whisper_api.request_id import request_id
from whisper_api.timing import StepTimer, request_timer

if TYPE_CHECKING:
    from whisper_api.scheduler import Scheduler
    from whisper_api.settings import Settings

# The steps a transcription goes through, in the order they happen (Server-Timing keeps this order).
STEPS = ("read", "decode", "queue", "inference", "diarization", "format")
ACCESS_LOGGER = "whisper_api.access"

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
_RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5)
_UNMATCHED_ENDPOINT = "unmatched"
# HTTP lets a client invent methods (any token): labelling by them would let it create series at will.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OTHER_METHOD = "other"
_PROBE_PATHS = (contract.HEALTH_PATH, contract.READY_PATH, contract.METRICS_PATH)


class Metrics:
    """The service's Prometheus metrics, registered in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "whisper_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "whisper_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.step_latency = Histogram(
            "whisper_step_duration_seconds",
            "Time spent in each step of a request (read, decode, queue, inference, format).",
            ["step"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "whisper_audio_processed_seconds", "Seconds of audio transcribed or translated.", registry=r
        )
        self.real_time_factor = Histogram(
            "whisper_real_time_factor",
            "Inference time divided by audio duration (below 1: faster than real time).",
            buckets=_RTF_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("whisper_queue_depth", "Admitted requests not yet inferring.", registry=r)
        self.in_flight = Gauge("whisper_inferences_in_flight", "Inferences running now.", registry=r)
        self.admitted = Gauge(
            "whisper_requests_admitted", "Audio requests admitted (waiting + inferring).", registry=r
        )
        self.capacity = Gauge(
            "whisper_queue_capacity", "Audio requests admitted at once before answering 429.", registry=r
        )
        self.model_load = Gauge(
            "whisper_model_load_seconds", "Time taken to load and warm the model at start.", registry=r
        )
        self.model_info = Gauge(
            "whisper_model_info",
            "The served model (value 1).",
            ["engine", "model", "device", "compute_type"],
            registry=r,
        )

    def bind_scheduler(self, scheduler: Scheduler) -> None:
        """Read the queue gauges from the scheduler at scrape time, so they are never stale."""
        self.queue_depth.set_function(lambda: scheduler.waiting)
        self.in_flight.set_function(lambda: scheduler.running)
        self.admitted.set_function(lambda: scheduler.admitted)
        self.capacity.set(scheduler.queue_size)

    def record_model(self, engine: Any, load_seconds: float) -> None:
        self.model_load.set(load_seconds)
        self.model_info.labels(
            engine=str(getattr(engine, "name", "")),
            model=str(getattr(engine, "model", "")),
            device=str(getattr(engine, "device", "")),
            compute_type=str(getattr(engine, "compute_type", "")),
        ).set(1)

    def observe_request(
        self, endpoint: str, method: str, status: int, latency_s: float, timer: StepTimer
    ) -> None:
        self.requests.labels(endpoint=endpoint, method=method, status=str(status)).inc()
        self.request_latency.labels(endpoint=endpoint).observe(latency_s)
        for step, seconds in timer.steps.items():
            self.step_latency.labels(step=step).observe(seconds)
        audio_seconds = timer.audio_seconds
        inference = timer.steps.get("inference")
        if audio_seconds and status < 400:
            self.audio_seconds.inc(audio_seconds)
            if inference is not None:
                self.real_time_factor.observe(inference / audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


metrics_router = APIRouter()


@metrics_router.get(contract.METRICS_PATH, include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def server_timing(timer: StepTimer, total_s: float) -> str:
    """`read;dur=12.3, …, total;dur=45.6` in milliseconds, the known steps first and in order."""
    ordered = [s for s in STEPS if s in timer.steps] + [s for s in timer.steps if s not in STEPS]
    parts = [f"{step};dur={timer.steps[step] * 1000:.1f}" for step in ordered]
    parts.append(f"total;dur={total_s * 1000:.1f}")
    return ", ".join(parts)


# The span is a decimal uint64 (at most 20 digits): a longer one is ignored, never parsed whole.
_TRACE_CONTEXT = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20})(?!\d))?(?:;o=([01]))?")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def trace_fields(headers: dict[str, str], project_id: str | None) -> dict[str, Any]:
    """Cloud Logging's trace fields from `X-Cloud-Trace-Context` (or W3C `traceparent`)."""
    if not project_id:
        return {}
    trace_id = span_id = None
    sampled = False
    if match := _TRACE_CONTEXT.match(headers.get("x-cloud-trace-context", "")):
        trace_id, span, flag = match.groups()
        span_id = f"{int(span):016x}" if span and int(span) < 2**64 else None
        sampled = flag == "1"
    elif match := _TRACEPARENT.match(headers.get("traceparent", "")):
        trace_id, span_id, flags = match.groups()
        sampled = int(flags, 16) & 1 == 1
    if trace_id is None:
        return {}
    fields: dict[str, Any] = {
        "logging.googleapis.com/trace": f"projects/{project_id}/traces/{trace_id.lower()}",
        "logging.googleapis.com/trace_sampled": sampled,
    }
    if span_id:
        fields["logging.googleapis.com/spanId"] = span_id
    return fields


class TelemetryMiddleware:
    """Pure ASGI middleware: creates the request's timer, adds Server-Timing, records metrics, logs once.

    Pure ASGI (not BaseHTTPMiddleware) so that bodies stream through untouched and a client's
    disconnect still reaches the app.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, project_id: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        if project_id is None:
            project_id = os.environ.get(contract.ENV_GOOGLE_CLOUD_PROJECT)
        self.project_id = project_id
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        timer = request_timer(scope)
        status = 500
        response_size = 0

        async def send_with_timing(message: Message) -> None:
            nonlocal status, response_size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                value = server_timing(timer, time.perf_counter() - start)
                headers.append((b"server-timing", value.encode("latin-1")))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                response_size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            latency = time.perf_counter() - start
            endpoint = _endpoint(scope)
            method = scope["method"] if scope["method"] in _METHODS else _OTHER_METHOD
            self.metrics.observe_request(endpoint, method, status, latency, timer)
            self._log(scope, status, latency, response_size, timer)

    def _log(self, scope: Scope, status: int, latency: float, response_size: int, timer: StepTimer) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        http_request: dict[str, Any] = {
            "requestMethod": scope["method"],
            # The path only: a query string is the client's and may carry anything.
            "requestUrl": scope.get("path", ""),
            "status": status,
            "latency": f"{latency:.3f}s",
            "userAgent": headers.get("user-agent", ""),
            "remoteIp": _remote_ip(scope, headers),
            "responseSize": str(response_size),
            "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
        }
        if "content-length" in headers:
            http_request["requestSize"] = headers["content-length"]
        fields: dict[str, Any] = {
            "httpRequest": http_request,
            "timings_ms": {step: round(s * 1000, 1) for step, s in timer.steps.items()},
            # The whole timing, also of a stream, whose Server-Timing header left with its first event.
            "server_timing": server_timing(timer, latency),
            **trace_fields(headers, self.project_id),
        }
        if timer.audio_seconds is not None:
            fields["audio_seconds"] = round(timer.audio_seconds, 3)
        if identifier := request_id(scope):
            fields["request_id"] = identifier
        engine = getattr(getattr(getattr(scope.get("app"), "state", None), "engine", None), "name", None)
        if engine and scope.get("path", "").startswith(contract.AUDIO_PATH_PREFIX):
            fields["engine"] = engine
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        # Probes are noisy (and /readyz is 503 while loading): DEBUG, except a refused /metrics.
        path = scope.get("path")
        if path in (contract.HEALTH_PATH, contract.READY_PATH) or (
            path == contract.METRICS_PATH and status < 400
        ):
            level = logging.DEBUG
        message = f"{scope['method']} {scope.get('path', '')} {status} {latency * 1000:.0f}ms"
        if identifier:
            message = f"{message} {identifier}"
        self.logger.log(level, message, extra={"json_fields": fields})


def _endpoint(scope: Scope) -> str:
    """The matched route's template (`/v1/audio/transcriptions`), never the raw path (unbounded labels)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else _UNMATCHED_ENDPOINT


def _remote_ip(scope: Scope, headers: dict[str, str]) -> str:
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    client = scope.get("client")
    return client[0] if client else ""


# Python's level names that Cloud Logging knows as severities; anything else is DEFAULT.
_SEVERITIES = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per line, in the shape Cloud Logging parses from a container's stdout."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # Error Reporting picks stack traces up from the message.
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname in _SEVERITIES else "DEFAULT",
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "logger": record.name,
        }
        fields = getattr(record, "json_fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Readable lines for a terminal (`make run`); the JSON fields are left out."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Route the app's and uvicorn's logs through one handler: JSON lines or plain text.

    Run uvicorn with `log_config=None` and `access_log=False` (the access line is ours).
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(CloudLoggingFormatter() if settings.log_json else PlainFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
        uvicorn_logger.disabled = False  # an earlier dictConfig may have disabled it
        uvicorn_logger.setLevel(logging.NOTSET)
    logging.getLogger("uvicorn.access").disabled = True
    # faster-whisper logs two INFO lines per request (duration, VAD); the request line says enough.
    logging.getLogger("faster_whisper").setLevel(max(root.level, logging.WARNING))


def install_telemetry(app: Any, metrics: Metrics | None = None, project_id: str | None = None) -> Metrics:
    """Give `app` its metrics, the `/metrics` route and the middleware (outermost, to time everything)."""
    metrics = metrics or Metrics()
    app.state.metrics = metrics
    app.include_router(metrics_router)
    app.add_middleware(TelemetryMiddleware, metrics=metrics, project_id=project_id)
    return metrics
