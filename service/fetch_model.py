"""Bake one Whisper model into the image at build time, so that the service never downloads at start.

Run by the Dockerfile's `model` stage (the only stage with network access to the model hubs):

    python fetch_model.py --engine faster-whisper --model large-v3-turbo --output /models

The layout is the one `whisper_api.contract` documents and the service reads:
- faster-whisper: a CTranslate2 folder `<output>/<name>/` (model.bin, config.json, tokenizer, vocabulary);
- openai-whisper: a checkpoint `<output>/<name>.pt`, checked against the SHA-256 in OpenAI's URL.

This script is standalone on purpose (standard library + huggingface_hub): the model stage then does
not depend on the service's dependencies or code, so changing either never re-downloads the model.
The name tables below mirror `faster_whisper.utils._MODELS` and `whisper._MODELS`; the tests check that
they still agree with the installed packages.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FASTER_WHISPER = "faster-whisper"
OPENAI_WHISPER = "openai-whisper"
ENGINES = (FASTER_WHISPER, OPENAI_WHISPER)

# faster_whisper.utils._MODELS (faster-whisper 1.2.1): name -> Hugging Face repository (CTranslate2).
FASTER_WHISPER_REPOS: dict[str, str] = {
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "tiny": "Systran/faster-whisper-tiny",
    "base.en": "Systran/faster-whisper-base.en",
    "base": "Systran/faster-whisper-base",
    "small.en": "Systran/faster-whisper-small.en",
    "small": "Systran/faster-whisper-small",
    "medium.en": "Systran/faster-whisper-medium.en",
    "medium": "Systran/faster-whisper-medium",
    "large-v1": "Systran/faster-whisper-large-v1",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large": "Systran/faster-whisper-large-v3",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5-ct2",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}

# whisper._MODELS (openai-whisper 20250625): name -> checkpoint URL; the folder before the file name
# is the checkpoint's SHA-256.
_CDN = "https://openaipublic.azureedge.net/main/whisper/models/"
OPENAI_WHISPER_URLS: dict[str, str] = {
    "tiny.en": _CDN + "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03/tiny.en.pt",
    "tiny": _CDN + "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9/tiny.pt",
    "base.en": _CDN + "25a8566e1d0c1e2231d1c762132cd20e0f96a85d16145c3a00adf5d1ac670ead/base.en.pt",
    "base": _CDN + "ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e/base.pt",
    "small.en": _CDN + "f953ad0fd29cacd07d5a9eda5624af0f6bcf2258be67c92b79389873d91e0872/small.en.pt",
    "small": _CDN + "9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794/small.pt",
    "medium.en": _CDN + "d7440d1dc186f76616474e0ff0b3b6b879abc9d1a4926b7adfa41db2d497ab4f/medium.en.pt",
    "medium": _CDN + "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1/medium.pt",
    "large-v1": _CDN + "e4b87e7e0bf463eb8e6956e646f1e277e901512310def2c24bf0e11bd3c28e9a/large-v1.pt",
    "large-v2": _CDN + "81f7c96c852ee8fc832187b0132e569d6c3065a3252ed18e56effd0b6a73e524/large-v2.pt",
    "large-v3": _CDN + "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb/large-v3.pt",
    "large": _CDN + "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb/large-v3.pt",
    "large-v3-turbo": (
        _CDN + "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a/large-v3-turbo.pt"
    ),
    "turbo": _CDN + "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a/large-v3-turbo.pt",
}

# The files faster_whisper.download_model fetches; nothing else of the repository is needed.
CT2_ALLOW_PATTERNS = [
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
]
CT2_REQUIRED_FILES = ("model.bin", "config.json")

# A Hugging Face repository id (`owner/name`), accepted for faster-whisper models outside the table.
_HF_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelFetchError(Exception):
    """A model that cannot be baked: an unknown name, a failed download or a corrupt file."""


@dataclass(frozen=True)
class Ct2Source:
    """A CTranslate2 model in a Hugging Face repository."""

    repo_id: str


@dataclass(frozen=True)
class CheckpointSource:
    """An openai-whisper checkpoint, with the SHA-256 that the download must match."""

    url: str
    sha256: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


Source = Ct2Source | CheckpointSource
# (repo_id, target folder, revision) -> None; (source, target file) -> None. Injected by tests.
Ct2Downloader = Callable[[str, Path, str | None], None]
CheckpointDownloader = Callable[[CheckpointSource, Path], None]


def resolve_source(engine: str, name: str) -> Source:
    """Where `name` comes from for `engine`, or a ModelFetchError that lists the valid names."""
    if engine == FASTER_WHISPER:
        if name in FASTER_WHISPER_REPOS:
            return Ct2Source(FASTER_WHISPER_REPOS[name])
        if _HF_REPO_ID.match(name) and ".." not in name:
            return Ct2Source(name)
        raise ModelFetchError(
            f"unknown faster-whisper model {name!r}: use one of {', '.join(FASTER_WHISPER_REPOS)} "
            "or a Hugging Face repository id of a CTranslate2 model (owner/name)"
        )
    if engine == OPENAI_WHISPER:
        if name in OPENAI_WHISPER_URLS:
            url = OPENAI_WHISPER_URLS[name]
            return CheckpointSource(url=url, sha256=url.rsplit("/", 2)[-2])
        raise ModelFetchError(
            f"unknown openai-whisper model {name!r}: use one of {', '.join(OPENAI_WHISPER_URLS)}"
        )
    raise ModelFetchError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")


def model_path(engine: str, name: str, root: Path) -> Path:
    """Where the service finds `name` under `root` (the contract's layout); validates the name."""
    resolve_source(engine, name)
    if engine == FASTER_WHISPER:
        return root / name
    return root / f"{name}.pt"


def download_ct2(repo_id: str, target: Path, revision: str | None) -> None:
    """Download a CTranslate2 model's files from the Hugging Face Hub into `target`."""
    from huggingface_hub import snapshot_download  # only the model stage needs it

    snapshot_download(repo_id, local_dir=target, allow_patterns=CT2_ALLOW_PATTERNS, revision=revision)


def download_checkpoint(source: CheckpointSource, target: Path) -> None:
    """Stream a checkpoint from OpenAI's CDN into `target`."""
    if not source.url.startswith("https://"):
        raise ModelFetchError(f"refusing a non-HTTPS checkpoint URL: {source.url}")
    with urllib.request.urlopen(source.url, timeout=60) as response, target.open("wb") as out:  # noqa: S310 (https only, checked above)
        shutil.copyfileobj(response, out, length=1 << 20)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    engine: str,
    name: str,
    root: Path,
    *,
    revision: str | None = None,
    ct2_downloader: Ct2Downloader = download_ct2,
    checkpoint_downloader: CheckpointDownloader = download_checkpoint,
) -> Path:
    """Put `name` under `root` in the contract's layout, verify it, and return its path."""
    source = resolve_source(engine, name)
    path = model_path(engine, name, root)
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Ct2Source):
        _fetch_ct2(source, path, revision, ct2_downloader)
    else:
        _fetch_checkpoint(source, path, checkpoint_downloader)
    return path


