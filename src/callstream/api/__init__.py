"""The REST API (issues 3 and 4): calls, flows, inbound routes, SIP trunks, conferences
and media stream records in VoipBin's shapes (api.voipbin.net, ``/v1.0/...``), with
token auth and JSON errors.

``create_api(service, store)`` builds the aiohttp application; the gateway adds its own
routes (``/healthz``) and runs it with ``access_log_class=ApiAccessLogger`` (or no access
log), so no token reaches a log line. Every route is one ``Operation`` in ``OPERATIONS``:
the same table registers the handlers and writes ``/v1.0/openapi.json`` and
``/v1.0/docs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiohttp import web

from callstream.store.base import Store

from . import (
    calls,
    conferences,
    external_media,
    flows,
    media_stream,
    media_streams,
    openapi,
    routes,
    trunks,
)
from .auth import ApiAccessLogger, auth_middleware
from .errors import MAX_BODY_BYTES, error_middleware
from .operations import OPERATIONS_KEY, SERVICE_KEY, STORE_KEY, CallService, Operation, register

__all__ = ["OPERATIONS", "ApiAccessLogger", "CallService", "Operation", "create_api"]

OPERATIONS: Final[tuple[Operation, ...]] = (
    *calls.OPERATIONS,
    *flows.OPERATIONS,
    *routes.OPERATIONS,
    *trunks.OPERATIONS,
    *conferences.OPERATIONS,
    *media_streams.OPERATIONS,
    *media_stream.OPERATIONS,
    *external_media.OPERATIONS,
    *openapi.OPERATIONS,
)

PUBLIC_PATHS: Final = ("/healthz",)


def create_api(
    service: CallService,
    store: Store,
    *,
    public_paths: Iterable[str] = PUBLIC_PATHS,
) -> web.Application:
    """The API application. ``public_paths`` (besides the documentation) need no token:
    routes the caller adds afterwards, such as ``/healthz``."""
    public = {*public_paths, *(op.path for op in OPERATIONS if op.public)}
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(public)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SERVICE_KEY] = service
    app[STORE_KEY] = store
    app[OPERATIONS_KEY] = OPERATIONS
    register(app, OPERATIONS)
    return app
