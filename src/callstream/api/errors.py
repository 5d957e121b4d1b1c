"""HTTP error mapping: every failure leaves the API as ``{"error": {"code", "message"}}``.

Cores raise callstream errors (errors.py); this module is the boundary that turns them,
and aiohttp's own ``HTTPException``s (unknown route, wrong method, oversized body), into
JSON replies with the right status. Anything unexpected is logged with the method and
path only — never the query string, which may carry ``?token=`` — and answered 500
without internals.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from callstream.errors import ConfigError, ConflictError, LimitError, NotFoundError, StoreError

logger = logging.getLogger("callstream.api")

MAX_BODY_BYTES: Final = 1024 * 1024


class ApiError(Exception):
    """An error the API answers as is (status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unauthorized(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(401, "unauthorized", message)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The one error body shape of the API."""
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


# aiohttp's exceptions for requests that never reach a handler, by status.
_HTTP_CODES: Final = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    headers: dict[str, str] = {}
    if status == 404:
        message = f"no such route: {request.method} {request.path}"
    elif status == 405:
        allowed = exc.headers.get("Allow", "")
        headers["Allow"] = allowed
        message = f"method {request.method} not allowed on {request.path} (allowed: {allowed})"
    elif status == 413:
        message = f"request body is larger than {request.client_max_size} bytes"
    else:
        message = exc.reason
    code = _HTTP_CODES.get(status, exc.reason.lower().replace(" ", "_"))
    return error_response(status, code, message, headers)


def _from_error(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)
    if isinstance(exc, ConfigError):
        return error_response(400, "invalid_request", str(exc))
    if isinstance(exc, NotFoundError):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, ConflictError):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, LimitError):
        return error_response(429, "too_many", str(exc))
    if isinstance(exc, StoreError):
        logger.error("store failed on %s %s: %s", request.method, request.path, exc)
        return error_response(503, "unavailable", "records could not be read or written")
    logger.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal", "internal error (logged on the gateway)")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: turns every exception into the JSON error body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except Exception as exc:
        return _from_error(request, exc)
