"""Junk never hurts the agent: random bytes and broken INVITEs fed to an agent that
holds a live call. ``receive_datagram`` never raises, nothing fails inside the agent
(no exception logged), every answer to junk parses back as a 100 Trying (for what is
still a valid new INVITE) or a 4xx-6xx, and the live call's dialog still works.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callstream.errors import SipParseError
from callstream.sip.agent import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    IncomingCall,
    MessageRejected,
    SipAgent,
    SipEvent,
)
from callstream.sip.message import SipRequest, SipResponse, parse_message

UAC_ADDR = ("127.0.0.1", 5070)
UAS_ADDR = ("127.0.0.1", 5060)
JUNK_ADDR = ("127.0.0.1", 6666)
OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
SDP_BODY = (
    b"v=0\r\no=- 3 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
INVITE = (
    b"INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:6666;branch=z9hG4bKjunk1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Junk" <sip:junk@127.0.0.1>;tag=junk-tag\r\n'
    b"To: <sip:bob@127.0.0.1:5060>\r\n"
    b"Call-ID: junk-call@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:junk@127.0.0.1:6666>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP_BODY)).encode() + b"\r\n\r\n" + SDP_BODY
)
HEAD, _, BODY = INVITE.partition(b"\r\n\r\n")
HEADER_LINES = HEAD.split(b"\r\n")[1:]
# sip/_grammar.py's DIGITS_RE and CSEQ_RE use \\d, which matches any Unicode digit
# (U+0661 ARABIC-INDIC DIGIT ONE...), where RFC 3261 §25.1 DIGIT is %x30-39.
JUNK_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class _Failures(logging.Handler):
    """Records logged with an exception: each one is a bug the agent swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LiveCall:
    """Two agents with a confirmed call between them; the UAS is the junk's target."""

    def __init__(self) -> None:
        self.uac = SipAgent("127.0.0.1", 5070, "uac/1")
        self.uas = SipAgent("127.0.0.1", 5060, "uas/1")
        self.now = 0.0
        self.calls_from_junk = 0
        self.wire: list[bytes] = []
        self.uac_handle = self.uac.invite(
            "sip:bob@127.0.0.1:5060", from_uri="sip:alice@127.0.0.1", sdp=OFFER, now=0.0
        )
        self.pump()
        incoming = self.uas.next_event()
        assert isinstance(incoming, IncomingCall)
        self.uas_handle = incoming.call_handle
        self.uas.respond(self.uas_handle, 200, sdp=OFFER, now=0.0)
        self.pump()
        assert self.uac.next_event() == CallAnswered(self.uac_handle, OFFER)
        assert self.uas.next_event() == CallConfirmed(self.uas_handle)

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for agent, src, peer in (
                (self.uac, UAC_ADDR, self.uas),
                (self.uas, UAS_ADDR, self.uac),
            ):
                for data, _, transport in agent.datagrams_to_send():
                    moved = True
                    self.wire.append(data)
                    peer.receive_datagram(data, src, self.now, transport)

    def feed(self, junk: bytes) -> list[SipEvent]:
        """Give the UAS one junk datagram; check what it answered; its events."""
        self.uas.receive_datagram(junk, JUNK_ADDR, self.now)
        events: list[SipEvent] = []
        while (event := self.uas.next_event()) is not None:
            events.append(event)
        self.calls_from_junk += sum(isinstance(e, IncomingCall) for e in events)
        for data, _, _ in self.uas.datagrams_to_send():
            response = parse_reply(data)
            assert response.status == 100 or 400 <= response.status < 700, data
            if response.status == 100:  # a new call, or a retransmission of one
                assert self.calls_from_junk > 0
        for event in events:
            assert isinstance(event, IncomingCall | MessageRejected), event
            if isinstance(event, MessageRejected):
                assert event.addr == JUNK_ADDR
                assert event.status == 0 or 400 <= event.status < 700
                assert event.reason and event.reason.isprintable()
        return events

    def still_works(self) -> None:
        """The live call survives: a BYE in its dialog gets 200 and ends it on both sides."""
        self.now += 1.0
        self.uas.handle_timer(self.now)  # timers of the junk's transactions, if any
        self.uas.datagrams_to_send()
        while self.uas.next_event() is not None:
            pass
        self.uac.bye(self.uac_handle, self.now)
        ((bye, _, _),) = self.uac.datagrams_to_send()
        self.uas.receive_datagram(bye, UAC_ADDR, self.now)
        ((ok, addr, _),) = self.uas.datagrams_to_send()
        assert ok.startswith(b"SIP/2.0 200 OK\r\n") and addr == UAC_ADDR
        assert self.uas.next_event() == CallEnded(self.uas_handle, "remote", "bye")
        self.uac.receive_datagram(ok, UAS_ADDR, self.now)
        assert self.uac.next_event() == CallEnded(self.uac_handle, "local", "bye")


