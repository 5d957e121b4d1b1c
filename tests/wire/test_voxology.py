import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from callstream.codecs.g711 import alaw_decode, ulaw_decode, ulaw_encode
from callstream.errors import ConfigError, MediaError
from callstream.media.tone import ToneGenerator
from callstream.wire.tracks import StreamMeta, TrackWire
from callstream.wire.voxology import (
    NO_MESSAGES_FAULT,
    TRACK_SOURCES,
    VoxologyWire,
    epoch_ms,
    iso_ms,
)
from tests.rtp.pcap import load_hex_fixture

# Seed 003's eight example messages, as published (media shortened there with "...").
SEED_MESSAGES = """
{"stream_id":117179172,"type":"init_stream","stream_sequence_number":1,
 "call_id":"326065@3423993407","app_id":"421f7113-df23-4fe6-ba05-6bb943bf9ce3",
 "subaccount_id":67891,"direction":"outbound","stream_name":"stream1","stream_data":null,
 "tracks":[{"name":"caller"},{"name":"transfer"}],"service":"programmable_voice"}
{"stream_id":117179172,"type":"start_track","stream_sequence_number":2,
 "call_id":"326065@3423993407","api_no":"+19495551212","caller_no":"+17145551212",
 "track_sequence_number":1,"media_format":{"encoding":"ulaw","type":"text","sample_rate":8000},
 "name":"caller"}
{"stream_id":117179172,"type":"start_track","stream_sequence_number":3,
 "call_id":"326065@3423993407","api_no":"+19495551212","caller_no":"+17145551212",
 "track_sequence_number":1,"media_format":{"encoding":"ulaw","type":"text","sample_rate":8000},
 "name":"transfer"}
{"stream_id":117179172,"type":"live_track","stream_sequence_number":27,
 "track_sequence_number":26,"media":"/v5+fv19/v3//v7+fn59fn7+/v9+ff97e378fn7+//59/f7+fv7...",
 "call_id":"326065@3423993407","name":"caller"}
{"stream_id":117179172,"type":"live_track","stream_sequence_number":28,
 "track_sequence_number":26,"media":"/9fnz+/nv9////fn79/P7+fn78fn19/nv8//3+fv1+fn39/P/+...",
 "call_id":"326065@3423993407","name":"transfer"}
{"stream_id":117179172,"type":"stop_track","stream_sequence_number":31,
 "call_id":"326065@3423993407","api_no":"+19495551212","caller_no":"+17145551212",
 "track_sequence_number":30,"duration":4928,"start_time":"2020-12-02T17:39:32.588Z",
 "end_time":"2020-12-02T17:39:37.516Z","name":"caller"}
{"stream_id":117179172,"type":"stop_track","stream_sequence_number":32,
 "call_id":"326065@3423993407","api_no":"+19495551212","caller_no":"+17145551212",
 "track_sequence_number":30,"duration":4920,"start_time":"2020-12-02T17:39:32.588Z",
 "end_time":"2020-12-02T17:39:37.508Z","name":"transfer"}
{"stream_id":117179172,"type":"end_stream","stream_sequence_number":33,
 "call_id":"326065@3423993407","app_id":"421f7113-df23-4fe6-ba05-6bb943bf9ce3",
 "subaccount_id":67891,"service":"programmable_voice","stream_name":"stream1",
 "tracks":[{"name":"caller","start_time":"2020-12-02T17:39:32.588Z",
 "end_time":"2020-12-02T17:39:37.508Z","duration":4920},{"name":"transfer",
 "start_time":"2020-12-02T17:39:32.588Z","end_time":"2020-12-02T17:39:37.516Z","duration":4928}],
 "error_code":null,"error":null,"stream_data":null}
"""

STREAM_ID = "5d0f7c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
SEED_META = StreamMeta(
    stream_id=STREAM_ID,
    call_id="326065@3423993407",
    account_id="67891",
    direction="outbound",
    from_number="+17145551212",
    to_number="+19495551212",
    stream_name="stream1",
    app_id="421f7113-df23-4fe6-ba05-6bb943bf9ce3",
)
START = datetime(2020, 12, 2, 17, 39, 32, 588000, tzinfo=UTC)
# Real speech for the caller (a SIPp capture's A-law, as PCM); a tone for the transfer leg.
SPEECH_FRAME = alaw_decode(load_hex_fixture("pcma_speech")[0][12:])[:320]
TONE_FRAME = ToneGenerator(440.0).next_frame()


