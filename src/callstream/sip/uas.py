"""The inbound half of the agent: requests a peer sends us (RFC 3261 §13.3, §9.2,
§14.2, §15.1.2; RFC 6086 INFO).

A new INVITE becomes an :class:`IncomingCall` (100 Trying sent); ``respond`` answers
it; the ACK of our 2xx confirms it; CANCEL, BYE, re-INVITE and INFO arriving in a
call are handled here. Mixed into :class:`~callstream.sip.agent.SipAgent`.
"""

from __future__ import annotations

import secrets

from callstream.errors import SipProtocolError
from callstream.sip._calls import (
    DTMF_DIGITS,
    RETRY_AFTER_SECONDS,
    AgentCore,
    CallState,
    Phase,
    Role,
    sdp_of,
)
from callstream.sip.dialog import Dialog
from callstream.sip.events import (
    CallCancelled,
    CallConfirmed,
    DtmfReceived,
    IncomingCall,
    ReinviteConfirmed,
    ReinviteReceived,
)
from callstream.sip.message import SipRequest, new_tag, response_for
from callstream.sip.transaction import InviteServerTransaction, server_key

_DTMF_EVENT_DIGITS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


def parse_dtmf_info(content_type: str, body: bytes) -> tuple[str, int]:
    """(digit, duration_ms) of an INFO body: application/dtmf-relay (``Signal=5`` and
    ``Duration=160`` lines) or application/dtmf (the digit alone). Durations default
    to 100 ms. Raises SipProtocolError (400) naming what is wrong."""
    text = body.decode("utf-8", "replace")
    if content_type == "application/dtmf":
        signal, duration_text = text.strip(), "100"
    else:
        fields: dict[str, str] = {}
        for line in text.splitlines():
            name, _, value = line.partition("=")
            fields[name.strip().lower()] = value.strip()
        signal, duration_text = fields.get("signal", ""), fields.get("duration", "100")
    digit = _DTMF_EVENT_DIGITS.get(signal, signal.upper())
    if digit not in DTMF_DIGITS:
        raise SipProtocolError("bad DTMF signal", status=400)
    # isdigit() alone would pass "²" and 5000-digit strings, on which int() raises.
    if not (duration_text.isascii() and duration_text.isdigit()) or len(duration_text) > 9:
        raise SipProtocolError("bad DTMF duration", status=400)
    return digit, int(duration_text)


