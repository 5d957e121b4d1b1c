"""The SIP user agent core: a sans-I/O endpoint (RFC 3261 §8, §12–§17, §22).

One :class:`SipAgent` serves a whole process: it holds every transaction and dialog,
keyed for O(1) lookup, and is driven by bytes and ``now`` (absolute loop time in
seconds). It never touches a socket or a clock; the asyncio adapter (``io/sip.py``)
moves bytes and arms one timer::

    agent = SipAgent(local_host="127.0.0.1", local_port=5060, user_agent="callstream/0.1",
                     timers=SipTimers())   # T1=0.5, T2=4, T4=5 seconds

    agent.receive_datagram(data, addr, now, transport="UDP")
    agent.receive_message(msg, addr, now, transport="TCP")   # already framed (TCP)
    agent.handle_timer(now)
    agent.datagrams_to_send() -> list[(data, addr, transport)]
    agent.get_timer() -> float | None                         # earliest deadline
    agent.next_event() -> SipEvent | None                     # drain until None

Calls are identified by an opaque ``call_handle``. UAC: :meth:`SipAgent.invite`,
:meth:`~SipAgent.cancel`, :meth:`~SipAgent.bye`, :meth:`~SipAgent.reinvite`,
:meth:`~SipAgent.send_info_dtmf`. UAS, after :class:`IncomingCall`:
:meth:`~SipAgent.respond`, :meth:`~SipAgent.answer_reinvite`, :meth:`~SipAgent.bye`.

The agent does by itself, with no event needed: 100 Trying to INVITE; 200 to OPTIONS
(Allow/Accept); 200 to BYE, CANCEL, INFO; 487 to a CANCELled INVITE; ACK for 2xx (UAC)
and for non-2xx (inside the transaction); re-sending our 2xx until ACK (T1 doubling
to T2, §13.3.1.4) and a BYE when no ACK comes in 64*T1; 400 with the parser's reason
for unparseable requests that can be addressed (else drop); 481 for in-dialog requests
that match no dialog; 405 for methods we do not implement (REGISTER included); one
retry with Authorization/Proxy-Authorization per realm after 401/407 when credentials
were given; 503 with Retry-After to a new INVITE beyond ``max_calls``.

Choices the RFC leaves open, as made here:

- INFO with a body other than application/dtmf-relay or application/dtmf is answered
  200 and ignored (legacy peers send e.g. picture-update INFOs; 415 helps no one).
- A target host that is not an IP literal or ``localhost`` (DNS is out of scope) with
  no outbound proxy fails at once with ``CallFailed(handle, 404, "cannot resolve host")``.
- With an outbound proxy every request of that call goes to the proxy.
- ``bye()`` on an unanswered incoming call answers 603 and emits
  ``CallEnded(by="local", reason="declined")``; on an outgoing call not yet answered it
  CANCELs, and the call ends with ``CallFailed(487, ...)`` (or BYE if a 2xx crosses).
- Our re-INVITE that times out or fails reports ``ReinviteAnswered(status, None)``;
  the dialog stays up (the application decides).
- Late offer (an INVITE without SDP, RFC 3264 §5): ``IncomingCall.sdp`` is None, the
  offer goes in ``respond(200, sdp=...)`` and the ACK's answer arrives as
  ``CallConfirmed.sdp`` (None if the ACK carried none).
- A re-INVITE without SDP (a session refresh, RFC 3264 §8): ``ReinviteReceived.sdp``
  is None, our offer goes in ``answer_reinvite(200, sdp=...)`` and the ACK's answer
  arrives as ``ReinviteConfirmed.sdp``; every re-INVITE's ACK is reported so.
- A 2xx ACK that matches the INVITE's server transaction (RFC 2543 peers, or a
  reused branch) is still passed on and confirms the call.

Layout: this module is the endpoint (bytes, timers, dispatch, transaction
bookkeeping, OPTIONS/405/420/481/400); :mod:`callstream.sip.uac` places calls,
:mod:`callstream.sip.uas` takes them, :mod:`callstream.sip._calls` holds what both share.
"""

from __future__ import annotations

import logging

