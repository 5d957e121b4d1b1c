"""SIP grammar pieces (RFC 3261 §25.1) as regexes and small scanners, the ABNF beside each.

Private to the ``sip`` package: message.py, uri.py and auth.py share these so that one
definition of ``token`` or ``quoted-string`` serves every parser.
"""

from __future__ import annotations

import re

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+")

# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Status-Code = 3DIGIT ; Reason-Phrase may be empty (the SP before it may not)
STATUS_LINE_RE = re.compile(r"(SIP/[0-9]+\.[0-9]+) ([0-9]{3}) ([^\r\n]*)")

# Request-URI = SIP-URI / SIPS-URI / absoluteURI ; absoluteURI = scheme ":" ...
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
REQUEST_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:\S+")

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ_RE = re.compile(rf"([0-9]{{1,10}})[ \t]+({TOKEN})")

# Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT
DIGITS_RE = re.compile(r"[0-9]{1,10}")

# host = hostname / IPv4address / IPv6reference ; IPv6reference = "[" IPv6address "]"
HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+"

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
# sent-by = host [ COLON port ]
VIA_RE = re.compile(
    rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({TOKEN})[ \t]+({HOST})(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?"
    r"[ \t]*((?:;.*)?)",
    re.DOTALL,
)


def closing_quote(text: str, start: int) -> int:
    """Index of the DQUOTE closing the quoted-string opened at ``text[start]``, or -1.

    quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE ; quoted-pair = "\\" CHAR.
    """
    index = start + 1
    length = len(text)
    while index < length:
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index
        index += 1
    return -1


def skip_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string opened at ``text[start]``; ``len(text)`` if unclosed."""
    end = closing_quote(text, start)
    return len(text) if end < 0 else end + 1


def split_outside(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` except inside quoted strings and ``<...>``.

    Pieces are stripped of whitespace; empty pieces are dropped. Used for header lists
    (RFC 3261 §7.3.1: ``field-name: value *(COMMA value)``) and for parameters.
    """
    if separator not in text:
        piece = text.strip()
        return [piece] if piece else []
    pieces: list[str] = []
    begin = 0
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            index = skip_quoted(text, index)
            continue
        if char == "<":
            close = text.find(">", index)
            index = length if close < 0 else close + 1
            continue
        if char == separator:
            piece = text[begin:index].strip()
            if piece:
                pieces.append(piece)
            begin = index + 1
        index += 1
    piece = text[begin:].strip()
    if piece:
        pieces.append(piece)
    return pieces


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` into a dict with lower-cased names (names are case-insensitive).

    generic-param = token [ EQUAL gen-value ] ; gen-value = token / host / quoted-string.
    Quoted values keep their quotes, so ``__str__`` can write them back unchanged.
    """
    params: dict[str, str | None] = {}
    for piece in split_outside(text, ";"):
        name, equals, value = piece.partition("=")
        params[name.strip().lower()] = value.strip() if equals else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """The inverse of :func:`parse_params`: ``;name=value;flag``."""
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in params.items()
    )


def name_addr_split(text: str) -> tuple[str, str]:
    """Split a From/To/Contact value into (address part, header-parameter part).

    (name-addr / addr-spec) *( SEMI param ) — RFC 3261 §20: with ``<...>`` the header
    parameters follow ``>``; for a bare addr-spec every ``;`` starts a header parameter
    (so a bare URI cannot carry URI parameters).
    """
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if char == '"':
            index = skip_quoted(text, index)
            continue
        if char == "<":
            close = text.find(">", index)
            if close < 0:
                return text, ""
            return text[: close + 1], text[close + 1 :]
        index += 1
    semicolon = text.find(";")
    if semicolon < 0:
        return text, ""
    return text[:semicolon], text[semicolon:]


def unquote(value: str) -> str:
    """The content of a quoted-string with quoted-pairs resolved; other text unchanged."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)
    return value


def quote(value: str) -> str:
    """``value`` as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_digits(text: str) -> bool:
    """DIGIT+ (RFC 5234 B.1): ASCII 0-9 only. ``str.isdigit`` also accepts "²" and "١",
    on which ``int()`` raises or which no peer means as a number."""
    return text.isascii() and text.isdigit()
