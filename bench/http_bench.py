"""Send N transcription requests to each target, at a bounded concurrency, and summarise them."""

import asyncio
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from bench.audio import Clip, clip_seconds, clip_upload, word_error_rate
from bench.cost import CostEstimate, InstanceShape, PriceTable, estimate_cost
from bench.server_timing import mean_steps, parse_server_timing
from bench.stats import LatencySummary
from whisper_api.contract import TRANSCRIPTIONS_PATH

OPENAI_HOST = "api.openai.com"
MAX_REQUESTS = 10_000
MAX_CONCURRENCY = 64
AuthKind = Literal["none", "gcloud", "env"]


class Auth(BaseModel):
    """How a target's requests are authorised: nothing, a gcloud identity token, or a key from env."""

    kind: AuthKind = "none"
    variable: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "Auth":
        if spec in ("none", "gcloud"):
            return cls(kind=spec)
        if spec.startswith("env:") and spec[4:]:
            return cls(kind="env", variable=spec[4:])
        raise ValueError(f"auth must be none, gcloud or env:VARIABLE, got {spec!r}")


class Target(BaseModel):
    name: str
    url: str
    auth: Auth = Auth()
    served: bool = Field(False, description="Started by this tool (--serve) on a free loopback port.")
    env: dict[str, str] = Field(default_factory=dict, description="For --serve: WHISPER_* variables.")

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith(TRANSCRIPTIONS_PATH) else base + TRANSCRIPTIONS_PATH

    @property
    def is_openai(self) -> bool:
        return urlsplit(self.url).hostname == OPENAI_HOST


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_auth(url: str, environ: Mapping[str, str]) -> Auth:
    """OpenAI: OPENAI_API_KEY; Cloud Run (*.run.app): gcloud; elsewhere WHISPER_API_KEY if set."""
    host = urlsplit(url).hostname or ""
    if host == OPENAI_HOST:
        return Auth(kind="env", variable="OPENAI_API_KEY")
    if host.endswith(".run.app"):
        return Auth(kind="gcloud")
    if environ.get("WHISPER_API_KEY"):
        return Auth(kind="env", variable="WHISPER_API_KEY")
    return Auth()


def parse_target(spec: str, auth_overrides: Mapping[str, str], environ: Mapping[str, str]) -> Target:
    """`NAME=URL`: the URL must be explicit http(s); credentials never travel over plain http
    to a host other than loopback."""
    name, sep, url = spec.partition("=")
    if not sep or not name or not url:
        raise ValueError(f"--target must be NAME=URL, got {spec!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--target {name}: {url!r} is not an http(s) URL")
    auth = Auth.parse(auth_overrides[name]) if name in auth_overrides else default_auth(url, environ)
    if auth.kind != "none" and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"--target {name}: refusing to send credentials over plain http to {parts.hostname}")
    return Target(name=name, url=url, auth=auth)


def parse_serve(spec: str) -> Target:
    """`NAME[:VAR=VALUE,...]`: a service this tool starts on a free loopback port with those variables."""
    name, _, assignments = spec.partition(":")
    if not name:
        raise ValueError(f"--serve must be NAME[:VAR=VALUE,...], got {spec!r}")
    env: dict[str, str] = {}
    for assignment in filter(None, assignments.split(",")):
        key, sep, value = assignment.partition("=")
        if not sep or not key.startswith("WHISPER_"):
            raise ValueError(f"--serve {name}: {assignment!r} is not WHISPER_VARIABLE=VALUE")
        env[key] = value
    return Target(name=name, url="http://127.0.0.1", served=True, env=env)


def resolve_token(
    auth: Auth, environ: Mapping[str, str], run: Callable[..., str] | None = None
) -> str | None:
    """The bearer token, fetched once per target (gcloud is run once, never per request)."""
    if auth.kind == "none":
        return None
    if auth.kind == "env":
        assert auth.variable is not None
        token = environ.get(auth.variable, "").strip()
        if not token:
            raise ValueError(f"{auth.variable} is not set")
        return token
    run = run or _gcloud_identity_token
    token = run().strip()
    if not token:
        raise ValueError("gcloud printed no identity token")
    return token


def _gcloud_identity_token() -> str:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise ValueError("gcloud is not installed: it is needed for a Cloud Run identity token")
    return subprocess.run(
        [gcloud, "auth", "print-identity-token"], check=True, capture_output=True, text=True, timeout=60
    ).stdout


class RequestRecord(BaseModel):
    index: int
    clip: str
    audio_seconds: float
    started_s: float = Field(description="Seconds after the run started.")
    latency_s: float
    status: int | None
    error: str | None = None
    server_timing_ms: dict[str, float] = Field(default_factory=dict)
    text: str | None = None


class Options(BaseModel):
    requests: int = Field(ge=1, le=MAX_REQUESTS)
    concurrency: int = Field(ge=1, le=MAX_CONCURRENCY)
    warmup: int = Field(1, ge=0, le=100)
    model: str = "whisper-1"
    response_format: str = "json"
    language: str | None = None
    timeout_s: float = Field(300, gt=0)


