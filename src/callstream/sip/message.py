"""SIP messages (RFC 3261 §7, §20, §25): parse and serialise requests and responses.

API CONTRACT (implemented by the SIP-syntax work; other modules code against it):

- ``Headers``: an ordered multimap of header fields. Names are stored in canonical
  form (``Call-ID``, ``CSeq``, ``Via``, ``WWW-Authenticate`` ...); compact forms
  (``i``, ``m``, ``v``, ``f``, ``t``, ``l``, ``c``, ``k``, ``s``, ``e``, ``o``, ``r``, ``u``)
  are expanded on parse. Lookups are case-insensitive and accept compact names.
  - ``get(name) -> str | None``: first value.
  - ``get_all(name) -> list[str]``: every value, with comma-separated lists split for
    the headers that allow it (Via, Route, Record-Route, Contact, Allow, Supported,
    Require, Accept...), never splitting inside quotes or <...>.
  - ``add(name, value)``, ``set(name, value)`` (replace all), ``remove(name)``,
    ``__contains__``, ``__iter__`` over (name, value) pairs, ``copy()``.
- ``SipRequest(method, uri, headers, body=b"")`` and
  ``SipResponse(status, reason, headers, body=b"")``: mutable dataclasses with
  ``serialize() -> bytes`` that always writes a correct Content-Length.
  Convenience read-only properties on both (via ``SipMessage`` base):
  ``call_id``, ``cseq -> tuple[int, str]``, ``from_tag``, ``to_tag``,
  ``top_via -> Via``, ``branch`` (top Via branch), ``content_type``.
- ``Via``: dataclass (transport, host, port | None, params: dict[str, str | None])
  with ``parse(text)``, ``__str__``, properties ``branch``, ``received``, ``rport``.
- ``parse_message(data: bytes) -> SipRequest | SipResponse``. Raises
  ``SipParseError`` with a precise message (used as the 400 reason phrase) for:
  bad start line, unknown SIP version, missing mandatory header (Via, From, To,
  Call-ID, CSeq; Max-Forwards is tolerated), bad CSeq, CSeq method mismatch,
  bad Content-Length, body shorter than Content-Length, header line without colon,
  non-UTF-8 headers. Header folding (continuation lines) is unfolded. Over UDP a
  missing Content-Length means the body runs to the end of the datagram.
- ``SipStreamParser``: TCP framing. ``feed(data: bytes) -> list[SipRequest | SipResponse]``;
  skips CRLF keep-alives; requires Content-Length on a stream; raises SipParseError
  on a malformed message (the connection should then be closed).
- ``response_for(request, status, reason=None, *, to_tag=None, body=b"",
  content_type=None) -> SipResponse``: builds a response per §8.2.6: copies Via
  (all), From, To (adding to_tag if given and To has none), Call-ID, CSeq; default
  reason phrases from ``REASON_PHRASES``.
- ``REASON_PHRASES: dict[int, str]`` for the usual codes.
- ``new_branch() -> str`` ("z9hG4bK" + random), ``new_tag() -> str``, ``new_call_id(host) -> str``.

DETAILS THE CONTRACT LEAVES OPEN, AS IMPLEMENTED:

- Serialisation writes ``Name: value\\r\\n`` per field in insertion order. Content-Length
  is rewritten in place (duplicates dropped) or appended last when absent.
- ``Headers.add``/``set`` raise ``ValueError`` for a value containing CR or LF (header
  injection is a programming error, not a wire error).
- The convenience properties raise ``SipParseError("missing <Name> header")`` when the
  header is absent (parsed messages always have them); ``cseq`` raises
  ``SipParseError("bad CSeq header")``, ``top_via`` ``SipParseError("bad Via header")``.
  ``from_tag``/``to_tag`` are ``None`` when there is no tag. ``content_type`` is the
  lower-cased media type without parameters (``"application/sdp"``) or ``None``.
- ``Via.host`` keeps IPv6 addresses without brackets (``__str__`` adds them back);
  ``Via.params`` has lower-cased names; ``Via.rport`` is the port number when the
  parameter has one, else ``None`` — test presence with ``"rport" in via.params``.
- Errors: a message that is not a response (does not start with ``SIP/``) fails with
  ``SipRequestParseError``; its ``partial`` is the request as far as parsed when the
  request line, the top Via, From, To, Call-ID and CSeq were all readable (enough to
  address a 400 with ``response_for``), else ``None``. A malformed response raises plain
  ``SipParseError`` (responses are never answered). Messages, in checking order:

  ===========================================  ===========
  message                                      ``partial``
  ===========================================  ===========
  ``headers are not valid UTF-8``              None
  ``bare CR in header section``                None
  ``bad request line``                         None
  ``bad method``                               None
  ``bad Request-URI``                          None
  ``bad status line``                          (response)
  ``bad status code``                          (response)
  ``unsupported SIP version: <version>``       None
  ``header line without colon``                set if the mandatory headers were read
  ``bad header name``                          set if the mandatory headers were read
  ``continuation line without a header``       set if the mandatory headers were read
  ``missing <Via|From|To|Call-ID|CSeq> header``  None
  ``bad Via header``                           None
  ``bad CSeq header``                          set
  ``CSeq method does not match request method``  set
  ``bad Content-Length``                       set
  ``body shorter than Content-Length``         set
  ===========================================  ===========

  ``SipStreamParser`` adds ``missing Content-Length on a stream`` and
  ``message too long``, and reports an unreadable Content-Length found while framing
  as ``bad Content-Length``; these three are plain ``SipParseError`` (no partial).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from callstream.errors import SipParseError
from callstream.sip._grammar import (
    CSEQ_RE,
    DIGITS_RE,
    REQUEST_URI_RE,
    SIP_VERSION_RE,
    STATUS_LINE_RE,
    TOKEN_RE,
    VIA_RE,
    format_params,
    is_digits,
    name_addr_split,
    parse_params,
    split_outside,
)

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipRequestParseError",
    "SipResponse",
    "SipStreamParser",
    "Via",
    "canonical_name",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "response_for",
]

# RFC 3261 §7.3.3 and §20, plus the compact forms registered since (RFC 3515, 3265, 4028, 3892).
_COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "v": "Via",
    "f": "From",
    "t": "To",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "b": "Referred-By",
}

_KNOWN_NAMES = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Diversion", "Error-Info", "Event", "Expires", "From",
    "History-Info", "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Remote-Party-ID", "Reply-To", "Require",
    "Retry-After", "Route", "RSeq", "Server", "Session-Expires", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate",
)  # fmt: skip
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}
_CANONICAL.update(_COMPACT_FORMS)
_KEYS: dict[str, str] = {short: long.lower() for short, long in _COMPACT_FORMS.items()}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): get_all() splits them.
# WWW-Authenticate & co. are absent on purpose: their commas separate auth-params.
_LIST_KEYS = frozenset(
    (
        "accept", "accept-encoding", "accept-language", "alert-info", "allow", "allow-events",
        "call-info", "contact", "content-encoding", "content-language", "diversion",
        "error-info", "history-info", "in-reply-to", "p-asserted-identity", "proxy-require",
        "reason", "record-route", "require", "route", "supported", "unsupported", "via",
        "warning",
    )
)  # fmt: skip

_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; compact forms expanded, unknown names kept."""
    return _CANONICAL.get(name.lower(), name)


