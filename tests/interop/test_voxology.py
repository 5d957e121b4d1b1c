"""Issue 5, Voxology (seed 003) as its users run it, with real SIP peers.

The seed's call-flow script, verbatim but for its URL, runs on a route; SIPp calls in
with a tone; the test's WebSocket server (tests/interop/providers.py) receives the
seed's message sequence and decodes the audio. A TRANSFER (ours) to ``callstream
answer`` adds the ``transfer`` track; a trunk with ``media_stream`` streams ``near`` and
``far``. Run ``pytest tests/interop/test_voxology.py -k seed -s`` to see one run's log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, PortAllocator
from tests.interop.media import tone_ul, tone_wav
from tests.interop.providers import (
    ProviderApp,
    WsConnection,
    save_message_log,
    toml_value,
    voxology_audio,
)
from tests.interop.test_api import api, create_token
from tests.interop.test_media_streams import SIPP_DIR, assert_tone, loud_part, power_db, seconds

ACCOUNT = "alice"

# Seed 003, "Example Call Flow Script", as printed; only the URL is the test's.
SEED_SCRIPT = (
    Path(__file__).parents[1] / "fixtures/seeds/voxology_call_flow_script.json"
).read_text()

# The seed's messages, key by key (seed 003, "WebSocket Message Sequence").
INIT_KEYS = ["stream_id", "type", "stream_sequence_number", "call_id", "app_id",
             "subaccount_id", "direction", "stream_name", "stream_data", "tracks",
             "service"]  # fmt: skip
START_KEYS = ["stream_id", "type", "stream_sequence_number", "call_id", "api_no", "caller_no",
              "track_sequence_number", "media_format", "name"]  # fmt: skip
LIVE_KEYS = ["stream_id", "type", "stream_sequence_number", "track_sequence_number", "media",
             "call_id", "name"]  # fmt: skip
STOP_KEYS = ["stream_id", "type", "stream_sequence_number", "call_id", "api_no", "caller_no",
             "track_sequence_number", "duration", "start_time", "end_time", "name"]  # fmt: skip
END_KEYS = ["stream_id", "type", "stream_sequence_number", "call_id", "app_id", "subaccount_id",
            "service", "stream_name", "tracks", "error_code", "error", "stream_data"]  # fmt: skip
MEDIA_FORMAT = {"encoding": "ulaw", "type": "text", "sample_rate": 8000}
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def seed_script(url: str) -> dict[str, Any]:
    text = SEED_SCRIPT
    assert text.count("ws://test-u.rl") == 2
    script: dict[str, Any] = json.loads(text.replace("ws://test-u.rl", url))
    return script


def route(match: str, actions: object) -> str:
    lines = ["[[routes]]", f'match = "{match}"', f'account = "{ACCOUNT}"']
    return "\n" + "\n".join([*lines, f"actions = {toml_value(actions)}"]) + "\n"


def start_gateway(gateway_factory: GatewayFactory, tmp_path: Path, config: str) -> tuple[Any, str]:
    database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    gateway = gateway_factory(config, database_url=database_url)
    return gateway, create_token(database_url, ACCOUNT)


def sipp_caller(sipp: SippRunner, gateway: Any, tmp_path: Path, service: str, hz: int, port: int):  # type: ignore[no-untyped-def]
    """SIPp calls ``service`` sending a looped ``hz`` tone until the gateway's BYE."""
    directory = tmp_path / f"tone{hz}"
    directory.mkdir(exist_ok=True)
    return sipp.start(
        str(SIPP_DIR / "uac_tone_until_bye.xml"), gateway.uri_host, "-s", service,
        timeout=60, media_port=port, files=[tone_ul(directory, hz, seconds=1)],
    )  # fmt: skip


def epoch_ms(text: str) -> int:
    assert ISO_MS.fullmatch(text), text
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return round((moment - datetime(1970, 1, 1)).total_seconds() * 1000)


# ---------------------------------------------------------------- checks of a sequence


def check_numbering(connection: WsConnection) -> None:
    """stream_sequence_number counts every message from 1; track_sequence_number each
    track's from 1; every message names the stream and the call of the first."""
    messages = connection.messages
    assert [m["stream_sequence_number"] for m in messages] == list(range(1, len(messages) + 1))
    first = messages[0]
    assert {(m["stream_id"], m["call_id"]) for m in messages} == {
        (first["stream_id"], first["call_id"])
    }
    tracks = {m["name"] for m in messages if "track_sequence_number" in m}
    for track in tracks:
        numbers = [m["track_sequence_number"] for m in messages
                   if "track_sequence_number" in m and m["name"] == track]  # fmt: skip
        assert numbers == list(range(1, len(numbers) + 1)), track


