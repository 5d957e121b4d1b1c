"""Issue 4 with real peers: media streams on calls and conferences over WebSocket.

SIPp or ``callstream dial`` is the phone; the tests' own aiohttp client is the application.
What a phone heard is judged from a tcpdump capture (SIPp) or its recording (dial); what
the application heard from the messages it received. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from callstream.codecs.g711 import ulaw_decode, ulaw_encode
from tests.audio_analysis import dominant_frequency, goertzel_power, rms_dbfs, sine
from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, Capture, Gateway, PortAllocator, Sipp, read_wav
from tests.interop.listening import heard_on
from tests.interop.media import tone_ul, tone_wav
from tests.interop.test_api import api, create_token

SEED_DIR = Path(__file__).parent / "seed"
SIPP_DIR = SEED_DIR / "sipp"
FRAME_BYTES = 320
ACCOUNT = "alice"

STREAM_ROUTE = """
[[routes]]
match = "stream"
account = "alice"
actions = [ {{ type = "answer" }}, {{ type = "sleep", option = {{ duration = {sleep_ms} }} }} ]
"""


# ---------------------------------------------------------------- the gateway and its API


@dataclass
class Env:
    """A gateway with the ``stream`` route (answer, sleep) and a token of its account."""

    gateway: Gateway
    token: str
    database_url: str

    def api(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        return api(self.gateway, method, path, self.token, body)

    def ws_url(self, path: str, **query: str) -> str:
        items = {"token": self.token, **query}
        text = "&".join(f"{key}={value}" for key, value in items.items())
        return f"ws://{HOST}:{self.gateway.http_port}{path}?{text}"

    def live_call_id(self, timeout: float = 15.0) -> str:
        """The id of the account's one call in progress (an inbound call found by the API)."""
        return self.live_call_ids(1, timeout)[0]

    def live_call_ids(self, count: int, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            code, body = self.api("GET", "/v1.0/calls?status=progressing")
            assert code == 200, body
            ids = [call["id"] for call in body["result"]]
            if len(ids) == count:
                return ids
            assert time.monotonic() < deadline, f"{len(ids)} calls in progress, not {count}"
            time.sleep(0.1)

    def streams(self, **query: str) -> list[dict[str, Any]]:
        text = "&".join(f"{key}={value}" for key, value in query.items())
        code, body = self.api("GET", f"/v1.0/media_streams?{text}")
        assert code == 200, body
        result: list[dict[str, Any]] = body["result"]
        return result

    def stream(self, stream_id: str) -> dict[str, Any]:
        code, body = self.api("GET", f"/v1.0/media_streams/{stream_id}")
        assert code == 200, body
        return body  # type: ignore[no-any-return]

    def wait_stream(
        self, stream_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.stream(stream_id)
            if done(record) or time.monotonic() > deadline:
                return record
            time.sleep(0.1)

    def call(self, call_id: str) -> dict[str, Any]:
        code, body = self.api("GET", f"/v1.0/calls/{call_id}")
        assert code == 200, body
        return body  # type: ignore[no-any-return]


def start_env(
    gateway_factory: GatewayFactory,
    tmp_path: Path,
    sleep_ms: int = 10000,
    extra_config: str = "",
    **flags: Any,
) -> Env:
    database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    config = STREAM_ROUTE.format(sleep_ms=sleep_ms) + extra_config
    gateway = gateway_factory(config, database_url=database_url, **flags)
    return Env(gateway, create_token(database_url, ACCOUNT), database_url)


# ---------------------------------------------------------------- phones


def sipp_tone_call(
    sipp: SippRunner,
    env: Env,
    tmp_path: Path,
    frequency_hz: int,
    media_port: int,
    bye_after_ms: int | None = None,
) -> Sipp:
    """SIPp calls the ``stream`` route sending a looped tone; it stays until the gateway's
    BYE, or sends BYE itself after ``bye_after_ms``."""
    directory = tmp_path / f"tone{frequency_hz}"
    directory.mkdir(exist_ok=True)
    tone = tone_ul(directory, frequency_hz, seconds=1)
    scenario = SIPP_DIR / "uac_tone_until_bye.xml"
    args: tuple[str, ...] = ()
    if bye_after_ms is not None:
        scenario, args = SIPP_DIR / "uac_tone_then_bye.xml", ("-d", str(bye_after_ms))
    return sipp.start(
        str(scenario), env.gateway.uri_host, "-s", "stream", *args,
        timeout=40, media_port=media_port, files=[tone],
    )  # fmt: skip


def dial(
    target: str,
    ports: PortAllocator,
    *,
    play: Path | None = None,
    record: Path | None = None,
    duration_s: float | None = None,
    dtmf: str | None = None,
) -> subprocess.Popen[str]:
    """``callstream dial`` running in the background (a softphone that records)."""
    rtp_first = ports.rtp_block(10)
    argv = [sys.executable, "-m", "callstream", "dial", target]
    argv += ["--rtp-ports", f"{rtp_first}-{rtp_first + 9}"]
    if play is not None:
        argv += ["--play", str(play)]
    if record is not None:
        argv += ["--record", str(record)]
    if duration_s is not None:
        argv += ["--duration", str(duration_s)]
    if dtmf is not None:
        argv += ["--dtmf", dtmf]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        process.kill()
    assert process.returncode == 0, f"exit {process.returncode}:\n{output}"
    return output


# ---------------------------------------------------------------- audio


def loud_part(pcm: bytes, floor_dbfs: float = -30) -> bytes:
    """The 20 ms frames louder than ``floor_dbfs`` (leading and trailing silence cut)."""
    frames = (pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES))
    return b"".join(frame for frame in frames if rms_dbfs(frame) > floor_dbfs)


def power_db(pcm: bytes, frequency: float) -> float:
    return 10 * math.log10(goertzel_power(pcm, frequency) + 1e-12)


def seconds(pcm: bytes) -> float:
    return len(pcm) / 16000


def assert_tone(pcm: bytes, frequency: float, who: str, min_s: float = 1.0) -> None:
    """``pcm`` holds at least ``min_s`` of audio whose strongest component is ``frequency``."""
    loud = loud_part(pcm)
    assert seconds(loud) >= min_s, f"{who}: only {seconds(loud):.2f} s of sound"
    assert dominant_frequency(loud) == pytest.approx(frequency, abs=15), who


def assert_tones(pcm: bytes, frequencies: list[float], who: str, min_s: float = 1.0) -> None:
    """Each of ``frequencies`` is heard, none more than 20 dB below the loudest."""
    loud = loud_part(pcm)
    assert seconds(loud) >= min_s, f"{who}: only {seconds(loud):.2f} s of sound"
    powers = {frequency: power_db(loud, frequency) for frequency in frequencies}
    strongest = max(powers.values())
    assert all(power > strongest - 20 for power in powers.values()), f"{who}: {powers}"


def tone_frames(pcm: bytes, frequencies: list[float]) -> list[float | None]:
    """Per 20 ms frame, which of ``frequencies`` holds most of its power (None: silence)."""
    found: list[float | None] = []
    for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        frame = pcm[start : start + FRAME_BYTES]
        level = rms_dbfs(frame)
        if level < -40:
            found.append(None)
            continue
        mean_square = 10 ** (level / 10)
        best = max(frequencies, key=lambda f: goertzel_power(frame, f))
        found.append(best if goertzel_power(frame, best) / mean_square > 0.5 else None)
    return found


def rtp_packet(payload: bytes, seq: int, ts: int, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    """An RTP v2 packet (RFC 3550 section 5.1) with no CSRC, extension or padding."""
    marker = 0x80 if seq == 0 else 0
    return struct.pack("!BBHII", 0x80, marker | pt, seq & 0xFFFF, ts, ssrc) + payload


def rtp_packets(pcm: bytes, first_seq: int = 0) -> list[bytes]:
    """20 ms PCMU packets of ``pcm``."""
    payload = ulaw_encode(pcm)
    return [
        rtp_packet(payload[offset : offset + 160], first_seq + n, (first_seq + n) * 160)
        for n, offset in enumerate(range(0, len(payload), 160))
    ]


def audiosocket_message(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def audiosocket_audio(pcm: bytes, chunk_bytes: int = FRAME_BYTES) -> bytes:
    """``pcm`` as AudioSocket 0x10 messages of ``chunk_bytes`` each, one byte string."""
    return b"".join(
        audiosocket_message(0x10, pcm[offset : offset + chunk_bytes])
        for offset in range(0, len(pcm), chunk_bytes)
    )


def parse_audiosocket(data: bytes) -> list[tuple[int, bytes]]:
    """A byte stream of AudioSocket messages -> [(kind, payload)]; trailing bytes fail."""
    messages = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= 3, f"truncated header at byte {offset}"
        kind, length = struct.unpack_from(">BH", data, offset)
        end = offset + 3 + length
        assert end <= len(data), f"message at byte {offset} truncated ({length} bytes declared)"
        messages.append((kind, data[offset + 3 : end]))
        offset = end
    return messages


# ---------------------------------------------------------------- the application's client


@dataclass
class StreamClient:
    """One WebSocket to the gateway; a task collects what it receives until the close."""

    ws: aiohttp.ClientWebSocketResponse
    binary: list[bytes] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                self.binary.append(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.text.append(message.data)
            else:
                if message.type == aiohttp.WSMsgType.CLOSE:
                    self.close_code, self.close_reason = message.data, message.extra or ""
                else:
                    self.close_code = self.ws.close_code
                return

    async def send_all(self, messages: list[bytes]) -> None:
        for message in messages:
            await self.ws.send_bytes(message)

    async def closed(self) -> int | None:
        """Wait (20 s at most) for the close; its code."""
        assert self.task is not None
        async with asyncio.timeout(20):
            await asyncio.shield(self.task)
        return self.close_code

    @property
    def received(self) -> bytes:
        return b"".join(self.binary)


async def open_stream(session: aiohttp.ClientSession, url: str) -> StreamClient:
    ws = await session.ws_connect(url, autoclose=True, max_msg_size=0)
    client = StreamClient(ws)
    client.task = asyncio.get_running_loop().create_task(client._read())
    return client


def stream_id_of_audiosocket(client: StreamClient) -> str:
    """The UUID of the 0x01 message that opens every AudioSocket stream."""
    first = client.binary[0]
    assert first[:3] == b"\x01\x00\x10", first[:3].hex()
    return str(uuid.UUID(bytes=first[3:19]))


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


# ---------------------------------------------------------------- the application's server


@dataclass
class ServerConnection:
    """One WebSocket the gateway opened to the application's server (external media)."""

    path: str
    received: list[bytes] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    close_code: int | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.received)


class AppServer:
    """An aiohttp WebSocket server on 127.0.0.1 in its own thread: the application that
    ``external_media_start`` dials. On each connection it sends ``reply`` at once (a burst,
    in 320-byte WebSocket messages), then records what it receives until the close;
    ``close_after_s`` makes it close first."""

    def __init__(self, port: int, reply: bytes = b"", close_after_s: float | None = None) -> None:
        self.port = port
        self.reply = reply
        self.close_after_s = close_after_s
        self.connections: list[ServerConnection] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="app-server", daemon=True)

    def url(self, path: str = "/audio-stream") -> str:
        return f"ws://{HOST}:{self.port}{path}"

    def __enter__(self) -> AppServer:
        self._thread.start()
        assert self._ready.wait(10), "the test's WebSocket server did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def wait_closed(self, count: int = 1, timeout: float = 20.0) -> list[ServerConnection]:
        """Wait until ``count`` connections were made and all of them closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [c for c in self.connections if c.close_code is not None]
            if len(self.connections) >= count and len(done) == len(self.connections):
                return list(self.connections)
            time.sleep(0.05)
        raise AssertionError(f"connections: {self.connections!r}")

    def wait_received(self, size_bytes: int, timeout: float = 10.0) -> int:
        """Wait until the first connection received ``size_bytes``; how many it got."""
        deadline = time.monotonic() + timeout
        got = 0
        while time.monotonic() < deadline:
            got = len(self.connections[0].data) if self.connections else 0
            if got >= size_bytes:
                break
            time.sleep(0.05)
        return got

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        connection = ServerConnection(request.path)
        self.connections.append(connection)
        for offset in range(0, len(self.reply), FRAME_BYTES):
            await ws.send_bytes(self.reply[offset : offset + FRAME_BYTES])
        if self.close_after_s is not None:
            asyncio.get_running_loop().call_later(
                self.close_after_s, lambda: asyncio.ensure_future(ws.close())
            )
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                connection.received.append(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                connection.text.append(message.data)
        connection.close_code = ws.close_code or 0
        return ws


def ulaw_packets(pcm: bytes) -> list[bytes]:
    """``pcm`` as 160-byte μ-law messages (sln with format=ulaw)."""
    payload = ulaw_encode(pcm)
    return [payload[offset : offset + 160] for offset in range(0, len(payload), 160)]


def pcm_messages(pcm: bytes) -> list[bytes]:
    return [pcm[offset : offset + FRAME_BYTES] for offset in range(0, len(pcm), FRAME_BYTES)]


def sipp_heard(capture_path: Path, media_port: int) -> bytes:
    return heard_on(capture_path, media_port)[0]


# ---------------------------------------------------------------- 4. the encapsulations

WIRES = {
    # name: (query, message size, what the client sends: 2 s of its tone, as messages)
    "sln": ({"encapsulation": "sln"}, 320, pcm_messages),
    "sln-ulaw": ({"encapsulation": "sln", "format": "ulaw"}, 160, ulaw_packets),
    "rtp": ({"encapsulation": "rtp"}, 172, rtp_packets),
}
SENT_HZ = {"sln": 400, "sln-ulaw": 600, "rtp": 800}


def decode_received(name: str, messages: list[bytes]) -> bytes:
    if name == "sln":
        return b"".join(messages)
    if name == "sln-ulaw":
        return ulaw_decode(b"".join(messages))
    assert {m[:2] for m in messages} <= {b"\x80\x00", b"\x80\x80"}, "not RTP v2 PT 0"
    return ulaw_decode(b"".join(m[12:] for m in messages))


async def test_sln_slin_sln_ulaw_and_rtp_at_once_exact_sizes_both_ways(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Three streams on one SIPp call (1000 Hz): each receives messages of its exact size
    holding the caller's tone, and each sends 2 s of its own tone, all heard by SIPp."""
    env = start_env(gateway_factory, tmp_path, sleep_ms=7000)
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        caller = sipp_tone_call(sipp, env, tmp_path, 1000, media_port)
        call_id = await in_thread(env.live_call_id)
        path = f"/v1.0/calls/{call_id}/media_stream"
        clients = {
            name: await open_stream(session, env.ws_url(path, **query))
            for name, (query, _, _) in WIRES.items()
        }
        for name, (_, _, encode) in WIRES.items():
            await clients[name].send_all(encode(sine(SENT_HZ[name], 2.0, amplitude=0.25)))
        codes = {name: await client.closed() for name, client in clients.items()}
        result = await in_thread(caller.wait, 20)
    assert result.returncode == 0, result.explain()
    assert codes == dict.fromkeys(WIRES, 1000)
    for name, (_, size, _) in WIRES.items():
        messages = clients[name].binary
        assert len(messages) >= 4 * 50, f"{name}: {len(messages)} messages in 7 s"
        assert {len(m) for m in messages} == {size}, name
        assert_tone(decode_received(name, messages), 1000, name, min_s=3.0)
    heard = loud_part(sipp_heard(cap.path, media_port))
    assert_tones(heard, list(SENT_HZ.values()), "SIPp")
    assert 1.8 <= seconds(heard) <= 2.2, f"SIPp heard {seconds(heard):.2f} s (2 s sent at once)"
    records = {r["encapsulation"] + (f"-{r['format']}" if r["format"] else "") for r in
               await in_thread(lambda: env.streams(call_id=call_id))}  # fmt: skip
    assert records == {"sln", "sln-ulaw", "rtp"}


# ---------------------------------------------------------------- 5. conferences


async def test_conference_stream_hears_both_participants_and_both_hear_it(
    gateway_factory: GatewayFactory,
    ports: PortAllocator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    env = start_env(gateway_factory, tmp_path)
    code, conference = env.api("POST", "/v1.0/conferences", {"name": "streamed"})
    assert code == 200, conference
    join = [{"type": "answer"},
            {"type": "conference_join", "option": {"conference_id": conference["id"]}}]  # fmt: skip
    code, flow = env.api("POST", "/v1.0/flows", {"name": "join", "actions": join})
    assert code == 200, flow
    code, route = env.api("POST", "/v1.0/routes", {"match": "conf", "flow_id": flow["id"]})
    assert code == 200, route
    target = f"sip:conf@{env.gateway.uri_host}"
    says = {"carol": 500.0, "dave": 700.0}
    recordings = {who: tmp_path / f"{who}_heard.wav" for who in says}
    phones = [
        dial(target, ports, play=tone_wav(tmp_path / f"{who}.wav", hz, 8, amplitude=0.3),
             record=recordings[who], duration_s=8)
        for who, hz in says.items()
    ]  # fmt: skip
    try:
        await in_thread(env.live_call_ids, 2)
        url = env.ws_url(f"/v1.0/conferences/{conference['id']}/media_stream", encapsulation="sln")
        client = await open_stream(session, url)
        await asyncio.sleep(1.0)  # both are in the mix by now: send the third voice
        await client.send_all(pcm_messages(sine(900, 2.0, amplitude=0.3)))
        for phone in phones:
            await in_thread(finish, phone)
    finally:
        for phone in phones:
            phone.kill()
    code, ended = env.api("DELETE", f"/v1.0/conferences/{conference['id']}")
    assert code == 200, ended
    assert await client.closed() == 1000
    assert {len(m) for m in client.binary} == {320}
    assert_tones(client.received, [500, 700], "the conference stream", min_s=3.0)
    for who, recording in recordings.items():
        pcm, _ = read_wav(recording)
        loud = loud_part(pcm)
        assert power_db(loud, 900) > power_db(loud, 1500) + 20, f"{who} did not hear 900 Hz"
    (record,) = env.streams(conference_id=conference["id"])
    assert (record["conference_id"], record["call_id"]) == (conference["id"], None)
    health = env.gateway.health()  # both phones sent every period: mixed once both were in
    assert health is not None and health["media_clock_early_runs"] > 0, health


# ---------------------------------------------------------------- 6. refusals


def refused(env: Env, path: str, token: str | None = None, upgrade: bool = True) -> tuple[int, str]:
    """A WebSocket upgrade request the gateway must refuse: (status, error code)."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} if upgrade else {}  # fmt: skip
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://{HOST}:{env.gateway.http_port}{path}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            raise AssertionError(f"{path}: answered {response.status}, not refused")
    except urllib.error.HTTPError as error:
        assert error.headers.get_content_type() == "application/json", path
        body = json.loads(error.read())
        assert set(body) == {"error"} and body["error"]["message"], body
        return error.code, body["error"]["code"]


async def test_refusals_before_the_upgrade(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    env = start_env(gateway_factory, tmp_path)
    bob_token = create_token(env.database_url, "bob")
    caller = sipp_tone_call(sipp, env, tmp_path, 1000, ports.rtp_block(4), bye_after_ms=4000)
    call_id = await in_thread(env.live_call_id)
    path = f"/v1.0/calls/{call_id}/media_stream"
    ok = f"?encapsulation=rtp&token={env.token}"
    cases = {
        "no token": (refused(env, path + "?encapsulation=rtp"), (401, "unauthorized")),
        "bad token": (refused(env, path + "?encapsulation=rtp&token=cs_nope"),
                      (401, "unauthorized")),
        "bad bearer": (refused(env, path + "?encapsulation=rtp", token="cs_nope"),
                       (401, "unauthorized")),
        "unknown call": (refused(env, f"/v1.0/calls/{uuid.uuid4()}/media_stream{ok}"),
                         (404, "not_found")),
        "another account's call": (refused(env, path + "?encapsulation=rtp", token=bob_token),
                                   (404, "not_found")),
        "not a UUID": (refused(env, f"/v1.0/calls/not-a-uuid/media_stream{ok}"),
                       (404, "not_found")),
        "unknown conference": (refused(env, f"/v1.0/conferences/{uuid.uuid4()}/media_stream{ok}"),
                               (404, "not_found")),
        "no encapsulation": (refused(env, f"{path}?token={env.token}"),
                             (400, "invalid_request")),
        "unknown encapsulation": (refused(env, f"{path}?encapsulation=mp3&token={env.token}"),
                                  (400, "invalid_request")),
        "bad format": (refused(env, f"{path}?encapsulation=sln&format=alaw&token={env.token}"),
                       (400, "invalid_request")),
        "plain GET": (refused(env, path + ok, upgrade=False), (400, "not_websocket")),
    }  # fmt: skip
    assert {name: got for name, (got, _) in cases.items()} == {
        name: expected for name, (_, expected) in cases.items()
    }
    # the default limit: 5 streams per call, the 6th refused; the bearer header works too
    clients = [await open_stream(session, env.ws_url(path, encapsulation="sln")) for _ in range(5)]
    assert refused(env, path + ok) == (429, "too_many")
    assert refused(env, path + "?encapsulation=sln", token=env.token) == (429, "too_many")
    await clients[0].ws.close()
    await clients[0].closed()
    again = await session.ws_connect(
        env.ws_url(path, encapsulation="sln").split("&token=")[0],
        headers={"Authorization": f"Bearer {env.token}"},
    )  # a closed stream frees its place
    result = await in_thread(caller.wait, 20)
    assert result.returncode == 0, result.explain()
    assert [await client.closed() for client in clients[1:]] == [1000] * 4
    await again.close()
    assert refused(env, path + ok) == (409, "conflict")


async def test_max_streams_per_call_flag(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    env = start_env(gateway_factory, tmp_path, sleep_ms=3000, max_streams_per_call=2)
    caller = sipp_tone_call(sipp, env, tmp_path, 1000, ports.rtp_block(4))
    call_id = await in_thread(env.live_call_id)
    path = f"/v1.0/calls/{call_id}/media_stream"
    clients = [await open_stream(session, env.ws_url(path, encapsulation="rtp")) for _ in range(2)]
    assert refused(env, f"{path}?encapsulation=rtp&token={env.token}") == (429, "too_many")
    result = await in_thread(caller.wait, 20)
    assert result.returncode == 0, result.explain()
    assert [await client.closed() for client in clients] == [1000, 1000]


# ---------------------------------------------------------------- 7. malformed input

GARBAGE_HZ = 300  # what malformed messages carry: SIPp must never hear it


def bad_version(packet: bytes) -> bytes:
    return bytes((0x40 | (packet[0] & 0x3F),)) + packet[1:]  # version 1


async def test_malformed_input_is_dropped_counted_and_never_heard(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Each stream sends malformed messages carrying 300 Hz, then good audio: the fault is
    counted, the stream kept, the good audio heard and the 300 Hz never. A stream sending
    only garbage is closed with 1007 after 2 s; the call goes on."""
    env = start_env(gateway_factory, tmp_path, sleep_ms=9000)
    garbage_pcm = sine(GARBAGE_HZ, 1.0, amplitude=0.4)
    media_port = ports.rtp_block(4)
    with capture(media_port) as cap:
        caller = sipp_tone_call(sipp, env, tmp_path, 1000, media_port)
        call_id = await in_thread(env.live_call_id)
        path = f"/v1.0/calls/{call_id}/media_stream"
        rtp = await open_stream(session, env.ws_url(path, encapsulation="rtp"))
        sln = await open_stream(session, env.ws_url(path, encapsulation="sln"))
        audiosocket = await open_stream(session, env.ws_url(path, encapsulation="audiosocket"))
        truncated = await open_stream(session, env.ws_url(path, encapsulation="audiosocket"))
        garbage = await open_stream(session, env.ws_url(path, encapsulation="rtp"))

        # rtp: 50 packets of version 1; sln: 25 odd-sized messages and a text frame
        await rtp.send_all([bad_version(p) for p in rtp_packets(garbage_pcm)])
        await sln.send_all([m + b"\x00" for m in pcm_messages(garbage_pcm[:8000])])
        await sln.ws.send_str("hello")
        # audiosocket: an unknown kind (the rest of that message goes with it), a text
        # frame, then a message split in two that completes (600 Hz, heard)
        unknown = audiosocket_message(0x42, b"x") + audiosocket_audio(garbage_pcm[:3200])
        await audiosocket.ws.send_bytes(unknown)
        await audiosocket.ws.send_str("hello")
        split = audiosocket_message(0x10, sine(600, 1.0, amplitude=0.3))
        await audiosocket.send_all([split[:5001], split[5001:]])
        # a message that never completes: its audio must not be heard
        await truncated.ws.send_bytes(audiosocket_message(0x10, garbage_pcm)[:12000])
        # good audio after the garbage: the streams were kept
        await rtp.send_all(rtp_packets(sine(800, 1.0, amplitude=0.3), first_seq=100))
        await sln.send_all(pcm_messages(sine(400, 1.0, amplitude=0.3)))
        # only garbage, one message per 100 ms: closed with 1007 after 2 s
        for n in range(40):
            if garbage.task is not None and garbage.task.done():
                break
            await garbage.ws.send_bytes(bad_version(rtp_packet(b"\xff" * 160, n, n * 160)))
            await asyncio.sleep(0.1)
        assert await garbage.closed() == 1007
        assert "RTP version 1 is not supported" in garbage.close_reason, garbage.close_reason
        await asyncio.sleep(0.5)
        assert env.call(call_id)["status"] == "progressing", "the garbage ended the call"
        await truncated.ws.close()
        for client in (rtp, sln, audiosocket):
            assert not client.task.done(), "a stream sending some garbage was closed"  # type: ignore[union-attr]
        result = await in_thread(caller.wait, 20)
    assert result.returncode == 0, result.explain()
    heard = loud_part(sipp_heard(cap.path, media_port))
    assert_tones(heard, [400, 600, 800], "SIPp")
    assert power_db(heard, GARBAGE_HZ) < power_db(heard, 600) - 30, "malformed audio was heard"
    records = env.streams(call_id=call_id)
    by_id = {record["id"]: record for record in records}
    rtp_records = [r for r in records if r["encapsulation"] == "rtp"]
    (kept,) = [r for r in rtp_records if r["close_code"] != 1007]
    (closed,) = [r for r in rtp_records if r["close_code"] == 1007]
    (sln_record,) = [r for r in records if r["encapsulation"] == "sln"]
    dropped = {
        "rtp": kept["frames_dropped_malformed"],
        "sln": sln_record["frames_dropped_malformed"],
        "audiosocket": by_id[stream_id_of_audiosocket(audiosocket)]["frames_dropped_malformed"],
    }
    assert dropped == {"rtp": 50, "sln": 26, "audiosocket": 2}
    assert closed["status"] == "ended"
    assert "RTP version 1 is not supported" in closed["close_reason"]


# ---------------------------------------------------------------- 8. lifecycle and DTMF


async def test_client_close_keeps_the_call_and_the_call_end_closes_every_stream(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """SIPp sends the digit 1 after 3 s and BYE 1.5 s later. A stream the client closes
    leaves the call up; the digit reaches the AudioSocket stream as 0x03; the BYE closes
    every stream with 1000, the AudioSocket one after its 0x00 hangup message."""
    env = start_env(gateway_factory, tmp_path, sleep_ms=30000)
    directory = tmp_path / "dtmf"
    directory.mkdir()
    caller = sipp.start(
        str(SIPP_DIR / "uac_dtmf_then_bye.xml"), env.gateway.uri_host, "-s", "stream",
        timeout=30, media_port=ports.rtp_block(4), files=[tone_ul(directory, 1000, seconds=1)],
    )  # fmt: skip
    call_id = await in_thread(env.live_call_id)
    path = f"/v1.0/calls/{call_id}/media_stream"
    leaving = await open_stream(session, env.ws_url(path, encapsulation="sln"))
    await asyncio.sleep(0.3)
    await leaving.ws.close()
    await asyncio.sleep(0.3)
    assert env.call(call_id)["status"] == "progressing", "the client's close ended the call"
    clients = {
        encapsulation: await open_stream(session, env.ws_url(path, encapsulation=encapsulation))
        for encapsulation in ("audiosocket", "rtp", "sln")
    }
    result = await in_thread(caller.wait, 20)
    assert result.returncode == 0, result.explain()
    codes = {name: await client.closed() for name, client in clients.items()}
    assert codes == {"audiosocket": 1000, "rtp": 1000, "sln": 1000}
    messages = parse_audiosocket(clients["audiosocket"].received)
    assert messages[0][0] == 0x01 and messages[-1] == (0x00, b"")
    assert [m for m in messages if m[0] == 0x03] == [(0x03, b"1")]
    assert {kind for kind, _ in messages[1:-1]} == {0x03, 0x10}
    call = env.call(call_id)
    assert (call["status"], call["hangup_by"]) == ("hangup", "remote")
    record = env.stream(stream_id_of_audiosocket(clients["audiosocket"]))
    assert (record["status"], record["close_code"]) == ("ended", 1000)


# ---------------------------------------------------------------- 9. external media failures

EXTERNAL_ROUTE = """
[[routes]]
match = "external"
account = "alice"
actions = [
  {{ type = "answer" }},
  {{ type = "external_media_start", option = {{ url = "{unreachable}", encapsulation = "sln" }} }},
  {{ type = "external_media_start", option = {{ url = "{closing}", encapsulation = "rtp" }} }},
  {{ type = "sleep", option = {{ duration = 6000 }} }},
]
"""


async def test_external_media_unreachable_is_recorded_and_a_remote_close_keeps_the_call(
    gateway_factory: GatewayFactory, sipp: SippRunner, ports: PortAllocator, tmp_path: Path
) -> None:
    unreachable = f"ws://{HOST}:{ports.port()}/nobody"
    with AppServer(ports.port(), close_after_s=1.0) as server:
        extra = EXTERNAL_ROUTE.format(unreachable=unreachable, closing=server.url("/closing"))
        env = start_env(gateway_factory, tmp_path, extra_config=extra)
        directory = tmp_path / "external"
        directory.mkdir()
        caller = sipp.start(
            str(SIPP_DIR / "uac_tone_until_bye.xml"), env.gateway.uri_host, "-s", "external",
            timeout=30, media_port=ports.rtp_block(4), files=[tone_ul(directory, 1000, 1)],
        )  # fmt: skip
        call_id = await in_thread(env.live_call_id)
        (closed,) = await in_thread(server.wait_closed)
        await asyncio.sleep(3.0)  # the three tries are over; the sleep action still runs
        assert env.call(call_id)["status"] == "progressing", "external media ended the call"
        result = await in_thread(caller.wait, 20)
    assert result.returncode == 0, result.explain()
    assert closed.path == "/closing" and len(closed.received) >= 20  # RTP flowed for 1 s
    by_url = {record["url"]: record for record in env.streams(call_id=call_id)}
    failed, ended = by_url[unreachable], by_url[server.url("/closing")]
    assert (failed["status"], failed["direction"]) == ("failed", "outbound")
    assert f"could not connect to {unreachable} after 3 tries" in failed["error"]
    assert (ended["status"], ended["close_code"]) == ("ended", 1000)
    tries = re.findall(
        rf"external media {re.escape(unreachable)}: try (\d) failed", env.gateway.log()
    )
    assert tries == ["1", "2", "3"]
    call = env.call(call_id)
    assert (call["hangup_by"], call["hangup_reason"]) == ("local", "normal")
    env.gateway.wait_for_log(rf"call {call_id} action type=sleep", 1)
