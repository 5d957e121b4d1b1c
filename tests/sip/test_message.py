from __future__ import annotations

import pathlib

import pytest

from callstream.errors import SipParseError
from callstream.sip.message import (
    REASON_PHRASES,
    Headers,
    SipRequest,
    SipRequestParseError,
    SipResponse,
    SipStreamParser,
    Via,
    canonical_name,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    response_for,
)

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "sip"


def load(name: str) -> bytes:
    """A fixture as wire bytes (stored with LF so editors cannot damage it)."""
    return (FIXTURES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


ALL_FIXTURES = [
    "invite_baresip.txt",
    "invite_sipp_uac.txt",
    "ok_asterisk.txt",
    "register_401.txt",
    "bye_in_dialog.txt",
]

MINIMAL = (
    b"OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n"
    b"From: <sip:a@127.0.0.1>;tag=f1\r\n"
    b"To: <sip:gw@127.0.0.1>\r\n"
    b"Call-ID: c1@127.0.0.1\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def replace_line(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new)


# --- round trips and parsed values ------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_round_trips_byte_for_byte(name: str) -> None:
    data = load(name)
    assert parse_message(data).serialize() == data


def test_baresip_invite_fields() -> None:
    message = parse_message(load("invite_baresip.txt"))
    assert isinstance(message, SipRequest)
    assert message.method == "INVITE"
    assert message.uri == "sip:bob@192.168.1.20"
    assert message.call_id == "5a0f8d2c1b7e4f36"
    assert message.cseq == (25139, "INVITE")
    assert message.from_tag == "8e1b2d4f60a3c597"
    assert message.to_tag is None
    assert message.branch == "z9hG4bK4a1b7c3e95d0f2a8"
    assert message.content_type == "application/sdp"
    assert message.body.startswith(b"v=0\r\no=- 1717171717 ")
    assert message.body.endswith(b"a=ptime:20\r\n")
    assert len(message.body) == int(message.headers.get("content-length") or "")
    via = message.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "192.168.1.10", 5060)
    assert "rport" in via.params and via.rport is None
    assert message.headers.get_all("Allow")[:3] == ["INVITE", "ACK", "BYE"]
    assert len(message.headers.get_all("Allow")) == 11


def test_asterisk_response_fields() -> None:
    message = parse_message(load("ok_asterisk.txt"))
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason) == (200, "OK")
    assert message.to_tag == "as4f2a1c3d"
    assert message.cseq == (31742, "INVITE")
    via = message.top_via
    assert via.received == "203.0.113.7"
    assert via.rport == 5060
    assert via.branch == "z9hG4bKPj3f6c1e2a-8d4b-4c1a-9e7f-2b5d8a9c0e11"
    assert [Via.parse(v).port for v in message.headers.get_all("Via")] == [5060, 5080]
    assert message.headers.get_all("Supported") == ["100rel", "timer", "replaces", "norefersub"]
    assert message.headers.get("Session-Expires") == "1800;refresher=uas"


def test_ipv6_via_and_auth_header_not_split() -> None:
    message = parse_message(load("register_401.txt"))
    via = message.top_via
    assert via.host == "2001:db8::10"
    assert via.port == 5060
    assert via.received == "2001:db8::10"
    assert str(via) == message.headers.get("Via")
    challenge = message.headers.get_all("WWW-Authenticate")
    assert len(challenge) == 1
    assert challenge[0].startswith('Digest realm="atlanta.example.com", qop="auth"')
    assert message.body == b""


def test_route_list_split_outside_brackets() -> None:
    message = parse_message(load("bye_in_dialog.txt"))
    assert message.headers.get_all("Route") == [
        "<sip:10.0.0.2;lr>",
        "<sip:10.0.0.3;lr;transport=udp>",
    ]
    assert message.from_tag == "3b9f8a1c"
    assert message.to_tag == "8e1b2d4f60a3c597"


def test_compact_forms_expanded_and_folding_unfolded() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/TCP [::1]:5062 ;branch=z9hG4bKx1\r\n"
        b"f: Alice <sip:alice@example.com>;tag=t1\r\n"
        b"t: sip:bob@example.com;tag=t2\r\n"
        b"i: abc@host\r\n"
        b"CSeq: 1\r\n  INVITE\r\n"
        b"Subject: I know you're there,\r\n\tpick up the phone\r\n"
        b"c: application/SDP; charset=x\r\n"
        b"m: <sip:alice@[::1]:5062;transport=tcp>\r\n"
        b"l: 4\r\n"
        b"\r\n"
        b"abcd"
    )
    message = parse_message(data)
    names = [name for name, _ in message.headers]
    expected = ["Via", "From", "To", "Call-ID", "CSeq", "Subject", "Content-Type", "Contact"]
    assert names == [*expected, "Content-Length"]
    assert message.cseq == (1, "INVITE")
    assert message.headers.get("subject") == "I know you're there, pick up the phone"
    assert message.content_type == "application/sdp"
    assert message.to_tag == "t2"  # bare addr-spec: ;tag belongs to the header
    via = message.top_via
    assert (via.transport, via.host, via.port, via.branch) == ("TCP", "::1", 5062, "z9hG4bKx1")
    assert message.body == b"abcd"


