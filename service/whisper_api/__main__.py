"""`python -m whisper_api`: serve the API with uvicorn on HOST:PORT (default 127.0.0.1:8080).

Prints the URL and the docs link once the model is loaded and warmed; exits non-zero, with the
reason, when it cannot load, instead of serving a never-ready server. A WHISPER_* value that is
invalid, or an API key that cannot be used, stops the start with one line per problem and exit
code 2 (a configuration error, not a crash).

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
from typing import TYPE_CHECKING

from pydantic import ValidationError

from whisper_api import contract
from whisper_api.memory import cap_malloc_arenas, keep_large_blocks_in_heap
from whisper_api.settings import Settings, get_settings

# Exit code for a configuration that cannot serve (argparse's code for a usage error).
CONFIG_ERROR = 2

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from whisper_api.engines import Engine


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
    from whisper_api.connections import DenialAwareWebSocketProtocol, GuardedH11Protocol
    from whisper_api.lifecycle import GracefulServer, uvicorn_options

    app = create_app(settings, load_engine=None if loading is None else lambda _settings: loading.result())
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        http=GuardedH11Protocol.with_head_timeout(settings.header_timeout_s),
        ws=DenialAwareWebSocketProtocol,
        # A realtime append up to twice the limit still gets its `error` event; larger frames are cut (1009).
        ws_max_size=2 * (settings.realtime_max_append_bytes * 4 // 3 + 4096),
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


def settings_problems(error: ValidationError) -> list[str]:
    """One line per invalid WHISPER_* value, naming the variable; secrets are never echoed."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "settings"
        variable = f"{contract.ENV_PREFIX}{field.upper()}"
        shown = "" if "key" in field else f" (got {problem.get('input')!r})"
        lines.append(f"{variable}: {problem['msg']}{shown}")
    return lines


def _refuse(lines: list[str]) -> int:
    for line in lines:
        print(f"whisper_api: cannot start: {line}", file=sys.stderr, flush=True)
    return CONFIG_ERROR


def main() -> int:
    cap_malloc_arenas()
    try:
        settings = get_settings()
    except ValidationError as error:
        return _refuse(settings_problems(error))
    loading = start_loading(settings)
    from whisper_api.auth import ApiKeyAuth, ApiKeyError
    from whisper_api.telemetry import configure_logging

    try:
        ApiKeyAuth.from_settings(settings)
    except ApiKeyError as error:
        # The loading thread cannot be interrupted: leaving while CTranslate2 runs in it aborts
        # the interpreter (SIGABRT, exit 134), so wait for it first.
        loading.exception()
        return _refuse([str(error)])
    configure_logging(settings)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", str(contract.PORT)))
    return asyncio.run(serve(settings, host, port, loading))


if __name__ == "__main__":
    sys.exit(main())
