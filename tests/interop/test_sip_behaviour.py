"""SIP behaviour seen from real peers: CANCEL, hold, OPTIONS, errors, timeouts, limits."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, Gateway, PortAllocator, callstream_cli
from tests.interop.media import G711A_PCAP

SLOW_AND_ECHO = """
[[routes]]
match = "slow"
actions = [
  { type = "sleep", option = { duration = 5000 } },
  { type = "answer" },
  { type = "echo" },
]

[[routes]]
match = "echo"
actions = [ { type = "answer" }, { type = "echo" } ]
"""


def need_sipp_pcaps() -> None:
    if not G711A_PCAP.exists():
        pytest.skip(f"{G711A_PCAP} missing (Debian package sip-tester)")


def assert_call_works(gateway: Gateway, sipp: SippRunner) -> None:
    result = sipp("uac_answered_only", gateway.uri_host, "-s", "echo", timeout=20)
    assert result.returncode == 0, result.explain()


def test_cancel_while_ringing(gateway_factory: GatewayFactory, sipp: SippRunner) -> None:
    gateway = gateway_factory(SLOW_AND_ECHO)
    result = sipp("uac_cancel", gateway.uri_host, "-s", "slow", timeout=20)
    assert result.returncode == 0, result.explain()
    gateway.wait_for_log(r"call \S+ ringing", 1)
    gateway.wait_for_log(r"call \S+ ended .*by=remote.*reason=cancel", 5)
    assert not gateway.events("answered")


def test_hold_and_resume(gateway_factory: GatewayFactory, sipp: SippRunner) -> None:
    gateway = gateway_factory()
    result = sipp("uac_hold", gateway.uri_host, "-s", "echo", timeout=20)
    assert result.returncode == 0, result.explain()
    events = [e.event for e in gateway.events() if e.event in ("hold", "resume")]
    assert events == ["hold", "resume"]


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_options_answered_on_udp_and_tcp(
    gateway_factory: GatewayFactory, sipp: SippRunner, transport: str
) -> None:
    gateway = gateway_factory()
    result = sipp("options", gateway.uri_host, "-s", "echo", "-t", transport, timeout=10)
    assert result.returncode == 0, result.explain()


def test_unrouted_user_gets_404(gateway_factory: GatewayFactory, sipp: SippRunner) -> None:
    gateway = gateway_factory()
    result = sipp("uac_404", gateway.uri_host, "-s", "nobody", timeout=10)
    assert result.returncode == 0, result.explain()
    gateway.wait_for_log(r"call \S+ rejected .*status=404", 5)


def _bad_cseq_invite(port: int, gateway: Gateway) -> bytes:
    call_id = uuid.uuid4().hex
    lines = [
        f"INVITE sip:echo@{gateway.uri_host} SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK{call_id[:12]}",
        f"From: <sip:tester@{HOST}:{port}>;tag=t{call_id[:8]}",
        f"To: <sip:echo@{gateway.uri_host}>",
        f"Call-ID: {call_id}@{HOST}",
        "CSeq: abc INVITE",
        f"Contact: <sip:tester@{HOST}:{port}>",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_malformed_invite_gets_400_naming_the_fault_and_service_goes_on(
    gateway_factory: GatewayFactory, sipp: SippRunner
) -> None:
    need_sipp_pcaps()
    gateway = gateway_factory()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(5)
        sock.sendto(_bad_cseq_invite(sock.getsockname()[1], gateway), (HOST, gateway.sip_port))
        reply, _ = sock.recvfrom(65535)
    status_line = reply.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("SIP/2.0 400 "), status_line
    assert "cseq" in status_line.lower(), f"reason does not name the fault: {status_line}"
    assert_call_works(gateway, sipp)


def test_vanished_peer_ends_on_rtp_timeout_and_frees_its_ports(
    gateway_factory: GatewayFactory, sipp: SippRunner, ports: PortAllocator
) -> None:
    need_sipp_pcaps()
    first = ports.rtp_block(2)
    # room for exactly one call: a leaked port pair would make the next call 503
    gateway = gateway_factory(rtp_timeout=2, rtp_ports=f"{first}-{first + 1}")
    result = sipp("uac_vanish", gateway.uri_host, "-s", "echo", timeout=15)
    assert result.returncode == 0, result.explain()
    gateway.wait_for_log(r"call \S+ ended .*reason=rtp_timeout", 10)
    assert gateway.live_calls() == 0
    assert_call_works(gateway, sipp)


def test_second_call_gets_503_when_no_port_pair_is_free(
    gateway_factory: GatewayFactory, sipp: SippRunner, ports: PortAllocator
) -> None:
    need_sipp_pcaps()
    first = ports.rtp_block(2)
    gateway = gateway_factory(rtp_ports=f"{first}-{first + 1}")
    first_call = sipp.start("uac_pcap_echo", gateway.uri_host, "-s", "echo", timeout=40)
    gateway.wait_for_log(r"call \S+ answered", 10)
    second = sipp("uac_503", gateway.uri_host, "-s", "echo", timeout=10)
    assert second.returncode == 0, second.explain()
    gateway.wait_for_log(r"call \S+ rejected .*status=503", 5)
    assert first_call.wait(40).returncode == 0


def test_session_refresh_without_sdp_is_answered_with_an_offer(
    gateway_factory: GatewayFactory, sipp: SippRunner
) -> None:
    """A re-INVITE with no body gets a 200 with our offer (SIPp checks it lists PCMU,
    PCMA and telephone-event); the answer in the ACK is applied: PCMA and hold, then
    resume. Before, such a refresh got 488 and some PBXs hang up on that."""
    gateway = gateway_factory()
    result = sipp("uac_refresh_no_sdp", gateway.uri_host, "-s", "echo", timeout=20)
    assert result.returncode == 0, result.explain()
    events = [e.event for e in gateway.events() if e.event in ("hold", "resume")]
    assert events == ["hold", "resume"]
    answers = [e.fields for e in gateway.events("media") if "answer" in e.fields]
    assert answers == [{"codec": "PCMA", "answer": "reinvite_ack"}] * 2
    assert not gateway.events("reinvite_rejected")
    gateway.wait_for_log(r"call \S+ ended .*by=remote", 5)


def test_session_refresh_whose_ack_has_no_answer_hangs_up(
    gateway_factory: GatewayFactory, sipp: SippRunner
) -> None:
    gateway = gateway_factory()
    result = sipp("uac_refresh_no_answer", gateway.uri_host, "-s", "echo", timeout=20)
    assert result.returncode == 0, result.explain()
    gateway.wait_for_log(r"the ACK carried no SDP answer", 5)
    gateway.wait_for_log(r"call \S+ ended .*by=local", 5)


def _request(method: str, cseq: int, port: int, call_id: str, target: str, to_tag: str) -> bytes:
    """A request's head without Content-Length (the caller ends it); To with ``to_tag``."""
    extra = f";tag={to_tag}" if to_tag else ""
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]}",
        f"From: <sip:tester@{HOST}:{port}>;tag=t{call_id[:8]}",
        f"To: <sip:echo@{HOST}>{extra}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:tester@{HOST}:{port}>",
        "Max-Forwards: 70",
    ]
    return "\r\n".join(lines).encode()


