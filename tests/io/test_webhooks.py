import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiohttp import web

from callstream.errors import ConfigError
from callstream.io.webhooks import (
    ERROR_NOT_CONNECTED,
    WebhookFailure,
    WebhookSender,
    fetch_answer_xml,
    plivo_answer_params,
    plivo_callback_params,
)

STREAM_XML = (
    "<Response>\n  <Stream>wss://yourstream.websocket.io/audiostream</Stream>\n</Response>\n"
)
PARAMS = plivo_callback_params(
    "StartStream",
    stream_id="20170ada-f610-433b-8758-c02a2aab3662",
    call_uuid="0e0c5bb4-8f5c-4a3f-9d43-7b1e3c2a9f10",
    from_="+15551230001",
    to="sip:bob@127.0.0.1",
    service_url="wss://yourstream.websocket.io/audiostream",
    extra_headers="test1=12,test2=123",
    timestamp=datetime(2025, 3, 1, 12, 0, 5, 250000, tzinfo=UTC),
)


@dataclass
class Seen:
    method: str
    query: dict[str, str]
    form: dict[str, str]
    content_type: str


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    answers: list[web.Response] = field(default_factory=list)
    """Answers given in turn; when they run out, 200 with the stream XML."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hold: bool = False


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        form = await request.post() if request.method == "POST" else {}
        state.seen.append(
            Seen(
                request.method,
                dict(request.query),
                {key: str(value) for key, value in form.items()},
                request.content_type,
            )
        )
        if state.hold:
            await state.release.wait()
        if state.answers:
            return state.answers.pop(0)
        return web.Response(text=STREAM_XML, content_type="application/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/callbacks/stream"
    yield state
    state.release.set()
    await runner.cleanup()


def test_callback_params_have_plivos_names() -> None:
    assert PARAMS == {
        "Event": "StartStream",
        "Error": "",
        "CallUUID": "0e0c5bb4-8f5c-4a3f-9d43-7b1e3c2a9f10",
        "From": "+15551230001",
        "To": "sip:bob@127.0.0.1",
        "ServiceURL": "wss://yourstream.websocket.io/audiostream",
        "ExtraHeaders": "test1=12,test2=123",
        "StreamID": "20170ada-f610-433b-8758-c02a2aab3662",
        "Timestamp": "2025-03-01 12:00:05",
    }
    dropped = plivo_callback_params(
        "DroppedStream",
        stream_id="s",
        call_uuid="c",
        from_="f",
        to="t",
        service_url="wss://x",
        extra_headers="",
        error=ERROR_NOT_CONNECTED,
        timestamp=datetime(2025, 3, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert dropped["Error"] == "Could not establish connection with the remote service"
    assert dropped["Timestamp"] == "2025-03-01 12:00:00"
    with pytest.raises(ConfigError, match="^Event: must be one of StartStream, StopStream, "):
        plivo_callback_params(
            "Started",
            stream_id="s",
            call_uuid="c",
            from_="f",
            to="t",
            service_url="u",
            extra_headers="",
            timestamp="now",
        )


async def test_post_sends_a_form_body(server: Server) -> None:
    sender = WebhookSender()
    sender.send(server.url, "POST", PARAMS)
    await sender.drain()
    await sender.close()
    assert server.seen == [Seen("POST", {}, PARAMS, "application/x-www-form-urlencoded")]
    assert sender.delivered == 1 and list(sender.failures) == []


async def test_get_sends_a_query_string(server: Server) -> None:
    sender = WebhookSender()
    sender.send(server.url + "?mine=1", "get", PARAMS)
    await sender.drain()
    await sender.close()
    assert [(seen.method, seen.query) for seen in server.seen] == [("GET", {"mine": "1", **PARAMS})]
    assert sender.delivered == 1


async def test_5xx_is_retried_until_success(server: Server) -> None:
    server.answers = [web.Response(status=500), web.Response(status=503)]
    sender = WebhookSender(backoff_s=0.001)
    sender.send(server.url, "POST", PARAMS)
    await sender.drain()
    await sender.close()
    assert len(server.seen) == 3 and all(seen.form == PARAMS for seen in server.seen)
    assert sender.delivered == 1 and list(sender.failures) == []


async def test_5xx_every_time_is_recorded_after_the_last_attempt(server: Server) -> None:
    server.answers = [web.Response(status=502) for _ in range(3)]
    recorded: list[WebhookFailure] = []
    sender = WebhookSender(backoff_s=0.001, attempts=3, on_failure=recorded.append)
    sender.send(server.url, "POST", PARAMS)
    await sender.drain()
    await sender.close()
    assert len(server.seen) == 3
    assert recorded == [WebhookFailure(server.url, "POST", PARAMS, "HTTP 502", 3)]
    assert list(sender.failures) == recorded and sender.delivered == 0


async def test_4xx_is_not_retried(server: Server) -> None:
    server.answers = [web.Response(status=404)]
    sender = WebhookSender(backoff_s=0.001)
    sender.send(server.url, "GET", PARAMS)
    await sender.drain()
    await sender.close()
    assert len(server.seen) == 1
    assert [(f.error, f.attempts) for f in sender.failures] == [("HTTP 404", 1)]


async def test_a_timeout_is_retried_then_recorded(server: Server) -> None:
    server.hold = True
    sender = WebhookSender(timeout_s=0.05, attempts=2, backoff_s=0.001)
    sender.send(server.url, "POST", PARAMS)
    await sender.drain()
    await sender.close()
    assert len(server.seen) == 2
    assert [(f.error, f.attempts) for f in sender.failures] == [("timed out after 0.05 s", 2)]


async def test_a_refused_connection_is_retried_then_recorded(server: Server) -> None:
    dead = "http://127.0.0.1:1/callbacks"
    sender = WebhookSender(attempts=2, backoff_s=0.001)
    sender.send(dead, "POST", PARAMS)
    sender.send(server.url, "POST", PARAMS)  # the next one is not held up
    await sender.drain()
    await sender.close()
    [failure] = sender.failures
    assert failure.url == dead and failure.attempts == 2
    assert failure.error.startswith("request failed: Cannot connect to host 127.0.0.1:1")
    assert sender.delivered == 1 and len(server.seen) == 1


async def test_send_never_raises_and_the_queue_is_bounded(server: Server) -> None:
    sender = WebhookSender(max_queued=2)
    for _ in range(5):  # no await between: the worker has not taken any yet
        sender.send(server.url, "POST", PARAMS)
    sender.send(server.url, "PUT", PARAMS)
    assert [(f.error, f.attempts) for f in sender.failures] == [
        ("queue full (2 waiting)", 0),
        ("queue full (2 waiting)", 0),
        ("queue full (2 waiting)", 0),
        ("method 'PUT' is not GET or POST", 0),
    ]
    await sender.drain()
    await sender.close()
    assert sender.delivered == 2 and len(server.seen) == 2
    sender.send(server.url, "POST", PARAMS)
    assert sender.failures[-1].error == "the sender is closed"


def test_send_outside_a_loop_is_recorded() -> None:
    sender = WebhookSender()
    sender.send("http://127.0.0.1:1/", "POST", PARAMS)
    assert [f.error for f in sender.failures] == ["no running event loop"]


async def test_a_failing_recorder_does_not_stop_the_sender(server: Server) -> None:
    def broken(failure: WebhookFailure) -> None:
        raise RuntimeError("recorder bug")

    server.answers = [web.Response(status=400)]
    sender = WebhookSender(on_failure=broken)
    sender.send(server.url, "POST", PARAMS)
    sender.send(server.url, "POST", PARAMS)
    await sender.drain()
    await sender.close()
    assert sender.delivered == 1 and [f.error for f in sender.failures] == ["HTTP 400"]


ANSWER_PARAMS = plivo_answer_params(
    call_uuid="0e0c5bb4-8f5c-4a3f-9d43-7b1e3c2a9f10",
    from_="+15551230001",
    to="+15551230002",
    direction="inbound",
)


async def test_answer_url_by_post_and_get(server: Server) -> None:
    assert ANSWER_PARAMS == {
        "CallUUID": "0e0c5bb4-8f5c-4a3f-9d43-7b1e3c2a9f10",
        "From": "+15551230001",
        "To": "+15551230002",
        "Direction": "inbound",
        "CallStatus": "in-progress",
    }
    assert await fetch_answer_xml(server.url, "POST", ANSWER_PARAMS) == STREAM_XML
    assert await fetch_answer_xml(server.url, "GET", ANSWER_PARAMS) == STREAM_XML
    assert [(seen.method, seen.query, seen.form) for seen in server.seen] == [
        ("POST", {}, ANSWER_PARAMS),
        ("GET", ANSWER_PARAMS, {}),
    ]


async def test_answer_url_xml_served_as_text_html_is_accepted(server: Server) -> None:
    server.answers = [web.Response(text="\n" + STREAM_XML, content_type="text/html")]
    assert await fetch_answer_xml(server.url, "GET", ANSWER_PARAMS) == "\n" + STREAM_XML


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (web.Response(status=404), "answered HTTP 404"),
        (web.Response(status=500, text="<Response/>"), "answered HTTP 500"),
        (
            web.Response(text='{"actions": []}', content_type="application/json"),
            "answered HTTP 200 with application/json, not XML",
        ),
    ],
)
async def test_answer_url_failures_name_the_status(
    server: Server, answer: web.Response, message: str
) -> None:
    server.answers = [answer]
    with pytest.raises(ConfigError) as caught:
        await fetch_answer_xml(server.url, "POST", ANSWER_PARAMS)
    assert str(caught.value) == f"answer_url {server.url} {message}"


async def test_answer_url_timeout_and_unreachable(server: Server) -> None:
    server.hold = True
    with pytest.raises(ConfigError) as caught:
        await fetch_answer_xml(server.url, "GET", ANSWER_PARAMS, timeout_s=0.05)
    assert str(caught.value) == f"answer_url {server.url} did not answer within 0.05 s"
    with pytest.raises(ConfigError) as caught:
        await fetch_answer_xml("http://127.0.0.1:1/answer", "GET", ANSWER_PARAMS)
    assert str(caught.value).startswith(
        "answer_url http://127.0.0.1:1/answer could not be reached: Cannot connect to host"
    )
    with pytest.raises(ConfigError, match="^answer_url method must be GET or POST, not 'PUT'$"):
        await fetch_answer_xml(server.url, "put", ANSWER_PARAMS)
