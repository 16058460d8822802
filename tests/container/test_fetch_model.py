"""service/fetch_model.py without network: names to layout paths, engine choice, errors, and the
download steps with injected downloaders (what they write is checked as the service will read it)."""

import hashlib
import re
import stat
from pathlib import Path

import fetch_model
import pytest
from fetch_model import CheckpointSource, ModelFetchError

from whisper_api import contract

ROOT = Path(contract.MODEL_DIR)


def test_the_name_tables_match_the_installed_engines() -> None:
    import faster_whisper.utils
    import whisper

    assert fetch_model.FASTER_WHISPER_REPOS == faster_whisper.utils._MODELS
    assert fetch_model.OPENAI_WHISPER_URLS == whisper._MODELS
    assert fetch_model.ENGINES == contract.ENGINES


def test_the_default_image_model_lands_where_the_contract_says() -> None:
    model = contract.DEFAULT_IMAGE_MODEL
    assert fetch_model.model_path("faster-whisper", model, ROOT) == ROOT / model
    assert fetch_model.model_path("openai-whisper", model, ROOT) == ROOT / f"{model}.pt"


def test_each_engine_gets_its_own_kind_of_source() -> None:
    ct2 = fetch_model.resolve_source("faster-whisper", "large-v3-turbo")
    assert ct2 == fetch_model.Ct2Source("mobiuslabsgmbh/faster-whisper-large-v3-turbo")
    checkpoint = fetch_model.resolve_source("openai-whisper", "large-v3-turbo")
    assert isinstance(checkpoint, CheckpointSource)
    assert checkpoint.file_name == "large-v3-turbo.pt"
    assert checkpoint.sha256 == "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a"


def test_faster_whisper_accepts_a_hugging_face_repository_id() -> None:
    repo = "deepdml/faster-whisper-large-v3-turbo-ct2"
    assert fetch_model.resolve_source("faster-whisper", repo) == fetch_model.Ct2Source(repo)
    assert fetch_model.model_path("faster-whisper", repo, ROOT) == ROOT / "deepdml" / repo.split("/")[1]


@pytest.mark.parametrize(
    ("engine", "name", "message"),
    [
        ("faster-whisper", "huge-v9", "unknown faster-whisper model 'huge-v9'"),
        ("faster-whisper", "../etc", "unknown faster-whisper model"),
        ("faster-whisper", "owner/../escape", "unknown faster-whisper model"),
        ("faster-whisper", "/abs/path", "unknown faster-whisper model"),
        ("openai-whisper", "deepdml/faster-whisper-large-v3-turbo-ct2", "unknown openai-whisper model"),
        ("openai-whisper", "huge-v9", "use one of tiny.en, tiny,"),
        ("whisper.cpp", "large-v3-turbo", "unknown engine 'whisper.cpp'"),
    ],
)
def test_unknown_names_and_engines_fail_with_the_valid_choices(engine: str, name: str, message: str) -> None:
    with pytest.raises(ModelFetchError, match=message.replace("(", r"\(").replace(".", r"\.")):
        fetch_model.model_path(engine, name, ROOT)


