"""The real server (`python -m whisper_api`, uvicorn on a free loopback port), one per engine,
started on first use and shared by the end-to-end tests, which call it over sockets as users do."""

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.service.conftest import FIXTURES, Server, start_server, stop

__all__ = ["FIXTURES", "Server"]

UPLOAD_LIMIT_MB = 25  # OpenAI's; minutes of WAV fit, and so does a text field over its 1 MB limit
ALLOWED_ORIGIN = "https://app.example"
ENGINE_NAMES = ("faster-whisper", "openai-whisper")


def sdk(server: Server) -> openai.OpenAI:
    """The official client, pointed at `server` (no retries: every answer is the server's own)."""
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="not-needed-locally", max_retries=0, timeout=120
    )


class Servers(dict[str, Server]):
    """A server per engine, started on first use."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __missing__(self, engine: str) -> Server:
        folder = self.folder / engine
        folder.mkdir()
        server = self[engine] = start_server(
            folder,
            WHISPER_ENGINE=engine,
            WHISPER_MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB),
            WHISPER_CORS_ORIGINS=ALLOWED_ORIGIN,
        )
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
    return sdk(server)