class TargetResult(BaseModel):
    name: str
    url: str
    auth: AuthKind
    requests: int
    concurrency: int
    errors: int
    error_samples: list[str]
    wall_seconds: float
    audio_seconds: float = Field(description="Audio in successful requests.")
    audio_seconds_per_wall_second: float
    latency: LatencySummary | None
    server_steps_mean_ms: dict[str, float]
    api_overhead: float | None = Field(
        description="Mean end-to-end latency over mean server inference time, minus 1."
    )
    wer: dict[str, float] = Field(
        default_factory=dict, description="Per clip with a reference (first reply)."
    )
    cost: CostEstimate | None = None
    seconds_to_ready: float | None = Field(None, description="For --serve targets: spawn to /readyz.")
    records: list[RequestRecord]


def _form(options: Options) -> dict[str, str]:
    form = {"model": options.model, "response_format": options.response_format}
    if options.language:
        form["language"] = options.language
    return form


def _text_of(response: httpx.Response, response_format: str) -> str:
    if response_format in ("json", "verbose_json"):
        return str(response.json().get("text", ""))
    return response.text


async def _one(
    client: httpx.AsyncClient,
    target: Target,
    clip: Clip,
    upload: tuple[str, bytes],
    options: Options,
    index: int,
    origin: float,
    audio_seconds: float,
) -> RequestRecord:
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    text: str | None = None
    timing: dict[str, float] = {}
    try:
        response = await client.post(target.endpoint, data=_form(options), files={"file": upload})
        status = response.status_code
        timing = parse_server_timing(response.headers.get("server-timing"))
        if response.is_success:
            text = _text_of(response, options.response_format)
        else:
            error = f"HTTP {status}: {response.text[:200]}"
    except (httpx.HTTPError, ValueError) as failure:
        error = f"{type(failure).__name__}: {failure}"
    return RequestRecord(
        index=index,
        clip=clip.label,
        audio_seconds=audio_seconds,
        started_s=started - origin,
        latency_s=time.perf_counter() - started,
        status=status,
        error=error,
        server_timing_ms=timing,
        text=text,
    )


async def run_target(
    target: Target,
    clips: list[Clip],
    options: Options,
    token: str | None,
    shape: InstanceShape,
    prices: PriceTable,
    progress: bool = True,
) -> TargetResult:
    """Warm up, then send `requests` requests (clips in turn), at most `concurrency` in flight."""
    from tqdm import tqdm

    uploads = {clip: clip_upload(clip) for clip in clips}
    seconds = {clip: clip_seconds(clip) for clip in clips}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=options.concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=options.timeout_s, limits=limits) as client:
        for index in range(options.warmup):
            clip = clips[index % len(clips)]
            await _one(client, target, clip, uploads[clip], options, -1, time.perf_counter(), seconds[clip])

        gate = asyncio.Semaphore(options.concurrency)
        bar = tqdm(total=options.requests, desc=target.name, unit="req", disable=not progress)
        origin = time.perf_counter()

        async def bounded(index: int) -> RequestRecord:
            clip = clips[index % len(clips)]
            async with gate:
                record = await _one(
                    client, target, clip, uploads[clip], options, index, origin, seconds[clip]
                )
            bar.update()
            return record

        records = await asyncio.gather(*(bounded(i) for i in range(options.requests)))
        wall = time.perf_counter() - origin
        bar.close()
    return summarise(target, records, wall, options, shape, prices)


def summarise(
    target: Target,
    records: list[RequestRecord],
    wall_seconds: float,
    options: Options,
    shape: InstanceShape,
    prices: PriceTable,
) -> TargetResult:
    ok = [r for r in records if r.error is None]
    audio = sum(r.audio_seconds for r in ok)
    steps = mean_steps(r.server_timing_ms for r in ok)
    latency = LatencySummary.of([r.latency_s for r in ok])
    overhead = None
    if latency and steps.get("inference"):
        overhead = latency.mean * 1000 / steps["inference"] - 1
    wer: dict[str, float] = {}
    for record in ok:
        clip = Clip.parse(record.clip)  # labels name the file: the reference key
        if record.clip not in wer and clip.reference and record.text is not None:
            wer[record.clip] = word_error_rate(clip.reference, record.text)
    cost = None
    if not target.is_openai and wall_seconds > 0 and audio > 0:
        cost = estimate_cost(audio, wall_seconds, shape, prices)
    return TargetResult(
        name=target.name,
        url=target.url,
        auth=target.auth.kind,
        requests=len(records),
        concurrency=options.concurrency,
        errors=len(records) - len(ok),
        error_samples=sorted({r.error for r in records if r.error})[:5],
        wall_seconds=wall_seconds,
        audio_seconds=audio,
        audio_seconds_per_wall_second=audio / wall_seconds if wall_seconds > 0 else 0.0,
        latency=latency,
        server_steps_mean_ms=steps,
        api_overhead=overhead,
        wer=wer,
        cost=cost,
        records=sorted(records, key=lambda r: r.index),
    )


def environ() -> Mapping[str, str]:
    return os.environ
