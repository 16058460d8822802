"""One Realtime transcription session, independent of the web framework.

The transport hands it each client message (`handle`) and sends what it emits; `run` is the
session's transcription loop. Client events are handled in order; every bad one is answered with
an `error` event and the session goes on. Audio is decoded to 16 kHz as it arrives; with server
VAD each utterance becomes an item when its speech stops (or when the client commits).

Transcription goes through a `Transcriber` (the scheduler's inference slots in the service), one
pass at a time per session, so a session's events stay in order: committed items are finalised in
the order they were committed (`delta`s, then `completed`, per `item_id`), and while an utterance is
still being spoken it is re-transcribed after each `delta_interval_s` of new audio, so that captions
appear as people talk (`captions.Captions` sends only words two passes agree on). Once the speaker
has paused for `early_final_after_ms`, the final pass is run over the utterance so far, before server
VAD has heard the whole `silence_duration_ms` that ends the turn: when the turn does stop in that same
pause, that pass is the item's transcript (the audio it did not see is the rest of the silence), so
`completed` follows `speech_stopped` at once instead of one final pass later. Interim and early
passes are the first thing dropped under load: the transcriber may decline them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import numpy as np
from pydantic import TypeAdapter, ValidationError

from whisper_api.engines.base import SAMPLE_RATE
from whisper_api.realtime import events as ev
from whisper_api.realtime.audio import InputAudioError, InputDecoder, decode_base64
from whisper_api.realtime.captions import Captions
from whisper_api.realtime.vad import StreamingVad, Turn
from whisper_api.schemas import TranscribeOptions, Transcript

MIN_COMMIT_MS = 100  # OpenAI's: a shorter buffer is refused (input_audio_buffer_commit_empty)
_CLIENT_EVENT = TypeAdapter(ev.ClientEvent)


class Transcriber(Protocol):
    async def __call__(
        self, audio: np.ndarray, options: TranscribeOptions, *, interim: bool
    ) -> Transcript | None:
        """16 kHz int16 audio → its transcript. `interim` passes (captions, early finals) may be
        declined under load: None."""
        ...


@dataclass(frozen=True)
class SessionLimits:
    max_buffer_s: float = 120.0  # uncommitted audio held (manual commits); beyond, appends are refused
    max_append_bytes: int = 1 << 20  # one append's decoded audio
    max_utterance_s: float = 30.0  # server VAD commits a longer utterance in pieces (one Whisper window)
    delta_interval_s: float = 1.0  # new audio between interim passes over an utterance being spoken
    early_final_after_ms: int = 200  # a pause this long starts the final pass (server VAD)


@dataclass(frozen=True)
class ServedModel:
    """What a session.update is checked against."""

    names: tuple[str, ...]  # the served model first, then its OpenAI aliases
    serves: Callable[[str], bool]
    languages: frozenset[str]
    multilingual: bool
    max_prompt_chars: int = 4000


@dataclass(eq=False)
class _Item:
    item_id: str
    captions: Captions = field(default_factory=Captions)
    audio: np.ndarray | None = None  # set once committed
    pause_from: int | None = None  # where the silence that made server VAD commit it began
    early_pause_from: int | None = None  # the pause the early final pass was run in
    early: Transcript | None = None  # that pass's transcript (None if declined or not run)
    caption_from: int = 0  # where in the buffer the caption passes start (past 30 s: manual commits)
    last_pass: tuple[int, Transcript] | None = None  # the last caption pass: (its start, transcript)


class SessionError(Exception):
    """A client event refused; becomes an `error` event."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class RealtimeSession:
    def __init__(
        self,
        transcriber: Transcriber,
        served: ServedModel,
        emit: Callable[[ev.ServerEvent], None],
        limits: SessionLimits | None = None,
        *,
        expires_at: int | None = None,
    ) -> None:
        self.id = ev.new_id("sess")
        self.transcriber = transcriber
        self.served = served
        self.emit = emit
        self.limits = limits or SessionLimits()
        self.expires_at = expires_at
        self.configured = False  # audio is refused until the first valid session.update
        self.audio_received_s = 0.0
        self.format = ev.AudioFormat()
        self.transcription = ev.TranscriptionConfig(model=served.names[0], language=None, prompt="")
        self.turn_detection: ev.ServerVad | None = ev.ServerVad(type="server_vad")
        self._decoder = InputDecoder(self.format)
        self._vad: StreamingVad | None = None
        self._chunks: list[np.ndarray] = []
        self._buffered = 0  # samples in the buffer
        self._buffer_start = 0  # session sample offset of the buffer's first sample
        self._open: _Item | None = None  # the utterance being filled, before its commit
        self._interim_at = 0  # buffered samples at the last interim pass
        self._last_item_id: str | None = None
        self._finals: deque[_Item] = deque()
        self._wake = anyio.Event()
        self._reset_vad()

    # --- what the session shows -------------------------------------------------------------

    def shown(self) -> dict[str, Any]:
        """The effective configuration, as session.created / session.updated show it."""
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": self.id,
            "expires_at": self.expires_at,
            "include": None,
            "audio": {
                "input": {
                    "format": self.format.shown().model_dump(exclude_none=True),
                    "transcription": self.transcription.model_dump(),
                    "turn_detection": None
                    if self.turn_detection is None
                    else self.turn_detection.model_dump(exclude_none=True),
                    "noise_reduction": None,
                }
            },
        }

    def created(self) -> ev.SessionEvent:
        return ev.SessionEvent(type="session.created", session=self.shown())

    # --- client events ----------------------------------------------------------------------

    async def handle(self, message: str | bytes) -> None:
        """One client message; a bad one is answered with an `error` event."""
        event_id: str | None = None
        try:
            data = _parse(message)
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            event = _validate(_known(data))
            if isinstance(event, ev.SessionUpdate):
                self.configure(event.session)
                self.emit(ev.SessionEvent(type="session.updated", session=self.shown()))
            elif isinstance(event, ev.AudioAppend):
                await self._append(event.audio)
            elif isinstance(event, ev.AudioCommit):
                self._commit(manual=True)
            else:
                self._clear()
        except SessionError as error:
            self.emit(ev.error_event(error.message, code=error.code, param=error.param, event_id=event_id))

    def configure(self, raw: dict[str, Any]) -> None:
        """Apply a `session` object (only the fields present change), or raise SessionError and
        change nothing."""
        if raw.get("type") != "transcription":
            raise SessionError(
                "This server serves transcription sessions only: send session.type 'transcription' "
                "(connect with ?intent=transcription).",
                "invalid_value",
                "session.type",
            )
        try:
            update = ev.TranscriptionSession.model_validate(raw)
        except ValidationError as error:
            raise _invalid(error, "session") from None
        if update.include:
            raise SessionError(
                "`include` is not available: the engines expose no token log-probabilities.",
                "unsupported_parameter",
                "session.include",
            )
        audio_input = update.audio.input if update.audio and update.audio.input else ev.AudioInput()
        present = audio_input.model_fields_set
        if audio_input.noise_reduction is not None:
            raise SessionError(
                "Noise reduction is not available; set `noise_reduction` to null or leave it out.",
                "unsupported_parameter",
                "session.audio.input.noise_reduction",
            )
        transcription = self.transcription
        if audio_input.transcription is not None:
            given = audio_input.transcription.model_dump(exclude_unset=True)
            transcription = self.transcription.model_copy(update=given)
            self._check_transcription(transcription)
        # Everything is checked before anything changes: a refused update leaves the session as it was.
        self.transcription = transcription
        if "format" in present and audio_input.format is not None and audio_input.format != self.format:
            self.format = audio_input.format.shown()
            self._decoder = InputDecoder(self.format)
        if "turn_detection" in present:
            self.turn_detection = audio_input.turn_detection
            self._reset_vad()
        self.configured = True

    def _check_transcription(self, transcription: ev.TranscriptionConfig) -> None:
        model = transcription.model
        if model is not None and not self.served.serves(model):
            raise SessionError(
                f"The model '{model}' is not served here; use one of: {', '.join(self.served.names)}.",
                "model_not_found",
                "session.audio.input.transcription.model",
            )
        language = (transcription.language or "").strip().lower()
        if language and language not in self.served.languages:
            raise SessionError(
                f"Unknown language '{transcription.language}': use an ISO-639-1 code Whisper supports.",
                "unsupported_language",
                "session.audio.input.transcription.language",
            )
        if language and language != "en" and not self.served.multilingual:
            raise SessionError(
                f"The served model is English-only and cannot transcribe language '{language}'.",
                "unsupported_language",
                "session.audio.input.transcription.language",
            )

    async def _append(self, text: str) -> None:
        if not self.configured:
            raise SessionError(
                "Configure the session first: send session.update with session.type 'transcription' "
                "before any audio.",
                "session_not_configured",
            )
        if len(text) > (self.limits.max_append_bytes * 4 + 2) // 3 + 4:
            raise _too_large(self.limits.max_append_bytes)
        try:
            payload = decode_base64(text)
            if len(payload) > self.limits.max_append_bytes:
                raise _too_large(self.limits.max_append_bytes)
            samples = self._decoder.decode(payload)
        except InputAudioError as error:
            raise SessionError(str(error), "invalid_value", "audio") from None
        if self._vad is None and self._buffered + samples.size > self.limits.max_buffer_s * SAMPLE_RATE:
            raise SessionError(
                f"The input audio buffer is full ({self.limits.max_buffer_s:g} s uncommitted): commit or "
                "clear it; this append was dropped.",
                "input_audio_buffer_full",
                "audio",
            )
        self.audio_received_s += len(payload) / self._decoder.bytes_per_second()
        start = self._buffer_start + self._buffered
        self._chunks.append(samples)
        self._buffered += samples.size
        if self._vad is not None:
            turns = await anyio.to_thread.run_sync(self._vad.feed, samples)
            for turn in turns:
                self._on_turn(turn)
            self._split_long_utterance()
            if self._open is None:
                self._keep_prefix(start + samples.size)
        elif self._open is None and self._buffered:
            self._open = _Item(ev.new_id("item"))
        self._wake.set()

    def _on_turn(self, turn: Turn) -> None:
        assert self.turn_detection is not None
        if turn.kind == "started":
            padding = self.turn_detection.prefix_padding_ms * SAMPLE_RATE // 1000
            self._drop_before(max(turn.sample - padding, self._buffer_start))
            self._open = _Item(ev.new_id("item"))
            self._interim_at = 0
            self.emit(
                ev.SpeechStarted(
                    audio_start_ms=self._buffer_start * 1000 // SAMPLE_RATE, item_id=self._open.item_id
                )
            )
        elif self._open is not None:
            self.emit(
                ev.SpeechStopped(audio_end_ms=turn.sample * 1000 // SAMPLE_RATE, item_id=self._open.item_id)
            )
            self._open.pause_from = turn.pause_from
            self._commit_until(turn.sample)

    def _split_long_utterance(self) -> None:
        """Speech longer than one Whisper window is committed in pieces, each its own item."""
        if self._open is None or self._buffered < self.limits.max_utterance_s * SAMPLE_RATE:
            return
        end = self._buffer_start + self._buffered
        self.emit(ev.SpeechStopped(audio_end_ms=end * 1000 // SAMPLE_RATE, item_id=self._open.item_id))
        self._commit_until(end)
        self._open = _Item(ev.new_id("item"))
        self._interim_at = 0
        self.emit(ev.SpeechStarted(audio_start_ms=end * 1000 // SAMPLE_RATE, item_id=self._open.item_id))

    def _commit(self, *, manual: bool) -> None:
        if self._buffered * 1000 < MIN_COMMIT_MS * SAMPLE_RATE:
            raise SessionError(
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {self._buffered * 1000 / SAMPLE_RATE:.2f}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        self._commit_until(self._buffer_start + self._buffered)
        if manual and self._vad is not None:
            self._vad.reset()

    def _commit_until(self, end: int) -> None:
        item = self._open or _Item(ev.new_id("item"))
        self._open = None
        audio = self._take(end)
        if audio.size == 0:
            return
        item.audio = audio
        self.emit(ev.Committed(item_id=item.item_id, previous_item_id=self._last_item_id))
        self._last_item_id = item.item_id
        self._finals.append(item)
        self._interim_at = 0
        self._wake.set()

    def _clear(self) -> None:
        self._chunks, self._buffer_start = [], self._buffer_start + self._buffered
        self._buffered = 0
        self._open = None
        if self._vad is not None:
            self._vad.reset()
        self.emit(ev.Cleared())

    # --- the buffer -------------------------------------------------------------------------

    def _buffer(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)

    def _take(self, end: int) -> np.ndarray:
        """The buffer up to session sample `end`, removed from it."""
        buffer = self._buffer()
        cut = min(max(end - self._buffer_start, 0), buffer.size)
        taken, rest = buffer[:cut], buffer[cut:]
        self._chunks = [rest] if rest.size else []
        self._buffer_start += cut
        self._buffered = rest.size
        return taken

    def _drop_before(self, sample: int) -> None:
        self._take(sample)

    def _keep_prefix(self, end: int) -> None:
        """Outside speech, only the prefix padding's worth is kept (for the next utterance's start)."""
        assert self.turn_detection is not None
        padding = self.turn_detection.prefix_padding_ms * SAMPLE_RATE // 1000
        self._drop_before(end - padding)

    def _reset_vad(self) -> None:
        vad = self.turn_detection
        start = self._buffer_start + self._buffered  # the VAD counts samples as the session does
        self._vad = None if vad is None else StreamingVad(vad.threshold, vad.silence_duration_ms, start=start)
        if self._vad is not None:
            # Whatever was buffered for a manual commit is now outside any utterance.
            self._open = None

    # --- transcription ----------------------------------------------------------------------

    def _options(self) -> TranscribeOptions:
        prompt = self.transcription.prompt or None
        if prompt:
            prompt = prompt[-self.served.max_prompt_chars :]
        return TranscribeOptions(language=(self.transcription.language or "").lower() or None, prompt=prompt)

    def _interim_due(self) -> bool:
        step = self.limits.delta_interval_s * SAMPLE_RATE
        if self._vad is not None and self._vad.pausing:
            return False  # speech may be ending: keep the slot free for the final pass
        return self._open is not None and self._buffered - self._interim_at >= step

    def _early_due(self) -> bool:
        vad, item = self._vad, self._open
        if vad is None or item is None or vad.pause_from is None or not vad.speaking:
            return False
        paused = self._buffer_start + self._buffered - vad.pause_from
        return (
            item.early_pause_from != vad.pause_from
            and paused * 1000 >= self.limits.early_final_after_ms * SAMPLE_RATE
        )

    def _due(self) -> bool:
        return bool(self._finals) or self._early_due() or self._interim_due()

    async def run(self) -> None:
        """The transcription loop: finals first, in commit order; then early and interim passes."""
        while True:
            if self._finals:
                await self._finalise(self._finals.popleft())
            elif self._early_due():
                await self._early_final()
            elif self._interim_due():
                await self._interim()
            else:
                self._wake = anyio.Event()
                if not self._due():
                    await self._wake.wait()

    async def _early_final(self) -> None:
        item, vad = self._open, self._vad
        assert item is not None and vad is not None
        item.early_pause_from = vad.pause_from
        audio = self._buffer()[-int(self.limits.max_utterance_s * SAMPLE_RATE) :]
        try:
            item.early = await self.transcriber(audio, self._options(), interim=True)
        except Exception:  # the final pass runs instead, and reports a failure on the item
            item.early = None

    async def _interim(self) -> None:
        item = self._open
        assert item is not None
        self._interim_at = self._buffered
        buffer = self._buffer()
        window = int(self.limits.max_utterance_s * SAMPLE_RATE)
        if buffer.size - item.caption_from > window:
            self._advance_captions(item, buffer.size - window)
        start = item.caption_from
        # Greedy, one temperature: a caption pass costs a fraction of the final one (beam search).
        options = self._options().model_copy(update={"beam_size": 1, "temperature": 0.0})
        transcript = await self.transcriber(buffer[start:], options, interim=True)
        if transcript is None:
            return
        item.last_pass = (start, transcript)
        self._send_delta(item, item.captions.interim(transcript.text))

    def _send_delta(self, item: _Item, delta: str | None) -> None:
        if delta:
            self.emit(ev.TranscriptionDelta(item_id=item.item_id, delta=delta))

    def _advance_captions(self, item: _Item, needed: int) -> None:
        """Start the caption window at or after buffer sample `needed`: past the last pass's first
        segments (never its last, which may end mid-word); where no segment ends late enough, the
        window jumps there, and the words it skips are left to the final pass."""
        finished: list[str] = []
        end = item.caption_from
        if item.last_pass is not None and item.last_pass[0] == item.caption_from:
            for segment in item.last_pass[1].segments[:-1]:
                finished.append(segment.text)
                end = item.caption_from + int(segment.end * SAMPLE_RATE)
                if end >= needed:
                    break
        item.caption_from = max(end, needed)
        self._send_delta(item, item.captions.advance(" ".join(finished)))

    async def _finalise(self, item: _Item) -> None:
        assert item.audio is not None
        seconds = item.audio.size / SAMPLE_RATE
        early = (
            item.early if item.pause_from is not None and item.early_pause_from == item.pause_from else None
        )
        try:
            transcript = early or await self.transcriber(item.audio, self._options(), interim=False)
        except Exception as error:  # reported on the item; the session goes on
            self.emit(
                ev.TranscriptionFailed(
                    item_id=item.item_id,
                    error=ev.ErrorDetail(
                        type="server_error",
                        code=getattr(error, "code", "transcription_failed"),
                        message=getattr(error, "message", None) or "The transcription failed.",
                    ),
                )
            )
            return
        assert transcript is not None
        delta, text = item.captions.final(transcript.text)
        self._send_delta(item, delta)
        self.emit(
            ev.TranscriptionCompleted(
                item_id=item.item_id, transcript=text, usage=ev.DurationUsage(seconds=round(seconds, 3))
            )
        )


def _parse(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise SessionError(
            "Binary frames are not accepted: send each client event as JSON text.", "invalid_json"
        )
    try:
        data = json.loads(message)
    except ValueError:
        raise SessionError(
            "The message is not valid JSON: send each client event as a JSON object.", "invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise SessionError("A client event is a JSON object with a `type`.", "invalid_json")
    return data


def _known(data: dict[str, Any]) -> dict[str, Any]:
    kind = data.get("type")
    if kind not in ev.CLIENT_EVENT_TYPES:
        raise SessionError(
            f"Invalid value: {json.dumps(kind)}. A transcription session accepts: "
            f"{', '.join(ev.CLIENT_EVENT_TYPES)}.",
            "invalid_value",
            "type",
        )
    return data


def _validate(data: dict[str, Any]) -> Any:
    try:
        return _CLIENT_EVENT.validate_python(data)
    except ValidationError as error:
        raise _invalid(error, None, skip=1) from None


def _invalid(error: ValidationError, root: str | None, skip: int = 0) -> SessionError:
    first = error.errors()[0]
    parts = [str(part) for part in first["loc"][skip:]]
    param = ".".join(([root] if root else []) + parts) or root
    message = f"Invalid value for '{param}': {first['msg']}." if param else f"{first['msg']}."
    code = "unknown_parameter" if first["type"] == "extra_forbidden" else "invalid_value"
    return SessionError(message, code, param)


def _too_large(limit: int) -> SessionError:
    return SessionError(
        f"An append may hold at most {limit} bytes of audio; send smaller appends.",
        "audio_too_large",
        "audio",
    )
