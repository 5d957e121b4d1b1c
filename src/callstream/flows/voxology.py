"""Voxology's call-flow dialect (seed 003, "Add STREAM Action To A Call Flow").

A Voxology script is ``{"actions": [{"type": "STREAM", "params": {...}}, ...]}`` (or the
bare list), its types in upper case. ``translate`` turns it into our action dicts
(VoipBin's form, ``flows.actions``), which ``parse_actions`` then validates. Every rule
is checked here first, so a bad script is refused with the Voxology action's index
(0-based, as in a JSON path) and field: ``actions[2] (PAUSE): params.seconds must be a
number``. Unknown params are refused too, so a misspelt one is not silently ignored.

The translations::

    STREAM   {url, action start|stop, tracks, stream_data, name}
             start -> stream_start {protocol "voxology", url, tracks, stream_data, name}
             stop  -> stream_stop  {protocol "voxology", url, [stream_data]}
    SAY      {text, voice?, language?}      -> talk {text, gender, language}
    PAUSE    {seconds}                      -> sleep {duration: seconds in ms}
    TRANSFER {destination}                  -> connect {destinations: [sip | tel endpoint]}
    ANSWER                                  -> answer
    HANGUP                                  -> hangup

Decisions the seed leaves open:

- STREAM start: ``tracks`` defaults to both ``caller`` and ``transfer``; ``stream_data``
  to null; ``name`` to "stream<n>", n counting the script's STREAM starts from 1 (the
  seed's messages name the stream of its one-STREAM script "stream1").
- STREAM stop: ``url`` is optional (null stops every Voxology stream of the call);
  ``stream_data`` is passed on only when given (even as null), since only then does it
  replace the init's in end_stream; ``tracks`` is checked and then unused.
- SAY: ``voice`` "man"/"male", "woman"/"female" or "neutral" picks our voice's gender;
  any other voice name is accepted (scripts name their provider's voices) and speaks
  with the default, female. ``language`` defaults to "en-US".
- TRANSFER is ours (callstream's extension, not in the seed): a ``sip:``/``sips:``
  URI or an E.164 number, called and bridged as ``connect`` does; its leg is the
  ``transfer`` track.
- Answering: a Voxology call is answered by its script. When a media action (STREAM,
  SAY, PAUSE, TRANSFER) would run before any ANSWER, ``answer`` is put first, so SAY
  is not early media and a stream carries the answered call. A script that starts
  with ANSWER or HANGUP is left as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from callstream.endpoints import E164, E164_RULE
from callstream.errors import ConfigError, SipParseError
from callstream.flows.actions import MAX_DURATION_MS, MAX_TALK_CHARS
from callstream.sip.uri import SipUri

PROTOCOL: Final = "voxology"
STREAM_TRACKS: Final = ("caller", "transfer")
STREAM_ACTIONS: Final = ("start", "stop")
MEDIA_TYPES: Final = frozenset({"STREAM", "SAY", "PAUSE", "TRANSFER"})
MAX_PAUSE_SECONDS: Final = MAX_DURATION_MS // 1000
VOICE_GENDERS: Final[Mapping[str, str]] = {
    "man": "male",
    "male": "male",
    "woman": "female",
    "female": "female",
    "neutral": "neutral",
}
START_OPTIONS: Final = ("protocol", "url", "tracks", "stream_data", "name")
STOP_OPTIONS: Final = ("protocol", "url", "stream_data")

# The same rules as flows.actions: RFC 5646 §2.1 loosely (E.164: callstream.endpoints).
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")

Fail = Callable[[str, str], ConfigError]
"""Builds the error for one field: (field name, why) -> ConfigError."""


def _action_list(raw: object) -> Sequence[object] | None:
    if isinstance(raw, Mapping):
        raw = raw.get("actions")
    if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
        return raw
    return None


def is_voxology_flow(raw: object) -> bool:
    """Whether ``raw`` is a Voxology script: a non-empty action list (bare or under
    ``"actions"``) whose every item has an upper-case ``type`` (ours are lower case)."""
    actions = _action_list(raw)
    if not actions:
        return False
    return all(
        isinstance(item, Mapping) and isinstance(item.get("type"), str) and item["type"].isupper()
        for item in actions
    )


# Rules shared by the script's params and by stream_start/stream_stop options.


def _check_url(fail: Fail, value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.startswith(("ws://", "wss://")):
        raise fail("url", "is required and must be a ws:// or wss:// URL")
    return value


def _check_tracks(fail: Fail, value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise fail("tracks", f"must be a non-empty list of {', '.join(STREAM_TRACKS)}")
    for position, track in enumerate(value):
        if track not in STREAM_TRACKS:
            raise fail(f"tracks[{position}]", f"must be one of {', '.join(STREAM_TRACKS)}")
        if track in value[:position]:
            raise fail(f"tracks[{position}]", f"repeats {track!r}")
    return [str(track) for track in value]


def _check_json(fail: Fail, value: object) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise fail("stream_data", "must be JSON") from exc


def _check_name(fail: Fail, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail("name", "must be a non-empty string")
    return value


def check_stream_options(option: object, *, stop: bool = False) -> None:
    """Validate a ``stream_start`` option (``stream_stop``'s with ``stop=True``).

    start: ``protocol`` "voxology" and ``url`` (ws:// or wss://) required; ``tracks``
    (non-empty list of caller, transfer, no repeats), ``stream_data`` (JSON) and
    ``name`` (non-empty string) optional. stop: ``protocol``; ``url`` (null = every
    Voxology stream of the call) and ``stream_data`` optional. Unknown options are
    refused. Raises ConfigError("option.<field> <why>"): the caller adds the action's
    index and type in front.
    """

    def fail(name: str, why: str) -> ConfigError:
        return ConfigError(f"option.{name} {why}")

    if not isinstance(option, Mapping):
        raise ConfigError("option must be an object")
    known = STOP_OPTIONS if stop else START_OPTIONS
    for name in option:
        if name not in known:
            kind = "stream_stop" if stop else "stream_start"
            raise fail(str(name), f"is not a {kind} option (known: {', '.join(known)})")
    if option.get("protocol") != PROTOCOL:
        raise fail("protocol", f"must be {PROTOCOL}")
    _check_url(fail, option.get("url"), required=not stop)
    if "tracks" in option:
        _check_tracks(fail, option["tracks"])
    _check_json(fail, option.get("stream_data"))
    if "name" in option:
        _check_name(fail, option["name"])


@dataclass
class _Params:
    """One Voxology action's ``params``, with errors that name its index and field."""

    index: int
    type: str
    params: Mapping[str, Any]
    known: tuple[str, ...]
    stream_number: list[int] = field(default_factory=lambda: [0])
    """STREAM starts so far in the script (shared by every action's reader)."""

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"actions[{self.index}] ({self.type}): params.{name} {why}")

    def check_known(self) -> None:
        for name in self.params:
            if name not in self.known:
                known = ", ".join(self.known) or "none"
                raise self.fail(str(name), f"is not a {self.type} parameter (known: {known})")

    def text(self, name: str) -> str:
        value = self.params.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "is required and must be a non-empty string")
        return value


