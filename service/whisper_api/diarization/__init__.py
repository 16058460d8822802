"""Speaker diarization, engine-neutral: 16 kHz audio → speaker turns → labelled transcript segments.

`diarizer` (VAD, CAM++ embeddings on onnxruntime, clustering) finds who spoke when; `speakers`
puts a speaker on each word and splits segments where it changes. `export` (torch, build time
only) writes the ONNX graph the diarizer loads.
"""
