"""A Call: one conversation the gateway takes part in, its state and its log lines.

The Call holds what the flow runner and (later) the API need: its id, direction,
parties, status, the leg carrying its audio, and futures to wait on (answered, ended).
SIP work is delegated to a ``CallControl`` (the engine), so flows never touch the
SIP agent directly.

Every state change is logged as one line with a fixed grammar,
``call <call-id> <event> key=value ...``, so an operator (and the interop tests) can
follow a call through the log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from callstream.calls.leg import Leg

logger = logging.getLogger("callstream.calls")

T = TypeVar("T")

MAX_BUFFERED_DIGITS = 256


class CallStatus(StrEnum):
    """VoipBin's call statuses (seed 001 / issue 3)."""

    DIALING = "dialing"
    RINGING = "ringing"
    PROGRESSING = "progressing"
    TERMINATING = "terminating"
    HANGUP = "hangup"


class CallControl(Protocol):
    """What a Call asks of the engine that owns its SIP dialog."""

    def answer(self, call: Call) -> None: ...
    def early_media(self, call: Call) -> None: ...
    def hangup(self, call: Call, reason: str) -> None: ...


def log_call_event(call_id: str, event: str, **fields: object) -> None:
    """Write one call-event line: ``call <id> <event> k=v ...`` (values with spaces quoted)."""
    parts = [f"call {call_id} {event}"]
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or any(ch.isspace() or ch == '"' for ch in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    logger.info(" ".join(parts))


class CallEnded(Exception):
    """Raised inside a flow action when the call ends while the action waits."""


class Call:
    """One call and its audio leg."""

    def __init__(
        self,
        control: CallControl,
        *,
        direction: str,
        source: str,
        destination: str,
        sip_handle: str,
        sip_call_id: str = "",
    ) -> None:
        loop = asyncio.get_running_loop()
        self.id = str(uuid.uuid4())
        self._control = control
        self.direction = direction
        self.source = source
        self.destination = destination
        self.sip_handle = sip_handle
        self.sip_call_id = sip_call_id
        self.status = CallStatus.DIALING if direction == "outbound" else CallStatus.RINGING
        self.leg: Leg | None = None
        self.codec: str | None = None
        self.current_action: dict[str, str] | None = None
        """The action the flow runs now: ``{"id": ..., "type": ...}``."""
        self.hangup_by: str | None = None
        self.hangup_reason: str | None = None
        self.early_media_started = False
        self.remote_addr: tuple[str, int] | None = None
        """Where an inbound INVITE came from (trunk source-address checks)."""
        self.failure: tuple[int, str] | None = None
        """The SIP status and reason of a failed outbound call."""
        self.digits: list[str] = []
        """DTMF received and not yet collected by a flow (``collect_digits`` consumes it)."""
        self._digit_arrived: asyncio.Future[None] | None = None
        self.variables: dict[str, str] = {}
        """Flow variables, VoipBin-named (``voipbin.call.digits``)."""
        self.on_event: Callable[[Call, str, dict[str, object]], None] | None = None
        """Called after every logged event (the call service persists state changes)."""
        self.answered: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[str] = loop.create_future()

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.direction} {self.status}>"

    @property
    def is_answered(self) -> bool:
        return self.answered.done() and self.answered.exception() is None

    @property
    def is_over(self) -> bool:
        return self.status in (CallStatus.TERMINATING, CallStatus.HANGUP)

    def log(self, event: str, **fields: object) -> None:
        """Log one call event; the observer (the call service) records state changes."""
        log_call_event(self.id, event, **fields)
        if self.on_event is not None:
            self.on_event(self, event, fields)

    # -- operations (flows call these) ------------------------------------------------------
    async def answer(self) -> None:
        if self.is_over:
            raise CallEnded(self.hangup_reason or "ended")
        if not self.answered.done():
            self._control.answer(self)

    async def start_media(self) -> None:
        """Make sure audio flows to the peer: early media before answer, else nothing."""
        if self.is_over:
            raise CallEnded(self.hangup_reason or "ended")
        if not self.answered.done() and not self.early_media_started:
            self._control.early_media(self)

    async def hangup(self, reason: str = "normal") -> None:
        if not self.is_over:
            self._control.hangup(self, reason)

    async def until_ended(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the call ends first; then raise CallEnded."""
        task = asyncio.ensure_future(awaitable)
        waits: set[asyncio.Future[Any]] = {task, self.ended}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        raise CallEnded(self.hangup_reason or "ended")

    async def collect_digits(self, *, max_digits: int, timeout_s: float, terminators: str) -> str:
        """Take DTMF digits, those already buffered first, until ``max_digits`` are taken,
        a terminator is pressed (consumed, not returned) or ``timeout_s`` passes.

        Digits past the stopping point stay buffered for the next collection, as VoipBin
        keeps digits pressed ahead. Raises CallEnded if the call ends meanwhile.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        taken: list[str] = []
        while True:
            while self.digits:
                digit = self.digits.pop(0)
                if digit in terminators:
                    return "".join(taken)
                taken.append(digit)
                if len(taken) >= max_digits:
                    return "".join(taken)
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return "".join(taken)
            arrived = self._digit_arrived = loop.create_future()
            try:
                await asyncio.wait(
                    (arrived, self.ended), timeout=remaining_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                self._digit_arrived = None
            if self.ended.done():
                raise CallEnded(self.hangup_reason or "ended")

    # -- notifications (the engine calls these) -----------------------------------------------
    def on_dtmf(self, digit: str, via: str, duration_ms: int | None = None) -> None:
        self.digits.append(digit)
        if len(self.digits) > MAX_BUFFERED_DIGITS:
            del self.digits[0]  # nobody collects (e.g. during echo): keep the latest only
        if self._digit_arrived is not None and not self._digit_arrived.done():
            self._digit_arrived.set_result(None)
        self.log("dtmf", digit=digit, via=via, duration_ms=duration_ms)

    def mark_answered(self) -> None:
        self.status = CallStatus.PROGRESSING
        if not self.answered.done():
            self.answered.set_result(None)

    def mark_ended(self, by: str, reason: str) -> None:
        if self.status == CallStatus.HANGUP:
            return
        self.status = CallStatus.HANGUP
        self.hangup_by = by
        self.hangup_reason = reason
        if not self.answered.done():
            self.answered.set_exception(CallEnded(reason))
            self.answered.exception()  # mark retrieved: nobody may be waiting
        if not self.ended.done():
            self.ended.set_result(reason)
        self.log("ended", by=by, reason=reason)