def _fetch_ct2(source: Ct2Source, path: Path, revision: str | None, downloader: Ct2Downloader) -> None:
    path.mkdir(parents=True, exist_ok=True)
    downloader(source.repo_id, path, revision)
    shutil.rmtree(path / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping, not the model
    missing = [file for file in CT2_REQUIRED_FILES if not (path / file).is_file()]
    if missing:
        raise ModelFetchError(f"{source.repo_id} is not a CTranslate2 model: {', '.join(missing)} missing")
    for item in [path, *path.rglob("*")]:
        _make_world_readable(item)


def _fetch_checkpoint(source: CheckpointSource, path: Path, downloader: CheckpointDownloader) -> None:
    # The checkpoint keeps its upstream file name, so whisper.load_model(name, download_root=root)
    # finds it offline; an alias (`turbo`, `large`) becomes a symlink `<name>.pt` to that file.
    canonical = path.parent / source.file_name
    if not (canonical.is_file() and sha256_of(canonical) == source.sha256):
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as part:
            partial = Path(part.name)
        try:
            downloader(source, partial)
            actual = sha256_of(partial)
            if actual != source.sha256:
                raise ModelFetchError(
                    f"checksum mismatch for {source.url}: expected {source.sha256}, got {actual}"
                )
            os.replace(partial, canonical)
        finally:
            partial.unlink(missing_ok=True)
    _make_world_readable(canonical)
    if canonical != path:
        path.unlink(missing_ok=True)
        path.symlink_to(canonical.name)


def _make_world_readable(path: Path) -> None:
    # The model stage runs as root and temporary files are created 0600; the service runs as a
    # non-root user and must read what COPY --from=model brings over with these modes.
    if path.is_symlink():
        return
    path.chmod(0o755 if path.is_dir() else 0o644)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help=f"one of {', '.join(ENGINES)}")
    parser.add_argument("--model", required=True, help="model name (e.g. large-v3-turbo) or HF repo id")
    parser.add_argument("--output", required=True, type=Path, help="the image's model folder")
    parser.add_argument(
        "--revision", default="", help="Hugging Face revision (faster-whisper); default: main"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = fetch(args.engine, args.model, args.output, revision=args.revision or None)
    except ModelFetchError as error:
        print(f"fetch_model: {error}", file=sys.stderr)
        return 2
    print(f"fetch_model: {args.engine} model {args.model!r} baked at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
