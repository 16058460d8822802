"""Cold start: process start → first transcription served, end to end, and split into its steps.

End to end: spawn `python -m whisper_api`, poll /readyz every 10 ms, and send one short clip as
soon as it answers 200 (what Cloud Run does with the request that woke the instance): HTTP up,
ready, and first transcription served, each from the spawn. Split: a child process that times the
same work one step after the other (interpreter start, importing the app, importing the engine's
library, loading the model, the pre-ready warm-up) through the service's own `load_engine`; the
server overlaps the model load with its imports, so its start is shorter than the steps' sum.
"""

import argparse
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel

from bench.audio import DEFAULT_AUDIO_DIR
from bench.isolated import project_env
from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.stats import median
from whisper_api.contract import TRANSCRIPTIONS_PATH

if TYPE_CHECKING:
    from bench.serve import RunningService

REPO = Path(__file__).resolve().parent.parent
STEPS = ("interpreter", "import_app", "import_engine", "load_model", "warmup")


class ServedStart(BaseModel):
    """One spawn of the server, seconds from the spawn (the first request's own latency apart)."""

    http_s: float
    ready_s: float
    first_transcription_s: float
    first_request_s: float
    second_request_s: float
    peak_rss_mib: float | None


class ColdStartReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    env: dict[str, str]
    clip: str
    starts: list[ServedStart]
    medians: dict[str, float]
    steps_s: list[dict[str, float]]
    steps_median_s: dict[str, float]

    @property
    def start_to_ready_median_s(self) -> float | None:
        return self.medians.get("ready_s")


def _child(spawned_at: float) -> dict[str, float]:
    """Runs in the child: each step's duration in seconds."""
    steps = {"interpreter": time.time() - spawned_at}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = now - mark
        mark = now

    import uvicorn  # noqa: F401 - the server imports it before anything else

    from whisper_api.app import create_app  # noqa: F401
    from whisper_api.settings import Settings

    lap("import_app")
    settings = Settings()
    if settings.engine == "faster-whisper":
        import whisper_api.engines.faster
    else:
        import whisper_api.engines.openai  # noqa: F401
    lap("import_engine")
    from whisper_api.engines import load_engine

    engine = load_engine(settings)
    lap("load_model")
    engine.warmup()
    lap("warmup")
    return steps


def step_timer_code(spawned_at: float) -> str:
    """`python -c` source that prints the steps as JSON. `_child` goes as source rather than imported
    from bench/, whose own imports (numpy, pydantic, httpx) would count as the interpreter's start and
    be missing from the app's."""
    child = inspect.getsource(_child)
    return f"import json, time\n{child}\nprint(json.dumps(_child({spawned_at!r})))"


def measure_steps(env: dict[str, str], timeout_s: float = 300) -> dict[str, float]:
    code = step_timer_code(time.time())
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=project_env(env),
        timeout=timeout_s,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the step timer failed: {done.stderr.strip()[-1000:]}")
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    steps["total"] = sum(steps[name] for name in STEPS)
    return steps


def measure_start(env: dict[str, str], clip: Path, timeout_s: float = 300) -> ServedStart:
    """Spawn the server, send `clip` the moment it is ready, then once more (warm)."""
    from bench.serve import serve

    with serve(env, timeout_s) as service:
        return first_transcriptions(service, clip, timeout_s)


def first_transcriptions(service: "RunningService", clip: Path, timeout_s: float = 300) -> ServedStart:
    """Send `clip` to a server that has just become ready, then once more (warm); any server that
    answers OpenAI's transcription request (this service, or a peer started by `bench.serve.spawn`)."""
    files = {"file": (clip.name, clip.read_bytes())}
    with httpx.Client(timeout=timeout_s) as client:
        latencies = []
        for _ in range(2):
            sent = time.perf_counter()
            response = client.post(
                service.url + TRANSCRIPTIONS_PATH, data={"model": "whisper-1"}, files=files
            )
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)
            if len(latencies) == 1:
                served = time.perf_counter() - service.started
        return ServedStart(
            http_s=service.seconds_to_http,
            ready_s=service.seconds_to_ready,
            first_transcription_s=served,
            first_request_s=latencies[0],
            second_request_s=latencies[1],
            peak_rss_mib=service.peak_rss_mib(),
        )


STARTS = {
    "http_s": "process start → HTTP up (first answer on /readyz)",
    "ready_s": "process start → ready (first 200 on /readyz)",
    "first_transcription_s": "**process start → first transcription served**",
    "first_request_s": "the first request's own latency",
    "second_request_s": "the next request's latency (warm)",
    "peak_rss_mib": "peak RSS of the server, MiB",
}


def start_medians(starts: Sequence[ServedStart]) -> dict[str, float]:
    """The median of each figure that every start has."""
    return {
        key: median([value for start in starts if (value := getattr(start, key)) is not None])
        for key in STARTS
        if starts and all(getattr(start, key) is not None for start in starts)
    }


def markdown(report: ColdStartReport) -> str:
    lines = [
        "## Cold start",
        "",
        f"{report.machine.describe(report.load_average_after[0])} "
        f"Settings: {', '.join(f'{k}={v}' for k, v in report.env.items()) or 'defaults'}. "
        f"Clip: {report.clip} (json), sent as soon as /readyz answers 200.",
        "",
        f"| from spawn (median of {len(report.starts)}) | s | runs |",
        "|---|---:|---|",
    ]
    for key, label in STARTS.items():
        if key in report.medians:
            runs = ", ".join(f"{getattr(start, key) or 0:.2f}" for start in report.starts)
            lines.append(f"| {label} | {report.medians[key]:.2f} | {runs} |")
    lines += ["", "| step, one after the other | median s |", "|---|---:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in report.steps_median_s.items()]
    lines += [
        "",
        "The steps are timed in a separate process doing the server's start-up work one step after "
        "the other (without binding a socket). The server overlaps the model load with importing the "
        "web stack, so process start → ready is shorter than their sum.",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench-coldstart", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Starts of each kind; medians are reported.")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="WHISPER_VAR=VALUE",
        help="Settings for the started service (repeatable).",
    )
    parser.add_argument("--skip-server", action="store_true", help="Only the step split (no socket).")
    parser.add_argument(
        "--audio",
        type=Path,
        default=DEFAULT_AUDIO_DIR / "jfk.flac",
        help="The first request's clip (default: the shared jfk.flac, 11 s).",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/coldstart"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.runs < 1:
        parser.error("--runs must be ≥ 1")
    env: dict[str, str] = {}
    for assignment in args.env:
        key, sep, value = assignment.partition("=")
        if not sep or not key.startswith("WHISPER_"):
            parser.error(f"--env must be WHISPER_VARIABLE=VALUE, got {assignment!r}")
        env[key] = value
    if not args.skip_server and not args.audio.is_file():
        parser.error(f"--audio {args.audio}: no such file")
    machine = describe(with_gpu=False)
    try:
        starts = [] if args.skip_server else [measure_start(env, args.audio) for _ in range(args.runs)]
        steps = [measure_steps(env) for _ in range(args.runs)]
    except (RuntimeError, TimeoutError, httpx.HTTPError) as error:
        print(error, file=sys.stderr)
        return 1
    report = ColdStartReport(
        machine=machine,
        load_average_after=load_average(),
        env=env,
        clip=args.audio.name,
        starts=starts,
        medians=start_medians(starts),
        steps_s=steps,
        steps_median_s={name: median([s[name] for s in steps]) for name in (*STEPS, "total")},
    )
    write_results(args.out, "coldstart", report, markdown(report))
    print(markdown(report))
    return 0
