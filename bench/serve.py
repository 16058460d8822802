"""Start a server (the real service, `python -m whisper_api`, or a peer) on a free loopback port and
wait until its readiness path answers 200."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from bench.isolated import project_env
from whisper_api.contract import READY_PATH

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunningService:
    url: str
    pid: int
    seconds_to_http: float  # spawn → the first answer on /readyz, whatever its status
    seconds_to_ready: float  # spawn → the first 200 on /readyz
    log_path: Path
    started: float  # perf_counter() at spawn

    def peak_rss_mib(self) -> float | None:
        """The server's high-water resident memory so far (VmHWM), None where /proc is missing."""
        return peak_rss_of(self.pid)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far, None where /proc is missing."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_of(pid: int | str = "self") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(extra: Mapping[str, str], port: int) -> dict[str, str]:
    return project_env({"HOST": "127.0.0.1", "PORT": str(port), "WHISPER_LOG_JSON": "false", **extra})


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes] | None,
    timeout_s: float,
    poll_s: float = 0.01,
    ready_path: str = READY_PATH,
) -> float | None:
    """Poll `ready_path` until it answers 200; returns perf_counter() at its first answer of any status.
    `process`, when this one started the server, is watched: its exit ends the wait at once."""
    deadline = time.monotonic() + timeout_s
    http_up = None
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode} before ready")
            try:
                status = client.get(url + ready_path).status_code
                http_up = http_up or time.perf_counter()
                if status == 200:
                    return http_up
            except httpx.TransportError:
                pass
            time.sleep(poll_s)
    raise TimeoutError(f"the server was not ready within {timeout_s} s")


@contextmanager
def serve(
    env: Mapping[str, str] | None = None, timeout_s: float = 120, log_path: Path | None = None
) -> Iterator[RunningService]:
    """The service in a child process; the time from spawn to the first 200 on /readyz is measured."""
    port = free_port()
    argv = [sys.executable, "-m", "whisper_api"]
    with spawn(argv, service_env(env or {}, port), port, READY_PATH, timeout_s, log_path=log_path) as service:
        yield service


@contextmanager
def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    port: int,
    ready_path: str,
    timeout_s: float = 120,
    cwd: Path = REPO,
    log_path: Path | None = None,
) -> Iterator[RunningService]:
    """`argv` (listening on loopback `port`) in a child process, stopped on exit; its log kept (in
    `log_path`, or a temporary file)."""
    url = f"http://127.0.0.1:{port}"
    log: IO[bytes]
    if log_path is None:
        log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
    else:
        log = log_path.open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        try:
            http_up = wait_ready(url, process, timeout_s, ready_path=ready_path)
        except (RuntimeError, TimeoutError) as error:
            log.flush()
            tail = Path(log.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{Path(argv[0]).name}: {error}; log tail:\n{tail}") from error
        ready = time.perf_counter()
        yield RunningService(
            url=url,
            pid=process.pid,
            seconds_to_http=(http_up or ready) - started,
            seconds_to_ready=ready - started,
            log_path=Path(log.name),
            started=started,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
