import json
from pathlib import Path
from typing import Any

import pytest

from callstream.errors import ConfigError
from callstream.flows.actions import (
    ACTION_TYPES,
    Answer,
    Connect,
    Endpoint,
    Hangup,
    Sleep,
    Talk,
    parse_action,
    parse_actions,
)
from callstream.flows.voxology import check_stream_options, is_voxology_flow, translate

# Seed 003, "Example Call Flow Script", verbatim (kept as a fixture file).
SEED_SCRIPT = (
    Path(__file__).parents[1] / "fixtures/seeds/voxology_call_flow_script.json"
).read_text()

BOTH = ["caller", "transfer"]

TRANSFER_FAULT = (
    "params.destination must be a SIP URI or an E.164 number"
    " (+ and 8 to 15 digits, the first not 0)"
)


def validate(actions: list[dict[str, Any]]) -> None:
    """What the core will do: parse_actions once stream_start/stop are registered;
    until then our stream checks plus parse_action for every other action."""
    if "stream_start" in ACTION_TYPES:
        parse_actions(actions)
        return
    for index, action in enumerate(actions):
        if action["type"] in ("stream_start", "stream_stop"):
            check_stream_options(action["option"], stop=action["type"] == "stream_stop")
        else:
            parse_action(index, action)


def one(params: dict[str, Any], kind: str = "STREAM") -> dict[str, Any]:
    """The translation of a script that is ANSWER then one action of ``kind``."""
    actions = translate([{"type": "ANSWER"}, {"type": kind, "params": params}])
    assert actions[0] == {"type": "answer"}
    validate(actions)
    return actions[1]


def test_the_seed_script_translates_and_validates() -> None:
    raw = json.loads(SEED_SCRIPT)
    assert is_voxology_flow(raw) and is_voxology_flow(raw["actions"])
    actions = translate(raw)
    assert actions == [
        {"type": "answer"},
        {
            "type": "stream_start",
            "option": {
                "protocol": "voxology",
                "url": "ws://test-u.rl",
                "tracks": BOTH,
                "stream_data": {"test_key": "test_value"},
                "name": "stream1",
            },
        },
        {
            "type": "talk",
            "option": {
                "text": "This is a call flow to test the media streaming action.",
                "gender": "female",
                "language": "en-US",
            },
        },
        {"type": "sleep", "option": {"duration": 10000}},
        {
            "type": "stream_stop",
            "option": {
                "protocol": "voxology",
                "url": "ws://test-u.rl",
                "stream_data": {"your_key": "your_value"},
            },
        },
        {
            "type": "talk",
            "option": {"text": "The stream has ended", "gender": "female", "language": "en-US"},
        },
        {"type": "hangup"},
    ]
    validate(actions)
    assert translate(raw["actions"]) == actions


def test_other_actions_become_ours() -> None:
    actions = translate(
        {
            "actions": [
                {"type": "ANSWER"},
                {"type": "SAY", "params": {"text": "Hola", "voice": "man", "language": "es-MX"}},
                {"type": "SAY", "params": {"text": "Hi", "voice": "en-US-Wavenet-D"}},
                {"type": "PAUSE", "params": {"seconds": 1.5}},
                {"type": "TRANSFER", "params": {"destination": "sip:bob@192.0.2.7:5062"}},
                {"type": "TRANSFER", "params": {"destination": "+14155550123"}},
                {"type": "HANGUP", "params": {}},
            ]
        }
    )
    assert [(a["type"], a.get("option")) for a in actions] == [
        ("answer", None),
        ("talk", {"text": "Hola", "gender": "male", "language": "es-MX"}),
        ("talk", {"text": "Hi", "gender": "female", "language": "en-US"}),
        ("sleep", {"duration": 1500}),
        ("connect", {"destinations": [{"type": "sip", "target": "sip:bob@192.0.2.7:5062"}]}),
        ("connect", {"destinations": [{"type": "tel", "target": "+14155550123"}]}),
        ("hangup", None),
    ]
    parsed = parse_actions(actions)
    assert parsed[1] == Talk("talk", "Hola", "male", "es-MX")
    assert parsed[3] == Sleep("sleep", 1500)
    assert parsed[4] == Connect("connect", None, (Endpoint("sip", "sip:bob@192.0.2.7:5062"),))
    assert parsed[5] == Connect("connect", None, (Endpoint("tel", "+14155550123"),))
    assert parsed[0] == Answer("answer") and parsed[6] == Hangup("hangup")


@pytest.mark.parametrize(("voice", "gender"), [("WOMAN", "female"), ("neutral", "neutral")])
def test_voices_pick_a_gender(voice: str, gender: str) -> None:
    assert one({"text": "x", "voice": voice}, "SAY")["option"]["gender"] == gender


