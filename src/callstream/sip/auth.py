"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617 §3, RFC 7616, RFC 8760).

Client side: ``DigestChallenge.parse`` reads a WWW-Authenticate / Proxy-Authenticate value,
``select_challenge`` picks the strongest one we support, ``build_authorization`` writes the
Authorization / Proxy-Authorization value, and ``answer_challenge`` does all three for a
401/407 the way every client of ours (INVITE, REGISTER) answers it. Server side:
``verify_authorization`` checks one, so tests (and a future registrar) can play the
other end.

Algorithms: MD5, MD5-sess, SHA-256, SHA-256-sess; qop ``auth``, ``auth-int`` or none
(RFC 2069 compatibility). Errors are ``ProtocolError`` with the messages listed per function.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from callstream.errors import ProtocolError
from callstream.sip._grammar import TOKEN_RE, closing_quote, quote, unquote

__all__ = [
    "DigestChallenge",
    "DigestCredentials",
    "answer_challenge",
    "build_authorization",
    "select_challenge",
    "verify_authorization",
]

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
# canonical spelling of each supported algorithm, by upper-case name (RFC 7616 §6.1)
_ALGORITHMS = {
    "MD5": "MD5",
    "MD5-SESS": "MD5-sess",
    "SHA-256": "SHA-256",
    "SHA-256-SESS": "SHA-256-sess",
}
_STRENGTH = {"SHA-256": 4, "SHA-256-sess": 3, "MD5": 2, "MD5-sess": 1}


def _digest_params(value: str, not_digest: str) -> dict[str, str]:
    """The params of ``Digest name=value, name="quoted", ...`` (RFC 7235 §2.1).

    Names are lower-cased; quoted values are unquoted. Raises ``ProtocolError(not_digest)``
    for another scheme and ``ProtocolError("bad Digest parameter")`` on malformed input.
    """
    scheme, *remainder = value.strip().split(None, 1) or [""]
    if scheme.lower() != "digest":
        raise ProtocolError(not_digest)
    rest = remainder[0] if remainder else ""
    params: dict[str, str] = {}
    index, length = 0, len(rest)
    while index < length:
        if rest[index] in " \t,":
            index += 1
            continue
        equals = rest.find("=", index)
        name = rest[index:equals].strip() if equals >= 0 else ""
        if not TOKEN_RE.fullmatch(name):
            raise ProtocolError("bad Digest parameter")
        index = equals + 1
        while index < length and rest[index] in " \t":
            index += 1
        if index < length and rest[index] == '"':
            end = closing_quote(rest, index)
            if end < 0:
                raise ProtocolError("bad Digest parameter")
            params[name.lower()] = unquote(rest[index : end + 1])
            index = end + 1
        else:
            comma = rest.find(",", index)
            end = length if comma < 0 else comma
            params[name.lower()] = rest[index:end].strip()
            index = end
    return params


@dataclass(frozen=True)
class DigestChallenge:
    """A Digest challenge from a 401 WWW-Authenticate or 407 Proxy-Authenticate (§22.1).

    ``algorithm`` is canonically spelled (``MD5``, ``MD5-sess``, ``SHA-256``,
    ``SHA-256-sess``) when supported, else kept as received (see ``supported``).
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header_value: str) -> DigestChallenge:
        """Parse a challenge. Raises ProtocolError: ``not a Digest challenge``,
        ``bad Digest parameter``, ``Digest challenge without realm``,
        ``Digest challenge without nonce``."""
        params = _digest_params(header_value, "not a Digest challenge")
        if "realm" not in params:
            raise ProtocolError("Digest challenge without realm")
        if "nonce" not in params:
            raise ProtocolError("Digest challenge without nonce")
        algorithm = params.get("algorithm", "MD5")
        qop = tuple(item.strip() for item in params.get("qop", "").split(",") if item.strip())
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_ALGORITHMS.get(algorithm.upper(), algorithm),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )

    @property
    def supported(self) -> bool:
        """Whether ``build_authorization`` can answer this challenge."""
        return self.algorithm in _STRENGTH


@dataclass(frozen=True)
class DigestCredentials:
    """A username and password for ``realm`` (``None``: any realm)."""

    username: str
    password: str
    realm: str | None = None


def select_challenge(header_values: Iterable[str]) -> DigestChallenge:
    """The strongest supported Digest challenge among several (RFC 8760 §2.4, RFC 7616 §3.7).

    Values that do not parse or are not Digest are skipped. Raises
    ``ProtocolError("no supported Digest challenge")`` when none is left.
    """
    best: DigestChallenge | None = None
    for value in header_values:
        try:
            challenge = DigestChallenge.parse(value)
        except ProtocolError:
            continue
        if challenge.supported and (
            best is None or _STRENGTH[challenge.algorithm] > _STRENGTH[best.algorithm]
        ):
            best = challenge
    if best is None:
        raise ProtocolError("no supported Digest challenge")
    return best


def _response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    cnonce: str,
    nc_text: str,
    body: bytes,
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (RFC 2617 §3.2.2.1 when qop is None)."""
    session = algorithm.endswith("-sess")
    digest = _HASHES[algorithm.removesuffix("-sess")]
    ha1 = digest(f"{username}:{realm}:{password}".encode())
    if session:
        ha1 = digest(f"{ha1}:{nonce}:{cnonce}".encode())
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{digest(body)}"
    ha2 = digest(a2.encode())
    if qop is None:
        return digest(f"{ha1}:{nonce}:{ha2}".encode())
    return digest(f"{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}".encode())


