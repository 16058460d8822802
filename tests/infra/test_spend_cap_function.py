"""The spend cap's function (infra/spend_cap_function/cap.py) on Cloud Billing's own notification shapes.

The decision logic runs on the fixtures in tests/fixtures/budget_notifications; the whole function runs
as a real HTTP server receiving Pub/Sub push requests over a socket, in front of a local stand-in for
the two Google endpoints it calls (the metadata server's token, Cloud Run's Admin API v2).
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.spend_cap_function import cap

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "budget_notifications"
BUDGET_ID = "8c3f2a5e-59b4-4a1c-9d4e-0f6b1d2c3a4b"
SERVICE = "projects/my-whisper-prod/locations/europe-west1/services/whisper"
NOW = datetime(2026, 11, 29, 19, 0, tzinfo=UTC)
SETTINGS = cap.Settings(service=SERVICE, budget_id=BUDGET_ID, fraction=1.0)

# A GPU service as Cloud Run's Admin API v2 returns it (trimmed to the fields that matter here).
RUNNING_SERVICE: dict[str, Any] = {
    "name": SERVICE,
    "uid": "0b7c1e7a-1111-4b5e-9a3c-2f1e0d9c8b7a",
    "generation": "7",
    "labels": {"app": "whisper", "stack": "prod", "managed-by": "pulumi"},
    "etag": '"CKy4-bkGEJi7uI0C/cHJvamVjdHMvbXktd2hpc3Blci1wcm9kL2xvY2F0aW9ucy9ldXJvcGUtd2VzdDE"',
    "ingress": "INGRESS_TRAFFIC_ALL",
    "invokerIamDisabled": False,
    "template": {
        "revision": "whisper-00007-abc",
        "scaling": {"minInstanceCount": 1, "maxInstanceCount": 3},
        "serviceAccount": "whisper-run@my-whisper-prod.iam.gserviceaccount.com",
        "maxInstanceRequestConcurrency": 4,
        "nodeSelector": {"accelerator": "nvidia-l4"},
        "containers": [
            {"name": "whisper-api", "image": "europe-west1-docker.pkg.dev/p/whisper/whisper@sha256:ab"}
        ],
    },
    "scaling": {"minInstanceCount": 1},
    "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def push_body(
    name: str, *, publish_time: datetime | None = None, interval_start: datetime | None = None, **data: Any
) -> bytes:
    """The fixture as Pub/Sub's push subscription delivers it."""
    notification = fixture(name)
    payload = {**notification["data"], **data}
    if interval_start is not None:
        payload["costIntervalStart"] = interval_start.isoformat().replace("+00:00", "Z")
    published = (
        publish_time.isoformat().replace("+00:00", "Z") if publish_time else notification["publishTime"]
    )
    envelope = {
        "message": {
            "attributes": notification["attributes"],
            "data": base64.b64encode(json.dumps(payload).encode()).decode(),
            "messageId": "9876543210",
            "message_id": "9876543210",
            "publishTime": published,
            "publish_time": published,
        },
        "subscription": "projects/my-whisper-prod/subscriptions/whisper-spend-cap",
    }
    return json.dumps(envelope).encode()


# --- parsing and deciding -------------------------------------------------------------------------


def test_parses_googles_notification_format() -> None:
    notification = cap.parse_push(push_body("threshold_exceeded"))
    assert notification.budget_id == BUDGET_ID
    assert notification.display_name == "whisper (my-whisper-prod)"
    assert (notification.cost, notification.budget, notification.currency) == (1503.12, 1500.0, "USD")
    assert notification.threshold_exceeded == 1.0
    assert notification.forecast_threshold_exceeded is None
    assert notification.interval_start == datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert notification.published == datetime(2026, 11, 29, 18, 30, 0, 123000, tzinfo=UTC)


def test_threshold_fields_are_optional_as_google_sends_them() -> None:
    notification = cap.parse_push(push_body("under_threshold"))
    assert notification.threshold_exceeded is None
    assert notification.spent_fraction == pytest.approx(412.37 / 1500)


def test_actual_spend_past_the_fraction_caps() -> None:
    decision = cap.decide(cap.parse_push(push_body("threshold_exceeded")), SETTINGS, NOW)
    assert decision.cap is True
    assert "1503.12 of 1500.00 USD" in decision.reason


def test_spend_below_the_fraction_does_not_cap() -> None:
    assert cap.decide(cap.parse_push(push_body("under_threshold")), SETTINGS, NOW).cap is False


def test_a_lower_fraction_caps_earlier() -> None:
    settings = cap.Settings(service=SERVICE, budget_id=BUDGET_ID, fraction=0.25)
    assert cap.decide(cap.parse_push(push_body("under_threshold")), settings, NOW).cap is True


def test_a_forecast_alone_never_caps() -> None:
    """A forecast past the budget warns by email; only money actually spent stops the service."""
    notification = cap.parse_push(push_body("forecast_exceeded"))
    assert notification.forecast_threshold_exceeded == 1.0
    assert cap.decide(notification, SETTINGS, NOW).cap is False


