"""Cold start: process start → ready, end to end, and split into its steps.

End to end: spawn `python -m whisper_api` and poll /readyz every 10 ms. Split: a child process that
times the same work in the order the service does it (interpreter start, importing the app,
importing the engine's library, loading the model, the warm-up inference), through the service's
own `load_engine`, so the steps add up to what the server pays.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from bench.machine import Machine, describe, load_average
from bench.stats import median

REPO = Path(__file__).resolve().parent.parent
STEPS = ("interpreter", "import_app", "import_engine", "load_model", "warmup")


class ColdStartReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    env: dict[str, str]
    start_to_ready_s: list[float]
    start_to_ready_median_s: float | None
    steps_s: list[dict[str, float]]
    steps_median_s: dict[str, float]


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


def measure_steps(env: dict[str, str], timeout_s: float = 300) -> dict[str, float]:
    code = f"import json, sys; from bench.coldstart import _child; print(json.dumps(_child({time.time()!r})))"
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "service"), str(REPO)]), **env)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=timeout_s,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the step timer failed: {done.stderr.strip()[-1000:]}")
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    steps["total"] = sum(steps[name] for name in STEPS)
    return steps


def measure_ready(env: dict[str, str], timeout_s: float = 300) -> float:
    from bench.serve import serve

    with serve(env, timeout_s) as service:
        return service.seconds_to_ready


def markdown(report: ColdStartReport) -> str:
    ready = report.start_to_ready_median_s
    lines = [
        "## Cold start",
        "",
        f"{report.machine.describe(report.load_average_after[0])} "
        f"Settings: {', '.join(f'{k}={v}' for k, v in report.env.items()) or 'defaults'}.",
        "",
        f"Process start → first 200 on /readyz (median of {len(report.start_to_ready_s)}): "
        + (
            "-"
            if ready is None
            else f"**{ready:.2f} s** (runs: {', '.join(f'{s:.2f}' for s in report.start_to_ready_s)})."
        ),
        "",
        "| step | median s |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.3f} |" for name, value in report.steps_median_s.items()]
    lines += [
        "",
        "The steps are timed in a separate process doing the same work as the server's start-up "
        "(without binding a socket); the difference to start → ready is uvicorn's start and the "
        "readiness poll (10 ms).",
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
    machine = describe(with_gpu=False)
    try:
        ready = [] if args.skip_server else [measure_ready(env) for _ in range(args.runs)]
        steps = [measure_steps(env) for _ in range(args.runs)]
    except (RuntimeError, TimeoutError) as error:
        print(error, file=sys.stderr)
        return 1
    report = ColdStartReport(
        machine=machine,
        load_average_after=load_average(),
        env=env,
        start_to_ready_s=ready,
        start_to_ready_median_s=median(ready) if ready else None,
        steps_s=steps,
        steps_median_s={name: median([s[name] for s in steps]) for name in (*STEPS, "total")},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coldstart.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    (args.out / "coldstart.md").write_text(markdown(report))
    print(markdown(report))
    return 0
