"""SIP URIs and name-addrs (RFC 3261 §19.1, §20.10, §25.1; tel: URIs per RFC 3966).

- ``SipUri.parse(text)`` reads ``sip:``, ``sips:`` and ``tel:`` URIs into a frozen value;
  ``str(uri)`` writes it back (percent-escapes in the user part are resolved in ``user``
  and re-applied on output, so the written form is canonical).
- ``NameAddr.parse(text)`` reads the value of From, To, Contact, Route, Record-Route,
  Refer-To: an optional display name, the URI, and the header parameters (``tag`` ...).

Every rejection is a ``SipParseError`` whose message starts ``bad SIP URI:`` or
``bad name-addr:``; the exact messages are listed on the parse methods.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote as percent_quote
from urllib.parse import unquote as percent_unquote

from callstream.errors import SipParseError
from callstream.sip._grammar import (
    closing_quote,
    format_params,
    name_addr_split,
    parse_params,
    quote,
    skip_quoted,
    split_outside,
    unquote,
)

__all__ = ["NameAddr", "SipUri"]

# hostport = host [ ":" port ] ; host = hostname / IPv4address / IPv6reference
_HOSTPORT_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::(.*))?")
_PORT_RE = re.compile(r"[0-9]{1,5}")
# escaped = "%" HEXDIG HEXDIG
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# user = 1*( unreserved / escaped / user-unreserved ) — what may stay unescaped.
_USER_SAFE = "-_.!~*'()&=+$,;?/"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_DEFAULT_PORTS = {"sip": 5060, "sips": 5061, "tel": 5060}


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE_RE.search(text):
        raise SipParseError("bad SIP URI: bad escape")
    try:
        return percent_unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise SipParseError("bad SIP URI: bad escape") from None


def _parse_uri_params(text: str) -> tuple[tuple[str, str | None], ...]:
    params: list[tuple[str, str | None]] = []
    for piece in text.split(";"):
        if not piece:
            continue
        name, equals, value = piece.partition("=")
        if not name:
            raise SipParseError("bad SIP URI: bad parameter")
        params.append((name, value if equals else None))
    return tuple(params)


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for piece in text.split("&"):
        name, equals, value = piece.partition("=")
        if not name or not equals:
            raise SipParseError("bad SIP URI: bad header")
        headers.append((name, value))
    return tuple(headers)


@dataclass(frozen=True)
class SipUri:
    """A SIP, SIPS or tel URI (RFC 3261 §19.1.1, RFC 3966).

    ``host`` keeps IPv6 addresses without brackets and is ``""`` for tel URIs, whose
    number is in ``user``. ``params`` and ``headers`` keep their order and spelling.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI. Raises SipParseError with one of: ``bad SIP URI: unsupported scheme``,
        ``bad SIP URI: bad host``, ``bad SIP URI: bad port``, ``bad SIP URI: bad escape``,
        ``bad SIP URI: bad parameter``, ``bad SIP URI: bad header``, ``bad SIP URI: empty user``.
        """
        scheme, colon, rest = text.strip().partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in _DEFAULT_PORTS:
            raise SipParseError("bad SIP URI: unsupported scheme")
        if scheme == "tel":
            number, _, params_text = rest.partition(";")
            if not number:
                raise SipParseError("bad SIP URI: empty user")
            return cls("tel", _unescape(number), None, "", None, _parse_uri_params(params_text))
        rest, question, headers_text = rest.partition("?")
        at = rest.find("@")
        user: str | None = None
        password: str | None = None
        if at >= 0:
            user_text, has_password, password_text = rest[:at].partition(":")
            if not user_text:
                raise SipParseError("bad SIP URI: empty user")
            user = _unescape(user_text)
            password = _unescape(password_text) if has_password else None
            rest = rest[at + 1 :]
        hostport, _, params_text = rest.partition(";")
        match = _HOSTPORT_RE.fullmatch(hostport)
        if match is None:
            raise SipParseError("bad SIP URI: bad host")
        host, port_text = match.groups()
        port = None
        if port_text is not None:
            if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
                raise SipParseError("bad SIP URI: bad port")
            port = int(port_text)
        headers = _parse_uri_headers(headers_text) if question else ()
        host = host[1:-1] if host.startswith("[") else host
        return cls(scheme, user, password, host, port, _parse_uri_params(params_text), headers)

    def __str__(self) -> str:
        params = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self.params)
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{params}"
        userinfo = ""
        if self.user is not None:
            userinfo = percent_quote(self.user, safe=_USER_SAFE)
            if self.password is not None:
                userinfo += ":" + percent_quote(self.password, safe=_PASSWORD_SAFE)
            userinfo += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        headers = "&".join(f"{n}={v}" for n, v in self.headers)
        return f"{self.scheme}:{userinfo}{host}{port}{params}{'?' + headers if headers else ''}"

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive); None if absent or valueless."""
        lower = name.lower()
        for param_name, value in self.params:
            if param_name.lower() == lower:
                return value
        return None

    def has_param(self, name: str) -> bool:
        """Whether URI parameter ``name`` is present (e.g. ``lr``, §19.1.1)."""
        lower = name.lower()
        return any(param_name.lower() == lower for param_name, _ in self.params)

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with these parameters set (replaced in place, else appended); None = flag."""
        updated = list(self.params)
        for name, value in params.items():
            for index, (existing, _) in enumerate(updated):
                if existing.lower() == name.lower():
                    updated[index] = (existing, value)
                    break
            else:
                updated.append((name, value))
        return dataclasses.replace(self, params=tuple(updated))

    def without_params(self, *names: str) -> SipUri:
        """A copy without these parameters (case-insensitive), e.g. to strip ``transport``."""
        lowered = {name.lower() for name in names}
        kept = tuple(item for item in self.params if item[0].lower() not in lowered)
        return dataclasses.replace(self, params=kept)

    def replace(self, **changes: Any) -> SipUri:
        """A copy with fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port), the port defaulting to 5060, or 5061 for sips (§19.1.2)."""
        return self.host, self.port if self.port is not None else _DEFAULT_PORTS[self.scheme]

    @property
    def transport(self) -> str:
        """The ``transport`` parameter upper-cased; default UDP (TLS for sips, RFC 3263 §4.1)."""
        value = self.param("transport")
        if value:
            return value.upper()
        return "TLS" if self.scheme == "sips" else "UDP"


@dataclass
class NameAddr:
    """A From/To/Contact/Route value: display name, URI, header parameters (§20.10, §20.20).

    ``params`` names are lower-cased; values are kept as written (quoted ones keep quotes).
    ``str()`` always writes the ``<...>`` form, so URI parameters stay with the URI.
    """

    display_name: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse ``"Alice" <sip:a@h>;tag=x``, ``<sip:a@h;lr>`` or bare ``sip:a@h;tag=x``.

        For a bare URI the ``;`` parameters belong to the header (§20). Raises
        SipParseError ``bad name-addr: missing >``, ``bad name-addr: unterminated quote``,
        ``bad name-addr: bad display name`` or a ``bad SIP URI: ...`` from the URI.
        """
        address, params_text = name_addr_split(text.strip())
        address = address.strip()
        open_bracket = _find_unquoted(address, "<")
        if open_bracket < 0:
            if address.startswith('"'):
                raise SipParseError("bad name-addr: missing >")
            return cls(None, SipUri.parse(address), parse_params(params_text))
        if not address.endswith(">"):
            raise SipParseError("bad name-addr: missing >")
        display = address[:open_bracket].strip()
        display_name: str | None = None
        if display.startswith('"'):
            if skip_quoted(display, 0) != len(display):
                raise SipParseError("bad name-addr: bad display name")
            display_name = unquote(display)
        elif display:
            display_name = " ".join(display.split())
        uri = SipUri.parse(address[open_bracket + 1 : -1])
        return cls(display_name, uri, parse_params(params_text))

    @classmethod
    def parse_list(cls, text: str) -> list[NameAddr]:
        """Parse a comma-separated list (Route, Record-Route, Contact), commas in quotes kept."""
        return [cls.parse(item) for item in split_outside(text, ",")]

    def __str__(self) -> str:
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (§19.3), or None."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``tag`` set (e.g. the UAS adding its To tag, §8.2.6.2)."""
        return NameAddr(self.display_name, self.uri, {**self.params, "tag": tag})


def _find_unquoted(text: str, char: str) -> int:
    index = 0
    while index < len(text):
        if text[index] == '"':
            end = closing_quote(text, index)
            if end < 0:
                raise SipParseError("bad name-addr: unterminated quote")
            index = end + 1
            continue
        if text[index] == char:
            return index
        index += 1
    return -1