FAKE_FILES = {"model.bin": b"weights", "config.json": b"{}"}
FAKE_REPO = "owner/fake-ct2"
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def pinned_fake(monkeypatch: pytest.MonkeyPatch) -> str:
    """A CTranslate2 model `fake-v1` pinned to FAKE_COMMIT with FAKE_FILES' digests."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in FAKE_FILES.items()}
    monkeypatch.setitem(fetch_model.FASTER_WHISPER_REPOS, "fake-v1", FAKE_REPO)
    monkeypatch.setitem(fetch_model.PINNED_CT2, FAKE_REPO, fetch_model.PinnedRevision(FAKE_COMMIT, digests))
    return "fake-v1"


def _hub(files: dict[str, bytes]):
    calls = []

    def downloader(repo_id: str, target: Path, revision: str, patterns: list[str]) -> None:
        calls.append((repo_id, revision, patterns))
        for name, data in files.items():
            (target / name).write_bytes(data)
            (target / name).chmod(0o600)
        (target / ".cache" / "huggingface").mkdir(parents=True)

    return downloader, calls


def test_a_pinned_model_is_fetched_at_its_commit_verified_and_made_readable(
    tmp_path: Path, pinned_fake: str
) -> None:
    downloader, calls = _hub(FAKE_FILES)

    path = fetch_model.fetch("faster-whisper", pinned_fake, tmp_path, ct2_downloader=downloader)

    assert path == tmp_path / pinned_fake
    assert calls == [(FAKE_REPO, FAKE_COMMIT, ["config.json", "model.bin"])]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.bin"]
    assert stat.S_IMODE((path / "model.bin").stat().st_mode) == 0o644


def test_a_pinned_file_with_another_digest_fails_and_leaves_nothing(tmp_path: Path, pinned_fake: str) -> None:
    downloader, _ = _hub({**FAKE_FILES, "model.bin": b"tampered"})

    with pytest.raises(ModelFetchError, match=rf"checksum mismatch for {FAKE_REPO}@{FAKE_COMMIT}/model\.bin"):
        fetch_model.fetch("faster-whisper", pinned_fake, tmp_path, ct2_downloader=downloader)
    assert list(tmp_path.iterdir()) == []


def test_another_commit_of_a_pinned_model_is_fetched_by_its_commit(tmp_path: Path, pinned_fake: str) -> None:
    downloader, calls = _hub({**FAKE_FILES, "model.bin": b"retrained"})
    other = "f" * 40

    fetch_model.fetch("faster-whisper", pinned_fake, tmp_path, revision=other, ct2_downloader=downloader)

    # No digests are known for that commit: the commit id itself pins the content.
    assert calls == [(FAKE_REPO, other, fetch_model.CT2_ALLOW_PATTERNS)]


def test_an_unpinned_model_needs_a_commit(tmp_path: Path) -> None:
    downloader, calls = _hub(FAKE_FILES)
    with pytest.raises(
        ModelFetchError, match=r"'owner/unpinned' .* has no pinned revision.*whisper:modelRevision"
    ):
        fetch_model.fetch("faster-whisper", "owner/unpinned", tmp_path, ct2_downloader=downloader)
    assert calls == []

    fetch_model.fetch(
        "faster-whisper", "owner/unpinned", tmp_path, revision=FAKE_COMMIT, ct2_downloader=downloader
    )
    assert calls == [("owner/unpinned", FAKE_COMMIT, fetch_model.CT2_ALLOW_PATTERNS)]


@pytest.mark.parametrize("revision", ["main", "v1.0", "0123abc", "F" * 40])
def test_a_branch_tag_or_short_id_is_refused(tmp_path: Path, revision: str) -> None:
    downloader, calls = _hub(FAKE_FILES)
    with pytest.raises(ModelFetchError, match="is not a commit id"):
        fetch_model.fetch(
            "faster-whisper", "large-v3", tmp_path, revision=revision, ct2_downloader=downloader
        )
    assert calls == []


def test_a_repository_without_a_ct2_model_fails_the_build(tmp_path: Path) -> None:
    downloader, _ = _hub({"config.json": b"{}"})

    with pytest.raises(ModelFetchError, match=r"not a CTranslate2 model: model\.bin missing"):
        fetch_model.fetch(
            "faster-whisper", "owner/pytorch-only", tmp_path, revision=FAKE_COMMIT, ct2_downloader=downloader
        )
    assert not (tmp_path / "owner" / "pytorch-only").exists()


def test_the_pins_are_commits_with_a_digest_for_each_model_file() -> None:
    assert fetch_model.FASTER_WHISPER_REPOS[contract.DEFAULT_IMAGE_MODEL] in fetch_model.PINNED_CT2
    for repo, pin in fetch_model.PINNED_CT2.items():
        assert re.fullmatch(r"[0-9a-f]{40}", pin.revision), repo
        assert {"model.bin", "config.json"} <= set(pin.sha256), repo
        assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in pin.sha256.values()), repo


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_tiny_en_comes_from_the_bundled_package_and_matches_the_hub_pin(tmp_path: Path, engine: str) -> None:
    def hub(*_: object) -> None:
        raise AssertionError("tiny.en must not reach the hub")

    path = fetch_model.fetch(engine, contract.BUNDLED_MODEL, tmp_path, ct2_downloader=hub)

    # A CTranslate2 folder for both engines (openai-whisper converts it at start), byte for byte the
    # pinned commit of Systran/faster-whisper-tiny.en.
    assert path == tmp_path / contract.BUNDLED_MODEL
    pin = fetch_model.PINNED_CT2[fetch_model.BUNDLED_REPO]
    assert {p.name: fetch_model.sha256_of(p) for p in path.iterdir()} == dict(pin.sha256)


@pytest.fixture
def fake_checkpoint(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A tiny checkpoint published under two names, like `large-v3-turbo` and its alias `turbo`."""
    weights = b"not really a whisper checkpoint"
    digest = hashlib.sha256(weights).hexdigest()
    url = f"https://cdn.example/whisper/{digest}/fake-v1.pt"
    monkeypatch.setitem(fetch_model.OPENAI_WHISPER_URLS, "fake-v1", url)
    monkeypatch.setitem(fetch_model.OPENAI_WHISPER_URLS, "fake", url)
    return weights


