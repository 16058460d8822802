"""The real server (`python -m whisper_api`, uvicorn on a free loopback port), one per engine,
started on first use and shared by the end-to-end tests, which call it over sockets as users do."""

from collections.abc import Iterator

import openai
import pytest

from tests.support.server import Server, stop
from tests.support.servers import Servers, sdk


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
