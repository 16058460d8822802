"""Reading the running stack's configuration from the Pulumi runtime (only under `pulumi up/preview`)."""

from __future__ import annotations

import pulumi

from infra.config.keys import KEYS, NAMESPACE, PROJECT_KEY
from infra.config.parse import parse_config
from infra.config.stack import StackConfig

# The `gcp:` settings an explicit provider must be handed again: key → (argument, is a credential).
FORWARDED_PROVIDER_SETTINGS = {
    "impersonateServiceAccount": ("impersonate_service_account", False),
    "credentials": ("credentials", True),
    "accessToken": ("access_token", True),
}


def raw_stack_config() -> dict[str, str]:
    """Every `whisper:*` key and `gcp:project` of the running stack, as Pulumi hands them over."""
    keys = [f"{NAMESPACE}:{key}" for key in KEYS] + [PROJECT_KEY]
    raw = {key: value for key in keys if (value := _get(key)) is not None}
    # Unknown keys (typos such as `maxInstance`) are reported too: look at the whole config map.
    for key in _all_config_keys():
        if key.startswith(f"{NAMESPACE}:") and key not in raw and (value := _get(key)) is not None:
            raw[key] = value
    return raw


def _get(full_key: str) -> str | None:
    namespace, key = full_key.split(":", 1)
    return pulumi.Config(namespace).get(key)


def _all_config_keys() -> list[str]:
    # The runtime's config map is internal API; without it only the known keys are read.
    try:
        from pulumi.runtime import config as runtime_config

        return sorted({*runtime_config.CONFIG.get(), *runtime_config.get_config_env()})
    except (ImportError, AttributeError):  # pragma: no cover - depends on the SDK version
        return []


def read_stack_config() -> StackConfig:
    """Read and validate the running stack's configuration (raises ConfigError)."""
    from pulumi.runtime import config as runtime_config

    raw = raw_stack_config()
    secret_keys = {key for key in raw if runtime_config.is_config_secret(key)}
    return parse_config(raw, secret_keys | set(runtime_config.get_config_secret_keys_env()))


def provider_settings() -> dict[str, pulumi.Input[str]]:
    """The stack's `gcp:` credentials settings, for explicit providers (which do not inherit them)."""
    gcp = pulumi.Config("gcp")
    settings: dict[str, pulumi.Input[str]] = {}
    for key, (argument, credential) in FORWARDED_PROVIDER_SETTINGS.items():
        value = gcp.get_secret(key) if credential else gcp.get(key)
        if value is not None:
            settings[argument] = value
    return settings
