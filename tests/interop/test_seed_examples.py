"""Seed 001's own examples against callstream, with only the host, ids and token changed.

- The Python example (``websocket-client``'s ``WebSocketApp``, tests/interop/seed/rtp_example.py)
  run with the venv's python while SIPp calls in.
- The Node.js AudioSocket example (npm ``ws``, tests/interop/seed/audiosocket_example.js)
  run with ``node``: it sends a whole file in one burst, the gateway paces it.
- The curl example's JSON (``POST /v1.0/calls`` with ``external_media_start``) against a
  WebSocket server run by the test, the call going out through a trunk to a SIPp UAS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from callstream.codecs.g711 import ulaw_decode, ulaw_encode
from tests.audio_analysis import sine
from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, Capture, PortAllocator, read_wav, require_binary
from tests.interop.listening import heard_on
from tests.interop.media import tone_ul
from tests.interop.test_media_streams import (
    SEED_DIR,
    SIPP_DIR,
    AppServer,
    assert_tone,
    audiosocket_audio,
    dial,
    finish,
    loud_part,
    parse_audiosocket,
    seconds,
    sipp_tone_call,
    start_env,
    tone_frames,
)

SEED_CALL_ID = "652af662-eb45-11ee-b1a5-6fde165f9226"
SEED_TOKEN = "<YOUR_AUTH_TOKEN>"
SEED_HOST = "wss://api.voipbin.net"


def adapted(example: str, workdir: Path, http_port: int, call_id: str, token: str) -> Path:
    """A copy of a seed example in ``workdir`` with the host, call id and token filled in;
    nothing else of it changes (each placeholder must occur exactly once)."""
    text = (SEED_DIR / example).read_text()
    for placeholder, value in (
        (SEED_HOST, f"ws://{HOST}:{http_port}"),
        (SEED_CALL_ID, call_id),
        (SEED_TOKEN, token),
    ):
        assert text.count(placeholder) == 1, f"{example}: {placeholder!r} is not there once"
        text = text.replace(placeholder, value)
    path = workdir / example
    path.write_text(text)
    return path


def test_python_websocket_client_example_receives_rtp_and_is_heard(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
) -> None:
    """SIPp sends 1000 Hz; the seed's script saves the 172-byte RTP packets' payloads to
    received_audio.raw and sends 2 s of 600 Hz as RTP, which SIPp hears."""
    env = start_env(gateway_factory, tmp_path, sleep_ms=8000)
    workdir = tmp_path / "python_example"
    workdir.mkdir()
    (workdir / "audio_to_inject.raw").write_bytes(ulaw_encode(sine(600, 2.0)))
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        caller = sipp_tone_call(sipp, env, tmp_path, 1000, media_port)
        call_id = env.live_call_id()
        script = adapted("rtp_example.py", workdir, env.gateway.http_port, call_id, env.token)
        # ends when the gateway closes the stream: the route's sleep is over, the call ends
        run = subprocess.run(
            [sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, timeout=40
        )
        result = caller.wait(20)
    assert result.returncode == 0, result.explain()
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = run.stdout.splitlines()
    assert lines[0] == "Media stream connected", output
    assert lines[-1] == "Connection closed: 1000", output
    # websocket-client reports the server's close frame to on_error too, then on_close
    closing = "Error: Connection closed normally (code 1000): the call has ended"
    received_lines = [line for line in lines[1:-1] if line != closing]
    assert set(received_lines) == {"Received 172 bytes of audio"}, set(received_lines)
    packets = len(received_lines)
    assert packets >= 5 * 50, f"only {packets} packets in an 8 s call"
    received = (workdir / "received_audio.raw").read_bytes()
    assert len(received) == 160 * packets
    assert_tone(ulaw_decode(received), 1000, "the Python example", min_s=4.0)
    heard = loud_part(heard_on(cap.path, media_port)[0])
    assert_tone(heard, 600, "SIPp")
    # all of it, at normal speed: the 2 s sent in one message took 2 s to play
    assert 1.8 <= seconds(heard) <= 2.2, f"SIPp heard {seconds(heard):.2f} s of 600 Hz"


def node_binary() -> str:
    require_binary("node")
    if not (SEED_DIR / "node_modules" / "ws").is_dir():
        raise AssertionError("npm ws is not installed: run `npm ci --prefix tests/interop/seed`")
    return shutil.which("node") or "node"


def test_node_audiosocket_example_sends_a_burst_heard_at_normal_speed(
    gateway_factory: GatewayFactory, ports: PortAllocator, tmp_path: Path
) -> None:
    """audio.pcm is 3 s of 440 Hz then 3 s of 880 Hz as AudioSocket 0x10 messages, which the
    seed sends at once in 320-byte pieces (splitting messages); ``callstream dial`` records
    both tones in order, each for 3 s: the gateway reassembled and paced them."""
    node = node_binary()
    env = start_env(gateway_factory, tmp_path, sleep_ms=30000)
    workdir = tmp_path / "node_example"
    workdir.mkdir()
    (workdir / "audio.pcm").write_bytes(audiosocket_audio(sine(440, 3.0) + sine(880, 3.0)))
    recorded = tmp_path / "out.wav"
    phone = dial(f"sip:stream@{env.gateway.uri_host}", ports, record=recorded, duration_s=9)
    try:
        call_id = env.live_call_id()
        script = adapted("audiosocket_example.js", workdir, env.gateway.http_port, call_id,
                         env.token)  # fmt: skip
        # ends when the gateway closes the stream: the phone hangs up after 9 s
        run = subprocess.run(
            [node, str(script)], cwd=workdir, capture_output=True, text=True, timeout=40,
            env={**os.environ, "NODE_PATH": str(SEED_DIR / "node_modules")},
        )  # fmt: skip
    finally:
        finish(phone)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    lines = run.stdout.splitlines()
    assert (lines[0], lines[-1]) == ("AudioSocket connected", "AudioSocket closed"), output

    messages = parse_audiosocket((workdir / "received_audio.pcm").read_bytes())
    assert messages[0][0] == 0x01 and len(messages[0][1]) == 16, messages[0]
    assert messages[-1] == (0x00, b""), "no hangup message before the close"
    audio = messages[1:-1]
    assert len(audio) >= 5 * 50, f"only {len(audio)} audio messages in a 9 s call"
    assert {(kind, len(payload)) for kind, payload in audio} == {(0x10, 320)}

    pcm, rate = read_wav(recorded)
    assert rate == 8000
    heard = tone_frames(pcm, [440, 880])
    first_440, last_440 = heard.index(440), len(heard) - 1 - heard[::-1].index(440)
    first_880 = heard.index(880)
    assert last_440 < first_880, "880 Hz was heard before 440 Hz ended"
    # 3 s each = 150 frames of 20 ms: played at normal speed, nothing lost or repeated
    assert 145 <= heard.count(440) <= 155, f"440 Hz lasted {heard.count(440) * 20} ms"
    assert 145 <= heard.count(880) <= 155, f"880 Hz lasted {heard.count(880) * 20} ms"
    assert last_440 - first_440 + 1 <= 155, "440 Hz was interrupted"

    # the 0x01 message carried the stream's id; its record shows nothing dropped
    (stream,) = env.streams(call_id=call_id)
    assert messages[0][1] == uuid.UUID(stream["id"]).bytes
    assert (stream["encapsulation"], stream["direction"], stream["status"]) == (
        "audiosocket", "inbound", "ended",
    )  # fmt: skip
    assert (stream["frames_dropped_malformed"], stream["frames_dropped_overflow"]) == (0, 0)


# seed 001's command as printed; the test fills in the host, the token and the server's URL
SEED_CURL = """curl --location --request POST \\
    'https://api.voipbin.net/v1.0/calls?token=<YOUR_AUTH_TOKEN>' \\
    --header 'Content-Type: application/json' \\
    --data-raw '{
        "source": {
            "type": "tel",
            "target": "+15551234567"
        },
        "destinations": [
            {
                "type": "tel",
                "target": "+15559876543"
            }
        ],
        "actions": [
            {
                "type": "answer"
            },
            {
                "type": "external_media_start",
                "option": {
                    "url": "wss://your-media-server.com/audio-stream",
                    "encapsulation": "audiosocket"
                }
            }
        ]
    }'
