import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callstream.codecs.g711 import alaw_decode, ulaw_decode, ulaw_encode
from callstream.codecs.wav import write_wav
from callstream.errors import ConfigError, MediaError
from callstream.wire.plivo import PlivoWire, tracks_for
from callstream.wire.tracks import Checkpoint, ClearAudio, SendDtmf, StreamMeta, TrackWire
from tests.rtp.pcap import load_hex_fixture

# Real speech: the first 20 ms of a SIPp capture's A-law payload, as canonical PCM.
SPEECH_FRAME = alaw_decode(load_hex_fixture("pcma_speech")[0][12:])[:320]
META = StreamMeta(
    stream_id="20170ada-f610-433b-8758-c02a2aab3662",
    call_id="0e0c5bb4-8f5c-4a3f-9d43-7b1e3c2a9f10",
    account_id="4b2b6a4e-2c5d-4d1b-9a43-4d3f0a1e2b3c",
    direction="inbound",
    from_number="+15551230001",
    to_number="+15551230002",
)
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def wire(tracks: tuple[str, ...] = ("inbound",), **options: Any) -> PlivoWire:
    return PlivoWire(meta=META, tracks=tracks, options=options)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def tone(frequency_hz: float, samples: int, rate_hz: int = 8000) -> bytes:
    t = np.arange(samples) / rate_hz
    return (np.sin(2 * np.pi * frequency_hz * t) * 8000).astype("<i2").tobytes()


def peak_hz(pcm: bytes, rate_hz: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate_hz / len(samples))


def test_is_a_track_wire_with_plivos_track_names() -> None:
    assert issubclass(PlivoWire, TrackWire)
    assert PlivoWire.name == "plivo"
    assert PlivoWire.track_names == ("inbound", "outbound")
    assert tracks_for("inbound") == ("inbound",)
    assert tracks_for("outbound") == ("outbound",)
    assert tracks_for("both") == ("inbound", "outbound")
    with pytest.raises(
        ConfigError, match="^audioTrack: must be inbound, outbound or both, not 'x'$"
    ):
        tracks_for("x")


@pytest.mark.parametrize(
    ("content_type", "encoding", "rate"),
    [
        (None, "audio/x-l16", 8000),
        ("audio/x-l16;rate=8000", "audio/x-l16", 8000),
        ("audio/x-l16;rate=16000", "audio/x-l16", 16000),
        ("audio/x-mulaw;rate=8000", "audio/x-mulaw", 8000),
    ],
)
def test_start_message(content_type: str | None, encoding: str, rate: int) -> None:
    options: dict[str, Any] = {"extra_headers": "test1=12,test2=123"}
    if content_type is not None:
        options["content_type"] = content_type
    stream = wire(("inbound", "outbound"), **options)
    [start] = stream.opening(T0)
    assert json.loads(start) == {
        "event": "start",
        "sequenceNumber": 1,
        "streamId": META.stream_id,
        "start": {
            "callId": META.call_id,
            "streamId": META.stream_id,
            "accountId": META.account_id,
            "tracks": ["inbound", "outbound"],
            "mediaFormat": {"encoding": encoding, "sampleRate": rate},
        },
        "extra_headers": "test1=12,test2=123",
    }


def test_l16_8k_media_carries_the_frame_itself() -> None:
    stream = wire(("inbound", "outbound"))
    stream.opening(T0)
    [first] = stream.encode_audio("inbound", SPEECH_FRAME, at(20))
    [second] = stream.encode_audio("outbound", SPEECH_FRAME, at(20))
    [third] = stream.encode_audio("inbound", bytes(320), at(40))
    assert json.loads(first) == {
        "event": "media",
        "sequenceNumber": 2,
        "streamId": META.stream_id,
        "media": {
            "track": "inbound",
            "timestamp": "20",
            "chunk": 1,
            "payload": base64.b64encode(SPEECH_FRAME).decode(),
        },
        "extra_headers": "",
    }
    assert json.loads(second)["media"]["track"] == "outbound"
    assert json.loads(second)["media"]["chunk"] == 1
    assert json.loads(second)["sequenceNumber"] == 3
    assert json.loads(third)["media"] == {
        "track": "inbound",
        "timestamp": "40",
        "chunk": 2,
        "payload": base64.b64encode(bytes(320)).decode(),
    }
    assert json.loads(third)["sequenceNumber"] == 4


