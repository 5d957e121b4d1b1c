"""The flow runner's cursor, variables and context calls, on a real Call without media.

A stand-in CallControl answers and hangs up at once; what ran is read back from the
call's log lines (``call <id> action type=... index=... id=...``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from callstream.calls.call import Call, CallEnded
from callstream.errors import NotFoundError
from callstream.flows import runner as runner_module
from callstream.flows import tts
from callstream.flows.actions import parse_actions
from callstream.flows.runner import run_flow

pytestmark = pytest.mark.timeout(10)

A = "0b7a1f52-3c1d-4c8e-9a57-1d2f3e4a5b60"
B = "5e0c6a11-8d2b-4f3a-b1c4-7e9d0a2b3c41"
C = "9f8e7d6c-5b4a-4321-8fed-cba987654321"
D = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
CONFERENCE = "c6a8e1f0-1234-4abc-8def-0123456789ab"


class InstantControl:
    """Answers and hangs up at once, recording what it was asked."""

    def __init__(self) -> None:
        self.hangups: list[str] = []

    def answer(self, call: Call) -> None:
        call.mark_answered()

    def early_media(self, call: Call) -> None:
        call.early_media_started = True

    def hangup(self, call: Call, reason: str) -> None:
        self.hangups.append(reason)
        call.mark_ended("local", reason)


@pytest.fixture
def control() -> InstantControl:
    return InstantControl()


@pytest.fixture
async def call(control: InstantControl) -> Call:
    return Call(control, direction="inbound", source="a", destination="b", sip_handle="h")


@pytest.fixture(autouse=True)
def call_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="callstream.calls")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f" {event} " in r.getMessage() + " "]


def ran(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ids of the actions performed, in order (first 8 characters)."""
    found = [re.search(r" id=(\S+)", line) for line in lines(caplog, "action")]
    return [match.group(1)[:8] for match in found if match]


def sleep(action_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": action_id, "type": "sleep", "option": {"duration": 0}, **extra}


async def test_goto_jumps_loop_count_times_then_falls_through(
    call: Call, control: InstantControl, call_log: pytest.LogCaptureFixture
) -> None:
    actions = parse_actions(
        [
            sleep(A),
            {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 2}},
            sleep(C),
        ]
    )
    await run_flow(call, actions)
    assert ran(call_log) == [A[:8], B[:8], A[:8], B[:8], A[:8], B[:8], C[:8]]
    assert control.hangups == ["normal"]
    assert call.current_action is None


async def test_goto_loop_count_zero_never_jumps(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    actions = parse_actions(
        [sleep(A), {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 0}}]
    )
    await run_flow(call, actions)
    assert ran(call_log) == [A[:8], B[:8]]


async def test_each_goto_counts_its_own_jumps(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    actions = parse_actions(
        [
            sleep(A),
            {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 1}},
            {"id": C, "type": "goto", "option": {"target_id": A, "loop_count": 1}},
            sleep(D),
        ]
    )
    await run_flow(call, actions)
    # C's jump re-runs B, whose single jump is already spent.
    assert ran(call_log) == [
        A[:8], B[:8], A[:8], B[:8], C[:8], A[:8], B[:8], C[:8], D[:8],
    ]  # fmt: skip


async def test_next_id_overrides_list_order(call: Call, call_log: pytest.LogCaptureFixture) -> None:
    actions = parse_actions([sleep(A, next_id=C), sleep(B), sleep(C)])
    await run_flow(call, actions)
    assert ran(call_log) == [A[:8], C[:8]]


async def test_action_cap_ends_a_runaway_loop(
    call: Call,
    control: InstantControl,
    call_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "MAX_ACTIONS_PER_CALL", 50)
    actions = parse_actions(
        [
            sleep(A),
            {"id": B, "type": "goto", "option": {"target_id": A, "loop_count": 2**31 - 1}},
            sleep(C),
        ]
    )
    await run_flow(call, actions)
    assert len(ran(call_log)) == 50
    assert C[:8] not in ran(call_log)
    assert lines(call_log, "error") == [
        f"call {call.id} error message=" + '"flow ended: more than 50 actions ran"'
    ]
    assert control.hangups == ["normal"]


def test_default_action_cap_is_1000() -> None:
    assert runner_module.MAX_ACTIONS_PER_CALL == 1000


async def test_stop_ends_the_flow_and_hangs_up(
    call: Call, control: InstantControl, call_log: pytest.LogCaptureFixture
) -> None:
    actions = parse_actions([sleep(A), {"id": B, "type": "stop"}, sleep(C)])
    await run_flow(call, actions)
    assert ran(call_log) == [A[:8], B[:8]]
    assert control.hangups == ["normal"]
    assert call.hangup_by == "local"


def branch_flow(**option: Any) -> list[dict[str, Any]]:
    return [
        {"id": A, "type": "branch", "option": option},
        sleep(B, next_id=D),
        sleep(C, next_id=D),
        sleep(D),
    ]


