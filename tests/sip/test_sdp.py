from __future__ import annotations

import pathlib

import pytest

from callstream.errors import SdpError
from callstream.sip.message import parse_message
from callstream.sip.sdp import (
    MediaDescription,
    NegotiatedMedia,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
)

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "sip"


def body_of(name: str) -> bytes:
    data = (FIXTURES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return parse_message(data).body


BARESIP = body_of("invite_baresip.txt")
SIPP = body_of("invite_sipp_uac.txt")
ASTERISK = body_of("ok_asterisk.txt")
MULTI = (FIXTURES / "sdp_linphone_multi.txt").read_bytes()


def sdp(text: str) -> SessionDescription:
    return SessionDescription.parse(text.strip() + "\n")


BASIC = """v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP {formats}
{attributes}"""


def audio(formats: str, attributes: str = "") -> SessionDescription:
    return sdp(BASIC.format(formats=formats, attributes=attributes))


@pytest.mark.parametrize("body", [BARESIP, SIPP, ASTERISK], ids=["baresip", "sipp", "asterisk"])
def test_real_bodies_round_trip(body: bytes) -> None:
    assert SessionDescription.parse(body).serialize() == body


def test_lf_only_body_round_trips_to_crlf() -> None:
    assert SessionDescription.parse(MULTI).serialize() == MULTI.replace(b"\n", b"\r\n")


def test_baresip_offer_fields() -> None:
    session = SessionDescription.parse(BARESIP)
    assert (session.session_id, session.session_version) == (1717171717, 1717171718)
    assert session.origin_address == "192.168.1.10"
    assert session.connection_address == "192.168.1.10"
    assert session.time == (0, 0)
    (media,) = session.media
    assert (media.media, media.port, media.proto, media.formats) == (
        "audio",
        10018,
        "RTP/AVP",
        [0, 8, 101],
    )
    assert media.rtpmap() == {0: ("PCMU", 8000), 8: ("PCMA", 8000), 101: ("telephone-event", 8000)}
    assert media.fmtp(101) == "0-15"
    assert media.fmtp(0) is None
    assert media.ptime == 20
    assert media.direction == "sendrecv"
    assert media.attribute("rtcp") == "10019"
    assert media.has_attribute("rtcp-rsize") and media.attribute("rtcp-rsize") is None
    assert media.extra_lines == [("b", "AS:64")]
    assert media.connection_address is None


def test_static_types_without_rtpmap_and_rtpmap_channels() -> None:
    session = SessionDescription.parse(SIPP)
    assert session.media[0].rtpmap() == {0: ("PCMU", 8000)}
    media = audio("0 18 96", "a=rtpmap:96 opus/48000/2\na=rtpmap:bad")
    assert media.media[0].rtpmap() == {0: ("PCMU", 8000), 18: ("G729", 8000), 96: ("opus", 48000)}


def test_multi_stream_fields() -> None:
    session = SessionDescription.parse(MULTI)
    assert [m.media for m in session.media] == ["video", "audio", "audio"]
    assert session.extra_lines == [("i", "A call with video"), ("b", "AS:380")]
    assert session.attributes == [("ice-ufrag", "8hhY"), ("recvonly", None)]
    third = session.media[2]
    assert third.connection_address == "2001:db8::21"
    assert session.address_of(third) == "2001:db8::21"
    assert session.address_of(session.media[0]) == "2001:db8::20"
    assert third.direction == "sendrecv"  # its own attribute: none
    assert session.direction_of(third) == "recvonly"  # session level applies
    assert third.attributes[-1] == ("x-unknown", None)


def test_negotiate_baresip_prefers_remote_order() -> None:
    result = negotiate(SessionDescription.parse(BARESIP))
    assert result == NegotiatedMedia(
        remote_address="192.168.1.10",
        remote_port=10018,
        payload_type=0,
        telephone_event_pt=101,
        direction="sendrecv",
        ptime_ms=20,
        encoding="PCMU",
        media_index=0,
    )
    assert not result.on_hold
    pcma = negotiate(SessionDescription.parse(BARESIP), supported=(8,))
    assert (pcma.payload_type, pcma.encoding) == (8, "PCMA")


def test_negotiate_asterisk_and_sipp() -> None:
    result = negotiate(SessionDescription.parse(ASTERISK))
    assert (result.remote_address, result.remote_port) == ("10.0.0.20", 13290)
    assert (result.payload_type, result.telephone_event_pt, result.encoding) == (8, 101, "PCMA")
    sipp = negotiate(SessionDescription.parse(SIPP))
    assert (sipp.payload_type, sipp.telephone_event_pt, sipp.ptime_ms) == (0, None, 20)


def test_negotiate_skips_video_srtp_and_finds_pcma_by_position() -> None:
    result = negotiate(SessionDescription.parse(MULTI))
    assert result.media_index == 2
    assert (result.remote_address, result.remote_port) == ("2001:db8::21", 7080)
    assert (result.payload_type, result.encoding, result.telephone_event_pt) == (8, "PCMA", 101)
    assert result.direction == "recvonly" and not result.on_hold


def test_negotiate_dynamic_pcmu_and_ptime() -> None:
    result = negotiate(
        audio("96 101", "a=rtpmap:96 pcmu/8000\na=rtpmap:101 telephone-event/8000\na=ptime:30")
    )
    assert (result.payload_type, result.encoding, result.ptime_ms) == (96, "PCMU", 30)
    with_session_ptime = sdp(
        BASIC.format(formats="8", attributes="").replace("t=0 0", "t=0 0\na=ptime:40")
    )
    assert negotiate(with_session_ptime).ptime_ms == 40


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASIC.format(formats="18 9", attributes=""), "no acceptable codec in audio offer"),
        (BASIC.format(formats="96", attributes="a=rtpmap:96 PCMU/16000"),
         "no acceptable codec in audio offer"),
        (BASIC.replace("m=audio 4000", "m=audio 0").format(formats="0", attributes=""),
         "no acceptable codec: no audio stream"),
        (BASIC.replace("m=audio", "m=video").format(formats="0", attributes=""),
         "no acceptable codec: no audio stream"),
        (BASIC.replace("RTP/AVP", "RTP/SAVP").format(formats="0", attributes=""),
         "no acceptable codec: no audio stream"),
    ],
)  # fmt: skip
def test_negotiate_488(text: str, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        negotiate(sdp(text))
    assert str(caught.value) == message
    assert caught.value.status == 488


def test_negotiate_without_connection_address() -> None:
    with pytest.raises(SdpError, match="^bad SDP: no connection address$") as caught:
        negotiate(sdp(BASIC.replace("c=IN IP4 10.0.0.1\n", "").format(formats="0", attributes="")))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("attributes", "connection", "direction", "on_hold"),
    [
        ("a=sendonly", "10.0.0.1", "sendonly", True),
        ("a=inactive", "10.0.0.1", "inactive", True),
        ("a=recvonly", "10.0.0.1", "recvonly", False),
        ("", "0.0.0.0", "sendrecv", True),
        ("a=sendrecv", "10.0.0.1", "sendrecv", False),
    ],
)
def test_hold_variants(attributes: str, connection: str, direction: str, on_hold: bool) -> None:
    text = BASIC.format(formats="0", attributes=attributes).replace("10.0.0.1", connection)
    result = negotiate(sdp(text))
    assert (result.direction, result.on_hold) == (direction, on_hold)