def test_the_threshold_field_is_not_what_decides() -> None:
    """The cap compares cost to the budget itself: it works with any threshold rules, or none."""
    body = push_body("under_threshold", alertThresholdExceeded=1.0)
    assert cap.decide(cap.parse_push(body), SETTINGS, NOW).cap is False


def test_last_months_overspend_does_not_cap_the_new_month() -> None:
    """A message from the period that just ended, delivered late, must not stop a fresh month."""
    notification = cap.parse_push(push_body("euro_last_period"))
    now = datetime(2026, 11, 1, 8, 10, tzinfo=UTC)  # 80 minutes after publishing, in the next period
    decision = cap.decide(notification, SETTINGS, now)
    assert decision.cap is False
    assert "is over" in decision.reason


MARCH_START = datetime(2026, 3, 1, 8, tzinfo=UTC)  # midnight PST
APRIL_START = datetime(2026, 4, 1, 7, tzinfo=UTC)  # midnight PDT: daylight saving time began in March
OCTOBER_START = datetime(2026, 10, 1, 7, tzinfo=UTC)
NOVEMBER_START = datetime(2026, 11, 1, 7, tzinfo=UTC)  # still PDT at midnight; DST ends at 2:00
DECEMBER_START = datetime(2026, 12, 1, 8, tzinfo=UTC)  # PST again


@pytest.mark.parametrize(
    ("period_start", "next_start"),
    [(MARCH_START, APRIL_START), (OCTOBER_START, NOVEMBER_START), (NOVEMBER_START, DECEMBER_START)],
)
def test_a_period_ends_exactly_at_the_next_pacific_midnight(
    period_start: datetime, next_start: datetime
) -> None:
    """Not a minute into the next month: an over-budget March message must not cap April."""
    published = next_start - timedelta(minutes=20)
    body = push_body("threshold_exceeded", publish_time=published, interval_start=period_start)
    notification = cap.parse_push(body)
    assert cap.decide(notification, SETTINGS, next_start - timedelta(seconds=1)).cap is True
    late = cap.decide(notification, SETTINGS, next_start + timedelta(minutes=1))
    assert (late.cap, "is over" in late.reason) == (False, True)


def test_stale_messages_are_ignored() -> None:
    notification = cap.parse_push(push_body("threshold_exceeded"))
    decision = cap.decide(notification, SETTINGS, notification.published + cap.MAX_MESSAGE_AGE + timedelta(1))
    assert decision.cap is False
    assert "stale" in decision.reason


def test_another_budgets_messages_are_ignored() -> None:
    settings = cap.Settings(service=SERVICE, budget_id="another-budget", fraction=1.0)
    decision = cap.decide(cap.parse_push(push_body("threshold_exceeded")), settings, NOW)
    assert decision.cap is False
    assert "not this service's budget" in decision.reason


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"message": {}}',
        json.dumps({"message": {"data": "!!!", "attributes": {"budgetId": BUDGET_ID}}}).encode(),
        json.dumps(
            {
                "message": {
                    "data": base64.b64encode(b'{"costAmount": "lots"}').decode(),
                    "attributes": {"budgetId": BUDGET_ID},
                    "publishTime": "2026-11-29T18:30:00Z",
                }
            }
        ).encode(),
    ],
)
def test_anything_else_is_an_invalid_message(body: bytes) -> None:
    with pytest.raises(cap.InvalidMessage):
        cap.parse_push(body)


# --- what the cap changes -------------------------------------------------------------------------


def test_cap_closes_ingress_and_drains_instances() -> None:
    updated = cap.capped(RUNNING_SERVICE)
    assert updated is not None
    assert updated["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert updated["template"]["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}
    assert updated["scaling"]["minInstanceCount"] == 0
    assert updated["labels"] == {**RUNNING_SERVICE["labels"], "spend-cap": "engaged"}
    assert "revision" not in updated["template"]
    # Everything else is sent back as read, etag included, so a concurrent change makes the update fail.
    assert updated["etag"] == RUNNING_SERVICE["etag"]
    assert updated["template"]["containers"] == RUNNING_SERVICE["template"]["containers"]
    assert updated["template"]["serviceAccount"] == RUNNING_SERVICE["template"]["serviceAccount"]
    assert RUNNING_SERVICE["ingress"] == "INGRESS_TRAFFIC_ALL"  # the input is left alone


def test_a_capped_service_is_left_alone() -> None:
    updated = cap.capped(RUNNING_SERVICE)
    assert updated is not None
    assert cap.capped(updated) is None


def test_manual_scaling_is_set_to_zero_instances() -> None:
    service = copy.deepcopy(RUNNING_SERVICE)
    service["scaling"] = {"scalingMode": "MANUAL", "manualInstanceCount": 2}
    updated = cap.capped(service)
    assert updated is not None
    assert updated["scaling"]["manualInstanceCount"] == 0