@pytest.mark.parametrize(
    ("variables", "option", "expected"),
    [
        ({"voipbin.call.digits": "1"}, {"target_ids": {"1": C}}, [A, C, D]),
        ({"voipbin.call.digits": "2"}, {"target_ids": {"1": C}, "default_target_id": C}, [A, C, D]),
        ({"voipbin.call.digits": "2"}, {"target_ids": {"1": C}}, [A, B, D]),
        ({}, {"target_ids": {"": C}}, [A, C, D]),  # an unset variable reads as ""
        (
            {"lang": "fr", "voipbin.call.digits": "1"},
            {"variable": "lang", "target_ids": {"fr": C}},
            [A, C, D],
        ),
    ],
)
async def test_branch_on_a_variable(
    call: Call,
    call_log: pytest.LogCaptureFixture,
    variables: dict[str, str],
    option: dict[str, Any],
    expected: list[str],
) -> None:
    call.variables.update(variables)
    await run_flow(call, parse_actions(branch_flow(**option)))
    assert ran(call_log) == [action_id[:8] for action_id in expected]


async def test_current_action_names_the_running_action(call: Call) -> None:
    actions = parse_actions([sleep(A), {"id": B, "type": "sleep", "option": {"duration": 60000}}])
    task = asyncio.create_task(run_flow(call, actions))
    await asyncio.sleep(0.05)
    assert call.current_action == {"id": B, "type": "sleep"}
    call.mark_ended("remote", "bye")
    await asyncio.wait_for(task, 5)


async def test_a_failing_action_is_logged_and_the_flow_goes_on(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    actions = parse_actions(
        [{"id": A, "type": "play", "option": {"url": "/no/such/file.wav"}}, sleep(B)]
    )
    await run_flow(call, actions)
    assert ran(call_log) == [A[:8], B[:8]]
    errors = lines(call_log, "error")
    assert len(errors) == 1
    assert "action=play index=0" in errors[0]
    assert "cannot read WAV file /no/such/file.wav" in errors[0]


async def test_hangup_action_ends_without_a_second_hangup(
    call: Call, control: InstantControl, call_log: pytest.LogCaptureFixture
) -> None:
    await run_flow(call, parse_actions([{"id": A, "type": "hangup"}, sleep(B)]))
    assert ran(call_log) == [A[:8]]
    assert control.hangups == ["normal"]


# -- digits_receive ---------------------------------------------------------------------------


def digits(**option: Any) -> list[Any]:
    return parse_actions([{"id": A, "type": "digits_receive", "option": option}])


async def test_digits_pressed_before_the_action_count(call: Call) -> None:
    for digit in "12":
        call.on_dtmf(digit, "rtp")
    await run_flow(call, digits(duration=1000, length=2))
    assert call.variables["voipbin.call.digits"] == "12"
    assert call.digits == []


async def test_digits_past_length_stay_buffered(call: Call) -> None:
    for digit in "1234":
        call.on_dtmf(digit, "rtp")
    await run_flow(call, digits(duration=1000, length=3))
    assert call.variables["voipbin.call.digits"] == "123"
    assert call.digits == ["4"]


async def test_terminator_ends_collection_and_is_not_stored(call: Call) -> None:
    task = asyncio.create_task(run_flow(call, digits(duration=60000, length=10, key="#*")))
    await asyncio.sleep(0.01)
    for digit in "42*9":
        call.on_dtmf(digit, "rtp")
        await asyncio.sleep(0)
    await asyncio.wait_for(task, 5)  # far less than the 60 s duration: woken by the digits
    assert call.variables["voipbin.call.digits"] == "42"
    assert call.digits == ["9"]  # pressed after the terminator: kept for the next collection


async def test_digits_arriving_while_waiting_complete_the_length(call: Call) -> None:
    call.on_dtmf("7", "rtp")
    task = asyncio.create_task(run_flow(call, digits(duration=60000, length=3)))
    await asyncio.sleep(0.01)
    assert not task.done()
    call.on_dtmf("8", "info")
    await asyncio.sleep(0.01)
    assert not task.done()
    call.on_dtmf("9", "rtp")
    await asyncio.wait_for(task, 5)
    assert call.variables["voipbin.call.digits"] == "789"


async def test_timeout_stores_what_was_collected_even_nothing(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    await run_flow(call, digits(duration=30, length=4))
    assert call.variables["voipbin.call.digits"] == ""
    assert lines(call_log, "digits") == [
        f'call {call.id} digits variable=voipbin.call.digits value=""'
    ]


async def test_call_ending_during_collection_ends_the_flow(
    call: Call, control: InstantControl
) -> None:
    task = asyncio.create_task(run_flow(call, digits(duration=60000)))
    await asyncio.sleep(0.01)
    call.mark_ended("remote", "bye")
    await asyncio.wait_for(task, 5)
    assert "voipbin.call.digits" not in call.variables
    assert control.hangups == []


async def test_the_digit_buffer_is_bounded(call: Call) -> None:
    for _ in range(300):
        call.on_dtmf("5", "rtp")
    call.on_dtmf("6", "rtp")
    assert len(call.digits) == 256 and call.digits[-1] == "6"


# -- connect / conference_join ------------------------------------------------------------------


class RecordingContext:
    def __init__(self, conferences: set[str]) -> None:
        self.conferences = conferences
        self.connects: list[dict[str, Any]] = []
        self.joins: list[str] = []
        self.media: list[str] = []
        self.waited_for_media = 0
        self.media_done = asyncio.Event()
        self.media_done.set()

    async def connect(
        self,
        call: Call,
        *,
        source: dict[str, str] | None,
        destinations: list[dict[str, str]],
        early_media: bool,
        relay_reason: bool,
    ) -> None:
        self.connects.append(
            {
                "call": call.id,
                "source": source,
                "destinations": destinations,
                "early_media": early_media,
                "relay_reason": relay_reason,
            }
        )

    async def join_conference(self, call: Call, conference_id: str) -> None:
        if conference_id not in self.conferences:
            raise NotFoundError(f"no conference {conference_id}")
        self.joins.append(conference_id)

    async def external_media_start(
        self, call: Call, *, url: str, encapsulation: str, format: str | None
    ) -> str:
        self.media.append(url)
        return "media-1"

    async def external_media_stop(self, call: Call, media_id: str | None) -> None:
        self.media.clear()

    async def media_finished(self, call: Call) -> None:
        self.waited_for_media += 1
        await self.media_done.wait()


CONNECT = {
    "id": A,
    "type": "connect",
    "option": {
        "source": {"type": "tel", "target": "+15550001111"},
        "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1:5070"}],
        "early_media": True,
    },
}
JOIN = {"id": B, "type": "conference_join", "option": {"conference_id": CONFERENCE}}


