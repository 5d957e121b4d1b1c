"""The call engine: one SIP agent, its transports, the RTP port pool and the media clock,
turned into Calls with Legs.

Both the gateway (``app.py``) and the softphone (``softphone.py``) run on it: they differ
only in the ``IncomingCallRouter`` that decides what an inbound call does. The engine
maps SIP events to call state, does SDP offer/answer (RFC 3264), and performs the SIP
side of ``Call`` operations (answer, early media, hang-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from callstream.calls.call import Call, CallStatus, log_call_event
from callstream.calls.leg import Leg
from callstream.errors import SdpError, SipParseError, TransportError
from callstream.io.rtp import RtpPortPool, RtpSocket
from callstream.io.sip import SipTransport
from callstream.media.clock import MediaClock
from callstream.sip import agent as sip
from callstream.sip.auth import DigestCredentials
from callstream.sip.message import SipRequest
from callstream.sip.sdp import (
    NegotiatedMedia,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
)
from callstream.sip.uri import NameAddr

logger = logging.getLogger("callstream.calls")

FAILURE_REASONS = {486: "busy", 600: "busy", 408: "noanswer", 480: "noanswer", 487: "canceled"}

CallRunner = Callable[[Call], Awaitable[None]]


@dataclass(frozen=True)
class RegistrationSpec:
    """What a trunk asks to keep registered; a change of any field is a new registration."""

    name: str
    registrar: str
    aor: str
    expires: int
    username: str
    """Also the user part of the Contact registered."""
    password: str | None
    transport: str


@dataclass
class TrunkRegistration:
    """One trunk's registration, as /healthz reports it."""

    spec: RegistrationSpec
    state: str = "registering"  # registered | failed | unregistering (then forgotten)
    expires: int = 0
    last_error: str | None = None


class IncomingCallRouter:
    """Decides what an inbound call does: a runner coroutine, or a SIP rejection status."""

    def route(self, call: Call, request: SipRequest) -> CallRunner | int:
        return 404


@dataclass(frozen=True)
class EngineSettings:
    host: str = "127.0.0.1"
    """The address SIP and RTP sockets are bound to."""
    public_host: str = ""
    """The address written in Via, Contact and SDP (default: ``host``)."""
    sip_port: int = 5060
    rtp_first: int = 20000
    rtp_last: int = 29999
    rtp_timeout: float = 60.0
    max_calls: int = 1000
    user_agent: str = "callstream"
    tcp: bool = True

    @property
    def advertised_host(self) -> str:
        """The address written in Via, Contact and SDP: ``public_host``, else ``host``."""
        return self.public_host or self.host


@dataclass
class _SdpSession:
    session_id: int
    version: int

    def next_version(self) -> int:
        self.version += 1
        return self.version


