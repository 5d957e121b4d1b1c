"""Call-flow actions: their options, validated when a route, flow or call is created.

An action is written as VoipBin writes it (seed 001, "Flow > Action")::

    {"id": "<uuid, optional>", "next_id": "<uuid, optional>", "type": "...", "option": {...}}

Validation happens up front, so a bad flow is refused with a message naming the
action's index and field — never discovered mid-call. Every action gets an ``id`` (the
given UUID, lower-cased, or a fresh one); ``next_id`` and the targets of ``goto`` and
``branch`` must name an action of the same list, and ids must be unique.

Later issues add action types by adding a spec class and registering its builder in
``ACTION_TYPES``; the runner looks the behaviour up by class.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from callstream.endpoints import E164, E164_RULE
from callstream.errors import ConfigError, SipParseError
from callstream.sip.uri import SipUri

MAX_DURATION_MS = 24 * 3600 * 1000
MAX_DIGITS_DURATION_MS = 5 * 60 * 1000
MAX_TALK_CHARS = 5000
MAX_DIGITS = 100
MAX_LOOP_COUNT = 2**31 - 1
DIGITS_VARIABLE = "voipbin.call.digits"
"""Where ``digits_receive`` leaves what it collected (VoipBin's variable name)."""

GENDERS = ("male", "female", "neutral")
DTMF_DIGITS = frozenset("0123456789*#ABCD")

# RFC 5646 §2.1, loosely: a 2-3 letter language, then subtags of 1-8 letters/digits.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
# Only the canonical 8-4-4-4-12 form: uuid.UUID() also takes braces, URNs and bare hex.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Action:
    """Base of every validated action: its type, id and optional explicit successor."""

    type: str
    id: str = field(default_factory=_new_id, kw_only=True, compare=False)
    """Not compared: equal actions do the same thing, whatever their (often generated) ids."""
    next_id: str | None = field(default=None, kw_only=True)
    """The action to run after this one; None = the following one in the list."""


@dataclass(frozen=True, slots=True)
class Answer(Action):
    pass


@dataclass(frozen=True, slots=True)
class Echo(Action):
    duration_ms: int | None = None
    """Stop echoing after this long; None = until the call ends."""


@dataclass(frozen=True, slots=True)
class Play(Action):
    urls: tuple[str, ...] = ()
    """WAV file paths, ``file://`` or ``http(s)://`` URLs, played in order."""


@dataclass(frozen=True, slots=True)
class Tone(Action):
    frequency_hz: float = 0.0
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class Sleep(Action):
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class Hangup(Action):
    pass


@dataclass(frozen=True, slots=True)
class Talk(Action):
    """Speak ``text`` (text to speech), then go on."""

    text: str = ""
    gender: str = "female"
    language: str = "en-US"


@dataclass(frozen=True, slots=True)
class DigitsReceive(Action):
    """Collect DTMF into ``voipbin.call.digits`` until ``length`` digits, a key or timeout."""

    duration_ms: int = 0
    length: int = 1
    key: str = ""
    """Terminator digits; the terminator ends collection and is not stored."""


@dataclass(frozen=True, slots=True)
class Goto(Action):
    """Jump to ``target_id`` ``loop_count`` times (per call), then fall through."""

    target_id: str = ""
    loop_count: int = 1


@dataclass(frozen=True, slots=True)
class Branch(Action):
    """Jump on the value of a call variable; no match and no default = the next action."""

    variable: str = DIGITS_VARIABLE
    target_ids: Mapping[str, str] = field(default_factory=dict)
    default_target_id: str | None = None


@dataclass(frozen=True, slots=True)
class Stop(Action):
    """End the flow; the runner then hangs up, as when the actions run out."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A party to call: ``type`` "sip" (a SIP URI) or "tel" (E.164)."""

    type: str
    target: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "target": self.target}


@dataclass(frozen=True, slots=True)
class Connect(Action):
    """Call ``destinations`` and bridge the first to answer (through the FlowContext)."""

    source: Endpoint | None = None
    destinations: tuple[Endpoint, ...] = ()
    early_media: bool = False
    relay_reason: bool = False


@dataclass(frozen=True, slots=True)
class ConferenceJoin(Action):
    conference_id: str = ""


@dataclass(frozen=True, slots=True)
class ExternalMediaStart(Action):
    """Dial ``url`` (ws:// or wss://) and stream the call's audio both ways (seed 001)."""

    url: str = ""
    encapsulation: str = "rtp"
    format: str | None = None


