"""Settings of ``callstream serve``: defaults, a TOML file (``--config``), then flags.

Every flag of ``serve`` is also a top-level key of the file, spelled with underscores
(``sip_port``, ``rtp_ports``...). Routes live in ``[[routes]]`` tables::

    [[routes]]
    match = "echo"            # exact Request-URI user part, or "re:^\\+1" for a regex
    actions = [ { type = "answer" }, { type = "echo" } ]

Everything is validated at load time; errors name the key (and action index).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from callstream.errors import ConfigError
from callstream.flows.actions import Action, parse_actions


@dataclass(frozen=True)
class Route:
    """Maps a Request-URI user part to the actions an inbound call runs."""

    match: str
    actions: tuple[Action, ...]
    pattern: re.Pattern[str] | None = None
    account: str = "default"
    """The account that owns calls arriving on this route (created if needed)."""
    raw_actions: tuple[dict[str, Any], ...] = ()
    """The actions as written, kept for the call records."""
    answer_url: str | None = None
    """Plivo style: on answer, fetch this URL's <Response> XML and run it (no actions)."""
    answer_method: str = "POST"

    def matches(self, user: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(user) is not None
        return user == self.match

    @classmethod
    def parse(cls, index: int, raw: object) -> Route:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"routes[{index}]: must be a table")
        match = raw.get("match")
        if not isinstance(match, str) or not match:
            raise ConfigError(f"routes[{index}].match: required, a non-empty string")
        pattern = None
        if match.startswith("re:"):
            try:
                pattern = re.compile(match[3:])
            except re.error as exc:
                raise ConfigError(f"routes[{index}].match: bad regex: {exc}") from exc
        answer_url = raw.get("answer_url")
        answer_method = str(raw.get("answer_method", "POST")).upper()
        if answer_url is not None:
            if not isinstance(answer_url, str) or not answer_url.startswith(
                ("http://", "https://")
            ):
                raise ConfigError(f"routes[{index}].answer_url: must be an http(s):// URL")
            if answer_method not in ("GET", "POST"):
                raise ConfigError(f"routes[{index}].answer_method: must be GET or POST")
            if "actions" in raw:
                raise ConfigError(f"routes[{index}]: give actions or answer_url, not both")
        try:
            actions = parse_actions(raw.get("actions", []) if answer_url else raw.get("actions"))
        except ConfigError as exc:
            raise ConfigError(f"routes[{index}].actions: {exc}") from exc
        account = raw.get("account", "default")
        if not isinstance(account, str) or not account:
            raise ConfigError(f"routes[{index}].account: must be a non-empty string")
        written = raw.get("actions") or ()
        if isinstance(written, Mapping):  # Voxology's printed script: {"actions": [...]}
            written = written.get("actions") or ()
        raw_actions = tuple(dict(item) for item in written)
        return cls(match, tuple(actions), pattern, account, raw_actions, answer_url, answer_method)


