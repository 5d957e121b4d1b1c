"""Issue 5, Plivo (seed 004) as its users run it, with real SIP peers.

A route's ``answer_url`` points at the test's application (tests/interop/providers.py),
which answers with plivo-python's ``<Stream>`` XML (seed 004's example) pointing back at
its own WebSocket server, and records the status callbacks. SIPp calls with a tone; what
it heard is judged from a tcpdump capture. The stream's own media messages (50 a second)
are the clock: nothing here asserts wall-clock time.
Run ``pytest tests/interop/test_plivo.py -k content_type -s`` to see one run's log.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callstream.codecs.g711 import ulaw_decode, ulaw_encode
from tests.audio_analysis import dominant_frequency, sine
from tests.interop.conftest import GatewayFactory, SippRunner
from tests.interop.harness import HOST, Capture, PortAllocator, Sipp
from tests.interop.listening import heard_on
from tests.interop.media import tone_ul
from tests.interop.providers import ProviderApp, WsConnection, save_message_log
from tests.interop.test_api import api, create_token
from tests.interop.test_media_streams import (
    SIPP_DIR,
    assert_tone,
    loud_part,
    tone_frames,
)

ACCOUNT = "alice"
INBOUND = "inbound"
ROUTE = """
[[routes]]
match = "plivo"
account = "alice"
answer_url = "{answer_url}"
answer_method = "{method}"
"""
# plivo-python 4.63.0's to_string() of ResponseElement().add(StreamElement(url, **attributes))
# (seed 004's example), then .add(WaitElement(length=...)).add(HangupElement()).
START_KEYS = ["callId", "streamId", "accountId", "tracks", "mediaFormat"]
MEDIA_KEYS = ["track", "timestamp", "chunk", "payload"]
CALLBACK_KEYS = {"Event", "Error", "CallUUID", "From", "To", "ServiceURL", "ExtraHeaders",
                 "StreamID", "Timestamp"}  # fmt: skip


def plivo_xml(url: str, wait_s: int | None = None, **attributes: str) -> str:
    """What plivo-python prints for a <Stream> with ``attributes`` (then a <Wait>)."""
    attrs = "".join(f' {name}="{value}"' for name, value in attributes.items())
    # <Hangup/>: the gateway keeps a call whose flow ended up while a stream is live
    wait = f'  <Wait length="{wait_s}"/>\n  <Hangup/>\n' if wait_s is not None else ""
    return f"<Response>\n  <Stream{attrs}>{url}</Stream>\n{wait}</Response>\n"


def start_gateway(
    gateway_factory: GatewayFactory, tmp_path: Path, app: ProviderApp, method: str = "POST"
) -> tuple[Any, str]:
    database_url = f"sqlite:///{tmp_path / 'callstream.db'}"
    config = ROUTE.format(answer_url=app.http_url("/answer"), method=method)
    gateway = gateway_factory(config, database_url=database_url)
    return gateway, create_token(database_url, ACCOUNT)


@dataclass
class PlivoCall:
    """One call whose flow is the answer URL's: SIPp calling in (``inbound``, the route's
    answer_url) or answering a call the API places (``outbound``, POST /v1.0/calls with
    answer_url); either way SIPp sends a looped tone until the gateway's BYE."""

    phone: Sipp
    media_port: int
    from_: str
    to: str
    direction: str


def place_call(
    mode: str, sipp: SippRunner, gateway: Any, token: str, app: ProviderApp, tmp_path: Path,
    ports: PortAllocator, hz: int = 1000, method: str = "POST", media_port: int | None = None,
) -> PlivoCall:  # fmt: skip
    media_port = media_port or ports.rtp_block(4)
    directory = tmp_path / f"tone{hz}-{media_port}"
    directory.mkdir(exist_ok=True)
    tone = tone_ul(directory, hz, seconds=1)
    if mode == "inbound":
        phone = sipp.start(
            str(SIPP_DIR / "uac_tone_until_bye.xml"), gateway.uri_host, "-s", "plivo",
            timeout=60, media_port=media_port, files=[tone],
        )  # fmt: skip
        return PlivoCall(phone, media_port, "sipp", "plivo", "inbound")
    phone = sipp.start(str(SIPP_DIR / "uas_tone.xml"), None, timeout=60, listen=True,
                       media_port=media_port, files=[tone])  # fmt: skip
    body = {
        "source": {"type": "tel", "target": "+15551234567"},
        "destinations": [{"type": "sip", "target": f"sip:plivo@{HOST}:{phone.port}"}],
        "answer_url": app.http_url("/answer"),
        "answer_method": method,
    }
    code, created = api(gateway, "POST", "/v1.0/calls", token, body)
    assert code == 200, created
    return PlivoCall(phone, media_port, "+15551234567", "plivo", "outbound")


