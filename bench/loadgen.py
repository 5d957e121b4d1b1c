"""The load generator: N real SIP calls with marked RTP, one echoing WebSocket stream each.

Runs in one process on one core (``bench/run.py`` pins it with ``taskset -c 1``) and talks
only to 127.0.0.1. It is written to be much lighter per stream than the gateway it drives:

- SIP is hand-built UDP (INVITE with a PCMU offer, ACK, BYE): a full UAC would cost the
  generator more than the calls cost the gateway.
- Every call's RTP leaves from and returns to ONE UDP socket; what comes back is told apart
  by the gateway's source port (each call has its own gateway RTP port). Sends are batched
  on the generator's own 20 ms clock, spread over ``SEND_PHASES`` phases of it (4 unless
  ``--send-phases`` says otherwise), so the gateway is not handed every call's packet in
  one burst (real phones are not in phase). With 4 phases at 300 calls the gateway gets
  75 packets at once, 4 times a period: a harder pattern than phones whose phases are
  spread at random, and the RTP→WS p50 then mostly measures how long the median packet
  waits behind its burst. ``--send-phases 20`` (a phase per ms) is closer to real phones.
- Each WebSocket is a minimal RFC 6455 client on an asyncio Protocol: it echoes every
  binary message it gets, byte for byte, in one client frame. The client masking key is
  all zeros (RFC 6455 §5.3 wants it unpredictable; the gateway cannot tell, and XOR with
  zero leaves the payload as is, so the echo costs no per-byte work here).
- The JSON wires (Plivo, Voxology) are dialled BY THE GATEWAY, from the call's flow, to
  ``StreamServer`` here: a minimal RFC 6455 server on an asyncio Protocol (it unmasks
  the gateway's frames) that reads the marker without parsing media messages as JSON
  (the base64 audio is found by its key; only its first 8 characters are decoded) and,
  on Plivo, echoes each frame as a ``playAudio`` built around the same base64 string.
  The same port serves the Plivo answer URL.

The marker: the first four μ-law bytes of every RTP payload are ``MAGIC`` and the global
tick number in three base-127 digits (0..126). Every μ-law byte except 0x7F survives
μ-law -> PCM -> μ-law unchanged (0x7F and 0xFF both mean zero), so base 127 keeps the
marker exact through the gateway's canonical PCM. On ``sln`` and ``audiosocket`` wires the
marker arrives as the PCM of those bytes and is read back through a table; on the JSON
wires (μ-law in base64) as the first 6 decoded bytes of the media message's payload.

What is measured per step is returned as a dict by :func:`run` (see bench/README.md).
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import hashlib
import json
import os
import socket
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

HOST = "127.0.0.1"
FRAME_S = 0.020
PAYLOAD_BYTES = 160
MAGIC = 0xD5
RING = 1 << 12  # send/echo times kept per call, indexed by tick % RING
SEND_PHASES = 4
MAX_SEND_PHASES = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")

# μ-law byte -> 16-bit PCM, G.711 (the same table every decoder uses)


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if sign else magnitude


ULAW_TO_PCM = [_ulaw_to_linear(b) for b in range(256)]
PCM_TO_ULAW = {ULAW_TO_PCM[b]: b for b in range(256) if b != 0x7F}
FILLER = bytes([0x9C, 0xA5, 0xB3, 0xC8, 0xB3, 0xA5, 0x9C, 0x94] * 20)[: PAYLOAD_BYTES - 4]
SILENCE_ULAW = b"\xff" * PAYLOAD_BYTES


def marker(tick: int) -> bytes:
    return bytes((MAGIC, tick // 16129 % 127, tick // 127 % 127, tick % 127))


def read_ulaw_marker(data: bytes, offset: int) -> int:
    if data[offset] != MAGIC:
        return -1
    return (data[offset + 1] * 127 + data[offset + 2]) * 127 + data[offset + 3]


_FOUR_SAMPLES = struct.Struct("<4h")


def read_pcm_marker(data: bytes, offset: int) -> int:
    first, d1, d2, d3 = _FOUR_SAMPLES.unpack_from(data, offset)
    if first != ULAW_TO_PCM[MAGIC]:
        return -1
    get = PCM_TO_ULAW.get
    return (get(d1, 0) * 127 + get(d2, 0)) * 127 + get(d3, 0)


# where the marker sits in a message from the gateway, per wire
MARKER_READERS: dict[str, tuple[Callable[[bytes, int], int], int]] = {
    "rtp": (read_ulaw_marker, 12),
    "sln": (read_pcm_marker, 0),
    "audiosocket": (read_pcm_marker, 3),
}


# ---------------------------------------------------------------- one call


@dataclass(eq=False)
class Call:
    index: int
    sip_call_id: str
    from_tag: str
    ssrc: int
    max_ticks: int
    to_tag: str = ""
    remote_contact: str = ""
    gateway_rtp: tuple[str, int] | None = None
    call_id: str = ""  # the gateway's UUID, found through the API
    media_on: bool = False
    speaking: bool = True  # conference mode: only one participant speaks at a time
    sequence: int = 0
    invite_at: float = 0.0
    setup_s: float = -1.0
    answered: asyncio.Future[None] | None = None
    ws: WsClient | JsonStreamConn | None = None
    stream_ready: asyncio.Future[float] | None = None  # JSON wires: the gateway dialled
    sent_at: array.array[float] = field(default_factory=lambda: array.array("d", bytes(8 * RING)))
    echoed_at: array.array[float] = field(default_factory=lambda: array.array("d", bytes(8 * RING)))
    heard_ws: bytearray = field(default_factory=bytearray)  # count per tick, RTP -> WS
    heard_rtp: bytearray = field(default_factory=bytearray)  # count per tick, WS -> RTP
    first_tick: int = -1

    def __post_init__(self) -> None:
        self.heard_ws = bytearray(self.max_ticks)
        self.heard_rtp = bytearray(self.max_ticks)


class Samples:
    """Latency samples (seconds) of one step, both directions."""

    def __init__(self) -> None:
        self.to_ws: array.array[float] = array.array("d")
        self.to_rtp: array.array[float] = array.array("d")

    def clear(self) -> None:
        self.to_ws = array.array("d")
        self.to_rtp = array.array("d")


# ---------------------------------------------------------------- WebSocket client


def frame_header(buffer: bytes, position: int, size: int) -> tuple[int, bool, int, int] | None:
    """The WebSocket frame header at ``position`` (RFC 6455 §5.2): opcode, masked, where
    the rest (mask key or payload) starts, payload length; None while it is incomplete."""
    if size - position < 2:
        return None
    opcode, length = buffer[position] & 0x0F, buffer[position + 1] & 0x7F
    masked = bool(buffer[position + 1] & 0x80)
    start = position + 2
    if length == 126:
        if size - start < 2:
            return None
        length = (buffer[start] << 8) | buffer[start + 1]
        start += 2
    elif length == 127:
        if size - start < 8:
            return None
        length = int.from_bytes(buffer[start : start + 8], "big")
        start += 8
    return opcode, masked, start, length


class WsClient(asyncio.Protocol):
    """RFC 6455 client that echoes every binary message (zero masking key, see module doc)."""

    def __init__(
        self,
        call: Call,
        wire: str,
        samples: Samples,
        path: str,
        echo: bool,
        shared_sent: array.array[float] | None = None,
    ) -> None:
        self.call = call
        self.shared_sent = shared_sent
        self.samples = samples
        self.request = path
        self.echo = echo
        self.reader, self.offset = MARKER_READERS[wire]
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.close_code: int | None = None
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {self.request} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before upgrade: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(None)
            buffer = buffer[end + 4 :]
        position, size = 0, len(buffer)
        while (header := frame_header(buffer, position, size)) is not None:
            opcode, _, start, length = header
            if size - start < length:
                break
            self._message(opcode, buffer[start : start + length])
            position = start + length
        self.buffer = buffer[position:] if position < size else b""

    def _message(self, opcode: int, payload: bytes) -> None:
        now = time.perf_counter()
        if opcode == 2:
            self.messages += 1
            tick = self.reader(payload, self.offset) if len(payload) >= self.offset + 8 else -1
            call = self.call
            if 0 <= tick < call.max_ticks:
                call.heard_ws[tick] = min(255, call.heard_ws[tick] + 1)
                slot = tick & (RING - 1)
                sent = call.sent_at if self.shared_sent is None else self.shared_sent
                self.samples.to_ws.append(now - sent[slot])
                call.echoed_at[slot] = now
            if self.echo:
                self.send(payload)
        elif opcode == 8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self._control(0x88, payload[:2])
            assert self.transport is not None
            self.transport.close()
        elif opcode == 9:
            self._control(0x8A, payload)

    def send(self, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = bytes((0x82, 0x80 | length, 0, 0, 0, 0))
        else:
            header = bytes((0x82, 0xFE, length >> 8, length & 0xFF, 0, 0, 0, 0))
        assert self.transport is not None
        self.transport.write(header + payload)

    def _control(self, first: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes((first, 0x80 | len(payload), 0, 0, 0, 0)) + payload)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._control(0x88, (1000).to_bytes(2, "big"))


# ---------------------------------------------------------------- JSON wires: the customer's server

JSON_WIRES = ("plivo", "voxology")
"""Streams the gateway opens itself, started by the call's flow, to the generator's server."""
ONE_WAY_WIRES = frozenset({"voxology"})
"""Wires that carry nothing from the application (Voxology, seed 003): RTP -> WS only."""
MEDIA_KEYS = {"plivo": b'"payload":"', "voxology": b'"media":"'}
"""What precedes the base64 audio in a media message (Plivo ``media``, Voxology ``live_track``)."""
PLAY_AUDIO_HEAD = (
    b'{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"'
)
PLAY_AUDIO_TAIL = b'"}}'
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MARKER_B64 = 8  # base64 characters holding the first 6 bytes: the 4 marker bytes


def plivo_answer_xml(port: int) -> str:
    """The Plivo answer URL's document: one bidirectional μ-law stream, then an hour's wait."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Stream bidirectional="true" '
        'contentType="audio/x-mulaw;rate=8000">'
        f'ws://{HOST}:{port}/plivo</Stream><Wait length="3600"/></Response>'
    )


