"""The media-stream half of the call service (a mixin of ``CallService``): streams the
application opens (``/media_stream``), external media the gateway dials, their limits,
records, DTMF fan-out and their end with the call. See calls/streams.py for a stream's
own life and calls/dialer.py for dialling.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callstream.calls.call import Call, CallEnded
from callstream.calls.dialer import DialedStream
from callstream.calls.streams import (
    CLOSE_NORMAL,
    ConferenceTarget,
    LegTarget,
    MediaStream,
    StreamBase,
    StreamTarget,
)
from callstream.config import Settings
from callstream.errors import ConfigError, ConflictError, LimitError, NotFoundError
from callstream.io.websocket import client_ssl_context
from callstream.store.base import Page, Store
from callstream.store.records import Account, CallRecord, ConferenceRecord, MediaStreamRecord
from callstream.store.writer import RecordWriter
from callstream.wire import WIRES
from callstream.wire.base import Message, Wire

if TYPE_CHECKING:
    from callstream.calls.engine import Engine
    from callstream.calls.service import _Live, _LiveConference


@dataclass(frozen=True)
class PreparedStream:
    """A stream that passed every check and waits for its socket."""

    account_id: str
    call_id: str | None
    conference_id: str | None
    owner_id: str
    wire: Wire
    target: StreamTarget
    encapsulation: str
    format: str | None


class MediaStreams:
    """Media streams of live calls and conferences (mixed into CallService)."""

    engine: Engine
    store: Store
    writer: RecordWriter
    settings: Settings
    _live: dict[str, _Live]
    _conferences: dict[str, _LiveConference]
    _streams: dict[str, StreamBase]
    _streams_by_owner: dict[str, set[str]]

    async def get_call(self, account: Account, call_id: str) -> CallRecord:
        raise NotImplementedError

    async def get_conference(self, account: Account, conference_id: str) -> ConferenceRecord:
        raise NotImplementedError

    async def _flushed(self) -> None:
        raise NotImplementedError

    # -- media streams ----------------------------------------------------------------------
    async def prepare_stream(
        self,
        account: Account,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        encapsulation: str | None,
        options: dict[str, str],
    ) -> PreparedStream:
        """Every check a stream must pass before its WebSocket opens (HTTP refusals):
        NotFoundError 404, ConflictError 409 (ended), ConfigError 400, LimitError 429."""
        if call_id is not None:
            live = self._live.get(call_id)
            if live is None or live.account_id != account.id:
                await self.get_call(account, call_id)  # 404 unless it is the account's
                raise ConflictError(f"call {call_id} has ended")
            assert live.call.leg is not None
            target: StreamTarget = LegTarget(live.call.leg)
            owner = call_id
        else:
            assert conference_id is not None
            conference = self._conferences.get(conference_id)
            if conference is None or conference.record.account_id != account.id:
                await self.get_conference(account, conference_id)
                raise ConflictError(f"conference {conference_id} has ended")
            target = ConferenceTarget(conference.mixer)
            owner = conference_id
        if not encapsulation:
            raise ConfigError("encapsulation: required (rtp, sln or audiosocket)")
        wire_class = WIRES.get(encapsulation)
        if wire_class is None:
            known = ", ".join(sorted(WIRES))
            raise ConfigError(f"encapsulation: {encapsulation!r} is not one of {known}")
        limit = self.settings.max_streams_per_call
        if len(self._streams_by_owner.get(owner, ())) >= limit:
            raise LimitError(f"{owner} already has {limit} media streams (the limit)")
        stream_id = uuid.uuid4()
        wire = wire_class(stream_id=stream_id, options=options)
        return PreparedStream(
            account.id, call_id, conference_id, owner, wire, target, encapsulation,
            options.get("format"),
        )  # fmt: skip

    def start_stream(
        self,
        prepared: PreparedStream,
        *,
        send: Callable[[Message], None],
        close: Callable[[int, str], None],
        direction: str = "inbound",
        url: str | None = None,
    ) -> MediaStream:
        stream = self.create_stream(prepared, send=send, close=close, direction=direction, url=url)
        self.attach_stream(stream)
        return stream

    def create_stream(
        self,
        prepared: PreparedStream,
        *,
        send: Callable[[Message], None],
        close: Callable[[int, str], None],
        direction: str,
        url: str | None,
    ) -> MediaStream:
        stream = MediaStream(
            account_id=prepared.account_id,
            wire=prepared.wire,
            target=prepared.target,
            send=send,
            close=close,
            call_id=prepared.call_id,
            conference_id=prepared.conference_id,
            direction=direction,
            url=url,
            encapsulation=prepared.encapsulation,
            format=prepared.format,
            max_buffer_s=self.settings.stream_buffer_seconds,
            on_change=self._stream_changed,
        )
        self._register_stream(stream, prepared.owner_id)
        return stream

    def _register_stream(self, stream: StreamBase, owner_id: str) -> None:
        self._streams[str(stream.id)] = stream
        self._streams_by_owner.setdefault(owner_id, set()).add(str(stream.id))
        self.writer.save_stream(stream.record())

    def attach_stream(self, stream: StreamBase) -> None:
        """The socket is open: start the audio, unless the call ended meanwhile."""
        owner = stream.call_id or stream.conference_id or ""
        if owner not in self._live and owner not in self._conferences:
            stream.end(CLOSE_NORMAL, "the call has ended", say_goodbye=True)
            return
        stream.start()
        if stream.call_id is not None:
            self._live[stream.call_id].call.log(
                "stream_started", stream_id=stream.id, encapsulation=stream.encapsulation
            )

    def _stream_changed(self, stream: StreamBase) -> None:
        self.writer.save_stream(stream.record())
        if stream.status in ("ended", "failed"):
            key = str(stream.id)
            self._streams.pop(key, None)
            owner = stream.call_id or stream.conference_id or ""
            owned = self._streams_by_owner.get(owner)
            if owned is not None:
                owned.discard(key)
                if not owned:
                    del self._streams_by_owner[owner]

    def _end_streams(self, owner: str, reason: str) -> None:
        for key in list(self._streams_by_owner.get(owner, ())):
            stream = self._streams.get(key)
            if stream is not None:
                stream.end(CLOSE_NORMAL, reason, say_goodbye=True)

    def _stream_dtmf(self, call_id: str, digit: str) -> None:
        for key in self._streams_by_owner.get(call_id, ()):
            stream = self._streams.get(key)
            if stream is not None:
                stream.on_dtmf(digit)

    async def list_media_streams(
        self,
        account: Account,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[MediaStreamRecord]:
        await self._flushed()
        return await self.store.list_streams(
            account.id,
            call_id=call_id,
            conference_id=conference_id,
            page_size=page_size,
            page_token=page_token,
        )

    async def get_media_stream(self, account: Account, stream_id: str) -> MediaStreamRecord:
        await self._flushed()
        record = await self.store.get_stream(account.id, stream_id)
        if record is None:
            raise NotFoundError(f"media stream {stream_id} not found")
        return record

    # -- external media: the gateway dials out ---------------------------------------------
    async def start_external_media(
        self,
        account: Account,
        *,
        call_id: str | None = None,
        conference_id: str | None = None,
        url: str,
        encapsulation: str,
        format: str | None = None,
    ) -> MediaStreamRecord:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError("url: must be a ws:// or wss:// URL")
        options = {"format": format} if format else {}
        prepared = await self.prepare_stream(
            account,
            call_id=call_id,
            conference_id=conference_id,
            encapsulation=encapsulation,
            options=options,
        )
        dialer = DialedStream(
            url,
            lambda send, close: self.create_stream(
                prepared, send=send, close=close, direction="outbound", url=url
            ),
            attach=self.attach_stream,
            ssl_context=client_ssl_context(self.settings.tls_ca or None),
            log=self._log_on_call,
        )
        stream = dialer.stream
        self.engine.spawn(dialer.run(), f"external-media-{stream.id}")
        await self._flushed()
        return stream.record()

    async def stop_external_media(
        self, account: Account, owner_id: str, media_id: str | None = None
    ) -> list[MediaStreamRecord]:
        """Stop one (or, with no id, every) dialled-out stream of a call or conference."""
        stopped = []
        for key in list(self._streams_by_owner.get(owner_id, ())):
            stream = self._streams.get(key)
            if stream is None or stream.account_id != account.id:
                continue
            if stream.direction != "outbound" or media_id not in (None, key):
                continue
            stream.end(CLOSE_NORMAL, "external media stopped")
            stopped.append(stream.record())
        if media_id is not None and not stopped:
            raise NotFoundError(f"external media {media_id} not found on {owner_id}")
        await self._flushed()
        return stopped

    # -- FlowContext: external media -------------------------------------------------------
    async def external_media_start(
        self, call: Call, *, url: str, encapsulation: str, format: str | None
    ) -> str:
        live = self._live.get(call.id)
        if live is None:
            raise CallEnded("call is over")
        account = Account(id=live.account_id, name="", tm_create=live.tm_create)
        record = await self.start_external_media(
            account, call_id=call.id, url=url, encapsulation=encapsulation, format=format
        )
        return record.id

    def _log_on_call(self, call_id: str | None, event: str, **fields: object) -> None:
        live = self._live.get(call_id or "")
        if live is not None:
            live.call.log(event, **fields)

    async def media_finished(self, call: Call) -> None:
        while True:
            live = [
                stream
                for key in self._streams_by_owner.get(call.id, ())
                # only VoipBin's external media keeps a finished flow's call up: a
                # Plivo document or Voxology script that ends hangs up, as there
                if isinstance(stream := self._streams.get(key), MediaStream)
                and stream.direction == "outbound"
            ]
            if not live:
                return
            await asyncio.wait([asyncio.shield(s.finished) for s in live])

    async def external_media_stop(self, call: Call, media_id: str | None) -> None:
        live = self._live.get(call.id)
        if live is None:
            raise CallEnded("call is over")
        account = Account(id=live.account_id, name="", tm_create=live.tm_create)
        await self.stop_external_media(account, call.id, media_id)
