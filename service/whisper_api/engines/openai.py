"""openai-whisper (PyTorch): the reference engine. float16 on GPU, float32 on CPU.

It runs `model.transcribe` on the whole array (30 s windows with seeking, never `pad_or_trim`).
Its weights come from an openai-whisper checkpoint, or are converted in memory from a
CTranslate2 folder (`models.convert_ct2_to_openai`), so it runs on the bundled tiny.en too.
This module imports torch and whisper; `engines.load_engine` imports it only when asked.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from whisper_api.engines import choose_compute_type, choose_device, openai_supported_compute_types
from whisper_api.engines.base import SAMPLE_RATE, SegmentCallback, TranscriptionCancelled, as_float32
from whisper_api.engines.code_switching import is_repetition_loop
from whisper_api.models import ResolvedModel, StartupError, convert_ct2_to_openai, resolve_model
from whisper_api.schemas import Segment, TranscribeOptions, Transcript, Word
from whisper_api.settings import Settings

# openai-whisper's own fallback schedule (the default of whisper.transcribe).
TEMPERATURE_SCHEDULE = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BEST_OF = 5


def _decode_heads(name: str) -> np.ndarray:
    import base64
    import gzip

    return np.frombuffer(gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS[name])), dtype=bool)


def alignment_heads_mask(
    dims: ModelDimensions, name: str, heads: list[list[int]] | None
) -> torch.Tensor | None:
    """The cross-attention heads that word timestamps align on, as a (layers, heads) bool mask.

    In order: the pairs stored with the model (CTranslate2's config.json); openai-whisper's table
    for the served name when its shape fits (e.g. large-v3-turbo); tiny.en's table when the
    dimensions are tiny.en's. None: openai-whisper's default (every head of the upper half of layers).
    """
    shape = (dims.n_text_layer, dims.n_text_head)
    if heads:
        mask = torch.zeros(shape, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        return mask
    candidates = [name] if name in whisper._ALIGNMENT_HEADS else []
    tiny_en = ModelDimensions(80, 1500, 384, 6, 4, 51864, 448, 384, 6, 4)
    if dims == tiny_en:
        candidates.append("tiny.en")
    for candidate in candidates:
        flat = _decode_heads(candidate)
        if flat.size == shape[0] * shape[1]:
            return torch.from_numpy(flat.copy()).reshape(shape)
    return None


def _checkpoint(resolved: ResolvedModel) -> dict[str, Any]:
    if resolved.kind == "ct2":
        return convert_ct2_to_openai(resolved.path)
    checkpoint = torch.load(resolved.path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= checkpoint.keys():
        raise StartupError(
            f"{resolved.path} is not an openai-whisper checkpoint (no dims / model_state_dict)."
        )
    return checkpoint


def build_model(checkpoint: dict[str, Any], name: str, device: str) -> Whisper:
    """A Whisper module on `device` from a checkpoint dict, with word-timestamp alignment heads.

    The module is created directly on `device` (on a GPU its random initialisation, overwritten
    by the checkpoint at once, is then nearly free).
    """
    dims = ModelDimensions(**checkpoint["dims"])
    with torch.device(device):
        model = Whisper(dims)
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    mask = alignment_heads_mask(dims, name, checkpoint.get("alignment_heads"))
    if mask is not None:  # else openai-whisper's default: every head of the upper half of the layers
        model.register_buffer("alignment_heads", mask.to(device).to_sparse(), persistent=False)
    return model.eval()


def to_segment(segment: dict[str, Any]) -> Segment:
    words = segment.get("words")
    return Segment(
        id=segment["id"],
        seek=segment["seek"],
        start=float(segment["start"]),
        end=float(segment["end"]),
        text=segment["text"],
        tokens=[int(token) for token in segment["tokens"]],
        temperature=float(segment["temperature"]),
        avg_logprob=float(segment["avg_logprob"]),
        compression_ratio=float(segment["compression_ratio"]),
        no_speech_prob=float(segment["no_speech_prob"]),
        words=None
        if words is None
        else [
            Word(
                word=word["word"],
                start=float(word["start"]),
                end=float(word["end"]),
                probability=float(word["probability"]),
            )
            for word in words
        ],
    )


WindowListener = Callable[[list[dict[str, Any]]], None]
_listener = threading.local()


class _WindowProgress:
    """Stands in for the tqdm progress bar of `whisper.transcribe`, the one place where
    openai-whisper calls out after each 30 s window: `update` runs right after that window's
    segments were appended to the `all_segments` list of the calling frame. The listener of this
    thread receives that list; an exception it raises (TranscriptionCancelled) stops the loop."""

    def __init__(self, *_: object, **__: object) -> None:
        self.listener: WindowListener | None = getattr(_listener, "current", None)

    def __enter__(self) -> _WindowProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, _frames: int) -> None:
        if self.listener is not None:
            self.listener(sys._getframe(1).f_locals["all_segments"])


# The module, not the function that `whisper.transcribe` names. It only ever calls `tqdm.tqdm(...)`,
# for a progress bar that this service keeps disabled.
importlib.import_module("whisper.transcribe").tqdm = SimpleNamespace(tqdm=_WindowProgress)  # type: ignore[attr-defined]


@contextmanager
def _window_listener(listener: WindowListener) -> Iterator[None]:
    _listener.current = listener
    try:
        yield
    finally:
        _listener.current = None


class OpenAIWhisperEngine:
    """A `whisper.Whisper` module. One inference at a time: openai-whisper installs hooks on the
    module during decoding and word alignment, so concurrent calls on one model would collide."""

    name = "openai-whisper"

    def __init__(
        self,
        model: Whisper,
        model_name: str,
        model_path: Path,
        *,
        device: str,
        compute_type: str,
        beam_size: int = 5,
        condition_on_previous_text: bool = False,
    ) -> None:
        self._whisper = model
        self._lock = threading.Lock()
        self.model = model_name
        self.model_path = model_path
        self.device = device
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.condition_on_previous_text = condition_on_previous_text
        self.multilingual = bool(model.is_multilingual)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIWhisperEngine:
        resolved = resolve_model(settings)
        device = choose_device(settings.device, torch.cuda.device_count() if torch.cuda.is_available() else 0)
        compute_type = choose_compute_type(
            "openai-whisper", device, settings.compute_type, openai_supported_compute_types(device)
        )
        if settings.cpu_threads:
            torch.set_num_threads(settings.cpu_threads)
        model = build_model(_checkpoint(resolved), resolved.name, device)
        return cls(
            model,
            resolved.name,
            resolved.path,
            device=device,
            compute_type=compute_type,
            beam_size=settings.beam_size,
            condition_on_previous_text=settings.condition_on_previous_text,
        )

    def _arguments(self, options: TranscribeOptions) -> dict[str, Any]:
        # openai-whisper detects the language once per file: a single `languages[]` hint fixes it.
        hinted = options.language_hints[0] if len(options.language_hints) == 1 else None
        return {
            # English-only models transcribe English whatever is asked (faster-whisper does the same).
            "language": (options.language or hinted) if self.multilingual else "en",
            "task": options.task,
            "initial_prompt": options.prompt or None,
            "word_timestamps": options.word_timestamps,
            "temperature": TEMPERATURE_SCHEDULE if options.temperature is None else options.temperature,
            "beam_size": options.beam_size or self.beam_size,
            "condition_on_previous_text": self.condition_on_previous_text,
            "best_of": BEST_OF,
            "fp16": self.compute_type == "float16",
            "verbose": None,
        }

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        *,
        on_segment: SegmentCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Transcript:
        audio = as_float32(audio)
        segments: list[Segment] = []
        seen = 0

        def emit(decoded: list[dict[str, Any]]) -> None:
            nonlocal seen
            for segment in decoded[seen:]:
                seen += 1
                if is_repetition_loop(segment["text"]):
                    continue
                segments.append(to_segment(segment))
                if on_segment is not None:
                    on_segment(segments[-1])

        def window_done(decoded: list[dict[str, Any]]) -> None:
            emit(decoded)
            if cancel is not None and cancel.is_set():
                raise TranscriptionCancelled(len(segments))

        with self._lock, torch.inference_mode(), _window_listener(window_done):
            window_done([])  # cancelled while waiting for the model: do not start
            result = self._whisper.transcribe(audio, **self._arguments(options))
        emit(result["segments"])  # whatever the last window left (normally nothing)
        return Transcript(
            task=options.task,
            language=result["language"],
            duration=len(audio) / SAMPLE_RATE,
            segments=segments,
        )

    def warmup(self) -> None:
        self.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32), TranscribeOptions())

    def background_warmup(self) -> None:
        """Word timestamps align with DTW, JIT-compiled (numba on CPU, triton on CUDA) on first use:
        about a second that the first request asking for words would otherwise pay."""
        from whisper.timing import dtw

        with self._lock:
            dtw(torch.rand(8, 8, device=self.device))
