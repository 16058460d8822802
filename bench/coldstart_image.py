"""Cold start in the image: `docker run` issued → container running → HTTP up → ready → first transcription.

The cpu target of service/Dockerfile (faster-whisper, tiny.en) is built and loaded into Docker with the
image tests' builders (bench/images.py: buildah on a stand-in base, one run at a time, the daemon), or
`--image` names one already in the daemon. Each start runs the container with `--network host` on a free
loopback port, so that /readyz is polled from here every 10 ms as the bare-process benchmark does
(`docker exec` costs ~0.1 s a probe), and jfk.flac is sent the moment it answers 200, then once more
warm. When the container started (the daemon's StartedAt), its server's peak RSS (VmHWM) and its
cgroup's peak memory (page cache included) are read from the host. The same start-up, split into steps,
runs in `docker run --rm … python -c` with bench/coldstart.py's step timer, and the bare process
(`python -m whisper_api` from .venv) is measured interleaved with the container, so that the two are
compared at the same load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydantic import BaseModel

from bench import images
from bench.audio import DEFAULT_AUDIO_DIR
from bench.coldstart import (
    STEPS,
    ServedStart,
    first_transcriptions,
    measure_start,
    measure_steps,
    step_timer_code,
)
from bench.machine import Machine, describe, load_average
from bench.report import write_results
from bench.serve import free_port, peak_rss_of, spawn
from bench.stats import median
from whisper_api import contract

BUILD_ARGS = {contract.BUILD_ARG_ENGINE: "faster-whisper", contract.BUILD_ARG_MODEL: contract.BUNDLED_MODEL}
BENCH_TAG = "bench-coldstart-cpu-faster-whisper"
CONTAINER_STEPS = ("runtime", *STEPS)


class ContainerStart(ServedStart):
    """One `docker run`, seconds from the command being issued."""

    running_s: float  # the daemon's StartedAt: the container's process exists
    cgroup_peak_mib: float | None  # the container's memory cgroup high-water mark, page cache included


class ImageColdStartReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    image: str
    image_id: str
    image_size_bytes: int
    docker_version: str
    clip: str
    starts: list[ContainerStart]
    medians: dict[str, float]
    steps_s: list[dict[str, float]]
    steps_median_s: dict[str, float]
    bare_starts: list[ServedStart]
    bare_medians: dict[str, float]
    bare_steps_median_s: dict[str, float]


def _started_at(text: str) -> float:
    """Docker's RFC 3339 timestamp with nanoseconds, as seconds since the epoch."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    seconds = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()
    return seconds + float(f"0.{fraction or '0'}")