def unmask(payload: bytes, mask: bytes) -> bytes:
    """RFC 6455 §5.3 unmasking, as one big-integer XOR (no per-byte Python loop)."""
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


class StreamServer:
    """The application's side of the JSON wires: every stream the gateway dials lands here.

    A stream is matched to its call by the gateway's call id, which its first message
    carries (Plivo ``start.callId``, Voxology ``init_stream.call_id``) and which the driver
    learns from ``GET /v1.0/calls`` (``expect``); whichever comes second binds them. The
    same port answers Plivo's answer URL (``GET /answer``) with ``answer_xml``.
    """

    def __init__(self, wire: str, samples: Samples, answer_xml: str = "") -> None:
        self.wire = wire
        self.samples = samples
        self.key = MEDIA_KEYS[wire]
        self.echo = wire not in ONE_WAY_WIRES
        self.answer_xml = answer_xml.encode()
        self.unclaimed: dict[str, JsonStreamConn] = {}  # gateway call id -> stream
        self.expected: dict[str, Call] = {}  # gateway call id -> call without its stream
        self.connections = 0
        self.answers = 0
        self.errors: list[str] = []

    def protocol(self) -> JsonStreamConn:
        return JsonStreamConn(self)

    def started(self, conn: JsonStreamConn, call_id: str) -> None:
        call = self.expected.pop(call_id, None)
        if call is None:
            self.unclaimed[call_id] = conn
        else:
            self._bind(call, conn)

    def expect(self, call: Call) -> asyncio.Future[float]:
        """A future set to the stream's start time once ``call``'s stream is known."""
        call.stream_ready = asyncio.get_running_loop().create_future()
        conn = self.unclaimed.pop(call.call_id, None)
        if conn is None:
            self.expected[call.call_id] = call
        else:
            self._bind(call, conn)
        return call.stream_ready

    @staticmethod
    def _bind(call: Call, conn: JsonStreamConn) -> None:
        conn.call = call
        call.ws = conn
        if call.stream_ready is not None and not call.stream_ready.done():
            call.stream_ready.set_result(conn.started_at)


