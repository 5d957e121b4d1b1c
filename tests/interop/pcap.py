"""Read what a SIPp peer heard: classic pcap files -> UDP datagrams -> RTP -> PCM.

SIPp cannot record audio, so the interop tests capture its media port with tcpdump
and decode the capture here. Only the classic libpcap format is read (not pcapng),
which is what ``tcpdump -w`` writes. Link types handled: EN10MB (what ``-i lo``
gives on Linux), LINUX_SLL, LINUX_SLL2 (``-i any``), NULL/LOOP (BSD loopback) and
RAW. IPv4 and IPv6 (no extension headers), UDP only; IP fragments are skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LINKTYPE_NULL = 0
LINKTYPE_EN10MB = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = 0x8100
_IPPROTO_UDP = 17

PT_PCMU = 0
PT_PCMA = 8


class PcapError(ValueError):
    """A file that is not a classic pcap capture we can read."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One captured UDP datagram; ``time`` is the capture timestamp in seconds."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """The RTP fixed header fields the tests need (RFC 3550 section 5.1)."""

    time: float
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes, time: float = 0.0) -> RtpPacket:
        if len(data) < 12:
            raise ValueError(f"RTP packet too short: {len(data)} bytes")
        first, second, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
        if first >> 6 != 2:
            raise ValueError(f"RTP version {first >> 6} is not 2")
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # header extension: 4-byte header, length in 32-bit words
            if len(data) < offset + 4:
                raise ValueError("RTP extension header truncated")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if first & 0x20 and end > offset:  # padding: last byte counts the pad bytes
            end -= data[-1]
        if end < offset:
            raise ValueError("RTP header longer than the packet")
        return cls(time, second & 0x7F, bool(second & 0x80), seq, ts, ssrc, data[offset:end])


