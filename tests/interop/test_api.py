"""Issue 3 through the REST API with real SIP peers: calls placed and hung up by the API,
``connect`` bridging SIPp to baresip, a 3-party conference, and records that survive kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.audio_analysis import dominant_frequency, goertzel_power, rms_dbfs
from tests.interop.conftest import Baresip, GatewayFactory, SippRunner
from tests.interop.harness import HOST, Capture, Gateway, PortAllocator, read_wav
from tests.interop.listening import heard_on
from tests.interop.media import tone_ul, tone_wav

FRAME = 320


def api(
    gateway: Gateway, method: str, path: str, token: str, body: object | None = None
) -> tuple[int, Any]:
    """One request to the gateway's API; returns (status, decoded JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://{HOST}:{gateway.http_port}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def create_token(database_url: str, account: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "callstream", "token", "create", "--account", account,
         "--database-url", database_url],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def wait_for_status(gateway: Gateway, token: str, call_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        code, record = api(gateway, "GET", f"/v1.0/calls/{call_id}", token)
        assert code == 200, record
        if record["status"] == status or time.monotonic() > deadline:
            assert record["status"] == status, record
            return record  # type: ignore[no-any-return]
        time.sleep(0.1)


def loud_part(pcm: bytes, floor_dbfs: float = -30) -> bytes:
    frames = (pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME))
    return b"".join(frame for frame in frames if rms_dbfs(frame) > floor_dbfs)


def power_db(pcm: bytes, frequency: float) -> float:
    import math

    return 10 * math.log10(goertzel_power(pcm, frequency) + 1e-12)


