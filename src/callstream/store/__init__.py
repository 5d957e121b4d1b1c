"""Durable records of callstream: accounts and tokens, calls, flows, routes, trunks,
conferences, media streams. ``open_store(url)`` gives the ``Store``; ``RecordWriter``
persists call, conference and media stream records off the media path. Only this
package touches the database."""

from callstream.store.base import Page, Store
from callstream.store.records import (
    Account,
    CallRecord,
    CallStatus,
    ConferenceRecord,
    ConferenceStatus,
    FlowRecord,
    HangupReason,
    MediaStreamRecord,
    RouteRecord,
    StreamDirection,
    StreamStatus,
    TrunkRecord,
    utcnow,
)
from callstream.store.sql import SqlStore, open_store
from callstream.store.writer import RecordWriter

__all__ = [
    "Account",
    "CallRecord",
    "CallStatus",
    "ConferenceRecord",
    "ConferenceStatus",
    "FlowRecord",
    "HangupReason",
    "MediaStreamRecord",
    "Page",
    "RecordWriter",
    "RouteRecord",
    "SqlStore",
    "Store",
    "StreamDirection",
    "StreamStatus",
    "TrunkRecord",
    "open_store",
    "utcnow",
]
