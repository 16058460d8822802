"""scripts/bench: targets, credentials, argument errors, and real runs against loopback servers."""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response

from bench.audio import Clip, clip_seconds, clip_upload, find_clips, word_error_rate
from bench.cli_http import main, parse_args
from bench.http_bench import Auth, parse_serve, parse_target, resolve_token

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# ---- targets and credentials ------------------------------------------------------------------


def test_default_credentials_follow_the_host() -> None:
    env = {"OPENAI_API_KEY": "sk-test"}
    openai = parse_target("openai=https://api.openai.com", {}, env)
    assert openai.auth == Auth(kind="env", variable="OPENAI_API_KEY")
    assert openai.endpoint == "https://api.openai.com/v1/audio/transcriptions"
    assert parse_target("run=https://whisper-abc-uc.a.run.app", {}, env).auth.kind == "gcloud"
    local = parse_target("local=http://127.0.0.1:8080/", {}, env)
    assert local.auth.kind == "none"
    assert local.endpoint == "http://127.0.0.1:8080/v1/audio/transcriptions"
    assert (
        parse_target("local=http://127.0.0.1:8080", {}, {"WHISPER_API_KEY": "k"}).auth.variable
        == "WHISPER_API_KEY"
    )


def test_auth_override_and_refusals() -> None:
    assert parse_target("x=https://example.com", {"x": "env:MY_KEY"}, {}).auth.variable == "MY_KEY"
    with pytest.raises(ValueError, match="plain http"):
        parse_target("x=http://example.com", {"x": "gcloud"}, {})
    with pytest.raises(ValueError, match="not an http"):
        parse_target("x=file:///etc/passwd", {}, {})
    with pytest.raises(ValueError, match="NAME=URL"):
        parse_target("http://127.0.0.1:8080", {}, {})
    with pytest.raises(ValueError):
        Auth.parse("env:")


def test_gcloud_token_is_fetched_once_per_target() -> None:
    calls: list[int] = []

    def fake_gcloud() -> str:
        calls.append(1)
        return "id-token\n"

    assert resolve_token(Auth(kind="gcloud"), {}, fake_gcloud) == "id-token"
    assert calls == [1]
    assert resolve_token(Auth(kind="env", variable="K"), {"K": " key "}) == "key"
    with pytest.raises(ValueError, match="K is not set"):
        resolve_token(Auth(kind="env", variable="K"), {})
    assert resolve_token(Auth(), {}) is None


def test_serve_spec() -> None:
    target = parse_serve("ow:WHISPER_ENGINE=openai-whisper,WHISPER_BEAM_SIZE=1")
    assert target.served and target.env == {"WHISPER_ENGINE": "openai-whisper", "WHISPER_BEAM_SIZE": "1"}
    with pytest.raises(ValueError):
        parse_serve("x:PATH=/tmp")  # only the service's own settings


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no target
        ["--target", "a=http://127.0.0.1:1", "--requests", "0"],
        ["--target", "a=http://127.0.0.1:1", "--concurrency", "1000"],
        ["--target", "a=http://127.0.0.1:1", "--target", "a=http://127.0.0.1:2"],
        ["--target", "a=http://127.0.0.1:1", "--auth", "b=none"],
        ["--target", "a=http://127.0.0.1:1", "--audio", "/nonexistent.wav"],
    ],
)
def test_argument_errors_exit_2(argv: list[str], tone: Path) -> None:
    if "--audio" not in argv:
        argv = [*argv, "--audio", str(tone)]
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv, {})
    assert exit_info.value.code == 2


def test_the_documented_interface(tone: Path, tmp_path: Path) -> None:
    args, targets = parse_args(
        [
            "--target",
            "local=http://127.0.0.1:8080",
            "--audio",
            str(tone.parent),
            "--requests",
            "4",
            "--concurrency",
            "2",
            "--out",
            str(tmp_path / "o"),
        ],
        {},
    )
    assert [t.name for t in targets] == ["local"]
    assert args.options.requests == 4 and args.options.concurrency == 2
    assert [c.path for c in args.clips] == [tone]


