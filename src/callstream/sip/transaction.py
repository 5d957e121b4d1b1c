"""SIP transactions (RFC 3261 §17, with the Accepted state of RFC 6026 §7).

Four sans-I/O state machines, each a literal table ``(state, input) -> (next state,
actions)`` below:

- :class:`InviteClientTransaction`  (§17.1.1, figure 5; timers A, B, D; RFC 6026 M)
- :class:`NonInviteClientTransaction` (§17.1.2, figure 6; timers E, F, K)
- :class:`InviteServerTransaction`  (§17.2.1, figure 7; timers G, H, I; RFC 6026 L)
- :class:`NonInviteServerTransaction` (§17.2.2, figure 8; timer J)

A transaction never touches a socket or a clock. It is fed messages and ``now``; it
queues what to send (``take_datagrams()``) and what its transaction user must learn
(``take_notifications()``), and tells when it next needs ``handle_timer(now)`` through
``deadline()``. Over a reliable transport (TCP) timers A, E and G are not used and
D, I, J and K are zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2), so those moves
happen at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from callstream.errors import SipProtocolError
from callstream.sip.message import Headers, SipRequest, SipResponse, Via

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches of RFC 3261 peers start with it


@dataclass(frozen=True, slots=True)
class SipTimers:
    """Timer base values in seconds (RFC 3261 §17.1.1.1, table 4).

    ``t1`` is the RTT estimate, ``t2`` the cap on non-INVITE retransmit intervals,
    ``t4`` how long a message may stay in the network; ``timer_d`` is at least 32 s
    over unreliable transports (§17.1.1.2).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    @property
    def transaction_timeout(self) -> float:
        """64*T1: timers B, F, H, J, L, M (§17.1.1.2, RFC 6026 §8.4)."""
        return 64.0 * self.t1


class TransactionState(Enum):
    """States of figures 5–8 of RFC 3261 plus Accepted (RFC 6026)."""

    CALLING = auto()
    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class _In(Enum):
    """Inputs of the state tables: received messages, TU sends, timers."""

    RECV_1XX = auto()
    RECV_2XX = auto()
    RECV_FAILURE = auto()  # 300-699
    RECV_REQUEST = auto()  # a retransmission of the request
    RECV_ACK = auto()
    SEND_1XX = auto()
    SEND_2XX = auto()
    SEND_FAILURE = auto()
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()
    TRANSPORT_ERROR = auto()


class _Do(Enum):
    """Actions of the state tables, run in the order listed."""

    PASS_RESPONSE = auto()  # hand the received response to the TU
    SEND_ACK = auto()  # (re)send the ACK of a non-2xx final response
    RETRANSMIT_REQUEST = auto()
    SEND_RESPONSE = auto()  # send the TU's response and remember it
    RESEND_RESPONSE = auto()  # send the last response again
    NOTIFY_TIMEOUT = auto()
    NOTIFY_TRANSPORT_ERROR = auto()
    STOP_TIMERS = auto()
    START_A = auto()  # interval doubles, uncapped (§17.1.1.2)
    START_B = auto()
    START_D = auto()
    START_E = auto()  # interval doubles, capped at T2 (§17.1.2.2)
    START_E_T2 = auto()  # in Proceeding the interval is T2
    START_F = auto()
    START_G = auto()  # interval doubles, capped at T2 (§17.2.1)
    START_H = auto()
    START_I = auto()
    START_J = auto()
    START_K = auto()
    START_L = auto()
    START_M = auto()


_Row = tuple[TransactionState, tuple[_Do, ...]]
_Table = dict[tuple[TransactionState, _In], _Row]

_S = TransactionState
_STOP_PASS = (_Do.STOP_TIMERS, _Do.PASS_RESPONSE)