def _serving(weights: bytes):
    calls = []

    def downloader(source: CheckpointSource, target: Path) -> None:
        calls.append(source.url)
        target.write_bytes(weights)

    return downloader, calls


def test_a_checkpoint_is_verified_and_readable_by_the_service_user(
    tmp_path: Path, fake_checkpoint: bytes
) -> None:
    downloader, calls = _serving(fake_checkpoint)

    path = fetch_model.fetch("openai-whisper", "fake-v1", tmp_path, checkpoint_downloader=downloader)

    assert path == tmp_path / "fake-v1.pt"
    assert path.read_bytes() == fake_checkpoint
    assert len(calls) == 1
    # NamedTemporaryFile creates 0600 files; the non-root service user must still read the copy.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["fake-v1.pt"]


def test_an_alias_links_to_the_upstream_file_name(tmp_path: Path, fake_checkpoint: bytes) -> None:
    downloader, calls = _serving(fake_checkpoint)

    path = fetch_model.fetch("openai-whisper", "fake", tmp_path, checkpoint_downloader=downloader)

    # `<name>.pt` for the contract, and the upstream name for whisper.load_model(name, download_root).
    assert path == tmp_path / "fake.pt"
    assert path.is_symlink() and path.readlink() == Path("fake-v1.pt")
    assert path.read_bytes() == fake_checkpoint
    fetch_model.fetch("openai-whisper", "fake-v1", tmp_path, checkpoint_downloader=downloader)
    assert len(calls) == 1, "a verified checkpoint is not downloaded twice"


def test_a_corrupt_download_fails_and_leaves_nothing_behind(tmp_path: Path, fake_checkpoint: bytes) -> None:
    downloader, _ = _serving(b"truncated")

    with pytest.raises(ModelFetchError, match="checksum mismatch"):
        fetch_model.fetch("openai-whisper", "fake-v1", tmp_path, checkpoint_downloader=downloader)
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_are_only_fetched_over_https(tmp_path: Path) -> None:
    source = CheckpointSource(url="http://cdn.example/x/fake.pt", sha256="0" * 64)
    with pytest.raises(ModelFetchError, match="non-HTTPS"):
        fetch_model.download_checkpoint(source, tmp_path / "fake.pt")


def test_the_command_line_reports_a_bad_name_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = fetch_model.main(["--engine", "openai-whisper", "--model", "huge-v9", "--output", str(tmp_path)])
    assert code == 2
    assert "fetch_model: unknown openai-whisper model 'huge-v9'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
