"""Fixtures for the image tests: service/Dockerfile, parsed once."""

import pytest

from tests.container.dockerfile_model import DOCKERFILE, Dockerfile, parse_dockerfile


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())