# RFC 3261 figure 5 with RFC 6026 figure 3: 2xx moves to Accepted, where further 2xx
# retransmissions go to the TU (which re-sends its ACK) until timer M.
INVITE_CLIENT_TABLE: _Table = {
    (_S.CALLING, _In.TIMER_A): (_S.CALLING, (_Do.RETRANSMIT_REQUEST, _Do.START_A)),
    (_S.CALLING, _In.TIMER_B): (_S.TERMINATED, (_Do.NOTIFY_TIMEOUT,)),
    (_S.CALLING, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.CALLING, _In.RECV_1XX): (_S.PROCEEDING, _STOP_PASS),
    (_S.CALLING, _In.RECV_2XX): (_S.ACCEPTED, (*_STOP_PASS, _Do.START_M)),
    (_S.CALLING, _In.RECV_FAILURE): (_S.COMPLETED, (*_STOP_PASS, _Do.SEND_ACK, _Do.START_D)),
    (_S.PROCEEDING, _In.RECV_1XX): (_S.PROCEEDING, (_Do.PASS_RESPONSE,)),
    (_S.PROCEEDING, _In.RECV_2XX): (_S.ACCEPTED, (*_STOP_PASS, _Do.START_M)),
    (_S.PROCEEDING, _In.RECV_FAILURE): (
        _S.COMPLETED,
        (*_STOP_PASS, _Do.SEND_ACK, _Do.START_D),
    ),
    (_S.PROCEEDING, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _In.RECV_FAILURE): (_S.COMPLETED, (_Do.SEND_ACK,)),
    (_S.COMPLETED, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _In.TIMER_D): (_S.TERMINATED, ()),
    (_S.ACCEPTED, _In.RECV_2XX): (_S.ACCEPTED, (_Do.PASS_RESPONSE,)),
    (_S.ACCEPTED, _In.TIMER_M): (_S.TERMINATED, ()),
}

# RFC 3261 figure 6.
NON_INVITE_CLIENT_TABLE: _Table = {
    (_S.TRYING, _In.TIMER_E): (_S.TRYING, (_Do.RETRANSMIT_REQUEST, _Do.START_E)),
    (_S.TRYING, _In.TIMER_F): (_S.TERMINATED, (_Do.NOTIFY_TIMEOUT,)),
    (_S.TRYING, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.TRYING, _In.RECV_1XX): (_S.PROCEEDING, (_Do.PASS_RESPONSE,)),
    (_S.TRYING, _In.RECV_2XX): (_S.COMPLETED, (*_STOP_PASS, _Do.START_K)),
    (_S.TRYING, _In.RECV_FAILURE): (_S.COMPLETED, (*_STOP_PASS, _Do.START_K)),
    (_S.PROCEEDING, _In.TIMER_E): (_S.PROCEEDING, (_Do.RETRANSMIT_REQUEST, _Do.START_E_T2)),
    (_S.PROCEEDING, _In.TIMER_F): (_S.TERMINATED, (_Do.NOTIFY_TIMEOUT,)),
    (_S.PROCEEDING, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.PROCEEDING, _In.RECV_1XX): (_S.PROCEEDING, (_Do.PASS_RESPONSE,)),
    (_S.PROCEEDING, _In.RECV_2XX): (_S.COMPLETED, (*_STOP_PASS, _Do.START_K)),
    (_S.PROCEEDING, _In.RECV_FAILURE): (_S.COMPLETED, (*_STOP_PASS, _Do.START_K)),
    # Completed absorbs retransmitted finals (no row: ignored) until timer K.
    (_S.COMPLETED, _In.TIMER_K): (_S.TERMINATED, ()),
}

