import re
from pathlib import Path

import pytest

from callstream.config import Route, load_settings, parse_port_range
from callstream.errors import ConfigError
from callstream.flows.actions import Answer, Echo, Tone


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callstream.toml"
    path.write_text(text)
    return path


def test_defaults_have_the_builtin_echo_route() -> None:
    settings = load_settings(None, {})
    assert (settings.host, settings.sip_port, settings.http_port) == ("127.0.0.1", 5060, 8080)
    assert settings.rtp_range == (20000, 29999)
    route = settings.find_route("echo")
    assert route is not None
    assert [type(a) for a in route.actions] == [Answer, Echo]
    assert settings.find_route("other") is None


def test_file_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'sip_port = 5080\nrtp_ports = "30000-30099"\nrtp_timeout = 2\n'
        '[[routes]]\nmatch = "re:^\\\\+1"\n'
        'actions = [{type = "answer"},\n'
        '  {type = "tone", option = {frequency = 440, duration = 500}}]\n',
    )
    settings = load_settings(path, {"sip_port": 5090, "host": None})
    assert settings.sip_port == 5090  # the flag wins
    assert settings.rtp_range == (30000, 30099)
    assert settings.rtp_timeout == 2.0
    route = settings.find_route("+15551234567")
    assert route is not None and route.actions[1] == Tone("tone", 440.0, 500)
    assert settings.find_route("15551234567") is None
    assert settings.find_route("echo") is None  # configured routes replace the built-in one


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sip_port = 'x'\n", "sip_port: must be an integer"),
        ("sip_port = 70000\n", "sip_port: must be a port number (0-65535)"),
        ("rtp_ports = '5-3'\n", "rtp_ports: need 1024 <= FIRST < LAST <= 65535, got '5-3'"),
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("[[routes]]\nactions = []\n", "routes[0].match: required, a non-empty string"),
        ("[[routes]]\nmatch = 're:('\nactions = []\n", "routes[0].match: bad regex"),
        (
            "[[routes]]\nmatch = 'a'\nactions = [{type = 'answer'}, {type = 'dance'}]\n",
            "routes[0].actions: action 1: unknown type 'dance'",
        ),
        (
            "[[routes]]\nmatch = 'a'\nactions = [{type = 'tone', option = {frequency = 440}}]\n",
            "routes[0].actions: action 0 (tone): option.duration is required",
        ),
        ("sip_port = \n", "config file"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {})
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", {})


def test_port_range() -> None:
    assert parse_port_range(" 20000 - 20001 ") == (20000, 20001)
    with pytest.raises(ConfigError, match="expected FIRST-LAST"):
        parse_port_range("20000")


def test_exact_route_does_not_match_prefix() -> None:
    route = Route.parse(0, {"match": "echo", "actions": []})
    assert route.matches("echo") and not route.matches("echo2")


def test_trunks_and_route_accounts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[[routes]]\nmatch = 'sales'\naccount = 'acme'\nactions = [{type = 'answer'}]\n"
        "[[trunks]]\nname = 'carrier'\nproxy = '127.0.0.1:5080'\ntransport = 'tcp'\n"
        "username = 'u'\npassword = 'p'\ninbound_addresses = ['127.0.0.2', '::1']\n"
        "account = 'acme'\n",
    )
    settings = load_settings(path, {})
    route = settings.find_route("sales")
    assert route is not None and route.account == "acme"
    assert route.raw_actions == ({"type": "answer"},)
    (trunk,) = settings.trunks
    assert (trunk.name, trunk.proxy, trunk.transport) == ("carrier", "127.0.0.1:5080", "TCP")
    assert trunk.inbound_addresses == ("127.0.0.2", "::1") and trunk.account == "acme"
    assert (trunk.register, trunk.register_expires) == (False, 600)


def test_a_registering_trunk_names_its_registrar_and_address_of_record(tmp_path: Path) -> None:
    text = "[[trunks]]\nname = 'c'\nproxy = '{proxy}'\nusername = 'alice'\nregister = true\n"
    for proxy, registrar, aor in (
        ("127.0.0.1:5080", "sip:127.0.0.1:5080", "sip:alice@127.0.0.1"),
        ("[::1]", "sip:[::1]:5060", "sip:alice@[::1]"),
    ):
        (trunk,) = load_settings(write(tmp_path, text.format(proxy=proxy)), {}).trunks
        assert (trunk.register, trunk.registrar, trunk.aor) == (True, registrar, aor)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[trunks]]\nproxy = 'h:1'\n", "trunks[0].name: required"),
        ("[[trunks]]\nname = 'a'\nproxy = 'h:99999'\n", "trunks[0].proxy: bad port"),
        ("[[trunks]]\nname = 'a'\nproxy = 'h'\ntransport = 'sctp'\n", "trunks[0].transport"),
        (
            "[[trunks]]\nname = 'a'\nproxy = 'h'\ninbound_addresses = ['nope']\n",
            "trunks[0].inbound_addresses: 'nope' is not an IP address",
        ),
        ("[[trunks]]\nname = 'a'\nproxy = 'h'\ncolour = 1\n", "trunks[0]: unknown key 'colour'"),
        ("[[trunks]]\nname = 'a'\nproxy = 'h'\nregister = 1\n", "trunks[0].register: must be"),
        ("[[trunks]]\nname = 'a'\nproxy = 'h'\nregister = true\n", "trunks[0].username: required"),
        (
            "[[trunks]]\nname = 'a'\nproxy = 'h'\nregister_expires = 30\n",
            "trunks[0].register_expires: must be seconds, 60 to 86400",
        ),
    ],
)
def test_bad_trunks_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": "0.0.0.0"}, "public_host: required when host is 0.0.0.0"),
        ({"host": "::"}, "public_host: required when host is ::"),
        ({"public_host": "gateway.example"}, "public_host: 'gateway.example' is not an IP"),
        ({"host": "0.0.0.0", "public_host": "0.0.0.0"}, "public_host: must be an address peers"),
    ],
)
def test_public_host_is_an_ip_and_required_on_a_wildcard(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load_settings(None, overrides)


def test_advertised_host_is_the_public_host_else_the_host() -> None:
    assert load_settings(None, {}).advertised_host == "127.0.0.1"
    settings = load_settings(None, {"host": "0.0.0.0", "public_host": "127.0.0.5"})
    assert (settings.host, settings.advertised_host) == ("0.0.0.0", "127.0.0.5")