from callstream.errors import ProtocolError, SipParseError
from callstream.sip._calls import (
    ACCEPT,
    ALLOW,
    ALLOWED_METHODS,
    DIALOG_METHODS,
    SUPPORTED,
    CallState,
    Phase,
)
from callstream.sip.auth import DigestCredentials
from callstream.sip.events import (
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgressed,
    DtmfReceived,
    IncomingCall,
    MessageRejected,
    Registered,
    RegistrationFailed,
    ReinviteAnswered,
    ReinviteConfirmed,
    ReinviteReceived,
    SipEvent,
)
from callstream.sip.message import SipRequest, SipRequestParseError, SipResponse, parse_message
from callstream.sip.registration import Registration, RegistrationClient
from callstream.sip.transaction import (
    Datagram,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    ServerTransaction,
    SipTimers,
    Transaction,
    TransactionNotification,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    client_key,
    note_source,
    response_destination,
    server_key,
)
from callstream.sip.uac import UacSessions
from callstream.sip.uas import UasSessions, parse_dtmf_info

__all__ = [
    "CallAnswered",
    "CallCancelled",
    "CallConfirmed",
    "CallEnded",
    "CallFailed",
    "CallProgressed",
    "DigestCredentials",
    "DtmfReceived",
    "IncomingCall",
    "MessageRejected",
    "ReinviteAnswered",
    "ReinviteConfirmed",
    "ReinviteReceived",
    "Registered",
    "RegistrationFailed",
    "SipAgent",
    "SipEvent",
    "SipTimers",
    "parse_dtmf_info",
]

logger = logging.getLogger("callstream.sip")


def _answered_2xx(txn: ServerTransaction) -> bool:
    response = txn.last_response
    return response is not None and 200 <= response.status < 300


