"""Every wire's decode_audio() fast path against its decode(): same audio, same faults."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.rtp.packet import RtpPacket
from callstream.wire.audiosocket import AudioSocketKind, AudioSocketWire
from callstream.wire.base import Message, Wire
from callstream.wire.rtp import RtpWire
from callstream.wire.sln import SlnWire

STREAM_ID = uuid.UUID(int=7)


def _rtp(step: tuple[int, int, int, int]) -> Message:
    kind, sequence_number, payload_type, length = step
    if kind == 0:
        return bytes((0x80, 200)) + bytes(26)  # RTCP
    if kind == 1:
        return bytes((0x40,)) * length  # version 1, or too short
    packet = RtpPacket(payload_type, sequence_number, 160 * sequence_number, 5, bytes(length))
    if kind == 2:
        packet.csrc = (9,)
    return packet.serialize()


def _audiosocket(step: tuple[int, int, int, int]) -> Message:
    kind, _, split, length = step
    message_kind = [AudioSocketKind.AUDIO] * 4 + [AudioSocketKind.DTMF, 0x42, AudioSocketKind.ERROR]
    message = bytes((message_kind[kind], length >> 8, length & 0xFF)) + bytes(length)
    return message[:split] if split < len(message) and kind == 6 else message


def _sln(step: tuple[int, int, int, int]) -> Message:
    kind, _, _, length = step
    return "text" if kind == 0 else bytes(length)


_WIRES: dict[str, tuple[Callable[[], Wire], Callable[[tuple[int, int, int, int]], Message]]] = {
    "rtp": (lambda: RtpWire(stream_id=STREAM_ID, options={}), _rtp),
    "audiosocket": (lambda: AudioSocketWire(stream_id=STREAM_ID, options={}), _audiosocket),
    "sln": (lambda: SlnWire(stream_id=STREAM_ID, options={}), _sln),
    "sln ulaw": (lambda: SlnWire(stream_id=STREAM_ID, options={"format": "ulaw"}), _sln),
}

_STEPS = st.lists(
    st.tuples(
        st.integers(0, 6),  # what kind of message (each wire's own meaning)
        st.integers(0, 8),  # RTP sequence number: repeats make duplicates
        st.sampled_from([0, 8, 13, 5, 200]),  # RTP payload type / where a message is cut
        st.sampled_from([0, 1, 2, 159, 160, 161, 320, 321]),  # payload length
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("name", sorted(_WIRES))
@settings(max_examples=200)
@given(steps=_STEPS)
def test_the_fast_path_gives_what_decode_gives(
    name: str, steps: list[tuple[int, int, int, int]]
) -> None:
    make_wire, make_message = _WIRES[name]
    reference, fast = make_wire(), make_wire()
    for step in steps:
        message = make_message(step)
        expected = reference.decode(message)
        audio = fast.decode_audio(message)
        if audio is not None:
            assert (expected.audio, expected.faults, expected.dtmf) == ([audio], [], [])
            assert not expected.hangup
        else:
            got = fast.decode(message)
            assert (got.audio, got.faults, got.dtmf, got.hangup) == (
                expected.audio,
                expected.faults,
                expected.dtmf,
                expected.hangup,
            )


@pytest.mark.parametrize("name", sorted(_WIRES))
def test_plain_audio_takes_the_fast_path(name: str) -> None:
    make_wire, make_message = _WIRES[name]
    wire = make_wire()
    assert wire.decode_audio(make_message((3, 1, 0, 160))) is not None
