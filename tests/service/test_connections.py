"""Hostile clients at the HTTP level, against the real server over raw sockets: connections that
send nothing or drip their headers (slowloris), malformed HTTP, invented methods and trace headers
built to break the metrics and the logs."""

import json
import os
import random
import socket
import string
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.engines import FIXTURES
from tests.support.server import Server, start_server, stop

HEADER_TIMEOUT_S = 2.0
IDLE_CONNECTIONS = 400
BOUNDARY = "slow-upload"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("server"),
        WHISPER_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        GOOGLE_CLOUD_PROJECT="my-project",
    )
    yield running
    stop(running)


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def envelope(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    return int(head.split()[1]), json.loads(body)["error"]


def open_fds(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def rss_mib(server: Server) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: Server) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
    assert HEADER_TIMEOUT_S * 0.9 <= time.monotonic() - started < HEADER_TIMEOUT_S + 5


def test_headers_dripped_a_byte_at_a_time_get_a_408_envelope(server: Server) -> None:
    """Each byte arrives well inside any idle timeout; the head as a whole still has a deadline."""
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with connect(server) as sock:
        started = time.monotonic()
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed by the server
                break
            time.sleep(0.05)
        status, error = envelope(read_until_closed(sock))
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 5
    assert status == 408
    assert error["code"] == "header_timeout"
    assert error["type"] == "invalid_request_error"
    assert "WHISPER_HEADER_TIMEOUT_S" in error["message"]


def test_hundreds_of_stalled_connections_cost_little_block_nobody_and_are_all_closed(
    server: Server,
) -> None:
    fds_before, rss_before = open_fds(server), rss_mib(server)
    stalled = []
    for index in range(IDLE_CONNECTIONS):
        sock = connect(server)
        if index % 2:  # half begin a request with 8 KB of headers, half send nothing
            sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8000)
        stalled.append(sock)
    accepting_until = time.monotonic() + HEADER_TIMEOUT_S / 2
    while open_fds(server) < fds_before + IDLE_CONNECTIONS and time.monotonic() < accepting_until:
        time.sleep(0.02)  # the server accepts them from its backlog
    assert open_fds(server) >= fds_before + IDLE_CONNECTIONS * 0.9
    # About 8 KiB each here; the margin covers allocator noise on a busy machine.
    assert rss_mib(server) - rss_before < 64

    served = httpx.get(f"{server.url}/v1/models", timeout=10)
    assert served.status_code == 200

    deadline = time.monotonic() + HEADER_TIMEOUT_S + 15
    for sock in stalled:
        sock.settimeout(max(deadline - time.monotonic(), 0.1))
        with sock:
            read_until_closed(sock)  # raises socket.timeout if the server kept it open
    while open_fds(server) > fds_before + 2:  # + httpx's keep-alive connection, if still open
        assert time.monotonic() < deadline, f"{open_fds(server)} descriptors still open"
        time.sleep(0.1)


def test_a_request_served_longer_than_the_header_timeout_is_not_cut(server: Server) -> None:
    """The deadline is for the head only: an upload arriving over twice that long (each piece well
    inside the upload idle timeout) is served, and so is the next request on the connection."""
    wav = (FIXTURES / "short.wav").read_bytes()
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        ).encode()
        + wav
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()
    pieces = 10
    with connect(server) as sock:
        sock.sendall(head)
        for index in range(pieces):
            sock.sendall(body[index * len(body) // pieces : (index + 1) * len(body) // pieces])
            time.sleep(HEADER_TIMEOUT_S * 2 / pieces)
        answer = b""
        while b"fox" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"closed before the answer: {answer!r}"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rb\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\0" * 64,  # TLS to a plain-HTTP port
    ],
    ids=["content-length-not-a-number", "two-content-lengths", "cr-in-a-header", "tls-hello"],
)
def test_malformed_http_is_a_400_envelope(server: Server, request_bytes: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        status, error = envelope(read_until_closed(sock))
    assert status == 400
    assert error["code"] == "invalid_http"


def test_invented_methods_share_one_metrics_label(server: Server) -> None:
    """HTTP lets a client send any token as a method; each must not become a new time series."""

    def series() -> set[str]:
        text = httpx.get(f"{server.url}/metrics", timeout=5).text
        return {
            line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("whisper_http_requests_")
        }

    series()  # the first scrape adds /metrics' own series
    before = series()
    for _ in range(50):
        method = "".join(random.choices(string.ascii_uppercase, k=12))
        with connect(server) as sock:
            sock.sendall(f"{method} /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert read_until_closed(sock).startswith(b"HTTP/1.1 405")
    added = series() - before
    assert all('method="other"' in name for name in added), added
    assert len(added) <= 2, added  # the counter and its _created sample, once


def test_an_oversized_trace_span_is_ignored_not_an_error(server: Server) -> None:
    """A span id of 5,000 digits (Python refuses to parse over 4,300) is dropped; the trace is kept."""
    trace = "0123456789abcdef0123456789abcdef"
    response = httpx.get(
        f"{server.url}/v1/models/not-served",
        headers={"X-Cloud-Trace-Context": f"{trace}/{'9' * 5000};o=1", "X-Request-Id": "trace-check"},
        timeout=10,
    )
    assert response.status_code == 404
    deadline = time.monotonic() + 10
    while "trace-check" not in server.log.read_text():
        assert time.monotonic() < deadline, "no log line for the request"
        time.sleep(0.05)
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    entry = next(line for line in lines if line.get("request_id") == "trace-check")
    assert entry["logging.googleapis.com/trace"] == f"projects/my-project/traces/{trace}"
    assert "logging.googleapis.com/spanId" not in entry
    assert not [line for line in lines if line["severity"] == "ERROR"]


@pytest.mark.parametrize("path", ["/v1/models/", "/healthz/", "/v1/audio/transcriptions/"])
def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_clients_host(server: Server, path: str) -> None:
    method = "POST" if "audio" in path else "GET"
    with connect(server) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        response = read_until_closed(sock)
    assert b"location:" not in response.lower()
    status, error = envelope(response)
    assert (status, error["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", "invalid_http"),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Half: ", "header_timeout"),
    ],
    ids=["invalid-http", "header-timeout"],
)
def test_protocol_level_answers_carry_a_request_id_the_log_names(
    server: Server, request_bytes: bytes, code: str
) -> None:
    """Answered by the connection, not the app: still an id a user can quote, and find in the log."""
    with connect(server) as sock:
        sock.sendall(request_bytes)
        response = read_until_closed(sock)
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    ids = [line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.startswith("x-request-id:")]
    assert len(ids) == 1 and ids[0].startswith("req_"), head
    assert envelope(response)[1]["code"] == code
    deadline = time.monotonic() + 5
    while ids[0] not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ids[0] in server.log.read_text()
