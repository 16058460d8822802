"""This service side by side with whisper.cpp's `whisper-server`: same machine, same run, same weights.

The comparison table's rows, each measured on every contender in turn so that a change in the machine's load
falls on all of them: process start → first transcription served, the 11 s clip (median of 9),
the minute of varied speech (median of 5), WER on the clips with a reference transcript, 8
concurrent 11 s requests (wall time, and the worst health-probe latency meanwhile) and the servers'
peak RSS. whisper.cpp runs at its defaults (greedy decoding, threads of its own choosing) and at
beam size 5, this service's default, so that the comparison is fair both ways.

whisper.cpp is built from source by `scripts/build-whispercpp`, which also converts the bundled
tiny.en (CTranslate2) into ggml: both servers run the same weights.
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from bench.audio import DEFAULT_AUDIO_DIR, Clip
from bench.coldstart import ServedStart, first_transcriptions, start_medians
from bench.cost import InstanceShape, PriceTable
from bench.http_bench import (
    Options,
    RequestRecord,
    Target,
    TargetResult,
    run_target,
    summarise,
)
from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.serve import RunningService, free_port, serve, spawn
from bench.stats import LatencySummary
from whisper_api import contract

REPO = Path(__file__).resolve().parent.parent
# What scripts/build-whispercpp writes into its cache folder.
SERVER_IN_CACHE = Path("build") / "bin" / "whisper-server"
MODEL_IN_CACHE = Path("ggml-tiny.en.bin")
BUILD_INFO_IN_CACHE = Path("build-info.json")
DEFAULT_CACHE = REPO / ".cache" / "whisper-cpp"
WHISPER_CPP_HEALTH_PATH = "/health"
SERVICE = "service"
WHISPER_CPP = "whisper.cpp"
WHISPER_CPP_BEAM5 = "whisper.cpp-beam5"
CONCURRENT_REQUESTS = 8
PROBE_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 10.0
# Longer than the service waits for quiet before its background warm-up (lifecycle.warm_up_when_idle).
SETTLE_QUIET_S = 2.5
_THREADS = re.compile(r"n_threads = (\d+)")


class WhisperCppBuild(BaseModel):
    """The binary and model to run, and how they were made (from the cache's build-info.json)."""

    server: Path
    model: Path
    model_sha256: str
    info: dict[str, str] = Field(default_factory=dict)


class Contender(BaseModel):
    name: str
    title: str
    health_path: str
    flags: list[str] = Field(default_factory=list, description="whisper-server's decode flags.")

    @property
    def is_service(self) -> bool:
        return self.name == SERVICE


CONTENDERS = (
    Contender(name=SERVICE, title="this service (defaults)", health_path=contract.HEALTH_PATH),
    Contender(name=WHISPER_CPP, title="whisper.cpp (defaults: greedy)", health_path=WHISPER_CPP_HEALTH_PATH),
    Contender(
        name=WHISPER_CPP_BEAM5,
        title="whisper.cpp, beam 5",
        health_path=WHISPER_CPP_HEALTH_PATH,
        flags=["--beam-size", "5"],
    ),
)


class ProbeResult(BaseModel):
    latency: LatencySummary | None
    failures: int


class ContenderResult(BaseModel):
    name: str
    title: str
    command: list[str]
    threads: int | None = Field(description="whisper.cpp: the thread count its log reports.")
    starts: list[ServedStart]
    start_medians: dict[str, float]
    short: TargetResult
    long: TargetResult
    english: TargetResult
    concurrent: TargetResult
    probe: ProbeResult
    peak_rss_single_mib: float | None = Field(description="The server's VmHWM after the single requests.")
    peak_rss_concurrent_mib: float | None = Field(description="Its VmHWM after the concurrent ones too.")


class VersusReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    whispercpp: WhisperCppBuild
    clips: dict[str, str]
    contenders: list[ContenderResult]


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def locate(cache: Path, server: Path | None = None, model: Path | None = None) -> WhisperCppBuild:
    """The build to benchmark: explicit paths win over the cache folder's; a clear error if missing."""
    server = server or cache / SERVER_IN_CACHE
    model = model or cache / MODEL_IN_CACHE
    hint = "build it with scripts/build-whispercpp SRC_DIR (see docs/benchmarks.md)"
    if not server.is_file():
        raise ValueError(f"no whisper.cpp server at {server}: {hint}")
    if not model.is_file():
        raise ValueError(f"no ggml model at {model}: {hint}")
    info_path = cache / BUILD_INFO_IN_CACHE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return WhisperCppBuild(
        server=server.resolve(),
        model=model.resolve(),
        model_sha256=_sha256(model),
        info={key: str(value) for key, value in info.items()},
    )


def command(contender: Contender, build: WhisperCppBuild, port: int | None = None) -> list[str]:
    """How the contender is started (the port left out when None, for the report)."""
    if contender.is_service:
        return [sys.executable, "-m", "whisper_api"]
    listen = ["--host", "127.0.0.1", "--port", str(port)] if port is not None else []
    return [
        str(build.server),
        "--model",
        str(build.model),
        *listen,
        # OpenAI's path, so that the bench's client sends both servers the same request.
        "--inference-path",
        contract.TRANSCRIPTIONS_PATH,
        *contender.flags,
    ]


@contextmanager
def start(contender: Contender, build: WhisperCppBuild, timeout_s: float = 120) -> Iterator[RunningService]:
    if contender.is_service:
        with serve({}, timeout_s) as service:
            yield service
        return
    port = free_port()
    argv = command(contender, build, port)
    with spawn(
        argv, None, port, contender.health_path, timeout_s, cwd=Path(tempfile.gettempdir())
    ) as service:
        yield service


def settle(
    services: Sequence[RunningService], quiet_s: float = SETTLE_QUIET_S, timeout_s: float = 120
) -> None:
    """Wait until no server uses CPU for `quiet_s` (under 5 % of a core): a server's work after ready
    (this service's background warm-up) must not fall on another's timed request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = [service.cpu_seconds() or 0.0 for service in services]
        time.sleep(quiet_s)
        used = [
            (service.cpu_seconds() or 0.0) - spent for service, spent in zip(services, before, strict=True)
        ]
        if max(used, default=0.0) < 0.05 * quiet_s:
            return
    raise TimeoutError(f"the servers were still busy after {timeout_s:.0f} s")


def threads_in_log(log: Path) -> int | None:
    """whisper-server logs `n_threads = N / cores` for every request."""
    found = _THREADS.findall(log.read_text(errors="replace")) if log.is_file() else []
    return int(found[-1]) if found else None


def _target(contender: Contender, service: RunningService) -> Target:
    return Target(name=contender.name, url=service.url)


def _run(target: Target, clip: Clip, options: Options) -> TargetResult:
    return asyncio.run(
        run_target(target, [clip], options, None, InstanceShape(), PriceTable(), progress=False)
    )


def alternating(
    services: dict[str, RunningService], contenders: Sequence[Contender], clip: Clip, runs: int
) -> dict[str, TargetResult]:
    """`runs` requests of `clip` to each contender in turn (after one warm-up each), one at a time."""
    records: dict[str, list[RequestRecord]] = {c.name: [] for c in contenders}
    for index in range(runs):
        for contender in contenders:
            options = Options(requests=1, concurrency=1, warmup=1 if index == 0 else 0)
            result = _run(_target(contender, services[contender.name]), clip, options)
            records[contender.name] += [r.model_copy(update={"index": index}) for r in result.records]
    options = Options(requests=runs, concurrency=1)
    return {
        c.name: summarise(
            _target(c, services[c.name]),
            records[c.name],
            sum(r.latency_s for r in records[c.name]),
            options,
            InstanceShape(),
            PriceTable(),
        )
        for c in contenders
    }


async def _under_probe(target: Target, clip: Clip, health_url: str) -> tuple[TargetResult, ProbeResult]:
    """CONCURRENT_REQUESTS requests at once, while a client probes the health path every 50 ms."""
    stop = asyncio.Event()
    latencies: list[float] = []
    failures = 0

    async def probe() -> None:
        nonlocal failures
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            while not stop.is_set():
                sent = time.perf_counter()
                try:
                    (await client.get(health_url)).raise_for_status()
                except httpx.HTTPError:
                    failures += 1
                latencies.append(time.perf_counter() - sent)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=PROBE_INTERVAL_S)

    prober = asyncio.create_task(probe())
    options = Options(requests=CONCURRENT_REQUESTS, concurrency=CONCURRENT_REQUESTS, warmup=0)
    try:
        result = await run_target(
            target, [clip], options, None, InstanceShape(), PriceTable(), progress=False
        )
    finally:
        stop.set()
        await prober
    return result, ProbeResult(latency=LatencySummary.of(latencies), failures=failures)


def concurrently(
    contender: Contender, service: RunningService, clip: Clip
) -> tuple[TargetResult, ProbeResult]:
    return asyncio.run(_under_probe(_target(contender, service), clip, service.url + contender.health_path))


def measure(
    build: WhisperCppBuild, audio: Path, cold_runs: int, short_runs: int, long_runs: int
) -> tuple[dict[str, str], list[ContenderResult]]:
    short, long, english = (
        Clip(audio / "jfk.flac"),
        Clip(audio / "multilingual.mp3"),
        Clip(audio / "multilingual.mp3", 0, 30),
    )
    for clip in (short, long):
        if not clip.path.is_file():
            raise ValueError(f"{clip.path}: no such file (--audio is the folder of shared recordings)")
    contenders = list(CONTENDERS)
    starts: dict[str, list[ServedStart]] = {c.name: [] for c in contenders}
    for _ in range(cold_runs):  # each start on its own, contenders in turn
        for contender in contenders:
            with start(contender, build) as service:
                starts[contender.name].append(first_transcriptions(service, short.path))
    with ExitStack() as stack:  # all three up at once, so that their requests can alternate
        services = {c.name: stack.enter_context(start(c, build)) for c in contenders}
        settle(list(services.values()))
        rows = {
            clip.label: alternating(services, contenders, clip, runs)
            for clip, runs in ((short, short_runs), (long, long_runs), (english, 1))
        }
        single = {name: service.peak_rss_mib() for name, service in services.items()}
        loaded = {c.name: concurrently(c, services[c.name], short) for c in contenders}
        results = [
            ContenderResult(
                name=c.name,
                title=c.title,
                command=command(c, build),
                threads=None if c.is_service else threads_in_log(services[c.name].log_path),
                starts=starts[c.name],
                start_medians=start_medians(starts[c.name]),
                short=rows[short.label][c.name],
                long=rows[long.label][c.name],
                english=rows[english.label][c.name],
                concurrent=loaded[c.name][0],
                probe=loaded[c.name][1],
                peak_rss_single_mib=single[c.name],
                peak_rss_concurrent_mib=services[c.name].peak_rss_mib(),
            )
            for c in contenders
        ]
    return {"short": short.label, "long": long.label, "english": english.label}, results


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MiB"


def _p50(result: TargetResult) -> float | None:
    return result.latency.p50 if result.latency else None


def _wer(result: ContenderResult) -> str:
    wer = {**result.short.wer, **result.english.wer}
    return ", ".join(f"{clip} {value * 100:.1f} %" for clip, value in wer.items()) or "-"


def _start(result: ContenderResult) -> str:
    m = result.start_medians
    if "first_transcription_s" not in m:
        return "-"
    return f"{m['first_transcription_s']:.2f} s (ready {m.get('ready_s', 0):.2f} s)"


def _errors(result: ContenderResult) -> int:
    return sum(r.errors for r in (result.short, result.long, result.english, result.concurrent))


def _probe(result: ContenderResult) -> str:
    latency = result.probe.latency
    if latency is None:
        return "-"
    failed = f", {result.probe.failures} failed" if result.probe.failures else ""
    return f"{latency.max:.3f} s ({latency.count} probes{failed})"


def _shown(argument: str) -> str:
    """A file by its name (the binaries and the model); anything else as it is."""
    return Path(argument).name if Path(argument).is_file() else argument


def markdown(report: VersusReport) -> str:
    results = report.contenders
    first = results[0] if results else None
    runs = (len(first.starts), first.short.requests, first.long.requests) if first else (0, 0, 0)
    rows = [
        (f"process start → first transcription (median of {runs[0]})", _start),
        (f"11 s clip ({report.clips['short']}), median of {runs[1]}", lambda r: _seconds(_p50(r.short))),
        (f"{report.clips['long']}, median of {runs[2]}", lambda r: _seconds(_p50(r.long))),
        ("WER (clips with a reference)", _wer),
        (
            f"{CONCURRENT_REQUESTS} concurrent 11 s requests, wall",
            lambda r: _seconds(r.concurrent.wall_seconds),
        ),
        ("worst health-probe latency during them", _probe),
        (
            "peak RSS, cold start + two 11 s requests (median)",
            lambda r: _mib(r.start_medians.get("peak_rss_mib")),
        ),
        ("peak RSS, after the single requests above", lambda r: _mib(r.peak_rss_single_mib)),
        (f"peak RSS, after {CONCURRENT_REQUESTS} concurrent", lambda r: _mib(r.peak_rss_concurrent_mib)),
        ("failed requests", lambda r: str(_errors(r))),
    ]
    build = report.whispercpp
    info = ", ".join(f"{key} {value}" for key, value in build.info.items()) or "no build-info.json"
    threads = ", ".join(f"{r.title}: {r.threads}" for r in results if r.threads is not None) or "not logged"
    lines = [
        "## This service vs whisper.cpp's server, same run",
        "",
        report.machine.describe(report.load_average_after[0]),
        f"whisper.cpp: {info}. Model: {build.model.name} (sha256 {build.model_sha256[:16]}…), "
        "the bundled tiny.en converted to ggml. whisper.cpp threads (from its log): "
        f"{threads}. Requests: multipart with response_format=json, one at a time and alternating "
        "between the servers (all three running), after one warm-up each; cold starts in turn.",
        "",
        "| | " + " | ".join(r.title for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
    lines += ["", "Commands (port left out):", ""]
    lines += [f"- {r.title}: `{' '.join(_shown(part) for part in r.command)}`" for r in results]
    return "\n".join([*lines, ""])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-whispercpp",
        description=__doc__.splitlines()[0],
        epilog="Build whisper.cpp (and convert tiny.en) with: scripts/build-whispercpp SRC_DIR [CACHE_DIR].",
    )
    parser.add_argument(
        "--whispercpp",
        type=Path,
        default=DEFAULT_CACHE,
        metavar="CACHE_DIR",
        help="What scripts/build-whispercpp wrote (default: .cache/whisper-cpp).",
    )
    parser.add_argument("--server", type=Path, help="whisper-server binary (default: in CACHE_DIR).")
    parser.add_argument("--model", type=Path, help="ggml model (default: tiny.en converted, in CACHE_DIR).")
    parser.add_argument(
        "--audio",
        type=Path,
        default=DEFAULT_AUDIO_DIR,
        help="The shared recordings (jfk.flac, multilingual.mp3).",
    )
    parser.add_argument("--cold-runs", type=int, default=5, help="Cold starts of each server (median).")
    parser.add_argument(
        "--short-runs", type=int, default=9, help="Requests of the 11 s clip to each (median)."
    )
    parser.add_argument("--long-runs", type=int, default=5, help="Requests of the minute to each (median).")
    parser.add_argument("--out", type=Path, default=Path("bench-results/whispercpp"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("cold_runs", "short_runs", "long_runs"):
        if not 1 <= getattr(args, name) <= 100:
            parser.error(f"--{name.replace('_', '-')} must be within 1..100")
    try:
        build = locate(args.whispercpp, args.server, args.model)
    except ValueError as error:
        parser.error(str(error))
    machine = describe(with_gpu=False)
    try:
        clips, results = measure(build, args.audio, args.cold_runs, args.short_runs, args.long_runs)
    except ValueError as error:
        parser.error(str(error))
    except (RuntimeError, TimeoutError, httpx.HTTPError) as error:
        print(error, file=sys.stderr)
        return 1
    report = VersusReport(
        machine=machine, load_average_after=load_average(), whispercpp=build, clips=clips, contenders=results
    )
    write_results(args.out, "whispercpp", report, markdown(report))
    print(markdown(report))
    return 1 if any(_errors(r) for r in results) else 0