class JsonStreamConn(asyncio.Protocol):
    """One connection to the generator's server: Plivo's answer URL, or a JSON stream.

    A stream's frames come masked (the gateway is the client); they are unmasked whole,
    and a media message is NOT parsed as JSON: the audio is found by its key
    (``MEDIA_KEYS``) and only its first 8 base64 characters are decoded, enough for the
    4 marker bytes. On Plivo the echo is a ``playAudio`` carrying the same base64 string,
    written as bytes around it. Messages without audio (start, init_stream, stop...) are
    parsed, for the call id of the first one.
    """

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.samples = server.samples
        self.key = server.key
        self.key_length = len(server.key)
        self.echo = server.echo
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.call: Call | None = None
        self.call_id = ""
        self.started_at = 0.0
        self.closed = False
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.server.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def _handshake(self, buffer: bytes) -> bytes | None:
        """Answer the HTTP request at the head of ``buffer``; what follows it, or None."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return None
        lines = buffer[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert self.transport is not None
        key = headers.get("sec-websocket-key")
        if key is None or "websocket" not in headers.get("upgrade", "").lower():
            # Plivo's answer URL (GET, so there is no body to read)
            self.server.answers += 1
            body = self.server.answer_xml
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            self.transport.close()
            self.buffer = b""
            return None
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded = True
        return buffer[end + 4 :]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            rest = self._handshake(buffer)
            if rest is None:
                return
            buffer = rest
        position, size = 0, len(buffer)
        while (header := frame_header(buffer, position, size)) is not None:
            opcode, masked, start, length = header
            if masked:
                if size - start < 4 + length:
                    break
                payload = unmask(buffer[start + 4 : start + 4 + length], buffer[start : start + 4])
                start += 4
            else:
                if size - start < length:
                    break
                payload = buffer[start : start + length]
            self._message(opcode, payload)
            position = start + length
        self.buffer = buffer[position:] if position < size else b""

    def _message(self, opcode: int, payload: bytes) -> None:
        now = time.perf_counter()
        if opcode == 1 or opcode == 2:
            self.messages += 1
            at = payload.find(self.key)
            if at < 0:
                self._event(payload, now)
                return
            begin = at + self.key_length
            call = self.call
            if call is not None:
                try:
                    head = binascii.a2b_base64(payload[begin : begin + _MARKER_B64])
                except binascii.Error:
                    head = b""
                tick = read_ulaw_marker(head, 0) if len(head) >= 4 else -1
                if 0 <= tick < call.max_ticks:
                    call.heard_ws[tick] = min(255, call.heard_ws[tick] + 1)
                    slot = tick & (RING - 1)
                    self.samples.to_ws.append(now - call.sent_at[slot])
                    call.echoed_at[slot] = now
            if self.echo:
                end = payload.find(b'"', begin)
                self.send_text(PLAY_AUDIO_HEAD + payload[begin:end] + PLAY_AUDIO_TAIL)
        elif opcode == 8:
            self._control(0x88, payload[:2])
            assert self.transport is not None
            self.transport.close()
        elif opcode == 9:
            self._control(0x8A, payload)

    def _event(self, payload: bytes, now: float) -> None:
        """A message without audio: the first one names the call (start / init_stream)."""
        if self.call_id:
            return
        try:
            message = json.loads(payload)
        except ValueError:
            self.server.errors.append(f"not JSON from the gateway: {payload[:80]!r}")
            return
        start = message.get("start")
        call_id = start.get("callId") if isinstance(start, dict) else message.get("call_id")
        if isinstance(call_id, str) and call_id:
            self.call_id = call_id
            self.started_at = now
            self.server.started(self, call_id)

    def send_text(self, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = bytes((0x81, length))
        else:
            header = bytes((0x81, 126, length >> 8, length & 0xFF))
        assert self.transport is not None
        self.transport.write(header + payload)

    def _control(self, first: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes((first, len(payload))) + payload)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._control(0x88, (1000).to_bytes(2, "big"))


# ---------------------------------------------------------------- SIP and RTP over UDP


class SipClient(asyncio.DatagramProtocol):
    """Hand-built INVITE/ACK/BYE (RFC 3261 §17.1.1, §12) for calls that only ever succeed."""

    def __init__(self, gateway: tuple[str, int], rtp_port: int) -> None:
        self.gateway = gateway
        self.rtp_port = rtp_port
        self.transport: asyncio.DatagramTransport | None = None
        self.calls: dict[str, Call] = {}
        self.port = 0
        self.failures: list[str] = []
        self.byes_received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass
        self.port = self.transport.get_extra_info("sockname")[1]

    def _send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), self.gateway)

    def _headers(self, call: Call, method: str, cseq: int, branch: str, to_tag: bool) -> str:
        to = f"<sip:bench@{self.gateway[0]}:{self.gateway[1]}>"
        if to_tag and call.to_tag:
            to += f";tag={call.to_tag}"
        return (
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:loadgen@{HOST}:{self.port}>;tag={call.from_tag}\r\n"
            f"To: {to}\r\nCall-ID: {call.sip_call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:loadgen@{HOST}:{self.port}>\r\n"
        )

    def invite(self, call: Call, user: str) -> None:
        sdp = (
            f"v=0\r\no=- {call.index} 1 IN IP4 {HOST}\r\ns=bench\r\nc=IN IP4 {HOST}\r\n"
            f"t=0 0\r\nm=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=ptime:20\r\na=sendrecv\r\n"
        )
        self.calls[call.sip_call_id] = call
        head = self._headers(call, "INVITE", 1, call.from_tag + "i", False)
        head = head.replace("sip:bench@", f"sip:{user}@")
        self._send(
            f"INVITE sip:{user}@{self.gateway[0]}:{self.gateway[1]} SIP/2.0\r\n{head}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        )

    def bye(self, call: Call) -> None:
        head = self._headers(call, "BYE", 2, call.from_tag + "b", True)
        self._send(f"BYE sip:callstream@{self.gateway[0]}:{self.gateway[1]} SIP/2.0\r\n{head}\r\n")

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        call = self.calls.get(headers.get("call-id", ""))
        if call is None:
            return
        if not lines[0].startswith("SIP/2.0"):
            self._answer_request(lines[0], headers, call)
            return
        status = int(lines[0].split()[1])
        if not headers.get("cseq", "").endswith("INVITE") or status < 200:
            return
        if status >= 300:
            self.failures.append(lines[0])
            if call.answered is not None and not call.answered.done():
                call.answered.set_exception(ConnectionError(lines[0]))
            return
        call.to_tag = headers.get("to", "").partition("tag=")[2].split(";")[0]
        ack = self._headers(call, "ACK", 1, call.from_tag + "a", True)
        self._send(f"ACK sip:callstream@{self.gateway[0]}:{self.gateway[1]} SIP/2.0\r\n{ack}\r\n")
        if call.answered is None or call.answered.done():
            return  # a retransmitted 200: ACKed again
        call.setup_s = time.perf_counter() - call.invite_at
        for line in body.decode(errors="replace").split("\r\n"):
            if line.startswith("m=audio "):
                call.gateway_rtp = (self.gateway[0], int(line.split()[1]))
        call.answered.set_result(None)

    def _answer_request(self, request_line: str, headers: dict[str, str], call: Call) -> None:
        if request_line.startswith("BYE"):
            self.byes_received += 1
            call.media_on = False
        if request_line.startswith("ACK"):
            return
        reply = (
            f"SIP/2.0 200 OK\r\nVia: {headers.get('via', '')}\r\nFrom: {headers.get('from', '')}"
            f"\r\nTo: {headers.get('to', '')}\r\nCall-ID: {headers.get('call-id', '')}\r\n"
            f"CSeq: {headers.get('cseq', '')}\r\nContent-Length: 0\r\n\r\n"
        )
        self._send(reply)


class RtpHub(asyncio.DatagramProtocol):
    """One UDP socket for every call's RTP: marked frames out, echoed frames in."""

    def __init__(self, samples: Samples) -> None:
        self.samples = samples
        self.shared_sent: array.array[float] | None = None  # conference: the speaker's times
        self.by_source: dict[tuple[str, int], Call] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        call = self.by_source.get(addr)
        if call is None or len(data) < 16 or data[12] != MAGIC:
            return
        tick = (data[13] * 127 + data[14]) * 127 + data[15]
        if tick < call.max_ticks:
            call.heard_rtp[tick] = min(255, call.heard_rtp[tick] + 1)
            since = call.echoed_at if self.shared_sent is None else self.shared_sent
            self.samples.to_rtp.append(time.perf_counter() - since[tick & (RING - 1)])

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable after a call ends: nothing to do


