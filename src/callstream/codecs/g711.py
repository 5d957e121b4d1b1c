"""G.711 mu-law (PCMU, RTP payload type 0) and A-law (PCMA, 8), RFC 3551 §4.5.14.

PCM is the canonical frame's 16-bit signed little-endian. ``audioop`` works on
native-endian samples, so this module requires a little-endian machine (checked
at import) rather than byteswapping every frame on the hot path.

``audioop`` is the stdlib module on 3.11/3.12 (deprecated, warning silenced here)
and the ``audioop-lts`` distribution, same import name, on 3.13+.

Passthrough: each decoder remembers its last (PCM, encoded) pair, and the encoder
of the same law returns the original bytes when asked to encode that very PCM
object again (``is``, not ``==``). A call's μ-law frame goes to a stream in μ-law
(the ``rtp`` wire, ``sln`` with ``format=ulaw``, Plivo's ``audio/x-mulaw``) right
after the leg decoded it, so the round trip through PCM is skipped and the client
gets the caller's bytes exactly (G.711's two zero codes included). The memo is a
single tuple read and written whole, so a thread can at worst miss it.
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


_NO_MEMO: tuple[bytes, bytes] = (b"", b"")
_last_ulaw: tuple[bytes, bytes] = _NO_MEMO  # (pcm, mu-law) of the last ulaw_decode
_last_alaw: tuple[bytes, bytes] = _NO_MEMO  # (pcm, A-law) of the last alaw_decode


def ulaw_decode(data: bytes) -> bytes:
    """Mu-law bytes to 16-bit LE PCM (two bytes out per byte in)."""
    global _last_ulaw
    pcm = audioop.ulaw2lin(data, _SAMPLE_WIDTH_BYTES)
    if type(data) is bytes:  # immutable, so safe to hand out again
        _last_ulaw = (pcm, data)
    return pcm


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM to mu-law bytes (one byte out per sample)."""
    last = _last_ulaw
    if pcm is last[0]:
        return last[1]
    return audioop.lin2ulaw(pcm, _SAMPLE_WIDTH_BYTES)


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes to 16-bit LE PCM (two bytes out per byte in)."""
    global _last_alaw
    pcm = audioop.alaw2lin(data, _SAMPLE_WIDTH_BYTES)
    if type(data) is bytes:  # immutable, so safe to hand out again
        _last_alaw = (pcm, data)
    return pcm


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit LE PCM to A-law bytes (one byte out per sample)."""
    last = _last_alaw
    if pcm is last[0]:
        return last[1]
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