def test_api_call_to_sipp_plays_audio_and_is_hung_up_by_the_api(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    gateway = gateway_factory(database_url=database_url)
    token = create_token(database_url, "alice")
    prompt = tone_wav(tmp_path / "prompt.wav", 800, 20)
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        uas = sipp.start("builtin:uas", None, timeout=30, listen=True, media_port=media_port)
        code, body = api(gateway, "POST", "/v1.0/calls", token, {
            "source": {"type": "tel", "target": "+15551230000"},
            "destinations": [{"type": "sip", "target": f"sip:service@{HOST}:{uas.port}"}],
            "actions": [{"type": "play", "option": {"url": str(prompt)}}],
        })  # fmt: skip
        assert code == 200, body
        (created,) = body["calls"]
        assert created["status"] == "dialing" and created["direction"] == "outbound"
        wait_for_status(gateway, token, created["id"], "progressing")
        time.sleep(2.0)
        code, hung = api(gateway, "POST", f"/v1.0/calls/{created['id']}/hangup", token)
        assert code == 200, hung
        result = uas.wait(20)
    assert result.returncode == 0, result.explain()  # SIPp got its BYE and answered it
    assert (hung["status"], hung["hangup_by"], hung["hangup_reason"]) == (
        "hangup",
        "local",
        "normal",
    )
    record = api(gateway, "GET", f"/v1.0/calls/{created['id']}", token)[1]
    assert record["sip_call_id"] and record["codec"] == "PCMU"
    assert record["tm_progressing"] and record["tm_hangup"] >= record["tm_progressing"]
    heard = loud_part(heard_on(cap.path, media_port)[0])
    assert len(heard) >= 2 * 8000 * 1.5, f"SIPp heard {len(heard) / 16000:.2f} s of the prompt"
    assert dominant_frequency(heard) == pytest.approx(800, abs=15)


CONNECT_ROUTE = """
[[routes]]
match = "connect"
account = "alice"
actions = [
  {{ type = "answer" }},
  {{ type = "connect", option = {{ destinations = [ {{ type = "sip", target = "{target}" }} ] }} }},
]
"""


def test_connect_bridges_a_sipp_caller_to_a_baresip_callee(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    baresip_factory: Callable[[Path], Baresip],
    tmp_path: Path,
) -> None:
    bob = baresip_factory(tone_wav(tmp_path / "bob_says.wav", 500, 20))
    gateway = gateway_factory(CONNECT_ROUTE.format(target=f"sip:bob@{HOST}:{bob.port}"))
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        result = sipp(
            "uac_tone_echo", gateway.uri_host, "-s", "connect", timeout=30,
            media_port=media_port, files=[tone_ul(tmp_path, 1000)],
        )  # fmt: skip
    assert result.returncode == 0, result.explain()
    gateway.wait_for_log(r"call \S+ connected peer_call_id=", 5)
    bob.wait_for_log("terminated", 10)
    # the caller (SIPp) hears bob's 500 Hz, not its own 1000 Hz
    heard_by_caller = loud_part(heard_on(cap.path, media_port)[0])
    assert len(heard_by_caller) >= 2 * 8000 * 1.5
    assert dominant_frequency(heard_by_caller) == pytest.approx(500, abs=15)
    assert power_db(heard_by_caller, 500) - power_db(heard_by_caller, 1000) > 20
    # bob (baresip) recorded the caller's 1000 Hz
    (recording,) = bob.received()
    heard_by_bob, rate = read_wav(recording)
    assert rate == 8000
    heard_by_bob = loud_part(heard_by_bob)
    assert len(heard_by_bob) >= 2 * 8000 * 1.5
    assert dominant_frequency(heard_by_bob) == pytest.approx(1000, abs=15)
    assert power_db(heard_by_bob, 1000) - power_db(heard_by_bob, 500) > 20


def test_three_party_conference_each_hears_the_other_two_not_itself(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    baresip_factory: Callable[[Path], Baresip],
    tmp_path: Path,
) -> None:
    """SIPp (1000 Hz) and `callstream dial` (700 Hz) call in on a route whose flow joins the
    conference; the API dials baresip (500 Hz) into it."""
    database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    gateway = gateway_factory(database_url=database_url)
    token = create_token(database_url, "alice")
    code, conference = api(gateway, "POST", "/v1.0/conferences", token, {"name": "standup"})
    assert code == 200, conference
    join = [{"type": "answer"},
            {"type": "conference_join", "option": {"conference_id": conference["id"]}}]  # fmt: skip
    code, flow = api(gateway, "POST", "/v1.0/flows", token, {"name": "join", "actions": join})
    assert code == 200, flow
    code, route = api(
        gateway, "POST", "/v1.0/routes", token, {"match": "conf", "flow_id": flow["id"]}
    )
    assert code == 200, route

    bob = baresip_factory(tone_wav(tmp_path / "bob_says.wav", 500, 30))
    code, body = api(gateway, "POST", "/v1.0/calls", token, {
        "source": {"type": "sip", "target": f"sip:conference@{HOST}"},
        "destinations": [{"type": "sip", "target": f"sip:bob@{HOST}:{bob.port}"}],
        "actions": [{"type": "conference_join", "option": {"conference_id": conference["id"]}}],
    })  # fmt: skip
    assert code == 200, body
    wait_for_status(gateway, token, body["calls"][0]["id"], "progressing")

    carol_heard = tmp_path / "carol_heard.wav"
    rtp_first = ports.rtp_block(10)
    carol = subprocess.Popen(
        [sys.executable, "-m", "callstream", "dial", f"sip:conf@{gateway.uri_host}",
         "--play", str(tone_wav(tmp_path / "carol_says.wav", 700, 7)), "--record", str(carol_heard),
         "--duration", "7", "--rtp-ports", f"{rtp_first}-{rtp_first + 9}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        code, live = api(gateway, "GET", f"/v1.0/conferences/{conference['id']}", token)
        assert code == 200 and len(live["call_ids"]) == 2, live
        media_port = ports.rtp_block(4)
        with capture(media_port) as cap:
            result = sipp(
                "uac_tone_echo", gateway.uri_host, "-s", "conf", timeout=30,
                media_port=media_port, files=[tone_ul(tmp_path, 1000)],
            )  # fmt: skip
        carol_output, _ = carol.communicate(timeout=20)
    finally:
        carol.kill()
    assert result.returncode == 0, result.explain()
    assert carol.returncode == 0, carol_output
    code, ended = api(gateway, "DELETE", f"/v1.0/conferences/{conference['id']}", token)
    assert code == 200 and ended["status"] == "terminated", ended
    bob.wait_for_log("terminated", 10)

    heard = {
        "sipp": loud_part(heard_on(cap.path, media_port)[0]),
        "carol": loud_part(read_wav(carol_heard)[0]),
        "bob": loud_part(read_wav(bob.received()[0])[0]),
    }
    own = {"sipp": 1000, "carol": 700, "bob": 500}
    for who, pcm in heard.items():
        assert len(pcm) >= 2 * 8000 * 1.5, f"{who} heard {len(pcm) / 16000:.2f} s"
        others = [frequency for name, frequency in own.items() if name != who]
        for frequency in others:
            assert power_db(pcm, frequency) - power_db(pcm, own[who]) > 20, (
                f"{who}: {frequency} Hz vs own {own[who]} Hz"
            )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_records_survive_kill_9(
    gateway_factory: GatewayFactory, sipp: SippRunner, tmp_path: Path, database: str
) -> None:
    if database == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    else:
        from tests.store.conftest import PostgresServer

        server = PostgresServer()
        database_url = server.create_database()
    try:
        first = gateway_factory(database_url=database_url)
        token = create_token(database_url, "alice")
        wait = [{"type": "sleep", "option": {"duration": 60000}}]
        code, flow = api(first, "POST", "/v1.0/flows", token, {"name": "wait", "actions": wait})
        assert code == 200, flow
        uas = sipp.start("builtin:uas", None, timeout=60, listen=True)
        target = {"type": "sip", "target": f"sip:service@{HOST}:{uas.port}"}
        source = {"type": "tel", "target": "+15551230000"}
        hangup = [{"type": "hangup"}]
        request = {"source": source, "destinations": [target], "actions": hangup}
        code, done = api(first, "POST", "/v1.0/calls", token, request)
        assert code == 200, done
        finished = wait_for_status(first, token, done["calls"][0]["id"], "hangup")
        uas2 = sipp.start("builtin:uas", None, timeout=60, listen=True)
        target2 = {"type": "sip", "target": f"sip:service@{HOST}:{uas2.port}"}
        code, live = api(
            first,
            "POST",
            "/v1.0/calls",
            token,
            {"source": source, "destinations": [target2], "flow_id": flow["id"]},
        )
        assert code == 200, live
        live_id = live["calls"][0]["id"]
        wait_for_status(first, token, live_id, "progressing")

        first.crash()

        second = gateway_factory(database_url=database_url)
        code, record = api(second, "GET", f"/v1.0/calls/{live_id}", token)
        assert code == 200, record
        assert (record["status"], record["hangup_reason"], record["hangup_by"]) == (
            "hangup",
            "gateway_restart",
            "local",
        )
        assert record["tm_progressing"] is not None and record["tm_hangup"] is not None
        code, again = api(second, "GET", f"/v1.0/calls/{finished['id']}", token)
        assert again == finished  # the completed call is exactly as it was
        code, flows = api(second, "GET", "/v1.0/flows", token)
        assert [f["id"] for f in flows["result"]] == [flow["id"]]
        code, calls = api(second, "GET", "/v1.0/calls", token)
        assert {c["id"] for c in calls["result"]} == {live_id, finished["id"]}
    finally:
        if database == "postgresql":
            server.drop_all()
