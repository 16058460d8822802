"""Speaker diarization, engine-neutral: 16 kHz audio → speaker turns → labelled transcript segments.

`diarizer` (VAD, CAM++ embeddings on onnxruntime, clustering) finds who spoke when; `speakers`
puts a speaker on each word and splits segments where it changes. `export` (torch, build time
only) writes the ONNX graph the diarizer loads.
"""

import logging
from pathlib import Path

from whisper_api.diarization.diarizer import Diarizer

logger = logging.getLogger(__name__)


def load_diarizer(model: Path | None) -> Diarizer | None:
    """The diarizer when its ONNX graph is there; None (diarization off, said once) otherwise."""
    if model is None:
        return None
    if not model.is_file():
        logger.warning("speaker diarization is off: %s does not exist (WHISPER_DIARIZATION_MODEL)", model)
        return None
    return Diarizer(model)
