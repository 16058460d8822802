"""Fairness: a short request behind three cheap long files, and a burst after them.

Three 3-hour FLACs of one constant non-zero value (2 MB each: no digital silence, no speech) are
sent at once to the real service (one worker, its defaults); once all three are admitted, an 11 s
clip follows: its latency is what one client's cheap files cost everyone else. Then 32
simultaneous calls of that clip through the official SDK (default retries): how many succeed.
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

from bench.machine import describe, load_average
from bench.report import write_results
from bench.serve import REPO, serve

THREE_HOURS_S = 3 * 3600 - 5
DEFAULT_CLIP = REPO / "tests" / "fixtures" / "short.wav"


class FairnessRun(BaseModel):
    short_latency_s: float
    longs_done_s: float  # from the first long file's send until all three were answered
    burst_ok: int
    burst_wall_s: float


class FairnessReport(BaseModel):
    machine: str
    clip: str
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


async def one_run(url: str, long_file: bytes, clip: bytes, name: str) -> FairnessRun:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="local") as sdk:
        create = sdk.audio.transcriptions.create
        started = time.perf_counter()
        longs = [
            asyncio.create_task(create(model="whisper-1", file=(f"{i}.flac", long_file))) for i in range(3)
        ]
        deadline = time.monotonic() + 120
        # All three queued, then the clip (a metric of the server, not an event of this process).
        while admitted(url) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        sent = time.perf_counter()
        await create(model="whisper-1", file=(name, clip))
        short_latency = time.perf_counter() - sent
        await asyncio.gather(*longs)
        longs_done = time.perf_counter() - started
        burst_started = time.perf_counter()
        results = await asyncio.gather(
            *(create(model="whisper-1", file=(name, clip)) for _ in range(32)), return_exceptions=True
        )
        burst_wall = time.perf_counter() - burst_started
    ok = sum(1 for result in results if not isinstance(result, BaseException))
    return FairnessRun(
        short_latency_s=short_latency, longs_done_s=longs_done, burst_ok=ok, burst_wall_s=burst_wall
    )


def markdown(report: FairnessReport) -> str:
    lines = [
        "# Fairness: an 11 s clip behind three 3-hour constant-value FLACs",
        "",
        report.machine,
        "",
        f"Clip: `{report.clip}`; one worker, default settings. Target: the clip answered within 2 s.",
        "",
        "| run | clip latency (s) | three long files done (s) | burst of 32: succeeded | burst wall (s) |",
        "|---|---|---|---|---|",
    ]
    for index, run in enumerate(report.runs, 1):
        lines.append(
            f"| {index} | {run.short_latency_s:.2f} | {run.longs_done_s:.1f} | {run.burst_ok}/32 | "
            f"{run.burst_wall_s:.1f} |"
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
        for _ in range(args.runs):
            runs.append(asyncio.run(one_run(service.url, long_file, clip, args.clip.name)))
    latencies = [run.short_latency_s for run in runs]
    report = FairnessReport(
        machine=machine.describe(load_average()[0]),
        clip=args.clip.name,
        runs=runs,
        short_latency_median_s=statistics.median(latencies),
        short_latency_max_s=max(latencies),
    )
    write_results(args.out, "fairness", report, markdown(report))
    print(markdown(report))
    return 0 if all(run.burst_ok == 32 for run in runs) else 1
