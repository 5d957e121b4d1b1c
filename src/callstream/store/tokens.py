"""API tokens: how they are made and how they are recognised without being stored.

A token is ``cs_`` followed by 43 URL-safe characters (``secrets.token_urlsafe(32)``:
256 random bits). The prefix makes a leaked token easy to spot in logs and by secret
scanners. Only the SHA-256 of a token is kept; a high-entropy secret needs no slow
password hash, and an exact-hash lookup keeps verification one indexed read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "cs_"
TOKEN_RANDOM_BYTES = 32


def new_token() -> str:
    """A fresh API token in clear: hand it to the user once, store only its hash."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)


def token_sha256(token: str) -> str:
    """The lowercase hex SHA-256 of the token's UTF-8 bytes: what the store keeps."""
    # surrogatepass: a malformed header must hash (and simply not match), not raise
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_match(stored_sha256: str, token: str) -> bool:
    """Whether ``token`` hashes to ``stored_sha256``, compared in constant time."""
    return hmac.compare_digest(stored_sha256.encode("ascii"), token_sha256(token).encode("ascii"))
