"""RFC 3261 §17 transaction machines, driven by ``now`` only."""

from __future__ import annotations

import pytest

from callstream.errors import SipProtocolError
from callstream.sip.message import SipRequest, SipResponse, parse_message, response_for
from callstream.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ResponseReceived,
    SipTimers,
    TransactionState,
    TransactionTerminated,
    TransactionTimedOut,
    build_cancel,
    client_key,
    note_source,
    response_destination,
    server_key,
)

PEER = ("192.0.2.10", 5060)
TIMERS = SipTimers()


def request(method: str = "INVITE", branch: str = "z9hG4bKabc") -> SipRequest:
    data = (
        f"{method} sip:bob@192.0.2.10 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5070;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@192.0.2.1>;tag=a1\r\n"
        "To: <sip:bob@192.0.2.10>\r\n"
        "Call-ID: call-1@192.0.2.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def response(req: SipRequest, status: int) -> SipResponse:
    return response_for(req, status, to_tag="b1" if status > 100 else None)


def sent_times(
    txn: InviteClientTransaction | NonInviteClientTransaction, until: float
) -> list[float]:
    """Times at which the request was (re)sent, firing timers exactly at their deadlines."""
    times = [0.0] if txn.take_datagrams() else []
    while (when := txn.deadline()) is not None and when <= until:
        txn.handle_timer(when)
        if txn.take_datagrams():
            times.append(when)
    return times


def test_timer_a_doubles_without_cap_until_timer_b() -> None:
    txn = InviteClientTransaction(request(), PEER, "UDP", TIMERS, 0.0)
    assert sent_times(txn, 31.9) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    txn.handle_timer(32.0)
    assert txn.take_notifications() == [TransactionTimedOut(408), TransactionTerminated()]
    assert txn.state is TransactionState.TERMINATED
    assert txn.deadline() is None


def test_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    txn = NonInviteClientTransaction(request("BYE"), PEER, "UDP", TIMERS, 0.0)
    times = sent_times(txn, 31.9)
    intervals = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
    assert intervals[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert set(intervals[3:]) == {4.0}
    txn.handle_timer(32.0)
    notifications = txn.take_notifications()
    assert notifications[0] == TransactionTimedOut(status=408)
    assert txn.terminated


def test_timer_e_is_t2_in_proceeding() -> None:
    txn = NonInviteClientTransaction(request("BYE"), PEER, "UDP", TIMERS, 0.0)
    txn.take_datagrams()
    txn.receive_response(response(txn.request, 100), 0.1)
    assert txn.state is TransactionState.PROCEEDING
    txn.handle_timer(0.5)
    assert len(txn.take_datagrams()) == 1
    assert txn.deadline() == pytest.approx(4.5)


def test_non_invite_client_completed_absorbs_finals_then_timer_k() -> None:
    txn = NonInviteClientTransaction(request("BYE"), PEER, "UDP", TIMERS, 0.0)
    ok = response(txn.request, 200)
    txn.receive_response(ok, 0.2)
    assert txn.take_notifications() == [ResponseReceived(ok)]
    txn.receive_response(ok, 0.3)
    assert txn.take_notifications() == []
    assert txn.deadline() == pytest.approx(5.2)
    txn.handle_timer(5.2)
    assert txn.take_notifications() == [TransactionTerminated()]


def test_reliable_transport_has_no_retransmissions_and_zero_timer_k() -> None:
    txn = NonInviteClientTransaction(request("BYE"), PEER, "TCP", TIMERS, 0.0)
    assert len(txn.take_datagrams()) == 1
    assert txn.deadline() == pytest.approx(32.0)  # only timer F
    txn.receive_response(response(txn.request, 200), 1.0)
    assert txn.terminated


def test_invite_client_acks_non_2xx_and_absorbs_retransmission_timer_d() -> None:
    txn = InviteClientTransaction(request(), PEER, "UDP", TIMERS, 0.0)
    txn.take_datagrams()
    busy = response(txn.request, 486)
    txn.receive_response(busy, 1.0)
    assert txn.take_notifications() == [ResponseReceived(busy)]
    ((ack_data, addr, transport),) = txn.take_datagrams()
    assert addr == PEER and transport == "UDP"
    ack = parse_message(ack_data)
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK" and ack.uri == "sip:bob@192.0.2.10"
    assert ack.cseq == (1, "ACK") and ack.branch == "z9hG4bKabc" and ack.to_tag == "b1"
    txn.receive_response(busy, 2.0)  # retransmitted final: ACK again, TU not told
    assert txn.take_datagrams() == [(ack_data, PEER, "UDP")]
    assert txn.take_notifications() == []
    assert txn.deadline() == pytest.approx(33.0)  # timer D, 32 s over UDP
    txn.handle_timer(33.0)
    assert txn.terminated


def test_invite_client_accepted_passes_2xx_retransmissions() -> None:
    txn = InviteClientTransaction(request(), PEER, "UDP", TIMERS, 0.0)
    ringing, ok = response(txn.request, 180), response(txn.request, 200)
    txn.receive_response(ringing, 0.1)
    assert txn.deadline() is None  # no A or B in Proceeding
    txn.receive_response(ok, 0.2)
    txn.receive_response(ok, 0.7)
    assert txn.take_notifications() == [
        ResponseReceived(ringing),
        ResponseReceived(ok),
        ResponseReceived(ok),
    ]
    assert txn.state is TransactionState.ACCEPTED
    txn.handle_timer(32.2)  # timer M
    assert txn.terminated


def test_invite_server_timer_g_doubles_to_t2_then_h_times_out() -> None:
    req = request()
    txn = InviteServerTransaction(req, PEER, "UDP", TIMERS, 0.0)
    txn.send_response(response(req, 100), 0.0)
    txn.receive_request(req, 0.1)  # retransmitted INVITE gets the 100 again
    assert len(txn.take_datagrams()) == 2
    txn.send_response(response(req, 486), 1.0)
    txn.take_datagrams()
    resent: list[float] = []
    while (when := txn.deadline()) is not None and not txn.terminated:
        txn.handle_timer(when)
        if txn.take_datagrams():
            resent.append(round(when - 1.0, 3))
    assert resent[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert txn.take_notifications()[-2:] == [TransactionTimedOut(408), TransactionTerminated()]


def test_invite_server_ack_confirms_then_timer_i_absorbs() -> None:
    req = request()
    txn = InviteServerTransaction(req, PEER, "UDP", TIMERS, 0.0)
    txn.send_response(response(req, 603), 0.0)
    txn.take_datagrams()
    ack = request("ACK")
    assert server_key(ack) == server_key(req)
    txn.receive_request(ack, 0.3)
    assert txn.state is TransactionState.CONFIRMED
    txn.receive_request(req, 0.4)
    txn.receive_request(ack, 0.5)
    assert txn.take_datagrams() == []
    assert txn.deadline() == pytest.approx(5.3)  # timer I = T4
    txn.handle_timer(5.3)
    assert txn.terminated


def test_invite_server_refuses_response_after_final() -> None:
    req = request()
    txn = InviteServerTransaction(req, PEER, "UDP", TIMERS, 0.0)
    txn.send_response(response(req, 486), 0.0)
    with pytest.raises(SipProtocolError) as caught:
        txn.send_response(response(req, 200), 0.1)
    assert str(caught.value) == "cannot send 200 in invite server transaction state COMPLETED"
    assert caught.value.status == 500


def test_non_invite_server_timer_j_and_retransmissions() -> None:
    req = request("OPTIONS")
    txn = NonInviteServerTransaction(req, PEER, "UDP", TIMERS, 0.0)
    txn.receive_request(req, 0.1)  # Trying: nothing to repeat yet
    assert txn.take_datagrams() == []
    txn.send_response(response(req, 200), 0.2)
    (first,) = txn.take_datagrams()
    txn.receive_request(req, 1.0)
    assert txn.take_datagrams() == [first]
    assert txn.deadline() == pytest.approx(32.2)
    txn.handle_timer(32.2)
    assert txn.terminated


def test_non_invite_server_timer_j_zero_over_tcp() -> None:
    req = request("OPTIONS")
    txn = NonInviteServerTransaction(req, PEER, "TCP", TIMERS, 0.0)
    txn.send_response(response(req, 200), 0.0)
    assert txn.terminated


def test_keys_separate_cancel_and_match_ack() -> None:
    invite = request()
    cancel = build_cancel(invite)
    assert cancel.branch == invite.branch
    assert client_key(cancel) == ("z9hG4bKabc", "CANCEL")
    assert client_key(invite) == ("z9hG4bKabc", "INVITE")
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel, "INVITE") == server_key(invite)
    assert server_key(invite) == ("z9hG4bKabc", "192.0.2.1:5070", "INVITE")


def test_response_destination_uses_received_and_rport() -> None:
    req = request()
    note_source(req, ("198.51.100.7", 40000))
    assert req.top_via.received == "198.51.100.7"
    assert req.top_via.rport == 40000
    assert response_destination(req, ("198.51.100.7", 40000), "UDP") == ("198.51.100.7", 40000)
    assert response_destination(req, ("198.51.100.7", 40001), "TCP") == ("198.51.100.7", 40001)
    reply = response_for(req, 200)
    assert "received=198.51.100.7" in (reply.headers.get("Via") or "")
