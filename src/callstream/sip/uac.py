"""The outbound half of the agent: calls we place (RFC 3261 §13.2, §22.2, §14.1, §9.1).

INVITE sent and retried with credentials after 401/407, CANCEL out, the ACK for
every 2xx (kept to answer retransmissions), a second fork's 2xx ACKed and BYEd,
re-INVITE and INFO out. Mixed into :class:`~callstream.sip.agent.SipAgent`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from callstream.errors import SipProtocolError
from callstream.sip._calls import (
    ALLOW,
    DTMF_DIGITS,
    SUPPORTED,
    AgentCore,
    CallState,
    Phase,
    Role,
    resolve_host,
    sdp_of,
)
from callstream.sip.auth import DigestCredentials, answer_challenge
from callstream.sip.dialog import Dialog, DialogState, with_tag
from callstream.sip.events import CallAnswered, CallFailed, CallProgressed, ReinviteAnswered
from callstream.sip.message import SipRequest, SipResponse, new_branch, new_call_id, new_tag
from callstream.sip.transaction import InviteClientTransaction, build_cancel
from callstream.sip.uri import SipUri


class UacSessions(AgentCore):
    """Operations on outgoing calls and what their responses bring."""

    def invite(
        self,
        target: str,
        *,
        from_uri: str,
        sdp: bytes,
        now: float,
        from_display: str | None = None,
        credentials: DigestCredentials | None = None,
        outbound_proxy: tuple[str, int] | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        transport: str = "UDP",
    ) -> str:
        """Start an outgoing call (§13.2.1); returns its call handle.

        Sent to ``outbound_proxy`` or the target's host:port. Events follow:
        CallProgressed*, then CallAnswered or CallFailed.
        """
        transport = transport.upper()
        handle = secrets.token_hex(8)
        host, port = outbound_proxy or SipUri.parse(target).host_port
        local_tag = new_tag()
        from_value = with_tag(f"<{from_uri}>", local_tag)
        if from_display:
            from_value = f'"{from_display}" {from_value}'
        request = self._new_invite(target, from_value, transport, extra_headers)
        request.headers.add("Content-Type", "application/sdp")
        request.body = sdp
        resolved = resolve_host(host)
        if resolved is None:
            self._events.append(CallFailed(handle, 404, "cannot resolve host"))
            return handle
        call = CallState(
            handle, Role.UAC, request, transport, (resolved, port), local_tag, Phase.CALLING
        )
        call.proxy = (resolved, port) if outbound_proxy else None
        call.credentials = credentials
        self._calls[handle] = call
        self._start_client(call, request, call.next_hop, now)
        return handle

    def _new_invite(
        self,
        target: str,
        from_value: str,
        transport: str,
        extra_headers: Iterable[tuple[str, str]],
    ) -> SipRequest:
        """An initial INVITE's headers (§8.1.1), in the order peers expect; no body yet."""
        request = SipRequest("INVITE", target)
        headers = request.headers
        headers.add("Via", self._via(transport, new_branch()))
        headers.add("Max-Forwards", "70")
        headers.add("From", from_value)
        headers.add("To", f"<{target}>")
        headers.add("Call-ID", new_call_id(self.local_host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._contact(transport))
        headers.add("Allow", ALLOW)
        headers.add("Supported", SUPPORTED)
        headers.add("User-Agent", self.user_agent)
        for name, value in extra_headers:
            headers.add(name, value)
        return request

    def cancel(self, handle: str, now: float) -> None:
        """CANCEL an outgoing call before its final response (§9.1).

        Sent once a provisional response has arrived; until then it is remembered.
        A 2xx that crosses the CANCEL is ACKed and then BYEd.
        """
        call = self._calls.get(handle)
        if call is None or call.role is not Role.UAC or call.phase is not Phase.CALLING:
            return
        call.cancel_requested = True
        if call.provisional_received and not call.cancel_sent:
            self._send_cancel(call, now)

    def reinvite(self, handle: str, sdp: bytes, now: float) -> None:
        """Send a new offer in a confirmed dialog (§14.1); ReinviteAnswered follows.

        Raises SipProtocolError (491) while another re-INVITE is in progress.
        """
        call = self._confirmed(handle)
        if call.reinvite_client is not None or call.reinvite_server is not None:
            raise SipProtocolError("a re-INVITE is already in progress", status=491)
        request = self._dialog_request(
            call, "INVITE", body=sdp, content_type="application/sdp", contact=True
        )
        request.headers.add("Allow", ALLOW)
        txn = self._start_client(call, request, self._hop(call), now)
        assert isinstance(txn, InviteClientTransaction)
        call.reinvite_client = txn

    def send_info_dtmf(self, handle: str, digit: str, duration_ms: int, now: float) -> None:
        """Send one digit in an INFO, application/dtmf-relay (``Signal=``/``Duration=``)."""
        if digit.upper() not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        call = self._confirmed(handle)
        body = f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()
        request = self._dialog_request(
            call, "INFO", body=body, content_type="application/dtmf-relay"
        )
        self._start_client(call, request, self._hop(call), now)

    def _on_invite_outcome(
        self, call: CallState, response: SipResponse | None, status: int, now: float
    ) -> None:
        if response is None:
            self._fail(call, status, "timeout" if status == 408 else "transport error")
        elif status < 200:
            self._on_provisional(call, response, now)
        elif status < 300:
            self._on_invite_2xx(call, response, now)
        elif call.phase is Phase.CALLING:
            if status in (401, 407) and self._retry_with_auth(call, response, now):
                return
            self._fail(call, status, response.reason)

    def _on_provisional(self, call: CallState, response: SipResponse, now: float) -> None:
        call.provisional_received = True
        if response.status > 100:
            if response.to_tag and call.dialog is None:
                call.dialog = Dialog.from_uac_response(call.invite, response)
                self._dialogs[call.dialog.id] = call
            self._events.append(CallProgressed(call.handle, response.status, sdp_of(response)))
        if call.cancel_requested and not call.cancel_sent:
            self._send_cancel(call, now)

    def _on_invite_2xx(self, call: CallState, response: SipResponse, now: float) -> None:
        """2xx to our INVITE (§13.2.2.4): ACK it; a 2xx from a second fork is ACKed and BYEd."""
        tag = response.to_tag or ""
        dialog = call.dialog
        if dialog is not None and dialog.state is DialogState.CONFIRMED:
            self._ack_and_bye_fork(call, response, now)
            return
        if dialog is not None and dialog.remote_tag != tag:
            self._dialogs.pop(dialog.id, None)
            dialog = None
        if dialog is None:
            dialog = Dialog.from_uac_response(call.invite, response)
        dialog.confirm(response)
        call.dialog = dialog
        self._dialogs[dialog.id] = call
        self._send_ack(call, dialog, response)
        call.cancel_give_up = None
        if call.cancel_requested or call.bye_requested:
            self._send_bye(call, now)  # the 2xx crossed our CANCEL (§9.1)
            return
        call.phase = Phase.CONFIRMED
        self._events.append(CallAnswered(call.handle, sdp_of(response)))

    def _on_reinvite_outcome(
        self, call: CallState, response: SipResponse | None, status: int, now: float
    ) -> None:
        if status < 200:
            return
        call.reinvite_client = None
        sdp = None
        if response is not None and status < 300 and call.dialog is not None:
            call.dialog.refresh_target(response)
            self._send_ack(call, call.dialog, response)
            sdp = sdp_of(response)
        self._events.append(ReinviteAnswered(call.handle, status, sdp))

    def _retry_with_auth(self, call: CallState, response: SipResponse, now: float) -> bool:
        """Re-send the INVITE with credentials (§22.2): CSeq+1, new branch, same tags.

        Once per (status, realm) unless the challenge says ``stale=true``.
        """
        if call.credentials is None:
            return False
        header = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        request = SipRequest(
            "INVITE", call.invite.uri, call.invite.headers.copy(), call.invite.body
        )
        authorization = answer_challenge(
            response.status,
            response.headers.get_all(header),
            call.credentials,
            call.challenged,
            method="INVITE",
            uri=request.uri,
            cnonce=secrets.token_hex(8),
            body=request.body,
        )
        if authorization is None:
            return False
        request.headers.set("Via", self._via(call.transport, new_branch()))
        request.headers.set("CSeq", f"{call.invite.cseq[0] + 1} INVITE")
        request.headers.set(*authorization)
        call.invite = request
        call.provisional_received = False
        call.invite_txn = self._start_client(call, request, call.next_hop, now)
        return True

    def _resend_ack(self, call: CallState, response: SipResponse) -> bool:
        """A retransmitted 2xx gets the same ACK again (§13.2.2.4)."""
        if not 200 <= response.status < 300:
            return False
        ack = call.acks.get((response.to_tag or "", response.cseq[0]))
        if ack is None:
            return False
        self._outbox.append(ack)
        return True

    def _send_ack(self, call: CallState, dialog: Dialog, response: SipResponse) -> None:
        """The ACK of a 2xx, built by the dialog: new branch, the INVITE's CSeq number."""
        number = response.cseq[0]
        ack = dialog.create_request("ACK", via=self._via(call.transport, new_branch()), cseq=number)
        datagram = (ack.serialize(), self._hop(call, dialog), call.transport)
        call.acks[(dialog.remote_tag, number)] = datagram
        self._outbox.append(datagram)

    def _ack_and_bye_fork(self, call: CallState, response: SipResponse, now: float) -> None:
        fork = Dialog.from_uac_response(call.invite, response)
        fork.confirm(response)
        self._send_ack(call, fork, response)
        bye = fork.create_request("BYE", via=self._via(call.transport, new_branch()))
        self._start_client(None, bye, self._hop(call, fork), now, call.transport)

    def _send_cancel(self, call: CallState, now: float) -> None:
        call.cancel_sent = True
        self._start_client(None, build_cancel(call.invite), call.next_hop, now, call.transport)
        # §9.1: with no final response 64*T1 after the CANCEL, the INVITE is given up.
        call.cancel_give_up = now + self.timers.transaction_timeout
        self._timer_queue.schedule(call)