def test_build_offer_exact_bytes() -> None:
    offer = build_offer(address="192.0.2.5", port=20000, session_id=42, session_version=43)
    assert offer.serialize() == (
        b"v=0\r\n"
        b"o=- 42 43 IN IP4 192.0.2.5\r\n"
        b"s=callstream\r\n"
        b"c=IN IP4 192.0.2.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 20000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    held = build_offer(
        address="2001:db8::5",
        port=20002,
        session_id=1,
        session_version=2,
        payload_types=(8,),
        telephone_event_pt=None,
        direction="sendonly",
        ptime_ms=30,
    )
    assert held.serialize().decode().splitlines()[1] == "o=- 1 2 IN IP6 2001:db8::5"
    assert held.serialize().decode().splitlines()[-4:] == [
        "m=audio 20002 RTP/AVP 8",
        "a=rtpmap:8 PCMA/8000",
        "a=ptime:30",
        "a=sendonly",
    ]
    assert negotiate(SessionDescription.parse(offer.serialize())).payload_type == 0
    with pytest.raises(ValueError, match="^bad direction: both$"):
        build_offer(address="h", port=1, session_id=1, session_version=1, direction="both")


def test_build_answer_to_baresip() -> None:
    offer = SessionDescription.parse(BARESIP)
    answer = build_answer(
        offer, negotiate(offer), address="192.0.2.5", port=30000, session_id=7, session_version=7
    )
    assert answer.serialize() == (
        b"v=0\r\n"
        b"o=- 7 7 IN IP4 192.0.2.5\r\n"
        b"s=callstream\r\n"
        b"c=IN IP4 192.0.2.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_build_answer_rejects_other_streams_and_keeps_offer_numbers() -> None:
    offer = SessionDescription.parse(MULTI)
    answer = build_answer(
        offer, negotiate(offer), address="192.0.2.5", port=30000, session_id=7, session_version=8
    )
    lines = answer.serialize().decode().splitlines()
    assert lines[5:] == [
        "m=video 0 RTP/AVP 96",
        "m=audio 0 RTP/SAVP 0 8",
        "m=audio 30000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendonly",  # the offer was recvonly at session level
    ]


def test_build_answer_without_telephone_event() -> None:
    offer = SessionDescription.parse(SIPP)
    answer = build_answer(
        offer, negotiate(offer), address="h", port=1, session_id=1, session_version=1
    )
    assert answer.media[0].formats == [0]
    assert not any(name == "fmtp" for name, _ in answer.media[0].attributes)


@pytest.mark.parametrize(
    ("offered", "wished", "answered"),
    [
        ("sendrecv", None, "sendrecv"),
        ("sendonly", None, "recvonly"),
        ("recvonly", None, "sendonly"),
        ("inactive", None, "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
        ("sendonly", "sendrecv", "recvonly"),
    ],
)
def test_answer_direction(offered: str, wished: str | None, answered: str) -> None:
    offer = audio("0", f"a={offered}")
    answer = build_answer(
        offer,
        negotiate(offer),
        address="h",
        port=1,
        session_id=1,
        session_version=1,
        direction=wished,
    )
    assert answer.media[0].direction == answered


def test_non_rtp_media_kept() -> None:
    session = sdp(BASIC.format(formats="0", attributes="") + "\nm=image 0 udptl t38")
    image = session.media[1]
    assert (image.formats, image.other_formats) == ([], ["t38"])
    assert session.serialize().endswith(b"m=image 0 udptl t38\r\n")
    assert MediaDescription("audio", 0, "RTP/AVP")._lines() == ["m=audio 0 RTP/AVP"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "bad SDP: empty"),
        (b"\xff", "bad SDP: not UTF-8"),
        ("v=1\no=- 1 1 IN IP4 h\n", "bad SDP: line 1 must be v=0"),
        ("o=- 1 1 IN IP4 h\nv=0\n", "bad SDP: line 1 must be v=0"),
        ("v=0\no=- 1 1 IN IP4 h\nbogus\n", "bad SDP: line 3 is not type=value"),
        ("v=0\no=- 1 1 IN IP4 h\nA=x\n", "bad SDP: line 3 is not type=value"),
        ("v=0\no=- x 1 IN IP4 h\n", "bad SDP: line 2 bad origin"),
        ("v=0\no=- 1 1 IN IP4\n", "bad SDP: line 2 bad origin"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4\n", "bad SDP: line 3 bad connection"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IPX h\n", "bad SDP: line 3 bad connection"),
        ("v=0\no=- 1 1 IN IP4 h\nt=0\n", "bad SDP: line 3 bad time"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio\n", "bad SDP: line 3 bad media"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio x RTP/AVP 0\n", "bad SDP: line 3 bad media"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 70000 RTP/AVP 0\n", "bad SDP: line 3 bad media"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 4000 RTP/AVP PCMU\n", "bad SDP: line 3 bad media"),
        ("v=0\no=- 1 1 IN IP4 h\nm=audio 4000/x RTP/AVP 0\n", "bad SDP: line 3 bad media"),
        ("v=0\ns=-\nt=0 0\n", "bad SDP: missing o= line"),
    ],
)
def test_rejections(text: bytes | str, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse(text)
    assert str(caught.value) == message
    assert caught.value.status == 400


@pytest.mark.parametrize("port", ["²", "\u0661\u0662"])
def test_non_ascii_digits_are_not_a_port(port: str) -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
    )
    with pytest.raises(SdpError, match="bad SDP"):
        SessionDescription.parse(text)