"""

TRUNK = """
[[trunks]]
name = "carrier"
proxy = "127.0.0.1:{port}"
account = "alice"
"""


def test_curl_example_external_media_start_streams_audiosocket_both_ways(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
) -> None:
    """The seed's curl command, run with bash: the call goes out through the account's trunk
    to a SIPp UAS sending 700 Hz; the gateway dials the test's WebSocket server, which gets
    0x01 (the stream id) then 0x10 audio of the 700 Hz, and answers with a burst of 2 s of
    500 Hz as AudioSocket messages, which the UAS hears."""
    curl = require_binary("curl")
    media_port = ports.rtp_block(4)
    tone_dir = tmp_path / "uas"
    tone_dir.mkdir()
    uas = sipp.start(str(SIPP_DIR / "uas_tone.xml"), None, timeout=40, listen=True,
                     media_port=media_port, files=[tone_ul(tone_dir, 700, seconds=1)])  # fmt: skip
    env = start_env(gateway_factory, tmp_path, extra_config=TRUNK.format(port=uas.port))
    reply = audiosocket_audio(sine(500, 2.0))
    with AppServer(ports.port(), reply=reply) as server, capture(media_port) as cap:
        command = SEED_CURL
        for placeholder, value in (
            ("https://api.voipbin.net", f"http://{HOST}:{env.gateway.http_port}"),
            ("wss://your-media-server.com", f"ws://{HOST}:{server.port}"),
            ("<YOUR_AUTH_TOKEN>", env.token),
            ("curl ", f"{curl} -s "),
        ):
            assert command.count(placeholder) == 1, placeholder
            command = command.replace(placeholder, value)
        run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=20)
        assert run.returncode == 0, run.stderr
        created = json.loads(run.stdout)
        (call,) = created["calls"]
        assert (call["source"]["target"], call["destination"]["target"]) == (
            "+15551234567", "+15559876543",
        )  # fmt: skip
        # 3 s of the call's audio (AudioSocket: 323 bytes per 20 ms), then the API hangs up:
        # nothing else ends this call, whose flow holds no more actions
        got = server.wait_received(3 * 50 * 323)
        assert got >= 3 * 50 * 323, (
            f"the application got {got} bytes; the call: {env.call(call['id'])['status']}"
        )
        code, hung = env.api("POST", f"/v1.0/calls/{call['id']}/hangup")
        assert code == 200, hung
        result = uas.wait(20)
        (connection,) = server.wait_closed()
    assert result.returncode == 0, result.explain()
    assert (connection.path, connection.close_code) == ("/audio-stream", 1000)
    messages = parse_audiosocket(connection.data)
    assert messages[-1] == (0x00, b""), "no hangup message before the close"
    (stream,) = env.streams(call_id=call["id"])
    assert messages[0] == (0x01, uuid.UUID(stream["id"]).bytes)
    audio = [payload for kind, payload in messages[1:] if kind == 0x10]
    assert {len(payload) for payload in audio} == {320}
    assert_tone(b"".join(audio), 700, "the application")
    heard = loud_part(heard_on(cap.path, media_port)[0])
    assert_tone(heard, 500, "the SIPp UAS")
    assert 1.8 <= seconds(heard) <= 2.2, f"the UAS heard {seconds(heard):.2f} s of 500 Hz"
    assert (stream["direction"], stream["url"]) == ("outbound", server.url())
