"""Property-based fuzzing against the service's own OpenAPI schema: no input produces a 5xx.

schemathesis generates requests for every documented operation (bounded, derandomised, so the
run is repeatable and takes about a minute here) and calls the real app, on the real model, in
process.
"""

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation

from tests.support.apps import make_app
from tests.support.engines import LazyEngines

MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def api_schema(engines: LazyEngines) -> schemathesis.BaseSchema:
    app = make_app(engines, "faster-whisper")
    # schemathesis runs the app's lifespan once; wait for the model, so "still loading" 503s
    # (correct, but not what this test is about) cannot happen.
    with asgi.get_client(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app never became ready"
            time.sleep(0.05)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def fuzz(operation: APIOperation, data: st.DataObject) -> None:
    case = data.draw(operation.as_strategy())
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text


def operations(api_schema: schemathesis.BaseSchema) -> dict[str, APIOperation]:
    return {op.ok().label: op.ok() for op in api_schema.get_all_operations()}


def test_the_schema_covers_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    assert set(operations(api_schema)) >= {
        "POST /v1/audio/transcriptions",
        "POST /v1/audio/translations",
        "GET /v1/models",
        "GET /v1/models/{model}",
        "GET /healthz",
        "GET /readyz",
    }


@pytest.mark.parametrize(
    "label",
    [
        "POST /v1/audio/transcriptions",
        "POST /v1/audio/translations",
        "GET /v1/models",
        "GET /v1/models/{model}",
        "GET /healthz",
        "GET /readyz",
    ],
)
def test_no_generated_request_gets_a_server_error(api_schema: schemathesis.BaseSchema, label: str) -> None:
    fuzz(operations(api_schema)[label])
