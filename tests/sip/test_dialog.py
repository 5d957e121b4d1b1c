"""RFC 3261 §12 dialogs: creation on both sides, routing, CSeq rules."""

from __future__ import annotations

import pytest

from callstream.errors import SipProtocolError
from callstream.sip.dialog import Dialog, DialogState, hop_of, uri_of, with_tag
from callstream.sip.message import SipRequest, SipResponse, parse_message

INVITE = (
    b"INVITE sip:bob@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"Record-Route: <sip:p2.example.net;lr>, <sip:p1.example.org:5070;lr>\r\n"
    b'From: "Alice" <sip:alice@192.0.2.1>;tag=1928301774\r\n'
    b"To: <sip:bob@192.0.2.10>\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
    b"Record-Route: <sip:p2.example.net;lr>, <sip:p1.example.org:5070;lr>\r\n"
    b'From: "Alice" <sip:alice@192.0.2.1>;tag=1928301774\r\n'
    b"To: <sip:bob@192.0.2.10>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.10:5066;transport=udp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def invite() -> SipRequest:
    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)
    return message


def ok(data: bytes = OK) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


def uac_dialog() -> Dialog:
    return Dialog.from_uac_response(invite(), ok())


def test_uac_dialog_from_2xx() -> None:
    dialog = uac_dialog()
    assert dialog.id == ("a84b4c76e66710@192.0.2.1", "1928301774", "a6c85cf")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:p1.example.org:5070;lr>", "<sip:p2.example.net;lr>"]
    assert dialog.remote_target == "sip:bob@192.0.2.10:5066;transport=udp"
    assert dialog.local_cseq == 314159 and dialog.remote_cseq is None
    assert dialog.next_hop() == ("p1.example.org", 5070)


def test_uac_early_dialog_from_18x_is_confirmed_by_2xx() -> None:
    ringing = ok(OK.replace(b"200 OK", b"180 Ringing").replace(b"Record-Route", b"X-Old"))
    dialog = Dialog.from_uac_response(invite(), ringing)
    assert dialog.state is DialogState.EARLY and dialog.route_set == []
    dialog.confirm(ok())
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set[0] == "<sip:p1.example.org:5070;lr>"


def test_response_without_to_tag_creates_no_dialog() -> None:
    no_tag = ok(OK.replace(b";tag=a6c85cf", b""))
    with pytest.raises(SipProtocolError, match="^response creates no dialog: To has no tag$"):
        Dialog.from_uac_response(invite(), no_tag)


def test_uas_dialog_keeps_record_route_order() -> None:
    dialog = Dialog.from_uas_request(invite(), "bobtag")
    assert dialog.id == ("a84b4c76e66710@192.0.2.1", "bobtag", "1928301774")
    assert dialog.route_set == ["<sip:p2.example.net;lr>", "<sip:p1.example.org:5070;lr>"]
    assert dialog.local_party == "<sip:bob@192.0.2.10>;tag=bobtag"
    assert dialog.remote_target == "sip:alice@192.0.2.1:5062"
    assert dialog.remote_cseq == 314159 and not dialog.is_uac


def test_loose_routing_request() -> None:
    dialog = uac_dialog()
    bye = dialog.create_request("BYE", via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew")
    assert bye.uri == "sip:bob@192.0.2.10:5066;transport=udp"
    assert bye.headers.get_all("Route") == [
        "<sip:p1.example.org:5070;lr>",
        "<sip:p2.example.net;lr>",
    ]
    assert bye.cseq == (314160, "BYE")
    assert bye.from_tag == "1928301774" and bye.to_tag == "a6c85cf"
    assert bye.headers.get("Max-Forwards") == "70"
    reparsed = parse_message(bye.serialize())
    assert isinstance(reparsed, SipRequest) and reparsed.uri == bye.uri


def test_ack_reuses_the_invite_cseq() -> None:
    dialog = uac_dialog()
    ack = dialog.create_request("ACK", via="SIP/2.0/UDP h;branch=z9hG4bK1", cseq=314159)
    assert ack.cseq == (314159, "ACK") and dialog.local_cseq == 314159


def test_strict_routing_request() -> None:
    strict = OK.replace(b"<sip:p1.example.org:5070;lr>", b"<sip:p1.example.org:5070>")
    dialog = Dialog.from_uac_response(invite(), ok(strict))
    info = dialog.create_request("INFO", via="SIP/2.0/UDP h;branch=z9hG4bK2")
    assert info.uri == "sip:p1.example.org:5070"
    assert info.headers.get_all("Route") == [
        "<sip:p2.example.net;lr>",
        "<sip:bob@192.0.2.10:5066;transport=udp>",
    ]
    assert dialog.next_hop() == ("p1.example.org", 5070)


def test_remote_cseq_lower_is_500() -> None:
    dialog = Dialog.from_uas_request(invite(), "bobtag")
    request = invite()
    request.headers.set("CSeq", "314158 INFO")
    request.method = "INFO"
    with pytest.raises(SipProtocolError, match="^CSeq 314158 lower than 314159$") as caught:
        dialog.check_remote_request(request)
    assert caught.value.status == 500
    request.headers.set("CSeq", "314160 INFO")
    dialog.check_remote_request(request)
    assert dialog.remote_cseq == 314160


def test_target_refresh_from_contact() -> None:
    dialog = Dialog.from_uas_request(invite(), "bobtag")
    reinvite = invite()
    reinvite.headers.set("Contact", '"A" <sip:alice@198.51.100.4:6000>;expires=60')
    dialog.refresh_target(reinvite)
    assert dialog.remote_target == "sip:alice@198.51.100.4:6000"
    assert dialog.next_hop() == ("p2.example.net", 5060)


def test_header_value_helpers() -> None:
    assert uri_of('"A" <sip:a@h;lr>;tag=1') == "sip:a@h;lr"
    assert uri_of("sip:a@h;tag=1") == "sip:a@h"
    assert with_tag("sip:a@h", "x") == "<sip:a@h>;tag=x"
    assert hop_of("sips:a@h") == ("h", 5061)
