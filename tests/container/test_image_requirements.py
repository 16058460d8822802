"""The image's pins (service/requirements-*.txt) agree with the project's lock, so the image runs the
versions that CI tested; only torch's build (CUDA or CPU) differs."""

import re
from pathlib import Path

import pytest
from dockerfile_model import REPO, SERVICE

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")
# pip freeze (and so `make lock`) leaves setuptools out; torch needs it at run time.
NOT_IN_LOCK = {"setuptools"}


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


@pytest.mark.parametrize("name", ["requirements-image.txt", "requirements-fetch.txt"])
def test_image_pins_are_the_locked_versions(name: str) -> None:
    pins = _pins(SERVICE / name)
    assert pins
    for package, version in pins.items():
        if package in NOT_IN_LOCK:
            continue
        assert package in LOCK, f"{name}: {package} is not in requirements/lock.txt"
        assert version == LOCK[package], f"{name}: {package}=={version}, lock has {LOCK[package]}"


def test_the_image_has_every_runtime_dependency_of_the_service() -> None:
    image = _pins(SERVICE / "requirements-image.txt")
    service = _pins(REPO / "requirements" / "service.txt")
    assert set(service) - {"torch"} <= set(image)
    assert "huggingface-hub" in _pins(SERVICE / "requirements-fetch.txt")


def test_torch_and_triton_come_only_with_the_targets_torch_build() -> None:
    image = _pins(SERVICE / "requirements-image.txt")
    assert "torch" not in image and "triton" not in image
    locked_torch = LOCK["torch"].split("+")[0]
    for target, local_tag in (("gpu", "cu12"), ("cpu", "cpu")):
        torch = _pins(SERVICE / f"requirements-{target}.txt")["torch"]
        version, _, build = torch.partition("+")
        assert version == locked_torch, f"requirements-{target}.txt: torch {version}, lock has {locked_torch}"
        assert build.startswith(local_tag)
