"""Late offer (RFC 3264 §5, RFC 3261 §13.2.1): an INVITE without SDP, our offer in the
2xx, the caller's answer in the ACK, reported as ``CallConfirmed.sdp``.

Our own UAC always makes an offer, so the caller here is hand-written bytes.
"""

from __future__ import annotations

from callstream.sip.agent import CallConfirmed, CallEnded, IncomingCall, SipAgent
from callstream.sip.message import SipRequest, SipResponse, parse_message

PHONE = ("192.0.2.10", 5062)
OFFER = (
    b"v=0\r\no=callstream 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
ANSWER = (
    b"v=0\r\no=phone 77 77 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)

# A late-offer INVITE as a desk phone sends it: no body, Content-Length 0.
LATE_INVITE = (
    b"INVITE sip:echo@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-late-1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Desk" <sip:desk@192.0.2.10>;tag=desk-tag\r\n'
    b"To: <sip:echo@127.0.0.1:5060>\r\n"
    b"Call-ID: late-offer-1@192.0.2.10\r\n"
    b"CSeq: 101 INVITE\r\n"
    b"Contact: <sip:desk@192.0.2.10:5062>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"User-Agent: DeskPhone/2.1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def ack_for(ok: SipResponse, body: bytes = b"", content_type: str = "application/sdp") -> bytes:
    """The caller's ACK of our 2xx (§13.2.2.4): new branch, the INVITE's CSeq number."""
    head = (
        "ACK sip:callstream@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-late-ack;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {ok.headers.get('From')}\r\n"
        f"To: {ok.headers.get('To')}\r\n"
        "Call-ID: late-offer-1@192.0.2.10\r\n"
        "CSeq: 101 ACK\r\n"
    )
    if body:
        head += f"Content-Type: {content_type}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def answered_late_offer() -> tuple[SipAgent, str, SipResponse]:
    """An agent that got LATE_INVITE and answered 200 with OFFER; the 200 as sent."""
    agent = SipAgent("127.0.0.1", 5060, "gw/1")
    agent.receive_datagram(LATE_INVITE, PHONE, 0.0)
    incoming = agent.next_event()
    assert isinstance(incoming, IncomingCall)
    assert incoming.sdp is None
    assert incoming.request.body == b""
    agent.respond(incoming.call_handle, 200, sdp=OFFER, now=0.1)
    sent = agent.datagrams_to_send()
    assert [d.split(b"\r\n", 1)[0] for d, _, _ in sent] == [
        b"SIP/2.0 100 Trying",
        b"SIP/2.0 200 OK",
    ]
    ok = parse_message(sent[1][0])
    assert isinstance(ok, SipResponse)
    assert sent[1][1] == PHONE
    return agent, incoming.call_handle, ok


def test_offer_goes_in_the_2xx() -> None:
    _, _, ok = answered_late_offer()
    assert ok.body == OFFER
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert ok.headers.get("Content-Length") == str(len(OFFER))
    assert ok.cseq == (101, "INVITE")
    assert ok.to_tag is not None


def test_answer_in_the_ack_is_reported() -> None:
    agent, handle, ok = answered_late_offer()
    agent.receive_datagram(ack_for(ok, ANSWER), PHONE, 0.2)
    assert agent.next_event() == CallConfirmed(handle, ANSWER)
    assert agent.next_event() is None
    agent.handle_timer(10.0)
    assert agent.datagrams_to_send() == []  # the 2xx is no longer re-sent


def test_retransmitted_ack_reports_nothing_more() -> None:
    agent, handle, ok = answered_late_offer()
    ack = ack_for(ok, ANSWER)
    agent.receive_datagram(ack, PHONE, 0.2)
    agent.receive_datagram(ack, PHONE, 0.3)
    assert agent.next_event() == CallConfirmed(handle, ANSWER)
    assert agent.next_event() is None
    assert agent.datagrams_to_send() == []


def test_answer_after_2xx_retransmissions() -> None:
    agent, handle, ok = answered_late_offer()
    agent.handle_timer(0.6)
    agent.handle_timer(1.6)
    resent = [d for d, _, _ in agent.datagrams_to_send()]
    assert len(resent) == 2 and all(d == ok.serialize() for d in resent)
    agent.receive_datagram(ack_for(ok, ANSWER), PHONE, 2.0)
    assert agent.next_event() == CallConfirmed(handle, ANSWER)


def test_ack_without_answer_carries_none() -> None:
    agent, handle, ok = answered_late_offer()
    agent.receive_datagram(ack_for(ok), PHONE, 0.2)
    assert agent.next_event() == CallConfirmed(handle, None)


def test_ack_with_a_body_that_is_not_sdp_carries_none() -> None:
    agent, handle, ok = answered_late_offer()
    agent.receive_datagram(ack_for(ok, b"hello", "text/plain"), PHONE, 0.2)
    assert agent.next_event() == CallConfirmed(handle, None)


def test_content_type_parameters_and_case_are_ignored() -> None:
    agent, handle, ok = answered_late_offer()
    ack = ack_for(ok, ANSWER, "Application/SDP; charset=utf-8")
    agent.receive_datagram(ack, PHONE, 0.2)
    assert agent.next_event() == CallConfirmed(handle, ANSWER)


def test_late_offer_call_then_works_like_any_other() -> None:
    agent, handle, ok = answered_late_offer()
    agent.receive_datagram(ack_for(ok, ANSWER), PHONE, 0.2)
    assert agent.next_event() == CallConfirmed(handle, ANSWER)
    bye = (
        ack_for(ok)
        .replace(b"ACK sip:", b"BYE sip:")
        .replace(b"CSeq: 101 ACK", b"CSeq: 102 BYE")
        .replace(b"late-ack", b"late-bye")
    )
    agent.receive_datagram(bye, PHONE, 5.0)
    ((data, addr, _),) = agent.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 200 OK\r\n") and addr == PHONE
    assert agent.next_event() == CallEnded(handle, "remote", "bye")


def test_ack_of_an_rfc2543_peer_matching_the_invite_still_confirms() -> None:
    """A peer without the magic cookie (§17.2.3): its 2xx ACK matches the INVITE's
    server transaction, yet belongs to the TU and must confirm the call."""
    old_invite = LATE_INVITE.replace(b"branch=z9hG4bK-late-1", b"branch=old1")
    agent = SipAgent("127.0.0.1", 5060, "gw/1")
    agent.receive_datagram(old_invite, PHONE, 0.0)
    incoming = agent.next_event()
    assert isinstance(incoming, IncomingCall)
    agent.respond(incoming.call_handle, 200, sdp=OFFER, now=0.1)
    ok = parse_message(agent.datagrams_to_send()[-1][0])
    assert isinstance(ok, SipResponse)
    ack = ack_for(ok, ANSWER).replace(b"branch=z9hG4bK-late-ack", b"branch=old1")
    assert isinstance(parse_message(ack), SipRequest)
    agent.receive_datagram(ack, PHONE, 0.2)
    assert agent.next_event() == CallConfirmed(incoming.call_handle, ANSWER)
    agent.handle_timer(40.0)
    assert agent.next_event() is None  # no "ack timeout" BYE
    assert agent.datagrams_to_send() == []