class Engine:
    """Owns every live call of one process."""

    def __init__(self, settings: EngineSettings, router: IncomingCallRouter) -> None:
        self.settings = settings
        self.router = router
        self.transport = SipTransport(self._on_sip_event)
        self.ports = RtpPortPool(settings.host, settings.rtp_first, settings.rtp_last)
        self.clock: MediaClock | None = None
        self.agent: sip.SipAgent
        self.calls: dict[str, Call] = {}
        self._by_handle: dict[str, Call] = {}
        self._sdp: dict[str, _SdpSession] = {}
        self._offers: dict[str, SessionDescription] = {}
        self._answers_due: set[str] = set()
        """Calls whose re-INVITE had no SDP: our 200 made the offer, the ACK must answer."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._byes_pending: set[str] = set()
        self._byes_done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False
        self.registrations: dict[str, TrunkRegistration] = {}
        """Trunk registrations by the SIP agent's handle (``set_registrations``)."""
        self._unregistered = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transport.start(
            self.settings.host, self.settings.sip_port, tcp=self.settings.tcp
        )
        # The agent needs the real port for Via/Contact (the softphone binds port 0).
        self.agent = sip.SipAgent(
            local_host=self.settings.advertised_host,
            local_port=self.transport.local_port,
            user_agent=self.settings.user_agent,
            max_calls=self.settings.max_calls,
        )
        self.transport.agent = self.agent
        self.clock = MediaClock(self._loop)
        self.clock.start()
        self.started = True

    async def stop(self, *, grace_s: float = 2.0) -> None:
        """Hang up every live call (BYE/CANCEL/480), remove our registrations (Expires: 0),
        wait briefly for the BYEs and the registrars, close."""
        for call in list(self.calls.values()):
            self.hangup(call, "shutdown")
        if self.registrations:
            self._unregistered.clear()
            self.set_registrations(())
            if self.agent.registrations == 0:  # none was left to remove
                self._unregistered.set()
        if self._byes_pending:
            self._byes_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._byes_done.wait(), grace_s)
        if self.registrations:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unregistered.wait(), grace_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.clock is not None:
            self.clock.stop()
        await self.transport.close()

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- trunk registrations ------------------------------------------------------------------
    def set_registrations(self, wanted: Iterable[RegistrationSpec]) -> None:
        """Keep exactly ``wanted`` registered (RFC 3261 §10): new ones are registered,
        those no longer wanted (or changed) are removed with Expires: 0."""
        if not self.started:
            return
        wanted = set(wanted)
        now = self.now()
        current = {r.spec for r in self.registrations.values() if r.state != "unregistering"}
        for handle, registration in list(self.registrations.items()):
            if registration.spec not in wanted and registration.state != "unregistering":
                registration.state = "unregistering"
                self.agent.unregister(handle, now)
                if handle not in self.agent.active_registrations():
                    del self.registrations[handle]
        for spec in sorted(wanted - current, key=lambda spec: spec.name):
            credentials = (
                DigestCredentials(spec.username, spec.password)
                if spec.password is not None
                else None
            )
            handle = self.agent.register(
                spec.registrar,
                spec.aor,
                expires=spec.expires,
                now=now,
                contact_user=spec.username,
                credentials=credentials,
                transport=spec.transport,
            )
            self.registrations[handle] = TrunkRegistration(spec)
            logger.info("trunk %s registering %s at %s", spec.name, spec.aor, spec.registrar)
        self.transport.pump()

    def _on_registration_event(self, event: sip.Registered | sip.RegistrationFailed) -> None:
        handle = event.registration_handle
        registration = self.registrations.get(handle)
        if registration is None:
            return
        name = registration.spec.name
        if registration.state == "unregistering":
            del self.registrations[handle]  # removed (or given up on): nothing to report
            logger.info("trunk %s unregistered", name)
        elif isinstance(event, sip.Registered):
            registration.state = "registered"
            registration.expires = event.expires
            logger.info("trunk %s registered expires=%d", name, event.expires)
        else:
            registration.state = "failed"
            registration.last_error = f"{event.status} {event.reason}"
            logger.warning(
                "trunk %s registration failed status=%d reason=%r (tried again later)",
                name,
                event.status,
                event.reason,
            )
        if self.agent.registrations == 0:
            self._unregistered.set()

    # -- SIP events ---------------------------------------------------------------------------
    def _on_sip_event(self, event: sip.SipEvent) -> None:
        if isinstance(event, sip.IncomingCall):
            self._on_incoming(event)
            return
        if isinstance(event, sip.MessageRejected):
            logger.info(
                "sip rejected from=%s:%d status=%d reason=%r",
                *event.addr,
                event.status,
                event.reason,
            )
            return
        if isinstance(event, sip.Registered | sip.RegistrationFailed):
            self._on_registration_event(event)
            return
        handle = event.call_handle
        if isinstance(event, sip.CallEnded) and event.by == "local":
            self._byes_pending.discard(handle)
            if not self._byes_pending:
                self._byes_done.set()
        call = self._by_handle.get(handle)
        if call is None or call.status == CallStatus.HANGUP:
            return
        if isinstance(event, sip.CallProgressed):
            self._on_progress(call, event)
        elif isinstance(event, sip.CallAnswered):
            self._on_answered(call, event)
        elif isinstance(event, sip.CallConfirmed):
            self._on_confirmed(call, event)
        elif isinstance(event, sip.CallFailed):
            reason = FAILURE_REASONS.get(event.status, "failed")
            call.failure = (event.status, event.reason)
            call.log("failed", status=event.status, reason=event.reason)
            self._finish(call, "remote", reason)
        elif isinstance(event, sip.CallCancelled):
            self._finish(call, "remote", "canceled")
        elif isinstance(event, sip.CallEnded):
            reason = "bye" if event.reason == "bye" else event.reason.replace(" ", "_")
            self._finish(call, event.by, reason)
        elif isinstance(event, sip.ReinviteReceived):
            self._on_reinvite(call, event)
        elif isinstance(event, sip.ReinviteConfirmed):
            self._on_reinvite_confirmed(call, event)
        elif isinstance(event, sip.ReinviteAnswered):
            pass
        elif isinstance(event, sip.DtmfReceived):
            call.on_dtmf(event.digit, "info", event.duration_ms)

    def _on_incoming(self, event: sip.IncomingCall) -> None:
        request = event.request
        call = Call(
            self,
            direction="inbound",
            source=_uri_of(request.headers.get("From")),
            destination=request.uri,
            sip_handle=event.call_handle,
            sip_call_id=request.call_id,
        )
        call.remote_addr = event.remote_addr
        call.log("incoming", sip_call_id=request.call_id, to=request.uri, **{"from": call.source})
        outcome = self.router.route(call, request)
        if isinstance(outcome, int):
            self._reject(call, outcome, "no route" if outcome == 404 else "rejected")
            return
        media: NegotiatedMedia | None = None
        if event.sdp is not None:
            try:
                offer = SessionDescription.parse(event.sdp)
                media = negotiate(offer)
            except SdpError as exc:
                self._reject(call, exc.status, str(exc))
                return
            self._offers[call.id] = offer
        # else a late offer (RFC 3264 §5): our 200 carries the offer, the ACK the answer
        self._register(call)
        self.spawn(self._setup_incoming(call, media, outcome), f"call-{call.id}")

    async def _setup_incoming(
        self, call: Call, media: NegotiatedMedia | None, runner: CallRunner
    ) -> None:
        try:
            socket = await self.ports.allocate()
        except TransportError as exc:
            self._unregister(call)
            self._reject(call, 503, str(exc))
            return
        if call.is_over:  # cancelled while we bound the port
            socket.close()
            return
        self._attach_leg(call, socket, media)
        self.agent.respond(call.sip_handle, 180, now=self.now())
        self.transport.pump()
        call.log("ringing")
        await runner(call)

    def _reject(self, call: Call, status: int, reason: str) -> None:
        self.agent.respond(call.sip_handle, status, now=self.now())
        self.transport.pump()
        call.status = CallStatus.HANGUP
        call.log("rejected", status=status, reason=reason)

    def _attach_leg(self, call: Call, socket: RtpSocket, media: NegotiatedMedia | None) -> None:
        leg = Leg(
            socket,
            on_dtmf=lambda digit, duration_ms: call.on_dtmf(digit, "rtp", duration_ms),
            on_rtp_timeout=lambda: self.hangup(call, "rtp_timeout"),
            rtp_timeout=self.settings.rtp_timeout,
            now=self.now(),
            clock=self.clock,
        )
        if media is not None:
            leg.apply_media(media, self.now())
            call.codec = media.encoding
        call.leg = leg
        assert self.clock is not None
        self.clock.add(leg)

    def _register(self, call: Call) -> None:
        self.calls[call.id] = call
        self._by_handle[call.sip_handle] = call
        self._sdp[call.id] = _SdpSession(random.randint(1, 2**31), 1)

    def _unregister(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        self._by_handle.pop(call.sip_handle, None)
        self._sdp.pop(call.id, None)
        self._offers.pop(call.id, None)
        self._answers_due.discard(call.id)

    def _finish(self, call: Call, by: str, reason: str) -> None:
        """The call is over: free its media at once and record why."""
        if call.leg is not None:
            assert self.clock is not None
            self.clock.discard(call.leg)
            call.leg.close()
            if call.leg.session.packets_received or call.leg.session.packets_sent:
                log_call_event(call.id, "rtp", **call.leg.media_stats())
        self._unregister(call)
        call.mark_ended(by, reason)

    # -- CallControl ----------------------------------------------------------------------------
    def _answer_sdp(self, call: Call) -> bytes:
        offer = self._offers[call.id]
        leg = call.leg
        assert leg is not None and leg.media is not None
        session = self._sdp[call.id]
        answer = build_answer(
            offer,
            leg.media,
            address=self.settings.advertised_host,
            port=leg.socket.port,
            session_id=session.session_id,
            session_version=session.next_version(),
        )
        return answer.serialize()

    def _offer_sdp(self, call: Call) -> bytes:
        assert call.leg is not None
        session = self._sdp[call.id]
        offer = build_offer(
            address=self.settings.advertised_host,
            port=call.leg.socket.port,
            session_id=session.session_id,
            session_version=session.next_version(),
        )
        return offer.serialize()

    def answer(self, call: Call) -> None:
        if call.direction != "inbound" or call.leg is None:
            return
        late_offer = call.id not in self._offers
        sdp = self._offer_sdp(call) if late_offer else self._answer_sdp(call)
        self.agent.respond(call.sip_handle, 200, sdp=sdp, now=self.now())
        self.transport.pump()
        call.leg.start_sending()
        call.mark_answered()
        call.log("answered", codec=call.codec)

    def early_media(self, call: Call) -> None:
        if call.direction != "inbound" or call.leg is None or call.early_media_started:
            return
        if call.id not in self._offers:
            # Without the caller's offer there is nothing to answer in a 183 (and we do
            # not do reliable provisionals), so audio before answer is not heard.
            call.log("early_media_unavailable", reason="late offer")
            call.early_media_started = True
            return
        self.agent.respond(call.sip_handle, 183, sdp=self._answer_sdp(call), now=self.now())
        self.transport.pump()
        call.early_media_started = True
        call.leg.start_sending()
        call.log("early_media", codec=call.codec)

    def hangup(self, call: Call, reason: str) -> None:
        if call.is_over:
            return
        now = self.now()
        if call.is_answered:
            self.agent.bye(call.sip_handle, now)
            self._byes_pending.add(call.sip_handle)
        elif call.direction == "inbound":
            self.agent.respond(call.sip_handle, 480 if reason != "shutdown" else 503, now=now)
        else:
            self.agent.cancel(call.sip_handle, now)
        self.transport.pump()
        self._finish(call, "local", reason)

    def send_dtmf(self, call: Call, digits: str, duration_ms: int = 100) -> None:
        if call.leg is not None:
            call.leg.send_dtmf(digits, duration_ms)

    def _on_confirmed(self, call: Call, event: sip.CallConfirmed) -> None:
        """The ACK for our 200; after a late offer it carries the caller's answer."""
        if call.leg is None or call.leg.media is not None:
            return
        if event.sdp is None:
            call.log("error", message="late offer: the ACK carried no SDP answer")
            self.hangup(call, "no_media")
            return
        if self._apply_remote_sdp(call, event.sdp):
            call.log("media", codec=call.codec, answer="ack")

    # -- re-INVITE (hold / resume, session refresh) ---------------------------------------------
    def _on_reinvite(self, call: Call, event: sip.ReinviteReceived) -> None:
        leg = call.leg
        now = self.now()
        if event.sdp is None and leg is not None and leg.media is not None:
            # No offer (a session refresh, RFC 3264 §8, RFC 3261 §14.2): ours goes in
            # the 200 and the ACK carries the answer (_on_reinvite_confirmed).
            self._answers_due.add(call.id)
            self.agent.answer_reinvite(call.sip_handle, 200, sdp=self._offer_sdp(call), now=now)
            return
        try:
            if event.sdp is None or leg is None:
                raise SdpError("re-INVITE without SDP before the call has media", status=488)
            offer = SessionDescription.parse(event.sdp)
            media = negotiate(offer)
        except SdpError as exc:
            call.log("reinvite_rejected", status=exc.status, reason=str(exc))
            self.agent.answer_reinvite(call.sip_handle, exc.status, now=now)
            return
        was_held = leg.held
        leg.apply_media(media, now)
        self._offers[call.id] = offer
        self.agent.answer_reinvite(call.sip_handle, 200, sdp=self._answer_sdp(call), now=now)
        self._log_hold_change(call, was_held)

    def _on_reinvite_confirmed(self, call: Call, event: sip.ReinviteConfirmed) -> None:
        """The ACK of our 200 to a re-INVITE; after one without SDP it carries the answer."""
        if call.id not in self._answers_due or call.leg is None:
            return
        self._answers_due.discard(call.id)
        if event.sdp is None:
            call.log("error", message="re-INVITE without SDP: the ACK carried no SDP answer")
            self.hangup(call, "no_media")
            return
        was_held = call.leg.held
        if self._apply_remote_sdp(call, event.sdp):
            call.log("media", codec=call.codec, answer="reinvite_ack")
            self._log_hold_change(call, was_held)

    @staticmethod
    def _log_hold_change(call: Call, was_held: bool) -> None:
        leg = call.leg
        if leg is None or leg.media is None:
            return
        if leg.held and not was_held:
            call.log("hold", direction=leg.media.direction)
        elif was_held and not leg.held:
            call.log("resume")

    # -- outbound calls --------------------------------------------------------------------------
    async def place_call(
        self,
        target: str,
        *,
        from_uri: str,
        credentials: DigestCredentials | None = None,
        transport: str = "UDP",
    ) -> Call:
        """Send an INVITE with our SDP offer; the returned call's ``answered`` tells the rest."""
        socket = await self.ports.allocate()
        session = _SdpSession(random.randint(1, 2**31), 1)
        offer = build_offer(
            address=self.settings.advertised_host,
            port=socket.port,
            session_id=session.session_id,
            session_version=session.version,
        )
        handle = self.agent.invite(
            target,
            from_uri=from_uri,
            sdp=offer.serialize(),
            now=self.now(),
            credentials=credentials,
            transport=transport,
        )
        call = Call(
            self,
            direction="outbound",
            source=from_uri,
            destination=target,
            sip_handle=handle,
            sip_call_id=self.agent.sip_call_id(handle) or "",
        )
        self._register(call)
        self._sdp[call.id] = session
        self._attach_leg(call, socket, None)
        call.log("dialing", to=target, **{"from": from_uri})
        self.transport.pump()
        return call

    def _on_progress(self, call: Call, event: sip.CallProgressed) -> None:
        call.status = CallStatus.RINGING
        call.log("ringing", status=event.status)
        if event.sdp is not None and call.leg is not None and call.leg.media is None:
            self._apply_remote_sdp(call, event.sdp)

    def _on_answered(self, call: Call, event: sip.CallAnswered) -> None:
        if event.sdp is not None and not self._apply_remote_sdp(call, event.sdp):
            return
        if call.leg is None or call.leg.media is None:
            self.hangup(call, "no_media")
            return
        call.leg.start_sending()
        call.mark_answered()
        call.log("answered", codec=call.codec)

    def _apply_remote_sdp(self, call: Call, sdp: bytes) -> bool:
        assert call.leg is not None
        try:
            media = negotiate(SessionDescription.parse(sdp))
        except SdpError as exc:
            call.log("error", message=f"bad SDP answer: {exc}")
            self.hangup(call, "bad_sdp")
            return False
        call.leg.apply_media(media, self.now())
        call.codec = media.encoding
        return True


def _uri_of(header: str | None) -> str:
    if not header:
        return ""
    try:
        return str(NameAddr.parse(header).uri)
    except SipParseError:
        return header
