"""service/.dockerignore: the build context carries what the Dockerfile copies and nothing else."""

import re

import pytest

from tests.container.dockerfile_model import DOCKERIGNORE, SERVICE, Dockerfile, copied_from_context


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (moby/patternmatcher): `**` spans folders, `*` and `?` stay in one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip("/"))))
    return rules


def is_sent(path: str) -> bool:
    """Whether `path` (relative to the context) reaches the builder: the last matching rule wins, and a
    rule matches a path when it matches the path or one of its parent folders."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    sent = True
    for negated, regex in _rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            sent = negated
    return sent


@pytest.mark.parametrize(
    "path",
    [
        "tests/test_app.py",
        ".venv/bin/python",
        ".venv-tools/bin/checkov",
        "whisper_api/__pycache__/app.cpython-311.pyc",
        "whisper_api/engines/__pycache__/faster.cpython-311.pyc",
        "whisper_api/.pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/cache.json",
        ".env",
        "models/large-v3-turbo/model.bin",
        "bench-results/run.json",
    ],
)
def test_tests_venvs_caches_and_local_files_stay_out(path: str) -> None:
    assert not is_sent(path)


@pytest.mark.parametrize(
    "path",
    [
        "whisper_api/__main__.py",
        "whisper_api/engines/faster.py",
        "fetch_model.py",
        "check_cuda.py",
        "requirements-image-faster-whisper.txt",
        "requirements-image-faster-whisper-gpu.txt",
        "requirements-image-openai-whisper-cpu.txt",
        "requirements-fetch.txt",
    ],
)
def test_what_the_image_needs_is_sent(path: str) -> None:
    assert is_sent(path)


def test_every_file_that_the_dockerfile_copies_is_in_the_context(dockerfile: Dockerfile) -> None:
    copied = copied_from_context(dockerfile)
    assert copied
    for source in copied:
        root = SERVICE / source
        files = [root] if root.is_file() else [p for p in root.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, f"COPY {source}: nothing to copy"
        for file in files:
            assert is_sent(file.relative_to(SERVICE).as_posix()), (
                f"{file} is copied but .dockerignore drops it"
            )