def parse_reply(data: bytes) -> SipResponse:
    """Parse what the agent sent back; it must be a response that re-serializes as is.

    One exception, by design: a 400 to a request whose CSeq is unparseable echoes that
    CSeq as received (§8.2.6.2; the sender alone can match it), so our own parser
    refuses it; the rest of that 400 must still be well-formed.
    """
    try:
        response = parse_message(data)
    except SipParseError as error:
        assert error.reason == "bad CSeq header", data
        assert data.startswith(b"SIP/2.0 400 bad CSeq header\r\n"), data
        head, _, body = data.partition(b"\r\n\r\n")
        lines = [
            b"CSeq: 1 INVITE" if line.startswith(b"CSeq:") else line for line in head.split(b"\r\n")
        ]
        response = parse_message(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        assert isinstance(response, SipResponse)
        return response
    assert isinstance(response, SipResponse), data
    assert response.serialize() == data
    return response


@pytest.fixture(autouse=True)
def no_swallowed_failures() -> Iterator[_Failures]:
    failures = _Failures()
    logger = logging.getLogger("callstream.sip")
    logger.addHandler(failures)
    yield failures
    logger.removeHandler(failures)
    assert [r.getMessage() for r in failures.records] == []


def with_headers(lines: list[bytes], body: bytes = BODY) -> bytes:
    request_line = HEAD.split(b"\r\n", 1)[0]
    return b"\r\n".join([request_line, *lines]) + b"\r\n\r\n" + body


def test_base_invite_is_a_valid_new_call() -> None:
    live = LiveCall()
    events = live.feed(INVITE)
    assert len(events) == 1 and isinstance(events[0], IncomingCall)
    assert events[0].sdp == SDP_BODY
    live.still_works()


@JUNK_SETTINGS
@given(st.binary(max_size=1500))
def test_random_bytes(junk: bytes) -> None:
    live = LiveCall()
    live.feed(junk)
    live.still_works()


@JUNK_SETTINGS
@given(st.binary(max_size=300).map(lambda tail: b"SIP/2.0 " + tail))
def test_random_responses_are_dropped(junk: bytes) -> None:
    live = LiveCall()
    events = live.feed(junk)
    assert all(isinstance(e, MessageRejected) and e.status == 0 for e in events)
    live.still_works()


def test_truncation_at_every_offset() -> None:
    live = LiveCall()
    for offset in range(len(INVITE)):
        live.feed(INVITE[:offset])
    live.still_works()


@JUNK_SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, len(INVITE) - 1), st.integers(0, 255)), min_size=1, max_size=8
    )
)
def test_random_byte_flips(flips: list[tuple[int, int]]) -> None:
    junk = bytearray(INVITE)
    for index, value in flips:
        junk[index] = value
    live = LiveCall()
    live.feed(bytes(junk))
    live.still_works()


@JUNK_SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from(("dup", "drop")), st.integers(0, len(HEADER_LINES) - 1)),
        min_size=1,
        max_size=6,
    )
)
def test_headers_duplicated_or_removed(edits: list[tuple[str, int]]) -> None:
    lines = list(HEADER_LINES)
    for action, index in edits:
        if not lines:
            break
        index %= len(lines)
        if action == "dup":
            lines.insert(index, lines[index])
        else:
            del lines[index]
    live = LiveCall()
    live.feed(with_headers(lines))
    live.still_works()


@pytest.mark.parametrize(
    "value",
    [
        "99999999999999999999999999",
        "4294967296",
        "-1",
        "-99999",
        "1e9",
        "0x10",
        "12 34",
        "",
        "1" * 5000,
        "\u0661\u0662",  # Arabic-Indic digits are not DIGIT (RFC 5234 B.1)
    ],
)
def test_bad_content_length(value: str) -> None:
    lines = [
        b"Content-Length: " + value.encode() if line.startswith(b"Content-Length") else line
        for line in HEADER_LINES
    ]
    live = LiveCall()
    events = live.feed(with_headers(lines))
    assert [type(e) for e in events] == [MessageRejected]
    live.still_works()


@pytest.mark.parametrize(
    "cseq",
    [
        "-1 INVITE",
        "0 INVITE",
        "2147483648 INVITE",  # §8.1.1.5: less than 2**31
        "99999999999999999999999 INVITE",
        "1" * 5000 + " INVITE",
        "1 INVITE extra",
        "INVITE",
        "1",
        "\u0661 INVITE",
    ],
)
def test_bad_cseq(cseq: str) -> None:
    lines = [
        b"CSeq: " + cseq.encode() if line.startswith(b"CSeq") else line for line in HEADER_LINES
    ]
    live = LiveCall()
    events = live.feed(with_headers(lines))
    assert not any(isinstance(e, IncomingCall) for e in events) or cseq == "0 INVITE"
    live.still_works()


@JUNK_SETTINGS
@given(
    st.integers(0, len(HEADER_LINES) - 1),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.booleans(),
)
def test_non_utf8_in_headers(index: int, noise: bytes, in_name: bool) -> None:
    noise = bytes(b | 0x80 for b in noise)  # never valid ASCII, mostly invalid UTF-8
    lines = list(HEADER_LINES)
    name, _, value = lines[index].partition(b": ")
    lines[index] = (noise + name if in_name else name) + b": " + value + noise
    live = LiveCall()
    live.feed(with_headers(lines))
    live.still_works()


