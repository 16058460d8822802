"""The real server (`python -m whisper_api`) in a subprocess on loopback, for socket-level tests."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.engines import FIXTURES

REPO = FIXTURES.parents[1]


class Server:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))


def start_server(tmp_path: Path, **settings: str) -> Server:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PYTHONPATH": f"{REPO / 'service'}{os.pathsep}{REPO}",
            "WHISPER_ENGINE": "faster-whisper",
            "WHISPER_MODEL": "tiny.en",
            "WHISPER_DEVICE": "cpu",
            "WHISPER_LOG_JSON": "true",
            **settings,
        }
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "whisper_api"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"the server exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"the server never became ready:\n{log.read_text()}"
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
