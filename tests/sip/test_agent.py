"""The UA core end to end: two SipAgents wired in memory, time driven by ``now``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from callstream.sip.agent import (
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgressed,
    DigestCredentials,
    DtmfReceived,
    IncomingCall,
    MessageRejected,
    ReinviteAnswered,
    ReinviteConfirmed,
    ReinviteReceived,
    SipAgent,
    SipEvent,
)
from callstream.sip.auth import verify_authorization
from callstream.sip.message import SipRequest, SipResponse, parse_message, response_for

UAC_ADDR = ("127.0.0.1", 5070)
UAS_ADDR = ("127.0.0.1", 5060)
PROXY_ADDR = ("127.0.0.1", 5080)
OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
ANSWER = OFFER.replace(b"o=- 1 1", b"o=- 2 2")
HOLD = OFFER + b"a=sendonly\r\n"
TARGET = "sip:bob@127.0.0.1:5060"

Datagram = tuple[tuple[str, int], tuple[str, int], bytes]


def first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode()


def parse(data: bytes) -> SipRequest | SipResponse:
    return parse_message(data)


class Net:
    """Two agents on loopback addresses, a clock, a wire log and a drop rule."""

    def __init__(self, **uas_options: int) -> None:
        self.now = 0.0
        self.uac = SipAgent("127.0.0.1", 5070, "uac/1")
        self.uas = SipAgent("127.0.0.1", 5060, "uas/1", **uas_options)
        self.agents = {UAC_ADDR: self.uac, UAS_ADDR: self.uas}
        self.wire: list[Datagram] = []
        self.drop: Callable[[tuple[str, int], tuple[str, int], bytes], bool] = (
            lambda src, dst, data: False
        )
        self.events: dict[tuple[str, int], list[SipEvent]] = {UAC_ADDR: [], UAS_ADDR: []}

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, agent in self.agents.items():
                for data, dst, transport in agent.datagrams_to_send():
                    moved = True
                    self.wire.append((src, dst, data))
                    if self.drop(src, dst, data):
                        continue
                    self.deliver(src, dst, data, transport)
        for addr, agent in self.agents.items():
            while (event := agent.next_event()) is not None:
                self.events[addr].append(event)

    def deliver(self, src: tuple[str, int], dst: tuple[str, int], data: bytes, tp: str) -> None:
        if dst == PROXY_ADDR:  # a record-routing proxy: relay to the Request-URI's host
            request = parse(data)
            assert isinstance(request, SipRequest)
            dst = UAS_ADDR if src == UAC_ADDR else UAC_ADDR
        if dst in self.agents:
            self.agents[dst].receive_datagram(data, src, self.now, tp)

    def advance(self, until: float) -> None:
        """Run every timer due up to ``until``, exactly at its deadline."""
        while True:
            deadlines = [t for t in (a.get_timer() for a in self.agents.values()) if t is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            for agent in self.agents.values():
                agent.handle_timer(self.now)
            self.pump()
        self.now = until

    def take(self, addr: tuple[str, int]) -> list[SipEvent]:
        out, self.events[addr] = self.events[addr], []
        return out

    def sent(self, src: tuple[str, int], start: str) -> list[bytes]:
        return [data for s, _, data in self.wire if s == src and first_line(data).startswith(start)]

    def call(self) -> tuple[str, str]:
        """Set up a confirmed call; returns (uac handle, uas handle)."""
        uac_handle = self.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
        self.pump()
        (incoming,) = self.take(UAS_ADDR)
        assert isinstance(incoming, IncomingCall)
        self.uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=self.now)
        self.pump()
        assert self.take(UAC_ADDR) == [CallAnswered(uac_handle, ANSWER)]
        assert self.take(UAS_ADDR) == [CallConfirmed(incoming.call_handle)]
        return uac_handle, incoming.call_handle


def test_call_set_up_and_torn_down_by_caller() -> None:
    net = Net()
    handle = net.uac.invite(
        TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0, from_display="Alice"
    )
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    assert incoming.sdp == OFFER and incoming.remote_addr == UAC_ADDR
    invite = incoming.request
    assert net.uac.sip_call_id(handle) == invite.call_id
    assert net.uas.sip_call_id(incoming.call_handle) == invite.call_id
    assert net.uac.sip_call_id("no-such-handle") is None
    assert invite.headers.get("Max-Forwards") == "70"
    assert invite.headers.get("Contact") == "<sip:callstream@127.0.0.1:5070>"
    assert invite.headers.get("User-Agent") == "uac/1"
    assert invite.cseq == (1, "INVITE")
    assert invite.top_via.params["rport"] == "5070"  # filled by the UAS (RFC 3581)
    assert (invite.headers.get("From") or "").startswith('"Alice" <sip:alice@127.0.0.1>;tag=')
    assert first_line(net.sent(UAS_ADDR, "SIP/2.0 100")[0]) == "SIP/2.0 100 Trying"
    assert parse(net.sent(UAS_ADDR, "SIP/2.0 100")[0]).to_tag is None

    net.uas.respond(incoming.call_handle, 180, now=0.1)
    net.pump()
    assert net.take(UAC_ADDR) == [CallProgressed(handle, 180, None)]
    net.uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=0.2)
    net.pump()
    assert net.take(UAC_ADDR) == [CallAnswered(handle, ANSWER)]
    assert net.take(UAS_ADDR) == [CallConfirmed(incoming.call_handle)]
    ok = parse(net.sent(UAS_ADDR, "SIP/2.0 200")[0])
    ringing = parse(net.sent(UAS_ADDR, "SIP/2.0 180")[0])
    assert ok.to_tag is not None and ok.to_tag == ringing.to_tag
    assert ok.headers.get("Contact") == "<sip:callstream@127.0.0.1:5060>"
    ack = parse(net.sent(UAC_ADDR, "ACK")[0])
    assert ack.cseq == (1, "ACK") and ack.branch != invite.branch
    assert isinstance(ack, SipRequest) and ack.uri == "sip:callstream@127.0.0.1:5060"

    net.uac.bye(handle, now=1.0)
    net.pump()
    assert net.take(UAS_ADDR) == [CallEnded(incoming.call_handle, "remote", "bye")]
    assert net.take(UAC_ADDR) == [CallEnded(handle, "local", "bye")]
    bye = parse(net.sent(UAC_ADDR, "BYE")[0])
    assert bye.cseq == (2, "BYE")
    net.advance(100.0)
    assert net.uac.get_timer() is None and net.uas.get_timer() is None


def test_call_torn_down_by_callee() -> None:
    net = Net()
    uac_handle, uas_handle = net.call()
    net.uas.bye(uas_handle, now=2.0)
    net.pump()
    assert net.take(UAC_ADDR) == [CallEnded(uac_handle, "remote", "bye")]
    assert net.take(UAS_ADDR) == [CallEnded(uas_handle, "local", "bye")]
    bye = parse(net.sent(UAS_ADDR, "BYE")[0])
    assert isinstance(bye, SipRequest) and bye.uri == "sip:callstream@127.0.0.1:5070"
    assert bye.from_tag == parse(net.sent(UAS_ADDR, "SIP/2.0 200")[0]).to_tag


def test_2xx_retransmitted_until_ack_and_ack_loss_recovered() -> None:
    net = Net()
    acks_dropped = 0

    def drop_first_ack(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bool:
        nonlocal acks_dropped
        if data.startswith(b"ACK") and acks_dropped == 0:
            acks_dropped += 1
            return True
        return False

    net.drop = drop_first_ack
    handle = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    net.uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=0)
    net.pump()
    assert net.take(UAC_ADDR) == [CallAnswered(handle, ANSWER)]
    assert net.take(UAS_ADDR) == []
    net.advance(0.5)  # 2xx again at T1; the UAC answers it with the same ACK
    assert net.take(UAS_ADDR) == [CallConfirmed(incoming.call_handle)]
    acks = net.sent(UAC_ADDR, "ACK")
    assert len(acks) == 2 and acks[0] == acks[1]
    net.advance(40.0)
    assert len(net.sent(UAS_ADDR, "SIP/2.0 200")) == 2
    assert net.take(UAC_ADDR) == []


def test_no_ack_ends_call_with_bye_after_64_t1() -> None:
    net = Net()
    net.drop = lambda src, dst, data: data.startswith(b"ACK")
    net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    net.uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=0)
    net.pump()
    net.advance(31.9)
    ok_times = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert len(net.sent(UAS_ADDR, "SIP/2.0 200 OK")) == len(ok_times)
    assert net.take(UAS_ADDR) == []
    net.advance(32.0)
    assert net.take(UAS_ADDR) == [CallEnded(incoming.call_handle, "local", "ack timeout")]
    assert len(net.sent(UAS_ADDR, "BYE")) == 1


def test_cancel_before_answer() -> None:
    net = Net()
    handle = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    net.uas.respond(incoming.call_handle, 180, now=0.1)
    net.pump()
    net.take(UAC_ADDR)
    net.uac.cancel(handle, now=1.0)
    net.pump()
    assert net.take(UAS_ADDR) == [CallCancelled(incoming.call_handle)]
    assert net.take(UAC_ADDR) == [CallFailed(handle, 487, "Request Terminated")]
    assert first_line(net.sent(UAS_ADDR, "SIP/2.0 200")[0]) == "SIP/2.0 200 OK"
    assert parse(net.sent(UAS_ADDR, "SIP/2.0 200")[0]).cseq == (1, "CANCEL")
    terminated = parse(net.sent(UAS_ADDR, "SIP/2.0 487")[0])
    assert terminated.cseq == (1, "INVITE")
    acks = net.sent(UAC_ADDR, "ACK")
    assert len(acks) == 1 and parse(acks[0]).branch == parse(net.sent(UAC_ADDR, "INVITE")[0]).branch
    with pytest.raises(Exception, match="has no INVITE to answer"):
        net.uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=1.1)


def test_cancel_waits_for_a_provisional_response() -> None:
    net = Net()
    net.drop = lambda src, dst, data: data.startswith(b"SIP/2.0 100")
    handle = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    net.uac.cancel(handle, now=0.1)
    net.pump()
    assert net.sent(UAC_ADDR, "CANCEL") == []
    net.uas.respond(incoming.call_handle, 183, sdp=ANSWER, now=0.2)
    net.pump()
    assert len(net.sent(UAC_ADDR, "CANCEL")) == 1
    assert net.take(UAC_ADDR) == [
        CallProgressed(handle, 183, ANSWER),
        CallFailed(handle, 487, "Request Terminated"),
    ]


def test_2xx_crossing_cancel_is_acked_then_byed() -> None:
    net = Net()
    handle = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    net.uas.respond(incoming.call_handle, 180, now=0.1)
    net.pump()
    net.drop = lambda src, dst, data: data.startswith(b"CANCEL")
    net.uac.cancel(handle, now=0.2)
    net.uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=0.2)
    net.pump()
    assert len(net.sent(UAC_ADDR, "ACK")) == 1
    assert len(net.sent(UAC_ADDR, "BYE")) == 1
    assert net.take(UAC_ADDR) == [
        CallProgressed(handle, 180, None),
        CallEnded(handle, "local", "bye"),
    ]


def test_invite_timeout_is_408() -> None:
    net = Net()
    net.drop = lambda src, dst, data: dst == UAS_ADDR
    handle = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    net.advance(31.9)
    assert len(net.sent(UAC_ADDR, "INVITE")) == 7  # 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert net.take(UAC_ADDR) == []
    net.advance(32.0)
    assert net.take(UAC_ADDR) == [CallFailed(handle, 408, "timeout")]


def test_bye_to_vanished_peer_ends_after_timer_f() -> None:
    net = Net()
    uac_handle, _ = net.call()
    net.drop = lambda src, dst, data: dst == UAS_ADDR
    net.now = 10.0
    net.uac.bye(uac_handle, now=10.0)
    net.pump()
    net.advance(41.9)
    assert net.take(UAC_ADDR) == []
    assert len(net.sent(UAC_ADDR, "BYE")) == 11  # E: .5, 1, 2, then every 4 s
    net.advance(42.0)
    assert net.take(UAC_ADDR) == [CallEnded(uac_handle, "local", "bye")]


def test_unresolvable_host_fails_at_once() -> None:
    net = Net()
    handle = net.uac.invite(
        "sip:bob@pbx.example.com", from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0
    )
    net.pump()
    assert net.take(UAC_ADDR) == [CallFailed(handle, 404, "cannot resolve host")]
    assert net.wire == []


# --- digest authentication, against a hand-written challenger ---------------------------


def challenge_once(status: int, header: str, stale: str = "") -> tuple[SipAgent, str, list]:
    uac = SipAgent("127.0.0.1", 5070)
    handle = uac.invite(
        TARGET,
        from_uri="sip:alice@127.0.0.1",
        sdp=OFFER,
        now=0,
        credentials=DigestCredentials("alice", "secret"),
    )
    ((data, addr, _),) = uac.datagrams_to_send()
    assert addr == UAS_ADDR
    invite = parse(data)
    assert isinstance(invite, SipRequest)
    challenge = response_for(invite, status, to_tag="c1")
    challenge.headers.add(
        header, f'Digest realm="pbx", nonce="n1", algorithm=MD5, qop="auth"{stale}'
    )
    uac.receive_datagram(challenge.serialize(), UAS_ADDR, 0.1)
    return uac, handle, [invite, challenge]


@pytest.mark.parametrize(
    ("status", "challenge_header", "answer_header"),
    [
        (401, "WWW-Authenticate", "Authorization"),
        (407, "Proxy-Authenticate", "Proxy-Authorization"),
    ],
)
def test_digest_challenge_answered_once(
    status: int, challenge_header: str, answer_header: str
) -> None:
    uac, handle, (invite, challenge) = challenge_once(status, challenge_header)
    sent = [parse(data) for data, _, _ in uac.datagrams_to_send()]
    assert [m.cseq for m in sent] == [(1, "ACK"), (2, "INVITE")]
    retry = sent[1]
    assert isinstance(retry, SipRequest)
    assert retry.call_id == invite.call_id and retry.from_tag == invite.from_tag
    assert retry.branch != invite.branch and retry.to_tag is None
    authorization = retry.headers.get(answer_header) or ""
    user = verify_authorization(
        authorization,
        method="INVITE",
        password_lookup={"alice": "secret"}.get,
        realm="pbx",
        nonce_ok=lambda nonce: nonce == "n1",
    )
    assert user == "alice" and retry.body == OFFER
    ok = response_for(retry, 200, to_tag="b1", body=ANSWER, content_type="application/sdp")
    ok.headers.add("Contact", "<sip:bob@127.0.0.1:5060>")
    uac.receive_datagram(ok.serialize(), UAS_ADDR, 0.2)
    assert uac.next_event() == CallAnswered(handle, ANSWER)


def test_second_challenge_for_same_realm_fails() -> None:
    uac, handle, _ = challenge_once(401, "WWW-Authenticate")
    retry = parse(uac.datagrams_to_send()[1][0])
    assert isinstance(retry, SipRequest)
    again = response_for(retry, 401, to_tag="c2")
    again.headers.add("WWW-Authenticate", 'Digest realm="pbx", nonce="n2", qop="auth"')
    uac.receive_datagram(again.serialize(), UAS_ADDR, 0.3)
    assert uac.next_event() == CallFailed(handle, 401, "Unauthorized")
    assert [first_line(d) for d, _, _ in uac.datagrams_to_send()] == [
        "ACK sip:bob@127.0.0.1:5060 SIP/2.0"
    ]


# --- within the dialog -------------------------------------------------------------------


def test_reinvite_hold_and_resume_both_directions() -> None:
    net = Net()
    uac_handle, uas_handle = net.call()
    for sender, receiver, mine, theirs in (
        (net.uac, net.uas, uac_handle, uas_handle),
        (net.uas, net.uac, uas_handle, uac_handle),
    ):
        sender_addr = UAC_ADDR if sender is net.uac else UAS_ADDR
        receiver_addr = UAS_ADDR if sender is net.uac else UAC_ADDR
        for offer in (HOLD, OFFER):
            sender.reinvite(mine, offer, now=net.now)
            net.pump()
            assert net.take(receiver_addr) == [ReinviteReceived(theirs, offer)]
            receiver.answer_reinvite(theirs, 200, sdp=ANSWER, now=net.now)
            net.pump()
            assert net.take(sender_addr) == [ReinviteAnswered(mine, 200, ANSWER)]
            assert net.take(receiver_addr) == [ReinviteConfirmed(theirs, None)]  # its ACK
            net.advance(net.now + 1.0)
    assert [parse(d).cseq for d in net.sent(UAC_ADDR, "INVITE")] == [
        (1, "INVITE"),
        (2, "INVITE"),
        (3, "INVITE"),
    ]
    assert [parse(d).cseq for d in net.sent(UAS_ADDR, "INVITE")] == [(1, "INVITE"), (2, "INVITE")]
    assert len(net.sent(UAS_ADDR, "SIP/2.0 200")) == 3  # no 2xx retransmission needed
    net.advance(100.0)
    assert net.take(UAC_ADDR) == [] and net.take(UAS_ADDR) == []


def test_reinvite_glare_gets_491() -> None:
    net = Net()
    uac_handle, uas_handle = net.call()
    net.drop = lambda src, dst, data: data.startswith(b"INVITE") and src == UAC_ADDR
    net.uac.reinvite(uac_handle, HOLD, now=1.0)
    net.pump()
    net.drop = lambda src, dst, data: False
    net.uas.reinvite(uas_handle, HOLD, now=1.0)
    net.pump()
    assert net.take(UAS_ADDR) == [ReinviteAnswered(uas_handle, 491, None)]


def test_info_dtmf_both_content_types() -> None:
    net = Net()
    uac_handle, uas_handle = net.call()
    net.uac.send_info_dtmf(uac_handle, "5", 160, now=1.0)
    net.pump()
    assert net.take(UAS_ADDR) == [DtmfReceived(uas_handle, "5", 160)]
    info = parse(net.sent(UAC_ADDR, "INFO")[0])
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    assert info.content_type == "application/dtmf-relay"
    assert first_line(net.sent(UAS_ADDR, "SIP/2.0 200")[-1]) == "SIP/2.0 200 OK"
    # application/dtmf: the body is the digit
    plain = parse(net.sent(UAC_ADDR, "INFO")[0])
    plain.headers.set("Content-Type", "application/dtmf")
    plain.headers.set("CSeq", "3 INFO")
    plain.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKdtmf2;rport")
    plain.body = b"#"
    net.uas.receive_datagram(plain.serialize(), UAC_ADDR, 1.1)
    net.pump()
    assert net.take(UAS_ADDR) == [DtmfReceived(uas_handle, "#", 100)]


def test_options_inside_and_outside_dialog() -> None:
    net = Net()
    request = (
        b"OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt1\r\n"
        b"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1:5060>\r\n"
        b"Call-ID: opt-1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    net.uas.receive_datagram(request, UAC_ADDR, 0.0)
    ((data, addr, transport),) = net.uas.datagrams_to_send()
    assert (addr, transport) == (UAC_ADDR, "UDP")
    reply = parse(data)
    assert first_line(data) == "SIP/2.0 200 OK"
    assert reply.headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
    assert reply.headers.get("Accept") == "application/sdp, application/dtmf-relay"
    assert reply.to_tag is not None
    net.uas.receive_datagram(request, UAC_ADDR, 0.1)  # retransmission: same answer
    assert net.uas.datagrams_to_send() == [(data, UAC_ADDR, "UDP")]


def test_bye_for_unknown_dialog_is_481() -> None:
    agent = SipAgent("127.0.0.1", 5060)
    bye = (
        b"BYE sip:callstream@127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye1;rport\r\n"
        b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=nope\r\n"
        b"Call-ID: gone\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    agent.receive_datagram(bye, ("127.0.0.1", 40000), 0.0)
    ((data, addr, _),) = agent.datagrams_to_send()
    assert first_line(data) == "SIP/2.0 481 Call/Transaction Does Not Exist"
    assert addr == ("127.0.0.1", 40000)  # rport: back to the source port
    agent.receive_datagram(bye.replace(b"BYE", b"ACK"), ("127.0.0.1", 40000), 0.1)
    assert agent.datagrams_to_send() == []


def test_unknown_method_is_405_with_allow() -> None:
    agent = SipAgent("127.0.0.1", 5060)
    register = (
        b"REGISTER sip:127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKreg\r\n"
        b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:a@127.0.0.1>\r\n"
        b"Call-ID: reg\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    agent.receive_datagram(register, UAC_ADDR, 0.0)
    ((data, _, _),) = agent.datagrams_to_send()
    assert first_line(data) == "SIP/2.0 405 Method Not Allowed"
    assert parse(data).headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"


# --- junk and limits -----------------------------------------------------------------


def test_malformed_invite_gets_400_with_reason_and_next_call_works() -> None:
    net = Net()
    net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    ((good, _, _),) = net.uac.datagrams_to_send()
    bad = good.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    net.uas.receive_datagram(bad, UAC_ADDR, 0.0)
    ((data, addr, _),) = net.uas.datagrams_to_send()
    assert first_line(data) == "SIP/2.0 400 CSeq method does not match request method"
    assert addr == UAC_ADDR
    assert net.uas.next_event() == MessageRejected(
        UAC_ADDR, 400, "CSeq method does not match request method"
    )
    net.uas.receive_datagram(good, UAC_ADDR, 0.1)
    event = net.uas.next_event()
    assert isinstance(event, IncomingCall)


def test_unaddressable_junk_is_dropped() -> None:
    agent = SipAgent("127.0.0.1", 5060)
    for junk in (
        b"hello",
        b"\x00\xff\xfe",
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"SIP/2.0 200\r\n\r\n",
    ):
        agent.receive_datagram(junk, UAC_ADDR, 0.0)
        event = agent.next_event()
        assert isinstance(event, MessageRejected) and event.status == 0
    agent.receive_datagram(b"\r\n\r\n", UAC_ADDR, 0.0)  # keep-alive: silently ignored
    assert agent.next_event() is None
    assert agent.datagrams_to_send() == []


def test_503_at_max_calls() -> None:
    net = Net(max_calls=1)
    net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    second = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    busy = parse(net.sent(UAS_ADDR, "SIP/2.0 503")[0])
    assert busy.headers.get("Retry-After") == "5"
    assert net.take(UAC_ADDR) == [CallFailed(second, 503, "Service Unavailable")]
    assert len([e for e in net.take(UAS_ADDR) if isinstance(e, IncomingCall)]) == 1


def test_retransmitted_invite_absorbed() -> None:
    net = Net()
    net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    ((invite, _, _),) = net.uac.datagrams_to_send()
    for when in (0.0, 0.5, 1.5):
        net.uas.receive_datagram(invite, UAC_ADDR, when)
    events = [net.uas.next_event() for _ in range(2)]
    assert isinstance(events[0], IncomingCall) and events[1] is None
    trying = [d for d, _, _ in net.uas.datagrams_to_send()]
    assert len(trying) == 3 and len(set(trying)) == 1


def test_record_route_used_for_bye() -> None:
    net = Net()
    original_deliver = net.deliver

    def record_route(src: tuple[str, int], dst: tuple[str, int], data: bytes, tp: str) -> None:
        if data.startswith(b"INVITE") and dst == UAS_ADDR and src == UAC_ADDR:
            data = data.replace(
                b"\r\nCall-ID", b"\r\nRecord-Route: <sip:127.0.0.1:5080;lr>\r\nCall-ID", 1
            )
        original_deliver(src, dst, data, tp)

    net.deliver = record_route  # type: ignore[method-assign]
    uac_handle, uas_handle = net.call()
    net.uac.bye(uac_handle, now=1.0)
    net.pump()
    (bye_src, bye_dst, bye_data) = next(w for w in net.wire if w[2].startswith(b"BYE"))
    assert bye_dst == PROXY_ADDR
    bye = parse(bye_data)
    assert isinstance(bye, SipRequest)
    assert bye.uri == "sip:callstream@127.0.0.1:5060"
    assert bye.headers.get_all("Route") == ["<sip:127.0.0.1:5080;lr>"]
    assert net.take(UAS_ADDR) == [CallEnded(uas_handle, "remote", "bye")]
    assert net.take(UAC_ADDR) == [CallEnded(uac_handle, "local", "bye")]


def test_require_of_unknown_extension_is_420() -> None:
    net = Net()
    net.uac.invite(
        TARGET,
        from_uri="sip:alice@127.0.0.1",
        sdp=OFFER,
        now=0,
        extra_headers=[("Require", "100rel")],
    )
    net.pump()
    refusal = parse(net.sent(UAS_ADDR, "SIP/2.0 420")[0])
    assert refusal.headers.get("Unsupported") == "100rel"
    assert net.take(UAS_ADDR) == []
    (failed,) = net.take(UAC_ADDR)
    assert isinstance(failed, CallFailed) and failed.status == 420


def test_cancel_matching_nothing_is_481() -> None:
    agent = SipAgent("127.0.0.1", 5060)
    cancel = (
        b"CANCEL sip:bob@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKlost\r\n"
        b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>\r\n"
        b"Call-ID: lost\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    agent.receive_datagram(cancel, UAC_ADDR, 0.0)
    ((data, _, _),) = agent.datagrams_to_send()
    assert first_line(data) == "SIP/2.0 481 Call/Transaction Does Not Exist"


def test_callee_hangs_up_before_answer_with_603() -> None:
    net = Net()
    handle = net.uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0)
    net.pump()
    (incoming,) = net.take(UAS_ADDR)
    assert isinstance(incoming, IncomingCall)
    net.uas.bye(incoming.call_handle, now=0.5)
    net.pump()
    assert net.take(UAS_ADDR) == [CallEnded(incoming.call_handle, "local", "declined")]
    assert net.take(UAC_ADDR) == [CallFailed(handle, 603, "Decline")]
    assert len(net.sent(UAC_ADDR, "ACK")) == 1
    net.advance(60.0)
    assert net.uac.get_timer() is None and net.uas.get_timer() is None


def test_tcp_uses_the_connection_and_no_retransmissions() -> None:
    uac = SipAgent("127.0.0.1", 5070)
    uas = SipAgent("127.0.0.1", 5060)
    uac.invite(TARGET, from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0, transport="TCP")
    ((data, addr, transport),) = uac.datagrams_to_send()
    assert (addr, transport) == (UAS_ADDR, "TCP")
    invite = parse(data)
    assert invite.top_via.transport == "TCP"
    assert invite.headers.get("Contact") == "<sip:callstream@127.0.0.1:5070;transport=tcp>"
    uac.handle_timer(10.0)
    assert uac.datagrams_to_send() == []  # no timer A over TCP
    source = ("127.0.0.1", 49152)  # the connection's far end, not the Via port
    uas.receive_message(invite, source, 0.0, "TCP")
    incoming = uas.next_event()
    assert isinstance(incoming, IncomingCall)
    uas.respond(incoming.call_handle, 200, sdp=ANSWER, now=0.0)
    sent = uas.datagrams_to_send()
    assert [(first_line(d), a, t) for d, a, t in sent] == [
        ("SIP/2.0 100 Trying", source, "TCP"),
        ("SIP/2.0 200 OK", source, "TCP"),
    ]
    uas.handle_timer(31.9)
    assert uas.datagrams_to_send() == []  # the 2xx is not re-sent over TCP
    uas.handle_timer(32.0)
    assert uas.next_event() == CallEnded(incoming.call_handle, "local", "ack timeout")


# --- module shape ------------------------------------------------------------------


def test_public_names_stay_importable_from_the_agent_module() -> None:
    from callstream.sip import agent, auth, events, transaction, uas

    assert sorted(agent.__all__) == sorted(
        [
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
    )
    for name in agent.__all__:
        source = next(m for m in (events, auth, transaction, uas, agent) if hasattr(m, name))
        assert getattr(agent, name) is getattr(source, name), name
    assert agent.parse_dtmf_info("application/dtmf-relay", b"Signal=11\r\nDuration=80") == (
        "#",
        80,
    )


def test_agent_modules_import_no_io() -> None:
    import ast
    from pathlib import Path

    import callstream.sip

    root = Path(callstream.sip.__file__).parent
    for module in ("agent.py", "_calls.py", "uac.py", "uas.py", "events.py"):
        tree = ast.parse((root / module).read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"asyncio", "socket", "time", "selectors"}, module
