"""The start-up path: what a faster-whisper serving process loads, and the warm-up after ready.

The real server (`python -m whisper_api`) runs in a subprocess on loopback; what it mapped into
memory is read from /proc after it served every response format, so the check sees imports made
lazily by a request too.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from whisper_api.lifecycle import warm_up_when_idle
from whisper_api.memory import cap_malloc_arenas
from whisper_api.scheduler import Scheduler

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# Shared libraries that only torch / openai-whisper (and its numba, triton) bring into a process.
FOREIGN_LIBRARIES = ("libtorch", "libc10", "llvmlite", "triton")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_a_faster_whisper_server_never_loads_torch(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")}
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONPATH=f"{REPO / 'service'}{os.pathsep}{REPO}",
        WHISPER_DEVICE="cpu",
        WHISPER_LOG_JSON="false",
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "whisper_api"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        audio = (FIXTURES / "short.wav").read_bytes()
        for response_format in ("json", "text", "srt", "vtt", "verbose_json"):
            response = httpx.post(
                f"{url}/v1/audio/transcriptions",
                data={"model": "whisper-1", "response_format": response_format},
                files={"file": ("short.wav", audio)},
                timeout=120,
            )
            assert response.status_code == 200, response.text
        words = httpx.post(
            f"{url}/v1/audio/transcriptions",
            data={
                "model": "whisper-1",
                "response_format": "verbose_json",
                "timestamp_granularities[]": "word",
            },
            files={"file": ("short.wav", audio)},
            timeout=120,
        )
        assert words.status_code == 200 and words.json()["words"], words.text
        maps = Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "ctranslate2" in maps  # the check reads the right process
    loaded = sorted({name for name in FOREIGN_LIBRARIES if name in maps})
    assert loaded == [], f"a faster-whisper server loaded {loaded}"


class RecordingEngine:
    """Counts background warm-ups; the scheduler it waits on is the real one."""

    def __init__(self) -> None:
        self.warmed: list[float] = []

    def background_warmup(self) -> None:
        self.warmed.append(time.monotonic())


@pytest.mark.anyio
async def test_background_warm_up_waits_until_no_request_is_in() -> None:
    scheduler = Scheduler(workers=1, queue_size=4)
    engine = RecordingEngine()
    ticket = scheduler.enter()  # a request is in: the warm-up must not start
    task = asyncio.create_task(warm_up_when_idle(engine, scheduler, quiet_s=0.2, poll_s=0.02))
    await asyncio.sleep(0.5)
    assert engine.warmed == []
    released = time.monotonic()
    scheduler.leave(ticket)
    await asyncio.wait_for(task, timeout=5)
    assert len(engine.warmed) == 1 and engine.warmed[0] > released
    scheduler.shutdown()


@pytest.mark.anyio
async def test_background_warm_up_never_runs_while_draining() -> None:
    scheduler = Scheduler(workers=1, queue_size=4)
    scheduler.start_draining()
    engine = RecordingEngine()
    await asyncio.wait_for(warm_up_when_idle(engine, scheduler, quiet_s=0.1, poll_s=0.02), timeout=5)
    assert engine.warmed == []
    scheduler.shutdown()


@pytest.mark.anyio
async def test_engines_without_a_background_warm_up_are_left_alone() -> None:
    scheduler = Scheduler(workers=1, queue_size=4)
    await asyncio.wait_for(warm_up_when_idle(object(), scheduler, quiet_s=0.1), timeout=1)
    scheduler.shutdown()


def test_malloc_arenas_are_capped_unless_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    glibc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    assert cap_malloc_arenas() is bool(glibc)


# --- configurations that cannot serve: one clear line each, exit code 2 ----------------------------


def start_refused(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "PYTHONPATH": f"{REPO / 'service'}{os.pathsep}{REPO}",
            "WHISPER_DEVICE": "cpu",
            **settings,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "whisper_api"], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"WHISPER_API_KEY_FILE": "/nowhere/key"}, "WHISPER_API_KEY_FILE /nowhere/key cannot be read"),
        ({"WHISPER_API_KEY": " "}, "WHISPER_API_KEY is set but empty"),
        ({"WHISPER_API_KEY": "k", "WHISPER_API_KEY_FILE": "/etc/hostname"}, "Both WHISPER_API_KEY"),
    ],
    ids=["key-file-missing", "key-empty", "key-twice"],
)
def test_an_unusable_api_key_stops_the_start_with_one_line(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    """The model loads on a thread meanwhile: leaving under it used to abort (134) with a traceback."""
    for _ in range(3):  # the abort was a race: it showed in 4 of 5 starts
        result = start_refused(tmp_path, **settings)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output and "Aborted" not in output, output
        lines = output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"whisper_api: cannot start: {named}"), output


def test_bad_settings_give_one_line_per_problem_and_exit_code_2(tmp_path: Path) -> None:
    result = start_refused(
        tmp_path, WHISPER_DEVICE="tpu", WHISPER_BEAM_SIZE="99", WHISPER_API_KEY="secret-key"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 2, lines
    assert any(
        line.startswith("whisper_api: cannot start: WHISPER_DEVICE:") and "'tpu'" in line for line in lines
    )
    assert any(line.startswith("whisper_api: cannot start: WHISPER_BEAM_SIZE:") for line in lines)
    assert "secret-key" not in result.stderr + result.stdout
