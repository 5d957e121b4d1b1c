from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest

from callstream.codecs.g711 import (
    alaw_decode,
    alaw_encode,
    decoder_for,
    encoder_for,
    ulaw_decode,
    ulaw_encode,
)
from callstream.errors import MediaError
from callstream.media.frame import FRAME_BYTES, SILENCE
from callstream.rtp.packet import RtpPacket
from tests.audio_analysis import dominant_frequency, rms_dbfs, samples, sine
from tests.rtp.pcap import load_hex_fixture


def _sample(pcm: bytes) -> int:
    (value,) = struct.unpack("<h", pcm)
    return int(value)


@pytest.mark.parametrize(
    ("code", "value"),
    [(0x00, -32124), (0x80, 32124), (0xFF, 0), (0x7F, 0), (0xFE, 8), (0x7E, -8)],
)
def test_ulaw_decode_vectors(code: int, value: int) -> None:
    assert _sample(ulaw_decode(bytes([code]))) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0x80, 5504), (0x00, -5504)],
)
def test_alaw_decode_vectors(code: int, value: int) -> None:
    assert _sample(alaw_decode(bytes([code]))) == value


def test_silence_encodes_to_the_zero_codes() -> None:
    assert ulaw_encode(SILENCE) == b"\xff" * 160
    assert alaw_encode(SILENCE) == b"\xd5" * 160


def test_extremes_encode_to_the_largest_codes() -> None:
    extremes = struct.pack("<hh", 32767, -32768)
    assert ulaw_encode(extremes) == b"\x80\x00"
    assert alaw_encode(extremes) == b"\xaa\x2a"


def test_frame_sizes() -> None:
    assert len(ulaw_encode(SILENCE)) == 160
    assert len(ulaw_decode(b"\xff" * 160)) == FRAME_BYTES
    assert len(alaw_decode(b"\xd5" * 240)) == 480


@pytest.mark.parametrize("payload_type", [0, 8])
def test_sine_round_trip_within_g711_error(payload_type: int) -> None:
    original = sine(1000, 0.5, amplitude=0.5)
    decoded = decoder_for(payload_type)(encoder_for(payload_type)(original))
    error = samples(decoded) - samples(original)
    signal_power = float(np.mean(samples(original) ** 2))
    noise_power = float(np.mean(error**2))
    # G.711's companding keeps roughly 38 dB SNR for a loud tone; 30 is a safe floor.
    assert 10 * np.log10(signal_power / noise_power) > 30
    assert dominant_frequency(decoded) == pytest.approx(1000, abs=1)


def test_codec_lookup() -> None:
    assert decoder_for(0) is ulaw_decode
    assert decoder_for(8) is alaw_decode
    assert encoder_for(0) is ulaw_encode
    assert encoder_for(8) is alaw_encode
    with pytest.raises(MediaError, match="^no G.711 codec for payload type 18$"):
        decoder_for(18)
    with pytest.raises(MediaError, match="^no G.711 codec for payload type 9$"):
        encoder_for(9)


def test_real_pcma_capture_decodes_to_speech_level_audio() -> None:
    packets = [RtpPacket.parse(data) for data in load_hex_fixture("pcma_speech")]
    pcm = b"".join(alaw_decode(packet.payload) for packet in packets)
    assert len(pcm) == 10 * 480
    assert -30 < rms_dbfs(pcm) < -15
    # The capture opens with A-law silence: 0xD5 decodes to +8, i.e. -72 dBFS.
    opening = RtpPacket.parse(load_hex_fixture("pcma_30ms")[1]).payload
    assert opening == b"\xd5" * 240
    assert rms_dbfs(alaw_decode(opening)) == pytest.approx(-72.25, abs=0.01)
    # Decoding with the wrong law gives something quite different.
    assert ulaw_decode(packets[0].payload) != alaw_decode(packets[0].payload)


@pytest.mark.parametrize(
    ("decode", "encode", "codes_that_share_a_value"),
    [(ulaw_decode, ulaw_encode, {0x7F}), (alaw_decode, alaw_encode, set())],
)
def test_encoding_the_pcm_just_decoded_gives_back_the_original_bytes(
    decode: Callable[[bytes], bytes],
    encode: Callable[[bytes], bytes],
    codes_that_share_a_value: set[int],
) -> None:
    # every code, including mu-law's two zeros (0x7f and 0xff both decode to 0, and
    # encoding PCM 0 gives 0xff): passthrough keeps the caller's byte
    original = bytes(range(256))
    pcm = decode(original)
    assert encode(pcm) is original
    # an equal copy is not the object just decoded, so it is encoded afresh
    afresh = encode(bytes(bytearray(pcm)))
    assert {code for code in range(256) if afresh[code] != code} == codes_that_share_a_value


def test_passthrough_never_hands_out_a_mutable_buffer() -> None:
    buffer = bytearray(b"\x01" * 160)
    pcm = ulaw_decode(bytes(buffer))  # a bytes copy is remembered
    assert ulaw_encode(pcm) == b"\x01" * 160
    pcm = ulaw_decode(buffer)  # type: ignore[arg-type]  # a bytearray is not
    buffer[:] = b"\x02" * 160
    assert ulaw_encode(pcm) == b"\x01" * 160
