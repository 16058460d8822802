"""The serving process's memory on the real model (tiny.en, CPU): its peak under one request at a
time and under 8 at once, and CTranslate2's large buffers reused from one request to the next.

The real server (`python -m whisper_api`) runs in a subprocess on loopback; its resident memory
and page faults are read from /proc.
"""

import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.audio import long_recording
from tests.support.engines import FIXTURES
from tests.support.server import Server, start_server, stop
from whisper_api.memory import keep_large_blocks_in_heap

TRANSCRIPTIONS = "/v1/audio/transcriptions"
# The target is 300 MiB, measured by the bench (280-299 MiB here on an 11 s clip); in about
# one run in twenty the heap's layout makes a request map one more 51.5 MiB block (323-329 MiB, as
# high as glibc's defaults once idle, 324). The bound leaves room for that; a return to glibc's
# defaults is caught by the page faults below.
PEAK_RSS_MIB = 350
# With glibc's defaults every 11 s request faulted in 52,000-140,000 fresh pages (each layer's
# 51.5 MiB of attention scores mapped afresh); from the heap, a few hundred (a request that has to
# grow the heap by one block: 13,000).
FAULTS_PER_REQUEST = 5_000


def status(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def transcribe(server: Server) -> None:
    response = httpx.post(
        f"{server.url}{TRANSCRIPTIONS}",
        files={"file": ("short.wav", (FIXTURES / "short.wav").read_bytes())},
        data={"model": "whisper-1"},
        timeout=120,
    )
    assert response.status_code == 200, response.text


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_peak_memory_stays_bounded_and_encoder_buffers_are_reused(tmp_path: Path) -> None:
    server = start_server(tmp_path, WHISPER_WORKERS="1", WHISPER_QUEUE_SIZE="16")
    try:
        pid = server.process.pid
        transcribe(server)  # the first request grows the heap to its working size
        time.sleep(2.5)  # idle: what runs once the service is quiet has run
        faults = []
        for _ in range(3):
            before = minor_faults(pid)
            transcribe(server)
            faults.append(minor_faults(pid) - before)
        clients = [threading.Thread(target=transcribe, args=(server,)) for _ in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        memory = status(pid)
    finally:
        stop(server)
    peak = memory["VmHWM"] / 1024
    print(f"peak {peak:.0f} MiB, now {memory['VmRSS'] / 1024:.0f} MiB, page faults per request {faults}")
    assert statistics.median(faults) < FAULTS_PER_REQUEST
    assert peak <= PEAK_RSS_MIB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_long_request_gives_its_memory_back(tmp_path: Path) -> None:
    """Five minutes of real speech (long.ogg, seven times, as one WAV): its samples and features
    are kept in the heap while it runs, and the heap gives them back once it is answered."""
    recording = long_recording(tmp_path, 7)
    server = start_server(tmp_path, WHISPER_WORKERS="1")
    try:
        pid = server.process.pid
        transcribe(server)
        time.sleep(2.5)
        idle = status(pid)["VmRSS"] / 1024
        response = httpx.post(
            f"{server.url}{TRANSCRIPTIONS}",
            files={"file": ("long.wav", recording)},
            data={"model": "whisper-1"},
            timeout=600,
        )
        assert response.status_code == 200, response.text
        after = status(pid)["VmRSS"] / 1024
        peak = status(pid)["VmHWM"] / 1024
    finally:
        stop(server)
    print(f"idle {idle:.0f} MiB, peak {peak:.0f} MiB, after the long request {after:.0f} MiB")
    assert peak - idle > 100  # the request did take memory (else this test shows nothing)
    assert after - idle < 64


@pytest.mark.parametrize(
    "variable",
    ["MALLOC_MMAP_MAX_=65536", "MALLOC_TRIM_THRESHOLD_=0", "GLIBC_TUNABLES=glibc.malloc.mmap_max=1"],
)
def test_an_operators_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    name, _, value = variable.partition("=")
    monkeypatch.setenv(name, value)
    assert keep_large_blocks_in_heap() is False


def test_the_memory_limit_is_the_cgroups_else_the_machines(tmp_path, monkeypatch) -> None:
    from whisper_api import memory

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = tmp_path / "memory.max"
    monkeypatch.setattr(memory, "_CGROUP_LIMITS", (limit,))
    assert memory.memory_limit_bytes() == physical  # no cgroup file
    limit.write_text("max\n")  # v2 without a limit
    assert memory.memory_limit_bytes() == physical
    limit.write_text("1073741824\n")
    assert memory.memory_limit_bytes() == 1 << 30
    assert memory.upload_budget_bytes(str(tmp_path)) <= (1 << 30) // 4


def test_the_upload_budget_is_at_most_half_the_free_space_where_uploads_are_spooled(tmp_path) -> None:
    import shutil

    from whisper_api.memory import memory_limit_bytes, upload_budget_bytes

    budget = upload_budget_bytes(str(tmp_path))
    assert 0 < budget <= shutil.disk_usage(tmp_path).free // 2 + 1
    assert budget <= memory_limit_bytes() // 4
