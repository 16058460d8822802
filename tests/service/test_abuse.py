"""What one client's worst behaviour costs everyone else, against the real server over sockets:
decompression bombs, uploads that stall, clients that leave in the middle of an inference."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audio import flac_of_silence, long_recording, wav_bytes
from tests.support.engines import FIXTURES
from tests.support.server import Server, start_server, stop

TRANSCRIPTIONS = "/v1/audio/transcriptions"
IDLE_TIMEOUT_S = 2
BOUNDARY = "abuse-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker and the default queue of eight, as deployed; uploads cut off after 2 idle seconds."""
    running = start_server(
        tmp_path_factory.mktemp("server"),
        WHISPER_WORKERS="1",
        WHISPER_QUEUE_SIZE="8",
        WHISPER_UPLOAD_IDLE_TIMEOUT_S=str(IDLE_TIMEOUT_S),
    )
    yield running
    stop(running)


def multipart(data: bytes, filename: str = "audio.wav", **fields: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in {"model": "whisper-1", **fields}.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return b"".join(parts)


def request_head(server: Server, content_length: int) -> bytes:
    host = server.url.removeprefix("http://")
    return (
        f"POST {TRANSCRIPTIONS} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """Read until the server closes the connection; the status and the JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def transcribe(server: Server, name: str, timeout_s: float = 120) -> httpx.Response:
    return httpx.post(
        f"{server.url}{TRANSCRIPTIONS}",
        files={"file": (name, (FIXTURES / name).read_bytes())},
        data={"model": "whisper-1", "response_format": "text"},
        timeout=timeout_s,
    )


def wait_for(condition, within_s: float, what: str) -> float:
    """Poll `condition` until true; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within_s, f"{what} did not happen within {within_s} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_eight_stalled_uploads_are_cut_off_and_block_nobody(server: Server) -> None:
    """Eight clients send their headers and a few bytes of a 2 MB body, then nothing: they hold no
    queue place (a normal request is served at once) and each gets a 408 after the idle timeout."""
    body = multipart(b"\0" * 2_000_000)
    stalled = []
    for _ in range(8):
        sock = connect(server)
        sock.sendall(request_head(server, len(body)) + body[:300])
        stalled.append(sock)
    stalled_at = time.monotonic()

    served = transcribe(server, "short.wav")
    assert served.status_code == 200, served.text
    assert "fox" in served.text.lower()

    for sock in stalled:
        with sock:
            status, answer = read_response(sock)
        assert status == 408
        assert answer["error"]["code"] == "upload_timeout"
        assert answer["error"]["type"] == "invalid_request_error"
        assert "WHISPER_UPLOAD_IDLE_TIMEOUT_S" in answer["error"]["message"]
    # Cut off after the idle timeout (not at the 300 s request deadline), with room for a busy machine.
    assert time.monotonic() - stalled_at < IDLE_TIMEOUT_S + 15
    assert server.metric("whisper_requests_admitted") == 0


def test_a_client_leaving_mid_inference_frees_the_worker_at_once(server: Server, tmp_path: Path) -> None:
    """An 11-minute file (tens of seconds of inference here) whose client hangs up once its inference
    started: the engine stops within a segment, and the next request is served within seconds."""
    body = multipart(long_recording(tmp_path, repeats=16), filename="long.wav")
    with connect(server) as sock:
        sock.sendall(request_head(server, len(body)) + body)
        wait_for(lambda: server.metric("whisper_inferences_in_flight") >= 1, 120, "the inference")
        time.sleep(1)  # well into the first windows
    left_at = time.monotonic()
    freed_after = wait_for(lambda: server.metric("whisper_inferences_in_flight") == 0, 15, "the stop")

    started = time.monotonic()
    served = transcribe(server, "short.wav")
    assert served.status_code == 200, served.text
    assert "fox" in served.text.lower()
    served_after = time.monotonic() - started
    print(f"freed {freed_after:.2f} s after the client left; the next request took {served_after:.2f} s")
    # Had the orphan run on, the short request would have queued behind minutes of audio.
    assert freed_after < 10 and time.monotonic() - left_at < 30, (freed_after, served_after)
    log = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    statuses = [entry.get("httpRequest", {}).get("status") for entry in log]
    assert 499 in statuses, "the abandoned request is logged as 499"


def test_a_long_file_that_fits_the_deadline_is_transcribed_whole(server: Server) -> None:
    response = transcribe(server, "long.ogg")
    assert response.status_code == 200, response.text
    assert "weekly meeting" in response.text.lower()


# --- Forms built to be held in memory ---------------------------------------------------------


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    """One response, read by its Content-Length (the client has not finished its body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_text_fields_are_bounded_per_request_not_per_field(server: Server) -> None:
    """Ten clients each send 23 text fields of nearly 1 MB (Starlette's limit is per field) and keep
    their connection open: each is refused at the second megabyte, and the server holds a few MiB
    for all of them, not 230."""
    fields = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="x{index}"\r\n\r\n{"a" * 1_000_000}\r\n'
        for index in range(23)
    ).encode()
    idle = memory_mib(server.process.pid)["VmRSS"]
    clients = []
    for _ in range(10):
        sock = connect(server)
        sock.sendall(request_head(server, len(fields) + 1000) + fields)
        clients.append(sock)
    for sock in clients:
        with sock:
            status, answer = read_answer(sock)
        assert status == 400
        assert answer["error"]["code"] == "field_too_large"
        assert answer["error"]["param"] == "x1"
        assert "text fields are together larger than the limit of 1024 KB" in answer["error"]["message"]
    assert memory_mib(server.process.pid)["VmRSS"] - idle < 64


def test_more_file_parts_than_the_form_has_are_refused(server: Server) -> None:
    """Every file part under 1 MB stays in memory: only `file` (and a duplicate, to name it) is read."""
    parts = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f{index}"; filename="a.wav"\r\n\r\n'.encode()
        + b"\0" * 20_000
        + b"\r\n"
        for index in range(3)
    ) + multipart((FIXTURES / "short.wav").read_bytes())
    with connect(server) as sock:
        sock.sendall(request_head(server, len(parts)) + parts)
        status, answer = read_answer(sock)
    assert status == 400
    assert answer["error"]["code"] == "invalid_multipart"
    assert "Too many files" in answer["error"]["message"]


# --- Decompression bombs ---------------------------------------------------------------------

MIB = 1024 * 1024


def memory_mib(pid: int) -> dict[str, float]:
    """The server's resident memory now (VmRSS) and at its peak (VmHWM), from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM starts again from VmRSS


def test_three_concurrent_bombs_add_less_than_600_mib_and_memory_returns(tmp_path: Path) -> None:
    """Three 3-hour FLACs of silence (2 MB each) and three 10 KB WAVs at 1 Hz, all at once, against
    the server as deployed (3-hour limit, one worker): the WAVs are refused at once naming the rate;
    the FLACs are decoded one at a time into 2-byte samples, VAD finds no speech, and the server's
    peak stays under idle + 600 MiB (it was 5.5 GB for three such files)."""
    flac = flac_of_silence(3 * 3600 - 10)
    assert len(flac) < 3 * MIB
    wav = wav_bytes(rate=1, samples=10_000)  # 10 KB: 2.8 hours at 16 kHz
    assert len(wav) < 11_000
    server = start_server(tmp_path, WHISPER_WORKERS="1", WHISPER_QUEUE_SIZE="8")
    try:
        pid = server.process.pid
        transcribe(server, "short.wav")  # one real request first: idle means warm
        idle = memory_mib(pid)["VmRSS"]
        reset_peak(pid)
        answers: dict[str, list[httpx.Response]] = {"flac": [], "wav": []}

        def send(kind: str, data: bytes) -> None:
            answers[kind].append(
                httpx.post(
                    f"{server.url}{TRANSCRIPTIONS}",
                    files={"file": (f"bomb.{kind}", data)},
                    data={"model": "whisper-1", "response_format": "verbose_json"},
                    timeout=600,
                )
            )

        clients = [threading.Thread(target=send, args=("flac", flac)) for _ in range(3)]
        clients += [threading.Thread(target=send, args=("wav", wav)) for _ in range(3)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        peak = memory_mib(pid)["VmHWM"]

        for refused in answers["wav"]:
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "unsupported_sample_rate"
            assert "1 Hz" in refused.json()["error"]["message"]
        for served in answers["flac"]:
            assert served.status_code == 200, served.text
            assert served.json()["duration"] == pytest.approx(3 * 3600 - 10, abs=1)
            assert served.json()["text"] == ""
        assert peak - idle < 600, f"idle {idle:.0f} MiB, peak {peak:.0f} MiB"
        after = wait_for_memory(pid, idle + 100)
        print(f"idle {idle:.0f} MiB, peak {peak:.0f} MiB, after {after:.0f} MiB")
    finally:
        stop(server)


def wait_for_memory(pid: int, below_mib: float, within_s: float = 10) -> float:
    deadline = time.monotonic() + within_s
    while (now := memory_mib(pid)["VmRSS"]) >= below_mib:
        assert time.monotonic() < deadline, f"memory stayed at {now:.0f} MiB (expected < {below_mib:.0f})"
        time.sleep(0.2)
    return now