class MediaClock:
    """The generator's 20 ms clock: each phase sends one marked frame for its share of calls."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, hub: RtpHub, send_phases: int = SEND_PHASES
    ) -> None:
        if not 1 <= send_phases <= MAX_SEND_PHASES:
            raise ValueError(f"send phases must be 1..{MAX_SEND_PHASES}, not {send_phases}")
        self.loop = loop
        self.hub = hub
        self.send_phases = send_phases
        self.phases: list[list[Call]] = [[] for _ in range(send_phases)]
        self.tick = 0
        self.start = 0.0
        self.late_max_s = 0.0
        self.handle: asyncio.TimerHandle | None = None
        self._step = 0
        self.shared_sent: array.array[float] = array.array("d", bytes(8 * RING))
        """When the tick's marked frame was sent by whoever spoke (conference mode)."""
        self.speaker: Call | None = None
        self.next_speaker: Call | None = None
        """Conference mode: who speaks from the next tick on. The change is made at a tick's
        first phase, so every tick has exactly one marked frame (a change between two
        phases would leave a tick with none or two: not a loss of the gateway's)."""
        self.switch_ticks: list[int] = []
        """The ticks at which the speaker changed (conference mode)."""

    def add(self, call: Call) -> None:
        assert call.gateway_rtp is not None
        self.hub.by_source[call.gateway_rtp] = call
        call.media_on = True
        self.phases[call.index % self.send_phases].append(call)

    def begin(self) -> None:
        self.start = self.loop.time()
        self.handle = self.loop.call_at(self.start, self._run)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()

    def _run(self) -> None:
        step = self._step
        send_phases = self.send_phases
        deadline = self.start + step * FRAME_S / send_phases
        late = self.loop.time() - deadline
        if late > self.late_max_s:
            self.late_max_s = late
        phase = step % send_phases
        tick = step // send_phases
        self.tick = tick
        if phase == 0 and self.next_speaker is not None:
            if self.speaker is not None:
                self.speaker.speaking = False
            self.speaker, self.next_speaker = self.next_speaker, None
            self.speaker.speaking = True
            self.switch_ticks.append(tick)
        mark = marker(tick) + FILLER
        silence = SILENCE_ULAW
        sendto = self.hub.transport.sendto  # type: ignore[union-attr]
        pack = _RTP_HEADER.pack
        clock = time.perf_counter
        slot = tick & (RING - 1)
        for call in self.phases[phase]:
            if not call.media_on:
                continue
            call.sequence = (call.sequence + 1) & 0xFFFF
            header = pack(0x80, 0, call.sequence, (tick * 160) & 0xFFFFFFFF, call.ssrc)
            if call.first_tick < 0:
                call.first_tick = tick
            if call.speaking:
                call.sent_at[slot] = self.shared_sent[slot] = clock()
                sendto(header + mark, call.gateway_rtp)
            else:
                sendto(header + silence, call.gateway_rtp)
        self._step = step + 1
        self.handle = self.loop.call_at(deadline + FRAME_S / send_phases, self._run)


