import uuid
from dataclasses import replace

import pytest

from callstream.errors import ConfigError
from callstream.flows.actions import (
    Answer,
    Branch,
    ConferenceJoin,
    Connect,
    DigitsReceive,
    Echo,
    Endpoint,
    Goto,
    Hangup,
    Play,
    Sleep,
    Stop,
    Talk,
    Tone,
    parse_actions,
    references,
)

A = "0b7a1f52-3c1d-4c8e-9a57-1d2f3e4a5b60"
B = "5e0c6a11-8d2b-4f3a-b1c4-7e9d0a2b3c41"
C = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
CONFERENCE = "c6a8e1f0-1234-4abc-8def-0123456789ab"


def test_every_action_type_parses() -> None:
    actions = parse_actions(
        [
            {"id": A, "type": "answer"},
            {"type": "echo", "option": {"duration": 1500}},
            {"type": "play", "option": {"url": "https://example.invalid/a.wav"}},
            {"type": "tone", "option": {"frequency": 1000, "duration": 200}},
            {"type": "sleep", "option": {"duration": 10}},
            {"type": "hangup"},
            {"type": "talk", "option": {"text": "Hello", "gender": "male", "language": "de-DE"}},
            {"type": "digits_receive", "option": {"duration": 5000, "length": 4, "key": "#*"}},
            {"type": "goto", "option": {"target_id": A, "loop_count": 3}},
            {
                "type": "branch",
                "option": {"variable": "x", "target_ids": {"1": A}, "default_target_id": A},
            },
            {"type": "stop"},
            {
                "type": "connect",
                "option": {
                    "source": {"type": "tel", "target": "+15551234567"},
                    "destinations": [
                        {"type": "sip", "target": "sip:bob@example.com;transport=tcp"},
                        {"type": "tel", "target": "+4930123456"},
                    ],
                    "early_media": True,
                    "relay_reason": True,
                },
            },
            {"type": "conference_join", "option": {"conference_id": CONFERENCE}},
        ]
    )
    ids = [action.id for action in actions]
    assert ids[0] == A
    assert all(uuid.UUID(value).version == 4 for value in ids[1:])
    assert len(set(ids)) == len(ids)
    expected = [
        Answer("answer"),
        Echo("echo", 1500),
        Play("play", ("https://example.invalid/a.wav",)),
        Tone("tone", 1000.0, 200),
        Sleep("sleep", 10),
        Hangup("hangup"),
        Talk("talk", "Hello", "male", "de-DE"),
        DigitsReceive("digits_receive", 5000, 4, "#*"),
        Goto("goto", A, 3),
        Branch("branch", "x", {"1": A}, A),
        Stop("stop"),
        Connect(
            "connect",
            Endpoint("tel", "+15551234567"),
            (
                Endpoint("sip", "sip:bob@example.com;transport=tcp"),
                Endpoint("tel", "+4930123456"),
            ),
            early_media=True,
            relay_reason=True,
        ),
        ConferenceJoin("conference_join", CONFERENCE),
    ]
    # Generated ids are random: compare everything else.
    assert actions == [
        replace(want, id=got.id) for want, got in zip(expected, actions, strict=True)
    ]


def test_defaults_of_new_actions() -> None:
    talk, digits, goto, branch, connect = parse_actions(
        [
            {"id": A, "type": "talk", "option": {"text": "Hi"}},
            {"type": "digits_receive", "option": {"duration": 0}},
            {"type": "goto", "option": {"target_id": A}},
            {"type": "branch", "option": {"target_ids": {}}},
            {
                "type": "connect",
                "option": {"destinations": [{"type": "tel", "target": "+12345678"}]},
            },
        ]
    )
    assert (talk.gender, talk.language) == ("female", "en-US")  # type: ignore[attr-defined]
    assert (digits.length, digits.key) == (1, "")  # type: ignore[attr-defined]
    assert goto.loop_count == 1  # type: ignore[attr-defined]
    assert branch.variable == "voipbin.call.digits"  # type: ignore[attr-defined]
    assert branch.default_target_id is None  # type: ignore[attr-defined]
    assert connect.source is None  # type: ignore[attr-defined]
    assert (connect.early_media, connect.relay_reason) == (False, False)  # type: ignore[attr-defined]


