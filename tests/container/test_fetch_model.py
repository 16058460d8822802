"""service/fetch_model.py without network: names to layout paths, engine choice, errors, and the
download steps with injected downloaders (what they write is checked as the service will read it)."""

import hashlib
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


def test_a_ct2_model_is_downloaded_into_its_folder_and_made_readable(tmp_path: Path) -> None:
    calls = []

    def downloader(repo_id: str, target: Path, revision: str | None) -> None:
        calls.append((repo_id, target, revision))
        (target / "model.bin").write_bytes(b"weights")
        (target / "config.json").write_text("{}")
        (target / "model.bin").chmod(0o600)
        (target / ".cache" / "huggingface").mkdir(parents=True)

    path = fetch_model.fetch(
        "faster-whisper", "turbo", tmp_path, revision="abc123", ct2_downloader=downloader
    )

    assert path == tmp_path / "turbo"
    assert calls == [("mobiuslabsgmbh/faster-whisper-large-v3-turbo", path, "abc123")]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.bin"]
    assert stat.S_IMODE((path / "model.bin").stat().st_mode) == 0o644


def test_a_repository_without_a_ct2_model_fails_the_build(tmp_path: Path) -> None:
    def downloader(repo_id: str, target: Path, revision: str | None) -> None:
        (target / "config.json").write_text("{}")

    with pytest.raises(ModelFetchError, match=r"not a CTranslate2 model: model\.bin missing"):
        fetch_model.fetch("faster-whisper", "owner/pytorch-only", tmp_path, ct2_downloader=downloader)


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
