"""Audio files the interop tests send: G.711 tones for SIPp, WAVs for the CLI."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.audio_analysis import sine
from tests.interop import pcap
from tests.interop.harness import run_sox, write_wav
from tests.interop.listening import SIPP_PCAP_DIR

G711A_PCAP = SIPP_PCAP_DIR / "g711a.pcap"


def tone_ul(directory: Path, frequency_hz: int = 1000, seconds: int = 3) -> Path:
    """A sine as headerless 8 kHz mu-law: the file the SIPp scenarios' rtp_stream sends.

    SIPp 3.6 sends an rtp_stream file's bytes verbatim, so a WAV header would be
    heard as a burst of noise: the file must be raw.
    """
    path = directory / "tone.ul"
    run_sox("-n", "-r", "8000", "-c", "1", "-t", "ul", str(path), "synth", str(seconds),
            "sine", str(frequency_hz))  # fmt: skip
    return path


def rtp_pcap(path: Path, ulaw: bytes, payload_type: int) -> Path:
    """``ulaw`` as a pcap of RTP packets (160 bytes per 20 ms, Ethernet/IPv4/UDP) with
    ``payload_type``: what SIPp's play_pcap_audio replays as recorded. Its rtp_stream
    knows only static payload types, so a dynamic one is sent this way."""
    records = []
    for index in range(len(ulaw) // 160):
        rtp = struct.pack("!BBHII", 0x80, payload_type, index, index * 160, 0x5EED)
        rtp += ulaw[index * 160 : (index + 1) * 160]
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp  # fmt: skip
        frame = bytes(12) + b"\x08\x00" + ip  # Ethernet: addresses, IPv4
        seconds, micros = divmod(index * 20_000, 1_000_000)
        records.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # linktype Ethernet
    path.write_bytes(header + b"".join(records))
    return path


def decoded_ulaw(path: Path) -> bytes:
    return pcap.decode_g711(path.read_bytes(), pcap.PT_PCMU)


def tone_wav(path: Path, frequency_hz: float, seconds: float, amplitude: float = 0.5) -> Path:
    return write_wav(path, sine(frequency_hz, seconds, amplitude=amplitude))


def tone_sequence_wav(
    path: Path, frequencies_hz: list[float], each_s: float, tail_silence_s: float = 0.6
) -> Path:
    """Tones one after another, then silence (so the echo of the last one comes home)."""
    pcm = b"".join(sine(f, each_s) for f in frequencies_hz) + bytes(int(tail_silence_s * 16000))
    return write_wav(path, pcm)