def test_ids_are_kept_lower_cased_and_next_id_resolves() -> None:
    first, second = parse_actions(
        [
            {"id": A.upper(), "next_id": B, "type": "answer"},
            {"id": B, "next_id": A.upper(), "type": "hangup"},
        ]
    )
    assert (first.id, first.next_id) == (A, B)
    assert (second.id, second.next_id) == (B, A)


def test_play_takes_voipbin_stream_urls_after_url() -> None:
    (only_streams, both) = parse_actions(
        [
            {"type": "play", "option": {"stream_urls": ["a.wav", "file:///b.wav"]}},
            {"type": "play", "option": {"url": "x.wav", "stream_urls": ["http://h/y.wav"]}},
        ]
    )
    assert only_streams.urls == ("a.wav", "file:///b.wav")  # type: ignore[attr-defined]
    assert both.urls == ("x.wav", "http://h/y.wav")  # type: ignore[attr-defined]


def test_references_lists_every_named_id() -> None:
    actions = parse_actions(
        [
            {"id": A, "next_id": C, "type": "answer"},
            {"id": B, "type": "goto", "option": {"target_id": A}},
            {
                "id": C,
                "type": "branch",
                "option": {"target_ids": {"1": A, "2": B}, "default_target_id": C},
            },
        ]
    )
    assert [list(references(action)) for action in actions] == [
        [("next_id", C)],
        [("option.target_id", A)],
        [
            ("option.target_ids.1", A),
            ("option.target_ids.2", B),
            ("option.default_target_id", C),
        ],
    ]


