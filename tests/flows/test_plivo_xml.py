import re
from typing import Any

import pytest

from callstream.errors import ConfigError
from callstream.flows.actions import parse_actions
from callstream.flows.plivo_xml import (
    MAX_LOOP_COUNT,
    PlivoXmlError,
    check_stream_options,
    parse_response,
)

URL = "wss://yourstream.websocket.io/audiostream"
# plivo-python 4.63.0: plivoxml.ResponseElement().add(plivoxml.StreamElement(URL)).to_string()
PLIVO_PYTHON_STREAM = (
    "<Response>\n  <Stream>wss://yourstream.websocket.io/audiostream</Stream>\n</Response>\n"
)
# The same with every attribute set through StreamElement's keyword arguments.
PLIVO_PYTHON_STREAM_ALL = (
    '<Response>\n  <Stream bidirectional="true" audioTrack="inbound" streamTimeout="120" '
    'statusCallbackUrl="https://example.com/cb" statusCallbackMethod="GET" '
    'contentType="audio/x-l16;rate=16000" extraHeaders="test1=12,test2=123" '
    'keepCallAlive="true">wss://yourstream.websocket.io/audiostream</Stream>\n</Response>\n'
)
DEFAULT_OPTION = {
    "protocol": "plivo",
    "url": URL,
    "bidirectional": False,
    "audio_track": "inbound",
    "timeout_s": 86400,
    "status_callback_url": None,
    "status_callback_method": "POST",
    "content_type": "audio/x-l16;rate=8000",
    "extra_headers": "",
    "keep_call_alive": False,
}


def stream(attributes: str = "", url: str = URL) -> str:
    return f"<Response><Stream {attributes}>{url}</Stream></Response>"


def test_plivo_pythons_stream_element_is_accepted_as_is() -> None:
    assert parse_response(PLIVO_PYTHON_STREAM) == [
        {"type": "stream_start", "option": DEFAULT_OPTION}
    ]
    assert parse_response(PLIVO_PYTHON_STREAM.encode()) == parse_response(PLIVO_PYTHON_STREAM)


def test_every_stream_attribute_is_read() -> None:
    [action] = parse_response(PLIVO_PYTHON_STREAM_ALL)
    assert action == {
        "type": "stream_start",
        "option": {
            "protocol": "plivo",
            "url": URL,
            "bidirectional": True,
            "audio_track": "inbound",
            "timeout_s": 120,
            "status_callback_url": "https://example.com/cb",
            "status_callback_method": "GET",
            "content_type": "audio/x-l16;rate=16000",
            "extra_headers": "test1=12,test2=123",
            "keep_call_alive": True,
        },
    }
    check_stream_options(action["option"])


def test_the_seeds_example_with_its_line_breaks_around_the_url() -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n\t<Stream>\n'
        + URL
        + "\n</Stream>\n</Response>"
    )
    assert parse_response(xml)[0]["option"]["url"] == URL


@pytest.mark.parametrize(
    ("attributes", "key", "value"),
    [
        ('bidirectional="False"', "bidirectional", False),
        ('bidirectional="TRUE"', "bidirectional", True),
        ('audioTrack="outbound"', "audio_track", "outbound"),
        ('audioTrack="both"', "audio_track", "both"),
        ('audioTrack="both" bidirectional="false"', "audio_track", "both"),
        ('bidirectional="true" audioTrack="inbound"', "audio_track", "inbound"),
        ('streamTimeout="1"', "timeout_s", 1),
        ('statusCallbackMethod="get"', "status_callback_method", "GET"),
        (
            'statusCallbackUrl="http://127.0.0.1:8080/cb?x=1"',
            "status_callback_url",
            "http://127.0.0.1:8080/cb?x=1",
        ),
        ('contentType="audio/x-mulaw;rate=8000"', "content_type", "audio/x-mulaw;rate=8000"),
        ('contentType="audio/x-l16; rate=16000"', "content_type", "audio/x-l16;rate=16000"),
        ('extraHeaders="a=1"', "extra_headers", "a=1"),
        ('keepCallAlive="True"', "keep_call_alive", True),
    ],
)
def test_stream_attribute_values(attributes: str, key: str, value: object) -> None:
    [action] = parse_response(stream(attributes))
    assert action["option"][key] == value
    check_stream_options(action["option"])


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ('bidirectional="yes"', "<Stream> bidirectional: must be true or false"),
        ('bidirectional=""', "<Stream> bidirectional: must be true or false"),
        ('audioTrack="caller"', "<Stream> audioTrack: must be inbound, outbound or both"),
        (
            'bidirectional="true" audioTrack="outbound"',
            "<Stream> audioTrack: must be inbound when bidirectional is true",
        ),
        (
            'bidirectional="true" audioTrack="both"',
            "<Stream> audioTrack: must be inbound when bidirectional is true",
        ),
        ('streamTimeout="0"', "<Stream> streamTimeout: must be a positive integer"),
        ('streamTimeout="-5"', "<Stream> streamTimeout: must be a positive integer"),
        ('streamTimeout="1.5"', "<Stream> streamTimeout: must be a positive integer"),
        ('streamTimeout=""', "<Stream> streamTimeout: must be a positive integer"),
        (
            'statusCallbackUrl="ftp://example.com/cb"',
            "<Stream> statusCallbackUrl: must be an http:// or https:// URL",
        ),
        ('statusCallbackMethod="PUT"', "<Stream> statusCallbackMethod: must be GET or POST"),
        (
            'contentType="audio/x-l16;rate=44100"',
            "<Stream> contentType: must be audio/x-l16;rate=8000, audio/x-l16;rate=16000"
            " or audio/x-mulaw;rate=8000",
        ),
        (
            'extraHeaders="a-b=1"',
            "<Stream> extraHeaders: must be key=value pairs separated by commas, with only"
            " letters and digits in keys and values",
        ),
        (
            'extraHeaders="a=1;b=2"',
            "<Stream> extraHeaders: must be key=value pairs separated by commas, with only"
            " letters and digits in keys and values",
        ),
        (
            'extraHeaders="a=1,"',
            "<Stream> extraHeaders: must be key=value pairs separated by commas, with only"
            " letters and digits in keys and values",
        ),
        (
            'extraHeaders="' + "k=" + "v" * 511 + '"',
            "<Stream> extraHeaders: must be at most 512 bytes",
        ),
        ('keepCallAlive="1"', "<Stream> keepCallAlive: must be true or false"),
        ('track="inbound"', "<Stream> track: not an attribute of <Stream>"),
    ],
)
def test_each_stream_rule_is_refused_with_its_message(attributes: str, message: str) -> None:
    with pytest.raises(PlivoXmlError, match=f"^{re.escape(message)}$"):
        parse_response(stream(attributes))