# RFC 3261 figure 7 with RFC 6026 figure 5: a 2xx moves to Accepted (timer L), where
# retransmitted INVITEs are absorbed and the TU re-sends its own 2xx (§13.3.1.4).
INVITE_SERVER_TABLE: _Table = {
    (_S.PROCEEDING, _In.RECV_REQUEST): (_S.PROCEEDING, (_Do.RESEND_RESPONSE,)),
    (_S.PROCEEDING, _In.SEND_1XX): (_S.PROCEEDING, (_Do.SEND_RESPONSE,)),
    (_S.PROCEEDING, _In.SEND_2XX): (_S.ACCEPTED, (_Do.SEND_RESPONSE, _Do.START_L)),
    (_S.PROCEEDING, _In.SEND_FAILURE): (
        _S.COMPLETED,
        (_Do.SEND_RESPONSE, _Do.START_G, _Do.START_H),
    ),
    (_S.PROCEEDING, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _In.RECV_REQUEST): (_S.COMPLETED, (_Do.RESEND_RESPONSE,)),
    (_S.COMPLETED, _In.TIMER_G): (_S.COMPLETED, (_Do.RESEND_RESPONSE, _Do.START_G)),
    (_S.COMPLETED, _In.TIMER_H): (_S.TERMINATED, (_Do.NOTIFY_TIMEOUT,)),
    (_S.COMPLETED, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _In.RECV_ACK): (_S.CONFIRMED, (_Do.STOP_TIMERS, _Do.START_I)),
    (_S.CONFIRMED, _In.TIMER_I): (_S.TERMINATED, ()),
    (_S.ACCEPTED, _In.SEND_2XX): (_S.ACCEPTED, (_Do.SEND_RESPONSE,)),
    (_S.ACCEPTED, _In.TIMER_L): (_S.TERMINATED, ()),
    # Confirmed absorbs ACKs and requests; Accepted absorbs requests (no rows).
}

# RFC 3261 figure 8.
NON_INVITE_SERVER_TABLE: _Table = {
    (_S.TRYING, _In.SEND_1XX): (_S.PROCEEDING, (_Do.SEND_RESPONSE,)),
    (_S.TRYING, _In.SEND_2XX): (_S.COMPLETED, (_Do.SEND_RESPONSE, _Do.START_J)),
    (_S.TRYING, _In.SEND_FAILURE): (_S.COMPLETED, (_Do.SEND_RESPONSE, _Do.START_J)),
    (_S.PROCEEDING, _In.SEND_1XX): (_S.PROCEEDING, (_Do.SEND_RESPONSE,)),
    (_S.PROCEEDING, _In.SEND_2XX): (_S.COMPLETED, (_Do.SEND_RESPONSE, _Do.START_J)),
    (_S.PROCEEDING, _In.SEND_FAILURE): (_S.COMPLETED, (_Do.SEND_RESPONSE, _Do.START_J)),
    (_S.PROCEEDING, _In.RECV_REQUEST): (_S.PROCEEDING, (_Do.RESEND_RESPONSE,)),
    (_S.PROCEEDING, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _In.RECV_REQUEST): (_S.COMPLETED, (_Do.RESEND_RESPONSE,)),
    (_S.COMPLETED, _In.TRANSPORT_ERROR): (_S.TERMINATED, (_Do.NOTIFY_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _In.TIMER_J): (_S.TERMINATED, ()),
    # Trying absorbs retransmissions: there is no response to repeat yet (§17.2.2).
}

_TIMER_INPUT: dict[_Do, _In] = {
    _Do.START_A: _In.TIMER_A,
    _Do.START_B: _In.TIMER_B,
    _Do.START_D: _In.TIMER_D,
    _Do.START_E: _In.TIMER_E,
    _Do.START_E_T2: _In.TIMER_E,
    _Do.START_F: _In.TIMER_F,
    _Do.START_G: _In.TIMER_G,
    _Do.START_H: _In.TIMER_H,
    _Do.START_I: _In.TIMER_I,
    _Do.START_J: _In.TIMER_J,
    _Do.START_K: _In.TIMER_K,
    _Do.START_L: _In.TIMER_L,
    _Do.START_M: _In.TIMER_M,
}


# --- what a transaction tells its transaction user (TU) ---------------------------------


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response the TU must see (§17.1.1.2: 1xx, 2xx and the first non-2xx final)."""

    response: SipResponse


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B, F or H fired; for a client the TU treats it as a 408 (§8.1.3.1)."""

    status: int = 408


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport reported an error; the TU treats it as a 503 (§8.1.3.1)."""

    status: int = 503


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction reached Terminated; the TU may forget it."""


TransactionNotification = (
    ResponseReceived | TransactionTimedOut | TransportFailed | TransactionTerminated
)
Datagram = tuple[bytes, tuple[str, int], str]


def is_reliable(transport: str) -> bool:
    """True for stream transports, where retransmission timers are not used (§17)."""
    return transport.upper() in ("TCP", "TLS", "SCTP", "WS", "WSS")


def client_key(message: SipRequest | SipResponse) -> tuple[str, str]:
    """The key matching a response to its client transaction (§17.1.3).

    Branch of the top Via plus the CSeq method (so a CANCEL, which shares its
    INVITE's branch, is a different transaction). Sent-by is ours by construction.
    """
    return (message.branch or "", message.cseq[1])


def server_key(request: SipRequest, method: str | None = None) -> tuple[str, ...]:
    """The key matching a request to its server transaction (§17.2.3).

    ``method`` overrides the request's method (a CANCEL looks up its INVITE with
    ``method="INVITE"``); an ACK matches the INVITE it acknowledges. Requests from
    RFC 2543 peers (no magic cookie) fall back to Call-ID, From tag, CSeq number and
    top Via (§17.2.3, simplified: the To tag is not compared).
    """
    via = request.top_via
    matched_method = method or ("INVITE" if request.method == "ACK" else request.method)
    sent_by = f"{via.host}:{via.port or ''}"
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, matched_method)
    return (
        "rfc2543",
        request.call_id,
        request.from_tag or "",
        str(request.cseq[0]),
        sent_by,
        matched_method,
    )