def _stream(p: _Params) -> dict[str, Any]:
    action = p.params.get("action", "start")
    if action not in STREAM_ACTIONS:
        raise p.fail("action", f"must be one of {', '.join(STREAM_ACTIONS)}")
    url = _check_url(p.fail, p.params.get("url"), required=action == "start")
    tracks = _check_tracks(p.fail, p.params.get("tracks", list(STREAM_TRACKS)))
    _check_json(p.fail, p.params.get("stream_data"))
    if action == "stop":
        option: dict[str, Any] = {"protocol": PROTOCOL, "url": url}
        if "stream_data" in p.params:
            option["stream_data"] = p.params["stream_data"]
        return {"type": "stream_stop", "option": option}
    p.stream_number[0] += 1
    name = p.params.get("name", f"stream{p.stream_number[0]}")
    option = {
        "protocol": PROTOCOL,
        "url": url,
        "tracks": tracks,
        "stream_data": p.params.get("stream_data"),
        "name": _check_name(p.fail, name),
    }
    return {"type": "stream_start", "option": option}


def _say(p: _Params) -> dict[str, Any]:
    text = p.text("text")
    if len(text) > MAX_TALK_CHARS:
        raise p.fail("text", f"must be at most {MAX_TALK_CHARS} characters")
    voice = p.params.get("voice", "female")
    if not isinstance(voice, str):
        raise p.fail("voice", "must be a string")
    language = p.params.get("language", "en-US")
    if not isinstance(language, str) or not _LANGUAGE_TAG.fullmatch(language):
        raise p.fail("language", 'must be a BCP-47 language tag such as "en-US"')
    gender = VOICE_GENDERS.get(voice.lower(), "female")
    return {"type": "talk", "option": {"text": text, "gender": gender, "language": language}}