_RTP_HEADER = struct.Struct(">BBHII")


# ---------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def busy_seconds_per_core() -> list[float]:
    """Busy time of each core since boot (/proc/stat: all but idle and iowait)."""
    cores = []
    with open("/proc/stat") as file:
        for line in file:
            if line.startswith("cpu") and line[3].isdigit():
                ticks = [int(v) for v in line.split()[1:]]
                cores.append((sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK)
    return cores


def steal_seconds_per_core() -> list[float]:
    """Time the hypervisor gave each core's turn to another guest, since boot (/proc/stat's
    steal column): on a shared VM it is neither ours nor another process's."""
    cores = []
    with open("/proc/stat") as file:
        for line in file:
            if line.startswith("cpu") and line[3].isdigit():
                fields = line.split()
                cores.append(int(fields[8]) / CLK_TCK if len(fields) > 8 else 0.0)
    return cores


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentiles_ms(values: array.array[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "p999": None, "max": None, "count": 0}
    data = np.frombuffer(values, dtype=np.float64) * 1000.0
    p50, p99, p999 = np.percentile(data, [50, 99, 99.9])
    return {
        "p50": round(float(p50), 3),
        "p99": round(float(p99), 3),
        "p999": round(float(p999), 3),
        "max": round(float(data.max()), 3),
        "count": int(data.size),
    }


@dataclass
class LoadPlan:
    """What one generator run does; see bench/run.py for the command line."""

    gateway_pid: int
    sip_port: int
    http_port: int
    token: str
    wire: str = "rtp"
    steps: tuple[int, ...] = (50, 100)
    hold_s: float = 20.0
    warmup_s: float = 3.0
    setup_rate: float = 50.0
    conference: bool = False
    route: str = "bench"
    stream_port: int = 0
    """JSON wires: the generator's WebSocket server (and Plivo answer URL) port."""
    ws_p99_target_ms: float = 5.0
    rtp_p99_target_ms: float = 40.0
    conference_p99_target_ms: float = 20.0
    """Conference mode: added latency both ways (issue 6: 50 parties with <= 20 ms added)."""
    send_phases: int = SEND_PHASES
    """How many bursts the generator sends each 20 ms in (see the module docs)."""
    extra: dict[str, Any] = field(default_factory=dict)


def plan_from_json(text: str) -> LoadPlan:
    data = json.loads(text)
    data["steps"] = tuple(data["steps"])
    return LoadPlan(**data)


def new_call(index: int, max_ticks: int) -> Call:
    return Call(
        index=index,
        sip_call_id=uuid.uuid4().hex,
        from_tag=os.urandom(4).hex(),
        ssrc=int.from_bytes(os.urandom(4), "big"),
        max_ticks=max_ticks,
    )


def bind_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock
