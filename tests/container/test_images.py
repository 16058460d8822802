"""service/Dockerfile built and run for real: the faster-whisper gpu and cpu targets with tiny.en, on a
stand-in base (bench/images.py), then containers with `--network none`.

Opt-in with WHISPER_IMAGE_TESTS=1, which .ci/run sets after installing the builders: a first build
takes minutes on two cores, and other `make test` runs on a shared machine should not pay for it.
Reruns reuse buildah's layers (only changed code rebuilds) and the cached stand-in base.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator

import jiwer
import pytest

from bench import images
from tests.container.dockerfile_model import REPO
from whisper_api import contract

FIXTURES = REPO / "tests" / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
ENGINE = "faster-whisper"
BUILD_ARGS = {contract.BUILD_ARG_ENGINE: ENGINE, contract.BUILD_ARG_MODEL: contract.BUNDLED_MODEL}
OPENAI_BUILD_ARGS = {**BUILD_ARGS, contract.BUILD_ARG_ENGINE: "openai-whisper"}
TORCH_CPU = re.search(
    r"^torch==(\S+)$", (REPO / "service" / "requirements-image-openai-whisper-cpu.txt").read_text(), re.M
)
SERVICE_UID = "10001"
# The size the gpu image with tiny.en must stay under, uncompressed (docs/images.md has the measured sizes).
GPU_TINY_BUDGET_BYTES = 2_500_000_000
READY_TIMEOUT_S = 180

if os.environ.get(images.ENABLE_ENV) != "1":
    pytest.skip(
        f"image builds are opt-in: {images.ENABLE_ENV}=1 (as .ci/run sets) builds and runs the images",
        allow_module_level=True,
    )
if (reason := images.missing()) is not None:
    pytest.fail(f"{images.ENABLE_ENV}=1 but the images cannot be built here: {reason}", pytrace=False)

# A client with the standard library only, run inside the container: `--network none` leaves no way in
# from the host, and the image has no curl. argv: METHOD PATH [FILE]; prints the status, then the body.
CLIENT = r"""
import sys, urllib.error, urllib.request, uuid
method, path = sys.argv[1], sys.argv[2]
body, headers = None, {}
if len(sys.argv) > 3:
    boundary = uuid.uuid4().hex
    fields = [(b'model', b'whisper-1'), (b'response_format', b'json')]
    parts = [b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary.encode(), k, v)
             for k, v in fields]
    name = sys.argv[3].rsplit('/', 1)[-1].encode()
    parts.append(b'--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
                 b'Content-Type: application/octet-stream\r\n\r\n' % (boundary.encode(), name)
                 + open(sys.argv[3], 'rb').read() + b'\r\n')
    body = b''.join(parts) + b'--%s--\r\n' % boundary.encode()
    headers['Content-Type'] = 'multipart/form-data; boundary=' + boundary
request = urllib.request.Request('http://127.0.0.1:8080' + path, data=body, headers=headers, method=method)
try:
    with urllib.request.urlopen(request, timeout=300) as response:
        status, text = response.status, response.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(status)
