"""Client secrets: signed, expiring, bound to the API key they were derived from."""

from whisper_api.auth import ApiKeyAuth
from whisper_api.realtime.secrets import ClientSecrets

SESSION = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}


def secrets_for(key: str) -> ClientSecrets:
    return ClientSecrets.from_api_key(ApiKeyAuth(key).derived_key(b"realtime client secrets"))


def test_a_secret_is_valid_until_it_expires_and_carries_its_session() -> None:
    secrets = secrets_for("key-1")
    value, expires_at = secrets.mint(60, SESSION, now=1000)
    assert value.startswith("ek_") and expires_at == 1060
    grant = secrets.verify(value, now=1059)
    assert grant is not None and grant.session == SESSION and grant.expires_at == 1060
    assert secrets.verify(value, now=1060) is None


def test_every_instance_with_the_same_key_accepts_it_and_no_other_key_does() -> None:
    value, _ = secrets_for("key-1").mint(60, now=1000)
    assert secrets_for("key-1").verify(value, now=1001) is not None
    assert secrets_for("key-2").verify(value, now=1001) is None


def test_a_tampered_or_foreign_token_is_refused() -> None:
    secrets = secrets_for("key-1")
    value, _ = secrets.mint(60, now=1000)
    payload, _, signature = value.partition(".")
    other, _ = secrets.mint(7200, now=1000)
    assert (
        secrets.verify(other.partition(".")[0] + "." + signature, now=1001) is None
    )  # longer expiry, old signature
    assert secrets.verify(payload + "." + signature[:-2] + "AA", now=1001) is None
    assert secrets.verify("key-1", now=1001) is None
    assert secrets.verify("ek_", now=1001) is None
    assert secrets.verify("ek_!!!.###", now=1001) is None


def test_the_api_key_never_appears_in_a_secret() -> None:
    value, _ = secrets_for("a-very-long-api-key").mint(60, SESSION)
    assert "a-very-long-api-key" not in value
    assert repr(secrets_for("a-very-long-api-key")) == "ClientSecrets()"