def test_media_json_escapes_ids_and_headers() -> None:
    meta = StreamMeta(stream_id='a"b\\c', call_id="c", account_id="a", direction="inbound")
    stream = PlivoWire(meta=meta, tracks=["inbound"], options={"extra_headers": "k=v"})
    stream.opening(T0)
    [media] = stream.encode_audio("inbound", SPEECH_FRAME, at(0))
    assert json.loads(media)["streamId"] == 'a"b\\c'
    assert json.loads(media)["extra_headers"] == "k=v"


def test_mulaw_media_is_160_bytes_of_g711() -> None:
    stream = wire(content_type="audio/x-mulaw;rate=8000")
    stream.opening(T0)
    [media] = stream.encode_audio("inbound", SPEECH_FRAME, at(20))
    payload = base64.b64decode(json.loads(media)["media"]["payload"])
    assert payload == ulaw_encode(SPEECH_FRAME) and len(payload) == 160


def test_l16_16k_media_is_resampled_seamlessly_per_track() -> None:
    stream = wire(("inbound", "outbound"), content_type="audio/x-l16;rate=16000")
    stream.opening(T0)
    audio = tone(440, 160 * 50)
    inbound = b""
    chunks = []
    for index in range(50):
        frame = audio[index * 320 : (index + 1) * 320]
        for message in stream.encode_audio("inbound", frame, at(20 * index)):
            media = json.loads(message)["media"]
            chunks.append(media["chunk"])
            inbound += base64.b64decode(media["payload"])
    # The filter's delay holds back under 100 ms (3200 bytes at 16 kHz); the rest is
    # twice the samples.
    assert 2 * len(audio) - 3200 <= len(inbound) <= 2 * len(audio)
    assert chunks == list(range(1, len(chunks) + 1))
    assert abs(peak_hz(inbound[640:], 16000) - 440) < 10
    # A continuous tone has no seams: no sample jumps more than a 440 Hz sine can.
    samples = np.frombuffer(inbound[640:], dtype="<i2").astype(np.int32)
    assert np.max(np.abs(np.diff(samples))) < 8000 * 2 * np.pi * 440 / 16000 * 1.2
    # The outbound track's filter is its own: silence in, silence out, none of the tone.
    outbound = b""
    for index in range(10):
        for message in stream.encode_audio("outbound", bytes(320), at(1000 + 20 * index)):
            assert json.loads(message)["media"]["track"] == "outbound"
            outbound += base64.b64decode(json.loads(message)["media"]["payload"])
    assert len(outbound) >= 3200
    # soxr's dither leaves +-1 on silence; the tone (amplitude 8000) is absent.
    assert np.max(np.abs(np.frombuffer(outbound, dtype="<i2"))) <= 1


def test_media_on_a_track_the_stream_does_not_have_is_refused() -> None:
    stream = wire(("inbound",))
    with pytest.raises(MediaError, match="^track 'outbound' is not one of this stream's"):
        stream.encode_audio("outbound", SPEECH_FRAME, T0)


def test_dtmf_played_cleared_and_stop() -> None:
    stream = wire(extra_headers="a=1")
    stream.opening(T0)
    assert [json.loads(m) for m in stream.encode_dtmf("5", at(100))] == [
        {
            "event": "dtmf",
            "sequenceNumber": 2,
            "streamId": META.stream_id,
            "dtmf": {"track": "inbound", "digit": "5"},
            "extra_headers": "a=1",
        }
    ]
    assert [json.loads(m) for m in stream.played(["greeting", "menu"])] == [
        {
            "event": "playedStream",
            "sequenceNumber": 3,
            "streamId": META.stream_id,
            "name": "greeting",
        },
        {"event": "playedStream", "sequenceNumber": 4, "streamId": META.stream_id, "name": "menu"},
    ]
    assert [json.loads(m) for m in stream.cleared()] == [
        {"event": "clearedAudio", "sequenceNumber": 5, "streamId": META.stream_id}
    ]
    assert [json.loads(m) for m in stream.closing(at(200))] == [
        {"event": "stop", "sequenceNumber": 6, "streamId": META.stream_id, "reason": "stopped"}
    ]
    assert json.loads(wire().closing(T0, error_code=1, error="stream timeout")[0])["reason"] == (
        "stream timeout"
    )
    assert stream.track_started("inbound", T0) == [] and stream.track_stopped("inbound", T0) == []


