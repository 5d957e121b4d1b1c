from __future__ import annotations

import hashlib

import pytest

from callstream.errors import ProtocolError
from callstream.sip.auth import (
    DigestChallenge,
    DigestCredentials,
    build_authorization,
    select_challenge,
    verify_authorization,
)

# RFC 2617 §3.5
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
MUFASA = DigestCredentials("Mufasa", "Circle Of Life")


def h(algorithm: str, text: str) -> str:
    return hashlib.new(algorithm, text.encode()).hexdigest()


def test_parse_rfc2617_challenge() -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    assert challenge == DigestChallenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        algorithm="MD5",
        qop=("auth", "auth-int"),
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
        stale=False,
    )
    assert challenge.supported


def test_parse_quoted_escapes_commas_and_case() -> None:
    challenge = DigestChallenge.parse(
        'digest   REALM="a, \\"quoted\\" realm",nonce=abc123 ,algorithm=sha-256-SESS,'
        ' stale=TRUE, domain="sip:a sip:b"'
    )
    assert challenge.realm == 'a, "quoted" realm'
    assert challenge.nonce == "abc123"
    assert challenge.algorithm == "SHA-256-sess"
    assert challenge.stale is True
    assert challenge.qop == () and challenge.opaque is None


def test_unsupported_algorithm_parses_but_cannot_be_answered() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    assert challenge.algorithm == "SHA-512-256" and not challenge.supported
    with pytest.raises(ProtocolError, match="^unsupported Digest algorithm: SHA-512-256$"):
        build_authorization(challenge, MUFASA, method="INVITE", uri="sip:x", cnonce="c")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Basic realm="r"', "not a Digest challenge"),
        ('Digest nonce="n"', "Digest challenge without realm"),
        ('Digest realm="r"', "Digest challenge without nonce"),
        ('Digest realm="r, nonce="n"', "bad Digest parameter"),
        ('Digest realm="r", stale, nonce="n"', "bad Digest parameter"),
        ("Digest realm", "bad Digest parameter"),
    ],
)
def test_challenge_rejections(value: str, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        DigestChallenge.parse(value)
    assert str(caught.value) == message


def test_rfc2617_example_response() -> None:
    value = build_authorization(
        DigestChallenge.parse(RFC2617_CHALLENGE),
        MUFASA,
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert value == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
        'qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


def test_rfc7616_sha256_example_computed_independently() -> None:
    # RFC 7616 §3.9.1 inputs; the digest is recomputed here with hashlib.
    realm, nonce = "http-auth@example.org", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
    cnonce, uri = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "/dir/index.html"
    ha1 = h("sha256", f"Mufasa:{realm}:Circle of Life")
    ha2 = h("sha256", f"GET:{uri}")
    expected = h("sha256", f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
    assert expected == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    challenge = DigestChallenge.parse(
        f'Digest realm="{realm}", qop="auth, auth-int", algorithm=SHA-256, nonce="{nonce}", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    value = build_authorization(
        challenge,
        DigestCredentials("Mufasa", "Circle of Life", realm=realm),
        method="GET",
        uri=uri,
        cnonce=cnonce,
    )
    assert f'response="{expected}", algorithm=SHA-256,' in value


def test_rfc2069_form_without_qop_and_nc_hex() -> None:
    challenge = DigestChallenge.parse('Digest realm="sip.example.com", nonce="xyz"')
    value = build_authorization(
        challenge, DigestCredentials("alice", "pw"), method="INVITE", uri="sip:bob@h", cnonce="c"
    )
    ha1 = h("md5", "alice:sip.example.com:pw")
    expected = h("md5", f"{ha1}:xyz:{h('md5', 'INVITE:sip:bob@h')}")
    assert value == (
        'Digest username="alice", realm="sip.example.com", nonce="xyz", uri="sip:bob@h", '
        f'response="{expected}", algorithm=MD5'
    )
    with_qop = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth"')
    assert "nc=0000001a" in build_authorization(
        with_qop, MUFASA, method="BYE", uri="sip:x", cnonce="c", nc=26
    )


def test_sess_and_auth_int_computed_independently() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n", qop="auth-int", algorithm=MD5-sess'
    )
    value = build_authorization(
        challenge, MUFASA, method="INVITE", uri="sip:x", cnonce="cn", body=b"v=0\r\n"
    )
    ha1 = h("md5", f"{h('md5', 'Mufasa:r:Circle Of Life')}:n:cn")
    ha2 = h("md5", f"INVITE:sip:x:{h('md5', 'v=0' + chr(13) + chr(10))}")
    assert f'response="{h("md5", f"{ha1}:n:00000001:cn:auth-int:{ha2}")}"' in value
    assert "algorithm=MD5-sess" in value and "qop=auth-int" in value


def test_realm_bound_credentials() -> None:
    challenge = DigestChallenge.parse('Digest realm="other", nonce="n"')
    with pytest.raises(ProtocolError, match="^no credentials for realm other$"):
        build_authorization(
            challenge,
            DigestCredentials("a", "b", realm="mine"),
            method="INVITE",
            uri="sip:x",
            cnonce="c",
        )


def test_select_challenge_prefers_sha256() -> None:
    values = [
        'Digest realm="r", nonce="n1", algorithm=MD5',
        'Basic realm="r"',
        'Digest realm="r", nonce="n3", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n2", algorithm=SHA-256',
    ]
    assert select_challenge(values).nonce == "n2"
    assert select_challenge(values[:2]).nonce == "n1"
    with pytest.raises(ProtocolError, match="^no supported Digest challenge$"):
        select_challenge(values[1:3])


def lookup(username: str) -> str | None:
    return {"Mufasa": "Circle Of Life", "alice": "pw"}.get(username)


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
@pytest.mark.parametrize("qop", ['qop="auth"', 'qop="auth-int"', ""])
def test_verify_round_trip(algorithm: str, qop: str) -> None:
    challenge = DigestChallenge.parse(f'Digest realm="r", nonce="n", algorithm={algorithm}, {qop}')
    value = build_authorization(
        challenge, MUFASA, method="INVITE", uri="sip:x", cnonce="c", body=b"sdp"
    )

    def verify(nonce_ok: bool) -> str | None:
        return verify_authorization(
            value,
            method="INVITE",
            password_lookup=lookup,
            realm="r",
            nonce_ok=lambda nonce: nonce_ok and nonce == "n",
            body=b"sdp",
        )

    assert verify(True) == "Mufasa"
    assert verify(False) is None


def test_verify_rfc2617_vector_and_failures() -> None:
    header = (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )

    def verify(value: str, *, realm: str = "testrealm@host.com", method: str = "GET") -> str | None:
        return verify_authorization(
            value, method=method, password_lookup=lookup, realm=realm, nonce_ok=lambda n: True
        )

    assert verify(header) == "Mufasa"
    assert verify(header, method="POST") is None
    assert verify(header, realm="elsewhere") is None
    assert verify(header.replace("6629fae4", "6629fae5")) is None
    assert verify(header.replace('"Mufasa"', '"Scar"')) is None
    assert verify(header.replace("qop=auth", "qop=auth-conf")) is None
    assert verify(header + ", algorithm=SHA-512-256") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Basic dXNlcjpwYXNz', "not Digest credentials"),
        ('Digest realm="r", nonce="n", uri="u", response="x"',
         "Digest credentials without username"),
        ('Digest username="a", realm="r", nonce="n", uri="u"',
         "Digest credentials without response"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth',
         "Digest credentials without cnonce"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=MD5-sess',
         "Digest credentials without cnonce"),
        ('Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce=c',
         "Digest credentials without nc"),
        ("", "not Digest credentials"),
        ('Digest username="a, realm="r"', "bad Digest parameter"),
    ],
)  # fmt: skip
def test_verify_rejections(value: str, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        verify_authorization(
            value, method="INVITE", password_lookup=lookup, realm="r", nonce_ok=bool
        )
    assert str(caught.value) == message
