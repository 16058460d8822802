"""The spend cap: stops the Whisper service's GPU spend when the month's budget says so.

Cloud Billing publishes the budget's state to a Pub/Sub topic several times a day, whatever its
thresholds; a push subscription POSTs each message here, authenticated by Cloud Run IAM. When the
actual spend of the current budget period (`costAmount`) reaches `CAP_FRACTION` of the budget
(`budgetAmount`), the service is capped: ingress internal-only (no outside caller reaches it),
minimum instances 0 and maximum 1 (idle GPUs drain away), and the label `spend-cap=engaged`. The
cap never restores anything: a person does, with `pulumi up --refresh` (docs/observability.md).

Standard library only, so the image needs nothing but Python: a tiny surface for a process that may
rewrite a production service. Every message is acknowledged (2xx) except when Cloud Run's API fails,
so that Pub/Sub retries exactly the calls that may succeed later.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

INTERNAL_ONLY = "INGRESS_TRAFFIC_INTERNAL_ONLY"
CAP_LABEL = "spend-cap"
CAP_LABEL_VALUE = "engaged"
CAPPED_MAX_INSTANCES = 1
# Billing publishes every 20-30 minutes; an older message has been overtaken by a fresher one.
MAX_MESSAGE_AGE = timedelta(hours=6)
# Cloud Billing's monthly periods start at midnight in this zone (the image's base ships tzdata).
BUDGET_TIME_ZONE = ZoneInfo("America/Los_Angeles")
MAX_BODY_BYTES = 64 * 1024  # a budget notification is well under 1 KiB
HTTP_TIMEOUT_S = 30


class InvalidMessage(ValueError):
    """The push request is not a budget notification; it is acknowledged and logged, never retried."""


class RunApiError(RuntimeError):
    """Cloud Run's Admin API failed; the message is refused so that Pub/Sub retries it."""


@dataclass(frozen=True)
class Settings:
    """The cap's environment, set by infra/spend_cap.py."""

    service: str  # projects/<project>/locations/<region>/services/<name>
    budget_id: str  # only this budget's messages count
    fraction: float  # of the budget amount
    run_api: str = "https://run.googleapis.com"
    metadata: str = "http://metadata.google.internal"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        try:
            fraction = float(env["CAP_FRACTION"])
        except (KeyError, ValueError) as error:
            raise SystemExit(f"CAP_FRACTION must be a number: {error}") from None
        missing = [name for name in ("CAP_SERVICE", "CAP_BUDGET_ID") if not env.get(name)]
        if missing or fraction <= 0:
            raise SystemExit(f"spend cap misconfigured: missing {missing}, CAP_FRACTION {fraction}")
        return cls(
            service=env["CAP_SERVICE"],
            budget_id=env["CAP_BUDGET_ID"],
            fraction=fraction,
            run_api=env.get("CAP_RUN_API", cls.run_api),
            metadata=env.get("CAP_METADATA", cls.metadata),
        )


@dataclass(frozen=True)
class BudgetNotification:
    """One Pub/Sub message of a budget (Cloud Billing's notification format, schema 1.0)."""

    budget_id: str
    display_name: str
    cost: float
    budget: float
    currency: str
    interval_start: datetime
    published: datetime
    threshold_exceeded: float | None = None
    forecast_threshold_exceeded: float | None = None

    @property
    def spent_fraction(self) -> float:
        return self.cost / self.budget if self.budget > 0 else float("inf")


@dataclass(frozen=True)
class Decision:
    cap: bool
    reason: str