def read_pcap(path: str | Path) -> tuple[int, list[tuple[float, bytes]]]:
    """Return (link type, [(timestamp, frame bytes), ...]) of a classic pcap file."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise PcapError(f"{path}: too short for a pcap header ({len(data)} bytes)")
    for endian in ("<", ">"):
        (magic,) = struct.unpack_from(endian + "I", data)
        if magic in (_MAGIC_USEC, _MAGIC_NSEC):
            break
    else:
        raise PcapError(f"{path}: not a classic pcap file (magic {data[:4].hex()})")
    fraction = 1e-9 if magic == _MAGIC_NSEC else 1e-6
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    records: list[tuple[float, bytes]] = []
    offset = 24
    header = struct.Struct(endian + "IIII")
    while offset + 16 <= len(data):
        seconds, frac, incl_len, _orig_len = header.unpack_from(data, offset)
        offset += 16
        # a capture stopped mid-write may end in a partial record: ignore it
        if offset + incl_len > len(data):
            break
        records.append((seconds + frac * fraction, data[offset : offset + incl_len]))
        offset += incl_len
    return linktype, records


def _network_layer(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """Strip the link header; return (ethertype, IP packet) or None if not IP."""
    if linktype == LINKTYPE_EN10MB:
        if len(frame) < 14:
            return None
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        offset = 14
        while ethertype == _ETHERTYPE_VLAN and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        return ethertype, frame[offset:]
    if linktype == LINKTYPE_LINUX_SLL:
        return (struct.unpack_from("!H", frame, 14)[0], frame[16:]) if len(frame) >= 16 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return (struct.unpack_from("!H", frame, 0)[0], frame[20:]) if len(frame) >= 20 else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP, LINKTYPE_RAW):
        packet = frame if linktype == LINKTYPE_RAW else frame[4:]
        if not packet:
            return None
        version = packet[0] >> 4
        return (_ETHERTYPE_IPV4 if version == 4 else _ETHERTYPE_IPV6), packet
    raise PcapError(f"unsupported pcap link type {linktype}")


def _udp_of_ip(ethertype: int, packet: bytes) -> tuple[str, str, bytes] | None:
    """Return (source IP, destination IP, UDP segment) or None."""
    if ethertype == _ETHERTYPE_IPV4 and len(packet) >= 20:
        header_len = (packet[0] & 0x0F) * 4
        total_len = struct.unpack_from("!H", packet, 2)[0]
        flags_fragment = struct.unpack_from("!H", packet, 6)[0]
        if packet[9] != _IPPROTO_UDP or flags_fragment & 0x3FFF:
            return None
        src = ".".join(str(b) for b in packet[12:16])
        dst = ".".join(str(b) for b in packet[16:20])
        return src, dst, packet[header_len:total_len]
    if ethertype == _ETHERTYPE_IPV6 and len(packet) >= 40:
        if packet[6] != _IPPROTO_UDP:
            return None
        payload_len = struct.unpack_from("!H", packet, 4)[0]
        src = _ipv6_text(packet[8:24])
        dst = _ipv6_text(packet[24:40])
        return src, dst, packet[40 : 40 + payload_len]
    return None


def _ipv6_text(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def udp_datagrams(path: str | Path) -> list[UdpDatagram]:
    """Every UDP datagram in a capture, in capture order."""
    linktype, records = read_pcap(path)
    datagrams: list[UdpDatagram] = []
    for time, frame in records:
        network = _network_layer(linktype, frame)
        if network is None:
            continue
        ip = _udp_of_ip(*network)
        if ip is None or len(ip[2]) < 8:
            continue
        src_ip, dst_ip, segment = ip
        src_port, dst_port, udp_len = struct.unpack_from("!HHH", segment)
        payload = segment[8:udp_len]
        datagrams.append(UdpDatagram(time, (src_ip, src_port), (dst_ip, dst_port), payload))
    return datagrams


def rtp_packets(datagrams: Iterable[UdpDatagram]) -> Iterator[RtpPacket]:
    """The datagrams that parse as RTP; RTCP (PT 72-76 with marker) is left out."""
    for datagram in datagrams:
        try:
            packet = RtpPacket.parse(datagram.payload, datagram.time)
        except ValueError:
            continue
        if packet.marker and 72 <= packet.pt <= 76:  # RTCP SR/RR/SDES/BYE/APP (200-204)
            continue
        yield packet


def to_port(datagrams: Iterable[UdpDatagram], port: int) -> list[UdpDatagram]:
    """The datagrams addressed to ``port`` (what the peer on that port heard)."""
    return [d for d in datagrams if d.dst[1] == port]


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    magnitude = (((codes & 0x0F) << 3) + 0x84) << exponent
    values = magnitude - 0x84
    return np.where(codes & 0x80, -values, values).astype("<i2")


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    # G.711 A-law: a set sign bit means positive
    return np.where(codes & 0x80, magnitude, -magnitude).astype("<i2")


ULAW_TO_PCM = _ulaw_table()
ALAW_TO_PCM = _alaw_table()


def decode_g711(payload: bytes, pt: int) -> bytes:
    """G.711 payload (PT 0 = PCMU, 8 = PCMA) -> 16-bit little-endian PCM."""
    table = {PT_PCMU: ULAW_TO_PCM, PT_PCMA: ALAW_TO_PCM}.get(pt)
    if table is None:
        raise ValueError(f"payload type {pt} is not G.711")
    return table[np.frombuffer(payload, dtype=np.uint8)].tobytes()


def rtp_audio(packets: Iterable[RtpPacket]) -> bytes:
    """Concatenate the G.711 payloads of an RTP stream as 8 kHz 16-bit PCM.

    Packets are put in sequence order per SSRC (streams in order of first
    appearance); events (PT 101 etc.) are left out. Gaps are not filled: the
    tests compare content and order, not absolute timing.
    """
    streams: dict[int, list[RtpPacket]] = {}
    for packet in packets:
        if packet.pt in (PT_PCMU, PT_PCMA):
            streams.setdefault(packet.ssrc, []).append(packet)
    chunks: list[bytes] = []
    for stream in streams.values():
        first_seq = stream[0].seq
        stream.sort(key=lambda p: (p.seq - first_seq) & 0xFFFF)
        chunks.extend(decode_g711(p.payload, p.pt) for p in stream)
    return b"".join(chunks)


def events(packets: Iterable[RtpPacket], pt: int = 101) -> list[tuple[int, bool, int]]:
    """RFC 4733 events as (event code, end bit, duration) per packet of payload type ``pt``."""
    found: list[tuple[int, bool, int]] = []
    for packet in packets:
        if packet.pt == pt and len(packet.payload) >= 4:
            code, flags, duration = struct.unpack_from("!BBH", packet.payload)
            found.append((code, bool(flags & 0x80), duration))
    return found