class Transaction:
    """What the four machines share: the table walk, timers and output queues."""

    TABLE: _Table = {}
    INITIAL_STATE = TransactionState.TRYING
    FIRST_TIMERS: tuple[_Do, ...] = ()
    """Timers a client transaction starts with its first request."""
    kind = "transaction"

    def __init__(
        self,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        timers: SipTimers,
        now: float,
    ) -> None:
        self.request = request
        self.destination = destination
        self.transport = transport.upper()
        self.reliable = is_reliable(transport)
        self.timers = timers
        self.state = self.INITIAL_STATE
        self.call_handle: str | None = None  # set by the UA core that owns it
        self.last_response: SipResponse | None = None
        self._now = now
        self._deadlines: dict[_In, float] = {}
        self._intervals: dict[_In, float] = {}
        self._immediate: list[_In] = []
        self._datagrams: list[Datagram] = []
        self._notifications: list[TransactionNotification] = []
        self._last_response_bytes: bytes | None = None
        self._request_bytes: bytes | None = None

    # --- output -------------------------------------------------------------------

    def take_datagrams(self) -> list[Datagram]:
        """Everything queued for the wire since the last call, oldest first."""
        out, self._datagrams = self._datagrams, []
        return out

    def take_notifications(self) -> list[TransactionNotification]:
        """Everything the TU must learn since the last call, oldest first."""
        out, self._notifications = self._notifications, []
        return out

    @property
    def terminated(self) -> bool:
        """True once the machine reached Terminated."""
        return self.state is TransactionState.TERMINATED

    @property
    def last_response_datagram(self) -> Datagram | None:
        """The last response sent, as queued for the wire (server transactions)."""
        if self._last_response_bytes is None:
            return None
        return (self._last_response_bytes, self.destination, self.transport)

    # --- timers -------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When ``handle_timer`` must next run (absolute loop time), or None."""
        return min(self._deadlines.values()) if self._deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first."""
        self._now = now
        while self._deadlines:
            timer, when = min(self._deadlines.items(), key=lambda item: item[1])
            if when > now:
                break
            del self._deadlines[timer]
            self._apply(timer)

    def handle_transport_error(self, now: float) -> None:
        """The adapter could not send this transaction's message (§17.1.4, §17.2.4)."""
        self._now = now
        self._apply(_In.TRANSPORT_ERROR)

    # --- the table walk -----------------------------------------------------------

    def _apply(self, event: _In, response: SipResponse | None = None) -> bool:
        """Run one input through the table; False if the table has no row for it."""
        row = self.TABLE.get((self.state, event))
        if row is None:
            return False
        next_state, actions = row
        self.state = next_state
        for action in actions:
            self._run(action, response)
        if next_state is TransactionState.TERMINATED:
            self._deadlines.clear()
            self._notifications.append(TransactionTerminated())
        while self._immediate and not self.terminated:
            self._apply(self._immediate.pop(0))
        return True

    def _run(self, action: _Do, response: SipResponse | None) -> None:
        if action in _TIMER_INPUT:
            self._start_timer(action)
        elif action is _Do.PASS_RESPONSE and response is not None:
            self._notifications.append(ResponseReceived(response))
        elif action is _Do.RETRANSMIT_REQUEST:
            self._send_request()
        elif action is _Do.SEND_RESPONSE and response is not None:
            self.last_response = response
            self._last_response_bytes = response.serialize()
            self._datagrams.append((self._last_response_bytes, self.destination, self.transport))
        elif action is _Do.RESEND_RESPONSE and self._last_response_bytes is not None:
            self._datagrams.append((self._last_response_bytes, self.destination, self.transport))
        elif action is _Do.SEND_ACK:
            self._send_ack(response)
        elif action is _Do.NOTIFY_TIMEOUT:
            self._notifications.append(TransactionTimedOut())
        elif action is _Do.NOTIFY_TRANSPORT_ERROR:
            self._notifications.append(TransportFailed())
        elif action is _Do.STOP_TIMERS:
            self._deadlines.clear()

    def _start_timer(self, action: _Do) -> None:
        timer = _TIMER_INPUT[action]
        duration = self._duration(action)
        if duration is None:
            return
        if duration == 0.0:
            self._immediate.append(timer)
            return
        self._intervals[timer] = duration
        self._deadlines[timer] = self._now + duration

    def _duration(self, action: _Do) -> float | None:
        """The timer's next interval; None when unused on this transport."""
        t = self.timers
        if action in (_Do.START_A, _Do.START_E, _Do.START_E_T2, _Do.START_G):
            if self.reliable:
                return None
            timer = _TIMER_INPUT[action]
            previous = self._intervals.get(timer)
            if action is _Do.START_E_T2:
                return t.t2
            if previous is None:
                return t.t1
            return previous * 2 if action is _Do.START_A else min(previous * 2, t.t2)
        if action in (_Do.START_D, _Do.START_I, _Do.START_K, _Do.START_J):
            if self.reliable:
                return 0.0
            if action is _Do.START_D:
                return t.timer_d
            return t.transaction_timeout if action is _Do.START_J else t.t4
        return t.transaction_timeout  # B, F, H, L, M

    def _send_request(self) -> None:
        if self._request_bytes is None:
            self._request_bytes = self.request.serialize()
        self._datagrams.append((self._request_bytes, self.destination, self.transport))

    def _send_ack(self, response: SipResponse | None) -> None:
        """Overridden by the INVITE client transaction."""


