"""Real image builders, for the image tests and the image cold-start benchmark: buildah builds,
Debian's docker.io daemon runs.

What works on a machine without Docker Hub (docs/images.md, "Testing the images"):
- a stand-in for the python base image, made by debootstrap from Debian's packages with the host's CA
  bundle (pip reaches PyPI through it), cached as a tarball outside the clone and keyed by its inputs;
- `buildah build --isolation chroot --network host --layers`: only the stages a target needs, layers
  kept in buildah's storage between runs, so a rerun with unchanged dependencies rebuilds only code;
- `dockerd --iptables=false --ip-masq=false --bridge=none`, started here if no daemon answers (and
  stopped after), to run the images with `--network none`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ENABLE_ENV = "WHISPER_IMAGE_TESTS"
CACHE = Path(os.environ.get("WHISPER_IMAGE_CACHE", "/var/cache/whisper-api-images"))
TOOLS = ("buildah", "dockerd", "docker", "debootstrap")
STANDIN_SUITE = "bookworm"
# python3-distutils: python3.11-venv needs it through a virtual package, which debootstrap cannot resolve.
STANDIN_PACKAGES = (
    "python3.11",
    "python3.11-venv",
    "python3-distutils",
    "python-is-python3",
    "ca-certificates",
)
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# pip inside the build (venvs included) trusts the host's CA bundle, as the host's pip does, and finds
# the wheels that the host has but no reachable index serves (torch's CPU build), mounted by build().
HOST_WHEELS = Path("/opt/wheels")
STANDIN_PIP_CONF = f"[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nfind-links = {HOST_WHEELS}\n"
STANDIN_REPOSITORY = "localhost/whisper-standin-base"
TEST_REPOSITORY = "localhost/whisper-api-test"
# buildah's storage is kept between runs for its layer cache; past this it is emptied (a full rebuild)
# so that layers from old requirement sets do not pile up on the machine.
STORAGE_CAP_BYTES = 30 * 1024**3
BUILDAH_STORAGE = Path("/var/lib/containers/storage")
SERVICE = Path(__file__).resolve().parent.parent / "service"  # the build context, service/Dockerfile's folder


def missing() -> str | None:
    """Why the images cannot be built and run here, or None."""
    if os.geteuid() != 0:
        return "the builders run as root (buildah's chroot isolation, dockerd)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install buildah docker.io debootstrap)"
    if not HOST_CA.is_file():
        return f"{HOST_CA} is missing: pip in the stand-in base needs the host's CA bundle"
    return None


def run(*command: str, timeout: float = 1800, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def _exists(image: str) -> bool:
    return run("buildah", "inspect", "--type", "image", image, check=False).returncode == 0


def standin_key() -> str:
    """Everything the stand-in is made of: a new CA bundle or package list makes a new one."""
    digest = hashlib.sha256()
    digest.update(f"{STANDIN_SUITE} {' '.join(STANDIN_PACKAGES)}\n{STANDIN_PIP_CONF}".encode())
    digest.update(HOST_CA.read_bytes())
    return digest.hexdigest()[:16]


def standin_base() -> str:
    """`localhost/whisper-standin-base:<key>`, imported from the cached tarball or debootstrapped (~1 min)."""
    key = standin_key()
    image = f"{STANDIN_REPOSITORY}:{key}"
    if _exists(image):
        return image
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"standin-{STANDIN_SUITE}-{key}.tar"
    if not tarball.is_file():
        for old in CACHE.glob("standin-*.tar"):
            old.unlink()
        _debootstrap(tarball)
    container = run("buildah", "from", "scratch").stdout.strip()
    try:
        mount = run("buildah", "mount", container).stdout.strip()
        run("tar", "--numeric-owner", "-C", mount, "-xf", str(tarball))
        run("buildah", "umount", container)
        run("buildah", "config", "--cmd", "python3", container)
        run("buildah", "commit", "--rm", container, image)
    except BaseException:
        run("buildah", "rm", container, check=False)
        raise
    return image


def _debootstrap(tarball: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        root = Path(work) / "rootfs"
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(STANDIN_PACKAGES)}",
            STANDIN_SUITE,
            str(root),
            timeout=1200,
        )
        shutil.copyfile(HOST_CA, root / "etc/ssl/certs/ca-certificates.crt")
        (root / "etc/pip.conf").write_text(STANDIN_PIP_CONF)
        for package in (root / "var/cache/apt/archives").glob("*.deb"):
            package.unlink()
        partial = tarball.with_suffix(".part")
        run("tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), ".")
        partial.rename(tarball)


def _storage_bytes() -> int:
    if not BUILDAH_STORAGE.is_dir():
        return 0
    return int(run("du", "-sb", str(BUILDAH_STORAGE)).stdout.split()[0])


def bound_storage() -> None:
    """Empty buildah's storage (layer cache included) when it has grown past STORAGE_CAP_BYTES."""
    if _storage_bytes() > STORAGE_CAP_BYTES:
        run("buildah", "rm", "--all", check=False)
        run("buildah", "rmi", "--all", "--force", check=False)


def build(target: str, tag: str, base: str, build_args: dict[str, str]) -> str:
    """Build `target` of service/Dockerfile as `localhost/whisper-api-test:<tag>`."""
    image = f"{TEST_REPOSITORY}:{tag}"
    arguments = [f"--build-arg={name}={value}" for name, value in {"BASE_IMAGE": base, **build_args}.items()]
    if HOST_WHEELS.is_dir():
        arguments.append(f"--volume={HOST_WHEELS}:{HOST_WHEELS}:ro")
    run(
        "buildah",
        "build",
        "--isolation=chroot",
        "--network=host",
        "--layers",
        "--format=docker",  # keeps HEALTHCHECK, which the OCI format drops
        f"--target={target}",
        *arguments,
        f"--tag={image}",
        str(SERVICE),
        timeout=3600,
    )
    return image


def docker(*arguments: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("docker", *arguments, timeout=timeout, check=check)


@contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """Serialise test runs on one machine: they share buildah's storage, the daemon and the cache."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def docker_daemon() -> Iterator[None]:
    """The machine's Docker daemon, or one started for these tests (and stopped after them)."""
    if docker("info", check=False, timeout=30).returncode == 0:
        yield
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "dockerd.log").open("ab") as log:
        daemon = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none"], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while docker("info", check=False, timeout=30).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not start; see {CACHE / 'dockerd.log'}")
            time.sleep(0.5)
        yield
    finally:
        daemon.terminate()
        with suppress(subprocess.TimeoutExpired):
            daemon.wait(timeout=30)
        if daemon.poll() is None:
            daemon.kill()


@contextmanager
def in_docker(image: str) -> Iterator[str]:
    """`image` copied from buildah's storage into the daemon; removed from the daemon afterwards."""
    run("buildah", "push", image, f"docker-daemon:{image}", timeout=1200)
    try:
        yield image
    finally:
        docker("rmi", "--force", image, check=False)
