"""scripts/bench-standin: a stand-in has the shapes it claims, loads in CTranslate2, and decodes
exactly the tokens asked of it (a narrow shape here; the real ones are built by the benchmark)."""

from pathlib import Path

from bench.standin import SHAPES, Shape, build, measure, parameters
from whisper_api.models import model_dimensions, read_ct2_model

NARROW = Shape(
    name="narrow", encoder_layers=3, decoder_layers=2, width=640, heads=10, mels=128, vocabulary=51866
)


def test_a_stand_in_has_the_dimensions_of_its_shape(tmp_path: Path) -> None:
    folder = build(NARROW, tmp_path / "narrow")
    _, variables = read_ct2_model(folder / "model.bin")
    dims = model_dimensions(variables)
    assert (dims["n_audio_layer"], dims["n_text_layer"]) == (3, 2)
    assert dims["n_audio_state"] == dims["n_text_state"] == 640
    assert (dims["n_audio_head"], dims["n_text_head"]) == (10, 10)
    assert (dims["n_mels"], dims["n_vocab"], dims["n_audio_ctx"], dims["n_text_ctx"]) == (
        128,
        51866,
        1500,
        448,
    )
    assert variables["encoder/layer_2/ffn/linear_0/weight"].shape == (4 * 640, 640)
    assert (
        variables["encoder/layer_0/ffn/linear_0/weight"].dtype.name == "int8"
    )  # as the service loads it on CPU
    # The tensors of the shape, once each (the output projection is the token embedding).
    width, vocabulary = 640, 51866
    encoder_layer = 4 * width * width + 2 * 4 * width * width + 13 * width  # attention, ffn, biases and norms
    assert parameters(folder) >= vocabulary * width + 3 * encoder_layer
    assert parameters(folder) < vocabulary * width + 3 * encoder_layer + 2 * 2 * encoder_layer + 2_000_000


def test_a_stand_in_decodes_the_tokens_asked_of_it_alone_and_batched(tmp_path: Path) -> None:
    folder = build(NARROW, tmp_path / "narrow")
    measured = measure(NARROW, folder, tokens=24, threads=0)
    assert measured.tokens_per_window == 24 and measured.load_s > 0
    assert measured.encode_s > 0 and measured.encode_batch_s > 0 and measured.decode_batch_s > 0
    assert measured.real_time_factor == round((measured.encode_s + measured.decode_s) / 30, 4)


def test_the_shapes_are_openais_published_dimensions() -> None:
    turbo, large = SHAPES["large-v3-turbo"], SHAPES["large-v3"]
    assert (turbo.encoder_layers, turbo.decoder_layers, turbo.width, turbo.heads) == (32, 4, 1280, 20)
    assert (large.encoder_layers, large.decoder_layers) == (32, 32)
    assert turbo.mels == large.mels == 128 and turbo.vocabulary == large.vocabulary == 51866