class SipAgent(UacSessions, UasSessions, RegistrationClient):
    """A SIP user agent (UAC and UAS) for one local address, RFC 3261 §8 and §12–§17.

    Feed it with :meth:`receive_datagram` / :meth:`receive_message` and
    :meth:`handle_timer`; drain :meth:`datagrams_to_send` and :meth:`next_event`; arm
    one timer at :meth:`get_timer`. No call ever raises out of the receive methods.
    The operations on calls come from :mod:`callstream.sip.uac` (outgoing) and
    :mod:`callstream.sip.uas` (incoming); registrations from
    :mod:`callstream.sip.registration`.
    """

    # --- bytes, time and events ------------------------------------------------------

    def sip_call_id(self, handle: str) -> str | None:
        """The SIP Call-ID of a call (ours for an outbound INVITE), or None once forgotten."""
        call = self._calls.get(handle)
        return call.invite.call_id if call is not None else None

    def datagrams_to_send(self) -> list[Datagram]:
        """Everything to send since the last call: (data, addr, transport) tuples."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> SipEvent | None:
        """The oldest pending event, or None when drained."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline over transactions and calls (absolute loop time)."""
        return self._timer_queue.earliest()

    def handle_timer(self, now: float) -> None:
        """Fire every transaction and call timer due at ``now``."""
        while (owner := self._timer_queue.pop_due(now)) is not None:
            try:
                if isinstance(owner, CallState):
                    self._call_timer(owner, now)
                elif isinstance(owner, Registration):
                    self._registration_timer(owner, now)
                else:
                    owner.handle_timer(now)
                    self._drain(owner, now)
            except Exception:
                logger.exception("! timer of %r failed", owner)
            self._timer_queue.schedule(owner)

    def receive_datagram(
        self, data: bytes, addr: tuple[str, int], now: float, transport: str = "UDP"
    ) -> None:
        """Parse and handle one datagram; junk is answered 400 when addressable, else dropped."""
        if not data.strip():
            return  # CRLF keep-alive (RFC 5626 §4.4.1)
        try:
            message = parse_message(data)
        except SipRequestParseError as error:
            self._reject_unparsed(error, addr, transport)
            return
        except SipParseError as error:
            self._events.append(MessageRejected(addr, 0, error.reason))
            return
        except Exception:
            logger.exception("! unparseable datagram from %s:%s", *addr)
            self._events.append(MessageRejected(addr, 0, "unparseable"))
            return
        self.receive_message(message, addr, now, transport)

    def receive_message(
        self,
        message: SipRequest | SipResponse,
        addr: tuple[str, int],
        now: float,
        transport: str = "TCP",
    ) -> None:
        """Handle one parsed message; protocol errors become a 4xx/5xx to the request."""
        transport = transport.upper()
        try:
            if isinstance(message, SipResponse):
                self._on_response(message, now)
            else:
                self._on_request(message, addr, now, transport)
        except ProtocolError as error:
            self._reject(message, addr, transport, error.status, error.reason, now)
        except Exception:
            logger.exception("! failed to handle a message from %s:%s", *addr)
            self._reject(message, addr, transport, 500, "Server Internal Error", now)

    # --- hanging up, either direction ---------------------------------------------

    def bye(self, handle: str, now: float) -> None:
        """Hang up: BYE a confirmed dialog (§15.1.1), CANCEL an unanswered outgoing call,
        decline (603) an unanswered incoming one. Unknown or ended handles are ignored.
        CallEnded(by="local", reason="bye") follows when the BYE transaction completes.
        """
        call = self._calls.get(handle)
        if call is None:
            return
        if call.phase is Phase.CALLING:
            call.bye_requested = True
            self.cancel(handle, now)
        elif call.phase is Phase.INCOMING:
            self.respond(handle, 603, now=now)
            self._events.append(CallEnded(handle, "local", "declined"))
        elif call.phase is Phase.ANSWERED:
            call.bye_requested = True  # §15: no BYE before the ACK (or its timeout)
        elif call.phase is Phase.CONFIRMED:
            self._send_bye(call, now)

    # --- requests received ---------------------------------------------------------

    def _on_request(
        self, request: SipRequest, addr: tuple[str, int], now: float, transport: str
    ) -> None:
        note_source(request, addr)
        txn = self._server_txns.get(server_key(request))
        if txn is not None:  # a retransmission, or the ACK of a non-2xx final
            txn.receive_request(request, now)
            self._drain(txn, now)
            if request.method == "ACK" and _answered_2xx(txn):
                # An RFC 2543 peer (no magic cookie) or one reusing the INVITE's branch:
                # its 2xx ACK matches the INVITE transaction yet belongs to the TU.
                self._on_ack(request, now)
            return
        if request.method == "ACK":
            self._on_ack(request, now)
            return
        destination = response_destination(request, addr, transport)
        required = request.headers.get_all("Require")
        if required and request.method != "CANCEL":
            # §8.2.2.3: we implement no extension, so any Require is refused.
            unsupported = (("Unsupported", ", ".join(required)),)
            self._reply(request, destination, transport, 420, now, extra=unsupported)
        elif request.method == "CANCEL":
            self._on_cancel(request, destination, transport, now)
        elif request.to_tag is None and request.method == "INVITE":
            self._on_new_invite(request, addr, destination, transport, now)
        else:
            self._on_other(request, destination, transport, now)

    def _on_other(
        self, request: SipRequest, destination: tuple[str, int], transport: str, now: float
    ) -> None:
        method = request.method
        call = None
        if request.to_tag is not None:
            call = self._dialogs.get((request.call_id, request.to_tag, request.from_tag or ""))
        if method == "OPTIONS":
            self._reply(request, destination, transport, 200, now, extra=self._capabilities())
            return
        if method not in ALLOWED_METHODS and (call is not None or method not in DIALOG_METHODS):
            self._reply(request, destination, transport, 405, now, extra=(("Allow", ALLOW),))
            return
        if call is None or call.dialog is None:
            self._reply(request, destination, transport, 481, now)
            return
        call.dialog.check_remote_request(request)
        if method == "BYE":
            self._on_bye(call, request, destination, transport, now)
        elif method == "INVITE":
            self._on_reinvite(call, request, destination, transport, now)
        else:
            self._on_info(call, request, destination, transport, now)

    # --- responses received --------------------------------------------------------

    def _on_response(self, response: SipResponse, now: float) -> None:
        txn = self._client_txns.get(client_key(response))
        if txn is None:
            return  # stray: its transaction is gone (§17.1.3: drop)
        txn.receive_response(response, now)
        self._drain(txn, now)

    def _on_notification(
        self, txn: Transaction, notice: TransactionNotification, now: float
    ) -> None:
        if isinstance(notice, TransactionTerminated):
            self._remove_txn(txn)
            return
        if isinstance(txn, NonInviteClientTransaction) and txn.key in self._register_txns:
            if isinstance(notice, ResponseReceived):
                self._on_register_outcome(txn.key, notice.response, notice.response.status, now)
            elif isinstance(notice, TransactionTimedOut | TransportFailed):
                self._on_register_outcome(txn.key, None, notice.status, now)
            return
        call = self._calls.get(txn.call_handle or "")
        if call is None or not isinstance(
            txn, InviteClientTransaction | NonInviteClientTransaction
        ):
            return  # server timeouts need nothing more; orphan clients are done
        if isinstance(notice, ResponseReceived):
            response: SipResponse | None = notice.response
            status = notice.response.status
        else:
            assert isinstance(notice, TransactionTimedOut | TransportFailed)
            response, status = None, notice.status
        method = txn.request.method
        if method == "INVITE":
            if response is not None and self._resend_ack(call, response):
                return
            if txn is call.invite_txn:
                self._on_invite_outcome(call, response, status, now)
            elif txn is call.reinvite_client:
                self._on_reinvite_outcome(call, response, status, now)
        elif method == "BYE" and status >= 200:
            self._end(call, "local", call.end_reason)

    def _call_timer(self, call: CallState, now: float) -> None:
        if call.ok_give_up is not None and now >= call.ok_give_up:
            call.ok_datagram = call.ok_next = call.ok_give_up = None
            if call.phase in (Phase.ANSWERED, Phase.CONFIRMED):
                self._send_bye(call, now, "ack timeout")  # §13.3.1.4
                self._end(call, "local", "ack timeout")
        if call.ok_next is not None and now >= call.ok_next and call.ok_datagram is not None:
            self._outbox.append(call.ok_datagram)
            call.ok_interval = min(call.ok_interval * 2, self.timers.t2)
            call.ok_next += call.ok_interval
        if call.cancel_give_up is not None and now >= call.cancel_give_up:
            call.cancel_give_up = None
            if call.phase is Phase.CALLING:
                self._fail(call, 487, "Request Terminated")

    def _remove_txn(self, txn: Transaction) -> None:
        if isinstance(txn, InviteClientTransaction | NonInviteClientTransaction):
            if self._client_txns.get(txn.key) is txn:
                del self._client_txns[txn.key]
        elif isinstance(txn, InviteServerTransaction | NonInviteServerTransaction):
            if self._server_txns.get(txn.key) is txn:
                del self._server_txns[txn.key]

    @staticmethod
    def _capabilities() -> tuple[tuple[str, str], ...]:
        return (("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED))

    # --- junk ----------------------------------------------------------------------

    def _reject(
        self,
        message: SipRequest | SipResponse,
        addr: tuple[str, int],
        transport: str,
        status: int,
        reason: str,
        now: float,
    ) -> None:
        """Answer a request that broke the protocol with ``status`` (never an ACK)."""
        if isinstance(message, SipResponse) or message.method == "ACK":
            self._events.append(MessageRejected(addr, 0, reason))
            return
        try:
            txn = self._server_txns.get(server_key(message))
            if txn is None:
                destination = response_destination(message, addr, transport)
                txn = self._new_server_txn(message, destination, transport, now)
            if not txn.final_sent:
                response = self._plain_response(message, status, reason=reason)
                self._send_response(txn, response, now)
            call = self._calls.get(txn.call_handle or "")
            if call is not None and call.invite_txn is txn and call.phase is Phase.INCOMING:
                self._forget(call)
        except Exception:
            logger.exception("! cannot answer %s from %s:%s", message.method, *addr)
            status = 0
        self._events.append(MessageRejected(addr, status, reason))

    def _reject_unparsed(
        self, error: SipRequestParseError, addr: tuple[str, int], transport: str
    ) -> None:
        """400 with the parser's reason, sent statelessly (§8.2, §21.4.1), else drop."""
        partial = error.partial
        status = 0
        if partial is not None and partial.method != "ACK":
            try:
                note_source(partial, addr)
                response = self._plain_response(partial, 400, reason=error.reason)
                destination = response_destination(partial, addr, transport)
                self._outbox.append((response.serialize(), destination, transport.upper()))
                status = 400
            except Exception:
                logger.exception("! cannot answer a malformed request from %s:%s", *addr)
        self._events.append(MessageRejected(addr, status, error.reason))
