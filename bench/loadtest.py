"""Load-test a Whisper API on this machine: N concurrent clients send real audio, bounded in count and time.

    scripts/loadtest --serve --clients 16 --requests 64            # start a server, test it, stop it
    scripts/loadtest --url http://127.0.0.1:8080 --pid 1234        # an already running server

Loopback only: it refuses any other host, so it cannot be pointed at someone else's service.
It stops by itself after --requests requests or --max-seconds, whichever comes first, and writes
status counts, latency percentiles (interpolated, as every benchmark's), Server-Timing step means,
probe latency during the load and the server's peak RSS (VmHWM from /proc) to --output as JSON.
"""

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.http_bench import is_loopback
from bench.serve import peak_rss_of, serve, wait_ready
from bench.server_timing import mean_steps, parse_server_timing
from bench.stats import LatencySummary
from whisper_api.contract import HEALTH_PATH, METRICS_PATH, READY_PATH, TRANSCRIPTIONS_PATH

REPO = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = REPO / "tests" / "fixtures" / "short.wav"
MAX_CLIENTS = 1000
MAX_REQUESTS = 10_000
MAX_SECONDS = 1_800
PROBE_PATHS = (HEALTH_PATH, READY_PATH, METRICS_PATH)
SERVE_READY_S = 180  # a server this tool starts loads its model first
URL_READY_S = 10


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    """bench.stats' summary under the keys the load test's JSON has always had (None for no values)."""
    summary = LatencySummary.of(values)
    return {
        "count": len(values),
        "p50_s": summary.p50 if summary else None,
        "p90_s": summary.p90 if summary else None,
        "p99_s": summary.p99 if summary else None,
        "max_s": summary.max if summary else None,
        "mean_s": summary.mean if summary else None,
    }


@dataclass(frozen=True)
class LoadPlan:
    """What to send, how much of it at once, and when to stop."""

    url: str
    audio: Path
    clients: int
    requests: int
    max_seconds: float
    response_format: str = "json"
    request_timeout_s: float = 600
    probe_interval_s: float = 0.25
    api_key: str | None = None


