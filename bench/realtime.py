"""Realtime transcription sessions under load, on this machine: `scripts/bench-realtime --help`.

For each session count, a fresh server (`python -m whisper_api`) takes that many sessions at once
through the official SDK's async realtime client, each streaming the same recording in real time
(100 ms appends at their wall-clock times, then silence, as a microphone, until every item is
completed) with server VAD. Meanwhile `/healthz` is probed every
50 ms. Per item: speech_stopped → completed (the finalisation latency the client sees; the speaker
stopped `silence_duration_ms` before speech_stopped) and speech_started → first delta. Per
session: whether every item completed, and the WER of its transcript. The server's peak resident
memory is read from /proc. The default recording (tests/fixtures/long.ogg, 41 s, eight sentences
of 4-6 s) is in the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import av
import httpx
import numpy as np
import openai
from pydantic import BaseModel

from bench.audio import word_error_rate
from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.serve import REPO, RunningService, serve
from whisper_api.contract import HEALTH_PATH

RATE = 24_000
CHUNK_S = 0.1
SILENCE_MS = 500  # server_vad's default silence_duration_ms, which the sessions use
DEFAULT_AUDIO = REPO / "tests" / "fixtures" / "long.ogg"
REFERENCES = REPO / "tests" / "fixtures" / "expected.json"
COMPLETED = "conversation.item.input_audio_transcription.completed"


class Session(BaseModel):
    items: int
    completed: int
    errors: list[str]
    stop_to_completed_s: list[float]
    start_to_first_delta_s: list[float]
    deltas_before_stop: int  # items that had a delta while still being spoken
    delta_gaps_while_spoken_s: list[float]  # between an item's deltas before its speech_stopped
    wer: float | None
    transcript: str  # the completed items, joined in order


class Run(BaseModel):
    sessions: int
    sessions_complete: int
    items: int
    stop_to_completed_p50_s: float | None
    stop_to_completed_p95_s: float | None
    stop_to_completed_max_s: float | None
    items_within_target: float | None  # share of items (all <= 10 s here) completed within the target
    start_to_first_delta_p50_s: float | None
    items_with_deltas_while_spoken: float
    delta_gap_while_spoken_p50_s: float | None = None  # results before 2026-12-08 lack the cadence
    delta_gap_while_spoken_max_s: float | None = None
    healthz_p95_s: float
    healthz_max_s: float
    peak_rss_mib: float | None
    wer_mean: float | None
    session_details: list[Session]


class RealtimeReport(BaseModel):
    machine: Machine
    load_average_after: float
    audio: str
    audio_seconds: float
    target_s: float
    runs: list[Run]


def pcm24(path: Path) -> bytes:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(path)) as container:
        pieces = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
    tail = np.zeros(int(1.5 * RATE), dtype=np.int16)  # the last sentence's end of speech
    return np.concatenate([*pieces, tail]).astype("<i2").tobytes()


async def one_session(url: str, audio: bytes, reference: str | None, timeout_s: float) -> Session:
    import base64

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)
    started: dict[str, float] = {}
    stopped: dict[str, float] = {}
    deltas: dict[str, list[float]] = {}
    completed: dict[str, tuple[float, str]] = {}
    errors: list[str] = []
    done_sending = asyncio.Event()  # the recording is sent (silence follows)
    finished = asyncio.Event()
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        await connection.session.update(
            session={"type": "transcription", "audio": {"input": {"transcription": {"language": "en"}}}}
        )

        async def send() -> None:
            """The recording, then silence, as a microphone keeps sending until the session ends."""
            size = int(CHUNK_S * RATE) * 2
            silence = base64.b64encode(bytes(size)).decode()
            begin = time.monotonic()
            number = 0
            while not finished.is_set():
                await asyncio.sleep(max(begin + number * CHUNK_S - time.monotonic(), 0))
                offset = number * size
                piece = (
                    base64.b64encode(audio[offset : offset + size]).decode()
                    if offset < len(audio)
                    else silence
                )
                await connection.input_audio_buffer.append(audio=piece)
                number += 1
                if offset + size >= len(audio):
                    done_sending.set()

        sender = asyncio.create_task(send())
        deadline: float | None = None
        while True:
            if done_sending.is_set() and deadline is None:
                deadline = time.monotonic() + timeout_s
            if deadline is not None and (set(stopped) <= set(completed) or time.monotonic() > deadline):
                break
            try:
                event: Any = await asyncio.wait_for(connection.recv(), timeout=0.5)
            except TimeoutError:
                continue
            now = time.monotonic()
            item: str = getattr(event, "item_id", "")
            if event.type == "input_audio_buffer.speech_started":
                started[item] = now
            elif event.type == "input_audio_buffer.speech_stopped":
                stopped[item] = now
            elif event.type == "conversation.item.input_audio_transcription.delta":
                deltas.setdefault(item, []).append(now)
            elif event.type == COMPLETED:
                completed[item] = (now, event.transcript)
            elif event.type == "error":
                errors.append(event.error.code or event.error.message)
        finished.set()
        await sender
    text = " ".join(completed[item][1] for item in stopped if item in completed)
    return Session(
        items=len(stopped),
        completed=sum(item in completed for item in stopped),
        errors=errors,
        stop_to_completed_s=[completed[i][0] - stopped[i] for i in stopped if i in completed],
        start_to_first_delta_s=[deltas[i][0] - started[i] for i in started if i in deltas],
        deltas_before_stop=sum(1 for i in stopped if i in deltas and deltas[i][0] < stopped[i]),
        delta_gaps_while_spoken_s=[
            gap for i in stopped for gap in gaps_before(deltas.get(i, []), stopped[i])
        ],
        wer=word_error_rate(reference, text) if reference and text else None,
        transcript=text,
    )


def gaps_before(times: list[float], stopped_at: float) -> list[float]:
    """Seconds between consecutive deltas sent before `stopped_at` (the captions' cadence)."""
    spoken = [time for time in times if time < stopped_at]
    return [later - earlier for earlier, later in itertools.pairwise(spoken)]


def probe(url: str, stop: threading.Event, interval_s: float = 0.05) -> list[float]:
    """`/healthz` latencies, from a thread of its own: the sessions' clients share the event loop,
    and a probe among them would time their work too, not only the server's."""
    latencies: list[float] = []
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            begin = time.perf_counter()
            client.get(url + HEALTH_PATH)
            latencies.append(time.perf_counter() - begin)
            stop.wait(interval_s)
    return latencies


def _p(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[q - 1]


async def measure(
    service: RunningService, sessions: int, audio: bytes, reference: str | None, target_s: float
) -> Run:
    stop = threading.Event()
    prober = asyncio.create_task(asyncio.to_thread(probe, service.url, stop))
    results = await asyncio.gather(
        *(one_session(service.url, audio, reference, 180) for _ in range(sessions))
    )
    stop.set()
    health = await prober
    latencies = [s for result in results for s in result.stop_to_completed_s]
    first = [s for result in results for s in result.start_to_first_delta_s]
    gaps = [s for result in results for s in result.delta_gaps_while_spoken_s]
    items = sum(result.items for result in results)
    wers = [result.wer for result in results if result.wer is not None]
    return Run(
        sessions=sessions,
        sessions_complete=sum(result.items > 0 and result.completed == result.items for result in results),
        items=items,
        stop_to_completed_p50_s=median(latencies) if latencies else None,
        stop_to_completed_p95_s=_p(latencies, 95),
        stop_to_completed_max_s=max(latencies) if latencies else None,
        items_within_target=sum(s <= target_s for s in latencies) / len(latencies) if latencies else None,
        start_to_first_delta_p50_s=median(first) if first else None,
        items_with_deltas_while_spoken=sum(r.deltas_before_stop for r in results) / items if items else 0.0,
        delta_gap_while_spoken_p50_s=median(gaps) if gaps else None,
        delta_gap_while_spoken_max_s=max(gaps) if gaps else None,
        healthz_p95_s=_p(health, 95) or 0.0,
        healthz_max_s=max(health),
        peak_rss_mib=service.peak_rss_mib(),
        wer_mean=sum(wers) / len(wers) if wers else None,
        session_details=list(results),
    )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(report: RealtimeReport) -> str:
    lines = [
        "# Realtime sessions under load",
        "",
        report.machine.describe(report.load_average_after),
        "",
        f"Each session streams {report.audio} ({report.audio_seconds:.0f} s, one item per sentence) in real "
        "time with server VAD, all sessions at once, on a fresh server (tiny.en, CPU, one inference slot). "
        "Latencies as the client sees them; speech_stopped comes 0.5 s (silence_duration_ms) after the "
        f"speaker stopped. Target: completed within {report.target_s:g} s of speech_stopped.",
        "",
        "| sessions | complete | items | stopped → completed p50 / p95 / max | within target | "
        "first delta p50 | items with deltas while spoken | between deltas while spoken p50 / max | "
        "/healthz p95 / max | peak RSS | WER |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report.runs:
        within = "-" if run.items_within_target is None else f"{run.items_within_target:.0%}"
        lines.append(
            f"| {run.sessions} | {run.sessions_complete}/{run.sessions} | {run.items} | "
            f"{_s(run.stop_to_completed_p50_s)} / {_s(run.stop_to_completed_p95_s)} / "
            f"{_s(run.stop_to_completed_max_s)} s | {within} | {_s(run.start_to_first_delta_p50_s)} s | "
            f"{run.items_with_deltas_while_spoken:.0%} | {_s(run.delta_gap_while_spoken_p50_s)} / "
            f"{_s(run.delta_gap_while_spoken_max_s)} s | {run.healthz_p95_s * 1000:.0f} / "
            f"{run.healthz_max_s * 1000:.0f} ms | {_s(run.peak_rss_mib)} MiB | "
            f"{'-' if run.wer_mean is None else f'{run.wer_mean:.1%}'} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, action="append", help="session counts (default: 1 and 16)")
    parser.add_argument(
        "--audio", type=Path, default=DEFAULT_AUDIO, help="the recording each session streams"
    )
    parser.add_argument("--target-s", type=float, default=0.5, help="finalisation latency target")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "realtime")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    counts = args.sessions or [1, 16]
    audio = pcm24(args.audio)
    references = json.loads(REFERENCES.read_text()) if REFERENCES.exists() else {}
    reference = references.get(args.audio.stem)
    machine = describe()
    runs = []
    for count in counts:
        env = {"WHISPER_REALTIME_MAX_SESSIONS": str(max(count, 1))}
        with serve(env) as service:
            runs.append(asyncio.run(measure(service, count, audio, reference, args.target_s)))
        print(f"{count} session(s): {runs[-1].model_dump(exclude={'session_details'})}", flush=True)
    report = RealtimeReport(
        machine=machine,
        load_average_after=load_average()[0],
        audio=str(args.audio.relative_to(REPO) if args.audio.is_relative_to(REPO) else args.audio),
        audio_seconds=len(audio) / 2 / RATE,
        target_s=args.target_s,
        runs=runs,
    )
    write_results(args.out, "results", report, markdown(report))
    print(markdown(report))
    return 0 if all(run.sessions_complete == run.sessions for run in runs) else 1
