"""The audio routes' multipart form, parsed by Starlette's own parser with three more refusals,
each a 400 that names the field at fault:

- text over the part limit, one field alone or all text fields together (`field_too_large`;
  Starlette's message names no field, and its limit is per field: fields of nearly 1 MB each
  would hold the whole upload in memory, for each request),
- a text field that is not valid UTF-8 (`invalid_encoding`; Starlette would silently read it as
  Latin-1, so the model would get a garbled prompt),
- a field sent twice (`duplicate_parameter`; only the last would count), except list fields
  (`timestamp_granularities[]`).

`AudioRoute` makes FastAPI parse the audio routes' bodies with it; everything else (limits on
files and fields, spooling uploads to disk) is Starlette's.
"""

from collections.abc import Callable, Coroutine
from contextlib import aclosing
from http import HTTPStatus
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from whisper_api.errors import ApiError, invalid_request

LIST_SUFFIX = "[]"


class _NamingMultiPartParser(MultiPartParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._seen: set[str] = set()
        self._text_bytes = 0  # all text fields so far, held in memory until the form is parsed

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is None:
            self._text_bytes += end - start
            if self._text_bytes > self.max_part_size:
                limit = f"the limit of {self.max_part_size // 1024} KB"
                if len(part.data) + end - start > self.max_part_size:
                    message = f"The '{part.field_name}' field is larger than {limit}."
                else:
                    message = (
                        f"The form's text fields are together larger than {limit} (at '{part.field_name}')."
                    )
                raise invalid_request(message, param=part.field_name, code="field_too_large")
        super().on_part_data(data, start, end)

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        name = self._current_part.field_name
        if name in self._seen and not name.endswith(LIST_SUFFIX):
            raise invalid_request(
                f"The '{name}' field was sent more than once; send it once.",
                param=name,
                code="duplicate_parameter",
            )
        self._seen.add(name)

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                part.data.decode(self._charset)
            except UnicodeDecodeError:
                raise invalid_request(
                    f"The '{part.field_name}' field is not valid {self._charset.upper()} text.",
                    param=part.field_name,
                    code="invalid_encoding",
                ) from None
        super().on_part_end()


class AudioFormRequest(Request):
    """A Request whose multipart form is parsed by `_NamingMultiPartParser`."""

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is None and content_type == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    parser = _NamingMultiPartParser(
                        self.headers,
                        stream,
                        max_files=max_files,
                        max_fields=max_fields,
                        max_part_size=max_part_size,
                    )
                    self._form = await parser.parse()
            except MultiPartException as error:
                raise ApiError(HTTPStatus.BAD_REQUEST, error.message, code="invalid_multipart") from None
        return await super()._get_form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
        )


class AudioRoute(APIRoute):
    """Routes whose form is parsed by `AudioFormRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(AudioFormRequest(request.scope, request.receive))

        return handle