print(text)
"""


def word_error_rate(expected: str, actual: str) -> float:
    words = [" ".join(re.findall(r"[a-z0-9']+", text.lower())) for text in (expected, actual)]
    return jiwer.wer(*words)


def call(container: str, method: str, path: str, file: str | None = None) -> tuple[int, str]:
    result = images.docker("exec", container, "python", "-c", CLIENT, method, path, *([file] if file else []))
    status, _, body = result.stdout.partition("\n")
    return int(status), body


def wait_ready(container: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        state = images.docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
        logs = lambda: images.docker("logs", container, check=False).stderr[-4000:]  # noqa: E731
        assert state == "true", f"the container exited before it was ready:\n{logs()}"
        probe = images.docker(
            "exec", container, "python", "-c", CLIENT, "GET", contract.READY_PATH, check=False
        )
        if probe.stdout.startswith("200"):
            return
        assert time.monotonic() < deadline, f"not ready after {READY_TIMEOUT_S} s:\n{logs()}"
        time.sleep(1)


@pytest.fixture(scope="module", autouse=True)
def one_run_at_a_time() -> Iterator[None]:
    with images.one_run_at_a_time():
        yield


@pytest.fixture(scope="module")
def base() -> str:
    images.bound_storage()
    return images.standin_base()


@pytest.fixture(scope="module")
def daemon() -> Iterator[None]:
    with images.docker_daemon():
        yield


def _image(target: str, base: str, build_args: dict[str, str] = BUILD_ARGS) -> Iterator[str]:
    engine = build_args[contract.BUILD_ARG_ENGINE]
    image = images.build(target, f"{target}-{engine}", base, build_args)
    with images.in_docker(image):
        yield image


@pytest.fixture(scope="module")
def gpu_image(base: str, daemon: None) -> Iterator[str]:
    # The build itself runs check_cuda.py: it fails unless cuBLAS loads and torch is absent.
    yield from _image(contract.IMAGE_TARGET_GPU, base)


@pytest.fixture(scope="module")
def cpu_image(base: str, daemon: None) -> Iterator[str]:
    yield from _image(contract.IMAGE_TARGET_CPU, base)


@pytest.fixture(scope="module")
def openai_cpu_image(base: str, daemon: None) -> Iterator[str]:
    assert TORCH_CPU, "requirements-image-openai-whisper-cpu.txt pins no torch"
    version = TORCH_CPU.group(1)
    if not any(images.HOST_WHEELS.glob(f"torch-{version}-*.whl")):
        where = images.HOST_WHEELS
        pytest.skip(f"no torch {version} wheel: PyTorch's index is unreachable and {where} lacks it")
    yield from _image(contract.IMAGE_TARGET_CPU, base, OPENAI_BUILD_ARGS)


def start(image: str, **env: str) -> str:
    name = f"whisper-api-test-{os.getpid()}-{time.monotonic_ns()}"
    settings = [f"--env={key}={value}" for key, value in env.items()]
    images.docker("run", "--detach", "--network=none", f"--name={name}", *settings, image)
    return name


@pytest.fixture(scope="module")
def cpu_container(cpu_image: str) -> Iterator[str]:
    # A generous grace so that draining is tested, not this machine's speed.
    name = start(cpu_image, WHISPER_SHUTDOWN_GRACE_S="120")
    try:
        wait_ready(name)
        yield name
    finally:
        images.docker("rm", "--force", name, check=False)


def test_the_gpu_image_fits_its_size_budget(gpu_image: str) -> None:
    size = int(images.docker("image", "inspect", "--format", "{{.Size}}", gpu_image).stdout)
    assert size <= GPU_TINY_BUDGET_BYTES, f"{gpu_image}: {size / 1e9:.2f} GB uncompressed"


def test_the_gpu_image_loads_its_cuda_libraries_without_a_gpu(gpu_image: str) -> None:
    result = images.docker(
        "run", "--rm", "--network=none", "--env=WHISPER_DEVICE=cpu", gpu_image, "python", "/opt/check_cuda.py"
    )
    assert "check_cuda: libcublas.so.12: loaded" in result.stdout
    assert "check_cuda: libcublasLt.so.12: loaded" in result.stdout


def test_the_gpu_image_serves_on_cpu(gpu_image: str) -> None:
    name = start(gpu_image, WHISPER_DEVICE="cpu")
    try:
        wait_ready(name)
    finally:
        images.docker("rm", "--force", name, check=False)


@pytest.mark.parametrize("target", [contract.IMAGE_TARGET_CPU, contract.IMAGE_TARGET_GPU])
def test_faster_whisper_images_carry_no_torch_nor_build_tools(
    target: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(f"{target}_image")
    unwanted = "('torch', 'whisper', 'triton', 'pip', 'setuptools')"
    probe = f"import importlib.util as u; print([m for m in {unwanted} if u.find_spec(m)])"
    result = images.docker("run", "--rm", "--network=none", image, "python", "-c", probe)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("target", [contract.IMAGE_TARGET_CPU, contract.IMAGE_TARGET_GPU])
def test_the_server_starts_from_bytecode_compiling_nothing(
    target: str, request: pytest.FixtureRequest
) -> None:
    """Every module the server imports, its own and its dependencies', is read from the image's bytecode."""
    image = request.getfixturevalue(f"{target}_image")
    imports = (
        "import whisper_api.__main__, whisper_api.app, whisper_api.engines.faster, faster_whisper, uvicorn"
    )
    result = images.docker(
        "run", "--rm", "--network=none", "--env=WHISPER_DEVICE=cpu", image, "python", "-v", "-c", imports
    )
    # `python -v` says "code object from '<file>.pyc'" for bytecode, "code object from <file>.py" for source.
    compiled = re.findall(r"^# code object from (/\S+\.py)$", result.stderr, flags=re.M)
    assert compiled == [], compiled
    assert "code object from '/app/whisper_api/__pycache__/app." in result.stderr


def test_the_cpu_container_is_ready_offline_as_a_non_root_user(cpu_container: str) -> None:
    network = images.docker("inspect", "--format", "{{.HostConfig.NetworkMode}}", cpu_container).stdout
    assert network.strip() == "none"
    status = images.docker("exec", cpu_container, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uids) == {SERVICE_UID}, status
    code, body = call(cpu_container, "GET", "/v1/models")
    assert code == 200 and contract.BUNDLED_MODEL in body


def test_the_cpu_container_transcribes_a_fixture_through_the_api(cpu_container: str) -> None:
    images.docker("cp", str(FIXTURES / "short.flac"), f"{cpu_container}:/tmp/short.flac")
    code, body = call(cpu_container, "POST", "/v1/audio/transcriptions", "/tmp/short.flac")
    assert code == 200, body
    assert word_error_rate(EXPECTED["short"], json.loads(body)["text"]) <= 0.2


def test_sigterm_finishes_the_request_in_flight_and_exits_0(cpu_container: str) -> None:
    images.docker("cp", str(FIXTURES / "long.ogg"), f"{cpu_container}:/tmp/long.ogg")
    command = ["docker", "exec", cpu_container, "python", "-c", CLIENT, "POST", "/v1/audio/transcriptions"]
    client = subprocess.Popen([*command, "/tmp/long.ogg"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while "whisper_requests_admitted 1.0" not in call(cpu_container, "GET", contract.METRICS_PATH)[1]:
            assert client.poll() is None and time.monotonic() < deadline, "the request was never admitted"
            time.sleep(0.1)
        images.docker("kill", "--signal=SIGTERM", cpu_container)
        output, _ = client.communicate(timeout=180)
    finally:
        if client.poll() is None:
            client.kill()
    status, _, body = output.partition("\n")
    assert status == "200", output
    assert word_error_rate(EXPECTED["long"], json.loads(body)["text"]) <= 0.2
    exit_code = images.docker("wait", cpu_container, timeout=120).stdout.strip()
    assert exit_code == "0", images.docker("logs", cpu_container, check=False).stderr[-4000:]


def test_the_openai_whisper_cpu_image_carries_torch_and_transcribes(openai_cpu_image: str) -> None:
    assert TORCH_CPU
    probe = "import torch, whisper; print(torch.__version__)"
    result = images.docker("run", "--rm", "--network=none", openai_cpu_image, "python", "-c", probe)
    assert result.stdout.strip() == TORCH_CPU.group(1)
    name = start(openai_cpu_image)
    try:
        wait_ready(name)  # tiny.en is the CTranslate2 folder, converted for openai-whisper at start
        images.docker("cp", str(FIXTURES / "short.flac"), f"{name}:/tmp/short.flac")
        code, body = call(name, "POST", "/v1/audio/transcriptions", "/tmp/short.flac")
        assert code == 200, body
        assert word_error_rate(EXPECTED["short"], json.loads(body)["text"]) <= 0.2
    finally:
        images.docker("rm", "--force", name, check=False)


def test_the_cpu_image_runs_the_batch_worker_as_the_cloud_run_job_does(cpu_image: str, tmp_path) -> None:
    """The image's second entry point: the job's command (infra/batch.py) over mounted folders."""
    from infra.batch import WORKER_COMMAND

    recordings, transcripts = tmp_path / "in", tmp_path / "out"
    (recordings / "calls").mkdir(parents=True)
    (recordings / "calls" / "short.flac").write_bytes((FIXTURES / "short.flac").read_bytes())
    (recordings / "broken.mp3").write_bytes(b"not audio")
    transcripts.mkdir()
    transcripts.chmod(0o777)  # the service user (uid 10001) writes there
    mounts = [f"--volume={recordings}:/in:ro", f"--volume={transcripts}:/out"]
    command = [*WORKER_COMMAND, "/in", "/out", "--no-progress"]
    result = images.docker("run", "--rm", "--network=none", *mounts, cpu_image, *command, check=False)
    assert result.returncode == 1, result.stdout + result.stderr  # one recording failed, as reported
    assert "2 recording(s): 1 done, 0 skipped (already done), 1 failed" in result.stdout
    transcript = json.loads((transcripts / "calls" / "short.flac.verbose.json").read_text())
    assert word_error_rate(EXPECTED["short"], transcript["text"]) <= 0.2
    assert (transcripts / "calls" / "short.flac.srt").read_text().startswith("1\n00:00:00")


def test_the_cpu_image_diarizes_offline_with_its_baked_network_and_no_torch(cpu_image: str, tmp_path) -> None:
    """CAM++ was exported in the model stage; the runtime runs it on onnxruntime, never torch."""
    from infra.batch import WORKER_COMMAND

    recordings, transcripts = tmp_path / "in", tmp_path / "out"
    recordings.mkdir()
    (recordings / "meeting.flac").write_bytes((REPO / "bench/data/pyannote-sample/sample.flac").read_bytes())
    transcripts.mkdir()
    transcripts.chmod(0o777)
    mounts = [f"--volume={recordings}:/in:ro", f"--volume={transcripts}:/out"]
    command = [*WORKER_COMMAND, "/in", "/out", "--no-progress", "--diarize", "--formats", "json"]
    result = images.docker("run", "--rm", "--network=none", *mounts, cpu_image, *command, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    diarized = json.loads((transcripts / "meeting.flac.diarized.json").read_text())
    assert {segment["speaker"] for segment in diarized["segments"]} == {"A", "B"}
    assert (transcripts / "meeting.flac.rttm").read_text().startswith("SPEAKER meeting.flac 1 ")
    probe = "import os; print(os.path.getsize(os.environ['WHISPER_DIARIZATION_MODEL']))"
    size = images.docker("run", "--rm", "--network=none", cpu_image, "python", "-c", probe).stdout
    assert 20_000_000 < int(size) < 40_000_000  # CAM++ as ONNX, about 28 MB: the whole cost in the image


def test_the_diarization_build_arg_adds_the_speaker_network_alone(cpu_image: str, base: str) -> None:
    """WHISPER_DIARIZATION=false builds the same cpu image less campplus.onnx: the sizes with and
    without it, measured here, are the ones docs/images.md states."""
    without = images.build(
        contract.IMAGE_TARGET_CPU,
        f"cpu-{ENGINE}-no-diarization",
        base,
        {**BUILD_ARGS, "WHISPER_DIARIZATION": "false"},
    )
    with images.in_docker(without):
        size = {
            image: int(images.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
            for image in (cpu_image, without)
        }
        listing = images.docker(
            "run", "--rm", "--network=none", without, "ls", "-A", "/models/diarization"
        ).stdout
    graph = ["stat", "-c", "%s", "/models/diarization/campplus.onnx"]
    network = int(images.docker("run", "--rm", "--network=none", cpu_image, *graph).stdout)
    added = size[cpu_image] - size[without]
    measured = f"with diarization {size[cpu_image]:,} B, without {size[without]:,} B, the graph {network:,} B"
    print(measured)  # pytest -s shows it: the figures docs/images.md states
    assert listing.strip() == ""  # the directory is there (the image's env names it), the graph is not
    assert network <= added <= network + 1_000_000, measured


def test_the_cold_start_benchmark_times_the_cpu_image_in_order(cpu_image: str) -> None:
    """scripts/bench-coldstart-image's measurements, on the image built here (no timing is asserted)."""
    from bench.coldstart_image import CONTAINER_STEPS, measure_container_start, measure_container_steps

    start = measure_container_start(cpu_image, FIXTURES / "short.flac")
    assert 0 < start.running_s < start.http_s <= start.ready_s < start.first_transcription_s
    assert start.peak_rss_mib is not None and start.peak_rss_mib > 100  # the model is loaded
    assert start.cgroup_peak_mib is not None and start.cgroup_peak_mib > 0
    steps = measure_container_steps(cpu_image)
    assert set(steps) == {*CONTAINER_STEPS, "total"}
    assert steps["runtime"] > 0 and steps["interpreter"] > 0 and steps["load_model"] > 0
    assert steps["total"] == pytest.approx(sum(steps[name] for name in CONTAINER_STEPS))