def cgroup_peak_mib(pid: int) -> float | None:
    """The high-water mark of `pid`'s memory cgroup (v2 memory.peak, v1 memory.max_usage_in_bytes)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.peak"
        elif "memory" in controllers.split(","):
            candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.max_usage_in_bytes"
        else:
            continue
        try:
            return int(candidate.read_text()) / 1024**2
        except (OSError, ValueError):
            continue
    return None


def _inspect(container: str, template: str) -> str:
    return images.docker("inspect", "--format", template, container).stdout.strip()


def measure_container_start(image: str, clip: Path, timeout_s: float = 300) -> ContainerStart:
    """`docker run` the image, attached (a container that exits ends the wait), timed as a bare start."""
    port = free_port()
    name = f"whisper-coldstart-{os.getpid()}-{time.monotonic_ns()}"
    settings = {"HOST": "127.0.0.1", "PORT": str(port), "WHISPER_LOG_JSON": "false"}
    command = ["docker", "run", "--rm", "--network=host", f"--name={name}"]
    command += [f"--env={key}={value}" for key, value in settings.items()]
    issued_at = time.time()
    try:
        with spawn([*command, image], None, port, contract.READY_PATH, timeout_s) as service:
            served = first_transcriptions(service, clip, timeout_s)
            pid = int(_inspect(name, "{{.State.Pid}}"))  # the container's process, not the docker CLI
            return ContainerStart(
                **served.model_dump(exclude={"peak_rss_mib"}),
                running_s=_started_at(_inspect(name, "{{.State.StartedAt}}")) - issued_at,
                peak_rss_mib=peak_rss_of(pid),
                cgroup_peak_mib=cgroup_peak_mib(pid),
            )
    finally:
        images.docker("rm", "--force", name, check=False)


def measure_container_steps(image: str, timeout_s: float = 300) -> dict[str, float]:
    """bench/coldstart.py's step timer in `docker run --rm`, its interpreter step split in two.

    runtime: `docker run` issued → the container's shell prints the time, just before it execs Python
    (the daemon, containerd and runc setting up the container, then the shell); interpreter: the rest.
    """
    issued_at = time.time()
    code = step_timer_code(issued_at)
    command = ["sh", "-c", 'date +%s.%N && exec python -c "$1"', "sh", code]
    done = images.docker("run", "--rm", "--network=none", image, *command, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the step timer failed in the container: {done.stderr.strip()[-1000:]}")
    lines = done.stdout.strip().splitlines()
    steps = json.loads(lines[-1])
    steps["runtime"] = float(lines[0]) - issued_at
    steps["interpreter"] -= steps["runtime"]
    steps["total"] = sum(steps[name] for name in CONTAINER_STEPS)
    return steps


@contextmanager
def built_image() -> Iterator[str]:
    """The cpu target built from this checkout as the image tests build it, loaded into a daemon."""
    with images.one_run_at_a_time():
        images.bound_storage()
        base = images.standin_base()
        image = images.build(contract.IMAGE_TARGET_CPU, BENCH_TAG, base, BUILD_ARGS)
        with images.docker_daemon(), images.in_docker(image):
            yield image


@contextmanager
def _existing(image: str) -> Iterator[str]:
    with images.docker_daemon():
        yield image


def _medians(starts: Sequence[BaseModel]) -> dict[str, float]:
    keys = type(starts[0]).model_fields if starts else {}
    return {
        key: median([getattr(start, key) for start in starts])
        for key in keys
        if all(getattr(start, key) is not None for start in starts)
    }


ROWS = {
    "running_s": "`docker run` issued → container running (the daemon's StartedAt)",
    "http_s": "→ HTTP up (first answer on /readyz)",
    "ready_s": "→ ready (first 200 on /readyz)",
    "first_transcription_s": "**→ first transcription served**",
    "first_request_s": "the first request's own latency",
    "second_request_s": "the next request's latency (warm)",
    "peak_rss_mib": "peak RSS of the server process, MiB",
    "cgroup_peak_mib": "peak of the container's memory cgroup (page cache included), MiB",
}


def markdown(report: ImageColdStartReport) -> str:
    def cell(medians: dict[str, float], key: str) -> str:
        return f"{medians[key]:.2f}" if key in medians else "-"

    lines = [
        "## Cold start in the image",
        "",
        f"{report.machine.describe(report.load_average_after[0])} Docker {report.docker_version}. "
        f"Image: {report.image} ({report.image_id[:19]}, {report.image_size_bytes / 1e9:.2f} GB), "
        f"run with `--network host`. Clip: {report.clip} (json), sent as soon as /readyz answers 200. "
        "The bare process (`python -m whisper_api` from .venv) ran interleaved with the container.",
        "",
        f"| from `docker run` / spawn (median of {len(report.starts)}) | container | bare process | "
        "container runs |",
        "|---|---:|---:|---|",
    ]
    for key, label in ROWS.items():
        if key in report.medians:
            runs = ", ".join(f"{getattr(start, key):.2f}" for start in report.starts)
            lines.append(
                f"| {label} | {cell(report.medians, key)} | {cell(report.bare_medians, key)} | {runs} |"
            )
    lines += ["", "| step, one after the other | container, median s | bare process, median s |"]
    lines += ["|---|---:|---:|"]
    for name in (*CONTAINER_STEPS, "total"):
        bare = report.bare_steps_median_s.get(name)
        container = report.steps_median_s[name]
        lines.append(f"| {name} | {container:.3f} | {'-' if bare is None else f'{bare:.3f}'} |")
    lines += [
        "",
        "runtime: `docker run` issued → the container's shell about to exec Python (the daemon, "
        "containerd and runc creating the container); interpreter: Python's own start. The steps run one "
        "after the other in `docker run --rm --network none` with bench/coldstart.py's step timer, the "
        "bare ones in a child of this process; the servers overlap the model load with the imports.",
        "",
        "The gpu image is not measured: started on a CPU it runs this same code beside unused CUDA "
        "libraries, and its real start (CUDA context, image streaming on Cloud Run) needs a GPU and Docker "
        "together (`scripts/bench-gpu` times the CUDA start in-process).",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-coldstart-image", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="Starts of each kind; medians are reported.")
    parser.add_argument(
        "--image",
        help="An image already in the Docker daemon (default: build service/Dockerfile's cpu target, "
        "faster-whisper, tiny.en, as the image tests do).",
    )
    parser.add_argument("--no-bare", action="store_true", help="Skip the interleaved bare-process starts.")
    parser.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="Exit 0 with the reason when the builders are missing here (what `make bench` uses).",
    )
    parser.add_argument(
        "--audio",
        type=Path,
        default=DEFAULT_AUDIO_DIR / "jfk.flac",
        help="The first request's clip (default: the shared jfk.flac, 11 s).",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/coldstart-image"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.runs < 1:
        parser.error("--runs must be ≥ 1")
    if not args.audio.is_file():
        parser.error(f"--audio {args.audio}: no such file")
    reason = images.missing() if args.image is None else (None if shutil.which("docker") else "no docker")
    if reason is not None:
        print(f"bench-coldstart-image skipped: {reason}", file=sys.stderr)
        return 0 if args.skip_unavailable else 1
    machine = describe(with_gpu=False)
    image_context = built_image() if args.image is None else _existing(args.image)
    starts: list[ContainerStart] = []
    bare: list[ServedStart] = []
    steps: list[dict[str, float]] = []
    bare_steps: list[dict[str, float]] = []
    try:
        with image_context as image:
            image_id = _inspect(image, "{{.Id}}")
            size = int(_inspect(image, "{{.Size}}"))
            version = images.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
            measure_container_steps(image)  # the image's files into the page cache, as a warm node has them
            for _ in range(args.runs):
                starts.append(measure_container_start(image, args.audio))
                if not args.no_bare:
                    bare.append(measure_start({}, args.audio))
            for _ in range(args.runs):
                steps.append(measure_container_steps(image))
                if not args.no_bare:
                    bare_steps.append(measure_steps({}))
    except (RuntimeError, TimeoutError, httpx.HTTPError, AssertionError) as error:
        print(error, file=sys.stderr)
        return 1
    report = ImageColdStartReport(
        machine=machine,
        load_average_after=load_average(),
        image=image,
        image_id=image_id,
        image_size_bytes=size,
        docker_version=version,
        clip=args.audio.name,
        starts=starts,
        medians=_medians(starts),
        steps_s=steps,
        steps_median_s={name: median([s[name] for s in steps]) for name in (*CONTAINER_STEPS, "total")},
        bare_starts=bare,
        bare_medians=_medians(bare),
        bare_steps_median_s=(
            {name: median([s[name] for s in bare_steps]) for name in (*STEPS, "total")} if bare_steps else {}
        ),
    )
    write_results(args.out, "coldstart-image", report, markdown(report))
    print(markdown(report))
    return 0
