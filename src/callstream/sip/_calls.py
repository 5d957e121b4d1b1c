"""State shared by the agent's modules: one call's record, the timer heap, and
:class:`AgentCore`, the primitives every part of :class:`~callstream.sip.agent.SipAgent`
builds on (transactions started and drained, responses and in-dialog requests built,
calls ended and forgotten). Internal: nothing here is public API.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING, Literal, TypeAlias

from callstream.errors import SipProtocolError
from callstream.sip.auth import DigestCredentials
from callstream.sip.dialog import Dialog, DialogId
from callstream.sip.events import CallEnded, CallFailed, SipEvent
from callstream.sip.message import SipRequest, SipResponse, new_branch, new_tag, response_for
from callstream.sip.transaction import (
    ClientTransaction,
    Datagram,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    SipTimers,
    Transaction,
    TransactionNotification,
    is_reliable,
)

if TYPE_CHECKING:
    from callstream.sip.registration import Registration

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
ACCEPT = "application/sdp, application/dtmf-relay"
SUPPORTED = ""  # no extensions (100rel, timer, replaces) are implemented
ALLOWED_METHODS = frozenset(("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO"))
DIALOG_METHODS = frozenset(("BYE", "INFO", "INVITE", "UPDATE", "PRACK", "REFER", "NOTIFY"))
RETRY_AFTER_SECONDS = 5
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Role(Enum):
    UAC = auto()
    UAS = auto()


class Phase(Enum):
    CALLING = auto()  # UAC: INVITE sent, no final response yet
    INCOMING = auto()  # UAS: INVITE received, no final response sent
    ANSWERED = auto()  # UAS: 2xx sent, no ACK yet
    CONFIRMED = auto()
    ENDING = auto()  # BYE sent
    ENDED = auto()


@dataclass(eq=False)
class CallState:
    """One INVITE session: its transactions, dialog and call-level timers."""

    handle: str
    role: Role
    invite: SipRequest
    transport: str
    next_hop: tuple[str, int]  # UAC: where requests go; UAS: where responses go
    local_tag: str
    phase: Phase
    proxy: tuple[str, int] | None = None
    dialog: Dialog | None = None
    invite_txn: Transaction | None = None
    credentials: DigestCredentials | None = None
    challenged: set[tuple[int, str]] = field(default_factory=set)
    provisional_received: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    bye_requested: bool = False
    acks: dict[tuple[str, int], Datagram] = field(default_factory=dict)  # (To tag, CSeq)
    reinvite_client: InviteClientTransaction | None = None
    reinvite_server: InviteServerTransaction | None = None
    end_reason: str = "bye"
    # Our 2xx retransmitted until ACK (§13.3.1.4), and the CANCEL give-up (§9.1).
    ok_datagram: Datagram | None = None
    ok_cseq: int = 0
    ok_interval: float = 0.0
    ok_next: float | None = None
    ok_give_up: float | None = None
    cancel_give_up: float | None = None

    def deadline(self) -> float | None:
        times = [t for t in (self.ok_next, self.ok_give_up, self.cancel_give_up) if t is not None]
        return min(times) if times else None


Timed: TypeAlias = "Transaction | CallState | Registration"


class TimerQueue:
    """A heap of (deadline, seq, owner) with lazy invalidation.

    An owner is pushed again whenever its deadline moves earlier; stale entries are
    dropped (or re-pushed at their new time) when they reach the top.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timed]] = []
        self._scheduled: dict[int, float] = {}
        self._seq = itertools.count()

    def schedule(self, owner: Timed) -> None:
        when = owner.deadline()
        if when is None:
            return
        current = self._scheduled.get(id(owner))
        if current is not None and current <= when:
            return
        self._scheduled[id(owner)] = when
        heapq.heappush(self._heap, (when, next(self._seq), owner))

    def earliest(self) -> float | None:
        while self._heap:
            when, _, owner = self._heap[0]
            if self._scheduled.get(id(owner)) == when and owner.deadline() == when:
                return when
            self._pop_and_reschedule()
        return None

    def pop_due(self, now: float) -> Timed | None:
        when = self.earliest()
        if when is None or when > now:
            return None
        return self._pop_and_reschedule(reschedule=False)

    def _pop_and_reschedule(self, reschedule: bool = True) -> Timed:
        when, _, owner = heapq.heappop(self._heap)
        if self._scheduled.get(id(owner)) == when:
            del self._scheduled[id(owner)]
            if reschedule:
                self.schedule(owner)
        return owner


