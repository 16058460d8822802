"""The real server (`python -m whisper_api`, uvicorn on a free loopback port), one per engine,
started on first use and shared by the end-to-end tests, which call it over sockets as users do."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
UPLOAD_LIMIT_MB = 2  # above the 1 MB limit on a text field, so that both can be met
ALLOWED_ORIGIN = "https://app.example"
ENGINE_NAMES = ("faster-whisper", "openai-whisper")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key="not-needed-locally", max_retries=0, timeout=120
        )


def start(engine: str, log: Path) -> Server:
    """The server as `make run` starts it; its output goes to a file (a pipe could fill and block it)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")} | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYTHONPATH": f"{ROOT / 'service'}{os.pathsep}{ROOT}",
        "WHISPER_ENGINE": engine,
        "WHISPER_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
        "WHISPER_DEVICE": "cpu",
        "WHISPER_LOG_JSON": "true",
        "WHISPER_CORS_ORIGINS": ALLOWED_ORIGIN,
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "whisper_api"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", log, process)
    try:
        _wait_until_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_until_ready(server: Server, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the server exited with {server.process.returncode}:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail("the server was not ready in time")


def stop(server: Server) -> None:
    process = server.process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class Servers(dict[str, Server]):
    """A server per engine, started on first use."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __missing__(self, engine: str) -> Server:
        server = self[engine] = start(engine, self.folder / f"{engine}.log")
        return server


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("servers"))
    yield running
    for server in running.values():
        stop(server)


@pytest.fixture(scope="session")
def server(servers: Servers) -> Server:
    """The default engine's server."""
    return servers["faster-whisper"]


@pytest.fixture(scope="session")
def client(server: Server) -> openai.OpenAI:
    return server.client()
