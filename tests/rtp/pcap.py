"""A tiny reader for classic libpcap captures: UDP payloads over IPv4.

Enough to pull RTP packets out of SIPp's sample captures for fixtures; it reads
Ethernet (linktype 1, with optional 802.1Q tags), Linux cooked capture (113) and
raw IPv4 (101) frames, skipping anything that is not IPv4 + UDP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_MAGIC_MICROSECONDS = 0xA1B2C3D4
_MAGIC_NANOSECONDS = 0xA1B23C4D
_LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_LINKTYPE_LINUX_SLL = 113
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = 0x8100
_IP_PROTOCOL_UDP = 17


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram found in a capture."""

    time: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def _ipv4_address(raw: bytes) -> str:
    return ".".join(str(octet) for octet in raw)


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == _LINKTYPE_RAW:
        return frame
    if linktype == _LINKTYPE_ETHERNET:
        offset = 12
        (ethertype,) = struct.unpack_from("!H", frame, offset)
        while ethertype == _ETHERTYPE_VLAN:
            offset += 4
            (ethertype,) = struct.unpack_from("!H", frame, offset)
        return frame[offset + 2 :] if ethertype == _ETHERTYPE_IPV4 else None
    if linktype == _LINKTYPE_LINUX_SLL:
        (ethertype,) = struct.unpack_from("!H", frame, 14)
        return frame[16:] if ethertype == _ETHERTYPE_IPV4 else None
    raise ValueError(f"unsupported pcap linktype {linktype}")


def _udp_datagram(time: float, ip: bytes) -> UdpDatagram | None:
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != _IP_PROTOCOL_UDP:
        return None
    header_bytes = (ip[0] & 0x0F) * 4
    (total_bytes,) = struct.unpack_from("!H", ip, 2)
    source_port, destination_port, udp_bytes = struct.unpack_from("!HHH", ip, header_bytes)
    start = header_bytes + 8
    end = min(header_bytes + udp_bytes, total_bytes, len(ip))
    return UdpDatagram(
        time,
        (_ipv4_address(ip[12:16]), source_port),
        (_ipv4_address(ip[16:20]), destination_port),
        ip[start:end],
    )


def read_udp(path: str | Path) -> list[UdpDatagram]:
    """Every IPv4/UDP datagram in a classic pcap file, in capture order."""
    data = Path(path).read_bytes()
    (magic,) = struct.unpack_from("<I", data, 0)
    if magic in (_MAGIC_MICROSECONDS, _MAGIC_NANOSECONDS):
        endian = "<"
    else:
        endian = ">"
        (magic,) = struct.unpack_from(">I", data, 0)
        if magic not in (_MAGIC_MICROSECONDS, _MAGIC_NANOSECONDS):
            raise ValueError("not a classic pcap file")
    fraction_scale = 1e-9 if magic == _MAGIC_NANOSECONDS else 1e-6
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    record = struct.Struct(endian + "IIII")
    datagrams: list[UdpDatagram] = []
    offset = 24
    while offset + record.size <= len(data):
        seconds, fraction, captured_bytes, _ = record.unpack_from(data, offset)
        offset += record.size
        frame = data[offset : offset + captured_bytes]
        offset += captured_bytes
        ip = _ip_packet(linktype, frame)
        if ip is None:
            continue
        datagram = _udp_datagram(seconds + fraction * fraction_scale, ip)
        if datagram is not None:
            datagrams.append(datagram)
    return datagrams


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rtp"


def load_hex_fixture(name: str) -> list[bytes]:
    """Packets stored one per line as hex in tests/fixtures/rtp/<name>.hex ('#' = comment)."""
    lines = (FIXTURES / f"{name}.hex").read_text().splitlines()
    return [bytes.fromhex(line) for line in lines if line.strip() and not line.startswith("#")]