async def test_connect_and_join_go_through_the_context(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    context = RecordingContext({CONFERENCE})
    await run_flow(call, parse_actions([CONNECT, JOIN, sleep(C)]), context)
    assert context.connects == [
        {
            "call": call.id,
            "source": {"type": "tel", "target": "+15550001111"},
            "destinations": [{"type": "sip", "target": "sip:bob@127.0.0.1:5070"}],
            "early_media": True,
            "relay_reason": False,
        }
    ]
    assert context.joins == [CONFERENCE]
    assert ran(call_log) == [A[:8], B[:8], C[:8]]
    assert lines(call_log, "error") == []


async def test_unknown_conference_is_the_actions_error(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    await run_flow(call, parse_actions([JOIN, sleep(C)]), RecordingContext(set()))
    assert ran(call_log) == [B[:8], C[:8]]
    assert lines(call_log, "error") == [
        f'call {call.id} error action=conference_join index=0 message="no conference {CONFERENCE}"'
    ]


async def test_without_a_context_connect_and_join_are_not_available(
    call: Call, call_log: pytest.LogCaptureFixture
) -> None:
    await run_flow(call, parse_actions([CONNECT, JOIN, sleep(C)]))
    assert ran(call_log) == [A[:8], B[:8], C[:8]]
    assert lines(call_log, "error") == [
        f'call {call.id} error action={kind} index={index} message="{kind} is not '
        'available: this gateway has no call service"'
        for index, kind in enumerate(["connect", "conference_join"])
    ]


async def test_call_ended_during_connect_ends_the_flow(
    call: Call, control: InstantControl, call_log: pytest.LogCaptureFixture
) -> None:
    class EndingContext(RecordingContext):
        async def connect(self, call: Call, **_: Any) -> None:
            call.mark_ended("remote", "bye")
            raise CallEnded("bye")

    await run_flow(call, parse_actions([CONNECT, sleep(C)]), EndingContext(set()))
    assert ran(call_log) == [A[:8]]
    assert control.hangups == []


# -- talk without espeak-ng ----------------------------------------------------------------------


async def test_talk_without_espeak_is_an_error_and_the_flow_goes_on(
    call: Call, call_log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tts, "ESPEAK", "espeak-ng-is-not-here")
    actions = parse_actions([{"id": A, "type": "talk", "option": {"text": "Hi"}}, sleep(B)])
    await run_flow(call, actions)
    assert ran(call_log) == [A[:8], B[:8]]
    assert lines(call_log, "error") == [
        f'call {call.id} error action=talk index=0 message="cannot synthesise speech: '
        'espeak-ng-is-not-here is not installed"'
    ]


async def test_a_flow_ending_with_live_external_media_keeps_the_call_up(
    call: Call, control: Any
) -> None:
    """Seed 001's curl example: [answer, external_media_start] must not hang up at once."""
    context = RecordingContext(set())
    context.media_done.clear()
    start = {
        "type": "external_media_start",
        "option": {"url": "ws://127.0.0.1:9/x", "encapsulation": "audiosocket"},
    }
    flow = asyncio.ensure_future(run_flow(call, parse_actions([start]), context))
    for _ in range(20):
        await asyncio.sleep(0)
    assert context.media == ["ws://127.0.0.1:9/x"] and context.waited_for_media == 1
    assert control.hangups == [] and not flow.done()
    context.media_done.set()
    await flow
    assert len(control.hangups) == 1