def test_settings_come_from_the_environment() -> None:
    env = {"CAP_SERVICE": SERVICE, "CAP_BUDGET_ID": BUDGET_ID, "CAP_FRACTION": "0.9"}
    assert cap.Settings.from_env(env) == cap.Settings(service=SERVICE, budget_id=BUDGET_ID, fraction=0.9)
    with pytest.raises(SystemExit):
        cap.Settings.from_env({**env, "CAP_FRACTION": "all of it"})
    with pytest.raises(SystemExit):
        cap.Settings.from_env({**env, "CAP_BUDGET_ID": ""})


# --- the whole function, over sockets ---------------------------------------------------------------


class FakeGoogle:
    """The metadata server's token endpoint and Cloud Run's services.get/patch, recording calls."""

    def __init__(self, service: dict[str, Any]) -> None:
        self.service = copy.deepcopy(service)
        self.calls: list[tuple[str, str, dict[str, Any] | None, str | None]] = []
        self.fail_patch_with: int | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        google = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/service-accounts/default/token"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        self._json(HTTPStatus.FORBIDDEN, {})
                        return
                    self._json(HTTPStatus.OK, {"access_token": "ya29.cap", "expires_in": 3599})
                    return
                google.calls.append(("GET", self.path, None, self.headers.get("Authorization")))
                self._json(HTTPStatus.OK, google.service)

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                google.calls.append(("PATCH", self.path, body, self.headers.get("Authorization")))
                if google.fail_patch_with:
                    self._json(google.fail_patch_with, {"error": {"status": "ABORTED"}})
                    return
                google.service = body
                self._json(HTTPStatus.OK, {"name": "operations/123", "done": False})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def google() -> Iterator[tuple[FakeGoogle, str]]:
    fake = FakeGoogle(RUNNING_SERVICE)
    server, url = serve(fake.handler())
    yield fake, url
    server.shutdown()


@pytest.fixture
def cap_url(google: tuple[FakeGoogle, str]) -> Iterator[str]:
    settings = cap.Settings(
        service=SERVICE, budget_id=BUDGET_ID, fraction=1.0, run_api=google[1], metadata=google[1]
    )
    server, url = serve(cap.make_handler(settings, cap.RunApi(settings)))
    yield url
    server.shutdown()


def post(url: str, body: bytes) -> int:
    return httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=10).status_code


def fresh(name: str) -> bytes:
    """The fixture, published a few minutes ago in the current budget period."""
    now = datetime.now(UTC)
    # Periods start at midnight Pacific time, as Cloud Billing's messages say.
    local = now.astimezone(cap.BUDGET_TIME_ZONE)
    period_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return push_body(
        name, publish_time=now - timedelta(minutes=5), interval_start=period_start.astimezone(UTC)
    )


def test_push_over_the_cap_updates_the_service_once(
    google: tuple[FakeGoogle, str], cap_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, _ = google
    assert post(cap_url, fresh("threshold_exceeded")) == HTTPStatus.OK
    assert [call[0] for call in fake.calls] == ["GET", "PATCH"]
    _, path, body, authorization = fake.calls[1]
    assert path == f"/v2/{SERVICE}"
    assert authorization == "Bearer ya29.cap"
    assert body == cap.capped(RUNNING_SERVICE)
    engaged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert engaged[-1]["event"] == "spend_cap_engaged"
    assert engaged[-1]["severity"] == "ALERT"
    assert engaged[-1]["changed"] == {
        "ingress": ["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY"],
        "minInstanceCount": [1, 0],
        "maxInstanceCount": [3, 1],
    }
    assert "pulumi up --refresh" in engaged[-1]["restore"]
    # The next notification (they keep coming) finds the service capped and changes nothing.
    assert post(cap_url, fresh("threshold_exceeded")) == HTTPStatus.NO_CONTENT
    assert [call[0] for call in fake.calls] == ["GET", "PATCH", "GET"]


def test_push_under_the_cap_touches_nothing(google: tuple[FakeGoogle, str], cap_url: str) -> None:
    assert post(cap_url, fresh("under_threshold")) == HTTPStatus.NO_CONTENT
    assert google[0].calls == []


def test_an_invalid_push_is_acknowledged_not_retried(google: tuple[FakeGoogle, str], cap_url: str) -> None:
    assert post(cap_url, b'{"message": "nonsense"}') == HTTPStatus.NO_CONTENT
    assert google[0].calls == []


def test_an_api_failure_is_retried_by_pubsub(google: tuple[FakeGoogle, str], cap_url: str) -> None:
    """A concurrent `pulumi up` changed the etag: refuse the message so Pub/Sub delivers it again."""
    fake, _ = google
    fake.fail_patch_with = HTTPStatus.CONFLICT
    assert post(cap_url, fresh("threshold_exceeded")) == HTTPStatus.SERVICE_UNAVAILABLE
    fake.fail_patch_with = None
    assert post(cap_url, fresh("threshold_exceeded")) == HTTPStatus.OK
    assert fake.service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