def seed_messages() -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    text, position, messages = SEED_MESSAGES.strip(), 0, []
    while position < len(text):
        message, position = decoder.raw_decode(text, position)
        messages.append(message)
        while position < len(text) and text[position].isspace():
            position += 1
    return messages


def at(ms: int) -> datetime:
    return START + timedelta(milliseconds=ms)


def wire_for(
    tracks: tuple[str, ...] = ("caller", "transfer"),
    meta: StreamMeta = SEED_META,
    **options: Any,
) -> VoxologyWire:
    return VoxologyWire(meta=meta, tracks=tracks, options=options)


def parsed(messages: list[str]) -> list[dict[str, Any]]:
    return [json.loads(message) for message in messages]


def assert_same_in_order(message: str, expected: dict[str, Any]) -> None:
    """Equal values, and keys in the same order (json.loads keeps the text's order)."""
    assert list(json.loads(message).items()) == list(expected.items())


def media_of(frame: bytes) -> str:
    return base64.b64encode(ulaw_encode(frame)).decode("ascii")


def run_seed_sequence() -> list[str]:
    """The seed's call: both tracks start together, 28 frames each, two stops, end."""
    wire = wire_for()
    sent = wire.opening(START)
    sent += wire.track_started("caller", START)
    sent += wire.track_started("transfer", START)
    for index in range(28):
        sent += wire.encode_audio("caller", SPEECH_FRAME, at(20 * index))
        sent += wire.encode_audio("transfer", TONE_FRAME, at(20 * index))
    sent += wire.track_stopped("caller", at(4928))
    sent += wire.track_stopped("transfer", at(4920))
    sent += wire.closing(at(5000))
    return sent


def test_the_seeds_eight_messages_are_reproduced_field_by_field_in_order() -> None:
    seed = seed_messages()
    sent = run_seed_sequence()
    assert len(sent) == 1 + 2 + 56 + 2 + 1
    (
        init,
        start_caller,
        start_transfer,
        live_caller,
        live_transfer,
        stop_caller,
        stop_transfer,
        end,
    ) = seed
    # Documented id types: the stream's UUID and the account id are strings here.
    for message in seed:
        message["stream_id"] = STREAM_ID
    for message in (init, end):
        message["subaccount_id"] = "67891"
    assert_same_in_order(sent[0], init)
    assert_same_in_order(sent[1], start_caller)
    assert_same_in_order(sent[2], start_transfer)
    # The seed's live and stop numbers cannot come from one stream (module docs): its
    # track numbers are kept (26th, 30th message of each track), the stream's follow.
    live_caller |= {"stream_sequence_number": 52, "media": media_of(SPEECH_FRAME)}
    live_transfer |= {"stream_sequence_number": 53, "media": media_of(TONE_FRAME)}
    assert_same_in_order(sent[51], live_caller)
    assert_same_in_order(sent[52], live_transfer)
    stop_caller["stream_sequence_number"] = 60
    stop_transfer["stream_sequence_number"] = 61
    assert_same_in_order(sent[59], stop_caller)
    assert_same_in_order(sent[60], stop_transfer)
    # The seed's summary swaps the tracks' end times and durations; ours repeats the stops.
    end["stream_sequence_number"] = 62
    end["tracks"][0] |= {"end_time": "2020-12-02T17:39:37.516Z", "duration": 4928}
    end["tracks"][1] |= {"end_time": "2020-12-02T17:39:37.508Z", "duration": 4920}
    assert_same_in_order(sent[61], end)
    assert list(end["tracks"][0]) == ["name", "start_time", "end_time", "duration"]


def test_numbering_counts_every_message_and_each_tracks_own() -> None:
    messages = parsed(run_seed_sequence())
    assert [m["stream_sequence_number"] for m in messages] == list(range(1, 63))
    for track in ("caller", "transfer"):
        numbers = [m["track_sequence_number"] for m in messages if m.get("name") == track]
        assert numbers == list(range(1, 31))
    kinds = [m["type"] for m in messages]
    assert kinds[:3] == ["init_stream", "start_track", "start_track"]
    assert kinds[3:59] == ["live_track"] * 56
    assert kinds[59:] == ["stop_track", "stop_track", "end_stream"]


