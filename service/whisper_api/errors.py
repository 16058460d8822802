"""Every error leaves the service in OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`.

Clients written for OpenAI (the official SDKs included) read `error.message` and map the status
to an exception class, so validation errors, unknown routes and unexpected failures all use the
same shape. An unexpected exception is logged with its trace and answered with a generic 500.
"""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from whisper_api.request_id import HEADER, request_id
from whisper_api.schemas import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class ApiError(StarletteHTTPException):
    """An error the client caused (or may retry), answered with `status` and the OpenAI envelope.

    An HTTPException, so that FastAPI passes it through unchanged when it is raised while the
    request body is parsed (see `multipart`).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = INVALID_REQUEST,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.status = status
        self.body = ErrorBody(message=message, type=type, param=param, code=code)
        self.headers = headers


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, message, param=param, code=code)


def model_not_ready() -> ApiError:
    """The 503 of every route (HTTP or WebSocket) while the model is still loading."""
    return ApiError(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The model is still loading; retry shortly (see /readyz).",
        type="server_error",
        code="model_not_ready",
        headers={"Retry-After": "5"},
    )


def error_response(
    status: int,
    message: str,
    *,
    type: str = INVALID_REQUEST,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def error_type_for(status: int) -> str:
    if status == HTTPStatus.UNAUTHORIZED:
        return "authentication_error"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return "rate_limit_error"
    return SERVER_ERROR if status >= 500 else INVALID_REQUEST


async def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(
        ErrorResponse(error=error.body).model_dump(), status_code=error.status, headers=error.headers
    )


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 becomes OpenAI's 400, naming the first offending form field."""
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    param = _param_name(first.get("loc", ()))
    if first.get("type") == "missing":
        message, code = f"Missing required parameter: '{param}'.", "missing_required_parameter"
    elif param == "file":  # a text value (or a part without a filename) where an upload belongs
        message = "The 'file' field must be an uploaded file (a form part with a filename), not a text value."
        code = "invalid_value"
    else:
        message, code = f"Invalid value for '{param}': {first.get('msg', 'invalid value')}.", "invalid_value"
    return error_response(HTTPStatus.BAD_REQUEST, message, param=param, code=code)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    """Starlette's own errors (404 unknown route, 405 wrong method, 400 unparsable body)."""
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    if status == HTTPStatus.NOT_FOUND:
        message, code = "Not found: no route matches this path.", "not_found"
    elif status == HTTPStatus.METHOD_NOT_ALLOWED:
        message, code = "Method not allowed on this path.", "method_not_allowed"
    else:
        message, code = str(error.detail), None
    return error_response(status, message, type=error_type_for(status), code=code, headers=error.headers)


def internal_error() -> ErrorBody:
    """What a client learns of a bug: nothing but that it happened (the trace is logged)."""
    message = "The server had an error while processing your request."
    return ErrorBody(message=message, type=SERVER_ERROR, code="internal_error")


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    """Starlette answers this outside every middleware, so the request id is added here."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    identifier = request_id(request.scope)
    return JSONResponse(
        ErrorResponse(error=internal_error()).model_dump(),
        status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        headers={HEADER: identifier} if identifier else None,
    )


def _param_name(loc: Sequence[Any]) -> str:
    """('body', 'timestamp_granularities[]', 0) → 'timestamp_granularities[]'."""
    names = [str(part) for part in loc if isinstance(part, str) and part not in ("body", "query", "header")]
    return names[0] if names else "body"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


# Documented on every route that can fail, so /docs shows the envelope and the statuses.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    HTTPStatus.BAD_REQUEST: {
        "model": ErrorResponse,
        "description": "Invalid request: missing, empty or undecodable file, unsupported "
        "response_format, unknown language or model, out-of-range temperature, prompt too long.",
    },
    HTTPStatus.UNAUTHORIZED: {
        "model": ErrorResponse,
        "description": "WHISPER_API_KEY is set; the Bearer key is missing or wrong (`invalid_api_key`).",
    },
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: {
        "model": ErrorResponse,
        "description": "The upload is larger than WHISPER_MAX_UPLOAD_MB (code `file_too_large`).",
    },
    HTTPStatus.TOO_MANY_REQUESTS: {
        "model": ErrorResponse,
        "description": "The instance's queue is full; retry after `Retry-After` seconds.",
    },
    HTTPStatus.INTERNAL_SERVER_ERROR: {"model": ErrorResponse, "description": "Unexpected server error."},
    HTTPStatus.SERVICE_UNAVAILABLE: {
        "model": ErrorResponse,
        "description": "The model is still loading (see /readyz), or the instance is shutting down.",
    },
    HTTPStatus.GATEWAY_TIMEOUT: {
        "model": ErrorResponse,
        "description": "The request passed WHISPER_REQUEST_TIMEOUT_S (code `deadline_exceeded`).",
    },
}
