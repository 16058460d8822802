"""Start the real service (`python -m whisper_api`) on a free loopback port and wait until ready."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
READY_PATH = "/readyz"


@dataclass
class RunningService:
    url: str
    seconds_to_ready: float
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(extra: Mapping[str, str], port: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "service"), str(REPO)])
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "WHISPER_LOG_JSON": "false"})
    env.update(extra)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float, poll_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with status {process.returncode} before ready")
            try:
                if client.get(url + READY_PATH).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(poll_s)
    raise TimeoutError(f"the service was not ready within {timeout_s} s")


@contextmanager
def serve(env: Mapping[str, str] | None = None, timeout_s: float = 120) -> Iterator[RunningService]:
    """The service in a child process; the time from spawn to the first 200 on /readyz is measured."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="whisper-api-", suffix=".log", delete=False)  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "whisper_api"],
        env=service_env(env or {}, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        try:
            wait_ready(url, process, timeout_s)
        except (RuntimeError, TimeoutError) as error:
            log.flush()
            tail = Path(log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{error}; log tail:\n{tail}") from error
        yield RunningService(url, time.perf_counter() - started, Path(log.name))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