def test_live_track_carries_the_frame_as_base64_mu_law() -> None:
    wire = wire_for(("far",))
    wire.opening(START)
    start, live = parsed(wire.encode_audio("far", SPEECH_FRAME, START))
    assert start["type"] == "start_track" and start["name"] == "far"
    ulaw = base64.b64decode(live["media"], validate=True)
    assert len(ulaw) == 160 and ulaw == ulaw_encode(SPEECH_FRAME)
    assert ulaw_decode(ulaw) == ulaw_decode(ulaw_encode(SPEECH_FRAME))
    silence = parsed(wire.encode_audio("far", bytes(320), START))[0]
    assert base64.b64decode(silence["media"]) == b"\xff" * 160


def test_audio_on_a_track_not_started_starts_it_first() -> None:
    wire = wire_for()
    wire.opening(START)
    messages = parsed(wire.encode_audio("transfer", TONE_FRAME, at(40)))
    assert [
        (m["type"], m["stream_sequence_number"], m["track_sequence_number"]) for m in messages
    ] == [
        ("start_track", 2, 1),
        ("live_track", 3, 2),
    ]
    assert wire.track_started("transfer", at(60)) == []  # already running: nothing new
    stop = parsed(wire.track_stopped("transfer", at(1040)))[0]
    assert (stop["start_time"], stop["end_time"], stop["duration"]) == (
        "2020-12-02T17:39:32.628Z",
        "2020-12-02T17:39:33.628Z",
        1000,
    )


def test_a_track_stopped_before_the_stream_is_stopped_once_and_the_stream_outlives_it() -> None:
    wire = wire_for()
    wire.opening(START)
    wire.encode_audio("caller", SPEECH_FRAME, START)
    wire.encode_audio("transfer", TONE_FRAME, at(100))
    first = parsed(wire.track_stopped("transfer", at(2100)))
    assert [(m["type"], m["name"], m["duration"]) for m in first] == [
        ("stop_track", "transfer", 2000)
    ]
    assert wire.track_stopped("transfer", at(2200)) == []
    # Its leg gone, the track is done: late audio or a new start sends nothing.
    assert wire.encode_audio("transfer", TONE_FRAME, at(2200)) == []
    assert wire.track_started("transfer", at(2200)) == []
    live = parsed(wire.encode_audio("caller", SPEECH_FRAME, at(2200)))[0]
    assert (live["stream_sequence_number"], live["track_sequence_number"]) == (7, 3)
    stop, end = parsed(wire.closing(at(3000)))
    assert (stop["type"], stop["name"], stop["stream_sequence_number"]) == (
        "stop_track",
        "caller",
        8,
    )
    assert (stop["track_sequence_number"], stop["duration"]) == (4, 3000)
    assert end["stream_sequence_number"] == 9
    assert end["tracks"] == [
        {
            "name": "caller",
            "start_time": "2020-12-02T17:39:32.588Z",
            "end_time": "2020-12-02T17:39:35.588Z",
            "duration": 3000,
        },
        {
            "name": "transfer",
            "start_time": "2020-12-02T17:39:32.688Z",
            "end_time": "2020-12-02T17:39:34.688Z",
            "duration": 2000,
        },
    ]


def test_closing_stops_running_tracks_first_and_then_says_nothing_more() -> None:
    wire = wire_for(("near", "far"))
    wire.opening(START)
    wire.track_started("far", START)
    wire.encode_audio("near", TONE_FRAME, at(20))
    messages = parsed(wire.closing(at(1020), error_code=1006, error="connection lost"))
    assert [(m["type"], m.get("name")) for m in messages] == [
        ("stop_track", "near"),
        ("stop_track", "far"),
        ("end_stream", None),
    ]
    assert [m["stream_sequence_number"] for m in messages] == [5, 6, 7]
    assert [m["duration"] for m in messages[:2]] == [1000, 1020]
    assert (messages[2]["error_code"], messages[2]["error"]) == (1006, "connection lost")
    assert wire.closing(at(2000)) == []
    assert wire.encode_audio("far", TONE_FRAME, at(2000)) == []
    assert wire.track_started("near", at(2000)) == []
    assert wire.track_stopped("far", at(2000)) == []