def test_extra_headers_of_exactly_512_bytes_pass() -> None:
    value = "k=" + "v" * 510
    assert parse_response(stream(f'extraHeaders="{value}"'))[0]["option"]["extra_headers"] == value


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/audio", "<Stream>: the URL must be a ws:// or wss:// URL"),
        ("", "<Stream>: the WebSocket URL is required as the element's text"),
        ("  ", "<Stream>: the WebSocket URL is required as the element's text"),
    ],
)
def test_stream_url(url: str, message: str) -> None:
    with pytest.raises(PlivoXmlError, match=f"^{re.escape(message)}$"):
        parse_response(stream(url=url))


def test_speak_play_wait_hangup_become_our_actions_in_order() -> None:
    xml = (
        "<Response>"
        '<Speak voice="MAN" language="en-GB">Hello &amp; welcome</Speak>'
        "<Play>https://example.com/hello.wav</Play>"
        '<Wait length="3"/>'
        "<Speak>Bye</Speak>"
        "<Hangup/>"
        "</Response>"
    )
    actions = parse_response(xml)
    assert actions == [
        {
            "type": "talk",
            "option": {"text": "Hello & welcome", "gender": "male", "language": "en-GB"},
        },
        {"type": "play", "option": {"url": "https://example.com/hello.wav"}},
        {"type": "sleep", "option": {"duration": 3000}},
        {"type": "talk", "option": {"text": "Bye", "gender": "female", "language": "en-US"}},
        {"type": "hangup"},
    ]
    assert [action.type for action in parse_actions(actions)] == [
        "talk",
        "play",
        "sleep",
        "talk",
        "hangup",
    ]


def test_wait_defaults_to_one_second_and_hangup_keeps_its_reason() -> None:
    assert parse_response('<Response><Wait/><Hangup reason="busy"/></Response>') == [
        {"type": "sleep", "option": {"duration": 1000}},
        {"type": "hangup", "option": {"reason": "busy"}},
    ]


def test_loop_repeats_through_a_goto() -> None:
    actions = parse_response(
        '<Response><Play loop="3">https://example.com/a.wav</Play>'
        '<Speak loop="0" voice="Polly.Joanna">Hold on</Speak></Response>'
    )
    play, goto_play, talk, goto_talk = actions
    assert goto_play == {"type": "goto", "option": {"target_id": play["id"], "loop_count": 2}}
    assert goto_talk == {
        "type": "goto",
        "option": {"target_id": talk["id"], "loop_count": MAX_LOOP_COUNT},
    }
    assert talk["option"]["gender"] == "female"
    assert [action.type for action in parse_actions(actions)] == ["play", "goto", "talk", "goto"]