def play(payload: bytes, **media: Any) -> str:
    return json.dumps(
        {"event": "playAudio", "media": {"payload": base64.b64encode(payload).decode(), **media}}
    )


def test_play_audio_l16_8k_and_raw() -> None:
    stream = wire(bidirectional=True)
    message = play(SPEECH_FRAME, contentType="audio/x-l16", sampleRate=8000)
    assert stream.decode(message, T0).audio == [SPEECH_FRAME]
    assert stream.decode(play(SPEECH_FRAME, contentType="raw", sampleRate=8000), T0).audio == [
        SPEECH_FRAME
    ]
    # The seed's legacy "raw" is audio in the stream's own encoding.
    ulaw_stream = wire(bidirectional=True, content_type="audio/x-mulaw;rate=8000")
    ulaw = ulaw_encode(SPEECH_FRAME)
    decoded = ulaw_stream.decode(play(ulaw, contentType="raw", sampleRate=8000), T0)
    assert decoded.audio == [ulaw_decode(ulaw)] and decoded.faults == []


def test_play_audio_mulaw() -> None:
    stream = wire(bidirectional=True)
    ulaw = ulaw_encode(SPEECH_FRAME)
    decoded = stream.decode(play(ulaw, contentType="audio/x-mulaw", sampleRate=8000), T0)
    assert decoded.audio == [ulaw_decode(ulaw)]
    assert decoded.commands == [] and decoded.faults == []


def test_play_audio_l16_16k_is_downsampled_whole_in_each_message() -> None:
    stream = wire(bidirectional=True)
    audio = tone(1000, 16000, rate_hz=16000)  # one second
    pcm = b""
    for offset in range(0, len(audio), 3200):
        message = play(audio[offset : offset + 3200], contentType="audio/x-l16", sampleRate=16000)
        [chunk] = stream.decode(message, T0).audio
        assert len(chunk) == 1600  # nothing held back for a next message
        pcm += chunk
    assert abs(peak_hz(pcm, 8000) - 1000) < 10


def test_play_audio_wav_is_read_by_its_header(tmp_path: Any) -> None:
    path = tmp_path / "hello.wav"
    write_wav(path, tone(500, 16000, rate_hz=16000), sample_rate=16000)
    stream = wire(bidirectional=True)
    message = play(path.read_bytes(), contentType="wav", sampleRate=8000)
    [pcm] = stream.decode(message, T0).audio
    assert len(pcm) == 16000  # one second at 8 kHz whatever sampleRate said
    assert abs(peak_hz(pcm, 8000) - 500) < 10


def test_commands() -> None:
    stream = wire(bidirectional=True)
    checkpoint = {
        "event": "checkpoint",
        "streamId": META.stream_id,
        "name": "customer greeting audio",
    }
    assert stream.decode(json.dumps(checkpoint), T0).commands == [
        Checkpoint("customer greeting audio")
    ]
    clear = {"event": "clearAudio", "streamId": META.stream_id}
    assert stream.decode(json.dumps(clear), T0).commands == [ClearAudio()]
    dtmf = {"event": "sendDTMF", "dtmf": "1234#"}
    assert stream.decode(json.dumps(dtmf).encode(), T0).commands == [SendDtmf("1234#")]


def test_play_audio_on_a_one_way_stream_is_a_fault() -> None:
    decoded = wire().decode(play(SPEECH_FRAME, contentType="audio/x-l16", sampleRate=8000), T0)
    assert decoded.audio == [] and decoded.faults == ["playAudio: the stream is not bidirectional"]


