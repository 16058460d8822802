"""Fairness: a short request behind three cheap long files, and bursts on a fresh server and after them.

First, on the fresh server (nothing learnt of its speed yet), 32 simultaneous calls of an 11 s clip
through the official SDK (default retries): how many succeed. Then, each run: three 3-hour FLACs
of one constant non-zero value (2 MB each: no digital silence, no speech) are sent at once to the
real service (one worker, its defaults); once all three are admitted, the clip follows: its
latency is what one client's cheap files cost everyone else. Then the burst of 32 again.
"""

import argparse
import asyncio
import io
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import av
import httpx
import numpy as np
import openai
from pydantic import BaseModel

from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.serve import REPO, serve

THREE_HOURS_S = 3 * 3600 - 5
DEFAULT_CLIP = REPO / "tests" / "fixtures" / "short.wav"


class FairnessRun(BaseModel):
    admitted_at_send: float = 3  # long files admitted (queued or running) when the clip was sent
    short_latency_s: float
    longs_done_s: float  # from the first long file's send until all three were answered
    burst_ok: int
    burst_wall_s: float


class Burst(BaseModel):
    ok: int
    wall_s: float


class FairnessReport(BaseModel):
    machine: Machine
    load_average_after: float
    clip: str
    fresh_burst: Burst
    runs: list[FairnessRun]
    short_latency_median_s: float
    short_latency_max_s: float


def constant_flac(seconds: float, value: int = 1000, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    block = np.full((1, 16_384), value, dtype=np.int16)
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        for start in range(0, int(seconds * rate) - block.shape[1] + 1, block.shape[1]):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def admitted(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(r"^whisper_requests_admitted (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def burst(sdk: openai.AsyncOpenAI, clip: bytes, name: str) -> Burst:
    """32 calls of the clip at once, with the SDK's default retries."""
    started = time.perf_counter()
    results = await asyncio.gather(
        *(sdk.audio.transcriptions.create(model="whisper-1", file=(name, clip)) for _ in range(32)),
        return_exceptions=True,
    )
    ok = sum(1 for result in results if not isinstance(result, BaseException))
    return Burst(ok=ok, wall_s=time.perf_counter() - started)


async def fresh_burst(url: str, clip: bytes, name: str) -> Burst:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="local") as sdk:
        return await burst(sdk, clip, name)


async def one_run(url: str, long_file: bytes, clip: bytes, name: str) -> FairnessRun:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="local") as sdk:
        create = sdk.audio.transcriptions.create
        started = time.perf_counter()
        longs = [
            asyncio.create_task(create(model="whisper-1", file=(f"{i}.flac", long_file))) for i in range(3)
        ]
        # All three queued, then the clip (a metric of the server, not an event of this process).
        # The gate makes each file cheap: a fast machine may finish the first before the third is
        # uploaded, so the clip goes after 10 s at most, and the report says what it was behind.
        deadline = time.monotonic() + 10
        ahead = admitted(url)
        while ahead < 3 and time.monotonic() < deadline and not any(long.done() for long in longs):
            await asyncio.sleep(0.02)
            ahead = admitted(url)
        sent = time.perf_counter()
        await create(model="whisper-1", file=(name, clip))
        short_latency = time.perf_counter() - sent
        await asyncio.gather(*longs)
        longs_done = time.perf_counter() - started
        after = await burst(sdk, clip, name)
    return FairnessRun(
        admitted_at_send=ahead,
        short_latency_s=short_latency,
        longs_done_s=longs_done,
        burst_ok=after.ok,
        burst_wall_s=after.wall_s,
    )


def markdown(report: FairnessReport) -> str:
    lines = [
        "# Fairness: an 11 s clip behind three 3-hour constant-value FLACs",
        "",
        report.machine.describe(report.load_average_after),
        "",
        f"Clip: `{report.clip}`; one worker, default settings. Target: the clip answered within 2 s.",
        "",
        f"On the fresh server, before anything else: a burst of 32 calls of the clip, "
        f"{report.fresh_burst.ok}/32 succeeded in {report.fresh_burst.wall_s:.1f} s.",
        "",
        "| run | long files admitted when the clip was sent | clip latency (s) | three long files done (s) "
        "| burst of 32: succeeded | burst wall (s) |",
        "|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(report.runs, 1):
        lines.append(
            f"| {index} | {run.admitted_at_send:g} | {run.short_latency_s:.2f} | {run.longs_done_s:.1f} "
            f"| {run.burst_ok}/32 | {run.burst_wall_s:.1f} |"
        )
    lines += [
        "",
        f"Median clip latency {report.short_latency_median_s:.2f} s, "
        f"worst {report.short_latency_max_s:.2f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clip", type=Path, default=DEFAULT_CLIP, help="the short request (an 11 s jfk-like clip)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "fairness")
    args = parser.parse_args(argv)
    machine = describe(with_gpu=False)
    long_file = constant_flac(THREE_HOURS_S)
    clip = args.clip.read_bytes()
    runs = []
    with serve({"WHISPER_WORKERS": "1"}) as service:
        fresh = asyncio.run(fresh_burst(service.url, clip, args.clip.name))
        for _ in range(args.runs):
            runs.append(asyncio.run(one_run(service.url, long_file, clip, args.clip.name)))
    latencies = [run.short_latency_s for run in runs]
    report = FairnessReport(
        machine=machine,
        load_average_after=load_average()[0],
        clip=args.clip.name,
        fresh_burst=fresh,
        runs=runs,
        short_latency_median_s=statistics.median(latencies),
        short_latency_max_s=max(latencies),
    )
    write_results(args.out, "fairness", report, markdown(report))
    print(markdown(report))
    return 0 if fresh.ok == 32 and all(run.burst_ok == 32 for run in runs) else 1