def test_stream_defaults_and_names() -> None:
    actions = translate(
        [
            {"type": "ANSWER"},
            {"type": "STREAM", "params": {"url": "wss://a.example/s"}},
            {"type": "STREAM", "params": {"url": "ws://b", "tracks": ["transfer"], "name": "b"}},
            {"type": "STREAM", "params": {"url": "ws://c", "stream_data": [1, "two", None]}},
            {"type": "STREAM", "params": {"action": "stop"}},
            {"type": "STREAM", "params": {"action": "stop", "url": "ws://c", "stream_data": None}},
        ]
    )
    assert [a["option"] for a in actions[1:]] == [
        {
            "protocol": "voxology",
            "url": "wss://a.example/s",
            "tracks": BOTH,
            "stream_data": None,
            "name": "stream1",
        },
        {
            "protocol": "voxology",
            "url": "ws://b",
            "tracks": ["transfer"],
            "stream_data": None,
            "name": "b",
        },
        {
            "protocol": "voxology",
            "url": "ws://c",
            "tracks": BOTH,
            "stream_data": [1, "two", None],
            "name": "stream3",
        },
        # Without stream_data the init's stays; with it, even null, it replaces it.
        {"protocol": "voxology", "url": None},
        {"protocol": "voxology", "url": "ws://c", "stream_data": None},
    ]
    validate(actions)


@pytest.mark.parametrize(
    ("types", "answered"),
    [
        (["SAY", "HANGUP"], True),
        (["PAUSE"], True),
        (["STREAM", "ANSWER"], True),
        (["TRANSFER"], True),
        (["ANSWER", "SAY"], False),
        (["HANGUP", "SAY"], False),
        (["HANGUP"], False),
        ([], False),
    ],
)
def test_answer_is_put_first_when_media_comes_before_any_answer(
    types: list[str], answered: bool
) -> None:
    params = {
        "SAY": {"text": "hi"},
        "PAUSE": {"seconds": 0},
        "STREAM": {"url": "ws://x"},
        "TRANSFER": {"destination": "+14155550123"},
    }
    script = [{"type": kind, "params": params.get(kind, {})} for kind in types]
    actions = translate({"actions": script})
    ours = {"SAY": "talk", "PAUSE": "sleep", "STREAM": "stream_start", "TRANSFER": "connect"}
    expected = ["answer"] * answered + [ours.get(kind, kind.lower()) for kind in types]
    assert [action["type"] for action in actions] == expected
    validate(actions)


@pytest.mark.parametrize(
    "raw",
    [
        {"actions": [{"type": "SAY"}, {"type": "HANGUP"}]},
        [{"type": "PLAY"}],  # an upper-case type we do not know is still Voxology's
    ],
)
def test_voxology_flows_are_recognised(raw: object) -> None:
    assert is_voxology_flow(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"actions": [{"type": "talk", "option": {"text": "hi"}}]},
        [{"type": "STREAM"}, {"type": "hangup"}],
        {"actions": []},
        [],
        {"actions": "SAY"},
        "SAY",
        None,
        [{"type": 1}],
        ["SAY"],
        {"flow": [{"type": "SAY"}]},
    ],
)
def test_other_things_are_not_voxology_flows(raw: object) -> None:
    assert not is_voxology_flow(raw)