def _sip(target: object) -> list[dict[str, object]]:
    return [{"type": "connect", "option": {"destinations": [{"type": "sip", "target": target}]}}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("answer", "actions must be a list"),
        ([42], "action 0: must be an object with a 'type'"),
        ([{"option": {}}], "action 0: 'type' is required and must be a string"),
        (
            [{"type": "answer"}, {"type": "fly"}],
            "action 1: unknown type 'fly' (known: answer, branch, conference_join, connect, "
            "digits_receive, echo, external_media_start, external_media_stop, goto, hangup, "
            "play, sleep, stop, stream_start, stream_stop, talk, tone)",
        ),
        ([{"type": "play"}], "action 0 (play): option.url or option.stream_urls is required"),
        (
            [
                {
                    "type": "external_media_start",
                    "option": {"url": "http://x", "encapsulation": "rtp"},
                }
            ],
            "action 0 (external_media_start): option.url must be a ws:// or wss:// URL",
        ),
        (
            [{"type": "external_media_start", "option": {"url": "ws://x", "encapsulation": "mp3"}}],
            "action 0 (external_media_start): option.encapsulation must be one of rtp, sln, "
            "audiosocket",
        ),
        (
            [
                {
                    "type": "external_media_start",
                    "option": {"url": "ws://x", "encapsulation": "rtp", "format": "ulaw"},
                }
            ],
            "action 0 (external_media_start): option.format is only for sln, and must be 'ulaw' "
            "or 'slin'",
        ),
        (
            [{"type": "play", "option": {"url": " "}}],
            "action 0 (play): option.url is required and must be a non-empty string",
        ),
        (
            [{"type": "play", "option": {"url": "ftp://x/a.wav"}}],
            "action 0 (play): option.url must be a file path or an http(s):// or file:// URL",
        ),
        (
            [{"type": "play", "option": {"stream_urls": []}}],
            "action 0 (play): option.stream_urls must be a non-empty list of URLs",
        ),
        (
            [{"type": "play", "option": {"stream_urls": "a.wav"}}],
            "action 0 (play): option.stream_urls must be a non-empty list of URLs",
        ),
        (
            [{"type": "play", "option": {"stream_urls": ["a.wav", 3]}}],
            "action 0 (play): option.stream_urls[1] must be a non-empty string",
        ),
        (
            [{"type": "play", "option": {"stream_urls": ["a.wav", "rtsp://x"]}}],
            "action 0 (play): option.stream_urls[1] must be a file path or an http(s):// "
            "or file:// URL",
        ),
        (
            [{"type": "tone", "option": {"frequency": "a", "duration": 1}}],
            "action 0 (tone): option.frequency must be a number, not str",
        ),
        (
            [{"type": "tone", "option": {"frequency": 0, "duration": 1}}],
            "action 0 (tone): option.frequency must be between 1 and 3999",
        ),
        (
            [{"type": "sleep", "option": {"duration": -1}}],
            "action 0 (sleep): option.duration must be between 0 and 86400000",
        ),
        (
            [{"type": "sleep", "option": {"duration": True}}],
            "action 0 (sleep): option.duration must be a number, not bool",
        ),
        ([{"type": "echo", "option": []}], "action 0 (echo): 'option' must be an object"),
    ],
)
def test_rejections_name_index_and_field(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_actions(raw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # ids and references
        ([{"type": "answer", "id": "abc"}], "action 0 (answer): id must be a UUID string"),
        ([{"type": "answer", "id": 7}], "action 0 (answer): id must be a UUID string"),
        (
            [{"type": "answer", "id": "{" + A + "}"}],
            "action 0 (answer): id must be a UUID string",
        ),
        (
            [{"type": "answer", "id": A.replace("-", "")}],
            "action 0 (answer): id must be a UUID string",
        ),
        (
            [{"type": "answer", "next_id": "next"}],
            "action 0 (answer): next_id must be a UUID string",
        ),
        (
            [{"type": "answer", "id": A}, {"type": "hangup", "id": A.upper()}],
            f"action 1 (hangup): id {A} is already the id of action 0",
        ),
        (
            [{"type": "answer", "next_id": B}],
            f"action 0 (answer): next_id {B} is not the id of an action in this list",
        ),
        # talk
        (
            [{"type": "talk"}],
            "action 0 (talk): option.text is required and must be a non-empty string",
        ),
        (
            [{"type": "talk", "option": {"text": "a" * 5001}}],
            "action 0 (talk): option.text must be at most 5000 characters",
        ),
        (
            [{"type": "talk", "option": {"text": "hi", "gender": "robot"}}],
            "action 0 (talk): option.gender must be one of male, female, neutral",
        ),
        (
            [{"type": "talk", "option": {"text": "hi", "language": "english"}}],
            'action 0 (talk): option.language must be a BCP-47 language tag such as "en-US"',
        ),
        (
            [{"type": "talk", "option": {"text": "hi", "language": "en US"}}],
            'action 0 (talk): option.language must be a BCP-47 language tag such as "en-US"',
        ),
        # digits_receive
        (
            [{"type": "digits_receive"}],
            "action 0 (digits_receive): option.duration is required",
        ),
        (
            [{"type": "digits_receive", "option": {"duration": 300001}}],
            "action 0 (digits_receive): option.duration must be between 0 and 300000",
        ),
        (
            [{"type": "digits_receive", "option": {"duration": 1000, "length": 0}}],
            "action 0 (digits_receive): option.length must be between 1 and 100",
        ),
        (
            [{"type": "digits_receive", "option": {"duration": 1000, "length": 101}}],
            "action 0 (digits_receive): option.length must be between 1 and 100",
        ),
        (
            [{"type": "digits_receive", "option": {"duration": 1000, "length": 2.5}}],
            "action 0 (digits_receive): option.length must be a whole number",
        ),
        (
            [{"type": "digits_receive", "option": {"duration": 1000, "key": "#x"}}],
            "action 0 (digits_receive): option.key must be a string of DTMF digits "
            "(0-9, *, #, A-D)",
        ),
        (
            [{"type": "digits_receive", "option": {"duration": 1000, "key": 5}}],
            "action 0 (digits_receive): option.key must be a string of DTMF digits "
            "(0-9, *, #, A-D)",
        ),
        # goto
        ([{"type": "goto"}], "action 0 (goto): option.target_id must be a UUID string"),
        (
            [{"type": "goto", "option": {"target_id": B}}],
            f"action 0 (goto): option.target_id {B} is not the id of an action in this list",
        ),
        (
            [{"id": A, "type": "goto", "option": {"target_id": A, "loop_count": -1}}],
            "action 0 (goto): option.loop_count must be between 0 and 2147483647",
        ),
        (
            [{"id": A, "type": "goto", "option": {"target_id": A, "loop_count": "2"}}],
            "action 0 (goto): option.loop_count must be a number, not str",
        ),
        # branch
        (
            [{"type": "branch"}],
            "action 0 (branch): option.target_ids is required and must be an object "
            "(value -> action id)",
        ),
        (
            [{"type": "branch", "option": {"target_ids": {}, "variable": ""}}],
            "action 0 (branch): option.variable must be a non-empty string",
        ),
        (
            [{"type": "branch", "option": {"target_ids": {"1": "x"}}}],
            "action 0 (branch): option.target_ids.1 must be a UUID string",
        ),
        (
            [{"id": A, "type": "branch", "option": {"target_ids": {"1": A, "2": B}}}],
            f"action 0 (branch): option.target_ids.2 {B} is not the id of an action in this list",
        ),
        (
            [{"type": "branch", "option": {"target_ids": {}, "default_target_id": C}}],
            f"action 0 (branch): option.default_target_id {C} is not the id of an action "
            "in this list",
        ),
        # connect
        (
            [{"type": "connect"}],
            "action 0 (connect): option.destinations is required and must be a non-empty "
            "list of endpoints",
        ),
        (
            [{"type": "connect", "option": {"destinations": []}}],
            "action 0 (connect): option.destinations is required and must be a non-empty "
            "list of endpoints",
        ),
        (
            [{"type": "connect", "option": {"destinations": ["sip:bob@example.com"]}}],
            'action 0 (connect): option.destinations[0] must be an object {"type": '
            '"sip"|"tel", "target": ...}',
        ),
        (
            [{"type": "connect", "option": {"destinations": [{"type": "agent", "target": "x"}]}}],
            "action 0 (connect): option.destinations[0].type must be one of sip, tel",
        ),
        (_sip(None), "action 0 (connect): option.destinations[0].target must be a string"),
        (
            _sip("bob@example.com"),
            "action 0 (connect): option.destinations[0].target must be a SIP URI",
        ),
        (
            _sip("tel:+15551234567"),
            "action 0 (connect): option.destinations[0].target must be a SIP URI",
        ),
        (
            _sip("sip:bob@exa mple.com"),
            "action 0 (connect): option.destinations[0].target must be a SIP URI",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {
                        "destinations": [
                            {"type": "tel", "target": "+15551234567"},
                            {"type": "tel", "target": "+1234567"},
                        ]
                    },
                }
            ],
            "action 0 (connect): option.destinations[1].target must be an E.164 number "
            "(+ and 8 to 15 digits, the first not 0)",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {"destinations": [{"type": "tel", "target": "+1234567890123456"}]},
                }
            ],
            "action 0 (connect): option.destinations[0].target must be an E.164 number "
            "(+ and 8 to 15 digits, the first not 0)",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {"destinations": [{"type": "tel", "target": "+0155512345"}]},
                }
            ],
            "action 0 (connect): option.destinations[0].target must be an E.164 number "
            "(+ and 8 to 15 digits, the first not 0)",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {"destinations": [{"type": "tel", "target": "+１２３４５６７８９"}]},
                }
            ],
            "action 0 (connect): option.destinations[0].target must be an E.164 number "
            "(+ and 8 to 15 digits, the first not 0)",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {"destinations": [{"type": "tel", "target": "+123456789\n"}]},
                }
            ],
            "action 0 (connect): option.destinations[0].target must be an E.164 number "
            "(+ and 8 to 15 digits, the first not 0)",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {
                        "source": {"type": "tel"},
                        "destinations": [{"type": "tel", "target": "+123456789"}],
                    },
                }
            ],
            "action 0 (connect): option.source.target must be a string",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {
                        "destinations": [{"type": "tel", "target": "+123456789"}],
                        "early_media": "yes",
                    },
                }
            ],
            "action 0 (connect): option.early_media must be true or false",
        ),
        (
            [
                {
                    "type": "connect",
                    "option": {
                        "destinations": [{"type": "tel", "target": "+123456789"}],
                        "relay_reason": 1,
                    },
                }
            ],
            "action 0 (connect): option.relay_reason must be true or false",
        ),
        # conference_join
        (
            [{"type": "conference_join"}],
            "action 0 (conference_join): option.conference_id must be a UUID string",
        ),
        (
            [{"type": "conference_join", "option": {"conference_id": "room-1"}}],
            "action 0 (conference_join): option.conference_id must be a UUID string",
        ),
    ],
)
def test_new_rejections_name_index_and_field(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_actions(raw)
    assert str(info.value) == message
