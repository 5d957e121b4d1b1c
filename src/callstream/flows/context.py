"""What a flow needs from the rest of the gateway to connect calls and join conferences.

The runner decides *that* a call connects or joins; the call service (issue 3) knows
*how* (placing the outbound legs, the conference mixers, the records). It hands the
runner an object of this shape; the plain gateway of issue 2 has none, and then
``connect`` and ``conference_join`` are logged as not available and the flow goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from callstream.calls.call import Call


class FlowContext(Protocol):
    """The call service's side of the ``connect`` and ``conference_join`` actions."""

    async def connect(
        self,
        call: Call,
        *,
        source: dict[str, str] | None,
        destinations: list[dict[str, str]],
        early_media: bool,
        relay_reason: bool,
    ) -> None:
        """Call ``destinations`` ({"type": "sip"|"tel", "target": ...}) and bridge the first
        that answers to ``call`` (VoipBin "connect" action).

        Returns when the bridge is over or no destination answered; raises nothing but
        CallEnded (``call`` itself ended).
        """
        ...

    async def join_conference(self, call: Call, conference_id: str) -> None:
        """Put ``call`` in the conference; return when the call has left it.

        Raises NotFoundError if the conference does not exist for the call's account
        (the runner logs it as the action's error and goes on), CallEnded if the call ends.
        """
        ...

    async def external_media_start(
        self, call: Call, *, url: str, encapsulation: str, format: str | None
    ) -> str:
        """Start dialling ``url`` for the call's audio; returns the media stream's id at once.

        A connection that fails is recorded on the call and the stream, never raised.
        """
        ...

    async def external_media_stop(self, call: Call, media_id: str | None) -> None:
        """Stop the call's external media (``media_id`` only, or all of it)."""
        ...

    async def media_finished(self, call: Call) -> None:
        """Return once no media the flow started is live on the call (external media);
        at once when there is none. The runner waits on it before hanging up."""
        ...

    async def stream_start(self, call: Call, *, protocol: str, option: Mapping[str, Any]) -> None:
        """Dial a Voxology or Plivo stream; returns at once, or (Plivo keepCallAlive)
        when the stream ends."""
        ...

    async def stream_stop(self, call: Call, *, protocol: str, option: Mapping[str, Any]) -> None:
        """Stop the call's streams of that protocol (only ``option.url``'s, if given)."""
        ...
