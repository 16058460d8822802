"""`make batch` over a folder against the same files sent one by one to the API, on this machine.

Both sides run the same engine and settings in a process of their own. The API is started once and
warmed (its start-up is not counted), then gets each file in turn (`response_format=verbose_json`,
the next request sent when the previous answered). The worker (`python -m whisper_api.batch --force
--formats verbose_json`) is started cold for every round: its interpreter, imports and model load
are counted in `process` and left out of `run`, which starts once the model is loaded. Throughput is
audio seconds per wall second; each figure is the median of the rounds.

Each round also interrupts a run as Ctrl-C does (one SIGINT): once while it loads the model, once
while it transcribes (the second recording's done marker written, then 0.3 s): how long the
process takes to exit, and whether it exits 130.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median

import httpx
from pydantic import BaseModel

from bench.audio import DEFAULT_AUDIO_DIR, Clip, clip_seconds, find_clips
from bench.cost import InstanceShape, PriceTable
from bench.machine import Machine, describe
from bench.report import write_results
from bench.serve import REPO, serve, service_env
from whisper_api.contract import TRANSCRIPTIONS_PATH

INTERRUPTED_STATES = ("loading the model", "transcribing")


class Round(BaseModel):
    api_s: float
    batch_process_s: float
    batch_run_s: float
    ctrl_c_stop_s: dict[str, float] = {}  # state -> seconds from SIGINT to the process's exit


class BatchBenchReport(BaseModel):
    machine: Machine
    load_average_after: float
    files: list[str]
    audio_seconds: float
    rounds: list[Round]
    api_s: float
    batch_process_s: float
    batch_run_s: float
    ctrl_c_stop_s: dict[str, float] = {}  # the rounds' worst, per state

    def throughput(self, seconds: float) -> float:
        return self.audio_seconds / seconds


def api_one_by_one(url: str, clips: list[Clip]) -> float:
    """Wall seconds to send every file in turn and read each whole answer."""
    with httpx.Client(timeout=600) as client:
        started = time.perf_counter()
        for clip in clips:
            response = client.post(
                url + TRANSCRIPTIONS_PATH,
                data={"model": "whisper-1", "response_format": "verbose_json"},
                files={"file": (clip.path.name, clip.path.read_bytes())},
            )
            response.raise_for_status()
        return time.perf_counter() - started


_SUMMARY = re.compile(r"of audio in (?P<wall>[0-9.]+) s .*model load (?P<load>[0-9.]+) s")


def batch_folder(folder: Path, output: Path, env: dict[str, str]) -> tuple[float, float]:
    """(process wall seconds, the run's wall seconds once the model was loaded) for one cold run."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "whisper_api.batch", str(folder), str(output)]
    command += ["--formats", "verbose_json", "--no-progress", "--force"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    process_s = time.perf_counter() - started
    summary = _SUMMARY.search(done.stdout)
    if done.returncode != 0 or summary is None:
        raise RuntimeError(
            f"the batch worker exited {done.returncode}: {done.stdout[-1000:]}{done.stderr[-1000:]}"
        )
    return process_s, float(summary["wall"]) - float(summary["load"])


def interrupted_run(folder: Path, output: Path, env: dict[str, str], state: str) -> float:
    """Seconds from one SIGINT, sent in `state`, until the worker exited (130, or this raises)."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "whisper_api.batch", str(folder), str(output), "--no-progress"]
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    second = sorted(folder.iterdir())[1]
    marker = output / "_manifest" / "done" / f"{second.name}@{second.stat().st_mtime_ns}.json"
    deadline = time.monotonic() + 300
    while not ("loading" in "".join(lines) if state == "loading the model" else marker.exists()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the batch worker never reached {state}: {''.join(lines)[-1000:]}")
        time.sleep(0.01)
    if state == "transcribing":
        time.sleep(0.3)
    sent = time.perf_counter()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=60)
    stopped_s = time.perf_counter() - sent
    reader.join(timeout=10)
    if code != 130:
        raise RuntimeError(f"interrupted while {state}, the worker exited {code}: {''.join(lines)[-1000:]}")
    return stopped_s


def markdown(report: BatchBenchReport) -> str:
    shape, prices = InstanceShape(), PriceTable()
    hourly = shape.cost_per_hour(prices)
    rows = [
        ("API, one file at a time (server warm)", report.api_s),
        ("`make batch`, whole process (cold: imports, model load)", report.batch_process_s),
        ("`make batch`, after the model loaded", report.batch_run_s),
    ]
    lines = [
        "# `make batch` vs the API one file at a time",
        "",
        report.machine.describe(report.load_average_after),
        "",
        f"{len(report.files)} files ({', '.join(report.files)}), {report.audio_seconds:.1f} s of audio, "
        f"verbose_json, default settings; median of {len(report.rounds)} rounds.",
        "",
        "| path | wall s | audio s per wall s |",
        "|---|---|---|",
        *(f"| {name} | {seconds:.2f} | {report.throughput(seconds):.1f} |" for name, seconds in rows),
        "",
        f"Batch, once its model is loaded, runs at {report.api_s / report.batch_run_s:.2f}x the API's "
        "throughput: the engine dominates both (the worker saves the HTTP round trip and the upload, and "
        "decodes the next file while the current one is transcribed); its cold start is paid once per run.",
        "",
        f"Cost at full utilisation if an L4 instance ({shape.vcpu:g} vCPU, {shape.memory_gib:g} GiB, "
        f"${hourly:.4f}/h) did no better than this CPU: "
        f"${hourly / report.throughput(report.batch_run_s):.4f} per audio hour "
        f"(OpenAI: ${prices.openai_whisper_per_audio_minute * 60:.2f}).",
        "",
    ]
    if report.ctrl_c_stop_s:
        stops = ", ".join(f"{seconds:.2f} s while {state}" for state, seconds in report.ctrl_c_stop_s.items())
        lines += [
            f"Ctrl-C (one SIGINT), worst of the rounds, from the signal to the exit (130): {stops}.",
            "",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench-batch", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", default=str(DEFAULT_AUDIO_DIR), help="a folder of recordings")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side; medians are reported")
    parser.add_argument("--out", type=Path, default=Path("bench-results/batch"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.rounds < 1:
        parser.error("--rounds must be ≥ 1")
    try:
        clips = find_clips([args.audio])
    except ValueError as error:
        parser.error(str(error))
    machine = describe(with_gpu=False)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        folder = Path(scratch) / "in"
        folder.mkdir()
        for clip in clips:
            shutil.copy(clip.path, folder / clip.path.name)
        env = service_env({}, 0)
        with serve() as service:
            api_one_by_one(service.url, clips[:1])  # warm-up, not counted
            for _ in range(args.rounds):
                api_s = api_one_by_one(service.url, clips)
                process_s, run_s = batch_folder(folder, Path(scratch) / "out", env)
                stops = {
                    state: interrupted_run(folder, Path(scratch) / "out", env, state)
                    for state in INTERRUPTED_STATES
                }
                rounds.append(
                    Round(api_s=api_s, batch_process_s=process_s, batch_run_s=run_s, ctrl_c_stop_s=stops)
                )
    report = BatchBenchReport(
        machine=machine,
        load_average_after=os.getloadavg()[0],
        files=[clip.path.name for clip in clips],
        audio_seconds=sum(clip_seconds(clip) for clip in clips),
        rounds=rounds,
        api_s=median(r.api_s for r in rounds),
        batch_process_s=median(r.batch_process_s for r in rounds),
        batch_run_s=median(r.batch_run_s for r in rounds),
        ctrl_c_stop_s={state: max(r.ctrl_c_stop_s[state] for r in rounds) for state in INTERRUPTED_STATES},
    )
    write_results(args.out, "results", report, markdown(report))
    print(markdown(report))
    return 0