def parse_push(body: bytes) -> BudgetNotification:
    """A Pub/Sub push request (`{"message": {"data", "attributes", "publishTime"}}`) → the notification."""
    try:
        envelope = json.loads(body)
        message = envelope["message"]
        data = json.loads(base64.b64decode(message["data"], validate=True))
        attributes = message.get("attributes") or {}
        return BudgetNotification(
            budget_id=str(attributes["budgetId"]),
            display_name=str(data.get("budgetDisplayName", "")),
            cost=_number(data["costAmount"]),
            budget=_number(data["budgetAmount"]),
            currency=str(data.get("currencyCode", "")),
            interval_start=_timestamp(data["costIntervalStart"]),
            published=_timestamp(message["publishTime"]),
            threshold_exceeded=_optional_number(data.get("alertThresholdExceeded")),
            forecast_threshold_exceeded=_optional_number(data.get("forecastThresholdExceeded")),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise InvalidMessage(f"not a budget notification: {type(error).__name__}: {error}") from None


def decide(notification: BudgetNotification, settings: Settings, now: datetime) -> Decision:
    """Cap only on this budget's actual spend of the current period; forecasts only warn by email."""
    if notification.budget_id != settings.budget_id:
        return Decision(False, f"budget {notification.budget_id!r} is not this service's budget")
    if now - notification.published > MAX_MESSAGE_AGE:
        return Decision(False, f"stale message published {notification.published.isoformat()}")
    if now >= _next_month(notification.interval_start):
        return Decision(False, f"period starting {notification.interval_start.isoformat()} is over")
    spent = notification.spent_fraction
    summary = (
        f"{notification.cost:.2f} of {notification.budget:.2f} {notification.currency} "
        f"({spent:.0%}; cap at {settings.fraction:.0%})"
    )
    return Decision(spent >= settings.fraction, summary)


def capped(service: Mapping[str, Any]) -> dict[str, Any] | None:
    """The service (Cloud Run Admin API v2 JSON) with the cap applied; None when already capped."""
    template = service.get("template") or {}
    scaling = template.get("scaling") or {}
    already = (
        service.get("ingress") == INTERNAL_ONLY
        and int(scaling.get("minInstanceCount", 0)) == 0
        and 0 < int(scaling.get("maxInstanceCount", CAPPED_MAX_INSTANCES + 1)) <= CAPPED_MAX_INSTANCES
    )
    if already:
        return None
    updated = json.loads(json.dumps(service))
    updated["ingress"] = INTERNAL_ONLY
    updated["labels"] = {**(service.get("labels") or {}), CAP_LABEL: CAP_LABEL_VALUE}
    new_template = updated.setdefault("template", {})
    new_template.pop("revision", None)  # a named revision cannot be created twice
    new_template["scaling"] = {
        **scaling,
        "minInstanceCount": 0,
        "maxInstanceCount": CAPPED_MAX_INSTANCES,
    }
    service_scaling = updated.get("scaling")
    if isinstance(service_scaling, dict):
        service_scaling["minInstanceCount"] = 0
        if service_scaling.get("maxInstanceCount"):
            service_scaling["maxInstanceCount"] = CAPPED_MAX_INSTANCES
        if service_scaling.get("scalingMode") == "MANUAL":
            service_scaling["manualInstanceCount"] = 0
    return updated


def describe_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What the cap changed, for the log line a person reads before restoring."""
    old = (before.get("template") or {}).get("scaling") or {}
    return {
        "ingress": [before.get("ingress"), after.get("ingress")],
        "minInstanceCount": [old.get("minInstanceCount", 0), 0],
        "maxInstanceCount": [old.get("maxInstanceCount"), CAPPED_MAX_INSTANCES],
    }


class RunApi:
    """Just enough of Cloud Run's Admin API v2, with the runtime identity's token from the metadata server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def get_service(self) -> dict[str, Any]:
        return self._call("GET", None)

    def update_service(self, service: Mapping[str, Any]) -> dict[str, Any]:
        # The etag from the read makes a concurrent `pulumi up` fail this update instead of being undone.
        return self._call("PATCH", service)

    def _call(self, method: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        url = f"{self.settings.run_api}/v2/{self.settings.service}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - fixed https URL
        request.add_header("Authorization", f"Bearer {self._token()}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            detail = error.read(2048).decode(errors="replace")
            raise RunApiError(f"{method} {url}: HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ValueError) as error:
            raise RunApiError(f"{method} {url}: {error}") from None

    def _token(self) -> str:
        url = f"{self.settings.metadata}/computeMetadata/v1/instance/service-accounts/default/token"
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                return str(json.load(response)["access_token"])
        except (urllib.error.URLError, TimeoutError, ValueError, KeyError) as error:
            raise RunApiError(f"no access token from the metadata server: {error}") from None


def handle(body: bytes, settings: Settings, api: RunApi, now: datetime, log: Callable[..., None]) -> int:
    """One push request → the HTTP status Pub/Sub sees (2xx acknowledges, 5xx retries)."""
    try:
        notification = parse_push(body)
    except InvalidMessage as error:
        log("ERROR", "spend_cap_invalid_message", detail=str(error))
        return HTTPStatus.NO_CONTENT
    decision = decide(notification, settings, now)
    fields = {"budget": notification.display_name, "detail": decision.reason}
    if not decision.cap:
        log("INFO", "spend_cap_not_reached", **fields)
        return HTTPStatus.NO_CONTENT
    try:
        service = api.get_service()
        updated = capped(service)
        if updated is None:
            log("INFO", "spend_cap_already_engaged", service=settings.service, **fields)
            return HTTPStatus.NO_CONTENT
        api.update_service(updated)
    except RunApiError as error:
        log("ERROR", "spend_cap_failed", service=settings.service, error=str(error), **fields)
        return HTTPStatus.SERVICE_UNAVAILABLE
    log(
        "ALERT",
        "spend_cap_engaged",
        service=settings.service,
        changed=describe_change(service, updated),
        restore="raise the budget or whisper:spendCap.fraction, then pulumi up --refresh",
        **fields,
    )
    return HTTPStatus.OK


def log_json(severity: str, event: str, **fields: Any) -> None:
    """One JSON line on stdout: Cloud Logging reads `severity` and `message`, the rest as jsonPayload."""
    entry = {"severity": severity, "message": event, "event": event, **fields}
    print(json.dumps(entry, default=str), flush=True)


def make_handler(settings: Settings, api: RunApi) -> type[BaseHTTPRequestHandler]:
    class PushHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                log_json("ERROR", "spend_cap_invalid_message", detail=f"body of {length} bytes")
                self._reply(HTTPStatus.NO_CONTENT)
                return
            status = handle(self.rfile.read(length), settings, api, datetime.now(UTC), log_json)
            self._reply(status)

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: `handle` logs one structured line per message."""

    return PushHandler


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def _timestamp(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def _next_month(start: datetime) -> datetime:
    """The start of the budget period after the one `start` falls in.

    Monthly budget periods begin at midnight US Pacific time, so a period is 1 hour shorter or
    longer than the calendar month in UTC when daylight saving time starts or ends within it.
    """
    local = start.astimezone(BUDGET_TIME_ZONE)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=BUDGET_TIME_ZONE).astimezone(UTC)


def main() -> None:
    settings = Settings.from_env(os.environ)
    server = ThreadingHTTPServer(
        ("", int(os.environ.get("PORT", "8080"))), make_handler(settings, RunApi(settings))
    )
    log_json("INFO", "spend_cap_listening", service=settings.service, fraction=settings.fraction)
    server.serve_forever()


if __name__ == "__main__":
    main()