@dataclass(frozen=True, slots=True)
class ExternalMediaStop(Action):
    """Stop the call's external media (all of it, or ``media_id`` only)."""

    media_id: str | None = None


def _show(bound: float) -> str:
    """A bound as written ("86400000", not ":g"'s "8.64e+07")."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class _Fields:
    """Reads the ``option`` mapping of one action, reporting errors by position."""

    index: int
    type: str
    option: Mapping[str, Any] = field(default_factory=dict)

    def fail(self, name: str, why: str) -> ConfigError:
        return ConfigError(f"action {self.index} ({self.type}): option.{name} {why}")

    def number(self, name: str, *, low: float, high: float, required: bool = True) -> float | None:
        value = self.option.get(name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, not {type(value).__name__}")
        if not low <= value <= high:
            raise self.fail(name, f"must be between {_show(low)} and {_show(high)}")
        return float(value)

    def whole(self, name: str, *, low: int, high: int, default: int) -> int:
        value = self.number(name, low=low, high=high, required=False)
        if value is None:
            return default
        if not value.is_integer():
            raise self.fail(name, "must be a whole number")
        return int(value)

    def duration(self, name: str = "duration", *, required: bool = True) -> int | None:
        value = self.number(name, low=0, high=MAX_DURATION_MS, required=required)
        return None if value is None else int(value)

    def text(self, name: str) -> str:
        value = self.option.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "is required and must be a non-empty string")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.option.get(name, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}")
        return str(value)

    def flag(self, name: str) -> bool:
        value = self.option.get(name, False)
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def uuid(self, name: str, value: object) -> str:
        if not isinstance(value, str) or not _UUID.fullmatch(value):
            raise self.fail(name, "must be a UUID string")
        return value.lower()


def _answer(f: _Fields) -> Action:
    return Answer(f.type)


def _echo(f: _Fields) -> Action:
    return Echo(f.type, f.duration(required=False))


def _check_media_url(f: _Fields, name: str, url: str) -> None:
    if "://" in url and not url.startswith(("http://", "https://", "file://")):
        raise f.fail(name, "must be a file path or an http(s):// or file:// URL")


def _play(f: _Fields) -> Action:
    """``option.url`` (ours) and/or ``option.stream_urls`` (VoipBin's); url plays first."""
    if "url" not in f.option and "stream_urls" not in f.option:
        raise f.fail("url", "or option.stream_urls is required")
    urls: list[str] = []
    if "url" in f.option:
        urls.append(f.text("url"))
        _check_media_url(f, "url", urls[0])
    if "stream_urls" in f.option:
        stream_urls = f.option["stream_urls"]
        if not isinstance(stream_urls, list) or not stream_urls:
            raise f.fail("stream_urls", "must be a non-empty list of URLs")
        for position, url in enumerate(stream_urls):
            name = f"stream_urls[{position}]"
            if not isinstance(url, str) or not url.strip():
                raise f.fail(name, "must be a non-empty string")
            _check_media_url(f, name, url)
            urls.append(url)
    return Play(f.type, tuple(urls))


def _tone(f: _Fields) -> Action:
    frequency = f.number("frequency", low=1, high=3999)
    duration = f.duration()
    assert frequency is not None and duration is not None
    return Tone(f.type, frequency, duration)


def _sleep(f: _Fields) -> Action:
    duration = f.duration()
    assert duration is not None
    return Sleep(f.type, duration)


def _hangup(f: _Fields) -> Action:
    return Hangup(f.type)


def _talk(f: _Fields) -> Action:
    text = f.text("text")
    if len(text) > MAX_TALK_CHARS:
        raise f.fail("text", f"must be at most {MAX_TALK_CHARS} characters")
    gender = f.choice("gender", GENDERS, "female")
    language = f.option.get("language", "en-US")
    if not isinstance(language, str) or not _LANGUAGE_TAG.fullmatch(language):
        raise f.fail("language", 'must be a BCP-47 language tag such as "en-US"')
    return Talk(f.type, text, gender, language)


def _digits_receive(f: _Fields) -> Action:
    duration = f.number("duration", low=0, high=MAX_DIGITS_DURATION_MS)
    assert duration is not None
    length = f.whole("length", low=1, high=MAX_DIGITS, default=1)
    key = f.option.get("key", "")
    if not isinstance(key, str) or not set(key) <= DTMF_DIGITS:
        raise f.fail("key", "must be a string of DTMF digits (0-9, *, #, A-D)")
    return DigitsReceive(f.type, int(duration), length, key)


def _goto(f: _Fields) -> Action:
    target = f.uuid("target_id", f.option.get("target_id"))
    loop_count = f.whole("loop_count", low=0, high=MAX_LOOP_COUNT, default=1)
    return Goto(f.type, target, loop_count)


def _branch(f: _Fields) -> Action:
    variable = f.option.get("variable", DIGITS_VARIABLE)
    if not isinstance(variable, str) or not variable:
        raise f.fail("variable", "must be a non-empty string")
    raw_targets = f.option.get("target_ids")
    if not isinstance(raw_targets, Mapping):
        raise f.fail("target_ids", "is required and must be an object (value -> action id)")
    targets = {str(value): f.uuid(f"target_ids.{value}", id_) for value, id_ in raw_targets.items()}
    default = f.option.get("default_target_id")
    default_id = None if default is None else f.uuid("default_target_id", default)
    return Branch(f.type, variable, targets, default_id)


def _stop(f: _Fields) -> Action:
    return Stop(f.type)


def _endpoint(f: _Fields, name: str, raw: object) -> Endpoint:
    if not isinstance(raw, Mapping):
        raise f.fail(name, 'must be an object {"type": "sip"|"tel", "target": ...}')
    kind = raw.get("type")
    if kind not in ("sip", "tel"):
        raise f.fail(f"{name}.type", "must be one of sip, tel")
    target = raw.get("target")
    if not isinstance(target, str):
        raise f.fail(f"{name}.target", "must be a string")
    if kind == "tel" and not E164.fullmatch(target):
        raise f.fail(f"{name}.target", f"must be an E.164 number ({E164_RULE})")
    if kind == "sip":
        try:
            scheme = SipUri.parse(target).scheme
        except SipParseError:
            scheme = ""
        if scheme not in ("sip", "sips"):
            raise f.fail(f"{name}.target", "must be a SIP URI")
    return Endpoint(str(kind), target)


def _connect(f: _Fields) -> Action:
    raw_source = f.option.get("source")
    source = None if raw_source is None else _endpoint(f, "source", raw_source)
    raw_destinations = f.option.get("destinations")
    if not isinstance(raw_destinations, list) or not raw_destinations:
        raise f.fail("destinations", "is required and must be a non-empty list of endpoints")
    destinations = tuple(
        _endpoint(f, f"destinations[{position}]", raw)
        for position, raw in enumerate(raw_destinations)
    )
    return Connect(f.type, source, destinations, f.flag("early_media"), f.flag("relay_reason"))


def _conference_join(f: _Fields) -> Action:
    return ConferenceJoin(f.type, f.uuid("conference_id", f.option.get("conference_id")))


@dataclass(frozen=True, slots=True)
class StreamStart(Action):
    """Dial a provider-style stream with tracks (Voxology ``STREAM``, Plivo ``<Stream>``)."""

    protocol: str = ""
    option: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamStop(Action):
    protocol: str = ""
    option: Mapping[str, Any] = field(default_factory=dict)


def _stream_checker(protocol: str) -> Callable[..., None] | None:
    # imported here: the dialect modules build on this one
    if protocol == "voxology":
        from callstream.flows import voxology

        return voxology.check_stream_options
    if protocol == "plivo":
        from callstream.flows import plivo_xml

        return plivo_xml.check_stream_options
    return None


def _stream(f: _Fields, *, stop: bool) -> Action:
    protocol = f.option.get("protocol")
    checker = _stream_checker(protocol) if isinstance(protocol, str) else None
    if checker is None:
        raise f.fail("protocol", "must be voxology or plivo")
    try:
        if not stop:
            checker(f.option)
        elif protocol == "voxology":
            checker(f.option, stop=True)
        elif set(f.option) - {"protocol", "url"}:
            raise ConfigError("option: a plivo stream_stop takes only protocol and url")
    except ConfigError as exc:
        raise ConfigError(f"action {f.index} ({f.type}): {exc}") from exc
    kind = StreamStop if stop else StreamStart
    return kind(f.type, protocol=str(protocol), option=dict(f.option))


def _stream_start(f: _Fields) -> Action:
    return _stream(f, stop=False)


def _stream_stop(f: _Fields) -> Action:
    return _stream(f, stop=True)


ENCAPSULATIONS = ("rtp", "sln", "audiosocket")


def _external_media_start(f: _Fields) -> Action:
    url = f.text("url")
    if not url.startswith(("ws://", "wss://")):
        raise f.fail("url", "must be a ws:// or wss:// URL")
    encapsulation = f.choice("encapsulation", ENCAPSULATIONS, "rtp")
    fmt = f.option.get("format")
    if fmt is not None and (encapsulation != "sln" or fmt not in ("ulaw", "slin")):
        raise f.fail("format", "is only for sln, and must be 'ulaw' or 'slin'")
    return ExternalMediaStart(f.type, url, encapsulation, fmt)


def _external_media_stop(f: _Fields) -> Action:
    raw = f.option.get("media_id")
    return ExternalMediaStop(f.type, None if raw is None else f.uuid("media_id", raw))


ACTION_TYPES: dict[str, Callable[[_Fields], Action]] = {
    "answer": _answer,
    "echo": _echo,
    "play": _play,
    "tone": _tone,
    "sleep": _sleep,
    "hangup": _hangup,
    "talk": _talk,
    "digits_receive": _digits_receive,
    "goto": _goto,
    "branch": _branch,
    "stop": _stop,
    "connect": _connect,
    "conference_join": _conference_join,
    "external_media_start": _external_media_start,
    "external_media_stop": _external_media_stop,
    "stream_start": _stream_start,
    "stream_stop": _stream_stop,
}


def _identity(index: int, kind: str, raw: Mapping[str, Any]) -> tuple[str, str | None]:
    """The action's id (given, lower-cased, or new) and its next_id, both checked as UUIDs."""
    identity: dict[str, str | None] = {}
    for name in ("id", "next_id"):
        value = raw.get(name)
        if value is None:
            identity[name] = None
        elif isinstance(value, str) and _UUID.fullmatch(value):
            identity[name] = value.lower()
        else:
            raise ConfigError(f"action {index} ({kind}): {name} must be a UUID string")
    return identity["id"] or _new_id(), identity["next_id"]


def parse_action(index: int, raw: object) -> Action:
    """Validate one action object (its references to others are checked by parse_actions)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"action {index}: must be an object with a 'type'")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ConfigError(f"action {index}: 'type' is required and must be a string")
    builder = ACTION_TYPES.get(kind)
    if builder is None:
        known = ", ".join(sorted(ACTION_TYPES))
        raise ConfigError(f"action {index}: unknown type {kind!r} (known: {known})")
    action_id, next_id = _identity(index, kind, raw)
    option = raw.get("option", {})
    if not isinstance(option, Mapping):
        raise ConfigError(f"action {index} ({kind}): 'option' must be an object")
    # Builders know only their options; id and next_id are the same for every type.
    return replace(builder(_Fields(index, kind, option)), id=action_id, next_id=next_id)


def references(action: Action) -> Iterator[tuple[str, str]]:
    """The ids ``action`` names, each with the field it is named in (for error messages)."""
    if action.next_id is not None:
        yield "next_id", action.next_id
    if isinstance(action, Goto):
        yield "option.target_id", action.target_id
    elif isinstance(action, Branch):
        for value, target in action.target_ids.items():
            yield f"option.target_ids.{value}", target
        if action.default_target_id is not None:
            yield "option.default_target_id", action.default_target_id


def parse_actions(raw: object) -> list[Action]:
    """Validate a list of action objects; raises ConfigError naming the first bad one.

    A Voxology call-flow script (``{"actions": [{"type": "STREAM", ...}]}`` or its list)
    is translated first (flows/voxology.py), so it is accepted wherever a flow is.

    After each action is valid on its own, ids must be unique and every ``next_id``
    and goto/branch target must be the id of an action in the same list.
    """
    from callstream.flows import voxology  # the dialect builds on this module

    if voxology.is_voxology_flow(raw):
        raw = voxology.translate(raw)  # Voxology's call-flow script, accepted as is
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ConfigError("actions must be a list")
    actions = [parse_action(index, item) for index, item in enumerate(raw)]
    first_index: dict[str, int] = {}
    for index, action in enumerate(actions):
        if action.id in first_index:
            raise ConfigError(
                f"action {index} ({action.type}): id {action.id} is already the id "
                f"of action {first_index[action.id]}"
            )
        first_index[action.id] = index
    for index, action in enumerate(actions):
        for name, target in references(action):
            if target not in first_index:
                raise ConfigError(
                    f"action {index} ({action.type}): {name} {target} "
                    "is not the id of an action in this list"
                )
    return actions
