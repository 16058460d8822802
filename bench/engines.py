"""Engine benchmark: each configuration runs in its own subprocess (clean peak memory, no shared
caches), loads its model once, and transcribes every clip `warmup + runs` times.

Configurations compare faster-whisper (int8 / float32, sequential / batched, VAD on / off, beam 1 / 5)
with openai-whisper on the same weights (the bundled CTranslate2 tiny.en converted by
`whisper_api.models`), and with the reference deployment's own decode path, which reads only the
first 30 s. GPU configurations (fp16) are added when CUDA is visible.
"""

import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from bench.audio import Clip
from bench.isolated import WorkerFailed, run_worker, worker_main
from bench.stats import median

EngineKind = Literal["faster-whisper", "openai-whisper", "reference"]


class EngineConfig(BaseModel):
    name: str
    engine: EngineKind
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: str = "int8"
    beam_size: int = Field(1, ge=1)
    vad: bool = False
    batch_size: int = Field(0, ge=0, description="faster-whisper BatchedInferencePipeline; 0: sequential.")
    threads: int = Field(0, ge=0, description="0: the library's default.")
    without_timestamps: bool = False


class ClipResult(BaseModel):
    clip: str
    audio_seconds: float
    seconds: list[float] = Field(description="Warm runs only.")
    median_s: float
    real_time_factor: float = Field(description="Median wall time over audio duration (lower is faster).")
    text: str
    wer: float | None = None


class ConfigResult(BaseModel):
    config: EngineConfig
    import_s: float
    load_s: float
    peak_rss_mib: float
    clips: list[ClipResult]
    error: str | None = None


def default_configs(cuda: bool) -> list[EngineConfig]:
    fw, ow = "faster-whisper", "openai-whisper"
    configs = [
        EngineConfig(name="fw-int8-b1", engine=fw, beam_size=1),
        EngineConfig(name="fw-int8-b5", engine=fw, beam_size=5),
        EngineConfig(name="fw-int8-b1-vad", engine=fw, beam_size=1, vad=True),
        EngineConfig(name="fw-int8-b5-vad", engine=fw, beam_size=5, vad=True),
        EngineConfig(name="fw-int8-b1-notimestamps", engine=fw, beam_size=1, without_timestamps=True),
        EngineConfig(name="fw-int8-b5-notimestamps", engine=fw, beam_size=5, without_timestamps=True),
        EngineConfig(name="fw-int8-b1-1thread", engine=fw, beam_size=1, threads=1),
        EngineConfig(name="fw-int8-b1-2threads", engine=fw, beam_size=1, threads=2),
        EngineConfig(name="fw-float32-b1", engine=fw, compute_type="float32", beam_size=1),
        EngineConfig(name="fw-float32-b5", engine=fw, compute_type="float32", beam_size=5),
        EngineConfig(name="fw-int8-b1-batched8-vad", engine=fw, beam_size=1, vad=True, batch_size=8),
        EngineConfig(name="fw-int8-b1-batched8", engine=fw, beam_size=1, batch_size=8),
        EngineConfig(name="ow-float32-b1", engine=ow, compute_type="float32", beam_size=1),
        EngineConfig(name="ow-float32-b5", engine=ow, compute_type="float32", beam_size=5),
        EngineConfig(name="reference-float32-greedy-30s", engine="reference", compute_type="float32"),
    ]
    if cuda:
        configs += [
            EngineConfig(name="gpu-fw-float16-b1", engine=fw, device="cuda", compute_type="float16"),
            EngineConfig(
                name="gpu-fw-float16-b5", engine=fw, device="cuda", compute_type="float16", beam_size=5
            ),
            EngineConfig(
                name="gpu-fw-int8f16-b5", engine=fw, device="cuda", compute_type="int8_float16", beam_size=5
            ),
            EngineConfig(
                name="gpu-fw-float16-b1-batched16-vad",
                engine=fw,
                device="cuda",
                compute_type="float16",
                vad=True,
                batch_size=16,
            ),
            EngineConfig(name="gpu-ow-float16-b1", engine=ow, device="cuda", compute_type="float16"),
            EngineConfig(
                name="gpu-ow-float16-b5", engine=ow, device="cuda", compute_type="float16", beam_size=5
            ),
            EngineConfig(
                name="gpu-reference-float16", engine="reference", device="cuda", compute_type="float16"
            ),
        ]
    return configs


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:
        return False