def test_ten_thousand_headers() -> None:
    extra = [b"X-Junk-%d: %d" % (n, n) for n in range(10_000)]
    live = LiveCall()
    live.feed(with_headers([*HEADER_LINES[:-1], *extra, HEADER_LINES[-1]]))
    live.still_works()


def test_ten_thousand_via_headers() -> None:
    vias = [
        b"Via: SIP/2.0/UDP 10.0.0.%d:5060;branch=z9hG4bK%d" % (n % 250, n) for n in range(10_000)
    ]
    live = LiveCall()
    live.feed(with_headers([HEADER_LINES[0], *vias, *HEADER_LINES[1:]]))
    live.still_works()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"Signal=\xff\xfe\r\nDuration=100\r\n", "bad DTMF signal"),
        (b"Signal=55\r\nDuration=100\r\n", "bad DTMF signal"),
        (b"Signal=5\r\nDuration=" + b"9" * 5000 + b"\r\n", "bad DTMF duration"),
        (b"Signal=5\r\nDuration=\xc2\xb2\r\n", "bad DTMF duration"),  # "²": isdigit()
        (b"Signal=5\r\nDuration=-1\r\n", "bad DTMF duration"),
    ],
)
def test_bad_dtmf_info_inside_the_live_dialog(body: bytes, reason: str) -> None:
    live = LiveCall()
    live.uac.send_info_dtmf(live.uac_handle, "5", 100, live.now)
    ((data, _, _),) = live.uac.datagrams_to_send()
    info = parse_message(data)
    assert isinstance(info, SipRequest)
    info.body = body
    assert live.feed(info.serialize()) == [MessageRejected(JUNK_ADDR, 400, reason)]
    live.still_works()


def test_out_of_order_cseq_inside_the_live_dialog() -> None:
    live = LiveCall()
    live.uac.send_info_dtmf(live.uac_handle, "5", 100, live.now)
    ((data, _, _),) = live.uac.datagrams_to_send()
    stale = data.replace(b"CSeq: 2 INFO", b"CSeq: 0 INFO")  # below the INVITE's 1
    assert stale != data
    (rejected,) = live.feed(stale)
    assert isinstance(rejected, MessageRejected) and rejected.status == 500
    live.still_works()


IN_DIALOG_METHODS = (
    "INFO",
    "OPTIONS",
    "INVITE",
    "CANCEL",
    "ACK",
    "UPDATE",
    "PRACK",
    "REFER",
    "NOTIFY",
    "MESSAGE",
    "SUBSCRIBE",
    "REGISTER",
    "FOO",
)
BODIES = (
    (None, b""),
    ("application/sdp", SDP_BODY),
    ("application/sdp", b"not sdp at all"),
    ("application/dtmf-relay", b"Signal=#\r\nDuration=250\r\n"),
    ("application/dtmf-relay", b"\xff\xfe\x00"),
    ("application/dtmf", b"7"),
    ("text/plain", b"hello"),
    ("multipart/mixed; boundary=x", b"--x--"),
)


@JUNK_SETTINGS
@given(
    st.sampled_from(IN_DIALOG_METHODS),
    st.sampled_from(BODIES),
    st.booleans(),
    st.sampled_from(("live", "wrong", "none")),
    st.lists(
        st.sampled_from(("Require: 100rel", "Supported: timer", "Max-Forwards: 0")), max_size=2
    ),
)
def test_requests_aimed_at_the_live_dialog(
    method: str,
    body: tuple[str | None, bytes],
    same_call_id: bool,
    to_tag: str,
    extra: list[str],
) -> None:
    """Well-formed requests with the live call's identifiers, any method, body or tag:
    answered (2xx allowed, they are valid) and the call is not disturbed. CSeq 1 keeps
    the dialog's remote CSeq where the real peer's next BYE (CSeq 2) is still in order."""
    live = LiveCall()
    ok = parse_reply(next(d for d in live.wire if d.startswith(b"SIP/2.0 200 OK")))
    call_id = ok.call_id if same_call_id else "other@127.0.0.1"
    tag = {"live": f";tag={ok.to_tag}", "wrong": ";tag=nope", "none": ""}[to_tag]
    content_type, payload = body
    lines = [
        f"{method} sip:callstream@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:6666;branch=z9hG4bKaim1;rport",
        f"From: <sip:alice@127.0.0.1>;tag={ok.from_tag}",
        f"To: <sip:bob@127.0.0.1:5060>{tag}",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        "Contact: <sip:alice@127.0.0.1:6666>",
        *extra,
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(payload)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    live.uas.receive_datagram(request, JUNK_ADDR, live.now)
    for data, _, _ in live.uas.datagrams_to_send():
        response = parse_reply(data)
        assert response.status in (100, 200) or 400 <= response.status < 700, data
    while (event := live.uas.next_event()) is not None:
        assert not isinstance(event, CallEnded), event
    live.still_works()