def reject(actions: object) -> str:
    with pytest.raises(ConfigError) as caught:
        translate(actions)
    return str(caught.value)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"type": "PAUSE", "params": {"seconds": "10"}}, "params.seconds must be a number"),
        ({"type": "PAUSE", "params": {}}, "params.seconds must be a number"),
        ({"type": "PAUSE", "params": {"seconds": True}}, "params.seconds must be a number"),
        (
            {"type": "PAUSE", "params": {"seconds": -1}},
            "params.seconds must be between 0 and 86400",
        ),
        (
            {"type": "PAUSE", "params": {"seconds": 86401}},
            "params.seconds must be between 0 and 86400",
        ),
        ({"type": "SAY"}, "params.text is required and must be a non-empty string"),
        (
            {"type": "SAY", "params": {"text": " "}},
            "params.text is required and must be a non-empty string",
        ),
        (
            {"type": "SAY", "params": {"text": "x" * 5001}},
            "params.text must be at most 5000 characters",
        ),
        ({"type": "SAY", "params": {"text": "x", "voice": 2}}, "params.voice must be a string"),
        (
            {"type": "SAY", "params": {"text": "x", "language": "english"}},
            'params.language must be a BCP-47 language tag such as "en-US"',
        ),
        (
            {"type": "SAY", "params": {"text": "x", "loop": 2}},
            "params.loop is not a SAY parameter (known: text, voice, language)",
        ),
        (
            {"type": "HANGUP", "params": {"reason": "busy"}},
            "params.reason is not a HANGUP parameter (known: none)",
        ),
        (
            {"type": "TRANSFER", "params": {"destination": "4155550123"}},
            TRANSFER_FAULT,
        ),
        (
            {"type": "TRANSFER", "params": {"destination": "+04155550123"}},  # no country code 0
            TRANSFER_FAULT,
        ),
        (
            {"type": "TRANSFER", "params": {"destination": "sip:"}},
            TRANSFER_FAULT,
        ),
        (
            {"type": "TRANSFER", "params": {}},
            TRANSFER_FAULT,
        ),
        (
            {"type": "STREAM", "params": {"url": "http://x"}},
            "params.url is required and must be a ws:// or wss:// URL",
        ),
        (
            {"type": "STREAM", "params": {}},
            "params.url is required and must be a ws:// or wss:// URL",
        ),
        (
            {"type": "STREAM", "params": {"action": "stop", "url": 5}},
            "params.url is required and must be a ws:// or wss:// URL",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "action": "pause"}},
            "params.action must be one of start, stop",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "tracks": []}},
            "params.tracks must be a non-empty list of caller, transfer",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "tracks": "caller"}},
            "params.tracks must be a non-empty list of caller, transfer",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "tracks": ["caller", "near"]}},
            "params.tracks[1] must be one of caller, transfer",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "tracks": ["caller", "caller"]}},
            "params.tracks[1] repeats 'caller'",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "name": ""}},
            "params.name must be a non-empty string",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "stream_data": {1j}}},
            "params.stream_data must be JSON",
        ),
        (
            {"type": "STREAM", "params": {"url": "ws://x", "bidirectional": True}},
            "params.bidirectional is not a STREAM parameter "
            "(known: url, action, tracks, stream_data, name)",
        ),
    ],
)
def test_each_rejection_names_the_voxology_index_and_field(
    action: dict[str, Any], message: str
) -> None:
    script = [{"type": "ANSWER"}, {"type": "SAY", "params": {"text": "x"}}, {"type": "HANGUP"}]
    script.insert(2, action)
    assert reject({"actions": script}) == f"actions[2] ({action['type']}): {message}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"actions": None}, "actions must be a list"),
        ("SAY", "actions must be a list"),
        ([{"type": "ANSWER"}, "SAY"], "actions[1]: must be an object with a string 'type'"),
        ([{"params": {}}], "actions[0]: must be an object with a string 'type'"),
        (
            [{"type": "PLAY", "params": {"url": "x.wav"}}],
            "actions[0]: unknown type 'PLAY' (known: ANSWER, HANGUP, PAUSE, SAY, STREAM, TRANSFER)",
        ),
        ([{"type": "SAY", "params": ["hi"]}], "actions[0] (SAY): params must be an object"),
    ],
)
def test_scripts_that_are_not_lists_of_actions(raw: object, message: str) -> None:
    assert reject(raw) == message


START = {"protocol": "voxology", "url": "ws://x"}


@pytest.mark.parametrize(
    "option",
    [
        START,
        START | {"tracks": ["transfer", "caller"], "stream_data": {"k": [1]}, "name": "s"},
    ],
)
def test_stream_start_options_accepted(option: dict[str, Any]) -> None:
    check_stream_options(option)


@pytest.mark.parametrize(
    "option",
    [
        {"protocol": "voxology"},
        {"protocol": "voxology", "url": None},
        {"protocol": "voxology", "url": "wss://y", "stream_data": None},
    ],
)
def test_stream_stop_options_accepted(option: dict[str, Any]) -> None:
    check_stream_options(option, stop=True)


@pytest.mark.parametrize(
    ("option", "stop", "message"),
    [
        (["voxology"], False, "option must be an object"),
        ({"url": "ws://x"}, False, "option.protocol must be voxology"),
        ({"protocol": "plivo", "url": "ws://x"}, True, "option.protocol must be voxology"),
        (
            {"protocol": "voxology"},
            False,
            "option.url is required and must be a ws:// or wss:// URL",
        ),
        (
            START | {"url": "https://x"},
            False,
            "option.url is required and must be a ws:// or wss:// URL",
        ),
        (
            START | {"url": "ftp://x"},
            True,
            "option.url is required and must be a ws:// or wss:// URL",
        ),
        (START | {"tracks": ["far"]}, False, "option.tracks[0] must be one of caller, transfer"),
        (
            START | {"tracks": []},
            False,
            "option.tracks must be a non-empty list of caller, transfer",
        ),
        (START | {"stream_data": object()}, False, "option.stream_data must be JSON"),
        (START | {"name": 3}, False, "option.name must be a non-empty string"),
        (
            START | {"format": "ulaw"},
            False,
            "option.format is not a stream_start option "
            "(known: protocol, url, tracks, stream_data, name)",
        ),
        (
            START | {"tracks": BOTH},
            True,
            "option.tracks is not a stream_stop option (known: protocol, url, stream_data)",
        ),
    ],
)
def test_stream_option_rejections(option: object, stop: bool, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_stream_options(option, stop=stop)
    assert str(caught.value) == message
