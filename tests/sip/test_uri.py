from __future__ import annotations

import pytest

from callstream.errors import SipParseError
from callstream.sip.uri import NameAddr, SipUri


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sip:alice:secretword@atlanta.com;transport=tcp",
        "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sips:1212@gateway.com",
        "sip:alice@192.0.2.4",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:bob@[2001:db8::9]:5062;transport=udp;lr",
        "sip:10.0.0.2;lr",
        "tel:+15551234567",
        "tel:7042;phone-context=example.com",
    ],
)
def test_rfc3261_examples_round_trip(text: str) -> None:
    assert str(SipUri.parse(text)) == text


def test_fields_of_a_full_uri() -> None:
    uri = SipUri.parse("sip:alice:pw@[2001:db8::9]:5062;transport=tcp;lr;maddr=239.1.1.1?X=1&Y=2")
    assert uri == SipUri(
        scheme="sip",
        user="alice",
        password="pw",
        host="2001:db8::9",
        port=5062,
        params=(("transport", "tcp"), ("lr", None), ("maddr", "239.1.1.1")),
        headers=(("X", "1"), ("Y", "2")),
    )
    assert uri.host_port == ("2001:db8::9", 5062)
    assert uri.transport == "TCP"
    assert uri.param("MADDR") == "239.1.1.1"
    assert uri.param("lr") is None and uri.has_param("LR") and not uri.has_param("user")


def test_defaults() -> None:
    uri = SipUri.parse("SIP:Bob@Example.COM")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", "Bob", "Example.COM", None)
    assert uri.host_port == ("Example.COM", 5060)
    assert uri.transport == "UDP"
    secure = SipUri.parse("sips:bob@example.com")
    assert secure.host_port == ("example.com", 5061)
    assert secure.transport == "TLS"
    assert SipUri.parse("sip:example.com").user is None


def test_user_escapes_resolved_and_reapplied() -> None:
    uri = SipUri.parse("sip:%61lice%20smith@h")
    assert uri.user == "alice smith"
    assert str(uri) == "sip:alice%20smith@h"
    assert str(SipUri("sip", "a@b", "p w", "h")) == "sip:a%40b:p%20w@h"
    # user-unreserved characters stay as they are (a telephone-subscriber with params)
    assert SipUri.parse("sip:+1234;phone-context=x@h").user == "+1234;phone-context=x"


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+15551234567;ext=12")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("tel", "+15551234567", "", None)
    assert uri.param("ext") == "12"


def test_with_and_without_params_and_replace() -> None:
    uri = SipUri.parse("sip:a@h;transport=udp")
    assert str(uri.with_params(transport="tcp", lr=None)) == "sip:a@h;transport=tcp;lr"
    assert str(uri.without_params("TRANSPORT")) == "sip:a@h"
    assert str(uri.replace(port=5070, user=None)) == "sip:h:5070;transport=udp"
    assert str(uri) == "sip:a@h;transport=udp"  # frozen: copies only


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://example.com", "bad SIP URI: unsupported scheme"),
        ("alice@example.com", "bad SIP URI: unsupported scheme"),
        ("sip:alice@", "bad SIP URI: bad host"),
        ("sip:alice@ex ample.com", "bad SIP URI: bad host"),
        ("sip:alice@::1", "bad SIP URI: bad host"),
        ("sip:alice@h:99999", "bad SIP URI: bad port"),
        ("sip:alice@h:5o60", "bad SIP URI: bad port"),
        ("sip:alice@h:", "bad SIP URI: bad port"),
        ("sip:al%2ice@h", "bad SIP URI: bad escape"),
        ("sip:al%ffice@h", "bad SIP URI: bad escape"),
        ("sip:@h", "bad SIP URI: empty user"),
        ("tel:", "bad SIP URI: empty user"),
        ("sip:a@h;=x", "bad SIP URI: bad parameter"),
        ("sip:a@h?novalue", "bad SIP URI: bad header"),
    ],
)
def test_uri_rejections(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        SipUri.parse(text)
    assert str(caught.value) == message


def test_name_addr_with_quoted_display_name() -> None:
    value = NameAddr.parse(
        '"Alice \\"A\\" Smith" <sip:alice@atlanta.com;transport=tcp>;tag=1928301774'
    )
    assert value.display_name == 'Alice "A" Smith'
    assert value.uri.param("transport") == "tcp"
    assert value.params == {"tag": "1928301774"}
    assert value.tag == "1928301774"
    assert (
        str(value) == '"Alice \\"A\\" Smith" <sip:alice@atlanta.com;transport=tcp>;tag=1928301774'
    )


def test_name_addr_forms() -> None:
    route = NameAddr.parse("<sip:10.0.0.2;lr>")
    assert route.display_name is None and route.uri.has_param("lr") and route.params == {}
    assert str(route) == "<sip:10.0.0.2;lr>"
    bare = NameAddr.parse("sip:bob@biloxi.com;tag=a6c85cf")
    assert bare.uri == SipUri.parse("sip:bob@biloxi.com")
    assert bare.tag == "a6c85cf"
    assert str(bare) == "<sip:bob@biloxi.com>;tag=a6c85cf"
    token_name = NameAddr.parse("Bob  Smith <sips:bob@biloxi.example.com> ; tag=x ;expires=60")
    assert token_name.display_name == "Bob Smith"
    assert token_name.params == {"tag": "x", "expires": "60"}
    contact = NameAddr.parse('<sip:a@h>;+sip.instance="<urn:uuid:1,2>";q=0.7')
    assert contact.params == {"+sip.instance": '"<urn:uuid:1,2>"', "q": "0.7"}
    assert NameAddr.parse('"" <sip:a@h>').display_name == ""
    assert str(NameAddr.parse("<sip:a@h>").with_tag("t9")) == "<sip:a@h>;tag=t9"


def test_name_addr_list() -> None:
    routes = NameAddr.parse_list('<sip:p1;lr>, "Proxy, Two" <sip:p2;lr>,<sip:p3>')
    assert [str(r.uri) for r in routes] == ["sip:p1;lr", "sip:p2;lr", "sip:p3"]
    assert routes[1].display_name == "Proxy, Two"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<sip:a@h", "bad name-addr: missing >"),
        ('"Alice <sip:a@h>', "bad name-addr: unterminated quote"),
        ('"Alice" x" <sip:a@h>', "bad name-addr: unterminated quote"),
        ('"Alice" x <sip:a@h>', "bad name-addr: bad display name"),
        ('"Alice"', "bad name-addr: missing >"),
        ("Alice <mailto:a@h>", "bad SIP URI: unsupported scheme"),
    ],
)
def test_name_addr_rejections(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as caught:
        NameAddr.parse(text)
    assert str(caught.value) == message