def _pause(p: _Params) -> dict[str, Any]:
    seconds = p.params.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise p.fail("seconds", "must be a number")
    if not 0 <= seconds <= MAX_PAUSE_SECONDS:
        raise p.fail("seconds", f"must be between 0 and {MAX_PAUSE_SECONDS}")
    return {"type": "sleep", "option": {"duration": round(seconds * 1000)}}


def _transfer(p: _Params) -> dict[str, Any]:
    destination = p.params.get("destination")
    endpoint: dict[str, str] | None = None
    if isinstance(destination, str) and E164.fullmatch(destination):
        endpoint = {"type": "tel", "target": destination}
    elif isinstance(destination, str) and destination.startswith(("sip:", "sips:")):
        try:
            SipUri.parse(destination)
            endpoint = {"type": "sip", "target": destination}
        except SipParseError:
            pass
    if endpoint is None:
        raise p.fail("destination", f"must be a SIP URI or an E.164 number ({E164_RULE})")
    return {"type": "connect", "option": {"destinations": [endpoint]}}


def _answer(p: _Params) -> dict[str, Any]:
    return {"type": "answer"}


def _hangup(p: _Params) -> dict[str, Any]:
    return {"type": "hangup"}


_TRANSLATORS: Final[Mapping[str, tuple[tuple[str, ...], Callable[[_Params], dict[str, Any]]]]] = {
    "STREAM": (("url", "action", "tracks", "stream_data", "name"), _stream),
    "SAY": (("text", "voice", "language"), _say),
    "PAUSE": (("seconds",), _pause),
    "TRANSFER": (("destination",), _transfer),
    "ANSWER": ((), _answer),
    "HANGUP": ((), _hangup),
}
VOXOLOGY_TYPES: Final = tuple(sorted(_TRANSLATORS))


def _needs_answer(types: Sequence[str]) -> bool:
    for kind in types:
        if kind in ("ANSWER", "HANGUP"):
            return False
        if kind in MEDIA_TYPES:
            return True
    return False


def translate(raw: object) -> list[dict[str, Any]]:
    """Our action dicts for a Voxology script (see the module docs); raises ConfigError
    naming the Voxology action's index and field."""
    actions = _action_list(raw)
    if actions is None:
        raise ConfigError("actions must be a list")
    stream_number = [0]
    translated: list[dict[str, Any]] = []
    types: list[str] = []
    for index, item in enumerate(actions):
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise ConfigError(f"actions[{index}]: must be an object with a string 'type'")
        kind = item["type"]
        if kind not in _TRANSLATORS:
            known = ", ".join(VOXOLOGY_TYPES)
            raise ConfigError(f"actions[{index}]: unknown type {kind!r} (known: {known})")
        params = item.get("params", {})
        if not isinstance(params, Mapping):
            raise ConfigError(f"actions[{index}] ({kind}): params must be an object")
        known_params, translator = _TRANSLATORS[kind]
        reader = _Params(index, kind, params, known_params, stream_number)
        reader.check_known()
        translated.append(translator(reader))
        types.append(kind)
    if _needs_answer(types):
        translated.insert(0, {"type": "answer"})
    return translated
