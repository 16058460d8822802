"""Facts that the service and the infrastructure must agree on, defined once.

This module has no dependencies so that the Pulumi program can import it too: the port, the
probe paths and the names of the environment variables that `infra/` sets on Cloud Run are
read from here, never copied.
"""

from typing import Final

PORT: Final = 8080
HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"

# The OpenAI-shaped API: routes, telemetry, auth, infra's alerts, bench and the load test read these.
API_PREFIX: Final = "/v1"
AUDIO_PATH_PREFIX: Final = "/v1/audio/"
TRANSCRIPTIONS_PATH: Final = "/v1/audio/transcriptions"
TRANSLATIONS_PATH: Final = "/v1/audio/translations"
MODELS_PATH: Final = "/v1/models"
MODEL_PATH: Final = "/v1/models/{model}"
# Realtime transcription: a WebSocket (`?intent=transcription`), and the short-lived secrets browsers use.
REALTIME_PATH: Final = "/v1/realtime"
CLIENT_SECRETS_PATH: Final = "/v1/realtime/client_secrets"
DEMO_PATH: Final = "/demo"

ENV_PREFIX: Final = "WHISPER_"

# Environment variables that the infrastructure sets on the container (see settings.Settings).
ENV_ENGINE: Final = "WHISPER_ENGINE"
ENV_MODEL: Final = "WHISPER_MODEL"
ENV_DEVICE: Final = "WHISPER_DEVICE"
ENV_COMPUTE_TYPE: Final = "WHISPER_COMPUTE_TYPE"
# Requests one instance admits at once (inferring + waiting). Cloud Run's
# max_instance_request_concurrency is set to the same number, so that Cloud Run scales out
# instead of piling requests onto a full instance.
ENV_QUEUE_SIZE: Final = "WHISPER_QUEUE_SIZE"
ENV_REQUEST_TIMEOUT: Final = "WHISPER_REQUEST_TIMEOUT_S"
# Realtime sessions one instance holds open; each is one request to Cloud Run for its whole length, so
# the instance's request concurrency is WHISPER_QUEUE_SIZE + this.
ENV_REALTIME_MAX_SESSIONS: Final = "WHISPER_REALTIME_MAX_SESSIONS"
ENV_REALTIME_MAX_SESSION_S: Final = "WHISPER_REALTIME_MAX_SESSION_S"
# Inferences one instance runs at once. A GPU instance running faster-whisper shares the GPU between
# this many CTranslate2 workers (one model replica each): on the GPU measured, 4 doubled throughput
# at 4-8 concurrent requests over 1 (docs/decisions/2026-11-29-workers-per-device.md).
# openai-whisper runs one at a time.
ENV_WORKERS: Final = "WHISPER_WORKERS"
GPU_WORKERS: Final = 4

ENGINES: Final = ("faster-whisper", "openai-whisper")
DEFAULT_ENGINE: Final = "faster-whisper"
# The model a production image bakes in, and the one a fresh checkout runs on.
DEFAULT_IMAGE_MODEL: Final = "large-v3-turbo"
BUNDLED_MODEL: Final = "tiny.en"
ENV_MODEL_DIR: Final = "WHISPER_MODEL_DIR"

# The container image (service/Dockerfile). Models are baked at build time under MODEL_DIR:
# faster-whisper models as CTranslate2 folders `<MODEL_DIR>/<name>/`, openai-whisper models as
# checkpoints `<MODEL_DIR>/<name>.pt`. The service never downloads a model at start.
MODEL_DIR: Final = "/models"
BUILD_ARG_ENGINE: Final = "WHISPER_ENGINE"
BUILD_ARG_MODEL: Final = "WHISPER_MODEL"
# A commit of the model's Hugging Face repository; empty means the one service/fetch_model.py pins.
BUILD_ARG_MODEL_REVISION: Final = "WHISPER_MODEL_REVISION"
IMAGE_TARGET_GPU: Final = "gpu"
IMAGE_TARGET_CPU: Final = "cpu"

# The API key (settings.Settings.api_key / api_key_file). On Cloud Run it is a Secret Manager secret
# mounted as a file, never an environment value: infra/ mounts it at API_KEY_FILE.
ENV_API_KEY: Final = "WHISPER_API_KEY"
ENV_API_KEY_FILE: Final = "WHISPER_API_KEY_FILE"
API_KEY_FILE: Final = "/secrets/api-key/key"
# Google's own variable: Cloud Logging trace correlation needs the project id (telemetry.py).
ENV_GOOGLE_CLOUD_PROJECT: Final = "GOOGLE_CLOUD_PROJECT"
# The batch worker's `--diarize` as an environment value: infra/batch.py sets it from
# `whisper:batch.diarize`, so that a run's argument overrides (other prefixes) keep it.
ENV_BATCH_DIARIZE: Final = "WHISPER_BATCH_DIARIZE"