def build_authorization(
    challenge: DigestChallenge,
    credentials: DigestCredentials,
    *,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` (§22.2, §22.3).

    Uses qop=auth when offered (else auth-int when that alone is offered, else the
    RFC 2069 form without qop/nc, and without cnonce unless the algorithm is -sess),
    echoes algorithm and opaque. Raises
    ProtocolError ``unsupported Digest algorithm: <name>`` or
    ``no credentials for realm <realm>``.
    """
    if not challenge.supported:
        raise ProtocolError(f"unsupported Digest algorithm: {challenge.algorithm}")
    if credentials.realm is not None and credentials.realm != challenge.realm:
        raise ProtocolError(f"no credentials for realm {challenge.realm}")
    qop = "auth" if "auth" in challenge.qop else "auth-int" if "auth-int" in challenge.qop else None
    nc_text = f"{nc:08x}"
    response = _response(
        challenge.algorithm,
        username=credentials.username,
        realm=challenge.realm,
        password=credentials.password,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        cnonce=cnonce,
        nc_text=nc_text,
        body=body,
    )
    parts = [
        f"username={quote(credentials.username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None or challenge.algorithm.endswith("-sess"):
        parts.append(f"cnonce={quote(cnonce)}")  # -sess hashes it even without qop
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def verify_authorization(
    header_value: str,
    *,
    method: str,
    password_lookup: Callable[[str], str | None],
    realm: str,
    nonce_ok: Callable[[str], bool],
    body: bytes = b"",
) -> str | None:
    """The authenticated username, or None when the credentials do not check out (§22.4).

    None for: another realm, a nonce ``nonce_ok`` refuses, an unknown user, an
    unsupported algorithm or a wrong response. Comparing ``uri`` with the Request-URI is
    the caller's job. Raises ProtocolError ``not Digest credentials``,
    ``bad Digest parameter`` or ``Digest credentials without <name>`` (a missing username,
    realm, nonce, uri or response; cnonce with qop or -sess; nc with qop) — answer 400.
    """
    params = _digest_params(header_value, "not Digest credentials")
    for name in ("username", "realm", "nonce", "uri", "response"):
        if name not in params:
            raise ProtocolError(f"Digest credentials without {name}")
    qop = params.get("qop")
    algorithm = _ALGORITHMS.get(params.get("algorithm", "MD5").upper())
    session = algorithm is not None and algorithm.endswith("-sess")
    if (qop is not None or session) and "cnonce" not in params:
        raise ProtocolError("Digest credentials without cnonce")
    if qop is not None and "nc" not in params:
        raise ProtocolError("Digest credentials without nc")
    if algorithm is None or qop not in (None, "auth", "auth-int"):
        return None
    if params["realm"] != realm or not nonce_ok(params["nonce"]):
        return None
    password = password_lookup(params["username"])
    if password is None:
        return None
    expected = _response(
        algorithm,
        username=params["username"],
        realm=realm,
        password=password,
        nonce=params["nonce"],
        method=method,
        uri=params["uri"],
        qop=qop,
        cnonce=params.get("cnonce", ""),
        nc_text=params.get("nc", ""),
        body=body,
    )
    if not hmac.compare_digest(expected, params["response"].lower()):
        return None
    return params["username"]


def answer_challenge(
    status: int,
    challenges: Iterable[str],
    credentials: DigestCredentials,
    answered: set[tuple[int, str]],
    *,
    method: str,
    uri: str,
    cnonce: str,
    body: bytes = b"",
) -> tuple[str, str] | None:
    """The header (name, value) that answers a 401 (``WWW-Authenticate`` values) or 407
    (``Proxy-Authenticate``) with ``credentials`` (§22.2, §22.3), or None when it must
    not be answered: no supported challenge, another realm than the credentials', or
    this (status, realm) answered before (``answered``, updated here) and not ``stale``.
    """
    try:
        challenge = select_challenge(challenges)
    except ProtocolError:
        return None
    if credentials.realm is not None and credentials.realm != challenge.realm:
        return None
    attempt = (status, challenge.realm)
    if attempt in answered and not challenge.stale:
        return None
    answered.add(attempt)
    value = build_authorization(
        challenge, credentials, method=method, uri=uri, cnonce=cnonce, body=body
    )
    return ("Proxy-Authorization" if status == 407 else "Authorization", value)
