"""How the serving process uses glibc's malloc: few arenas, and CTranslate2's large buffers kept in
the heap (docs/decisions/2026-11-29-one-glibc-heap.md). Every function is a no-op returning False
where the C library is not glibc.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
MALLOC_ARENAS = 1
# Free memory at the top of the heap beyond this goes back to the system at once.
HEAP_TRIM_THRESHOLD = 128 * 1024 * 1024
# After a request with at least this much audio, the heap's free pages go back to the system.
RELEASE_AFTER_AUDIO_S = 60.0
# Environment variables through which an operator tunes glibc's malloc (theirs win).
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


@cache
def _glibc() -> Any | None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most `arenas` glibc malloc arenas, before any thread starts (as MALLOC_ARENA_MAX does).

    By default every thread that allocates while another holds the lock gets an arena of its own
    (up to 8 per core), and each keeps the memory it freed: uploads decoded on several threads,
    inference on another. Measured with 8 concurrent 11 s requests: peak RSS 374 → 332 MiB with 2
    arenas, at equal CPU per request. One, so that `keep_large_blocks_in_heap` reuses the
    encoder's buffers: a second arena's heaps (64 MiB each) split them, 296 instead of 278 MiB in
    one process (docs/decisions/2026-11-29-one-glibc-heap.md). False where the C library is not
    glibc.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):  # the operator's own choice wins
        return False
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def keep_large_blocks_in_heap() -> bool:
    """Once the faster-whisper model is loaded on CPU: glibc serves even large blocks from its heap
    (no mmap), hands back the heap's free top only beyond HEAP_TRIM_THRESHOLD, and returns now
    what loading freed.

    For each layer of each 30 s window, CTranslate2's encoder allocates and frees the attention
    scores (6 heads x 1500 x 1500 float32, 51.5 MiB) and some 30 MiB of smaller buffers. With
    glibc's defaults the scores were mapped afresh each time, on top of a heap that kept the
    rest: peak RSS 325-335 MiB once the service had warmed up, 53,000 page faults per request.
    From the heap they are reused: peak 280-299 MiB (in 1 run of ~20 one block more), about 15 %
    less CPU per request, a few hundred page faults; long files peak 7 % higher
    (docs/decisions/2026-11-29-one-glibc-heap.md). The model loads before, with mmap, so that its
    conversion's temporaries leave no holes between the weights. False where an operator tuned malloc through
    its environment variables, or the C library is not glibc.
    """
    if any(os.environ.get(name) for name in _MALLOC_ENV) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    libc = _glibc()
    if libc is None:
        return False
    kept = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)
    libc.malloc_trim(0)
    return bool(kept)


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system, wherever they lie in it.

    Kept in the heap (`keep_large_blocks_in_heap`), the buffers of a long request (its samples,
    faster-whisper's features for minutes of speech) are only trimmed from the heap's top, and a
    small block allocated above them keeps them resident: after 4.8 minutes of speech the service
    held 414 MiB instead of 280 until it was restarted. Cheap next to such a request: only the next
    request's first touch of those pages is paid again.
    """
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


# Of the memory this process may use, the share that queued uploads may hold: the rest is the model,
# the decoded audio in the slots (up to 330 MiB per 3-hour file) and the heap's slack.
UPLOAD_MEMORY_SHARE = 0.25
# Of the free space where uploads are spooled (a tmpfs on Cloud Run: memory again), the share.
UPLOAD_DISK_SHARE = 0.5
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def memory_limit_bytes() -> int:
    """What this process may use: its cgroup's limit (v2, else v1), else the machine's memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return min(int(text), physical)  # v1 says "no limit" with a huge number
    return physical


def upload_budget_bytes(spool_dir: str | None = None) -> int:
    """What the uploads of queued requests may hold at once: a quarter of the memory limit, at most
    half the free space of the folder they are spooled to (`tempfile.gettempdir()`)."""
    free = shutil.disk_usage(spool_dir or tempfile.gettempdir()).free
    return int(min(memory_limit_bytes() * UPLOAD_MEMORY_SHARE, free * UPLOAD_DISK_SHARE))
