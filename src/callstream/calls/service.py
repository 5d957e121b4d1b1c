"""The call service: the command interface the API (and later a message bus) uses to
reach live calls and conferences, and the owner of their durable records.

API CONTRACT (the REST API codes against these; all coroutines; ``account`` is the
authenticated ``Account``; another account's ids raise NotFoundError, never leak):

    await service.create_calls(account, *, source: dict, destinations: list[dict],
                               actions: list[dict] | None, flow_id: str | None) -> list[CallRecord]
        One outbound call per destination, each running the actions (validated first:
        ConfigError "action N (type): option.x ..." -> 400) or the stored flow
        (NotFoundError if flow_id is not the account's). Endpoints are {"type": "sip"|"tel",
        "target": ...}; a bad one raises ConfigError naming it ("destinations[1].target: not a
        SIP URI"). Records are written before this returns.
    await service.hangup_call(account, call_id) -> CallRecord     # NotFoundError; an ended
        call is returned as is. Returns after the hangup state is written.
    await service.get_call(account, call_id) -> CallRecord        # NotFoundError
    await service.list_calls(account, *, status, page_size, page_token) -> Page[CallRecord]

    await service.create_conference(account, *, name: str, detail: str) -> ConferenceRecord
    await service.get_conference(account, conference_id) -> ConferenceRecord
    await service.list_conferences(account, *, page_size, page_token) -> Page[ConferenceRecord]
    await service.end_conference(account, conference_id) -> ConferenceRecord
        Participants leave; each call's flow goes on after its conference_join action.
    await service.add_conference_call(account, conference_id, call_id) -> ConferenceRecord
        ConflictError if the call or conference has ended.
    await service.remove_conference_call(account, conference_id, call_id) -> ConferenceRecord

    await service.routes_changed() / service.trunks_changed()
        The API calls these after writing routes/trunks to the store (cache refresh).

Flows, routes and trunks are plain records: the API reads and writes them through the
store directly (validating actions with ``callstream.flows.actions.parse_actions``).
Reads of calls and conferences go through the service so they see every change already
written (the service persists state changes off the media path, in order, and a read
waits for what is pending).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from callstream.calls.call import Call, CallEnded
from callstream.calls.engine import CallRunner, Engine, IncomingCallRouter, RegistrationSpec
from callstream.calls.media_streams import MediaStreams
from callstream.calls.provider_streams import ProviderStreams, number_of
from callstream.calls.streams import (
    StreamBase,
)
from callstream.config import Settings, Trunk, aor_of, parse_host_port, registrar_of
from callstream.endpoints import endpoint_error
from callstream.errors import (
    CallstreamError,
    ConfigError,
    ConflictError,
    NotFoundError,
    SipParseError,
    StoreError,
    TransportError,
)
from callstream.flows.actions import Action, parse_actions
from callstream.flows.plivo_xml import parse_response
from callstream.flows.runner import run_flow
from callstream.io.webhooks import WebhookSender, fetch_answer_xml, plivo_answer_params
from callstream.media.bridge import Bridge
from callstream.media.conference import ConferenceMixer
from callstream.sip.auth import DigestCredentials
from callstream.sip.message import SipRequest
from callstream.sip.uri import SipUri
from callstream.store.base import Page, Store
from callstream.store.records import (
    Account,
    CallRecord,
    CallStatus,
    ConferenceRecord,
    ConferenceStatus,
    HangupReason,
    RouteRecord,
    TrunkRecord,
    utcnow,
)
from callstream.store.writer import RecordWriter

logger = logging.getLogger("callstream.calls")

MAX_DESTINATIONS = 100
CONNECT_ANSWER_TIMEOUT_S = 60.0
FLUSH_TIMEOUT_S = 10.0

HANGUP_REASONS: dict[str, HangupReason] = {
    "normal": HangupReason.NORMAL,
    "bye": HangupReason.NORMAL,
    "shutdown": HangupReason.NORMAL,
    "interrupted": HangupReason.NORMAL,
    "busy": HangupReason.BUSY,
    "noanswer": HangupReason.NOANSWER,
    "canceled": HangupReason.CANCELED,
    "rtp_timeout": HangupReason.TIMEOUT,
    "ack_timeout": HangupReason.TIMEOUT,
    "timeout": HangupReason.TIMEOUT,
}
"""The engine's detailed reasons (kept in the log) mapped onto VoipBin's hangup reasons."""


@dataclass
class _Live:
    """What the service knows of a live call beyond the Call object itself."""

    call: Call
    account_id: str
    source: dict[str, str]
    destination: dict[str, str]
    actions: tuple[dict[str, Any], ...]
    flow_id: str | None
    tm_create: datetime
    tm_ringing: datetime | None = None
    tm_progressing: datetime | None = None
    tm_hangup: datetime | None = None
    conference_id: str | None = None
    peer_leg: Any = None
    """The leg ``connect`` bridged to this call (Voxology's ``transfer`` track)."""
    trunk_media: dict[str, Any] | None = None
    """The trunk's ``media_stream`` setting when the call is on such a trunk."""
    error: str | None = None
    """Why the flow failed (an invalid Plivo answer XML ...), shown on the record."""


@dataclass
class _LiveConference:
    record: ConferenceRecord
    mixer: ConferenceMixer
    members: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    """call id -> resolved when that call leaves the conference."""


class CallService(MediaStreams, ProviderStreams, IncomingCallRouter):
    """Live calls and conferences of one gateway, and their records (see module docs)."""

    def __init__(self, engine: Engine, store: Store, writer: RecordWriter, settings: Settings):
        self.engine = engine
        self.store = store
        self.writer = writer
        self.settings = settings
        self._live: dict[str, _Live] = {}
        self._conferences: dict[str, _LiveConference] = {}
        self._frames_trimmed_by_ended_conferences = 0
        self._routes: list[RouteRecord] = []
        self._route_patterns: dict[str, re.Pattern[str] | None] = {}
        self._trunks: list[TrunkRecord] = []
        self._config_accounts: dict[str, str] = {}
        """config account name -> account id"""
        self._allowed_sources: frozenset[str] = frozenset()
        self._streams: dict[str, StreamBase] = {}
        self._streams_by_owner: dict[str, set[str]] = {}
        """call or conference id -> ids of its live media streams"""
        self._webhooks: WebhookSender | None = None

    # -- start-up ---------------------------------------------------------------------------
    async def close(self) -> None:
        if self._webhooks is not None:
            await self._webhooks.close()

    async def start(self) -> None:
        """Close what a crash left open, then load routes and trunks."""
        self._webhooks = WebhookSender(on_failure=self._webhook_failed)
        ended = await self.store.end_live_calls(HangupReason.GATEWAY_RESTART)
        if ended:
            logger.warning("%d call(s) were live when the gateway stopped: gateway_restart", ended)
        names = {route.account for route in self.settings.routes}
        names |= {trunk.account for trunk in self.settings.trunks}
        for name in sorted(names):
            self._config_accounts[name] = (await self.store.ensure_account(name)).id
        await self.routes_changed()
        await self.trunks_changed()

    async def routes_changed(self) -> None:
        self._routes = await self.store.all_routes()
        self._route_patterns = {
            route.id: re.compile(route.match[3:]) if route.match.startswith("re:") else None
            for route in self._routes
        }

    async def trunks_changed(self) -> None:
        self._trunks = await self.store.all_trunks()
        addresses = {a for trunk in self._trunks for a in trunk.inbound_addresses}
        addresses |= {a for trunk in self.settings.trunks for a in trunk.inbound_addresses}
        self._allowed_sources = frozenset(addresses)
        self.sync_registrations()

    def sync_registrations(self) -> None:
        """Registered at its proxy: every trunk (file or API) with ``register`` set, and no
        other (the engine does nothing before it has started)."""
        trunks: list[TrunkRecord | Trunk] = [*self.settings.trunks, *self._trunks]
        self.engine.set_registrations(
            RegistrationSpec(
                name=trunk.name,
                registrar=registrar_of(trunk.proxy),
                aor=aor_of(trunk.username or "", trunk.proxy),
                expires=trunk.register_expires,
                username=trunk.username or "",
                password=trunk.password,
                transport=trunk.transport,
            )
            for trunk in trunks
            if trunk.register and trunk.username
        )

    # -- records ------------------------------------------------------------------------------
    async def _flushed(self) -> None:
        """Wait until every state change so far is durable, so the API reports only what
        is written; during a database outage, answer 503 rather than hang."""
        try:
            await asyncio.wait_for(asyncio.shield(self.writer.flush()), FLUSH_TIMEOUT_S)
        except TimeoutError:
            raise StoreError(
                f"the database has not accepted writes for {FLUSH_TIMEOUT_S:g} s"
            ) from None

    def _track(self, live: _Live) -> None:
        self._live[live.call.id] = live
        live.call.on_event = self._on_call_event
        self.writer.save_call(self._record(live))

    def _on_call_event(self, call: Call, event: str, fields: dict[str, object]) -> None:
        live = self._live.get(call.id)
        if live is None:
            return
        now = utcnow()
        if event == "ringing" and live.tm_ringing is None:
            live.tm_ringing = now
        elif event == "answered":
            live.tm_progressing = now
            if live.trunk_media is not None:
                self.start_trunk_stream(live, live.trunk_media)
        elif event in ("ended", "rejected"):
            live.tm_hangup = now
        elif event == "dtmf":
            self._stream_dtmf(call.id, str(fields.get("digit", "")))
        self.writer.save_call(self._record(live))
        if event in ("ended", "rejected"):
            self._end_streams(call.id, "the call has ended")
            self._leave_conference(call.id)
            del self._live[call.id]

    def _record(self, live: _Live) -> CallRecord:
        call = live.call
        reason = None
        if call.hangup_reason is not None:
            reason = HANGUP_REASONS.get(call.hangup_reason, HangupReason.FAILED)
        current = call.current_action
        return CallRecord(
            id=call.id,
            account_id=live.account_id,
            direction=call.direction,
            source=live.source,
            destination=live.destination,
            status=CallStatus(call.status.value),
            tm_create=live.tm_create,
            tm_update=utcnow(),
            actions=live.actions,
            flow_id=live.flow_id,
            current_action=dict(current) if current is not None else None,
            hangup_by=call.hangup_by,
            hangup_reason=reason,
            sip_call_id=call.sip_call_id or None,
            codec=call.codec,
            conference_id=live.conference_id,
            tm_ringing=live.tm_ringing,
            tm_progressing=live.tm_progressing,
            tm_hangup=live.tm_hangup,
            error=live.error,
        )

    # -- inbound calls (IncomingCallRouter) -------------------------------------------------------
    def route(self, call: Call, request: SipRequest) -> CallRunner | int:
        """API routes first (by priority), then the config file's; 404 when none match."""
        outcome = self._route(call, request)
        live = self._live.get(call.id)
        if live is not None and call.remote_addr is not None:
            live.trunk_media = self._trunk_media_from(call.remote_addr[0])
        return outcome

    def _trunk_media_from(self, address: str) -> dict[str, Any] | None:
        """The media_stream of the trunk whose inbound addresses include ``address``."""
        trunks: list[TrunkRecord | Trunk] = [*self._trunks, *self.settings.trunks]
        for trunk in trunks:
            if address in trunk.inbound_addresses and trunk.media_stream:
                return dict(trunk.media_stream)
        return None

    def _route(self, call: Call, request: SipRequest) -> CallRunner | int:
        if self._allowed_sources and call.remote_addr is not None:
            if call.remote_addr[0] not in self._allowed_sources:
                return 403
        try:
            user = SipUri.parse(request.uri).user or ""
        except SipParseError:
            return 404
        source = {"type": "sip", "target": call.source}
        destination = {"type": "sip", "target": request.uri}
        for route in self._routes:
            pattern = self._route_patterns.get(route.id)
            if pattern.search(user) if pattern is not None else route.match == user:
                live = _Live(
                    call, route.account_id, source, destination, (), route.flow_id, utcnow()
                )
                self._track(live)
                return lambda call: self._run_stored_flow(live, route.flow_id)
        config_route = self.settings.find_route(user)
        if config_route is None:
            return 404
        account_id = self._config_accounts.get(config_route.account, "")
        live = _Live(
            call, account_id, source, destination, config_route.raw_actions, None, utcnow()
        )
        self._track(live)
        answer_url = config_route.answer_url
        if answer_url is not None:  # Plivo style: the <Response> decides
            method = config_route.answer_method
            return lambda call: self._run_answer_xml(live, url=answer_url, method=method)
        actions = config_route.actions
        return lambda call: self._run(call, actions)

    async def _run_stored_flow(self, live: _Live, flow_id: str) -> None:
        flow = await self.store.get_flow(live.account_id, flow_id)
        if flow is None:
            live.call.log("error", message=f"route's flow {flow_id} no longer exists")
            await live.call.hangup("failed")
            return
        live.actions = flow.actions
        await self._run(live.call, parse_actions(list(flow.actions)))

    async def _run_answer_xml(
        self, live: _Live, *, url: str | None = None, method: str = "POST", xml: str | None = None
    ) -> None:
        """Plivo style: fetch the answer URL's <Response> (or take ``xml``) and run it. A
        document that cannot be fetched or is invalid is recorded on the call, which then
        hangs up (as Plivo does)."""
        call = live.call
        try:
            if call.direction == "inbound":
                await call.answer()
            if xml is None:
                assert url is not None
                params = plivo_answer_params(
                    call_uuid=call.id,
                    from_=number_of(live.source),
                    to=number_of(live.destination),
                    direction=call.direction,
                )
                xml = await fetch_answer_xml(url, method, params)
            raw = parse_response(xml)
            actions = parse_actions(raw)
        except CallstreamError as exc:
            live.error = f"answer XML: {exc}"
            call.log("error", message=live.error)
            await call.hangup("failed")
            return
        live.actions = tuple(raw)
        await self._run(call, actions)

    async def _run(self, call: Call, actions: Sequence[Action]) -> None:
        await run_flow(call, actions, self)

    # -- outbound calls --------------------------------------------------------------------------
    async def create_calls(
        self,
        account: Account,
        *,
        source: dict[str, str],
        destinations: list[dict[str, str]],
        actions: list[dict[str, Any]] | None,
        flow_id: str | None,
        answer_url: str | None = None,
        answer_method: str = "POST",
        xml: str | None = None,
    ) -> list[CallRecord]:
        if answer_url is not None or xml is not None:
            if xml is not None:
                parse_response(xml)  # an invalid document is refused before any call
            parsed: list[Action] = []
            raw: tuple[dict[str, Any], ...] = ()
        else:
            parsed, raw = await self._flow_of(account, actions, flow_id)
        problem = endpoint_error("source", source)
        if problem:
            raise ConfigError(problem)
        if not destinations:
            raise ConfigError("destinations: at least one destination is required")
        if len(destinations) > MAX_DESTINATIONS:
            raise ConfigError(f"destinations: at most {MAX_DESTINATIONS}")
        for index, destination in enumerate(destinations):
            problem = endpoint_error(f"destinations[{index}]", destination)
            if problem:
                raise ConfigError(problem)
            self._sip_target(account.id, destination, f"destinations[{index}]")
        records = []
        for destination in destinations:
            call = await self._dial(account.id, source, destination, raw, flow_id)
            live = self._live.get(call.id)
            if live is not None and (answer_url is not None or xml is not None):
                runner = self._run_answer_xml(live, url=answer_url, method=answer_method, xml=xml)
                self.engine.spawn(self._when_answered(call, runner), f"call-{call.id}")
            else:
                self.engine.spawn(
                    self._when_answered(call, self._run(call, parsed)), f"call-{call.id}"
                )
            records.append(self._record(live) if live is not None else None)
        await self._flushed()
        return [record for record in records if record is not None]

    async def _flow_of(
        self, account: Account, actions: list[dict[str, Any]] | None, flow_id: str | None
    ) -> tuple[list[Action], tuple[dict[str, Any], ...]]:
        if flow_id is not None:
            if actions is not None:
                raise ConfigError("give either actions or flow_id, not both")
            flow = await self.store.get_flow(account.id, flow_id)
            if flow is None:
                raise NotFoundError(f"flow {flow_id} not found")
            return parse_actions(list(flow.actions)), flow.actions
        raw = actions or []
        return parse_actions(raw), tuple(raw)

    def _trunk_for(self, account_id: str) -> TrunkRecord | Trunk | None:
        for trunk in self._trunks:
            if trunk.account_id == account_id:
                return trunk
        for config_trunk in self.settings.trunks:
            if self._config_accounts.get(config_trunk.account) == account_id:
                return config_trunk
        return None

    def _sip_target(
        self, account_id: str, endpoint: dict[str, str], where: str
    ) -> tuple[str, DigestCredentials | None, str]:
        """(Request-URI, credentials, transport) for an endpoint; tel goes via the trunk."""
        if endpoint["type"] == "sip":
            uri = SipUri.parse(endpoint["target"])
            return endpoint["target"], None, uri.transport if uri.transport != "TLS" else "UDP"
        trunk = self._trunk_for(account_id)
        if trunk is None:
            raise ConfigError(f"{where}: a tel destination needs a SIP trunk for this account")
        host, port = parse_host_port(trunk.proxy, "trunk proxy")
        credentials = None
        if trunk.username:
            credentials = DigestCredentials(trunk.username, trunk.password or "")
        host_text = f"[{host}]" if ":" in host else host
        return f"sip:{endpoint['target']}@{host_text}:{port}", credentials, trunk.transport

    def _from_uri(self, source: dict[str, str]) -> str:
        if source["type"] == "sip":
            return source["target"]
        return f"sip:{source['target']}@{self.settings.advertised_host}"

    async def _dial(
        self,
        account_id: str,
        source: dict[str, str],
        destination: dict[str, str],
        raw_actions: tuple[dict[str, Any], ...],
        flow_id: str | None,
    ) -> Call:
        target, credentials, transport = self._sip_target(account_id, destination, "destination")
        try:
            call = await self.engine.place_call(
                target,
                from_uri=self._from_uri(source),
                credentials=credentials,
                transport=transport,
            )
        except TransportError as exc:
            raise ConflictError(f"cannot place the call now: {exc}") from exc
        live = _Live(call, account_id, source, destination, raw_actions, flow_id, utcnow())
        if destination["type"] == "tel":
            trunk = self._trunk_for(account_id)
            live.trunk_media = dict(trunk.media_stream) if trunk and trunk.media_stream else None
        self._track(live)
        return call

    async def _when_answered(self, call: Call, runner: Coroutine[Any, Any, None]) -> None:
        try:
            await asyncio.shield(call.answered)
        except CallEnded:
            runner.close()  # never started
            return
        await runner

    # -- reading and hanging up ----------------------------------------------------------------
    async def get_call(self, account: Account, call_id: str) -> CallRecord:
        await self._flushed()
        record = await self.store.get_call(account.id, call_id)
        if record is None:
            raise NotFoundError(f"call {call_id} not found")
        return record

    async def list_calls(
        self,
        account: Account,
        *,
        status: CallStatus | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[CallRecord]:
        await self._flushed()
        return await self.store.list_calls(
            account.id, status=status, page_size=page_size, page_token=page_token
        )

    async def hangup_call(self, account: Account, call_id: str) -> CallRecord:
        live = self._live.get(call_id)
        if live is not None and live.account_id == account.id:
            await live.call.hangup("normal")
        return await self.get_call(account, call_id)

    # -- conferences -------------------------------------------------------------------------
    async def create_conference(
        self, account: Account, *, name: str, detail: str
    ) -> ConferenceRecord:
        assert self.engine.clock is not None
        now = utcnow()
        record = ConferenceRecord(
            id=str(uuid.uuid4()),
            account_id=account.id,
            name=name,
            detail=detail,
            status=ConferenceStatus.PROGRESSING,
            call_ids=(),
            tm_create=now,
            tm_update=now,
        )
        clock = self.engine.clock
        mixer = ConferenceMixer(
            clock=asyncio.get_running_loop().time,
            advance_tick=lambda seconds: clock.advance(mixer, seconds),
            run_early=lambda within_s: clock.run_early(mixer, within_s),
        )
        clock.add(mixer, early=True)  # mixes before the legs read it
        self._conferences[record.id] = _LiveConference(record, mixer)
        self.writer.save_conference(record)
        await self._flushed()
        return record

    def conference_frames_trimmed(self) -> int:
        """Frames every conference so far dropped from an inbox that held one too many
        for 0.5 s (``ConferenceMixer.standing_frames_trimmed``)."""
        live = sum(c.mixer.standing_frames_trimmed for c in self._conferences.values())
        return self._frames_trimmed_by_ended_conferences + live

    async def get_conference(self, account: Account, conference_id: str) -> ConferenceRecord:
        await self._flushed()
        record = await self.store.get_conference(account.id, conference_id)
        if record is None:
            raise NotFoundError(f"conference {conference_id} not found")
        return record

    async def list_conferences(
        self, account: Account, *, page_size: int = 50, page_token: str | None = None
    ) -> Page[ConferenceRecord]:
        await self._flushed()
        return await self.store.list_conferences(
            account.id, page_size=page_size, page_token=page_token
        )

    def _live_conference(self, account_id: str, conference_id: str) -> _LiveConference:
        live = self._conferences.get(conference_id)
        if live is None or live.record.account_id != account_id:
            raise NotFoundError(f"conference {conference_id} not found or not in progress")
        return live

    async def end_conference(self, account: Account, conference_id: str) -> ConferenceRecord:
        live = self._conferences.get(conference_id)
        if live is None or live.record.account_id != account.id:
            return await self.get_conference(account, conference_id)  # 404, or ended already
        for call_id in list(live.members):
            self._leave_conference(call_id)
        self._end_streams(conference_id, "the conference has ended")
        live.mixer.close()
        if self.engine.clock is not None:
            self.engine.clock.discard(live.mixer)
        self._frames_trimmed_by_ended_conferences += live.mixer.standing_frames_trimmed
        del self._conferences[conference_id]
        now = utcnow()
        record = live.record.evolve(
            status=ConferenceStatus.TERMINATED, call_ids=(), tm_update=now, tm_end=now
        )
        self.writer.save_conference(record)
        await self._flushed()
        return record

    async def add_conference_call(
        self, account: Account, conference_id: str, call_id: str
    ) -> ConferenceRecord:
        conference = self._live_conference(account.id, conference_id)
        live = self._live.get(call_id)
        if live is None or live.account_id != account.id:
            await self.get_call(account, call_id)  # 404 for a stranger's or unknown id
            raise ConflictError(f"call {call_id} has ended")
        if not live.call.is_answered:
            raise ConflictError(f"call {call_id} is not answered yet")
        self._join(conference, live)
        await self._flushed()
        return conference.record

    async def remove_conference_call(
        self, account: Account, conference_id: str, call_id: str
    ) -> ConferenceRecord:
        conference = self._live_conference(account.id, conference_id)
        if call_id not in conference.members:
            raise NotFoundError(f"call {call_id} is not in conference {conference_id}")
        self._leave_conference(call_id)
        await self._flushed()
        return conference.record

    def _join(self, conference: _LiveConference, live: _Live) -> asyncio.Future[None]:
        call = live.call
        existing = conference.members.get(call.id)
        if existing is not None:
            return existing
        if live.conference_id is not None:
            self._leave_conference(call.id)
        assert call.leg is not None
        conference.mixer.add(call.id, call.leg)
        left: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        conference.members[call.id] = left
        live.conference_id = conference.record.id
        self._conference_changed(conference)
        call.log("conference_joined", conference_id=conference.record.id)
        return left

    def _leave_conference(self, call_id: str) -> None:
        for conference in self._conferences.values():
            left = conference.members.pop(call_id, None)
            if left is None:
                continue
            conference.mixer.remove(call_id)
            if not left.done():
                left.set_result(None)
            live = self._live.get(call_id)
            if live is not None:
                live.conference_id = None
                live.call.log("conference_left", conference_id=conference.record.id)
            self._conference_changed(conference)

    def _conference_changed(self, conference: _LiveConference) -> None:
        conference.record = conference.record.evolve(
            call_ids=tuple(conference.members), tm_update=utcnow()
        )
        self.writer.save_conference(conference.record)

    # -- FlowContext -------------------------------------------------------------------------
    async def join_conference(self, call: Call, conference_id: str) -> None:
        live = self._live.get(call.id)
        if live is None:
            raise CallEnded("call is over")
        conference = self._live_conference(live.account_id, conference_id)
        await call.answer()
        await call.until_ended(asyncio.shield(self._join(conference, live)))

    async def connect(
        self,
        call: Call,
        *,
        source: dict[str, str] | None,
        destinations: list[dict[str, str]],
        early_media: bool,
        relay_reason: bool,
    ) -> None:
        """Dial every destination; bridge the first to answer; return when it hangs up."""
        live = self._live.get(call.id)
        if live is None:
            raise CallEnded("call is over")
        caller = source or live.destination
        legs = []
        for destination in destinations:
            try:
                legs.append(await self._dial(live.account_id, caller, destination, (), None))
            except (ConfigError, ConflictError) as exc:
                call.log("error", action="connect", message=str(exc))
        if not legs:
            return
        winner = await self._first_answer(call, legs)
        if winner is None:
            return
        await call.answer()
        assert call.leg is not None and winner.leg is not None
        bridge = Bridge(call.leg, winner.leg)
        call.log("connected", peer_call_id=winner.id)
        self.peer_joined(call.id, winner.leg)
        try:
            await call.until_ended(asyncio.shield(winner.ended))
        except CallEnded:
            await winner.hangup("normal")
            raise
        finally:
            bridge.close()
            self.peer_left(call.id)

    async def _first_answer(self, call: Call, legs: list[Call]) -> Call | None:
        pending = {asyncio.ensure_future(asyncio.shield(leg.answered)): leg for leg in legs}
        winner = None
        try:
            while pending and winner is None:
                done, _ = await call.until_ended(
                    asyncio.wait(
                        set(pending),
                        timeout=CONNECT_ANSWER_TIMEOUT_S,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                )
                if not done:
                    break
                for future in done:
                    leg = pending.pop(future)
                    if future.exception() is None and winner is None:
                        winner = leg
        finally:
            for future, leg in pending.items():
                future.cancel()
                await leg.hangup("canceled")
            if winner is None:
                for leg in legs:
                    await leg.hangup("noanswer")
        return winner
