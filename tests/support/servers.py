"""The real server, one per engine, started on first use, and the official client pointed at it."""

from pathlib import Path

import openai

from tests.support.server import Server, start_server

UPLOAD_LIMIT_MB = 25  # OpenAI's; minutes of WAV fit, and so does a text field over its 1 MB limit
ALLOWED_ORIGIN = "https://app.example"


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
