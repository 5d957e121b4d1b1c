"""G.711 mu-law (PCMU, RTP payload type 0) and A-law (PCMA, 8), RFC 3551 §4.5.14.

PCM is the canonical frame's 16-bit signed little-endian. ``audioop`` works on
native-endian samples, so this module requires a little-endian machine (checked
at import) rather than byteswapping every frame on the hot path.

``audioop`` is the stdlib module on 3.11/3.12 (deprecated, warning silenced here)
and the ``audioop-lts`` distribution, same import name, on 3.13+.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

from callstream.errors import MediaError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError(
        "callstream.codecs.g711 needs a little-endian machine (audioop is native-endian)"
    )

PCMU_PAYLOAD_TYPE = 0
PCMA_PAYLOAD_TYPE = 8
_SAMPLE_WIDTH_BYTES = 2

Codec = Callable[[bytes], bytes]


def ulaw_decode(data: bytes) -> bytes:
    """Mu-law bytes to 16-bit LE PCM (two bytes out per byte in)."""
    return audioop.ulaw2lin(data, _SAMPLE_WIDTH_BYTES)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM to mu-law bytes (one byte out per sample)."""
    return audioop.lin2ulaw(pcm, _SAMPLE_WIDTH_BYTES)


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes to 16-bit LE PCM (two bytes out per byte in)."""
    return audioop.alaw2lin(data, _SAMPLE_WIDTH_BYTES)


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM to A-law bytes (one byte out per sample)."""
    return audioop.lin2alaw(pcm, _SAMPLE_WIDTH_BYTES)


_DECODERS: dict[int, Codec] = {PCMU_PAYLOAD_TYPE: ulaw_decode, PCMA_PAYLOAD_TYPE: alaw_decode}
_ENCODERS: dict[int, Codec] = {PCMU_PAYLOAD_TYPE: ulaw_encode, PCMA_PAYLOAD_TYPE: alaw_encode}


def decoder_for(payload_type: int) -> Codec:
    """The decoder for a static G.711 payload type (0 or 8); MediaError otherwise."""
    try:
        return _DECODERS[payload_type]
    except KeyError:
        raise MediaError(f"no G.711 codec for payload type {payload_type}") from None


def encoder_for(payload_type: int) -> Codec:
    """The encoder for a static G.711 payload type (0 or 8); MediaError otherwise."""
    try:
        return _ENCODERS[payload_type]
    except KeyError:
        raise MediaError(f"no G.711 codec for payload type {payload_type}") from None