class _ClientTransaction(Transaction):
    """Sends its request at once; matches responses by :func:`client_key`."""

    def __init__(
        self,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        timers: SipTimers,
        now: float,
    ) -> None:
        super().__init__(request, destination, transport, timers, now)
        self.key = client_key(request)
        self._send_request()
        for action in self.FIRST_TIMERS:
            self._start_timer(action)

    def receive_response(self, response: SipResponse, now: float) -> None:
        """Feed a response matched to this transaction (§17.1.1.2, §17.1.2.2)."""
        self._now = now
        status = response.status
        if status < 200:
            event = _In.RECV_1XX
        elif status < 300:
            event = _In.RECV_2XX
        else:
            event = _In.RECV_FAILURE
        self._apply(event, response)


class InviteClientTransaction(_ClientTransaction):
    """INVITE client transaction, RFC 3261 §17.1.1 (timers A, B, D; RFC 6026 M)."""

    TABLE = INVITE_CLIENT_TABLE
    INITIAL_STATE = TransactionState.CALLING
    FIRST_TIMERS = (_Do.START_A, _Do.START_B)
    kind = "invite client"
    _ack_bytes: bytes | None = None

    def _send_ack(self, response: SipResponse | None) -> None:
        if self._ack_bytes is None and response is not None:
            self._ack_bytes = build_non_2xx_ack(self.request, response).serialize()
        if self._ack_bytes is not None:
            self._datagrams.append((self._ack_bytes, self.destination, self.transport))


