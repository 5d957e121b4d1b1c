"""SDP (RFC 8866, formerly 4566) and the offer/answer model (RFC 3264) for G.711 audio.

- ``SessionDescription.parse(bytes | str)`` and ``serialize() -> bytes`` (CRLF, lines in
  the RFC 8866 §5 order). Unknown attributes and line types are kept, not rejected.
- ``build_offer(...)`` for our INVITEs, ``negotiate(remote)`` to pick the codec and the
  remote RTP address from an offer or an answer, ``build_answer(offer, negotiated, ...)``.

Errors are ``SdpError``: ``bad SDP: ...`` (status 400) for malformed input, exact
messages listed on ``SessionDescription.parse``; ``no acceptable codec ...`` (status 488)
from ``negotiate``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from callstream.errors import SdpError
from callstream.sip._grammar import is_digits

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "MediaDescription",
    "NegotiatedMedia",
    "SessionDescription",
    "build_answer",
    "build_offer",
    "negotiate",
]

# RFC 3551 §6 static payload types we may meet: pt -> (encoding, clock rate).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    18: ("G729", 8000),
}
_STATIC_BY_NAME = {name: (name, rate) for name, rate in STATIC_PAYLOAD_TYPES.values()}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")  # RFC 8866 §6.7
_TELEPHONE_EVENT = ("telephone-event", 8000)  # RFC 4733 §7.1.1
_DEFAULT_PTIME_MS = 20
# RFC 3264 §6.1: (offered direction, wished direction) -> answered direction, derived
# from (we send, we receive) = (offer receives and we wish to send, offer sends and we
# wish to receive).
_SENDS = {"sendrecv": True, "sendonly": True, "recvonly": False, "inactive": False}
_RECEIVES = {"sendrecv": True, "sendonly": False, "recvonly": True, "inactive": False}
_BY_FLAGS = {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}

# <type>=<value> ; type = one lower-case letter (RFC 8866 §5)
_LINE_RE = re.compile(r"([a-z])=(.*)")
_RTPMAP_RE = re.compile(r"([0-9]{1,3})\s+([^/\s]+)/([0-9]+)(?:/[0-9]+)?")


def _answer_direction(offered: str, wished: str) -> str:
    we_send = _RECEIVES[offered] and _SENDS[wished]
    we_receive = _SENDS[offered] and _RECEIVES[wished]
    return _BY_FLAGS.get((we_send, we_receive), "inactive")


def _address_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _find_attribute(attributes: list[tuple[str, str | None]], name: str) -> tuple[bool, str | None]:
    for attribute_name, value in attributes:
        if attribute_name == name:
            return True, value
    return False, None


def _direction_attribute(attributes: list[tuple[str, str | None]]) -> str | None:
    for name, _ in attributes:
        if name in _SENDS:
            return name
    return None


def _format_attributes(attributes: list[tuple[str, str | None]]) -> list[str]:
    return [f"a={name}" if value is None else f"a={name}:{value}" for name, value in attributes]


@dataclass
class MediaDescription:
    """One ``m=`` section (RFC 8866 §5.14) with its ``c=``, other lines and attributes.

    ``formats`` holds RTP payload types; for non-RTP protocols (``m=image 0 udptl t38``)
    it is empty and the tokens are in ``other_formats``. ``extra_lines`` keeps ``i=``,
    ``b=``, ``k=`` and unknown lines as (type, value), in order.
    """

    media: str
    port: int
    proto: str
    formats: list[int] = field(default_factory=list)
    connection_address: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None
    other_formats: list[str] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (None when absent or a flag)."""
        return _find_attribute(self.attributes, name)[1]

    def has_attribute(self, name: str) -> bool:
        """Whether an ``a=name`` or ``a=name:value`` line is present."""
        return _find_attribute(self.attributes, name)[0]

    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """pt -> (encoding, clock rate) from ``a=rtpmap`` (RFC 8866 §6.6), with the RFC 3551
        static types filled in for listed formats that have no rtpmap; bad lines skipped."""
        mapping: dict[int, tuple[str, int]] = {}
        for name, value in self.attributes:
            if name == "rtpmap" and value is not None:
                match = _RTPMAP_RE.fullmatch(value.strip())
                if match is not None:
                    mapping[int(match.group(1))] = (match.group(2), int(match.group(3)))
        for pt in self.formats:
            if pt not in mapping and pt in STATIC_PAYLOAD_TYPES:
                mapping[pt] = STATIC_PAYLOAD_TYPES[pt]
        return mapping

    def fmtp(self, pt: int) -> str | None:
        """The format parameters of payload type ``pt`` (RFC 8866 §6.15), or None."""
        prefix = f"{pt} "
        for name, value in self.attributes:
            if name == "fmtp" and value is not None and value.startswith(prefix):
                return value[len(prefix) :].strip()
        return None

    @property
    def direction(self) -> str:
        """This section's own direction attribute, default sendrecv (RFC 3264 §5.1).

        Use ``SessionDescription.direction_of(media)`` to honour a session-level one.
        """
        return _direction_attribute(self.attributes) or "sendrecv"

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 8866 §6.4), or None."""
        value = self.attribute("ptime")
        try:
            return int(float(value)) if value else None
        except ValueError:
            return None

    def _lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        tokens = [str(pt) for pt in self.formats] or self.other_formats
        lines = [f"m={self.media} {port} {self.proto} {' '.join(tokens)}".rstrip()]
        lines += [f"{kind}={value}" for kind, value in self.extra_lines if kind == "i"]
        if self.connection_address is not None:
            address = self.connection_address
            lines.append(f"c=IN {_address_type(address)} {address}")
        lines += [f"{kind}={value}" for kind, value in self.extra_lines if kind != "i"]
        return lines + _format_attributes(self.attributes)


@dataclass
class SessionDescription:
    """A session description (RFC 8866 §5): origin, name, connection, time, media, attributes.

    ``extra_lines`` keeps the other session-level lines (``i u e p b r z k`` and unknown
    types) as (type, value) in order; they are written back in the RFC 8866 §5 order.
    """

    origin_username: str = "-"
    session_id: int = 0
    session_version: int = 0
    origin_address: str = "0.0.0.0"
    session_name: str = "-"
    connection_address: str | None = None
    time: tuple[int, int] = (0, 0)
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    version: int = 0
    extra_lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; ``\\n`` or ``\\r\\n`` line ends; unknown and blank lines tolerated.

        Raises SdpError (status 400): ``bad SDP: not UTF-8``, ``bad SDP: empty``,
        ``bad SDP: line 1 must be v=0``, ``bad SDP: line N is not type=value``,
        ``bad SDP: line N bad origin``, ``bad SDP: line N bad connection``,
        ``bad SDP: line N bad time``, ``bad SDP: line N bad media``,
        ``bad SDP: missing o= line``.
        """
        text = _decode(data)
        lines = [line.rstrip("\r") for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            raise SdpError("bad SDP: empty")
        if lines[0].strip() != "v=0":
            raise SdpError("bad SDP: line 1 must be v=0")
        session = cls()
        seen: set[str] = set()
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue  # blank lines are invalid but harmless; peers do send them
            match = _LINE_RE.fullmatch(line)
            if match is None:
                raise SdpError(f"bad SDP: line {number} is not type=value")
            kind, value = match.groups()
            session._parse_line(kind, value, number, first=kind not in seen)
            seen.add(kind)
        if "o" not in seen:
            raise SdpError("bad SDP: missing o= line")
        return session

    def _parse_line(self, kind: str, value: str, number: int, *, first: bool) -> None:
        current = self.media[-1] if self.media else None
        if kind == "m":
            self.media.append(_parse_media(value, number))
        elif kind == "a":
            name, colon, attribute_value = value.partition(":")
            target = current.attributes if current is not None else self.attributes
            target.append((name, attribute_value if colon else None))
        elif kind == "c":
            address = _parse_connection(value, number)
            if current is not None:
                current.connection_address = address
            else:
                self.connection_address = address
        elif current is not None:
            current.extra_lines.append((kind, value))
        elif kind == "o" and first:
            self._parse_origin(value, number)
        elif kind == "s" and first:
            self.session_name = value
        elif kind == "t" and first:
            self.time = _parse_time(value, number)
        else:
            self.extra_lines.append((kind, value))

    def _parse_origin(self, value: str, number: int) -> None:
        # o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
        parts = value.split()
        if len(parts) != 6 or not is_digits(parts[1]) or not is_digits(parts[2]):
            raise SdpError(f"bad SDP: line {number} bad origin")
        self.origin_username = parts[0]
        self.session_id = int(parts[1])
        self.session_version = int(parts[2])
        self.origin_address = parts[5]

    def serialize(self) -> bytes:
        """The body: CRLF line ends, the RFC 8866 §5 line order (v o s i u e p c b t r z k a m)."""
        address = self.origin_address
        lines = [
            f"v={self.version}",
            f"o={self.origin_username} {self.session_id} {self.session_version} "
            f"IN {_address_type(address)} {address}",
            f"s={self.session_name}",
        ]
        lines += self._extra("iuep")
        if self.connection_address is not None:
            lines.append(f"c=IN {_address_type(self.connection_address)} {self.connection_address}")
        lines += self._extra("b")
        lines.append(f"t={self.time[0]} {self.time[1]}")
        lines += self._extra("rzk")
        lines += self._extra(None)
        lines += _format_attributes(self.attributes)
        for media in self.media:
            lines += media._lines()
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def _extra(self, kinds: str | None) -> list[str]:
        known = "iuepbrzk"
        return [
            f"{kind}={value}"
            for kind, value in self.extra_lines
            if (kind in kinds if kinds is not None else kind not in known)
        ]

    def direction_of(self, media: MediaDescription) -> str:
        """The media's direction: its own attribute, else the session's, else sendrecv."""
        return (
            _direction_attribute(media.attributes)
            or _direction_attribute(self.attributes)
            or "sendrecv"
        )

    def address_of(self, media: MediaDescription) -> str | None:
        """The media's connection address: its own ``c=``, else the session's."""
        return media.connection_address or self.connection_address


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("bad SDP: not UTF-8") from None


def _parse_connection(value: str, number: int) -> str:
    # c=<nettype> <addrtype> <connection-address>  (multicast /ttl/count suffixes dropped)
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad SDP: line {number} bad connection")
    return parts[2].split("/", 1)[0]


def _parse_time(value: str, number: int) -> tuple[int, int]:
    parts = value.split()
    if len(parts) != 2 or not all(is_digits(part) for part in parts):
        raise SdpError(f"bad SDP: line {number} bad time")
    return int(parts[0]), int(parts[1])


def _parse_media(value: str, number: int) -> MediaDescription:
    # m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad SDP: line {number} bad media")
    port_text, _, count_text = parts[1].partition("/")
    if (
        not is_digits(port_text)
        or int(port_text) > 65535
        or (count_text and not is_digits(count_text))
    ):
        raise SdpError(f"bad SDP: line {number} bad media")
    media = MediaDescription(parts[0], int(port_text), parts[2])
    media.port_count = int(count_text) if count_text else None
    if "RTP" in parts[2].upper():
        if not all(is_digits(token) and int(token) < 128 for token in parts[3:]):
            raise SdpError(f"bad SDP: line {number} bad media")
        media.formats = [int(token) for token in parts[3:]]
    else:
        media.other_formats = parts[3:]
    return media


@dataclass(frozen=True)
class NegotiatedMedia:
    """The outcome of ``negotiate``: where to send RTP and how (RFC 3264 §5, §6).

    ``payload_type`` is the remote's number for the chosen codec; ``encoding`` names it
    (``"PCMU"`` or ``"PCMA"``); ``media_index`` is the chosen ``m=`` line's position.
    """

    remote_address: str
    remote_port: int
    payload_type: int
    telephone_event_pt: int | None
    direction: str
    ptime_ms: int
    encoding: str = "PCMU"
    media_index: int = 0

    @property
    def on_hold(self) -> bool:
        """Whether the remote holds us: sendonly/inactive, or c=0.0.0.0 (RFC 3264 §8.4)."""
        return self.direction in ("sendonly", "inactive") or self.remote_address == "0.0.0.0"


def _codec_of(pt: int, rtpmap: dict[int, tuple[str, int]]) -> int | None:
    """The static payload type whose codec ``pt`` carries (PCMU=0, PCMA=8), by rtpmap name."""
    encoding = rtpmap.get(pt)
    if encoding is None:
        return None
    name, clock_rate = encoding
    for static_pt, (static_name, static_rate) in STATIC_PAYLOAD_TYPES.items():
        if name.upper() == static_name and clock_rate == static_rate:
            return static_pt
    return None


def _telephone_event_pt(rtpmap: dict[int, tuple[str, int]]) -> int | None:
    for pt, (name, clock_rate) in rtpmap.items():
        if (name.lower(), clock_rate) == _TELEPHONE_EVENT:
            return pt
    return None


def negotiate(remote: SessionDescription, supported: Sequence[int] = (0, 8)) -> NegotiatedMedia:
    """Choose the first usable audio stream and codec of ``remote`` (RFC 3264 §6.1, §7).

    The first ``m=audio`` line with a nonzero port and an RTP/AVP(F) profile whose formats
    include a codec of ``supported`` (static numbers; matched by number or rtpmap name)
    wins, in the remote's preference order. Raises ``SdpError("no acceptable codec in
    audio offer", status=488)``, ``SdpError("no acceptable codec: no audio stream",
    status=488)`` or ``SdpError("bad SDP: no connection address")``.
    """
    found_audio = False
    for index, media in enumerate(remote.media):
        if media.media != "audio" or media.port == 0 or media.proto not in ("RTP/AVP", "RTP/AVPF"):
            continue
        found_audio = True
        rtpmap = media.rtpmap()
        for pt in media.formats:
            codec = _codec_of(pt, rtpmap)
            if codec is None or codec not in supported:
                continue
            address = remote.address_of(media)
            if address is None:
                raise SdpError("bad SDP: no connection address")
            ptime = media.ptime or _session_ptime(remote) or _DEFAULT_PTIME_MS
            return NegotiatedMedia(
                remote_address=address,
                remote_port=media.port,
                payload_type=pt,
                telephone_event_pt=_telephone_event_pt(rtpmap),
                direction=remote.direction_of(media),
                ptime_ms=ptime,
                encoding=STATIC_PAYLOAD_TYPES[codec][0],
                media_index=index,
            )
    if found_audio:
        raise SdpError("no acceptable codec in audio offer", status=488)
    raise SdpError("no acceptable codec: no audio stream", status=488)


def _session_ptime(session: SessionDescription) -> int | None:
    value = _find_attribute(session.attributes, "ptime")[1]
    return int(value) if value is not None and is_digits(value) else None


def _audio_section(
    port: int,
    payload_types: Sequence[int],
    encodings: dict[int, tuple[str, int]],
    telephone_event: tuple[int, str] | None,
    ptime_ms: int,
    direction: str,
) -> MediaDescription:
    media = MediaDescription("audio", port, "RTP/AVP", list(payload_types))
    for pt in payload_types:
        name, clock_rate = encodings[pt]
        media.attributes.append(("rtpmap", f"{pt} {name}/{clock_rate}"))
    if telephone_event is not None:
        pt, events = telephone_event
        media.formats.append(pt)
        media.attributes.append(("rtpmap", f"{pt} telephone-event/8000"))
        media.attributes.append(("fmtp", f"{pt} {events}"))
    media.attributes.append(("ptime", str(ptime_ms)))
    media.attributes.append((direction, None))
    return media


def build_offer(
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int,
    payload_types: Sequence[int] = (0, 8),
    telephone_event_pt: int | None = 101,
    direction: str = "sendrecv",
    ptime_ms: int = 20,
) -> SessionDescription:
    """An audio offer (RFC 3264 §5): G.711 in the given order, RFC 4733 events 0-16."""
    if direction not in _SENDS:
        raise ValueError(f"bad direction: {direction}")
    events = None if telephone_event_pt is None else (telephone_event_pt, "0-16")
    audio = _audio_section(port, payload_types, STATIC_PAYLOAD_TYPES, events, ptime_ms, direction)
    return SessionDescription(
        session_id=session_id,
        session_version=session_version,
        origin_address=address,
        session_name="callstream",
        connection_address=address,
        media=[audio],
    )


def build_answer(
    offer: SessionDescription,
    negotiated: NegotiatedMedia,
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int,
    direction: str | None = None,
) -> SessionDescription:
    """The answer to ``offer`` (RFC 3264 §6): one ``m=`` line per offered one, in order.

    The negotiated line carries the chosen codec and, when offered, telephone-event with
    the offerer's numbers; every other line is rejected with port 0. The direction is the
    offered one reversed and intersected with ``direction`` (default sendrecv, §6.1).
    """
    wished = direction or "sendrecv"
    if wished not in _SENDS:
        raise ValueError(f"bad direction: {wished}")
    answer = SessionDescription(
        session_id=session_id,
        session_version=session_version,
        origin_address=address,
        session_name="callstream",
        connection_address=address,
    )
    for index, offered in enumerate(offer.media):
        if index != negotiated.media_index:
            formats = list(offered.formats)
            rejected = MediaDescription(offered.media, 0, offered.proto, formats)
            rejected.other_formats = list(offered.other_formats)
            answer.media.append(rejected)
            continue
        pt = negotiated.payload_type
        events = None
        if negotiated.telephone_event_pt is not None:
            te_pt = negotiated.telephone_event_pt
            events = (te_pt, offered.fmtp(te_pt) or "0-15")
        answered = _answer_direction(offer.direction_of(offered), wished)
        encodings = {pt: _STATIC_BY_NAME[negotiated.encoding]}
        answer.media.append(
            _audio_section(port, [pt], encodings, events, negotiated.ptime_ms, answered)
        )
    return answer