def peak_rss_mib() -> float:
    """High-water resident memory of this process (VmHWM; getrusage where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def openai_checkpoint(ct2_dir: Path, cache_dir: Path) -> Path:
    """The bundled CTranslate2 weights as an openai-whisper checkpoint (converted once, cached)."""
    from whisper_api.models import save_openai_checkpoint

    out = cache_dir / f"{ct2_dir.name}-{int((ct2_dir / 'model.bin').stat().st_mtime)}.pt"
    if not out.exists():
        save_openai_checkpoint(ct2_dir, out)
    return out


# ---- the worker: runs inside the subprocess ---------------------------------------------------


def _clip_file(clip: Clip, folder: Path) -> str:
    """A path for decoders that want a file (the reference path's ffmpeg): slices become WAVs."""
    if not clip.sliced:
        return str(clip.path)
    from bench.audio import clip_upload

    name, data = clip_upload(clip)
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _faster_whisper(config: EngineConfig, ct2_dir: Path):  # type: ignore[no-untyped-def]
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        str(ct2_dir), device=config.device, compute_type=config.compute_type, cpu_threads=config.threads
    )
    pipeline = BatchedInferencePipeline(model) if config.batch_size else None

    def transcribe(audio, _path: str) -> str:  # type: ignore[no-untyped-def]
        arguments = {
            "beam_size": config.beam_size,
            "language": "en",
            "without_timestamps": config.without_timestamps,
            "vad_filter": config.vad,
        }
        if pipeline is None:
            segments, _ = model.transcribe(audio, **arguments)
        else:
            seconds = len(audio) / 16_000
            clips = (
                None
                if config.vad
                else [
                    {"start": start, "end": min(start + 30.0, seconds)}
                    for start in range(0, int(seconds) + 1, 30)
                    if start < seconds
                ]
            )
            segments, _ = pipeline.transcribe(
                audio, batch_size=config.batch_size, clip_timestamps=clips, **arguments
            )
        return "".join(segment.text for segment in segments).strip()

    return transcribe


def _openai_whisper(config: EngineConfig, checkpoint: Path):  # type: ignore[no-untyped-def]
    import torch
    import whisper

    if config.threads:
        torch.set_num_threads(config.threads)
    model = whisper.load_model(str(checkpoint), device=config.device)
    fp16 = config.compute_type == "float16"
    if fp16:
        model = model.half()

    if config.engine == "reference":
        # The reference deployment's app: file → 30 s window → log-mel → one greedy decode.
        def reference(_audio, path: str) -> str:  # type: ignore[no-untyped-def]
            audio = whisper.pad_or_trim(whisper.load_audio(path))
            mel = whisper.log_mel_spectrogram(audio).to(model.device)
            language = None if model.is_multilingual else "en"  # English-only models cannot detect
            options = whisper.DecodingOptions(language=language, fp16=fp16)
            return whisper.decode(model, mel, options).text.strip()

        return reference

    def transcribe(audio, _path: str) -> str:  # type: ignore[no-untyped-def]
        result = model.transcribe(
            audio,
            beam_size=config.beam_size if config.beam_size > 1 else None,
            language="en",
            fp16=fp16,
            without_timestamps=config.without_timestamps,
        )
        return str(result["text"]).strip()

    return transcribe


def worker(
    config: EngineConfig, clips: list[Clip], runs: int, warmup: int, ct2_dir: Path, checkpoint: Path | None
) -> ConfigResult:
    from bench.audio import load_clip

    started = time.perf_counter()
    if config.engine == "faster-whisper":
        import faster_whisper  # noqa: F401
    else:
        import whisper  # noqa: F401
    imported = time.perf_counter()
    if config.engine == "faster-whisper":
        transcribe = _faster_whisper(config, ct2_dir)
    else:
        assert checkpoint is not None
        transcribe = _openai_whisper(config, checkpoint)
    loaded = time.perf_counter()

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for clip in clips:
            audio = load_clip(clip)
            path = _clip_file(clip, Path(folder))
            text = ""
            seconds = []
            for run in range(warmup + runs):
                start = time.perf_counter()
                text = transcribe(audio, path)
                if run >= warmup:
                    seconds.append(time.perf_counter() - start)
            duration = len(audio) / 16_000
            results.append(
                ClipResult(
                    clip=clip.label,
                    audio_seconds=duration,
                    seconds=seconds,
                    median_s=median(seconds),
                    real_time_factor=median(seconds) / duration,
                    text=text,
                )
            )
    return ConfigResult(
        config=config,
        import_s=imported - started,
        load_s=loaded - imported,
        peak_rss_mib=peak_rss_mib(),
        clips=results,
    )


# ---- the parent: one subprocess per configuration ----------------------------------------------


def run_config(
    config: EngineConfig,
    clips: list[str],
    runs: int,
    warmup: int,
    ct2_dir: Path,
    checkpoint: Path | None,
    timeout_s: float = 1800,
) -> ConfigResult:
    args = [
        config.model_dump_json(),
        json.dumps(clips),
        str(runs),
        str(warmup),
        str(ct2_dir),
        str(checkpoint or ""),
    ]
    try:
        return ConfigResult.model_validate_json(run_worker("bench.engines", args, timeout_s))
    except WorkerFailed as error:
        return ConfigResult(config=config, import_s=0, load_s=0, peak_rss_mib=0, clips=[], error=str(error))


def worker_from_args(args: Sequence[str]) -> ConfigResult:
    """The worker for the arguments run_config gave it."""
    config = EngineConfig.model_validate_json(args[0])
    clips = [Clip.parse(spec) for spec in json.loads(args[1])]
    checkpoint = Path(args[5]) if args[5] else None
    return worker(config, clips, int(args[2]), int(args[3]), Path(args[4]), checkpoint)


if __name__ == "__main__":
    sys.exit(worker_main(worker_from_args))
