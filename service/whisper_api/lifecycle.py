"""Graceful shutdown: on SIGTERM, drain, then stop.

Cloud Run sends SIGTERM and kills the instance 10 s later. Plain uvicorn closes its listening
socket at once (new clients get "connection refused") and cancels what is still running after
`timeout_graceful_shutdown`. This server drains first instead:

1. new audio requests are refused with 503 and Retry-After (the client retries on another
   instance), `/readyz` reports not ready, probes and `/metrics` still answer;
2. admitted requests (queued or inferring) run to completion, for up to `shutdown_grace_s`;
3. then uvicorn's own shutdown runs (close the socket, finish responses, lifespan shutdown)
   and the process exits 0. A second SIGTERM or Ctrl-C stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType
from typing import Any

import uvicorn

logger = logging.getLogger(__name__)

# Time left to uvicorn's own shutdown (flush responses, close idle keep-alive connections).
_UVICORN_SHUTDOWN_S = 1


class GracefulServer(uvicorn.Server):
    """A uvicorn Server whose first SIGTERM/SIGINT drains the app before exiting."""

    def __init__(self, config: uvicorn.Config, app: Any, grace_s: float) -> None:
        config.timeout_graceful_shutdown = _UVICORN_SHUTDOWN_S
        super().__init__(config)
        self.app = app
        self.grace_s = grace_s
        self.draining = False
        self.abandoned = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recording the signal (as uvicorn does) so that the process exits 0 instead of being
        # killed by the re-raised signal once the server has stopped.
        if self.draining or self._loop is None:
            logger.warning("second %s: stopping now", signal.Signals(sig).name)
            self.should_exit = True
            self.force_exit = True
            return
        self.draining = True
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        self._drain_task = asyncio.ensure_future(self.drain(signal.Signals(sig).name))

    async def drain(self, reason: str = "SIGTERM") -> None:
        """Stop taking work, wait for admitted requests up to the grace period, then stop uvicorn."""
        state = self.app.state
        scheduler = getattr(state, "scheduler", None)
        readiness = getattr(state, "readiness", None)
        if readiness is not None and hasattr(readiness, "model_copy"):
            state.readiness = readiness.model_copy(update={"ready": False, "error": "shutting down"})
        state.draining = True
        if scheduler is None:
            self.should_exit = True
            return
        scheduler.start_draining()
        logger.info(
            "%s: draining %d admitted request(s) for up to %.0f s", reason, scheduler.admitted, self.grace_s
        )
        if not await scheduler.wait_idle(self.grace_s):
            self.abandoned = scheduler.admitted
            logger.error("grace period over: %d request(s) abandoned", self.abandoned)
        else:
            logger.info("drained: every admitted request finished")
        self.should_exit = True


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """uvicorn.Config options that go with GracefulServer and telemetry.configure_logging."""
    return {
        "log_config": None,  # telemetry.configure_logging owns the handlers (JSON or plain)
        "access_log": False,  # TelemetryMiddleware writes the one line per request
        "log_level": settings.log_level.lower(),
        "server_header": False,
    }


async def warm_up_when_idle(engine: Any, scheduler: Any, quiet_s: float = 1.0, poll_s: float = 0.1) -> None:
    """Run `engine.background_warmup()` once on a thread, after `quiet_s` with no request in.

    Ready comes after the short `Engine.warmup`; a longer warm-up that only later requests need
    waits for a quiet moment, so that the request that woke the instance (Cloud Run sends it as
    soon as the startup probe passes) never queues behind it. A request that arrives while it runs
    waits at most for its rest (faster-whisper on GPU: 45 s of silence; openai-whisper: its DTW JIT).
    """
    warm = getattr(engine, "background_warmup", None)
    if warm is None:
        return
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        if scheduler.draining:
            return
        if scheduler.entered:  # uploading, queued or inferring
            quiet_since = time.monotonic()
        await asyncio.sleep(poll_s)
    started = time.perf_counter()
    try:
        await asyncio.to_thread(warm)
    except Exception:  # a failed warm-up costs speed, not service: requests still run
        logger.exception("background warm-up failed")
        return
    logger.info("background warm-up done in %.2f s", time.perf_counter() - started)
