"""A SIP trunk that demands digest authentication: ``callstream dial`` through it, and
the gateway registering at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audio_analysis import dominant_frequency, rms_dbfs
from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, PortAllocator, callstream_cli, read_wav
from tests.interop.media import tone_ul
from tests.interop.test_api import api, create_token


def test_dial_answers_digest_challenge_and_records_trunk_tone(
    sipp: SippRunner, ports: PortAllocator, tmp_path: Path
) -> None:
    trunk = sipp.start("uas_digest", None, timeout=30, listen=True, files=[tone_ul(tmp_path)])
    recorded = tmp_path / "out.wav"
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:trunk@{HOST}:{trunk.port}", "--auth-user", "u", "--auth-password", "p",
        "--record", str(recorded), "--duration", "3", "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    trunk_result = trunk.wait(30)
    assert result.returncode == 0, f"{result.stderr}\n{trunk_result.explain()}"
    assert trunk_result.returncode == 0, trunk_result.explain()
    pcm, rate = read_wav(recorded)
    assert rate == 8000
    assert len(pcm) >= 2 * 8000 * 2.5
    assert dominant_frequency(pcm) == pytest.approx(1000, abs=20)
    assert rms_dbfs(pcm) > -15


def test_dial_with_wrong_password_fails_with_status(
    sipp: SippRunner, ports: PortAllocator, tmp_path: Path
) -> None:
    trunk = sipp.start("uas_digest", None, timeout=20, listen=True, files=[tone_ul(tmp_path)])
    rtp_first = ports.rtp_block(10)
    result = callstream_cli(
        "dial", f"sip:trunk@{HOST}:{trunk.port}", "--auth-user", "u", "--auth-password", "nope",
        "--duration", "1", "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        timeout=30,
    )  # fmt: skip
    trunk.wait(30)
    assert result.returncode == 1
    assert "call failed: 403 Forbidden" in result.stderr


def test_gateway_registers_at_the_trunk_refreshes_and_unregisters(
    gateway_factory: GatewayFactory, sipp: SippRunner
) -> None:
    """A trunk with ``register = true``: SIPp as its registrar challenges every
    REGISTER and checks the digest (verifyauth); it grants 10 s, so the gateway
    refreshes within seconds, and at SIGTERM the binding is removed (Expires: 0)."""
    registrar = sipp.start("uas_register", None, timeout=40, listen=True)
    gateway = gateway_factory(
        f"""
[[trunks]]
name = "carrier"
proxy = "{HOST}:{registrar.port}"
username = "alice"
password = "secret"
register = true
register_expires = 60
"""
    )
    gateway.wait_for_log(r"trunk carrier registered expires=10", 10)
    health = gateway.health()
    assert health is not None
    (registration,) = health["registrations"]
    assert registration["aor"] == f"sip:alice@{HOST}"
    assert (registration["state"], registration["expires"]) == ("registered", 10)
    gateway.wait_for_log(r"(?s)registered expires=10.*registered expires=10", 15)  # refreshed
    assert gateway.stop() == 0
    assert "trunk carrier unregistered" in gateway.log()
    result = registrar.wait(20)
    assert result.returncode == 0, result.explain()


def test_a_trunk_created_through_the_api_registers_and_deleting_it_unregisters(
    gateway_factory: GatewayFactory, sipp: SippRunner, tmp_path: Path
) -> None:
    """POST /v1.0/trunks with ``register`` registers at once (SIPp checks the expiry
    asked); DELETE removes the binding (Expires: 0). A registering trunk needs a username."""
    registrar = sipp.start("uas_register_plain", None, timeout=40, listen=True)
    database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    gateway = gateway_factory(database_url=database_url)
    token = create_token(database_url, "alice")
    trunk = {"name": "carrier", "proxy": f"{HOST}:{registrar.port}", "register": True}
    status, body = api(gateway, "POST", "/v1.0/trunks", token, trunk)
    assert (status, body["error"]["message"]) == (
        400,
        "username: required when register is true",
    ), body
    trunk |= {"username": "bob", "register_expires": 3600}
    status, body = api(gateway, "POST", "/v1.0/trunks", token, trunk)
    assert status == 200, body
    assert (body["register"], body["register_expires"]) == (True, 3600)
    gateway.wait_for_log(r"trunk carrier registered expires=3600", 10)
    status, _ = api(gateway, "DELETE", f"/v1.0/trunks/{body['id']}", token)
    assert status == 200
    gateway.wait_for_log(r"trunk carrier unregistered", 10)
    result = registrar.wait(20)
    assert result.returncode == 0, result.explain()
    health = gateway.health()
    assert health is not None and "registrations" not in health