def test_a_track_that_never_started_is_left_out_of_the_summary() -> None:
    wire = wire_for()
    wire.opening(START)
    wire.track_started("caller", START)
    assert wire.track_stopped("transfer", at(500)) == []  # its leg ended silent
    assert wire.encode_audio("transfer", TONE_FRAME, at(600)) == []
    stop, end = parsed(wire.closing(at(1000)))
    assert stop["name"] == "caller"
    assert [track["name"] for track in end["tracks"]] == ["caller"]
    silent = wire_for()
    silent.opening(START)
    (end,) = parsed(silent.closing(at(1000)))
    assert end["tracks"] == [] and end["stream_sequence_number"] == 2


def test_stream_data_of_the_init_and_of_a_stop() -> None:
    wire = wire_for(stream_data={"test_key": "test_value"}, protocol="voxology", url="ws://x")
    (init,) = parsed(wire.opening(START))
    assert init["stream_data"] == {"test_key": "test_value"}
    (end,) = parsed(wire.closing(at(10)))
    assert end["stream_data"] == {"test_key": "test_value"}
    stopped = wire_for(stream_data={"test_key": "test_value"})
    stopped.opening(START)
    stopped.stream_data = {"your_key": "your_value"}
    (end,) = parsed(stopped.closing(at(10)))
    assert end["stream_data"] == {"your_key": "your_value"}
    assert (end["error_code"], end["error"]) == (None, None)


def test_ids_are_escaped_once_and_stay_exact() -> None:
    meta = StreamMeta(
        stream_id=STREAM_ID, call_id='a"b\\c\u00e9', account_id="acct", direction="inbound"
    )
    wire = wire_for(("caller",), meta=meta)
    wire.opening(START)
    start, live = parsed(wire.encode_audio("caller", SPEECH_FRAME, START))
    assert live["call_id"] == start["call_id"] == 'a"b\\c\u00e9'
    assert list(live) == [
        "stream_id",
        "type",
        "stream_sequence_number",
        "track_sequence_number",
        "media",
        "call_id",
        "name",
    ]


def test_times_are_utc_milliseconds_truncated() -> None:
    assert iso_ms(epoch_ms(START)) == "2020-12-02T17:39:32.588Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    later = datetime(2020, 12, 2, 19, 39, 32, 588999, tzinfo=timezone(timedelta(hours=2)))
    assert iso_ms(epoch_ms(later)) == "2020-12-02T17:39:32.588Z"
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 5000)) == 1005  # naive = UTC


def test_decode_is_a_fault_whatever_arrives() -> None:
    wire = wire_for()
    for message in ('{"event":"media"}', b"\x00\x01", ""):
        decoded = wire.decode(message, START)
        assert decoded.faults == [NO_MESSAGES_FAULT]
        assert decoded.audio == [] and decoded.commands == []
    assert NO_MESSAGES_FAULT == "Voxology streams carry no messages from the application"


def test_class_facts() -> None:
    assert issubclass(VoxologyWire, TrackWire)
    assert VoxologyWire.name == "voxology"
    assert VoxologyWire.track_names == ("caller", "transfer", "near", "far")
    assert VoxologyWire.bidirectional is False
    assert TRACK_SOURCES == {
        "caller": ("call", "heard"),
        "transfer": ("peer", "heard"),
        "far": ("call", "heard"),
        "near": ("call", "said"),
    }


@pytest.mark.parametrize(
    ("tracks", "options", "message"),
    [
        (("caller",), {"bidirectional": True}, "voxology stream: unknown option 'bidirectional'"),
        (("caller",), {"stream_data": {1, 2}}, "voxology stream: stream_data must be JSON"),
        ((), {}, "voxology stream: tracks must name at least one track"),
        (
            ("caller", "inbound"),
            {},
            "voxology stream: track 'inbound' is not one of caller, transfer, near, far",
        ),
        (("far", "far"), {}, "voxology stream: tracks must not repeat a track"),
    ],
)
def test_bad_options_are_refused(
    tracks: tuple[str, ...], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        VoxologyWire(meta=SEED_META, tracks=tracks, options=options)
    assert str(caught.value) == message


def test_misuse_by_the_core_raises() -> None:
    wire = wire_for(("caller",))
    wire.opening(START)
    with pytest.raises(MediaError, match="^frame must be 320 bytes, got 160$"):
        wire.encode_audio("caller", bytes(160), START)
    with pytest.raises(ValueError, match="track 'near' is not one of this stream's tracks"):
        wire.encode_audio("near", SPEECH_FRAME, START)
    with pytest.raises(ValueError, match="track 'transfer' is not one"):
        wire.track_started("transfer", START)