class LoadTest:
    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.url = plan.url.rstrip("/")
        self.audio = plan.audio.read_bytes()
        self.outcomes: list[dict[str, Any]] = []
        self.probe_latencies: dict[str, list[float]] = {path: [] for path in PROBE_PATHS}
        self.probe_failures: Counter[str] = Counter()
        self._next = 0

    def _take(self) -> int | None:
        if self._next >= self.plan.requests:
            return None
        self._next += 1
        return self._next

    async def client(self, http: httpx.AsyncClient) -> None:
        while self._take() is not None:
            start = time.perf_counter()
            outcome: dict[str, Any] = {"start_s": start}
            try:
                response = await http.post(
                    self.url + TRANSCRIPTIONS_PATH,
                    files={"file": (self.plan.audio.name, self.audio)},
                    data={"model": "whisper-1", "response_format": self.plan.response_format},
                )
                outcome["status"] = str(response.status_code)
                outcome["retry_after"] = response.headers.get("retry-after")
                steps_ms = parse_server_timing(response.headers.get("server-timing"))
                outcome["steps"] = {name: ms / 1000 for name, ms in steps_ms.items()}
                if response.status_code >= 400:
                    try:
                        outcome["error_code"] = response.json()["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        outcome["error_code"] = "not-an-envelope"
            except httpx.HTTPError as error:
                outcome["status"] = f"error:{type(error).__name__}"
            outcome["latency_s"] = time.perf_counter() - start
            self.outcomes.append(outcome)

    async def prober(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Hits the probes while the load runs: they must stay fast (the event loop is free)."""
        while not stop.is_set():
            for path in PROBE_PATHS:
                start = time.perf_counter()
                try:
                    response = await http.get(self.url + path, timeout=10)
                    if response.status_code >= 400:
                        self.probe_failures[f"{path} {response.status_code}"] += 1
                except httpx.HTTPError as error:
                    self.probe_failures[f"{path} {type(error).__name__}"] += 1
                self.probe_latencies[path].append(time.perf_counter() - start)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.plan.probe_interval_s)

    async def run(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.plan.api_key}"} if self.plan.api_key else {}
        limits = httpx.Limits(max_connections=self.plan.clients + 4)
        timeout = httpx.Timeout(self.plan.request_timeout_s)
        async with (
            httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as http,
            httpx.AsyncClient(headers=headers, timeout=10) as probe_http,
        ):
            stop = asyncio.Event()
            prober = asyncio.create_task(self.prober(probe_http, stop))
            started = time.perf_counter()
            clients = [asyncio.create_task(self.client(http)) for _ in range(self.plan.clients)]
            _, pending = await asyncio.wait(clients, timeout=self.plan.max_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            wall = time.perf_counter() - started
            stop.set()
            await prober
        return self.summary(wall, timed_out=bool(pending))

    def summary(self, wall_s: float, timed_out: bool) -> dict[str, Any]:
        statuses = Counter(o["status"] for o in self.outcomes)
        ok = [o for o in self.outcomes if o["status"] == "200"]
        return {
            "url": self.url,
            "file": self.plan.audio.name,
            "file_bytes": len(self.audio),
            "clients": self.plan.clients,
            "requests_planned": self.plan.requests,
            "requests_sent": self._next,
            "requests_answered": len(self.outcomes),
            "unfinished": self._next - len(self.outcomes),
            "stopped_by_time_limit": timed_out,
            "wall_s": wall_s,
            "throughput_rps": len(ok) / wall_s if wall_s else None,
            "status_counts": dict(sorted(statuses.items())),
            "error_codes": dict(Counter(o.get("error_code") for o in self.outcomes if "error_code" in o)),
            "retry_after_values": sorted({o["retry_after"] for o in self.outcomes if o.get("retry_after")}),
            "latency_all": latency_summary([o["latency_s"] for o in self.outcomes]),
            "latency_200": latency_summary([o["latency_s"] for o in ok]),
            "server_steps_mean_s": dict(sorted(mean_steps(o["steps"] for o in ok).items())),
            "probe_latency": {path: latency_summary(v) for path, v in self.probe_latencies.items()},
            "probe_failures": dict(self.probe_failures),
        }


def load_server(plan: LoadPlan, pid: int | None) -> dict[str, Any]:
    """The load test against a running server, with its peak RSS when its process id is known."""
    try:
        wait_ready(plan.url.rstrip("/"), None, URL_READY_S, poll_s=0.2)
    except TimeoutError as error:
        raise SystemExit(f"{plan.url} was not ready within {URL_READY_S} s") from error
    results = asyncio.run(LoadTest(plan).run())
    results["server_peak_rss_mib"] = peak_rss_of(pid) if pid else None
    return results


def serve_and_load(plan: LoadPlan, log_path: Path) -> dict[str, Any]:
    """The load test against `python -m whisper_api` started on a free loopback port, stopped after."""
    try:
        with serve(timeout_s=SERVE_READY_S, log_path=log_path) as service:
            results = asyncio.run(LoadTest(replace(plan, url=service.url)).run())
            results["server_peak_rss_mib"] = service.peak_rss_mib()
    except RuntimeError as error:
        raise SystemExit(f"the server did not start: {error}") from error
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default="http://127.0.0.1:8080", help="a server on loopback")
    target.add_argument("--serve", action="store_true", help="start `python -m whisper_api` on a free port")
    parser.add_argument("--pid", type=int, help="the server's process id, for its peak RSS (with --url)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--requests", type=int, default=32, help=f"total requests (default 32, max {MAX_REQUESTS})"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=300, help=f"stop after this long (max {MAX_SECONDS})"
    )
    parser.add_argument(
        "--file", default=str(DEFAULT_AUDIO), help="audio to send (default: tests/fixtures/short.wav)"
    )
    parser.add_argument("--response-format", default="json")
    parser.add_argument("--request-timeout", type=float, default=600, help="per-request client timeout (s)")
    parser.add_argument("--probe-interval", type=float, default=0.25, help="seconds between probe rounds")
    parser.add_argument(
        "--api-key", default=os.environ.get("WHISPER_API_KEY"), help="Bearer key, if the server has one"
    )
    parser.add_argument("--output", default="loadtest-results.json", help="where the JSON results go")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be between 1 and {MAX_REQUESTS}")
    if not 0 < args.max_seconds <= MAX_SECONDS:
        parser.error(f"--max-seconds must be in (0, {MAX_SECONDS}]")
    if not args.serve and not is_loopback(urlsplit(args.url).hostname):
        parser.error(f"{args.url} is not a loopback address; this tool only loads servers on this machine")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = LoadPlan(
        url=args.url,
        audio=Path(args.file),
        clients=args.clients,
        requests=args.requests,
        max_seconds=args.max_seconds,
        response_format=args.response_format,
        request_timeout_s=args.request_timeout,
        probe_interval_s=args.probe_interval,
        api_key=args.api_key,
    )
    output = Path(args.output)
    if args.serve:
        results = serve_and_load(plan, output.with_suffix(".server.log"))
    else:
        results = load_server(plan, args.pid)
    output.write_text(json.dumps(results, indent=2) + "\n")
    counts = ", ".join(f"{status}: {n}" for status, n in results["status_counts"].items())
    p = results["latency_200"]
    print(f"{results['requests_answered']} answered ({counts}) in {results['wall_s']:.1f} s")
    if p["count"]:
        print(f"200 latency p50 {p['p50_s']:.2f} s, p90 {p['p90_s']:.2f} s, p99 {p['p99_s']:.2f} s")
    print(f"peak RSS {results['server_peak_rss_mib']} MiB; results in {args.output}")
    return 0
