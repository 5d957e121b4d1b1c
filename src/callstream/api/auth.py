"""Token authentication: ``Authorization: Bearer <token>`` or ``?token=`` (as VoipBin's
examples do). The store compares hashes in constant time; the token itself is never
logged — ``ApiAccessLogger`` writes the path without its query string.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from .errors import Unauthorized
from .operations import ACCOUNT_KEY, STORE_KEY

MAX_TOKEN_LENGTH: Final = 512

access_logger = logging.getLogger("callstream.api.access")


def request_token(request: web.Request) -> str:
    """The token the request carries; raises Unauthorized when there is none."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return token.strip()
    token = request.query.get("token", "")
    if not token:
        raise Unauthorized("an API token is required: ?token= or Authorization: Bearer")
    return token


def auth_middleware(public_paths: Iterable[str]) -> Middleware:
    """Sets the request's account; paths in ``public_paths`` (and unknown routes, which
    answer 404/405 anyway) need no token."""
    exempt = frozenset(public_paths)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt or request.match_info.http_exception is not None:
            return await handler(request)
        token = request_token(request)
        account = None
        if len(token) <= MAX_TOKEN_LENGTH:
            account = await request.app[STORE_KEY].account_for_token(token)
        if account is None:
            raise Unauthorized("the API token is not valid")
        request[ACCOUNT_KEY] = account
        return await handler(request)

    return authenticate


class ApiAccessLogger(AbstractAccessLogger):
    """One line per request: method, path (never the query: it may hold the token),
    status, size and time. Use it as ``web.AppRunner(app, access_log_class=...)``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %d %.1fms",
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