def the_call(gateway: Any, token: str) -> dict[str, Any]:
    code, calls = api(gateway, "GET", "/v1.0/calls", token)
    assert code == 200, calls
    (call,) = calls["result"]
    return call  # type: ignore[no-any-return]


def payload_pcm(connection: WsConnection, content_type: str) -> bytes:
    """The inbound track's audio, decoded from the media payloads."""
    raw = b"".join(base64.b64decode(m["media"]["payload"]) for m in connection.of("media", "event"))
    return ulaw_decode(raw) if "mulaw" in content_type else raw


def check_numbering(connection: WsConnection) -> None:
    """sequenceNumber counts every message from 1; chunk each track's media from 1."""
    messages = connection.messages
    assert [m["sequenceNumber"] for m in messages] == list(range(1, len(messages) + 1))
    media = connection.of("media", "event")
    assert [m["media"]["chunk"] for m in media] == list(range(1, len(media) + 1))
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert stamps == sorted(stamps) and all(isinstance(m["media"]["timestamp"], str) for m in media)


# ---------------------------------------------------------------- 1. answer URL and formats


@pytest.mark.parametrize("mode", [INBOUND, "outbound"])
@pytest.mark.parametrize(
    ("content_type", "encoding", "rate", "frame_bytes"),
    [
        ("audio/x-l16;rate=8000", "audio/x-l16", 8000, 320),
        ("audio/x-l16;rate=16000", "audio/x-l16", 16000, 640),
        ("audio/x-mulaw;rate=8000", "audio/x-mulaw", 8000, 160),
    ],
)
def test_content_type_sets_media_format_and_payloads_carry_the_callers_tone(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    tmp_path: Path,
    content_type: str,
    encoding: str,
    rate: int,
    frame_bytes: int,
    mode: str,
) -> None:
    """The answer URL is requested with Plivo's parameters; the <Stream> it returns opens a
    stream whose start names the mediaFormat and whose payloads hold SIPp's 1000 Hz at the
    contentType's rate; stop comes last, then the close."""
    method = "GET" if rate == 16000 else "POST"
    with ProviderApp(ports.port()) as app:
        attributes = {} if rate == 8000 and encoding == "audio/x-l16" else {
            "contentType": content_type}  # fmt: skip
        app.answer_xml = plivo_xml(app.ws_url("formats"), wait_s=4, **attributes)
        gateway, token = start_gateway(gateway_factory, tmp_path, app, method)
        phone = place_call(mode, sipp, gateway, token, app, tmp_path, ports, method=method)
        result = phone.phone.wait(60)
        assert result.returncode == 0, result.explain()
        (connection,) = app.wait_closed(1)
    save_message_log(tmp_path / "plivo_run.jsonl", connection.raw)
    call = the_call(gateway, token)
    (answer,) = [r for r in app.requests if r.path == "/answer"]
    assert answer.method == method
    assert {k: answer.params.get(k) for k in ("CallUUID", "From", "To", "Direction")} == {
        "CallUUID": call["id"], "From": phone.from_, "To": phone.to, "Direction": mode,
    }  # fmt: skip
    assert answer.params.get("CallStatus"), answer.params
    events = [m["event"] for m in connection.messages]
    assert events[0] == "start" and events[-1] == "stop"
    assert set(events[1:-1]) == {"media"}, set(events)
    start = connection.messages[0]
    assert list(start["start"]) == START_KEYS
    assert start["start"]["mediaFormat"] == {"encoding": encoding, "sampleRate": rate}
    assert (start["start"]["callId"], start["start"]["tracks"]) == (call["id"], ["inbound"])
    assert start["streamId"] == start["start"]["streamId"] and start["extra_headers"] == ""
    media = connection.of("media", "event")
    assert list(media[0]["media"]) == MEDIA_KEYS and media[0]["media"]["track"] == "inbound"
    sizes = [len(base64.b64decode(m["media"]["payload"])) for m in media[5:]]
    assert set(sizes) == {frame_bytes}, sorted(set(sizes))
    check_numbering(connection)
    pcm = payload_pcm(connection, content_type)
    loud = loud_part(pcm[: len(pcm) // (rate // 8000) * (rate // 8000)])
    if rate == 16000:
        assert dominant_frequency(pcm, rate=16000) == pytest.approx(1000, abs=15)
        assert len(pcm) / (2 * rate) >= 3.0, f"{len(pcm) / (2 * rate):.2f} s streamed"
    else:
        assert_tone(loud, 1000, content_type, min_s=3.0)
    assert call["status"] == "hangup"


# ---------------------------------------------------------------- 2. bidirectional


class TwoWayApp:
    """Drives a bidirectional stream from the server's loop, counting media messages:
    on start: a malformed message, playAudio (2 s of 500 Hz, l16) and checkpoint "first";
    on playedStream "first": playAudio (3 s of 700 Hz, mu-law); 50 media messages later:
    clearAudio."""

    def __init__(self) -> None:
        self.media = 0
        self.first_sent_at: int | None = None
        self.first_played_at: int | None = None
        self.second_sent_at: int | None = None
        self.cleared_sent_at: int | None = None
        self.cleared_at: int | None = None

    def __call__(self, app: ProviderApp, connection: WsConnection, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "media":
            self.media += 1
            if self.second_sent_at is not None and self.cleared_sent_at is None:
                if self.media >= self.second_sent_at + 50:
                    self.cleared_sent_at = self.media
                    app.send_now(connection, {"event": "clearAudio"})
        elif event == "start":
            app.send_now(connection, '{"event": "playAudio", "media": ')  # malformed JSON
            pcm = sine(500, 2.0, amplitude=0.3)
            app.send_now(connection, play_audio("audio/x-l16", pcm))
            app.send_now(connection, {"event": "checkpoint", "name": "first"})
            self.first_sent_at = self.media
        elif event == "playedStream" and message.get("name") == "first":
            self.first_played_at = self.media
            pcm = sine(700, 3.0, amplitude=0.3)
            app.send_now(connection, play_audio("audio/x-mulaw", ulaw_encode(pcm)))
            self.second_sent_at = self.media
        elif event == "clearedAudio":
            self.cleared_at = self.media


def play_audio(content_type: str, audio: bytes) -> dict[str, Any]:
    payload = base64.b64encode(audio).decode("ascii")
    media = {"contentType": content_type, "sampleRate": 8000, "payload": payload}
    return {"event": "playAudio", "media": media}


@pytest.mark.parametrize("mode", [INBOUND, "outbound"])
def test_play_audio_checkpoint_clear_audio_and_malformed_json(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    capture: Callable[[int], Capture],
    tmp_path: Path,
    mode: str,
) -> None:
    """SIPp hears the 2 s playAudio at normal speed; playedStream "first" comes only after
    those 2 s of the stream's own media; a clearAudio 1 s into the next 3 s cuts it (SIPp
    hears < 60 ms more) and is answered clearedAudio; the malformed message is counted and
    the stream kept; Played is called back."""
    driver = TwoWayApp()
    with ProviderApp(ports.port(), on_message=driver) as app:
        callback = app.http_url("/callback/two-way")
        app.answer_xml = plivo_xml(
            app.ws_url("two-way"), wait_s=8, bidirectional="true",
            statusCallbackUrl=callback, statusCallbackMethod="POST",
        )  # fmt: skip
        gateway, token = start_gateway(gateway_factory, tmp_path, app)
        media_port = ports.rtp_block(4)
        with capture(media_port) as cap:
            phone = place_call(mode, sipp, gateway, token, app, tmp_path, ports,
                               media_port=media_port)  # fmt: skip
            result = phone.phone.wait(60)
        assert result.returncode == 0, result.explain()
        (connection,) = app.wait_closed(1)
        app.wait_for("the Played callback", lambda: app.callbacks("Played"), 10)
    save_message_log(tmp_path / "plivo_two_way_run.jsonl", connection.raw)
    events = [m["event"] for m in connection.messages]
    assert events[0] == "start" and events[-1] == "stop"
    assert [m["name"] for m in connection.of("playedStream", "event")] == ["first"]
    assert events.count("clearedAudio") == 1
    # the checkpoint is answered once its 2 s (100 frames) have played, not before
    assert driver.first_sent_at is not None and driver.first_played_at is not None
    frames_until_played = driver.first_played_at - driver.first_sent_at
    assert 97 <= frames_until_played <= 115, frames_until_played
    assert driver.cleared_at is not None and driver.second_sent_at is not None
    heard = heard_on(cap.path, media_port)[0]
    frames = tone_frames(heard, [500, 700])
    assert 97 <= frames.count(500) <= 103, f"500 Hz lasted {frames.count(500) * 20} ms, not 2 s"
    assert_tone(b"".join(heard[i * 320 : i * 320 + 320] for i, f in enumerate(frames) if f == 500),
                500, "SIPp", min_s=1.8)  # fmt: skip
    played_before_clear = driver.cleared_sent_at - driver.second_sent_at  # type: ignore[operator]
    assert frames.count(700) <= played_before_clear + 3, (frames.count(700), played_before_clear)
    assert frames.count(700) >= played_before_clear - 5, "the 700 Hz hardly played"
    # the malformed message: counted on the record, the stream kept (it played after it)
    call = the_call(gateway, token)
    code, streams = api(gateway, "GET", f"/v1.0/media_streams?call_id={call['id']}", token)
    assert code == 200, streams
    (listed,) = streams["result"]
    code, record = api(gateway, "GET", f"/v1.0/media_streams/{listed['id']}", token)
    assert code == 200, record
    assert (record["frames_dropped_malformed"], record["encapsulation"]) == (1, "plivo")
    assert record["id"] == connection.messages[0]["streamId"]
    gateway.wait_for_log(r"malformed JSON", 1)
    (played, *_) = app.callbacks("Played")
    assert played.method == "POST" and CALLBACK_KEYS <= set(played.params)
    assert played.params["StreamID"] == record["id"]


# ---------------------------------------------------------------- 3. status callbacks


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_status_callbacks_start_stop_by_timeout_dropped_and_played(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    tmp_path: Path,
    method: str,
) -> None:
    """Two <Stream>s: one bidirectional with streamTimeout 2 (a short playAudio on start),
    one to a server that refuses. Callbacks by ``method``: StartStream, Played, StopStream
    (the timeout, which ends the stream and not the call), DroppedStream with Plivo's
    error; every one with every parameter."""

    def on_message(app: ProviderApp, connection: WsConnection, message: dict[str, Any]) -> None:
        if message.get("event") == "start":
            app.send_now(connection, play_audio("audio/x-l16", sine(500, 0.2, amplitude=0.3)))

    with ProviderApp(ports.port(), on_message=on_message) as app:
        callback = app.http_url("/callback/status")
        common = {"statusCallbackUrl": callback, "statusCallbackMethod": method}
        good, refused = app.ws_url("timeout"), app.ws_url("refuse")
        app.answer_xml = (
            "<Response>\n"
            f'  <Stream bidirectional="true" streamTimeout="2" extraHeaders="a1=x,b2=y" '
            f'statusCallbackUrl="{callback}" statusCallbackMethod="{method}">{good}</Stream>\n'
            f'  <Stream statusCallbackUrl="{callback}" statusCallbackMethod="{method}">'
            f"{refused}</Stream>\n"
            '  <Wait length="6"/>\n  <Hangup/>\n'
            "</Response>\n"
        )
        assert common
        gateway, token = start_gateway(gateway_factory, tmp_path, app)
        mode = "inbound" if method == "GET" else "outbound"
        phone = place_call(mode, sipp, gateway, token, app, tmp_path, ports)
        # the timeout ends the stream; the call goes on (its <Wait> is 6 s)
        app.wait_for(
            "the timed-out stream's close",
            lambda: any(c.path == "/ws/timeout" and c.close_code is not None
                        for c in app.connections),
        )  # fmt: skip
        call = the_call(gateway, token)
        assert call["status"] == "progressing", "the stream's timeout ended the call"
        result = phone.phone.wait(60)
        assert result.returncode == 0, result.explain()
        app.wait_for("4 kinds of callback", lambda: {r.params.get("Event") for r in
                     app.callbacks()} >= {"StartStream", "StopStream", "DroppedStream",
                                          "Played"}, 15)  # fmt: skip
    (connection,) = [c for c in app.connections if c.path == "/ws/timeout"]
    assert connection.messages[-1]["event"] == "stop" and connection.close_code == 1000
    media_s = len(connection.of("media", "event")) * 0.02
    assert 1.5 <= media_s <= 2.5, f"{media_s:.2f} s streamed under a 2 s streamTimeout"
    stream_id = connection.messages[0]["streamId"]
    for request in app.callbacks():
        assert request.method == method and set(request.params) == CALLBACK_KEYS, request
        assert (request.params["CallUUID"], request.params["From"], request.params["To"]) == (
            call["id"], phone.from_, phone.to,
        )  # fmt: skip
        assert request.params["Timestamp"], request
    by_event = {r.params["Event"]: r.params for r in app.callbacks()}
    for event in ("StartStream", "StopStream", "Played"):
        params = by_event[event]
        assert (params["StreamID"], params["ServiceURL"]) == (stream_id, good), event
        assert (params["ExtraHeaders"], params["Error"]) == ("a1=x,b2=y", ""), event
    dropped = by_event["DroppedStream"]
    assert dropped["ServiceURL"] == refused and dropped["StreamID"] != stream_id
    assert dropped["Error"] == "Could not establish connection with the remote service"
    assert [r.params["Event"] for r in app.callbacks()].count("StopStream") == 1
    started = [r.params["Event"] for r in app.callbacks() if r.params["StreamID"] == stream_id]
    assert started[0] == "StartStream", started


# ---------------------------------------------------------------- 4. invalid documents

BAD_STREAMS = {
    'bidirectional="yes"': "<Stream> bidirectional: must be true or false",
    'audioTrack="caller"': "<Stream> audioTrack: must be inbound, outbound or both",
    'bidirectional="true" audioTrack="both"':
        "<Stream> audioTrack: must be inbound when bidirectional is true",
    'streamTimeout="0"': "<Stream> streamTimeout: must be a positive integer",
    'streamTimeout="-5"': "<Stream> streamTimeout: must be a positive integer",
    'statusCallbackUrl="ftp://x/cb"':
        "<Stream> statusCallbackUrl: must be an http:// or https:// URL",
    'statusCallbackMethod="PUT"': "<Stream> statusCallbackMethod: must be GET or POST",
    'contentType="audio/x-alaw;rate=8000"':
        "<Stream> contentType: must be audio/x-l16;rate=8000, audio/x-l16;rate=16000 or "
        "audio/x-mulaw;rate=8000",
    'extraHeaders="a-b=1"': "<Stream> extraHeaders: must be key=value pairs separated by "
        "commas, with only letters and digits in keys and values",
    f'extraHeaders="{",".join(f"k{n}=v{n}" for n in range(80))}"':
        "<Stream> extraHeaders: must be at most 512 bytes",
    'keepCallAlive="1"': "<Stream> keepCallAlive: must be true or false",
    'track="inbound"': "<Stream> track: not an attribute of <Stream>",
}  # fmt: skip
BAD_DOCUMENTS = {
    "<Response><Stream>http://x/ws</Stream></Response>":
        "<Stream>: the URL must be a ws:// or wss:// URL",
    "<Response><Stream></Stream></Response>":
        "<Stream>: the WebSocket URL is required as the element's text",
    "<Response><Dial>123</Dial></Response>":
        "<Dial>: unknown element (known: <Stream>, <Speak>, <Play>, <Wait>, <Hangup>)",
    "<Document/>": "the document's root must be <Response>, not <Document>",
}  # fmt: skip


@pytest.mark.parametrize("mode", [INBOUND, "outbound"])
def test_every_stream_rule_fails_the_document_the_call_records_it_and_hangs_up(
    gateway_factory: GatewayFactory,
    sipp: SippRunner,
    ports: PortAllocator,
    tmp_path: Path,
    mode: str,
) -> None:
    """One SIPp call per bad document: the gateway hangs up (SIPp gets BYE), the call record
    carries the rule's exact message, and nothing is dialled."""
    cases = {
        plivo_xml(f"ws://127.0.0.1:{ports.port()}/ws/never", **{"_": ""}).replace(
            ' _=""', f" {attributes}"
        ): message
        for attributes, message in BAD_STREAMS.items()
    }
    cases.update(BAD_DOCUMENTS)
    got: dict[str, str | None] = {}
    with ProviderApp(ports.port()) as app:
        gateway, token = start_gateway(gateway_factory, tmp_path, app)
        for document, _ in cases.items():
            app.answer_xml = document
            phone = place_call(mode, sipp, gateway, token, app, tmp_path, ports)
            result = phone.phone.wait(30)
            assert result.returncode == 0, result.explain()
        assert app.connections == [], "a bad document's stream was dialled"
    deadline = time.monotonic() + 10
    while True:
        code, calls = api(gateway, "GET", "/v1.0/calls?page_size=100", token)
        assert code == 200, calls
        if all(c["status"] == "hangup" for c in calls["result"]) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    records = sorted(calls["result"], key=lambda c: c["tm_create"])
    assert len(records) == len(cases), [r["id"] for r in records]
    for (document, _), record in zip(cases.items(), records, strict=True):
        got[document] = record.get("error")
    expected = {document: f"answer XML: {message}" for document, message in cases.items()}
    assert got == expected
    assert {(r["status"], r["hangup_by"]) for r in records} == {("hangup", "local")}
