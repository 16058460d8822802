"""scripts/smoke, the check a platform engineer runs once after `pulumi up`, against the real server.

Locally there is no Cloud Run IAM in front, so the server's API key plays the part of the credential
that a request without one must lack.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, start_server, stop

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "scripts" / "smoke"
API_KEY = "smoke-test-key-0123456789"
CHECKS = ("health", "readiness", "metrics", "models", "transcription", "streaming", "upload limit", "auth")


def smoke(*args: str) -> tuple[int, dict[str, str], str]:
    """Exit status, each check's PASS/FAIL, and the whole output."""
    result = subprocess.run(
        [sys.executable, str(SMOKE), *args], capture_output=True, text=True, timeout=600, check=False
    )
    verdicts = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition("  ")
        if verdict in {"PASS", "FAIL"}:
            verdicts[rest[:14].strip()] = verdict
    return result.returncode, verdicts, result.stdout + result.stderr


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("smoke-keyed"), WHISPER_API_KEY=API_KEY, WHISPER_MAX_UPLOAD_MB="1"
    )
    yield server
    stop(server)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("smoke-open"), WHISPER_MAX_UPLOAD_MB="1")
    yield server
    stop(server)


def test_every_check_passes_against_a_healthy_service(keyed_server: Server) -> None:
    status, verdicts, output = smoke(keyed_server.url, "--api-key", API_KEY, "--max-upload-mb", "1")
    assert status == 0, output
    assert verdicts == dict.fromkeys(CHECKS, "PASS"), output
    assert "8 passed, 0 failed: PASS" in output
    assert "413 file_too_large" in output and "identity token without the API key: 401" in output


def test_a_service_that_answers_without_credentials_fails_the_auth_check(open_server: Server) -> None:
    status, verdicts, output = smoke(open_server.url, "--api-key", API_KEY, "--max-upload-mb", "1")
    assert status == 1, output
    assert verdicts["auth"] == "FAIL" and "HTTP 200" in output
    assert [name for name, verdict in verdicts.items() if verdict == "FAIL"] == ["auth"], output


def test_a_transcript_that_misses_the_expected_words_fails_both_transcription_checks(
    keyed_server: Server,
) -> None:
    expect = "quantum giraffes negotiate tax treaties"
    status, verdicts, output = smoke(
        keyed_server.url, "--api-key", API_KEY, "--max-upload-mb", "1", "--expect", expect
    )
    assert status == 1, output
    failed = [name for name, verdict in verdicts.items() if verdict == "FAIL"]
    assert failed == ["transcription", "streaming"], output


def test_an_unreachable_service_fails_every_check_without_a_traceback() -> None:
    status, verdicts, output = smoke("http://127.0.0.1:9", "--timeout", "5")
    assert status == 1
    assert verdicts == dict.fromkeys(CHECKS, "FAIL"), output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ftp://example",), "must start with https://"),
        (("https://x", "--audio", "/nope.wav"), "no recording"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(args: tuple[str, ...], message: str) -> None:
    status, _, output = smoke(*args)
    assert status == 2 and message in output