@dataclass(frozen=True)
class Trunk:
    """A SIP trunk from the config file (``[[trunks]]``); the API adds more per account.

    ``tel`` destinations of the trunk's account are sent to ``proxy``, authenticating with
    ``username``/``password`` when challenged; when any trunk lists ``inbound_addresses``,
    INVITEs from other addresses are refused with 403. With ``register = true`` the
    gateway registers ``sip:username@proxy-host`` at the proxy (its Contact's user is the
    username) for ``register_expires`` seconds, refreshed, and removes it at shutdown.
    """

    name: str
    proxy: str
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    inbound_addresses: tuple[str, ...] = ()
    account: str = "default"
    media_stream: dict[str, Any] | None = None
    register: bool = False
    register_expires: int = 600

    @property
    def registrar(self) -> str:
        return registrar_of(self.proxy)

    @property
    def aor(self) -> str:
        return aor_of(self.username or "", self.proxy)

    @classmethod
    def parse(cls, index: int, raw: object) -> Trunk:
        where = f"trunks[{index}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a table")
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        for key in ("name", "proxy"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ConfigError(f"{where}.{key}: required, a non-empty string")
        parse_host_port(raw["proxy"], f"{where}.proxy")
        transport = str(raw.get("transport", "udp")).upper()
        if transport not in ("UDP", "TCP"):
            raise ConfigError(f"{where}.transport: must be udp or tcp")
        addresses = raw.get("inbound_addresses", [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f"{where}.inbound_addresses: must be a list of IP addresses")
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(
                    f"{where}.inbound_addresses: {address!r} is not an IP address"
                ) from None
        for key in ("username", "password", "account"):
            if key in raw and not isinstance(raw[key], str):
                raise ConfigError(f"{where}.{key}: must be a string")
        media_stream = raw.get("media_stream")
        if media_stream is not None and not isinstance(media_stream, Mapping):
            raise ConfigError(f"{where}.media_stream: must be a table")
        register = raw.get("register", False)
        if not isinstance(register, bool):
            raise ConfigError(f"{where}.register: must be true or false")
        if register and not raw.get("username"):
            raise ConfigError(f"{where}.username: required to register")
        register_expires = raw.get("register_expires", 600)
        if (
            isinstance(register_expires, bool)
            or not isinstance(register_expires, int)
            or not 60 <= register_expires <= 86400
        ):
            raise ConfigError(f"{where}.register_expires: must be seconds, 60 to 86400")
        return cls(
            name=raw["name"],
            proxy=raw["proxy"],
            transport=transport,
            username=raw.get("username"),
            password=raw.get("password"),
            inbound_addresses=tuple(addresses),
            account=raw.get("account", "default"),
            media_stream=dict(media_stream) if media_stream is not None else None,
            register=register,
            register_expires=register_expires,
        )


def registrar_of(proxy: str) -> str:
    """The SIP URI a trunk's REGISTER is sent to: its proxy (``host:port``)."""
    host, port = parse_host_port(proxy, "proxy")
    return f"sip:{_uri_host(host)}:{port}"


def aor_of(username: str, proxy: str) -> str:
    """The address-of-record a trunk registers: ``sip:username@proxy-host``."""
    host, _ = parse_host_port(proxy, "proxy")
    return f"sip:{username}@{_uri_host(host)}"


def _uri_host(host: str) -> str:
    """``host`` as a SIP URI writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def parse_host_port(text: str, where: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (port optional: 5060)."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]]+)(?::(\d{1,5}))?", text)
    if match is None:
        raise ConfigError(f"{where}: expected host:port, got {text!r}")
    host = match[1] or match[3]
    port = int(match[2] or match[4] or 5060)
    if not 0 < port <= 65535:
        raise ConfigError(f"{where}: bad port in {text!r}")
    return host, port


def default_routes() -> tuple[Route, ...]:
    """With no routes configured, ``echo`` answers and echoes, so the first try works."""
    return (Route.parse(0, {"match": "echo", "actions": [{"type": "answer"}, {"type": "echo"}]}),)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    public_host: str = ""
    """The address peers reach us at, written in Via, Contact and SDP (default: ``host``);
    required when ``host`` is a wildcard (0.0.0.0, ::) or behind NAT."""
    sip_port: int = 5060
    http_port: int = 8080
    rtp_ports: str = "20000-29999"
    database_url: str = "sqlite:///callstream.db"
    rtp_timeout: float = 60.0
    max_calls: int = 1000
    log_level: str = "info"
    max_streams_per_call: int = 5
    """Media streams one call (or conference) may have at once; more get HTTP 429."""
    stream_buffer_seconds: float = 120.0
    """Audio a client may send ahead of real time; the excess is dropped and counted."""
    tls_cert: str = ""
    """PEM certificate chain: with ``tls_key``, the HTTP port serves https and wss."""
    tls_key: str = ""
    tls_ca: str = ""
    """Extra CA file trusted (besides the system store) when dialling out to wss://."""
    routes: tuple[Route, ...] = field(default_factory=default_routes)
    trunks: tuple[Trunk, ...] = ()

    @property
    def rtp_range(self) -> tuple[int, int]:
        return parse_port_range(self.rtp_ports)

    @property
    def advertised_host(self) -> str:
        """The address written in Via, Contact and SDP: ``public_host``, else ``host``."""
        return self.public_host or self.host

    def find_route(self, user: str) -> Route | None:
        for route in self.routes:
            if route.matches(user):
                return route
        return None


_SCALARS = {f.name: f.type for f in fields(Settings) if f.name not in ("routes", "trunks")}


def parse_port_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None:
        raise ConfigError(f"rtp_ports: expected FIRST-LAST, got {text!r}")
    first, last = int(match[1]), int(match[2])
    if not 1024 <= first < last <= 65535:
        raise ConfigError(f"rtp_ports: need 1024 <= FIRST < LAST <= 65535, got {text!r}")
    return first, last


def _coerce(name: str, value: Any) -> Any:
    expected = _SCALARS[name]
    if expected == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: must be an integer")
        if name.endswith("_port") and not 0 <= value <= 65535:
            raise ConfigError(f"{name}: must be a port number (0-65535)")
        return value
    if expected == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{name}: must be a positive number")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name}: must be a string")
    return value


def load_settings(config_path: str | Path | None, overrides: Mapping[str, Any]) -> Settings:
    """Defaults, then the TOML file, then ``overrides`` (flags given on the command line)."""
    values: dict[str, Any] = {}
    routes: tuple[Route, ...] | None = None
    trunks: tuple[Trunk, ...] = ()
    if config_path is not None:
        try:
            document = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path}: {exc}") from exc
        for key, value in document.items():
            if key == "routes":
                if not isinstance(value, list):
                    raise ConfigError("routes: must be an array of tables ([[routes]])")
                routes = tuple(Route.parse(i, item) for i, item in enumerate(value))
            elif key == "trunks":
                if not isinstance(value, list):
                    raise ConfigError("trunks: must be an array of tables ([[trunks]])")
                trunks = tuple(Trunk.parse(i, item) for i, item in enumerate(value))
            elif key in _SCALARS:
                values[key] = _coerce(key, value)
            else:
                raise ConfigError(f"unknown setting {key!r} in {config_path}")
    for key, value in overrides.items():
        if value is not None:
            values[key] = _coerce(key, value)
    settings = replace(Settings(), trunks=trunks, **values)
    if routes:
        settings = replace(settings, routes=routes)
    parse_port_range(settings.rtp_ports)
    check_hosts(settings.host, settings.public_host)
    return settings


def check_hosts(host: str, public_host: str) -> None:
    """``public_host`` is an IP literal (SDP's c= line carries it), and required when
    ``host`` is a wildcard: peers cannot send to 0.0.0.0."""
    if public_host:
        try:
            address = ipaddress.ip_address(public_host)
        except ValueError:
            raise ConfigError(f"public_host: {public_host!r} is not an IP address") from None
        if address.is_unspecified:
            raise ConfigError("public_host: must be an address peers can reach, not a wildcard")
        return
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = False
    if wildcard:
        raise ConfigError(
            f"public_host: required when host is {host} (the address peers reach this gateway "
            "at, written in Via, Contact and SDP)"
        )