def resolve_host(host: str) -> str | None:
    """An IP literal as is, ``localhost`` as 127.0.0.1; None otherwise (no DNS here)."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def sdp_of(message: SipRequest | SipResponse) -> bytes | None:
    if message.body and message.content_type == "application/sdp":
        return message.body
    return None


class AgentCore:
    """What the UAC and UAS halves of the agent share: indexes, outbox, events and the
    primitives that move transactions, responses and calls (RFC 3261 §8, §12, §17)."""

    def __init__(
        self,
        local_host: str,
        local_port: int,
        user_agent: str = "callstream/0.1",
        timers: SipTimers | None = None,
        *,
        max_calls: int = 1000,
    ) -> None:
        self.local_host = local_host
        self.local_port = local_port
        self.user_agent = user_agent
        self.timers = timers or SipTimers()
        self.max_calls = max_calls
        self._outbox: list[Datagram] = []
        self._events: deque[SipEvent] = deque()
        self._calls: dict[str, CallState] = {}
        self._dialogs: dict[DialogId, CallState] = {}
        self._client_txns: dict[tuple[str, str], ClientTransaction] = {}
        self._server_txns: dict[tuple[str, ...], ServerTransaction] = {}
        self._timer_queue = TimerQueue()
        # registrations (callstream.sip.registration): by handle, and REGISTER in flight
        self._registrations: dict[str, Registration] = {}
        self._register_txns: dict[tuple[str, str], str] = {}

    def _drain(self, txn: Transaction, now: float) -> None:
        """Move a transaction's output to the agent: datagrams, TU notifications, timer."""
        self._outbox.extend(txn.take_datagrams())
        for notice in txn.take_notifications():
            self._on_notification(txn, notice, now)
        self._timer_queue.schedule(txn)

    def _start_client(
        self,
        call: CallState | None,
        request: SipRequest,
        destination: tuple[str, int],
        now: float,
        transport: str | None = None,
    ) -> ClientTransaction:
        transport = transport or (call.transport if call else "UDP")
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(request, destination, transport, self.timers, now)
        else:
            txn = NonInviteClientTransaction(request, destination, transport, self.timers, now)
        txn.call_handle = call.handle if call else None
        self._client_txns[txn.key] = txn
        if call is not None and call.invite_txn is None and request.method == "INVITE":
            call.invite_txn = txn
        self._drain(txn, now)
        return txn

    def _new_server_txn(
        self, request: SipRequest, destination: tuple[str, int], transport: str, now: float
    ) -> ServerTransaction:
        txn: ServerTransaction
        if request.method == "INVITE":
            txn = InviteServerTransaction(request, destination, transport, self.timers, now)
        else:
            txn = NonInviteServerTransaction(request, destination, transport, self.timers, now)
        self._server_txns[txn.key] = txn
        return txn

    def _reply(
        self,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        status: int,
        now: float,
        *,
        extra: Iterable[tuple[str, str]] = (),
        to_tag: str | None = None,
    ) -> None:
        """Answer a request that needs no TU decision, through a new server transaction."""
        txn = self._new_server_txn(request, destination, transport, now)
        self._send_response(txn, self._plain_response(request, status, extra, to_tag), now)

    def _plain_response(
        self,
        request: SipRequest,
        status: int,
        extra: Iterable[tuple[str, str]] = (),
        to_tag: str | None = None,
        reason: str | None = None,
    ) -> SipResponse:
        response = response_for(request, status, reason, to_tag=to_tag or new_tag())
        for name, value in extra:
            response.headers.add(name, value)
        response.headers.add("Server", self.user_agent)
        return response

    def _response(
        self,
        request: SipRequest,
        status: int,
        reason: str | None,
        local_tag: str,
        sdp: bytes | None,
        transport: str,
    ) -> SipResponse:
        """A response in a call: our To tag, Contact on 18x/2xx (§12.1.1), SDP if given."""
        response = response_for(
            request,
            status,
            reason,
            to_tag=local_tag,
            body=sdp or b"",
            content_type="application/sdp" if sdp else None,
        )
        if 100 < status < 300:
            # §12.1.1: Record-Route is copied into responses that create a dialog.
            for route in request.headers.get_all("Record-Route"):
                response.headers.add("Record-Route", route)
            response.headers.add("Contact", self._contact(transport))
        if 200 <= status < 300:
            response.headers.add("Allow", ALLOW)
            response.headers.add("Supported", SUPPORTED)
        response.headers.add("Server", self.user_agent)
        return response

    def _send_response(self, txn: ServerTransaction, response: SipResponse, now: float) -> None:
        txn.send_response(response, now)
        self._drain(txn, now)

    def _dialog_request(
        self,
        call: CallState,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        contact: bool = False,
    ) -> SipRequest:
        assert call.dialog is not None
        request = call.dialog.create_request(
            method,
            via=self._via(call.transport, new_branch()),
            contact=self._contact(call.transport) if contact else None,
            body=body,
            content_type=content_type,
        )
        request.headers.add("User-Agent", self.user_agent)
        return request

    def _send_bye(self, call: CallState, now: float, reason: str = "bye") -> None:
        call.phase = Phase.ENDING
        call.end_reason = reason
        call.ok_datagram = call.ok_next = call.ok_give_up = None
        bye = self._dialog_request(call, "BYE")
        self._start_client(call, bye, self._hop(call), now)

    def _send_2xx(
        self, call: CallState, txn: InviteServerTransaction, response: SipResponse, now: float
    ) -> None:
        """Send a 2xx and keep re-sending it until ACK: T1 doubling to T2 (§13.3.1.4)."""
        self._send_response(txn, response, now)
        call.ok_datagram = txn.last_response_datagram
        call.ok_cseq = response.cseq[0]
        call.ok_interval = self.timers.t1
        call.ok_next = None if is_reliable(call.transport) else now + self.timers.t1
        call.ok_give_up = now + self.timers.transaction_timeout
        self._timer_queue.schedule(call)

    def _confirmed(self, handle: str) -> CallState:
        call = self._calls.get(handle)
        if call is None or call.phase is not Phase.CONFIRMED or call.dialog is None:
            raise SipProtocolError(f"call {handle} is not in a confirmed dialog", status=481)
        return call

    def _hop(self, call: CallState, dialog: Dialog | None = None) -> tuple[str, int]:
        """Next hop of an in-dialog request: the proxy, else the dialog's (§12.2.1.1)."""
        if call.proxy is not None:
            return call.proxy
        dialog = dialog or call.dialog
        if dialog is None:
            return call.next_hop
        host, port = dialog.next_hop()
        resolved = resolve_host(host)
        # A peer whose Contact names a host we cannot resolve is reached where it spoke from.
        return (resolved, port) if resolved is not None else call.next_hop

    def _via(self, transport: str, branch: str) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"SIP/2.0/{transport} {host}:{self.local_port};branch={branch};rport"

    def _contact(self, transport: str, user: str = "callstream") -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        suffix = ";transport=tcp" if transport == "TCP" else ""
        return f"<sip:{user}@{host}:{self.local_port}{suffix}>"

    def _fail(self, call: CallState, status: int, reason: str) -> None:
        self._events.append(CallFailed(call.handle, status, reason))
        self._forget(call)

    def _end(self, call: CallState, by: Literal["remote", "local"], reason: str) -> None:
        if call.phase is Phase.ENDED:
            return
        self._events.append(CallEnded(call.handle, by, reason))
        self._forget(call)

    def _forget(self, call: CallState) -> None:
        """Drop a call from the indexes; its transactions finish on their own."""
        call.phase = Phase.ENDED
        call.ok_datagram = call.ok_next = call.ok_give_up = call.cancel_give_up = None
        self._calls.pop(call.handle, None)
        if call.dialog is not None and self._dialogs.get(call.dialog.id) is call:
            del self._dialogs[call.dialog.id]

    def _on_notification(
        self, txn: Transaction, notice: TransactionNotification, now: float
    ) -> None:
        """A transaction's report to its TU; the agent routes it (see SipAgent)."""
        raise NotImplementedError
