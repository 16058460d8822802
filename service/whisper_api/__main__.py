"""`python -m whisper_api`: serve the API with uvicorn on HOST:PORT (default 127.0.0.1:8080).

Prints the URL and the docs link once the model is loaded and warmed; exits non-zero, with the
reason, when it cannot load (a bad WHISPER_* setting), instead of serving a never-ready server.

Cold start is the first request's latency on a service that scales to zero, so the model starts
loading on a thread before anything else is imported: CTranslate2 reads and quantises the weights
with the GIL released while this thread imports the web stack (FastAPI, uvicorn) and binds the port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from whisper_api import contract
from whisper_api.settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from whisper_api.engines import Engine


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
MALLOC_ARENAS = 1
# Free memory at the top of the heap beyond this goes back to the system at once.
HEAP_TRIM_THRESHOLD = 128 * 1024 * 1024
# Environment variables through which an operator tunes glibc's malloc (theirs win).
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def _glibc() -> Any | None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most `arenas` glibc malloc arenas, before any thread starts (as MALLOC_ARENA_MAX does).

    By default every thread that allocates while another holds the lock gets an arena of its own
    (up to 8 per core), and each keeps the memory it freed: uploads decoded on several threads,
    inference on another. Measured with 8 concurrent 11 s requests: peak RSS 374 → 332 MiB with 2
    arenas, at equal CPU per request. One, so that `keep_large_blocks_in_heap` reuses the
    encoder's buffers: a second arena's heaps (64 MiB each) split them, 296 instead of 278 MiB in
    one process (docs/benchmarks.md). False where the C library is not glibc.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):  # the operator's own choice wins
        return False
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def keep_large_blocks_in_heap() -> bool:
    """Once the faster-whisper model is loaded on CPU: glibc serves even large blocks from its heap
    (no mmap), hands back the heap's free top only beyond HEAP_TRIM_THRESHOLD, and returns now
    what loading freed.

    For each layer of each 30 s window, CTranslate2's encoder allocates and frees the attention
    scores (6 heads x 1500 x 1500 float32, 51.5 MiB) and some 30 MiB of smaller buffers. With
    glibc's defaults the scores were mapped afresh each time, on top of a heap that kept the
    rest: peak RSS 325-335 MiB once the service had warmed up, 53,000 page faults per request.
    From the heap they are reused: peak 280-299 MiB (in 1 run of ~20 one block more), about 15 %
    less CPU per request, a few hundred page faults; long files peak 7 % higher
    (docs/benchmarks.md, Memory). The model loads before, with mmap, so that its conversion's
    temporaries leave no holes between the weights. False where an operator tuned malloc through
    its environment variables, or the C library is not glibc.
    """
    if any(os.environ.get(name) for name in _MALLOC_ENV) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    libc = _glibc()
    if libc is None:
        return False
    kept = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)
    libc.malloc_trim(0)
    return bool(kept)


def start_loading(settings: Settings) -> Future[Engine]:
    """Load and warm the engine on its own thread, from now on; the app waits for the future."""
    future: Future[Engine] = Future()

    def load() -> None:
        future.set_running_or_notify_cancel()
        try:
            from whisper_api.engines import load_and_warm_up

            engine = load_and_warm_up(settings)
            if engine.name == "faster-whisper" and engine.device == "cpu":
                keep_large_blocks_in_heap()
            future.set_result(engine)
        except BaseException as error:  # handed to the app, which reports it and exits non-zero
            future.set_exception(error)

    threading.Thread(target=load, name="engine-load", daemon=True).start()
    return future


def _announce_when_ready(app: FastAPI, server: uvicorn.Server, url: str) -> asyncio.Task[None]:
    async def watch() -> None:
        await app.state.load_finished.wait()
        if app.state.readiness.ready:
            ready = app.state.readiness
            print(
                f"Whisper API ready: {ready.engine} {ready.model} on {ready.device} ({ready.compute_type})\n"
                f"  API:  {url}/v1\n  Docs: {url}/docs",
                flush=True,
            )
        else:
            print(f"The model failed to load: {app.state.readiness.error}", file=sys.stderr, flush=True)
            server.should_exit = True

    return asyncio.create_task(watch())


async def serve(settings: Settings, host: str, port: int, loading: Future[Engine] | None = None) -> int:
    import uvicorn

    from whisper_api.app import create_app
    from whisper_api.connections import GuardedH11Protocol
    from whisper_api.lifecycle import GracefulServer, uvicorn_options

    app = create_app(settings, load_engine=None if loading is None else lambda _settings: loading.result())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        http=GuardedH11Protocol.with_head_timeout(settings.header_timeout_s),
        **uvicorn_options(settings),
    )
    server = GracefulServer(config, app, grace_s=settings.shutdown_grace_s)
    shown_host = f"[{host}]" if ":" in host else host
    watcher = _announce_when_ready(app, server, f"http://{shown_host}:{port}")
    await server.serve()
    watcher.cancel()
    if server.abandoned:  # in-flight work outlived the grace period: do not wait for its threads
        logging.shutdown()
        os._exit(1)
    return 1 if getattr(app.state, "load_error", None) is not None else 0


def main() -> int:
    cap_malloc_arenas()
    settings = get_settings()
    loading = start_loading(settings)
    from whisper_api.telemetry import configure_logging

    configure_logging(settings)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", str(contract.PORT)))
    return asyncio.run(serve(settings, host, port, loading))


if __name__ == "__main__":
    sys.exit(main())
