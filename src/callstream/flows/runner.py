"""The flow runner: performs a call's actions, following their ids, then hangs up.

It is the only place that decides what a call does next (ARCHITECTURE invariant). A
cursor walks the list: after an action comes its ``next_id`` if set, else the following
action; ``goto`` and ``branch`` jump; ``stop`` or the end of the list ends the flow and
the call is hung up (VoipBin "Flow > Action"). At most MAX_ACTIONS_PER_CALL actions run
per call, so a goto loop cannot spin for ever.

Each action type maps to one coroutine in ``PERFORMERS``; later issues register more. A
performer returns the id to jump to, or None for the usual successor. An action that
fails for a reason of its own (a WAV that cannot be read, no such conference) is logged
as an ``error`` on the call and the flow goes on, as VoipBin does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callstream.calls.call import Call, CallEnded
from callstream.errors import CallstreamError, ConfigError, MediaError
from callstream.flows import tts
from callstream.flows.actions import (
    DIGITS_VARIABLE,
    Action,
    Answer,
    Branch,
    ConferenceJoin,
    Connect,
    DigitsReceive,
    Echo,
    ExternalMediaStart,
    ExternalMediaStop,
    Goto,
    Hangup,
    Play,
    Sleep,
    Stop,
    StreamStart,
    StreamStop,
    Talk,
    Tone,
)
from callstream.flows.context import FlowContext
from callstream.media.sources import FrameQueue, PcmPlayer, ToneSource

if TYPE_CHECKING:
    from callstream.calls.leg import Leg

logger = logging.getLogger("callstream.flows")

HTTP_MEDIA_TIMEOUT_S = 10.0
MAX_MEDIA_BYTES = 50 * 1024 * 1024
MAX_ACTIONS_PER_CALL = 1000


class FlowStopped(Exception):
    """Raised by the ``stop`` action: the flow ends here (and the call is hung up)."""


class FlowRun:
    """One call's pass through its actions: the cursor's state and what performers need."""

    def __init__(
        self, call: Call, actions: Sequence[Action], context: FlowContext | None = None
    ) -> None:
        self.call = call
        self.actions = actions
        self.context = context
        self.positions = {action.id: position for position, action in enumerate(actions)}
        self.goto_jumps: dict[str, int] = {}
        """Jumps taken so far by each goto action (by its id), for ``loop_count``."""
        self.executed = 0

    def successor(self, position: int, jump_id: str | None) -> int:
        """Where the cursor goes after ``actions[position]`` (len(actions) = the end)."""
        target = jump_id or self.actions[position].next_id
        if target is None:
            return position + 1
        # parse_actions guarantees every reference resolves.
        return self.positions[target]

    async def perform(self, position: int) -> str | None:
        """Run one action; returns the id to jump to, or None. Raises CallEnded, FlowStopped."""
        action = self.actions[position]
        call = self.call
        call.current_action = {"id": action.id, "type": action.type}
        call.log("action", type=action.type, index=position, id=action.id)
        try:
            return await PERFORMERS[type(action)](self, action)
        except (CallstreamError, OSError) as exc:
            call.log("error", action=action.type, index=position, message=str(exc))
            return None


async def run_flow(
    call: Call, actions: Sequence[Action], context: FlowContext | None = None
) -> None:
    """Run ``actions`` on ``call``; hang up when the flow ends (unless already over).

    ``context`` performs ``connect``, ``conference_join`` and external media; without
    one they are logged as errors ("not available") and the flow goes on. When the
    actions run out while media the flow started is still live (seed 001's curl example
    ends with ``external_media_start``), the call stays up until that media ends.
    """
    run = FlowRun(call, actions, context)
    position = 0
    try:
        while position < len(actions) and not call.is_over:
            if run.executed >= MAX_ACTIONS_PER_CALL:
                call.log(
                    "error",
                    message=f"flow ended: more than {MAX_ACTIONS_PER_CALL} actions ran",
                )
                break
            run.executed += 1
            try:
                jump_id = await run.perform(position)
            except FlowStopped:
                break
            position = run.successor(position, jump_id)
        call.current_action = None
        if context is not None and not call.is_over:
            await call.until_ended(context.media_finished(call))
        await call.hangup("normal")
    except CallEnded:
        return


Performer = Callable[[FlowRun, Any], Awaitable[str | None]]


def _leg(call: Call) -> Leg:
    if call.leg is None:
        raise CallEnded("no media")
    return call.leg


async def perform_answer(run: FlowRun, action: Answer) -> None:
    await run.call.answer()


ECHO_CUSHION_FRAMES = 3
"""The echo waits for 60 ms of the caller's audio before it plays it back (and again after
the caller's audio stopped), so a caller whose packets come up to 40 ms late hears no
holes: the echo is for judging a line, and a hole we made would be blamed on it."""
ECHO_MAX_FRAMES = 10
"""At most 200 ms waits: a caller sending faster than our clock loses its oldest frames."""


async def perform_echo(run: FlowRun, action: Echo) -> None:
    call = run.call
    await call.start_media()
    leg = _leg(call)
    queue = FrameQueue(max_frames=ECHO_MAX_FRAMES, prime_frames=ECHO_CUSHION_FRAMES)
    leg.add_tap(queue.push)
    leg.play(queue)
    try:
        if action.duration_ms is None:
            await call.until_ended(asyncio.Future())
        else:
            await call.until_ended(asyncio.sleep(action.duration_ms / 1000))
    finally:
        leg.remove_tap(queue.push)
        leg.stop(queue)


async def play_pcm(call: Call, pcm: bytes) -> None:
    """Say canonical PCM to the caller (early media before answer); return when played."""
    await call.start_media()
    await call.until_ended(_leg(call).play(PcmPlayer(pcm)))


async def perform_play(run: FlowRun, action: Play) -> None:
    for url in action.urls:
        pcm = await run.call.until_ended(load_audio(url))
        await play_pcm(run.call, pcm)


async def perform_tone(run: FlowRun, action: Tone) -> None:
    await run.call.start_media()
    source = ToneSource(action.frequency_hz, action.duration_ms)
    await run.call.until_ended(_leg(run.call).play(source))


async def perform_sleep(run: FlowRun, action: Sleep) -> None:
    await run.call.until_ended(asyncio.sleep(action.duration_ms / 1000))


async def perform_hangup(run: FlowRun, action: Hangup) -> None:
    await run.call.hangup("normal")
    raise CallEnded("hangup action")


async def perform_talk(run: FlowRun, action: Talk) -> None:
    speech = tts.synthesize(action.text, language=action.language, gender=action.gender)
    pcm = await run.call.until_ended(speech)
    await play_pcm(run.call, pcm)


async def perform_digits_receive(run: FlowRun, action: DigitsReceive) -> None:
    digits = await run.call.collect_digits(
        max_digits=action.length, timeout_s=action.duration_ms / 1000, terminators=action.key
    )
    run.call.variables[DIGITS_VARIABLE] = digits
    run.call.log("digits", variable=DIGITS_VARIABLE, value=digits)


async def perform_goto(run: FlowRun, action: Goto) -> str | None:
    jumps = run.goto_jumps.get(action.id, 0)
    if jumps >= action.loop_count:
        return None
    run.goto_jumps[action.id] = jumps + 1
    return action.target_id


async def perform_branch(run: FlowRun, action: Branch) -> str | None:
    value = run.call.variables.get(action.variable, "")
    return action.target_ids.get(value, action.default_target_id)


async def perform_stop(run: FlowRun, action: Stop) -> None:
    raise FlowStopped


def _context(run: FlowRun, action: Action) -> FlowContext:
    if run.context is None:
        raise ConfigError(f"{action.type} is not available: this gateway has no call service")
    return run.context


async def perform_connect(run: FlowRun, action: Connect) -> None:
    await _context(run, action).connect(
        run.call,
        source=None if action.source is None else action.source.as_dict(),
        destinations=[destination.as_dict() for destination in action.destinations],
        early_media=action.early_media,
        relay_reason=action.relay_reason,
    )


async def perform_conference_join(run: FlowRun, action: ConferenceJoin) -> None:
    await _context(run, action).join_conference(run.call, action.conference_id)


async def perform_external_media_start(run: FlowRun, action: ExternalMediaStart) -> None:
    """Starts dialling and goes on at once; a failure is recorded on the call and stream."""
    await _context(run, action).external_media_start(
        run.call, url=action.url, encapsulation=action.encapsulation, format=action.format
    )


async def perform_stream_start(run: FlowRun, action: StreamStart) -> None:
    await _context(run, action).stream_start(
        run.call, protocol=action.protocol, option=action.option
    )


async def perform_stream_stop(run: FlowRun, action: StreamStop) -> None:
    await _context(run, action).stream_stop(
        run.call, protocol=action.protocol, option=action.option
    )


async def perform_external_media_stop(run: FlowRun, action: ExternalMediaStop) -> None:
    await _context(run, action).external_media_stop(run.call, action.media_id)


PERFORMERS: dict[type[Action], Performer] = {
    Answer: perform_answer,
    Echo: perform_echo,
    Play: perform_play,
    Tone: perform_tone,
    Sleep: perform_sleep,
    Hangup: perform_hangup,
    Talk: perform_talk,
    DigitsReceive: perform_digits_receive,
    Goto: perform_goto,
    Branch: perform_branch,
    Stop: perform_stop,
    Connect: perform_connect,
    ExternalMediaStart: perform_external_media_start,
    ExternalMediaStop: perform_external_media_stop,
    StreamStart: perform_stream_start,
    StreamStop: perform_stream_stop,
    ConferenceJoin: perform_conference_join,
}


async def load_audio(url: str) -> bytes:
    """Fetch a WAV (path, file:// or http(s)://) as canonical PCM, off the event loop."""
    from callstream.codecs.wav import decode_wav_bytes, read_wav

    if url.startswith(("http://", "https://")):
        data = await _fetch(url)
        return await asyncio.to_thread(decode_wav_bytes, data)
    return await asyncio.to_thread(read_wav, Path(url.removeprefix("file://")))


async def _fetch(url: str) -> bytes:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=HTTP_MEDIA_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as response:
                if response.status != 200:
                    raise MediaError(f"cannot fetch {url}: HTTP {response.status}")
                data = await response.content.read(MAX_MEDIA_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MediaError(f"cannot fetch {url}: {exc or type(exc).__name__}") from exc
    if len(data) > MAX_MEDIA_BYTES:
        raise MediaError(f"cannot fetch {url}: larger than {MAX_MEDIA_BYTES} bytes")
    return data
