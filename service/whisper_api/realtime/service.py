"""What every realtime session of an app shares, made once (`app.state.realtime`): the limits read
from settings, the client secrets, the instance's session places and the metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from whisper_api.auth import ApiKeyAuth
from whisper_api.engines.base import Engine
from whisper_api.languages import LANGUAGE_CODES
from whisper_api.realtime.connection import ConnectionLimits
from whisper_api.realtime.inference import SessionSlots
from whisper_api.realtime.metrics import RealtimeMetrics
from whisper_api.realtime.secrets import ClientSecrets
from whisper_api.realtime.session import ServedModel, SessionLimits
from whisper_api.scheduler import Scheduler
from whisper_api.served_models import is_served, served_model_names
from whisper_api.settings import Settings


class RealtimeService:
    def __init__(self, settings: Settings, state: Any, auth: ApiKeyAuth, registry: CollectorRegistry) -> None:
        self.settings = settings
        self._state = state  # the app's state: the engine and the scheduler, once the lifespan made them
        self.auth = auth
        self.secrets = ClientSecrets.from_api_key(auth.derived_key(b"realtime client secrets"))
        auth.accepts_secret = self.secrets.verify  # a page's uploads carry its client secret
        self.slots = SessionSlots(settings.realtime_max_sessions)
        self.metrics = RealtimeMetrics(registry)
        self.metrics.active.set_function(lambda: self.slots.active)
        self.metrics.capacity.set(settings.realtime_max_sessions)
        self.session_limits = SessionLimits(
            max_buffer_s=settings.realtime_max_buffer_s,
            max_append_bytes=settings.realtime_max_append_bytes,
            max_utterance_s=settings.realtime_max_utterance_s,
            delta_interval_s=settings.realtime_delta_interval_s,
        )
        self.connection_limits = ConnectionLimits(
            idle_timeout_s=settings.realtime_idle_timeout_s,
            max_session_s=settings.realtime_max_session_s,
            burst_s=settings.realtime_burst_s,
        )

    @property
    def engine(self) -> Engine:
        return self._state.engine

    @property
    def scheduler(self) -> Scheduler:
        return self._state.scheduler

    @property
    def ready(self) -> bool:
        return self._state.engine is not None and self._state.readiness.ready

    def served(self) -> ServedModel:
        """What session.update is checked against, read when a session starts."""
        engine = self._state.engine
        names = served_model_names(engine, self.settings)
        return ServedModel(
            names=tuple(names),
            serves=lambda model: is_served(model, names),
            languages=LANGUAGE_CODES,
            multilingual=bool(getattr(engine, "multilingual", False)),
            max_prompt_chars=self.settings.max_prompt_chars,
        )