def test_an_empty_response_has_no_actions() -> None:
    assert parse_response("<Response/>") == []
    assert parse_response("<Response>\n</Response>") == []


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            "<Response><Dial><Number>123</Number></Dial></Response>",
            "<Dial>: unknown element (known: <Stream>, <Speak>, <Play>, <Wait>, <Hangup>)",
        ),
        ("<Reply><Hangup/></Reply>", "the document's root must be <Response>, not <Reply>"),
        (
            "<Response>hello<Hangup/></Response>",
            "<Response>: text outside an element is not allowed",
        ),
        (
            "<Response><Hangup/>hello</Response>",
            "<Response>: text outside an element is not allowed",
        ),
        ('<Response id="1"/>', "<Response> id: not an attribute of <Response>"),
        (
            "<Response><Speak/></Response>",
            "<Speak>: the text to speak is required as the element's text",
        ),
        (
            "<Response><Speak>Hi <break/></Speak></Response>",
            "<Speak>: child element <break> is not supported",
        ),
        (
            '<Response><Speak voice="ROBOT">Hi</Speak></Response>',
            "<Speak> voice: must be WOMAN, MAN or a Polly.* or Google.* voice",
        ),
        (
            '<Response><Speak language="english!">Hi</Speak></Response>',
            '<Speak> language: must be a language tag such as "en-US"',
        ),
        (
            '<Response><Speak loop="-1">Hi</Speak></Response>',
            "<Speak> loop: must be a whole number (0 repeats for ever)",
        ),
        (
            "<Response><Play>file:///etc/passwd</Play></Response>",
            "<Play>: the URL must be an http:// or https:// URL",
        ),
        ('<Response><Wait length="0"/></Response>', "<Wait> length: must be a positive integer"),
        (
            '<Response><Wait length="86401"/></Response>',
            "<Wait> length: must be at most 86400 seconds",
        ),
        (
            '<Response><Wait silence="true"/></Response>',
            "<Wait> silence: not an attribute of <Wait>",
        ),
        ("<Response><Wait>5</Wait></Response>", "<Wait>: must be empty"),
        (
            '<Response><Hangup reason="other"/></Response>',
            "<Hangup> reason: must be rejected or busy",
        ),
        ("<Response><Hangup>", "not well-formed XML: no element found: line 1, column 18"),
        ("", "not well-formed XML: no element found: line 1, column 0"),
    ],
)
def test_invalid_documents_are_refused_with_a_precise_message(xml: str, message: str) -> None:
    with pytest.raises(PlivoXmlError, match=f"^{re.escape(message)}$"):
        parse_response(xml)


@pytest.mark.parametrize(
    ("xml", "kind"),
    [
        (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]>'
            "<Response><Speak>&a;</Speak></Response>",
            "DTDForbidden",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE r SYSTEM "file:///etc/passwd"><Response/>',
            "DTDForbidden",
        ),
    ],
)
def test_dtds_and_entities_are_refused(xml: str, kind: str) -> None:
    with pytest.raises(PlivoXmlError) as caught:
        parse_response(xml)
    assert str(caught.value) == (
        f"XML with a DTD, entities or external references is refused ({kind})"
    )
    assert isinstance(caught.value, ConfigError)


def test_check_stream_options_accepts_a_minimal_json_option() -> None:
    check_stream_options({"url": URL})
    check_stream_options(DEFAULT_OPTION)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://x"}, "option.url is required and must be a ws:// or wss:// URL"),
        ({"url": None}, "option.url is required and must be a ws:// or wss:// URL"),
        ({"protocol": "voxology"}, "option.protocol must be plivo"),
        ({"bidirectional": "true"}, "option.bidirectional must be true or false"),
        ({"keep_call_alive": 1}, "option.keep_call_alive must be true or false"),
        ({"audio_track": "caller"}, "option.audio_track must be inbound, outbound or both"),
        (
            {"bidirectional": True, "audio_track": "both"},
            "option.audio_track must be inbound when bidirectional is true",
        ),
        ({"timeout_s": 0}, "option.timeout_s must be a positive integer"),
        ({"timeout_s": 1.5}, "option.timeout_s must be a positive integer"),
        ({"timeout_s": True}, "option.timeout_s must be a positive integer"),
        (
            {"status_callback_url": "x"},
            "option.status_callback_url must be an http:// or https:// URL",
        ),
        ({"status_callback_method": "get"}, "option.status_callback_method must be GET or POST"),
        (
            {"content_type": "audio/x-mulaw;rate=16000"},
            "option.content_type must be audio/x-l16;rate=8000, audio/x-l16;rate=16000"
            " or audio/x-mulaw;rate=8000",
        ),
        ({"extra_headers": {"a": "1"}}, "option.extra_headers must be a string"),
        (
            {"extra_headers": "a=b=c"},
            "option.extra_headers must be key=value pairs separated by "
            "commas, with only letters and digits in keys and values",
        ),
        ({"extra_headers": "a=" + "b" * 511}, "option.extra_headers must be at most 512 bytes"),
        ({"name": "x"}, "option.name is not an option of a plivo stream"),
    ],
)
def test_check_stream_options_rejections(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_stream_options({**DEFAULT_OPTION, **change})
