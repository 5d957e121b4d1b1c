"""The one error root of callstream.

Cores raise; adapters catch, log, and reply (SIP 4xx, WebSocket close code, HTTP 4xx
with a JSON body). The tree::

    CallstreamError
    ├── ProtocolError            malformed input on some wire; carries a status hint
    │   ├── SipParseError        a SIP message that cannot be parsed (status 400)
    │   ├── SdpError             an SDP body that cannot be parsed or answered (400/488)
    │   ├── RtpError             an RTP/RTCP packet that cannot be parsed
    │   └── SipProtocolError     a well-formed SIP message that breaks the protocol
    │                            (no transaction/dialog: 481, bad CSeq: 400/500, ...)
    ├── MediaError               audio that cannot be read or converted (WAV, codec)
    ├── ConfigError              a bad setting, route or action
    ├── TransportError           a socket could not be opened or used
    ├── StoreError               the database failed (records could not be read/written)
    ├── NotFoundError            no such resource for this account (HTTP 404)
    ├── ConflictError            the resource is in the wrong state (HTTP 409)
    └── LimitError               over a configured limit, e.g. streams per call (HTTP 429)
"""

from __future__ import annotations


class CallstreamError(Exception):
    """Root of every error callstream raises on purpose."""


class ProtocolError(CallstreamError):
    """Malformed input received on a wire.

    ``status`` is the SIP/HTTP status that an adapter should answer with, when it
    can answer at all.
    """

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def reason(self) -> str:
        """The message, made safe to use as a SIP reason phrase (one line, printable)."""
        text = " ".join(str(self).split())
        return "".join(ch for ch in text if ch.isprintable())[:120] or "Bad Request"


class SipParseError(ProtocolError):
    """A SIP message that cannot be parsed; answer 400 with this reason if addressable."""


class SdpError(ProtocolError):
    """An SDP body that cannot be parsed (400) or has no acceptable codec (488)."""


class RtpError(ProtocolError):
    """An RTP or RTP event packet that cannot be parsed."""


class SipProtocolError(ProtocolError):
    """A parseable SIP message that violates the protocol (e.g. unknown dialog: 481)."""


class MediaError(CallstreamError):
    """Audio that cannot be read, decoded or converted."""


class ConfigError(CallstreamError):
    """A setting, route or action that is invalid; the message names the field."""


class TransportError(CallstreamError):
    """A socket could not be opened or used (e.g. no free RTP port)."""


class StoreError(CallstreamError):
    """The database could not be read or written."""


class NotFoundError(CallstreamError):
    """No such resource for this account (another account's is "no such" too)."""


class ConflictError(CallstreamError):
    """The resource exists but cannot do this now (e.g. the call has ended)."""


class LimitError(CallstreamError):
    """Over a configured limit (e.g. media streams per call)."""
