"""SIP dialogs (RFC 3261 §12): identity, route set, targets and CSeq bookkeeping.

A :class:`Dialog` is the state two user agents share after an INVITE: the dialog id
(Call-ID, local tag, remote tag), the local and remote party (From/To values with their
tags), the remote target (the peer's Contact), the route set (Record-Route), and the
local and remote CSeq numbers. It builds in-dialog requests (§12.2.1.1) and checks
in-dialog requests received (§12.2.2). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, auto

from callstream.errors import SipProtocolError
from callstream.sip.message import Headers, SipRequest, SipResponse
from callstream.sip.uri import SipUri

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag), §12


class DialogState(Enum):
    """§12: a dialog is early after a 1xx with a To tag, confirmed after a 2xx."""

    EARLY = auto()
    CONFIRMED = auto()
    TERMINATED = auto()


def uri_of(name_addr: str) -> str:
    """The URI inside a name-addr / addr-spec header value (``"A" <sip:a@h>;tag=1``).

    Parameters after an addr-spec without angle brackets belong to the header, not to
    the URI (§20.10), so they are dropped.
    """
    start = name_addr.find("<")
    if start >= 0:
        end = name_addr.find(">", start)
        return name_addr[start + 1 : end if end > start else len(name_addr)].strip()
    return name_addr.split(";", 1)[0].strip()


def with_tag(header_value: str, tag: str) -> str:
    """A From/To value with ``;tag=`` appended (§19.3); URIs get angle brackets first
    so that the tag cannot be mistaken for a URI parameter."""
    value = header_value.strip()
    if "<" not in value:
        value = f"<{value}>"
    return f"{value};tag={tag}"


def hop_of(uri_text: str) -> tuple[str, int]:
    """(host, port) a request for ``uri_text`` goes to; 5060, or 5061 for sips (§19.1.2)."""
    return SipUri.parse(uri_text).host_port


def _has_lr(route: str) -> bool:
    return SipUri.parse(uri_of(route)).has_param("lr")


@dataclass(slots=True)
class Dialog:
    """One dialog's state, RFC 3261 §12.1 (creation) and §12.2 (requests within)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_party: str  # our From (UAC) / To (UAS) value, tag included
    remote_party: str  # their To (UAC) / From (UAS) value, tag included
    remote_target: str  # URI from the peer's Contact
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 0
    remote_cseq: int | None = None
    is_uac: bool = True
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> DialogId:
        """(Call-ID, local tag, remote tag): the dialog id of §12."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac_response(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The UAC's dialog from a 1xx/2xx with a To tag to its INVITE (§12.1.2).

        The route set is the response's Record-Route in reverse order; the remote
        target its Contact (else the request-URI); the local CSeq the INVITE's.
        """
        remote_tag = response.to_tag
        if not remote_tag:
            raise SipProtocolError("response creates no dialog: To has no tag", status=400)
        contact = response.headers.get("Contact")
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=remote_tag,
            local_party=request.headers.get("From") or "",
            remote_party=response.headers.get("To") or "",
            remote_target=uri_of(contact) if contact else request.uri,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_cseq=request.cseq[0],
            remote_cseq=None,
            is_uac=True,
            state=state,
        )

    @classmethod
    def from_uas_request(cls, request: SipRequest, local_tag: str) -> Dialog:
        """The UAS's dialog from an INVITE it answers with ``local_tag`` (§12.1.1).

        The route set is the request's Record-Route in order; the remote target its
        Contact (else the From URI); the remote CSeq the INVITE's.
        """
        contact = request.headers.get("Contact")
        from_value = request.headers.get("From") or ""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_party=with_tag(request.headers.get("To") or "", local_tag),
            remote_party=from_value,
            remote_target=uri_of(contact) if contact else uri_of(from_value),
            route_set=list(request.headers.get_all("Record-Route")),
            local_cseq=0,
            remote_cseq=request.cseq[0],
            is_uac=False,
        )

    def confirm(self, message: SipRequest | SipResponse | None = None) -> None:
        """Move an early dialog to confirmed (a 2xx, §12.1); a UAC's route set is
        recomputed from the 2xx, which is authoritative (§12.1.2, §13.2.2.4)."""
        self.state = DialogState.CONFIRMED
        if isinstance(message, SipResponse) and self.is_uac:
            self.route_set = list(reversed(message.headers.get_all("Record-Route")))
            self.refresh_target(message)

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """Take the Contact of a target refresh (re-INVITE or its 2xx) as the new
        remote target (§12.2.1.2, §12.2.2)."""
        contact = message.headers.get("Contact")
        if contact:
            self.remote_target = uri_of(contact)

    def check_remote_request(self, request: SipRequest) -> None:
        """Check and record the remote CSeq of an in-dialog request (§12.2.2).

        A lower CSeq than the last one seen is out of order: SipProtocolError with
        status 500. ACK and CANCEL carry their INVITE's number and are not checked.
        """
        if request.method in ("ACK", "CANCEL"):
            return
        number = request.cseq[0]
        if self.remote_cseq is not None and number < self.remote_cseq:
            raise SipProtocolError(f"CSeq {number} lower than {self.remote_cseq}", status=500)
        self.remote_cseq = number

    def next_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route, else the remote target (§12.2.1.1)."""
        if self.route_set:
            return hop_of(uri_of(self.route_set[0]))
        return hop_of(self.remote_target)

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        """Build a request within this dialog (§12.2.1.1).

        ``via`` is the complete Via value (with its new branch). The local CSeq is
        incremented unless ``cseq`` is given (the ACK of a 2xx reuses the INVITE's
        number, §13.2.2.4). With loose routing (first route has ``lr``) the
        Request-URI is the remote target and Route the route set; with strict routing
        the Request-URI is the first route and the remote target goes last in Route.
        """
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        request_uri, routes = self._request_uri_and_routes()
        headers = Headers()
        headers.add("Via", via)
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", route)
        headers.add("From", self.local_party)
        headers.add("To", self.remote_party)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if contact is not None:
            headers.add("Contact", contact)
        for name, value in extra_headers:
            headers.add(name, value)
        if content_type is not None and body:
            headers.add("Content-Type", content_type)
        return SipRequest(method, request_uri, headers, body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        if _has_lr(self.route_set[0]):
            return self.remote_target, list(self.route_set)
        # Strict routing (RFC 2543 proxies): §12.2.1.1, the last route is the target.
        first = uri_of(self.route_set[0])
        return first, [*self.route_set[1:], f"<{self.remote_target}>"]