class UasSessions(AgentCore):
    """Operations on incoming calls and on requests received inside any call."""

    def respond(
        self,
        handle: str,
        status: int,
        *,
        sdp: bytes | None = None,
        reason: str | None = None,
        now: float,
    ) -> None:
        """Answer an incoming INVITE (§13.3.1): 18x (183 with ``sdp`` for early media),
        2xx with the ``sdp`` answer (re-sent until ACK), or 300-699 (ends the call)."""
        call = self._calls.get(handle)
        if call is None or call.role is not Role.UAS or call.phase is not Phase.INCOMING:
            raise SipProtocolError(f"call {handle} has no INVITE to answer", status=500)
        if not 101 <= status <= 699:
            raise ValueError(f"cannot respond {status} to an INVITE")
        txn = call.invite_txn
        assert isinstance(txn, InviteServerTransaction)
        if status < 300 and call.dialog is None:
            call.dialog = Dialog.from_uas_request(call.invite, call.local_tag)
            self._dialogs[call.dialog.id] = call
        if 200 <= status < 300 and call.dialog is not None:
            call.dialog.confirm()
        response = self._response(call.invite, status, reason, call.local_tag, sdp, call.transport)
        if status < 200:
            self._send_response(txn, response, now)
        elif status < 300:
            self._send_2xx(call, txn, response, now)
            call.phase = Phase.ANSWERED
        else:
            self._send_response(txn, response, now)
            self._forget(call)

    def answer_reinvite(
        self, handle: str, status: int, *, sdp: bytes | None = None, now: float
    ) -> None:
        """Send the final response to the peer's re-INVITE (§14.2); its ACK is absorbed."""
        call = self._calls.get(handle)
        txn = call.reinvite_server if call is not None else None
        if call is None or txn is None:
            raise SipProtocolError(f"call {handle} has no re-INVITE to answer", status=500)
        if status < 200:
            raise ValueError("answer_reinvite sends final responses only")
        response = self._response(txn.request, status, None, call.local_tag, sdp, call.transport)
        call.reinvite_server = None
        if status < 300:
            self._send_2xx(call, txn, response, now)
        else:
            self._send_response(txn, response, now)

    def _on_new_invite(
        self,
        request: SipRequest,
        addr: tuple[str, int],
        destination: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        txn = self._new_server_txn(request, destination, transport, now)
        if len(self._calls) >= self.max_calls:
            busy = self._plain_response(request, 503, (("Retry-After", str(RETRY_AFTER_SECONDS)),))
            self._send_response(txn, busy, now)
            return
        if request.body and sdp_of(request) is None:
            raise SipProtocolError("only application/sdp bodies are accepted", status=415)
        handle = secrets.token_hex(8)
        call = CallState(
            handle, Role.UAS, request, transport, destination, new_tag(), Phase.INCOMING
        )
        call.invite_txn = txn
        txn.call_handle = handle
        self._calls[handle] = call
        self._send_response(txn, response_for(request, 100), now)
        self._events.append(IncomingCall(handle, request, sdp_of(request), addr))

    def _on_ack(self, request: SipRequest, now: float) -> None:
        """The ACK of our 2xx (its own transaction, §17.1.1.3): stop re-sending the 2xx.

        The first ACK of the initial INVITE confirms the call, with the answer it
        carries when the INVITE made a late offer (§13.2.1); the ACK of a re-INVITE's
        2xx is reported too, with the answer when the re-INVITE made no offer.
        """
        call = self._dialogs.get((request.call_id, request.to_tag or "", request.from_tag or ""))
        if call is None or call.ok_datagram is None or request.cseq[0] != call.ok_cseq:
            return  # ACK for an unknown dialog, or a retransmitted one: ignored (§12.2.2)
        call.ok_datagram = call.ok_next = call.ok_give_up = None
        if call.phase is Phase.ANSWERED:
            call.phase = Phase.CONFIRMED
            self._events.append(CallConfirmed(call.handle, sdp_of(request)))
            if call.bye_requested:
                self._send_bye(call, now)
        else:  # the ACK of our 2xx to a re-INVITE
            self._events.append(ReinviteConfirmed(call.handle, sdp_of(request)))

    def _on_cancel(
        self, request: SipRequest, destination: tuple[str, int], transport: str, now: float
    ) -> None:
        """CANCEL (§9.2): 200 to it, 487 to the INVITE if still pending; 481 if no INVITE."""
        invite_txn = self._server_txns.get(server_key(request, "INVITE"))
        if not isinstance(invite_txn, InviteServerTransaction):
            self._reply(request, destination, transport, 481, now)
            return
        call = self._calls.get(invite_txn.call_handle or "")
        self._reply(
            request, destination, transport, 200, now, to_tag=call.local_tag if call else None
        )
        if call is None or invite_txn.final_sent:
            return
        terminated = self._response(invite_txn.request, 487, None, call.local_tag, None, transport)
        self._send_response(invite_txn, terminated, now)
        if call.reinvite_server is invite_txn:
            call.reinvite_server = None
        elif call.phase is Phase.INCOMING:
            self._events.append(CallCancelled(call.handle))
            self._forget(call)

    def _on_bye(
        self,
        call: CallState,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        """BYE (§15.1.2): 200, and 487 to an INVITE still unanswered."""
        self._reply(request, destination, transport, 200, now)
        txn = call.invite_txn
        if call.phase is Phase.INCOMING and isinstance(txn, InviteServerTransaction):
            response = self._response(call.invite, 487, None, call.local_tag, None, transport)
            self._send_response(txn, response, now)
        self._end(call, "remote", "bye")

    def _on_reinvite(
        self,
        call: CallState,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        """re-INVITE (§14.2): 491 if ours is pending, 500 if theirs is, else the TU decides."""
        if call.reinvite_client is not None:
            self._reply(request, destination, transport, 491, now)
            return
        if call.reinvite_server or call.ok_datagram or call.phase is not Phase.CONFIRMED:
            retry = (("Retry-After", str(secrets.randbelow(11))),)
            self._reply(request, destination, transport, 500, now, extra=retry)
            return
        txn = self._new_server_txn(request, destination, transport, now)
        txn.call_handle = call.handle
        assert isinstance(txn, InviteServerTransaction) and call.dialog is not None
        call.reinvite_server = txn
        self._send_response(txn, response_for(request, 100), now)
        call.dialog.refresh_target(request)
        self._events.append(ReinviteReceived(call.handle, sdp_of(request)))

    def _on_info(
        self,
        call: CallState,
        request: SipRequest,
        destination: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        """INFO: DTMF digits are reported; other bodies are accepted and ignored."""
        content_type = request.content_type
        if content_type in ("application/dtmf-relay", "application/dtmf"):
            digit, duration_ms = parse_dtmf_info(content_type, request.body)
            self._reply(request, destination, transport, 200, now)
            self._events.append(DtmfReceived(call.handle, digit, duration_ms))
            return
        self._reply(request, destination, transport, 200, now)