@pytest.mark.parametrize(
    ("message", "fault"),
    [
        ("{", "malformed JSON: Expecting property name enclosed in double quotes at position 1"),
        ("", "malformed JSON: Expecting value at position 0"),
        (b"\xff\xfe", "binary message that is not UTF-8 JSON"),
        ("[1, 2]", "message is not a JSON object"),
        ('"playAudio"', "message is not a JSON object"),
        ("[" * 100000 + "]" * 100000, "malformed JSON: nested too deeply"),
        ("{}", "event: missing or not a string"),
        ('{"event": 5}', "event: missing or not a string"),
        ('{"event": "media"}', "unknown event 'media'"),
        ('{"event": "' + "x" * 100 + '"}', "unknown event '" + "x" * 40 + "'"),
        ('{"event": "checkpoint"}', "checkpoint: name must be a non-empty string"),
        ('{"event": "checkpoint", "name": ""}', "checkpoint: name must be a non-empty string"),
        ('{"event": "checkpoint", "name": 7}', "checkpoint: name must be a non-empty string"),
        (
            '{"event": "sendDTMF"}',
            "sendDTMF: dtmf must be a string of DTMF digits (0-9, *, #, A-D)",
        ),
        (
            '{"event": "sendDTMF", "dtmf": "12x"}',
            "sendDTMF: dtmf must be a string of DTMF digits (0-9, *, #, A-D)",
        ),
        (
            '{"event": "sendDTMF", "dtmf": 5}',
            "sendDTMF: dtmf must be a string of DTMF digits (0-9, *, #, A-D)",
        ),
        ('{"event": "playAudio"}', "playAudio: media must be an object"),
        ('{"event": "playAudio", "media": "AAAA"}', "playAudio: media must be an object"),
        (
            '{"event": "playAudio", "media": {"contentType": "audio/wav", "payload": "AAAA"}}',
            "playAudio: media.contentType must be raw, wav, audio/x-l16 or audio/x-mulaw",
        ),
        (
            '{"event": "playAudio", "media": {"sampleRate": 44100, "payload": "AAAA"}}',
            "playAudio: media.sampleRate must be 8000 or 16000",
        ),
        (
            '{"event": "playAudio", "media": {"sampleRate": "8000", "payload": "AAAA"}}',
            "playAudio: media.sampleRate must be 8000 or 16000",
        ),
        (
            '{"event": "playAudio", "media": {"sampleRate": true, "payload": "AAAA"}}',
            "playAudio: media.sampleRate must be 8000 or 16000",
        ),
        ('{"event": "playAudio", "media": {}}', "playAudio: media.payload must be a base64 string"),
        (
            '{"event": "playAudio", "media": {"payload": 12}}',
            "playAudio: media.payload must be a base64 string",
        ),
        ('{"event": "playAudio", "media": {"payload": ""}}', "playAudio: media.payload is empty"),
        (
            '{"event": "playAudio", "media": {"payload": "AA*A"}}',
            "playAudio: media.payload is not valid base64",
        ),
        (
            '{"event": "playAudio", "media": {"payload": "AAA"}}',
            "playAudio: media.payload is not valid base64",
        ),
        (
            '{"event": "playAudio", "media": {"contentType": "audio/x-l16", "payload": "AAAA"}}',
            "playAudio: odd byte count 3 for 16-bit PCM",
        ),
        (
            '{"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": 16000,'
            ' "payload": "AAAA"}}',
            "playAudio: media.sampleRate must be 8000 for audio/x-mulaw",
        ),
        (
            '{"event": "playAudio", "media": {"contentType": "wav", "payload": "AAAA"}}',
            "playAudio: cannot read WAV file <payload>: not a RIFF/WAVE file",
        ),
    ],
)
def test_malformed_messages_are_faults_never_exceptions(message: str | bytes, fault: str) -> None:
    decoded = wire(bidirectional=True).decode(message, T0)
    assert decoded.faults == [fault]
    assert decoded.audio == [] and decoded.commands == []


