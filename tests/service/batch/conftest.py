"""Fixtures for the batch tests: a real GCS API server (fake-gcs-server) and one behind a flaky proxy."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gcs import FlakyProxy, fake_gcs_server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL; each test uses buckets of its own."""
    with fake_gcs_server(tmp_path_factory.mktemp("fake-gcs") / "server.log") as url:
        yield url


@pytest.fixture
def gcs(gcs_server: str, monkeypatch: pytest.MonkeyPatch):
    """A google-cloud-storage client on the emulator (anonymous, as the library does for it)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    from google.cloud import storage

    return storage.Client()


@pytest.fixture
def make_bucket(gcs, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """`make_bucket("in")` → a fresh bucket's name, unique to the test."""
    counter = Counter[str]()

    def make(role: str) -> str:
        counter[role] += 1
        name = f"{role}-{request.node.name}-{counter[role]}".lower().replace("_", "-")[:55]
        name = "".join(ch for ch in name if ch.isalnum() or ch == "-").strip("-")
        gcs.create_bucket(name)
        return name

    return make


@pytest.fixture
def flaky_gcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyProxy]:
    """A storage server of its own behind the proxy, whose object links point at the proxy too."""
    proxy = FlakyProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with fake_gcs_server(tmp_path / "server.log", external_url=proxy.url) as server:
            proxy.upstream = server.removeprefix("http://")
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
