"""`whisper:env` and the API key (`whisper:apiKey` / `whisper:apiKeySecret`): what reaches the
container's environment, and the one setting that must never be there in plain text."""

from __future__ import annotations

import re
from collections.abc import Collection

from infra.config.keys import API_KEY, NAMESPACE
from infra.config.reader import Reader, fix
from infra.shared import contract

MIN_API_KEY_CHARS = 16  # a guessable key is no key
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# Env vars the program sets from typed keys; `whisper:env` may not override them.
MANAGED_ENV = frozenset(
    {
        contract.ENV_ENGINE,
        contract.ENV_MODEL,
        contract.ENV_MODEL_DIR,
        contract.ENV_DEVICE,
        contract.ENV_QUEUE_SIZE,
        contract.ENV_REQUEST_TIMEOUT,
        contract.ENV_REALTIME_MAX_SESSIONS,
        contract.ENV_REALTIME_MAX_SESSION_S,
    }
)
# The service's API key settings: the program sets the file from whisper:apiKey / apiKeySecret.
API_KEY_ENV = frozenset({contract.ENV_API_KEY, contract.ENV_API_KEY_FILE})


def read_api_key(r: Reader, secret_keys: Collection[str]) -> tuple[str | None, str | None]:
    """The API key from a stack secret, or the id of an existing Secret Manager secret; never both."""
    api_key = r.value("apiKey") or None
    secret_id = r.value("apiKeySecret") or None
    set_secret = f"pulumi config set --secret {API_KEY} <key>"
    if api_key is not None and API_KEY not in secret_keys:
        # Never echo the value: it is already in the stack file in plain text.
        r.fail(f"{API_KEY} is stored in plain text; set it as a secret — {set_secret}")
    elif api_key is not None and len(api_key.strip()) < MIN_API_KEY_CHARS:
        r.fail(
            f"{API_KEY} is shorter than {MIN_API_KEY_CHARS} characters — "
            f"{set_secret} (e.g. openssl rand -hex 32)"
        )
    if secret_id is not None and not _SECRET_ID.match(secret_id):
        r.fail(
            f"{NAMESPACE}:apiKeySecret {secret_id!r} is not a secret id in this project (letters, digits, "
            f"- and _) — {fix('apiKeySecret', 'whisper-api-key')}"
        )
    if api_key is not None and secret_id is not None:
        r.fail(
            f"{API_KEY} and {NAMESPACE}:apiKeySecret are both set; keep one — pulumi config rm {API_KEY} "
            f"(or pulumi config rm {NAMESPACE}:apiKeySecret)"
        )
    return (api_key.strip() if api_key else None), secret_id


def read_env(r: Reader) -> dict[str, str]:
    """Extra service settings (`WHISPER_*`), except those the program sets from typed keys."""
    env = r.json("env", {}, dict, '\'{"WHISPER_BEAM_SIZE": "5"}\'')
    result: dict[str, str] = {}
    for name, value in env.items():
        remove = f"pulumi config rm --path '{NAMESPACE}:env.{name}'"
        if not name.startswith(contract.ENV_PREFIX):
            r.fail(
                f"{NAMESPACE}:env {name!r} is not a service setting (they start with "
                f"{contract.ENV_PREFIX}) — pulumi config set --path '{NAMESPACE}:env.WHISPER_BEAM_SIZE' 5"
            )
        elif name in API_KEY_ENV:
            r.fail(
                f"{NAMESPACE}:env {name!r} would put the API key in the stack file, the state and the "
                f"revision's environment in plain text; keep it in Secret Manager — {remove} && "
                f"pulumi config set --secret {API_KEY} <key> "
                f"(or {fix('apiKeySecret', '<existing secret id>')})"
            )
        elif name in MANAGED_ENV:
            r.fail(
                f"{NAMESPACE}:env {name!r} is set by the program from a typed key (engine, model, "
                f"concurrency, timeoutSeconds, realtime); set that key instead — {remove}"
            )
        elif isinstance(value, dict | list) or value is None:
            r.fail(f"{NAMESPACE}:env {name!r} must be a string, number or boolean")
        else:
            result[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return result
