"""Prove, without a GPU, that the GPU image's engine finds the CUDA libraries it loads at run time.

The gpu target runs it at build time (a missing or unregistered library fails the build, not the first
request on Cloud Run) and the image tests run it in the container. Only the driver (libcuda.so.1,
mounted by Cloud Run) is missing here, and nothing below needs it.

- faster-whisper: CTranslate2 links the CUDA runtime statically and opens cuBLAS by name; the image
  carries no torch.
- openai-whisper: torch's CUDA build, with its cuBLAS and cuDNN; CTranslate2 (routes use its tokenizer
  tables) shares that cuBLAS.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

CUBLAS = ("libcublas.so.12", "libcublasLt.so.12")
TORCH_CUDA = "12.6"


def check(engine: str) -> list[str]:
    """What loaded, one line each; raises on the first library that does not."""
    loaded = []
    for library in CUBLAS:
        ctypes.CDLL(library)
        loaded.append(f"{library}: loaded")
    import ctranslate2

    loaded.append(f"ctranslate2 {ctranslate2.__version__}: imported")
    has_torch = importlib.util.find_spec("torch") is not None
    if engine == "faster-whisper":
        if has_torch:
            raise RuntimeError("torch is installed in a faster-whisper image")
        return loaded
    import torch

    if torch.version.cuda != TORCH_CUDA:
        raise RuntimeError(f"torch is built for CUDA {torch.version.cuda}, expected {TORCH_CUDA}")
    loaded.append(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}: loaded")
    return loaded


if __name__ == "__main__":
    for line in check(os.environ["WHISPER_ENGINE"]):
        print(f"check_cuda: {line}")
    sys.exit(0)
