import uuid

import pytest

from callstream.codecs.g711 import alaw_decode, ulaw_decode
from callstream.errors import MediaError
from callstream.wire.base import WireOptionError
from callstream.wire.sln import SlnWire
from tests.rtp.pcap import load_hex_fixture

STREAM_ID = uuid.UUID("5d0f7c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
# Real speech: the first 20 ms of a SIPp capture's A-law payload, as canonical PCM.
SPEECH_FRAME = alaw_decode(load_hex_fixture("pcma_speech")[0][12:])[:320]


def test_slin_is_the_default_and_sends_each_frame_as_it_is() -> None:
    for options in ({}, {"format": "slin"}):
        wire = SlnWire(stream_id=STREAM_ID, options=options)
        assert wire.format == "slin"
        assert wire.encode_audio(SPEECH_FRAME) == SPEECH_FRAME
        assert wire.decode(SPEECH_FRAME).audio == [SPEECH_FRAME]


def test_ulaw_sends_160_bytes_per_frame() -> None:
    wire = SlnWire(stream_id=STREAM_ID, options={"format": "ulaw"})
    assert wire.encode_audio(bytes(320)) == b"\xff" * 160  # μ-law's zero
    message = wire.encode_audio(SPEECH_FRAME)
    assert len(message) == 160
    assert wire.decode(message).audio == [ulaw_decode(message)]
    assert wire.decode(b"\xff\x7f\x00").audio == [
        bytes.fromhex("000000008482")
    ]  # 0x00 is -32124 (G.711 table)


def test_no_framing_messages() -> None:
    wire = SlnWire(stream_id=STREAM_ID, options={})
    assert wire.opening() == [] and wire.closing() == []
    assert wire.encode_dtmf("1") is None and wire.error_message() is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "slin16"}, "format: must be 'ulaw' or 'slin'"),
        ({"format": "ULAW"}, "format: must be 'ulaw' or 'slin'"),
        ({"format": ""}, "format: must be 'ulaw' or 'slin'"),
        ({"rate": "8000"}, "rate: not an option of the sln encapsulation"),
    ],
)
def test_bad_options_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(WireOptionError, match=f"^{message}$"):
        SlnWire(stream_id=STREAM_ID, options=options)


def test_frame_of_the_wrong_size_is_refused() -> None:
    wire = SlnWire(stream_id=STREAM_ID, options={"format": "ulaw"})
    with pytest.raises(MediaError, match="^frame must be 320 bytes, got 321$"):
        wire.encode_audio(bytes(321))


def test_slin_accepts_any_even_length() -> None:
    wire = SlnWire(stream_id=STREAM_ID, options={})
    for length in (2, 160, 322, 64000):
        decoded = wire.decode(bytes(range(256)) * (length // 256) + bytes(length % 256))
        assert decoded.faults == [] and len(decoded.audio[0]) == length


def test_ulaw_accepts_any_length() -> None:
    wire = SlnWire(stream_id=STREAM_ID, options={"format": "ulaw"})
    assert wire.decode(b"\xff").audio == [b"\x00\x00"]
    assert len(wire.decode(b"\xff" * 333).audio[0]) == 666


@pytest.mark.parametrize(
    ("options", "message", "fault"),
    [
        ({}, bytes(321), "odd byte count 321 for 16-bit PCM"),
        ({}, b"\x01", "odd byte count 1 for 16-bit PCM"),
        ({}, b"", "empty message"),
        ({"format": "ulaw"}, b"", "empty message"),
        ({}, "\x00\x01", "text message where binary was expected"),
        ({"format": "ulaw"}, "hi", "text message where binary was expected"),
    ],
)
def test_each_rejection_has_its_exact_fault(
    options: dict[str, str], message: bytes | str, fault: str
) -> None:
    decoded = SlnWire(stream_id=STREAM_ID, options=options).decode(message)
    assert decoded.faults == [fault]
    assert decoded.audio == [] and decoded.hangup is False


def test_an_odd_message_is_dropped_whole_and_nothing_carries_over() -> None:
    wire = SlnWire(stream_id=STREAM_ID, options={})
    assert wire.decode(b"\x01\x02\x03").audio == []
    assert wire.decode(b"\x04\x05").audio == [b"\x04\x05"]