class NonInviteClientTransaction(_ClientTransaction):
    """Non-INVITE client transaction, RFC 3261 §17.1.2 (timers E, F, K)."""

    TABLE = NON_INVITE_CLIENT_TABLE
    INITIAL_STATE = TransactionState.TRYING
    FIRST_TIMERS = (_Do.START_E, _Do.START_F)
    kind = "non-invite client"


class _ServerTransaction(Transaction):
    """Matches requests by :func:`server_key`; sends what the TU responds."""

    def __init__(
        self,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        timers: SipTimers,
        now: float,
    ) -> None:
        super().__init__(request, destination, transport, timers, now)
        self.key = server_key(request)

    def receive_request(self, request: SipRequest, now: float) -> None:
        """Feed a retransmission (or, for INVITE, the ACK of a non-2xx final)."""
        self._now = now
        self._apply(_In.RECV_ACK if request.method == "ACK" else _In.RECV_REQUEST)

    def send_response(self, response: SipResponse, now: float) -> None:
        """Send the TU's response; raises SipProtocolError if this state forbids it."""
        self._now = now
        status = response.status
        if status < 200:
            event = _In.SEND_1XX
        elif status < 300:
            event = _In.SEND_2XX
        else:
            event = _In.SEND_FAILURE
        if not self._apply(event, response):
            raise SipProtocolError(
                f"cannot send {status} in {self.kind} transaction state {self.state.name}",
                status=500,
            )

    @property
    def final_sent(self) -> bool:
        """True once a final response went out (no more responses may follow)."""
        return self.last_response is not None and self.last_response.status >= 200


class InviteServerTransaction(_ServerTransaction):
    """INVITE server transaction, RFC 3261 §17.2.1 (timers G, H, I; RFC 6026 L).

    The transaction starts in Proceeding; the caller sends the 100 Trying through
    ``send_response`` at once (§17.2.1 allows it when the TU will not answer in 200 ms).
    """

    TABLE = INVITE_SERVER_TABLE
    INITIAL_STATE = TransactionState.PROCEEDING
    kind = "invite server"


class NonInviteServerTransaction(_ServerTransaction):
    """Non-INVITE server transaction, RFC 3261 §17.2.2 (timer J)."""

    TABLE = NON_INVITE_SERVER_TABLE
    INITIAL_STATE = TransactionState.TRYING
    kind = "non-invite server"


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
ClientTransaction = InviteClientTransaction | NonInviteClientTransaction


def build_non_2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client transaction sends for a 300-699 to its INVITE (§17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via as the INVITE, the To of
    the response (with its tag), and the INVITE's Route headers.
    """
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return SipRequest("ACK", invite.uri, headers)


def build_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL of a pending INVITE (RFC 3261 §9.1).

    Same Request-URI, Call-ID, To, From, CSeq number and top Via (so the same branch)
    as the INVITE, and its Route headers; a transaction of its own (§17.1.3).
    """
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
    return SipRequest("CANCEL", invite.uri, headers)


def note_source(request: SipRequest, addr: tuple[str, int]) -> None:
    """Record where a request came from in its top Via (§18.2.1, RFC 3581 §4).

    Adds ``received`` when the source address differs from sent-by, or whenever
    ``rport`` is present; fills an empty ``rport`` with the source port.
    """
    vias = request.headers.get_all("Via")
    via = Via.parse(vias[0])
    has_rport = "rport" in via.params
    if via.host == addr[0] and not has_rport:
        return
    via.params["received"] = addr[0]
    if has_rport and via.params.get("rport") is None:
        via.params["rport"] = str(addr[1])
    vias[0] = str(via)
    request.headers.set("Via", ", ".join(vias))


def response_destination(
    request: SipRequest, addr: tuple[str, int], transport: str
) -> tuple[str, int]:
    """Where responses to ``request`` go (§18.2.2, RFC 3581 §4).

    Over a reliable transport: back to the source (the adapter reuses the connection).
    Over UDP: the top Via's ``received`` (else its host), at ``rport`` (else the Via
    port, else 5060).
    """
    if is_reliable(transport):
        return addr
    via = request.top_via
    host = via.received or via.host
    if "rport" in via.params:
        return (host, via.rport or addr[1])
    return (host, via.port or 5060)
