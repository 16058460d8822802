"""Fixtures every test directory shares: the event loop that async tests and Pulumi's mocks run on."""

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio, the loop uvicorn and the SDK's clients use (trio is
    installed too, as a dependency of selenium, and would otherwise double every async test)."""
    return "asyncio"


@pytest.fixture(autouse=True)
def event_loop_left_for_later_tests() -> Iterator[None]:
    """A test that calls asyncio.run() (the bench CLIs, anyio) leaves its thread without an event loop;
    Pulumi's mock runtime, in tests collected later, still asks for the current loop."""
    yield
    policy = asyncio.get_event_loop_policy()
    try:
        policy.get_event_loop()
    except RuntimeError:
        policy.set_event_loop(policy.new_event_loop())
