"""Live transcription in OpenAI's Realtime shape, independent of the web framework.

- `events`: the client and server events (the `openai` SDK's `types/realtime` are the reference).
- `audio`: base64 appends in `audio/pcm` (24 kHz), `audio/pcmu` or `audio/pcma` → 16 kHz samples.
- `vad`: faster-whisper's Silero VAD scored as audio arrives; OpenAI's `server_vad` turns.
- `captions`: append-only deltas from passes over an utterance still being spoken.
- `session`: one session's state machine and its transcription loop.
- `connection`: a session on its connection: one writer, pace, idle, length and stalled-reader guards.
- `inference`: passes on the scheduler's inference slots; the instance's bounded session places.
- `secrets`: short-lived client secrets for browsers. `metrics`: the Prometheus side.
- `service`: what an app's sessions share. `routes/realtime.py` adapts Starlette's WebSocket to it.
"""