def check_track(connection: WsConnection, track: str, api_no: str, caller_no: str) -> None:
    """One track: start_track, its live_tracks, stop_track, in that order, the seed's keys
    and types; stop's duration is its end minus start, and covers its audio."""
    mine = [
        m for m in connection.messages if m.get("name") == track and "track_sequence_number" in m
    ]
    kinds = [m["type"] for m in mine]
    assert kinds[0] == "start_track" and kinds[-1] == "stop_track", kinds[:3] + kinds[-3:]
    assert set(kinds[1:-1]) == {"live_track"}, f"{track}: {sorted(set(kinds))}"
    start, stop = mine[0], mine[-1]
    assert list(start) == START_KEYS and list(stop) == STOP_KEYS
    assert list(mine[1]) == LIVE_KEYS
    assert start["media_format"] == MEDIA_FORMAT
    for message in (start, stop):
        assert (message["api_no"], message["caller_no"]) == (api_no, caller_no), message
    assert isinstance(stop["duration"], int)
    assert stop["duration"] == epoch_ms(stop["end_time"]) - epoch_ms(stop["start_time"])
    assert stop["start_time"] == iso_of(start, connection)  # start's moment, kept
    audio_ms = (len(mine) - 2) * 20
    assert abs(stop["duration"] - audio_ms) <= max(500, audio_ms // 10), (stop, audio_ms)
    lengths = {len(m["media"]) for m in mine[1:-1]}
    assert lengths == {216}, f"{track}: base64 of 160 bytes is 216 characters, got {lengths}"


def iso_of(start: dict[str, Any], connection: WsConnection) -> str:
    """A start_track carries no time: its stop_track's start_time is end_stream's."""
    (end,) = connection.of("end_stream")
    (summary,) = [t for t in end["tracks"] if t["name"] == start["name"]]
    return str(summary["start_time"])


def check_init_and_end(
    connection: WsConnection, call_id: str, tracks: list[str], service: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    init, end = connection.messages[0], connection.messages[-1]
    assert (init["type"], end["type"]) == ("init_stream", "end_stream")
    assert list(init) == INIT_KEYS and list(end) == END_KEYS
    assert init["call_id"] == call_id
    assert init["tracks"] == [{"name": track} for track in tracks]
    assert (init["service"], end["service"]) == (service, service)
    for key in ("stream_id", "app_id", "subaccount_id", "stream_name"):
        assert isinstance(init[key], str) and init[key] == end[key], key
    assert init["subaccount_id"], "the account is the subaccount"
    stops = {m["name"]: m for m in connection.of("stop_track")}
    assert end["tracks"] == [
        {key: stops[name][key] for key in ("name", "start_time", "end_time", "duration")}
        for name in [t["name"] for t in end["tracks"]]
    ]
    assert sorted(t["name"] for t in end["tracks"]) == sorted(stops)
    assert (end["error_code"], end["error"]) == (None, None)
    return init, end


# ---------------------------------------------------------------- 1. the seed's script


def test_seed_script_streams_the_callers_tone_in_the_seeds_message_sequence(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    tmp_path: Path,
) -> None:
    """The seed's script (its action list, verbatim but for the URL; the printed dict form
    is test_seed_script_is_accepted_wherever_a_flow_is's) on a config route: SIPp calls
    with 1000 Hz; the app gets init_stream, start_track caller, live_tracks holding the
    tone, stop_track caller at the STREAM stop, end_stream with the stop's stream_data;
    the flow then says its goodbye and hangs up."""
    with ProviderApp(ports.port()) as app:
        config = route("vox", seed_script(app.ws_url("seed"))["actions"])
        gateway, token = start_gateway(gateway_factory, tmp_path, config)
        caller = sipp_caller(sipp, gateway, tmp_path, "vox", 1000, ports.rtp_block(4))
        result = caller.wait(60)
        assert result.returncode == 0, result.explain()
        (connection,) = app.wait_closed(1)
    save_message_log(tmp_path / "voxology_run.jsonl", connection.raw)
    assert connection.path == "/ws/seed" and connection.close_code == 1000
    kinds = [m["type"] for m in connection.messages]
    assert kinds[:2] == ["init_stream", "start_track"]
    assert kinds[-2:] == ["stop_track", "end_stream"]
    assert set(kinds[2:-2]) == {"live_track"}
    code, calls = api(gateway, "GET", "/v1.0/calls", token)
    assert code == 200, calls
    (call,) = calls["result"]
    init, end = check_init_and_end(connection, call["id"], ["caller", "transfer"],
                                   "programmable_voice")  # fmt: skip
    assert (init["direction"], init["stream_name"]) == ("inbound", "stream1")
    assert init["stream_data"] == {"test_key": "test_value"}
    assert end["stream_data"] == {"your_key": "your_value"}  # the stop's
    check_numbering(connection)
    check_track(connection, "caller", api_no="vox", caller_no="sipp")
    assert connection.of("live_track") == [
        m for m in connection.messages if m.get("name") == "caller" and m["type"] == "live_track"
    ], "a transfer track without a TRANSFER"
    audio = voxology_audio(connection.messages, "caller")
    assert_tone(audio, 1000, "the caller track", min_s=8.0)
    # the stream ran from answer to the STREAM stop: the SAY (several seconds) and PAUSE 10
    assert seconds(audio) >= 11.0, f"{seconds(audio):.2f} s streamed"
    assert (call["status"], call["hangup_by"]) == ("hangup", "local")
    code, streams = api(gateway, "GET", f"/v1.0/media_streams?call_id={call['id']}", token)
    assert code == 200, streams
    (record,) = streams["result"]
    assert (record["id"], record["encapsulation"]) == (init["stream_id"], "voxology")
    assert (record["status"], record["direction"], record["url"]) == (
        "ended", "outbound", app.ws_url("seed"),
    )  # fmt: skip


@pytest.mark.parametrize(
    "form",
    ["dict", "list"],
)
def test_seed_script_is_accepted_wherever_a_flow_is(
    gateway_factory: GatewayFactory, ports: PortAllocator, tmp_path: Path, form: str
) -> None:
    """Config routes, POST /v1.0/flows and POST /v1.0/calls take the seed's script as it
    is printed (``{"actions": [...]}``) and as its bare list."""
    script: object = seed_script(f"ws://{HOST}:{ports.port()}/ws/accepted")
    if form == "list":
        script = script["actions"]  # type: ignore[index]
    gateway, token = start_gateway(gateway_factory, tmp_path, route("vox", script))
    code, flow = api(gateway, "POST", "/v1.0/flows", token, {"name": "seed", "actions": script})
    assert code == 200, flow
    types = [action["type"] for action in flow["actions"]]
    assert types == ["answer", "stream_start", "talk", "sleep", "stream_stop", "talk", "hangup"]
    code, again = api(gateway, "GET", f"/v1.0/flows/{flow['id']}", token)
    assert (code, again["actions"]) == (200, flow["actions"])


@pytest.mark.parametrize("form", ["dict", "list"])
def test_a_bad_script_is_refused_naming_the_action_and_field(
    gateway_factory: GatewayFactory, ports: PortAllocator, tmp_path: Path, form: str
) -> None:
    gateway, token = start_gateway(gateway_factory, tmp_path, "")
    seed = seed_script(f"ws://{HOST}:{ports.port()}/ws/x")
    seed["actions"][2]["params"]["seconds"] = "ten"
    script = seed if form == "dict" else seed["actions"]
    code, body = api(gateway, "POST", "/v1.0/flows", token, {"name": "bad", "actions": script})
    assert code == 400, body
    assert "actions[2] (PAUSE): params.seconds must be a number" in body["error"]["message"]


# ---------------------------------------------------------------- 1b. TRANSFER: two legs


def test_transfer_track_carries_the_callees_audio_and_stops_when_it_hangs_up(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    tmp_path: Path,
) -> None:
    """STREAM start, TRANSFER (ours) to ``callstream answer`` playing 500 Hz for 4 s, PAUSE 2,
    HANGUP; SIPp calls with 1000 Hz. The caller track holds 1000 Hz, the transfer track
    500 Hz; the transfer track stops when the callee hangs up and the caller track goes
    on through the PAUSE; end_stream sums up both."""
    listen_port = ports.port()
    rtp_first = ports.rtp_block(10)
    callee_says = tone_wav(tmp_path / "callee_says.wav", 500, 10, amplitude=0.3)
    callee = subprocess.Popen(
        [
            sys.executable, "-m", "callstream", "answer", "--listen", f"{HOST}:{listen_port}",
            "--play", str(callee_says), "--duration", "4", "--once",
            "--rtp-ports", f"{rtp_first}-{rtp_first + 9}",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with ProviderApp(ports.port()) as app:
            script = {"actions": [
                {"type": "STREAM", "params": {"url": app.ws_url("transfer"), "action": "start",
                                              "tracks": ["caller", "transfer"]}},
                {"type": "TRANSFER", "params": {"destination": f"sip:bob@{HOST}:{listen_port}"}},
                {"type": "PAUSE", "params": {"seconds": 2}},
                {"type": "HANGUP"},
            ]}  # fmt: skip
            gateway, token = start_gateway(
                gateway_factory, tmp_path, route("vox", script["actions"])
            )
            caller = sipp_caller(sipp, gateway, tmp_path, "vox", 1000, ports.rtp_block(4))
            result = caller.wait(60)
            assert result.returncode == 0, result.explain()
            (connection,) = app.wait_closed(1)
        output, _ = callee.communicate(timeout=15)
    finally:
        callee.kill()
    assert callee.returncode == 0, output
    save_message_log(tmp_path / "voxology_transfer_run.jsonl", connection.raw)
    code, calls = api(gateway, "GET", "/v1.0/calls?direction=inbound", token)
    assert code == 200, calls
    (call,) = [c for c in calls["result"] if c["direction"] == "inbound"]
    check_init_and_end(connection, call["id"], ["caller", "transfer"], "programmable_voice")
    check_numbering(connection)
    check_track(connection, "caller", api_no="vox", caller_no="sipp")
    check_track(connection, "transfer", api_no="vox", caller_no="sipp")
    kinds = [(m["type"], m.get("name")) for m in connection.messages]
    assert kinds[:2] == [("init_stream", None), ("start_track", "caller")]
    assert kinds[-2:] == [("stop_track", "caller"), ("end_stream", None)]
    # the transfer track stopped first; the caller's went on through the PAUSE (2 s)
    transfer_stop = kinds.index(("stop_track", "transfer"))
    after = kinds[transfer_stop + 1 : -2]
    assert set(after) == {("live_track", "caller")}, set(after)
    assert len(after) >= 75, f"only {len(after)} caller frames after the transfer's stop"
    caller_audio = voxology_audio(connection.messages, "caller")
    transfer_audio = voxology_audio(connection.messages, "transfer")
    assert_tone(caller_audio, 1000, "the caller track", min_s=4.0)
    assert_tone(transfer_audio, 500, "the transfer track", min_s=3.0)
    loud_transfer = loud_part(transfer_audio)
    assert power_db(loud_transfer, 500) > power_db(loud_transfer, 1000) + 20
    loud_caller = loud_part(caller_audio)
    assert power_db(loud_caller, 1000) > power_db(loud_caller, 500) + 20
    # about 4 s of the callee: it hung up, the track stopped
    assert 3.0 <= seconds(transfer_audio) <= 5.0, f"{seconds(transfer_audio):.2f} s"


# ---------------------------------------------------------------- 2. a trunk's media_stream

TRUNK_STREAM = """
[[trunks]]
name = "carrier"
proxy = "127.0.0.1:9"
account = "alice"
inbound_addresses = ["127.0.0.1"]
media_stream = {{ url = "{url}", tracks = ["near", "far"] }}

[[routes]]
match = "trunkcall"
account = "alice"
actions = [
  {{ type = "answer" }},
  {{ type = "tone", option = {{ frequency = 600, duration = 3000 }} }},
  {{ type = "sleep", option = {{ duration = 2000 }} }},
  {{ type = "hangup" }},
]
"""


def test_trunk_media_stream_streams_near_and_far_of_a_sipp_call(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    tmp_path: Path,
) -> None:
    """A SIPp call from the trunk's address (1000 Hz) to a route that plays 600 Hz for 3 s:
    the trunk's stream (service sip_trunk) carries far = SIPp's tone, near = ours."""
    with ProviderApp(ports.port()) as app:
        config = TRUNK_STREAM.format(url=app.ws_url("trunk"))
        gateway, token = start_gateway(gateway_factory, tmp_path, config)
        caller = sipp_caller(sipp, gateway, tmp_path, "trunkcall", 1000, ports.rtp_block(4))
        result = caller.wait(60)
        assert result.returncode == 0, result.explain()
        (connection,) = app.wait_closed(1)
    save_message_log(tmp_path / "voxology_trunk_run.jsonl", connection.raw)
    assert connection.path == "/ws/trunk" and connection.close_code == 1000
    code, calls = api(gateway, "GET", "/v1.0/calls", token)
    assert code == 200, calls
    (call,) = calls["result"]
    init, end = check_init_and_end(connection, call["id"], ["near", "far"], "sip_trunk")
    assert (init["direction"], init["stream_data"], end["stream_data"]) == ("inbound", None, None)
    check_numbering(connection)
    check_track(connection, "far", api_no="trunkcall", caller_no="sipp")
    check_track(connection, "near", api_no="trunkcall", caller_no="sipp")
    far = voxology_audio(connection.messages, "far")
    near = voxology_audio(connection.messages, "near")
    assert_tone(far, 1000, "the far track", min_s=4.0)
    assert_tone(near, 600, "the near track", min_s=2.5)
    assert seconds(loud_part(near)) <= 3.2, "near holds more than the 3 s tone"
    loud_far = loud_part(far)
    assert power_db(loud_far, 1000) > power_db(loud_far, 600) + 20
    # from answer to hangup: the 3 s tone and the 2 s sleep
    assert seconds(far) >= 4.5, f"{seconds(far):.2f} s streamed"
