"""Registrations with a SIP trunk's registrar (RFC 3261 §10, §22.2). Mixed into
:class:`~callstream.sip.agent.SipAgent`.

``register()`` binds a Contact of ours to an address-of-record at a registrar and keeps
it bound: each REGISTER of one registration has the same Call-ID and From tag and the
next CSeq (§10.2); a 401/407 is answered once per realm with digest credentials (again
when the challenge says ``stale``), a 423 with the registrar's ``Min-Expires``; a
refresh starts without credentials and answers the registrar's new challenge (no nonce
is replayed). The binding is refreshed halfway through the granted expiry (taken from
our Contact's ``expires`` parameter, else the ``Expires`` header, else what we asked,
§10.2.4), and a registration that failed is tried again after 30 s, doubling to 10
minutes. Time is the caller's ``now``, as everywhere in the SIP core: the agent's timer
fires the refreshes. Each outcome is an event: ``Registered(handle, expires)`` (0 once
``unregister()`` is confirmed) or ``RegistrationFailed(handle, status, reason)``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from callstream.errors import ProtocolError
from callstream.sip._calls import AgentCore, resolve_host
from callstream.sip.auth import DigestCredentials, answer_challenge
from callstream.sip.dialog import with_tag
from callstream.sip.events import Registered, RegistrationFailed
from callstream.sip.message import SipRequest, SipResponse, new_branch, new_call_id, new_tag
from callstream.sip.uri import NameAddr, SipUri

RETRY_FIRST_S = 30.0
RETRY_MAX_S = 600.0
MIN_REFRESH_S = 5.0
"""A granted expiry this short is still refreshed no sooner than this."""


@dataclass(eq=False)
class Registration:
    """One binding kept at one registrar (its timer owner in the agent's queue)."""

    handle: str
    registrar: str
    aor: str
    contact_user: str
    destination: tuple[str, int]
    transport: str
    credentials: DigestCredentials | None
    expires: int
    call_id: str
    local_tag: str
    cseq: int = 0
    challenged: set[tuple[int, str]] = field(default_factory=set)
    min_expires_tried: bool = False
    authorization: tuple[str, str] | None = None
    """The credentials header of the REGISTER that answers a challenge (not kept after)."""
    txn_key: tuple[str, str] | None = None
    next_at: float | None = None
    """When to refresh (or retry): the agent's timer fires ``_registration_timer``."""
    retry_s: float = RETRY_FIRST_S
    unregistering: bool = False

    def deadline(self) -> float | None:
        return self.next_at


class RegistrationClient(AgentCore):
    """REGISTER out, kept refreshed; its responses and timers."""

    def register(
        self,
        registrar: str,
        aor: str,
        *,
        expires: int,
        now: float,
        contact_user: str = "callstream",
        credentials: DigestCredentials | None = None,
        transport: str = "UDP",
    ) -> str:
        """Start keeping ``aor`` bound at ``registrar`` (a SIP URI; the request goes to its
        host and port); returns the registration's handle."""
        host, port = SipUri.parse(registrar).host_port
        handle = secrets.token_hex(8)
        resolved = resolve_host(host)
        if resolved is None:
            self._events.append(RegistrationFailed(handle, 404, "cannot resolve host"))
            return handle
        registration = Registration(
            handle=handle,
            registrar=registrar,
            aor=aor,
            contact_user=contact_user,
            destination=(resolved, port),
            transport=transport.upper(),
            credentials=credentials,
            expires=expires,
            call_id=new_call_id(self.local_host),
            local_tag=new_tag(),
        )
        self._registrations[handle] = registration
        self._send_register(registration, registration.expires, now)
        return handle

    def unregister(self, handle: str, now: float) -> None:
        """Remove the binding (REGISTER with Expires: 0); ``Registered(handle, 0)`` follows."""
        registration = self._registrations.get(handle)
        if registration is None or registration.unregistering:
            return
        registration.unregistering = True
        registration.next_at = None
        registration.challenged.clear()
        self._send_register(registration, 0, now)

    @property
    def registrations(self) -> int:
        """How many registrations are kept (or being removed)."""
        return len(self._registrations)

    def active_registrations(self) -> frozenset[str]:
        return frozenset(self._registrations)

    def _send_register(self, registration: Registration, expires: int, now: float) -> None:
        registration.cseq += 1
        request = SipRequest("REGISTER", registration.registrar)
        headers = request.headers
        headers.add("Via", self._via(registration.transport, new_branch()))
        headers.add("Max-Forwards", "70")
        headers.add("From", with_tag(f"<{registration.aor}>", registration.local_tag))
        headers.add("To", f"<{registration.aor}>")
        headers.add("Call-ID", registration.call_id)
        headers.add("CSeq", f"{registration.cseq} REGISTER")
        headers.add("Contact", self._contact(registration.transport, registration.contact_user))
        headers.add("Expires", str(expires))
        headers.add("User-Agent", self.user_agent)
        if registration.authorization is not None:
            headers.add(*registration.authorization)
        headers.add("Content-Length", "0")
        txn = self._start_client(
            None, request, registration.destination, now, registration.transport
        )
        registration.txn_key = txn.key
        self._register_txns[txn.key] = registration.handle

    def _on_register_outcome(
        self, key: tuple[str, str], response: SipResponse | None, status: int, now: float
    ) -> None:
        """A REGISTER's final response (or timeout, as 408/503)."""
        handle = self._register_txns.pop(key, None)
        registration = self._registrations.get(handle or "")
        if registration is None or registration.txn_key != key or status < 200:
            return
        registration.txn_key = None
        if 200 <= status < 300 and response is not None:
            self._registered(registration, response, now)
            return
        if response is not None and status in (401, 407):
            if self._answer_challenge(registration, response, now):
                return
        if response is not None and status == 423 and not registration.min_expires_tried:
            minimum = (response.headers.get("Min-Expires") or "").strip()
            if minimum.isdigit() and int(minimum) > registration.expires:
                registration.min_expires_tried = True
                registration.expires = int(minimum)
                self._send_register(registration, registration.expires, now)
                return
        reason = response.reason if response is not None else "no response"
        self._events.append(RegistrationFailed(registration.handle, status, reason))
        if registration.unregistering:
            del self._registrations[registration.handle]
            return
        registration.authorization = None
        registration.challenged.clear()
        registration.next_at = now + registration.retry_s
        registration.retry_s = min(registration.retry_s * 2, RETRY_MAX_S)
        self._timer_queue.schedule(registration)

    def _registered(self, registration: Registration, response: SipResponse, now: float) -> None:
        if registration.unregistering:
            del self._registrations[registration.handle]
            self._events.append(Registered(registration.handle, 0))
            return
        granted = _granted_expiry(response, registration)
        expires = registration.expires if granted is None else granted
        registration.challenged.clear()
        registration.authorization = None  # a refresh is challenged afresh
        registration.retry_s = RETRY_FIRST_S
        registration.next_at = now + max(expires / 2, MIN_REFRESH_S)
        self._timer_queue.schedule(registration)
        self._events.append(Registered(registration.handle, expires))

    def _answer_challenge(
        self, registration: Registration, response: SipResponse, now: float
    ) -> bool:
        """Re-send with digest credentials (§22.2); once per (status, realm) unless stale."""
        if registration.credentials is None:
            return False
        header = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        authorization = answer_challenge(
            response.status,
            response.headers.get_all(header),
            registration.credentials,
            registration.challenged,
            method="REGISTER",
            uri=registration.registrar,
            cnonce=secrets.token_hex(8),
        )
        if authorization is None:
            return False
        registration.authorization = authorization
        expires = 0 if registration.unregistering else registration.expires
        self._send_register(registration, expires, now)
        return True

    def _registration_timer(self, registration: Registration, now: float) -> None:
        if registration.next_at is None or now < registration.next_at:
            return
        registration.next_at = None
        if registration.handle in self._registrations and registration.txn_key is None:
            self._send_register(registration, registration.expires, now)


def _granted_expiry(response: SipResponse, registration: Registration) -> int | None:
    """The expiry the registrar granted our binding (§10.2.4), or None if it did not say."""
    ours = f"{registration.contact_user}@"
    for value in response.headers.get_all("Contact"):  # a list header: split per contact
        try:
            contact = NameAddr.parse(value)
        except ProtocolError:
            continue
        expires = contact.params.get("expires")
        if ours in str(contact.uri) and expires is not None and expires.isdigit():
            return int(expires)
    header = (response.headers.get("Expires") or "").strip()
    return int(header) if header.isdigit() else None
