"""Realtime sessions in the service's Prometheus registry: how many are open, how they end, the
errors they are sent, and the two latencies users feel: speech → first caption, and end of speech
→ final transcript."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from whisper_api.realtime import events as ev

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge(
            "whisper_realtime_sessions_active", "Realtime sessions open now.", registry=registry
        )
        self.capacity = Gauge(
            "whisper_realtime_sessions_capacity",
            "Realtime sessions an instance holds at once.",
            registry=registry,
        )
        self.sessions = Counter(
            "whisper_realtime_sessions",
            "Realtime sessions ended, by how (client_closed, idle, expired, stalled, refused, error).",
            ["outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "whisper_realtime_errors",
            "`error` events sent to realtime clients, by code.",
            ["code"],
            registry=registry,
        )
        self.first_delta = Histogram(
            "whisper_realtime_first_delta_seconds",
            "From speech start (or the first audio of a manually committed item) to its first delta.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.finalisation = Histogram(
            "whisper_realtime_finalisation_seconds",
            "From an item's commit (end of speech with server VAD) to its completed transcript.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def observer(self) -> SessionObserver:
        return SessionObserver(self)


class SessionObserver:
    """One session's view: it times each item from its start and commit to its first delta and completion."""

    def __init__(self, metrics: RealtimeMetrics) -> None:
        self.metrics = metrics
        self._started: dict[str, float] = {}
        self._committed: dict[str, float] = {}

    def sent(self, event: ev.ServerEvent) -> None:
        now = time.monotonic()
        if isinstance(event, ev.SpeechStarted):
            self._started[event.item_id] = now
        elif isinstance(event, ev.Committed):
            self._committed[event.item_id] = now
            self._started.setdefault(event.item_id, now)
        elif isinstance(event, ev.TranscriptionDelta):
            started = self._started.pop(event.item_id, None)
            if started is not None:
                self.metrics.first_delta.observe(now - started)
        elif isinstance(event, ev.TranscriptionCompleted | ev.TranscriptionFailed):
            self._started.pop(event.item_id, None)
            committed = self._committed.pop(event.item_id, None)
            if committed is not None:
                self.metrics.finalisation.observe(now - committed)
        elif isinstance(event, ev.ErrorEvent):
            self.metrics.errors.labels(code=event.error.code or "unknown").inc()
