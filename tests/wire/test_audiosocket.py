import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callstream.errors import ConfigError, MediaError
from callstream.wire.audiosocket import AudioSocketWire
from callstream.wire.base import Decoded, WireOptionError

STREAM_ID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
FRAME = bytes(range(160)) * 2


def _wire() -> AudioSocketWire:
    return AudioSocketWire(stream_id=STREAM_ID, options={})


def _audio(pcm: bytes) -> bytes:
    return b"\x10" + len(pcm).to_bytes(2, "big") + pcm


def _decode_all(wire: AudioSocketWire, messages: list[bytes]) -> Decoded:
    total = Decoded()
    for message in messages:
        decoded = wire.decode(message)
        total.audio += decoded.audio
        total.faults += decoded.faults
        total.dtmf += decoded.dtmf
        total.hangup = total.hangup or decoded.hangup
    return total


def test_opening_is_the_stream_uuid() -> None:
    assert _wire().opening() == [bytes.fromhex("010010" + "40325ec25efd4bd3805f53576e581d13")]


def test_audio_is_323_bytes_per_frame() -> None:
    message = _wire().encode_audio(FRAME)
    assert message[:3] == b"\x10\x01\x40" and message[3:] == FRAME and len(message) == 323


def test_dtmf_closing_and_error_messages() -> None:
    wire = _wire()
    assert wire.encode_dtmf("5") == b"\x03\x00\x015"
    assert wire.encode_dtmf("#") == b"\x03\x00\x01#"
    assert wire.encode_dtmf("D") == b"\x03\x00\x01D"
    assert wire.closing() == [b"\x00\x00\x00"]
    assert wire.error_message() == b"\xff\x00\x01\x02"  # Asterisk's frame forwarding error


def test_bad_digit_frame_and_option_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^DTMF digit must be one of 0-9 \* # A-D, got 'x'$"):
        _wire().encode_dtmf("x")
    with pytest.raises(MediaError, match="^frame must be 320 bytes, got 3$"):
        _wire().encode_audio(b"abc")
    with pytest.raises(
        WireOptionError, match="^format: not an option of the audiosocket encapsulation$"
    ):
        AudioSocketWire(stream_id=STREAM_ID, options={"format": "ulaw"})


def test_own_messages_decode_back() -> None:
    sender, receiver = _wire(), _wire()
    stream = sender.opening() + [sender.encode_audio(FRAME), sender.encode_dtmf("9")]
    decoded = _decode_all(receiver, stream + sender.closing())
    assert decoded == Decoded(audio=[FRAME], dtmf=["9"], hangup=True)


def test_several_messages_in_one_websocket_message() -> None:
    message = _audio(FRAME) + b"\x03\x00\x017" + _audio(b"\x01\x02") + _audio(b"")
    decoded = _wire().decode(message)
    assert decoded == Decoded(audio=[FRAME, b"\x01\x02"], dtmf=["7"])


def test_a_message_split_across_websocket_messages() -> None:
    wire = _wire()
    message = _audio(FRAME)
    assert wire.decode(message[:1]) == Decoded() and wire.pending_bytes == 1
    assert wire.decode(message[1:3]) == Decoded() and wire.pending_bytes == 3
    assert wire.decode(message[3:200]) == Decoded() and wire.pending_bytes == 200
    assert wire.decode(message[200:] + message[:5]).audio == [FRAME]
    assert wire.pending_bytes == 5
    assert wire.decode(message[5:]).audio == [FRAME] and wire.pending_bytes == 0


def test_seed_node_example_file_of_messages_sent_in_320_byte_chunks() -> None:
    # The seed's Node.js example slices a file into 320-byte WebSocket messages; a file of
    # 323-byte AudioSocket messages then arrives split at a different place every time.
    frames = [bytes([n]) * 320 for n in range(50)]
    audio_file = b"".join(_audio(frame) for frame in frames)
    chunks = [audio_file[i : i + 320] for i in range(0, len(audio_file), 320)]
    decoded = _decode_all(_wire(), chunks)
    assert decoded.faults == [] and b"".join(decoded.audio) == b"".join(frames)


