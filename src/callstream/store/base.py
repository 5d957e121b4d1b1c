"""The store's interface: everything callstream keeps, behind one abstract class.

``SqlStore`` (store/sql.py: SQLAlchemy async, SQLite by default, PostgreSQL with
asyncpg, schema by Alembic) implements it. Only ``store/`` touches the database
(ARCHITECTURE invariant). Every method scoped to an account takes ``account_id`` and
never returns another account's rows: a lookup of someone else's id gives None.

Pagination follows VoipBin: newest first; ``page_token`` is the opaque
``next_page_token`` of the previous page (None for the first page); a page shorter than
``page_size`` has ``next_page_token`` None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from callstream.store.records import (
    Account,
    CallRecord,
    CallStatus,
    ConferenceRecord,
    FlowRecord,
    HangupReason,
    MediaStreamRecord,
    RouteRecord,
    TrunkRecord,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    result: list[T]
    next_page_token: str | None


class Store(ABC):
    """Durable records. All methods are coroutines; all raise nothing but StoreError
    (errors.py) for database failures, and ValueError for a malformed page token."""

    # -- lifecycle ---------------------------------------------------------------------
    @abstractmethod
    async def close(self) -> None: ...

    # -- accounts and tokens -----------------------------------------------------------
    @abstractmethod
    async def create_token(self, account_name: str) -> tuple[Account, str]:
        """Create the account if needed and a new API token for it; returns the token
        in clear (the only time it exists in clear: only its SHA-256 is stored)."""

    @abstractmethod
    async def revoke_token(self, token: str) -> bool:
        """False when no such (unrevoked) token exists."""

    @abstractmethod
    async def account_for_token(self, token: str) -> Account | None:
        """The account of a valid, unrevoked token (hash compared in constant time)."""

    @abstractmethod
    async def get_account_by_name(self, name: str) -> Account | None: ...

    @abstractmethod
    async def ensure_account(self, name: str) -> Account:
        """The account of that name, created (with no token) if it does not exist; the
        owner of calls that arrive on routes from the config file."""

    # -- calls -------------------------------------------------------------------------
    @abstractmethod
    async def save_call(self, record: CallRecord) -> None:
        """Insert or replace (by id) the whole record."""

    @abstractmethod
    async def get_call(self, account_id: str, call_id: str) -> CallRecord | None: ...

    @abstractmethod
    async def list_calls(
        self,
        account_id: str,
        *,
        status: CallStatus | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[CallRecord]: ...

    @abstractmethod
    async def end_live_calls(self, reason: HangupReason) -> int:
        """At start-up: every call not in ``hangup`` becomes hangup with this reason,
        hangup_by "local", tm_hangup now. Conferences still progressing become
        terminated. Media streams neither ended nor failed become ended, tm_end now,
        with the reason's value as close_reason (close_code kept). Returns the number
        of calls changed."""

    # -- flows -------------------------------------------------------------------------
    @abstractmethod
    async def save_flow(self, record: FlowRecord) -> None: ...

    @abstractmethod
    async def get_flow(self, account_id: str, flow_id: str) -> FlowRecord | None: ...

    @abstractmethod
    async def list_flows(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[FlowRecord]: ...

    @abstractmethod
    async def delete_flow(self, account_id: str, flow_id: str) -> bool: ...

    # -- inbound routes ----------------------------------------------------------------
    @abstractmethod
    async def save_route(self, record: RouteRecord) -> None: ...

    @abstractmethod
    async def get_route(self, account_id: str, route_id: str) -> RouteRecord | None: ...

    @abstractmethod
    async def list_routes(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[RouteRecord]: ...

    @abstractmethod
    async def delete_route(self, account_id: str, route_id: str) -> bool: ...

    @abstractmethod
    async def all_routes(self) -> list[RouteRecord]:
        """Every account's routes, by priority then age: the inbound router caches these."""

    # -- trunks ------------------------------------------------------------------------
    @abstractmethod
    async def save_trunk(self, record: TrunkRecord) -> None: ...

    @abstractmethod
    async def get_trunk(self, account_id: str, trunk_id: str) -> TrunkRecord | None: ...

    @abstractmethod
    async def list_trunks(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[TrunkRecord]: ...

    @abstractmethod
    async def delete_trunk(self, account_id: str, trunk_id: str) -> bool: ...

    @abstractmethod
    async def all_trunks(self) -> list[TrunkRecord]: ...

    # -- conferences -------------------------------------------------------------------
    @abstractmethod
    async def save_conference(self, record: ConferenceRecord) -> None: ...

    @abstractmethod
    async def get_conference(
        self, account_id: str, conference_id: str
    ) -> ConferenceRecord | None: ...

    @abstractmethod
    async def list_conferences(
        self, account_id: str, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[ConferenceRecord]: ...

    # -- media streams -----------------------------------------------------------------
    @abstractmethod
    async def save_stream(self, record: MediaStreamRecord) -> None:
        """Insert or replace (by id) the whole record."""

    # -- batches -----------------------------------------------------------------------
    async def save_many(
        self, records: Sequence[CallRecord | ConferenceRecord | MediaStreamRecord]
    ) -> None:
        """Save each record as its ``save_*`` would, in order, all or none.

        Stores with transactions override this to write them in one transaction;
        this default saves one by one (not atomic).
        """
        for record in records:
            if isinstance(record, CallRecord):
                await self.save_call(record)
            elif isinstance(record, ConferenceRecord):
                await self.save_conference(record)
            else:
                await self.save_stream(record)

    @abstractmethod
    async def get_stream(self, account_id: str, stream_id: str) -> MediaStreamRecord | None: ...

    @abstractmethod
    async def list_streams(
        self,
        account_id: str,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[MediaStreamRecord]:
        """The account's streams, newest first; ``call_id``/``conference_id`` keep only
        the streams of that call/conference (both given: streams matching both)."""