def _receive_final(sock: socket.socket) -> bytes:
    while True:
        reply, _ = sock.recvfrom(65535)
        if not reply.startswith(b"SIP/2.0 1"):
            return reply


def test_gateway_on_all_addresses_advertises_its_public_host(
    gateway_factory: GatewayFactory, sipp: SippRunner, ports: PortAllocator, tmp_path: Path
) -> None:
    """Bound to 0.0.0.0 with --public-host 127.0.0.1, the gateway's 200 says 127.0.0.1 in
    its Contact and its SDP (never 0.0.0.0, which a peer cannot send to), and the call
    works end to end; without --public-host, --host 0.0.0.0 is refused at start."""
    gateway = gateway_factory(host="0.0.0.0", public_host=HOST)
    call_id = uuid.uuid4().hex
    offer = (
        f"v=0\r\no=t 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()
    target = f"sip:echo@{HOST}:{gateway.sip_port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        invite = _request("INVITE", 1, port, call_id, target, "")
        invite += b"\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % len(offer)
        sock.sendto(invite + offer, (HOST, gateway.sip_port))
        ok = _receive_final(sock)
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"SIP/2.0 200 "), head
        headers = head.decode().split("\r\n")
        (contact,) = [h for h in headers if h.lower().startswith(("contact:", "m:"))]
        assert f"@{HOST}:{gateway.sip_port}" in contact, contact
        assert f"c=IN IP4 {HOST}".encode() in body and b"0.0.0.0" not in ok, ok
        to_tag = next(h for h in headers if h.lower().startswith(("to:", "t:"))).split("tag=")[1]
        end = b"\r\nContent-Length: 0\r\n\r\n"
        sock.sendto(_request("ACK", 1, port, call_id, target, to_tag) + end,
                    (HOST, gateway.sip_port))  # fmt: skip
        sock.sendto(_request("BYE", 2, port, call_id, target, to_tag) + end,
                    (HOST, gateway.sip_port))  # fmt: skip
        assert _receive_final(sock).startswith(b"SIP/2.0 200 ")
    assert_call_works(gateway, sipp)
    refused = callstream_cli(
        "serve", "--host", "0.0.0.0", "--sip-port", str(ports.port()), "--http-port",
        str(ports.port()), "--database-url", f"sqlite:///{tmp_path / 'refused.db'}", timeout=30,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "public_host: required when host is 0.0.0.0" in refused.stderr, refused.stderr