def _key(name: str) -> str:
    lower = name.lower()
    return _KEYS.get(lower, lower)


class Headers:
    """An ordered multimap of SIP header fields (RFC 3261 §7.3).

    Names are stored canonically; lookups are case-insensitive and accept compact forms.
    """

    __slots__ = ("_fields",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []  # (lookup key, name, value)
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_fields(cls, fields: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._fields = fields
        return headers

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or ``None``."""
        key = _key(name)
        for field_key, _, value in self._fields:
            if field_key == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; list-valued headers split on top-level commas."""
        key = _key(name)
        values = [value for field_key, _, value in self._fields if field_key == key]
        if key not in _LIST_KEYS:
            return values
        return [item for value in values for item in split_outside(value, ",")]

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        _check_value(value)
        self._fields.append((_key(name), canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one, where the first one was (else last)."""
        _check_value(value)
        key = _key(name)
        entry = (key, canonical_name(name), value)
        fields: list[tuple[str, str, str]] = []
        placed = False
        for existing in self._fields:
            if existing[0] != key:
                fields.append(existing)
            elif not placed:
                fields.append(entry)
                placed = True
        if not placed:
            fields.append(entry)
        self._fields = fields

    def remove(self, name: str) -> None:
        """Remove every field called ``name`` (no error when there is none)."""
        key = _key(name)
        self._fields = [entry for entry in self._fields if entry[0] != key]

    def copy(self) -> Headers:
        """A shallow copy (values are strings, so it is independent)."""
        return Headers._from_fields(list(self._fields))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(entry[0] == key for entry in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


def _check_value(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError("header value contains CR or LF")


@dataclass
class Via:
    """One via-parm of a Via header (RFC 3261 §20.42, §18.2.2; RFC 3581 rport).

    ``host`` keeps IPv6 addresses without brackets; ``params`` names are lower-case.
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse ``SIP/2.0/UDP host:port;branch=...``; raises SipParseError("bad Via header")."""
        match = VIA_RE.fullmatch(text.strip())
        if match is None:
            raise SipParseError("bad Via header")
        transport, host, port_text, params_text = match.groups()
        port = int(port_text) if port_text else None
        if port is not None and port > 65535:
            raise SipParseError("bad Via header")
        if host.startswith("["):
            host = host[1:-1]
        return cls(transport.upper(), host, port, parse_params(params_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        """The branch parameter (§8.1.1.7), or None."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The received parameter (§18.2.1), or None."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value (RFC 3581 §4) when it has one; presence: ``"rport" in params``."""
        value = self.params.get("rport")
        if value is None or not is_digits(value):
            return None
        return int(value)

    @property
    def sent_by(self) -> tuple[str, int]:
        """(host, port), the port defaulting to 5061 for TLS and 5060 otherwise (§18.2.2)."""
        if self.port is not None:
            return self.host, self.port
        return self.host, 5061 if self.transport == "TLS" else 5060


class SipMessage:
    """What requests and responses share: headers, body and header shortcuts (RFC 3261 §8.1.1)."""

    headers: Headers
    body: bytes

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID (§20.8)."""
        return self._required("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method) from CSeq (§20.16)."""
        return _parse_cseq(self._required("CSeq"))

    @property
    def from_tag(self) -> str | None:
        """The tag parameter of From (§19.3), or None."""
        return _header_tag(self._required("From"))

    @property
    def to_tag(self) -> str | None:
        """The tag parameter of To (§19.3), or None."""
        return _header_tag(self._required("To"))

    @property
    def top_via(self) -> Via:
        """The first via-parm (§18.2.2)."""
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipParseError("missing Via header")
        return Via.parse(vias[0])

    @property
    def branch(self) -> str | None:
        """The branch of the top Via (§17.1.3, §17.2.3)."""
        return self.top_via.branch

    @property
    def content_type(self) -> str | None:
        """The media type of Content-Type, lower-cased, without parameters (§20.15)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()


def _parse_cseq(value: str) -> tuple[int, str]:
    match = CSEQ_RE.fullmatch(value.strip())
    if match is None or int(match.group(1)) >= 2**31:
        raise SipParseError("bad CSeq header")
    return int(match.group(1)), match.group(2)


def _header_tag(value: str) -> str | None:
    _, params = name_addr_split(value)
    if not params:
        return None
    return parse_params(params).get("tag")


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    length_written = False
    for key, name, value in headers._fields:
        if key == "content-length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8") + body


@dataclass
class SipRequest(SipMessage):
    """A SIP request (RFC 3261 §7.1). ``uri`` is the Request-URI as text."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def serialize(self) -> bytes:
        """The wire form, with a Content-Length matching ``body``."""
        return _serialize(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass
class SipResponse(SipMessage):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def serialize(self) -> bytes:
        """The wire form, with a Content-Length matching ``body``."""
        return _serialize(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


class SipRequestParseError(SipParseError):
    """A request that cannot be parsed; ``partial`` is set when a 400 can be addressed.

    ``partial`` holds the request line and headers as parsed (body empty) when the top
    Via, From, To, Call-ID and CSeq were readable, so ``response_for(partial, 400,
    error.reason)`` answers it (RFC 3261 §8.2, §21.4.1); otherwise it is ``None`` and the
    message should be dropped.
    """

    def __init__(
        self, message: str, *, partial: SipRequest | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.partial = partial


def _fail(is_response: bool, message: str, partial: SipRequest | None = None) -> SipParseError:
    if is_response:
        return SipParseError(message)
    return SipRequestParseError(message, partial=partial)


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")
    if end >= 0:
        return data[:end], data[end + 2 :]
    return data.rstrip(b"\r\n"), b""


def _parse_start_line(line: str) -> tuple[str, str] | tuple[int, str]:
    """(method, uri) for a request line, (status, reason) for a status line."""
    if line.startswith("SIP/"):
        match = STATUS_LINE_RE.fullmatch(line)
        if match is None:
            raise SipParseError("bad status line")
        if match.group(1) != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version: {match.group(1)}")
        status = int(match.group(2))
        if not 100 <= status <= 699:
            raise SipParseError("bad status code")
        return status, match.group(3)
    parts = line.split(" ")
    if len(parts) != 3 or not SIP_VERSION_RE.fullmatch(parts[2]):
        raise SipRequestParseError("bad request line")
    method, uri, version = parts
    if not TOKEN_RE.fullmatch(method):
        raise SipRequestParseError("bad method")
    if not REQUEST_URI_RE.fullmatch(uri):
        raise SipRequestParseError("bad Request-URI")
    if version != "SIP/2.0":
        raise SipRequestParseError(f"unsupported SIP version: {version}")
    return method, uri


def _parse_header_lines(lines: list[str]) -> tuple[list[tuple[str, str, str]], str | None]:
    """Fields from header lines, unfolding continuations (§7.3.1); the first bad line's error."""
    fields: list[tuple[str, str, str]] = []
    error: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t"):
            if fields:
                key, name, value = fields[-1]
                fields[-1] = (key, name, f"{value} {line.strip()}".strip())
            elif error is None:
                error = "continuation line without a header"
            continue
        name, colon, value = line.partition(":")
        if not colon:
            error = error or "header line without colon"
            continue
        name = name.rstrip(" \t")
        if not TOKEN_RE.fullmatch(name):
            error = error or "bad header name"
            continue
        fields.append((_key(name), canonical_name(name), value.strip(" \t")))
    return fields, error


def _check_mandatory(headers: Headers) -> str | None:
    """The reason the message cannot be addressed, or None."""
    for name in _MANDATORY:
        if name not in headers:
            return f"missing {name} header"
    try:
        Via.parse(headers.get_all("Via")[0])
    except (SipParseError, IndexError):
        return "bad Via header"
    return None


def _content_length(headers: Headers) -> int | None:
    values = {value for key, _, value in headers._fields if key == "content-length"}
    if not values:
        return None
    if len(values) > 1 or not DIGITS_RE.fullmatch(next(iter(values))):
        raise SipParseError("bad Content-Length")
    return int(next(iter(values)))


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP message (RFC 3261 §7, §18.3); see the module docs for every error."""
    data = data.lstrip(b"\r\n")  # §7.5: ignore CRLFs before the start line
    is_response = data.startswith(b"SIP/")
    head, body = _split_head(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(is_response, "headers are not valid UTF-8") from None
    if "\r" in text.replace("\r\n", ""):
        raise _fail(is_response, "bare CR in header section")
    lines = text.replace("\r\n", "\n").split("\n")
    first, second = _parse_start_line(lines[0])
    fields, line_error = _parse_header_lines(lines[1:])
    headers = Headers._from_fields(fields)
    fatal = _check_mandatory(headers)
    if fatal is not None:
        raise _fail(is_response, line_error or fatal)
    if isinstance(first, int):
        message: SipRequest | SipResponse = SipResponse(first, second, headers)
        partial = None
    else:
        message = partial = SipRequest(first, second, headers)
    if line_error is not None:
        raise _fail(is_response, line_error, partial)
    try:
        # A bad CSeq still leaves the request addressable: the 400 echoes it as received.
        _, cseq_method = _parse_cseq(headers.get("CSeq") or "")
    except SipParseError:
        raise _fail(is_response, "bad CSeq header", partial) from None
    if partial is not None and cseq_method != partial.method:
        raise _fail(False, "CSeq method does not match request method", partial)
    try:
        length = _content_length(headers)
    except SipParseError as error:
        raise _fail(is_response, str(error), partial) from None
    if length is not None:
        if len(body) < length:
            raise _fail(is_response, "body shorter than Content-Length", partial)
        body = body[:length]  # §18.3: bytes past Content-Length are discarded
    message.body = body
    return message


class SipStreamParser:
    """Frames SIP messages on a stream transport (RFC 3261 §18.3, RFC 5626 §3.5.1 keep-alives).

    Content-Length is mandatory on a stream. After ``feed`` raises, the parser is reset
    and the connection should be closed; messages completed earlier in the same ``feed``
    call are lost with it.
    """

    def __init__(self, *, max_message_bytes: int = 65536) -> None:
        self._buffer = bytearray()
        self._max_message_bytes = max_message_bytes

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """Add received bytes; return every message now complete, in order."""
        buffer = self._buffer
        buffer += data
        messages: list[SipRequest | SipResponse] = []
        try:
            while (message := self._next_message()) is not None:
                messages.append(parse_message(message))
        except SipParseError:
            buffer.clear()
            raise
        return messages

    def _next_message(self) -> bytes | None:
        buffer = self._buffer
        skip = 0
        while skip < len(buffer) and buffer[skip] in b"\r\n":
            skip += 1
        if skip:
            del buffer[:skip]
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > self._max_message_bytes:
                raise SipParseError("message too long")
            return None
        length = _stream_content_length(bytes(buffer[:end]))
        total = end + 4 + length
        if total > self._max_message_bytes:
            raise SipParseError("message too long")
        if len(buffer) < total:
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        return message


def _stream_content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.rstrip(b" \t").lower() in (b"content-length", b"l"):
            text = value.strip(b" \t")
            if not text.isdigit() or len(text) > 10:  # bytes.isdigit is ASCII-only
                raise SipParseError("bad Content-Length")
            return int(text)
    raise SipParseError("missing Content-Length on a stream")


def response_for(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via (in order), From, To (adding ``;tag=to_tag`` when To has no tag),
    Call-ID and CSeq, and Timestamp on a 100 (§8.2.6.1). ``reason`` defaults to
    ``REASON_PHRASES`` (then ``"Unknown"``). ``content_type`` is written when given.
    """
    headers = Headers()
    for name, value in request.headers:
        if name == "Via":
            headers.add("Via", value)
    headers.add("From", request._required("From"))
    to_value = request._required("To")
    if to_tag is not None and _header_tag(to_value) is None:
        to_value = f"{to_value};tag={to_tag}"
    headers.add("To", to_value)
    headers.add("Call-ID", request._required("Call-ID"))
    headers.add("CSeq", request._required("CSeq"))
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        headers.add("Timestamp", timestamp)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    if reason is None:
        reason = REASON_PHRASES.get(status, "Unknown")
    return SipResponse(status, reason, headers, body)


REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip


def new_branch() -> str:
    """A fresh Via branch with the RFC 3261 magic cookie (§8.1.1.7)."""
    return "z9hG4bK" + secrets.token_hex(10)


def new_tag() -> str:
    """A fresh From/To tag: 32 random bits or more, as §19.3 asks."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A fresh, globally unique Call-ID ``<random>@host`` (§8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"