def test_leading_crlf_lf_only_and_no_content_length_on_udp() -> None:
    data = b"\r\n" + MINIMAL.replace(b"Content-Length: 0\r\n", b"").replace(b"\r\n", b"\n")
    message = parse_message(data + b"hello")
    assert message.body == b"hello"
    assert message.call_id == "c1@127.0.0.1"


def test_body_beyond_content_length_is_discarded() -> None:
    message = parse_message(MINIMAL + b"junk")
    assert message.body == b""


def test_response_reason_may_contain_spaces_and_be_empty() -> None:
    data = MINIMAL.replace(b"OPTIONS sip:gw@127.0.0.1 SIP/2.0", b"SIP/2.0 481 Call Leg/Transaction")
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    assert message.reason == "Call Leg/Transaction"
    empty = parse_message(data.replace(b"481 Call Leg/Transaction", b"486 "))
    assert isinstance(empty, SipResponse)
    assert (empty.status, empty.reason) == (486, "")


# --- rejections --------------------------------------------------------------------------

REQUEST_REJECTIONS = [
    # (old, new, message, partial expected)
    (b"OPTIONS sip:gw@127.0.0.1 SIP/2.0", b"OPTIONS sip:gw@127.0.0.1", "bad request line", False),
    (b"OPTIONS sip:gw@127.0.0.1 SIP/2.0", b"OPTIONS  sip:gw SIP/2.0", "bad request line", False),
    (b"OPTIONS sip:gw@127.0.0.1 SIP/2.0", b"OPT(ONS sip:gw SIP/2.0", "bad method", False),
    (b"OPTIONS sip:gw@127.0.0.1 SIP/2.0", b"OPTIONS gw SIP/2.0", "bad Request-URI", False),
    (
        b"OPTIONS sip:gw@127.0.0.1 SIP/2.0",
        b"OPTIONS sip:gw SIP/3.0",
        "unsupported SIP version: SIP/3.0",
        False,
    ),
    (b"Call-ID: c1@127.0.0.1\r\n", b"", "missing Call-ID header", False),
    (b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc\r\n", b"", "missing Via header", False),
    (b"From: <sip:a@127.0.0.1>;tag=f1\r\n", b"", "missing From header", False),
    (b"To: <sip:gw@127.0.0.1>\r\n", b"", "missing To header", False),
    (b"CSeq: 7 OPTIONS\r\n", b"", "missing CSeq header", False),
    (
        b"Via: SIP/2.0/UDP 127.0.0.1:5070",
        b"Via: SIP/2.0/UDP 127.0.0.1:99999",
        "bad Via header",
        False,
    ),
    (b"Via: SIP/2.0/UDP", b"Via: SIP/1.0/UDP", "bad Via header", False),
    (b"CSeq: 7 OPTIONS", b"CSeq: seven OPTIONS", "bad CSeq header", True),
    (b"CSeq: 7 OPTIONS", b"CSeq: 4294967296 OPTIONS", "bad CSeq header", True),
    (b"CSeq: 7 OPTIONS", b"CSeq: 7 INVITE", "CSeq method does not match request method", True),
    (b"Content-Length: 0", b"Content-Length: zero", "bad Content-Length", True),
    (b"Content-Length: 0", b"Content-Length: 0\r\nl: 3", "bad Content-Length", True),
    (b"Content-Length: 0", b"Content-Length: 10", "body shorter than Content-Length", True),
    (b"Content-Length: 0", b"Content-Length 0", "header line without colon", True),
    (b"Content-Length: 0", b"Bad Name: 0", "bad header name", True),
    (b"Call-ID: c1@127.0.0.1", b"Call-ID c1@127.0.0.1", "header line without colon", False),
]


@pytest.mark.parametrize(("old", "new", "message", "has_partial"), REQUEST_REJECTIONS)
def test_request_rejections(old: bytes, new: bytes, message: str, has_partial: bool) -> None:
    with pytest.raises(SipRequestParseError) as caught:
        parse_message(replace_line(MINIMAL, old, new))
    assert str(caught.value) == message
    assert caught.value.status == 400
    if has_partial:
        partial = caught.value.partial
        assert partial is not None
        assert partial.method in ("OPTIONS",)
        assert partial.call_id == "c1@127.0.0.1"
        response = response_for(partial, 400, caught.value.reason)
        assert response.serialize().startswith(f"SIP/2.0 400 {message}\r\n".encode())
    else:
        assert caught.value.partial is None


def test_continuation_before_first_header() -> None:
    data = MINIMAL.replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia")
    with pytest.raises(SipRequestParseError, match="^continuation line without a header$") as e:
        parse_message(data)
    assert e.value.partial is not None


def test_non_utf8_headers() -> None:
    data = MINIMAL.replace(b"To: <sip:gw", b"To: \xff<sip:gw")
    with pytest.raises(SipRequestParseError, match="^headers are not valid UTF-8$") as e:
        parse_message(data)
    assert e.value.partial is None


def test_bare_cr_in_header_section() -> None:
    with pytest.raises(SipRequestParseError, match="^bare CR in header section$"):
        parse_message(MINIMAL.replace(b"To: <sip:gw", b"To: \r<sip:gw"))


RESPONSE = MINIMAL.replace(b"OPTIONS sip:gw@127.0.0.1 SIP/2.0", b"SIP/2.0 200 OK")


@pytest.mark.parametrize(
    ("status_line", "message"),
    [
        (b"SIP/2.0 200", "bad status line"),
        (b"SIP/2.0 20 OK", "bad status line"),
        (b"SIP/2.0  200 OK", "bad status line"),
        (b"SIP/2.0 700 Weird", "bad status code"),
        (b"SIP/2.0 099 Early", "bad status code"),
        (b"SIP/3.0 200 OK", "unsupported SIP version: SIP/3.0"),
    ],
)
def test_status_line_rejections(status_line: bytes, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(RESPONSE.replace(b"SIP/2.0 200 OK", status_line))
    assert str(caught.value) == message
    assert not isinstance(caught.value, SipRequestParseError)


def test_response_body_shorter_is_plain_parse_error() -> None:
    with pytest.raises(SipParseError, match="^body shorter than Content-Length$") as caught:
        parse_message(RESPONSE.replace(b"Content-Length: 0", b"Content-Length: 5"))
    assert not isinstance(caught.value, SipRequestParseError)


# --- Headers -------------------------------------------------------------------------


def test_headers_multimap_operations() -> None:
    headers = Headers([("call-id", "x"), ("v", "SIP/2.0/UDP a;branch=1"), ("X-Custom", "1")])
    assert list(headers) == [
        ("Call-ID", "x"),
        ("Via", "SIP/2.0/UDP a;branch=1"),
        ("X-Custom", "1"),
    ]
    headers.add("Via", "SIP/2.0/UDP b;branch=2, SIP/2.0/UDP c;branch=3")
    assert headers.get_all("VIA") == [
        "SIP/2.0/UDP a;branch=1",
        "SIP/2.0/UDP b;branch=2",
        "SIP/2.0/UDP c;branch=3",
    ]
    assert "i" in headers and "x-custom" in headers and "Route" not in headers
    headers.set("via", "SIP/2.0/UDP z")
    assert list(headers)[1] == ("Via", "SIP/2.0/UDP z") and len(headers) == 3
    copy = headers.copy()
    headers.remove("X-CUSTOM")
    assert "X-Custom" not in headers and copy.get("x-custom") == "1"
    assert headers.get("Missing") is None and headers.get_all("Missing") == []
    headers.set("Max-Forwards", "70")
    assert list(headers)[-1] == ("Max-Forwards", "70")


def test_get_all_does_not_split_inside_quotes() -> None:
    headers = Headers([("Contact", '"Smith, John" <sip:j@h;a=1,2>, <sip:k@h>;q=0.5')])
    assert headers.get_all("m") == ['"Smith, John" <sip:j@h;a=1,2>', "<sip:k@h>;q=0.5"]
    headers.add("Date", "Sat, 13 Nov 2010 23:29:00 GMT")
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_header_injection_rejected() -> None:
    with pytest.raises(ValueError, match="^header value contains CR or LF$"):
        Headers().add("Subject", "hi\r\nVia: evil")


def test_canonical_names() -> None:
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("CSEQ") == "CSeq"
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("l") == "Content-Length"
    assert canonical_name("X-Foo-bar") == "X-Foo-bar"


# --- building and serialising -----------------------------------------------------------


def test_serialize_writes_correct_content_length() -> None:
    request = SipRequest("MESSAGE", "sip:a@b", Headers([("Content-Length", "99"), ("To", "x")]))
    request.body = "héllo".encode()
    assert (
        request.serialize()
        == b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 6\r\nTo: x\r\n\r\nh\xc3\xa9llo"
    )
    response = SipResponse(200, "OK")
    assert response.serialize() == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_response_for_copies_dialog_headers() -> None:
    invite = parse_message(load("invite_baresip.txt"))
    assert isinstance(invite, SipRequest)
    invite.headers.add("Via", "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKsecond")
    ringing = response_for(invite, 180, to_tag="uas1")
    assert ringing.reason == "Ringing"
    assert ringing.serialize() == (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK4a1b7c3e95d0f2a8;rport\r\n"
        b"Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKsecond\r\n"
        b'From: "Alice" <sip:alice@example.org>;tag=8e1b2d4f60a3c597\r\n'
        b"To: <sip:bob@192.168.1.20>;tag=uas1\r\n"
        b"Call-ID: 5a0f8d2c1b7e4f36\r\n"
        b"CSeq: 25139 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    ok = response_for(invite, 200, body=b"v=0\r\n", content_type="application/sdp")
    assert ok.to_tag is None and ok.content_type == "application/sdp" and ok.body == b"v=0\r\n"
    assert response_for(invite, 299).reason == "Unknown"
    assert response_for(invite, 400, "Bad CSeq").reason == "Bad CSeq"


def test_response_for_keeps_existing_to_tag_and_copies_timestamp_on_100() -> None:
    bye = parse_message(load("bye_in_dialog.txt"))
    assert isinstance(bye, SipRequest)
    assert response_for(bye, 200, to_tag="other").to_tag == "8e1b2d4f60a3c597"
    bye.headers.add("Timestamp", "54")
    assert response_for(bye, 100).headers.get("Timestamp") == "54"
    assert response_for(bye, 200).headers.get("Timestamp") is None


def test_via_build_and_str() -> None:
    via = Via("UDP", "::1", 5060, {"branch": "z9hG4bK1", "rport": None})
    assert str(via) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport"
    assert Via.parse(str(via)) == via
    assert Via("TLS", "h").sent_by == ("h", 5061)
    assert Via("UDP", "h", params={"rport": "x"}).rport is None


def test_convenience_properties_on_hand_built_message() -> None:
    response = SipResponse(200, "OK")
    with pytest.raises(SipParseError, match="^missing Call-ID header$"):
        _ = response.call_id
    with pytest.raises(SipParseError, match="^missing Via header$"):
        _ = response.top_via
    assert response.content_type is None


def test_identifiers() -> None:
    branch = new_branch()
    assert branch.startswith("z9hG4bK") and len(branch) == 27 and branch != new_branch()
    assert len(new_tag()) == 12 and new_tag() != new_tag()
    call_id = new_call_id("10.0.0.1")
    assert call_id.endswith("@10.0.0.1") and len(call_id) == 24 + 9
    assert REASON_PHRASES[481] == "Call/Transaction Does Not Exist"
    assert REASON_PHRASES[488] == "Not Acceptable Here"


# --- stream framing -----------------------------------------------------------------


def test_stream_parser_frames_split_and_joined_messages() -> None:
    first = load("invite_baresip.txt")
    second = load("bye_in_dialog.txt")
    parser = SipStreamParser()
    stream = b"\r\n\r\n" + first + b"\r\n" + second
    received = []
    for index in range(0, len(stream), 37):
        received.extend(parser.feed(stream[index : index + 37]))
    assert [m.serialize() for m in received] == [first, second]
    assert parser.feed(b"\r\n\r\n") == []
    assert [m.serialize() for m in parser.feed(first + second)] == [first, second]


def test_stream_parser_requires_content_length() -> None:
    parser = SipStreamParser()
    data = MINIMAL.replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError, match="^missing Content-Length on a stream$"):
        parser.feed(data)
    with pytest.raises(SipParseError, match="^bad Content-Length$"):
        SipStreamParser().feed(MINIMAL.replace(b"Content-Length: 0", b"l: -1"))
    assert [m.call_id for m in parser.feed(MINIMAL)] == ["c1@127.0.0.1"]  # reset after error


def test_stream_parser_limits_size_and_reports_bad_message() -> None:
    parser = SipStreamParser(max_message_bytes=100)
    with pytest.raises(SipParseError, match="^message too long$"):
        parser.feed(b"X" * 101)
    with pytest.raises(SipParseError, match="^message too long$"):
        SipStreamParser(max_message_bytes=300).feed(
            MINIMAL.replace(b"Content-Length: 0", b"Content-Length: 500")
        )
    with pytest.raises(SipRequestParseError, match="^CSeq method does not match request method$"):
        SipStreamParser().feed(MINIMAL.replace(b"7 OPTIONS", b"7 BYE"))