# ---- audio --------------------------------------------------------------------------------------


def test_clip_slices_and_folders(tone: Path) -> None:
    clip = Clip.parse(f"{tone}@0.5-1.5")
    assert clip.sliced and clip.label == "tone.wav@0.5-1.5"
    assert clip_seconds(clip) == pytest.approx(1.0)
    name, data = clip_upload(clip)
    assert name.endswith(".wav") and data[:4] == b"RIFF"
    assert clip_seconds(Clip(tone)) == pytest.approx(2.0)
    assert find_clips([str(tone.parent)]) == [Clip(tone)]
    with pytest.raises(ValueError, match="end after"):
        Clip.parse(f"{tone}@2-1")


def test_word_error_rate_ignores_case_punctuation_and_spelling() -> None:
    assert word_error_rate("Ask not, what your country can do!", "ask not what your country can do") == 0
    assert word_error_rate("red green blue black", "red green black") == pytest.approx(0.25)
    assert word_error_rate("red green", "") == 1


# ---- real runs ------------------------------------------------------------------------------------


@pytest.fixture
def loopback_server(serve_app: Callable[[FastAPI], str]) -> tuple[str, list[str]]:
    """A stand-in OpenAI-compatible server: every third request fails; the rest report Server-Timing."""
    app = FastAPI()
    seen: list[str] = []

    @app.post("/v1/audio/transcriptions")
    async def transcribe(request: Request) -> Response:
        form = await request.form()
        seen.append(str(form["response_format"]))
        if len(seen) % 3 == 0:
            return Response('{"error": {"message": "busy"}}', status_code=429)
        await asyncio.sleep(0.02)
        return Response(
            json.dumps({"text": "And so, my fellow Americans."}),
            media_type="application/json",
            headers={
                "Server-Timing": "read;dur=1, decode;dur=2, queue;dur=0, inference;dur=15, format;dur=0.5, "
                "total;dur=19"
            },
        )

    return serve_app(app), seen


def test_run_against_a_loopback_server_writes_the_report(
    loopback_server: tuple[str, list[str]], tone: Path, tmp_path: Path
) -> None:
    url, seen = loopback_server
    out = tmp_path / "out"
    code = main(
        [
            "--target",
            f"local={url}",
            "--audio",
            str(tone),
            "--requests",
            "6",
            "--concurrency",
            "2",
            "--warmup",
            "0",
            "--out",
            str(out),
            "--no-progress",
        ],
        {},
    )
    assert code == 1  # errors happened, and the exit status says so
    assert len(seen) == 6
    result = json.loads((out / "results.json").read_text())
    target = result["targets"][0]
    assert target["requests"] == 6 and target["errors"] == 2
    assert target["audio_seconds"] == pytest.approx(4 * 2.0)
    assert target["server_steps_mean_ms"]["inference"] == pytest.approx(15)
    assert target["latency"]["count"] == 4 and target["latency"]["min"] >= 0.02
    assert target["cost"]["break_even_utilisation"] > 0
    assert result["prices"]["as_of"] == "2026-08"
    assert "| local | 6 | 2 | 2 |" in (out / "results.md").read_text()
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_service_run(tmp_path: Path) -> None:
    """The real service (bundled tiny.en) started by --serve, measured, stopped.

    Speech, not the tone: the gate sets a tone to silence and the server then runs no inference.
    """
    out = tmp_path / "real"
    code = main(
        [
            "--serve",
            "local:WHISPER_BEAM_SIZE=1",
            "--audio",
            str(FIXTURES / "short.wav"),
            "--requests",
            "2",
            "--concurrency",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ],
        {},
    )
    result = json.loads((out / "results.json").read_text())
    target = result["targets"][0]
    assert code == 0, target["error_samples"]
    assert target["errors"] == 0 and target["seconds_to_ready"] > 0
    assert target["server_steps_mean_ms"]["inference"] > 0
    assert target["api_overhead"] is not None
