"""REGISTER kept at a registrar (sip/registration.py), driven by ``now``: the agent's
datagrams are read, the registrar's answers written by hand."""

from __future__ import annotations

import pytest

from callstream.sip.agent import (
    DigestCredentials,
    Registered,
    RegistrationFailed,
    SipAgent,
    SipEvent,
)
from callstream.sip.auth import verify_authorization
from callstream.sip.message import SipRequest, parse_message, response_for
from callstream.sip.registration import RETRY_FIRST_S

REGISTRAR = ("127.0.0.1", 5080)
REGISTRAR_URI = "sip:127.0.0.1:5080"
AOR = "sip:alice@127.0.0.1"
CHALLENGE = 'Digest realm="trunk", nonce="{nonce}", qop="auth", algorithm=MD5'


def start(**options: object) -> tuple[SipAgent, str]:
    agent = SipAgent("127.0.0.1", 5060, "test/1")
    kwargs: dict[str, object] = {"expires": 600, "now": 0.0, "contact_user": "alice"}
    kwargs.update(options)
    handle = agent.register(REGISTRAR_URI, AOR, **kwargs)  # type: ignore[arg-type]
    return agent, handle


def sent(agent: SipAgent) -> list[SipRequest]:
    requests = []
    for data, addr, _ in agent.datagrams_to_send():
        assert addr == REGISTRAR
        message = parse_message(data)
        assert isinstance(message, SipRequest)
        requests.append(message)
    return requests


def events(agent: SipAgent) -> list[SipEvent]:
    out = []
    while (event := agent.next_event()) is not None:
        out.append(event)
    return out


def answer(
    agent: SipAgent, request: SipRequest, status: int, now: float, *headers: tuple[str, str]
) -> None:
    response = response_for(request, status, to_tag="reg1")
    for name, value in headers:
        response.headers.add(name, value)
    agent.receive_datagram(response.serialize(), REGISTRAR, now)


def test_register_answers_the_challenge_then_refreshes_halfway() -> None:
    agent, handle = start(credentials=DigestCredentials("alice", "secret"))
    (first,) = sent(agent)
    assert first.method == "REGISTER" and first.uri == REGISTRAR_URI
    assert first.headers.get("To") == f"<{AOR}>"
    assert first.headers.get("Contact") == "<sip:alice@127.0.0.1:5060>"
    assert first.headers.get("Expires") == "600"
    assert first.cseq == (1, "REGISTER")
    assert first.headers.get("Authorization") is None
    answer(agent, first, 401, 0.1, ("WWW-Authenticate", CHALLENGE.format(nonce="n1")))
    (second,) = sent(agent)
    assert second.cseq == (2, "REGISTER") and second.call_id == first.call_id
    assert second.from_tag == first.from_tag
    user = verify_authorization(
        second.headers.get("Authorization") or "",
        method="REGISTER",
        password_lookup={"alice": "secret"}.get,
        realm="trunk",
        nonce_ok=lambda nonce: nonce == "n1",
    )
    assert user == "alice"
    assert events(agent) == []
    contact = "<sip:alice@127.0.0.1:5060>;expires=120, <sip:other@127.0.0.9>;expires=9"
    answer(agent, second, 200, 0.2, ("Contact", contact))
    assert events(agent) == [Registered(handle, 120)]  # our binding's expiry, not Expires
    agent.handle_timer(59.0)
    assert sent(agent) == []
    agent.handle_timer(60.2)  # halfway through the 120 s granted
    (refresh,) = sent(agent)
    assert refresh.cseq == (3, "REGISTER") and refresh.call_id == first.call_id
    assert refresh.headers.get("Authorization") is None  # challenged afresh, no replay
    answer(agent, refresh, 401, 60.3, ("WWW-Authenticate", CHALLENGE.format(nonce="n2")))
    (again,) = sent(agent)
    assert "n2" in (again.headers.get("Authorization") or "")
    answer(agent, again, 200, 60.4, ("Expires", "300"))
    assert events(agent) == [Registered(handle, 300)]


def test_wrong_credentials_fail_once_and_are_tried_again_later() -> None:
    agent, handle = start(credentials=DigestCredentials("alice", "wrong"))
    (first,) = sent(agent)
    answer(agent, first, 401, 0.1, ("WWW-Authenticate", CHALLENGE.format(nonce="n1")))
    (second,) = sent(agent)
    answer(agent, second, 401, 0.2, ("WWW-Authenticate", CHALLENGE.format(nonce="n1")))
    assert sent(agent) == []  # the same realm is not answered twice
    assert events(agent) == [RegistrationFailed(handle, 401, "Unauthorized")]
    agent.handle_timer(0.2 + RETRY_FIRST_S - 1)
    assert sent(agent) == []
    agent.handle_timer(0.2 + RETRY_FIRST_S)
    (retry,) = sent(agent)
    assert retry.cseq == (3, "REGISTER") and retry.headers.get("Authorization") is None


def test_interval_too_brief_is_retried_with_min_expires() -> None:
    agent, handle = start(expires=60)
    (first,) = sent(agent)
    answer(agent, first, 423, 0.1, ("Min-Expires", "3600"))
    (second,) = sent(agent)
    assert second.headers.get("Expires") == "3600"
    answer(agent, second, 200, 0.2)
    assert events(agent) == [Registered(handle, 3600)]


def test_no_answer_is_a_408_and_unregister_removes_the_binding() -> None:
    agent, handle = start()
    (first,) = sent(agent)
    now = 0.0
    while now < 40:  # timer F: 64*T1 = 32 s of retransmissions
        now += 0.5
        agent.handle_timer(now)
    retransmitted = sent(agent)
    assert retransmitted and all(r.cseq == (1, "REGISTER") for r in retransmitted)
    (failed,) = events(agent)
    assert isinstance(failed, RegistrationFailed) and failed.status == 408
    agent.handle_timer(now + RETRY_FIRST_S)
    (retry,) = sent(agent)
    answer(agent, retry, 200, now + RETRY_FIRST_S + 0.1)
    assert events(agent) == [Registered(handle, 600)]
    agent.unregister(handle, now + 50)
    (removal,) = sent(agent)
    assert removal.headers.get("Expires") == "0"
    assert removal.call_id == first.call_id
    answer(agent, removal, 200, now + 50.1)
    assert events(agent) == [Registered(handle, 0)]
    assert agent.registrations == 0
    agent.handle_timer(now + 1000)
    assert sent(agent) == []  # nothing is refreshed after


@pytest.mark.parametrize("status", [403, 404, 500])
def test_a_refusal_is_reported_with_its_status(status: int) -> None:
    agent, handle = start()
    (first,) = sent(agent)
    answer(agent, first, status, 0.1)
    (failed,) = events(agent)
    assert isinstance(failed, RegistrationFailed)
    assert (failed.registration_handle, failed.status) == (handle, status)


def test_a_registrar_that_is_not_an_ip_literal_fails_at_once() -> None:
    agent = SipAgent("127.0.0.1", 5060)
    handle = agent.register("sip:registrar.example.com", AOR, expires=600, now=0.0)
    assert events(agent) == [RegistrationFailed(handle, 404, "cannot resolve host")]
    assert agent.datagrams_to_send() == []
