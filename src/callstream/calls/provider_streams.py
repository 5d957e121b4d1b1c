"""Provider streams with tracks (a mixin of ``CallService``): Voxology's ``STREAM`` and
SIP-trunk streams (seed 003), Plivo's ``<Stream>`` with its status callbacks (seed 004).

The gateway dials the application (calls/dialer.py) and sends JSON per track
(calls/tracked.py + wire/voxology.py, wire/plivo.py). Tracks on the connected leg
(Voxology ``transfer``) begin when ``connect``/``TRANSFER`` bridges a party and stop
when it leaves. Plivo's callbacks — StartStream (first audio sent), StopStream (stopped
or timed out), DroppedStream (could not connect, or dropped mid-call), Played (the
queued audio has played) — go out through one ``WebhookSender`` beside the media
path; failures are logged on the call, never felt by it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from callstream.calls.call import Call, CallEnded
from callstream.calls.dialer import DialedStream
from callstream.calls.streams import StreamBase
from callstream.calls.tracked import TrackedStream
from callstream.config import Settings
from callstream.io.webhooks import (
    ERROR_DISCONNECTED,
    ERROR_NOT_CONNECTED,
    WebhookFailure,
    WebhookSender,
    plivo_callback_params,
)
from callstream.io.websocket import client_ssl_context
from callstream.sip.uri import SipUri
from callstream.store.records import utcnow
from callstream.wire import plivo, voxology
from callstream.wire.tracks import StreamMeta, TrackWire

if TYPE_CHECKING:
    from callstream.calls.engine import Engine
    from callstream.calls.service import _Live

DEFAULT_VOXOLOGY_TRACKS = ("caller", "transfer")
TRUNK_TRACKS = ("near", "far")


def number_of(endpoint: Mapping[str, str]) -> str:
    """The number or user of a VoipBin endpoint ("+1555..." or the SIP URI's user)."""
    target = endpoint.get("target", "")
    if endpoint.get("type") == "tel":
        return target
    try:
        return SipUri.parse(target).user or target
    except Exception:
        return target


class ProviderStreams:
    """Voxology and Plivo streams of live calls (mixed into CallService)."""

    engine: Engine
    settings: Settings
    _live: dict[str, _Live]
    _streams: dict[str, StreamBase]
    _streams_by_owner: dict[str, set[str]]
    _webhooks: WebhookSender | None

    def _stream_changed(self, stream: StreamBase) -> None:
        raise NotImplementedError

    def attach_stream(self, stream: StreamBase) -> None:
        raise NotImplementedError

    def _log_on_call(self, call_id: str | None, event: str, **fields: object) -> None:
        raise NotImplementedError

    def _register_stream(self, stream: StreamBase, owner_id: str) -> None:
        raise NotImplementedError

    # -- FlowContext -------------------------------------------------------------------
    async def stream_start(self, call: Call, *, protocol: str, option: Mapping[str, Any]) -> None:
        """Start a provider stream; with Plivo's keepCallAlive, return when it ends."""
        live = self._live.get(call.id)
        if live is None or call.leg is None:
            raise CallEnded("call is over")
        meta = self._meta(live, str(option.get("name") or ""), "programmable_voice")
        wire: TrackWire
        if protocol == "voxology":
            tracks = tuple(option.get("tracks") or DEFAULT_VOXOLOGY_TRACKS)
            wire = voxology.VoxologyWire(meta=meta, tracks=tracks, options=option)
            stream = self._dial_tracked(live, wire, voxology.TRACK_SOURCES, str(option["url"]))
        else:
            tracks = plivo.tracks_for(str(option.get("audio_track", "inbound")))
            wire = plivo.PlivoWire(meta=meta, tracks=tracks, options=option)
            stream = self._dial_tracked(
                live, wire, plivo.TRACK_SOURCES, str(option["url"]), plivo_option=option
            )
        if option.get("keep_call_alive"):
            await call.until_ended(asyncio.shield(stream.finished))

    async def stream_stop(self, call: Call, *, protocol: str, option: Mapping[str, Any]) -> None:
        """Stop the call's streams of ``protocol`` (only ``option.url``'s, when given)."""
        url = option.get("url")
        for stream in self._tracked_of(call.id):
            if stream.encapsulation != protocol or (url and stream.url != url):
                continue
            if "stream_data" in option:  # Voxology: what end_stream carries
                stream.wire.stream_data = option["stream_data"]
            self._plivo_event(stream, "StopStream")
            stream.stop("stopped by the flow")

    # -- starting ----------------------------------------------------------------------
    def _meta(self, live: _Live, name: str, service: str) -> StreamMeta:
        ours, theirs = live.destination, live.source
        if live.call.direction == "outbound":
            ours, theirs = live.source, live.destination
        return StreamMeta(
            stream_id=str(uuid.uuid4()),
            call_id=live.call.id,
            account_id=live.account_id,
            direction=live.call.direction,
            from_number=number_of(theirs),
            to_number=number_of(ours),
            stream_name=name,
            service=service,
        )

    def _dial_tracked(
        self,
        live: _Live,
        wire: TrackWire,
        sources: Mapping[str, tuple[str, str]],
        url: str,
        *,
        plivo_option: Mapping[str, Any] | None = None,
    ) -> TrackedStream:
        call = live.call
        assert call.leg is not None
        holder: list[TrackedStream] = []

        def make(send: Any, close: Any) -> TrackedStream:
            stream = TrackedStream(
                wire=wire,
                call_leg=call.leg,  # type: ignore[arg-type]
                sources=sources,
                stream_id=uuid.UUID(wire.meta.stream_id),
                account_id=live.account_id,
                send=send,
                close=close,
                call_id=call.id,
                direction="outbound",
                url=url,
                encapsulation=wire.name,
                format=str(plivo_option.get("content_type")) if plivo_option else None,
                max_buffer_s=self.settings.stream_buffer_seconds,
                on_change=self._stream_changed,
                on_played=lambda: self._plivo_event(holder[0], "Played"),
                on_first_audio=lambda: self._plivo_event(holder[0], "StartStream"),
            )
            stream.plivo_option = plivo_option
            holder.append(stream)
            return stream

        dialer = DialedStream(
            url,
            make,
            attach=self._attach_tracked,
            ssl_context=client_ssl_context(self.settings.tls_ca or None),
            log=self._log_on_call,
            on_failed=lambda error: self._plivo_event(
                holder[0], "DroppedStream", ERROR_NOT_CONNECTED
            ),
            on_dropped=lambda: self._plivo_event(holder[0], "DroppedStream", ERROR_DISCONNECTED),
        )
        stream = dialer.stream
        assert isinstance(stream, TrackedStream)
        self._register_stream(stream, call.id)
        self.engine.spawn(dialer.run(), f"{wire.name}-stream-{stream.id}")
        if plivo_option is not None:
            self._arm_timeout(stream, float(plivo_option.get("timeout_s") or 86400))
        return stream

    def _attach_tracked(self, stream: StreamBase) -> None:
        self.attach_stream(stream)
        live = self._live.get(stream.call_id or "")
        if isinstance(stream, TrackedStream) and live is not None and live.peer_leg is not None:
            stream.peer_joined(live.peer_leg)

    def _arm_timeout(self, stream: TrackedStream, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()

        def expire() -> None:
            if not stream.finished.done():
                self._plivo_event(stream, "StopStream")
                stream.stop("stream timeout")

        handle = loop.call_later(timeout_s, expire)
        stream.finished.add_done_callback(lambda _: handle.cancel())

    # -- tracks of the connected leg -------------------------------------------------------
    def _tracked_of(self, call_id: str) -> list[TrackedStream]:
        return [
            stream
            for key in self._streams_by_owner.get(call_id, ())
            if isinstance(stream := self._streams.get(key), TrackedStream)
        ]

    def peer_joined(self, call_id: str, leg: Any) -> None:
        live = self._live.get(call_id)
        if live is not None:
            live.peer_leg = leg
        for stream in self._tracked_of(call_id):
            stream.peer_joined(leg)

    def peer_left(self, call_id: str) -> None:
        live = self._live.get(call_id)
        if live is not None:
            live.peer_leg = None
        for stream in self._tracked_of(call_id):
            stream.peer_left()

    # -- SIP trunk streams (Voxology) ----------------------------------------------------------
    def start_trunk_stream(self, live: _Live, media_stream: Mapping[str, Any]) -> None:
        """Every call on a trunk with ``media_stream`` streams from answer to hangup."""
        tracks = tuple(media_stream.get("tracks") or TRUNK_TRACKS)
        meta = self._meta(live, str(media_stream.get("name") or "sip_trunk"), "sip_trunk")
        options = {"stream_data": media_stream.get("stream_data")}
        try:
            wire = voxology.VoxologyWire(meta=meta, tracks=tracks, options=options)
        except Exception as exc:  # a bad trunk setting: logged on the call, never felt
            live.call.log("error", message=f"trunk media_stream: {exc}")
            return
        self._dial_tracked(live, wire, voxology.TRACK_SOURCES, str(media_stream["url"]))

    # -- Plivo status callbacks ------------------------------------------------------------------
    def _plivo_event(self, stream: StreamBase, event: str, error: str = "") -> None:
        option = getattr(stream, "plivo_option", None)
        if not option or not option.get("status_callback_url") or self._webhooks is None:
            return
        live = self._live.get(stream.call_id or "")
        params = plivo_callback_params(
            event,
            stream_id=str(stream.id),
            call_uuid=stream.call_id or "",
            from_=number_of(live.source) if live else "",
            to=number_of(live.destination) if live else "",
            service_url=stream.url or "",
            extra_headers=str(option.get("extra_headers") or ""),
            error=error,
            timestamp=utcnow(),
        )
        self._webhooks.send(
            str(option["status_callback_url"]),
            str(option.get("status_callback_method") or "POST"),
            params,
        )

    def _webhook_failed(self, failure: WebhookFailure) -> None:
        self._log_on_call(None, "error", message=f"status callback failed: {failure}")