_MESSAGES = st.one_of(
    st.binary(max_size=700).map(lambda pcm: _audio(pcm[: len(pcm) // 2 * 2])),
    st.sampled_from("0123456789*#ABCD").map(lambda digit: b"\x03\x00\x01" + digit.encode()),
    st.just(b"\x01\x00\x10" + uuid.uuid4().bytes),
)


@given(st.lists(_MESSAGES, max_size=12), st.lists(st.integers(0, 8000), max_size=10))
def test_random_splits_decode_to_the_same_audio_and_digits(
    messages: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(messages)
    whole = _wire().decode(stream)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    pieces = [stream[start:end] for start, end in zip(points, points[1:], strict=False)]
    wire = _wire()
    split = _decode_all(wire, pieces)
    assert whole.faults == [] and split.faults == []
    assert b"".join(split.audio) == b"".join(whole.audio)
    assert b"".join(whole.audio) == b"".join(m[3:] for m in messages if m[0] == 0x10)
    assert split.dtmf == whole.dtmf == [chr(m[3]) for m in messages if m[0] == 0x03]
    assert wire.pending_bytes == 0


def test_unknown_kind_drops_the_rest_of_that_websocket_message_and_resets() -> None:
    wire = _wire()
    decoded = wire.decode(_audio(b"\x01\x00") + b"\x42\x00\x02\x00\x00" + _audio(b"\x02\x00"))
    assert decoded.audio == [b"\x01\x00"]
    assert decoded.faults == ["unknown AudioSocket kind 0x42"]
    assert wire.pending_bytes == 0
    assert wire.decode(_audio(b"\x03\x00")) == Decoded(audio=[b"\x03\x00"])


def test_unknown_kind_after_a_split_message_also_drops_what_was_pending() -> None:
    wire = _wire()
    message = _audio(FRAME)
    wire.decode(message[:100])
    decoded = wire.decode(message[100:] + b"\x55" + _audio(FRAME)[:50])
    assert decoded.audio == [FRAME] and decoded.faults == ["unknown AudioSocket kind 0x55"]
    assert wire.pending_bytes == 0
    # Raw PCM where messages were expected loses framing at once, never reaching audio.
    assert wire.decode(b"\x7f\x7f" * 160) == Decoded(faults=["unknown AudioSocket kind 0x7f"])


def test_odd_audio_is_dropped_but_framing_is_kept() -> None:
    decoded = _wire().decode(_audio(b"\x01\x02\x03") + _audio(b"\x04\x05"))
    assert decoded == Decoded(audio=[b"\x04\x05"], faults=["odd byte count 3 for 16-bit PCM"])


def test_hangup_ends_the_stream_and_drops_what_follows() -> None:
    wire = _wire()
    decoded = wire.decode(_audio(b"\x01\x00") + b"\x00\x00\x00" + _audio(b"\x02\x00")[:4])
    assert decoded == Decoded(audio=[b"\x01\x00"], hangup=True)
    assert wire.pending_bytes == 0


def test_client_uuid_is_accepted_and_ignored() -> None:
    assert _wire().decode(b"\x01\x00\x10" + uuid.uuid4().bytes) == Decoded()
    assert _wire().decode(b"\x01\x00\x00") == Decoded()


def test_client_dtmf_digits() -> None:
    decoded = _wire().decode(b"\x03\x00\x01*\x03\x00\x01a\x03\x00\x010")
    assert decoded == Decoded(dtmf=["*", "A", "0"])


@pytest.mark.parametrize(
    ("message", "fault"),
    [
        ("\x10\x00\x00", "text message where binary was expected"),
        (b"\x42", "unknown AudioSocket kind 0x42"),
        (b"\x02\x00\x00", "unknown AudioSocket kind 0x02"),
        (b"\x10\x00\x01\x00", "odd byte count 1 for 16-bit PCM"),
        (b"\x03\x00\x01x", "AudioSocket DTMF payload b'x' is not one digit"),
        (b"\x03\x00\x0212", "AudioSocket DTMF payload b'12' is not one digit"),
        (b"\x03\x00\x00", "AudioSocket DTMF payload b'' is not one digit"),
        (b"\xff\x00\x01\x04", "AudioSocket error from the client (code 04)"),
        (b"\xff\x00\x00", "AudioSocket error from the client (code none)"),
        (
            b"\x12\x00\x02\x00\x00",
            "AudioSocket kind 0x12 (audio at another sample rate) is not supported",
        ),
    ],
)
def test_each_rejection_has_its_exact_fault(message: bytes | str, fault: str) -> None:
    decoded = _wire().decode(message)
    assert decoded.faults == [fault]
    assert decoded.audio == [] and decoded.dtmf == [] and decoded.hangup is False


def test_reassembly_holds_at_most_one_message() -> None:
    wire = _wire()
    largest = _audio(bytes(65534))
    assert wire.decode(largest[:-1]) == Decoded()
    assert wire.pending_bytes == 65536
    decoded = wire.decode(largest[-1:] + largest[:2])
    assert decoded.audio == [bytes(65534)] and wire.pending_bytes == 2


def test_a_message_arriving_byte_by_byte() -> None:
    wire = _wire()
    message = _audio(FRAME)
    decoded = _decode_all(wire, [message[i : i + 1] for i in range(len(message))])
    assert decoded == Decoded(audio=[FRAME]) and wire.pending_bytes == 0


def test_an_empty_websocket_message_changes_nothing() -> None:
    wire = _wire()
    wire.decode(b"\x10\x00")
    assert wire.decode(b"") == Decoded() and wire.pending_bytes == 2
