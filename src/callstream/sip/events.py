"""Events the SIP user agent core emits (drained with ``SipAgent.next_event()``).

Frozen dataclasses named in the past tense; each call event carries the opaque
``call_handle`` the agent gave the call (``SipAgent.invite`` returns it for outgoing
calls, :class:`IncomingCall` announces it for incoming ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callstream.sip.message import SipRequest


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE arrived (100 Trying already sent); answer with ``respond()``."""

    call_handle: str
    request: SipRequest
    sdp: bytes | None
    remote_addr: tuple[str, int]


@dataclass(frozen=True, slots=True)
class CallProgressed:
    """Our INVITE got a 101-199 provisional response (RFC 3261 §13.2.2.1)."""

    call_handle: str
    status: int
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Our INVITE got a 2xx; the ACK has been sent (§13.2.2.4)."""

    call_handle: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx to an incoming INVITE arrived (§13.3.1.4).

    ``sdp`` is the ACK's application/sdp body, else None. It matters for a late offer
    (an INVITE without SDP, RFC 3264 §5, RFC 3261 §13.2.1): our 2xx then carried the
    offer and this is the answer; None there means the caller sent no answer.
    """

    call_handle: str
    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our INVITE ended without a dialog: a final non-2xx, a timeout (408) or a
    local failure (e.g. 404 "cannot resolve host")."""

    call_handle: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller CANCELled an incoming INVITE before we answered (§9.2); 487 sent."""

    call_handle: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A confirmed call is over: BYE received or sent and done, or the ACK never came."""

    call_handle: str
    by: Literal["remote", "local"]
    reason: str


@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """The peer sent a re-INVITE (§14.2); answer with ``answer_reinvite()``."""

    call_handle: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class ReinviteConfirmed:
    """The ACK for our 2xx to the peer's re-INVITE arrived (§14.2, §13.3.1.4).

    ``sdp`` is the ACK's application/sdp body, else None. It matters when the re-INVITE
    carried no offer (a session refresh, RFC 3261 §14.2, RFC 3264 §8): our 2xx then
    carried the offer and this is the answer.
    """

    call_handle: str
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class ReinviteAnswered:
    """Our re-INVITE got its final response (§14.1); 2xx already ACKed."""

    call_handle: str
    status: int
    sdp: bytes | None


@dataclass(frozen=True, slots=True)
class Registered:
    """A registrar accepted our binding for ``expires`` seconds (0: it is removed)."""

    registration_handle: str
    expires: int


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    """A REGISTER was refused (``status``) or went unanswered (408); it is tried again."""

    registration_handle: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A digit arrived in an INFO (application/dtmf-relay or application/dtmf)."""

    call_handle: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """We refused a message: ``status`` is the 4xx/5xx sent, 0 when it was dropped."""

    addr: tuple[str, int]
    status: int
    reason: str


SipEvent = (
    IncomingCall
    | CallProgressed
    | CallAnswered
    | CallConfirmed
    | CallFailed
    | CallCancelled
    | CallEnded
    | ReinviteReceived
    | ReinviteConfirmed
    | ReinviteAnswered
    | DtmfReceived
    | Registered
    | RegistrationFailed
    | MessageRejected
)