@pytest.mark.parametrize(
    ("tracks", "options", "message"),
    [
        ((), {}, "tracks: must be inbound and/or outbound, not []"),
        (("caller",), {}, "tracks: must be inbound and/or outbound, not ['caller']"),
        (
            ("inbound",),
            {"content_type": "audio/x-mulaw;rate=16000"},
            "content_type: must be one of audio/x-l16;rate=8000, audio/x-l16;rate=16000,"
            " audio/x-mulaw;rate=8000",
        ),
        (("inbound",), {"bidirectional": "true"}, "bidirectional: must be true or false"),
        (("inbound",), {"extra_headers": None}, "extra_headers: must be a string"),
    ],
)
def test_bad_options_are_refused(
    tracks: tuple[str, ...], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        PlivoWire(meta=META, tracks=tracks, options=options)
    assert str(caught.value) == message


# ---------------------------------------------------------------- decode_audio fast path

_PLAY_MEDIA = st.fixed_dictionaries(
    {},
    optional={
        "contentType": st.sampled_from(
            ["raw", "wav", "audio/x-l16", "audio/x-mulaw", "audio/x-alaw", 7, None]
        ),
        "sampleRate": st.sampled_from([8000, 16000, 44100, True, "8000", 8000.0, 0, None]),
        "payload": st.one_of(
            st.binary(max_size=700).map(lambda b: base64.b64encode(b).decode()),
            st.binary(min_size=1, max_size=12).map(
                lambda b: base64.b64encode(b).decode().rstrip("=")  # unpadded
            ),
            st.sampled_from(["", "not base64!", 5, None, "QUJD\nRA==", "QQ==QQ==", "=QQ="]),
        ),
    },
)
_MESSAGES = st.one_of(
    st.builds(lambda media: {"event": "playAudio", "media": media}, _PLAY_MEDIA),
    st.sampled_from(
        [
            {"event": "playAudio", "media": "x"},
            {"event": "checkpoint", "name": "cp"},
            {"event": "clearAudio"},
            {"event": "sendDTMF", "dtmf": "12"},
            {"event": "other"},
            {"media": {}},
            {"event": None, "media": {"payload": "AAAA"}},
            [1, 2],
        ]
    ),
).map(json.dumps)
_RAW = st.sampled_from(
    [
        '{"event": "playAudio"',
        "null",
        b"\xff\xfe",
        b'{"event":"clearAudio"}',
        # duplicate keys: the last one counts, for decode (json) as for decode_audio
        '{"event":"playAudio","event":"checkpoint","name":"a","media":{"payload":"AAAA"}}',
        '{"event":"checkpoint","event":"playAudio","media":{"payload":"AAAA"}}',
        '{"event":"playAudio","media":{"payload":"AAAA","payload":""}}',
        '{"\\u0065vent":"playAudio","media":{"payload":"AAAA"}}',  # an escaped key
        '{"event":"playAudio","media":{"payload":"AAAA"}} trailing',
        b'{"event":"playAudio","media":{"payload":"AA\xffA"}}',  # not UTF-8
    ]
)


@settings(max_examples=300)
@given(
    message=st.one_of(_MESSAGES, _MESSAGES.map(str.encode), _RAW),
    content_type=st.sampled_from(
        ["audio/x-l16;rate=8000", "audio/x-l16;rate=16000", "audio/x-mulaw;rate=8000"]
    ),
    bidirectional=st.booleans(),
)
def test_decode_audio_gives_exactly_what_decode_gives(
    message: str | bytes, content_type: str, bidirectional: bool
) -> None:
    stream = wire(content_type=content_type, bidirectional=bidirectional)
    expected = stream.decode(message, T0)
    audio = stream.decode_audio(message)
    if audio is not None:
        assert (expected.commands, expected.faults) == ([], [])
        assert [len(pcm) for pcm in expected.audio] == [len(audio)]
        # audio at another rate goes through soxr, whose int16 output is dithered (TPDF,
        # random): two conversions of the same samples may differ by an LSB or two
        difference = np.frombuffer(expected.audio[0], "<i2") - np.frombuffer(audio, "<i2")
        assert np.abs(difference.astype(np.int32)).max(initial=0) <= 2
        text = message.decode(errors="replace") if isinstance(message, bytes) else message
        if "16000" not in text + content_type:  # no resampling: the very same bytes
            assert expected.audio == [audio]
    elif expected.audio and not (expected.faults or expected.commands):
        # audio the fast path leaves to decode(): only a sampleRate written as a float
        # (msgspec's int is strict; json reads 8000.0 == 8000)
        assert isinstance(json.loads(message)["media"]["sampleRate"], float)


def test_a_plain_play_audio_takes_the_fast_path_and_nothing_else_does() -> None:
    stream = wire(content_type="audio/x-mulaw;rate=8000", bidirectional=True)
    payload = base64.b64encode(ulaw_encode(SPEECH_FRAME)).decode()
    play = {"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "payload": payload}}
    assert stream.decode_audio(json.dumps(play)) == ulaw_decode(ulaw_encode(SPEECH_FRAME))
    assert stream.decode_audio(json.dumps({"event": "checkpoint", "name": "a"})) is None
    assert wire(bidirectional=False).decode_audio(json.dumps(play)) is None
