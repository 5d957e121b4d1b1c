"""Plivo XML (a ``<Response>`` document) turned into our call-flow action dicts.

Plivo's dialect for call flows: an answer URL returns a ``<Response>`` whose elements
run in order. We implement ``<Stream>`` (Plivo "Audio Stream XML element", every
attribute with its rules), ``<Speak>``, ``<Play>``, ``<Wait>`` and ``<Hangup>``; each
becomes one or more action dicts as ``flows.actions`` writes them, so the same
validation and runner serve both dialects.

``<Stream>`` becomes ``{"type": "stream_start", "option": {"protocol": "plivo", ...}}``
with the option keys listed in ``STREAM_OPTION_KEYS``; ``check_stream_options`` checks
such an option (from XML or from a JSON flow) against the same rules.

The document is parsed with defusedxml: a DTD, entity declarations or external
references are refused, so a hostile answer URL cannot expand entities ("billion
laughs") or make us read files. An unknown element or an invalid attribute fails the
whole document with ``PlivoXmlError``, naming the element and the attribute, because
Plivo does the same: the call then hangs up rather than running half a flow.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from typing import Any

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

from callstream.errors import ConfigError

AUDIO_TRACKS = ("inbound", "outbound", "both")
CALLBACK_METHODS = ("GET", "POST")
CONTENT_TYPES = ("audio/x-l16;rate=8000", "audio/x-l16;rate=16000", "audio/x-mulaw;rate=8000")
DEFAULT_CONTENT_TYPE = CONTENT_TYPES[0]
DEFAULT_STREAM_TIMEOUT_S = 86400
MAX_EXTRA_HEADERS_BYTES = 512
MAX_WAIT_S = 24 * 3600
MAX_LOOP_COUNT = 2**31 - 1
"""What ``loop="0"`` (Plivo: repeat for ever) becomes: the goto's largest loop count."""

STREAM_OPTION_KEYS = (
    "protocol",
    "url",
    "bidirectional",
    "audio_track",
    "timeout_s",
    "status_callback_url",
    "status_callback_method",
    "content_type",
    "extra_headers",
    "keep_call_alive",
)

# Plivo's extraHeaders: "k=v,k=v", only [A-Za-z0-9] in keys and values.
_EXTRA_HEADERS = re.compile(r"[A-Za-z0-9]+=[A-Za-z0-9]+(,[A-Za-z0-9]+=[A-Za-z0-9]+)*")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)
_WS_URL = re.compile(r"wss?://[^\s/?#]+[^\s]*", re.IGNORECASE)
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_DIGITS = re.compile(r"[0-9]+")

_AUDIO_TRACK_RULE = "must be inbound, outbound or both"
_BIDIRECTIONAL_TRACK_RULE = "must be inbound when bidirectional is true"
_CONTENT_TYPE_RULE = "must be " + ", ".join(CONTENT_TYPES[:-1]) + " or " + CONTENT_TYPES[-1]
_EXTRA_HEADERS_RULE = (
    "must be key=value pairs separated by commas, with only letters and digits in keys and values"
)


class PlivoXmlError(ConfigError):
    """A Plivo XML document we refuse; the message names the element and attribute."""


def _fail(element: str, attribute: str | None, why: str) -> PlivoXmlError:
    where = f"<{element}>" if attribute is None else f"<{element}> {attribute}"
    return PlivoXmlError(f"{where}: {why}")


def _boolean(element: str, name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise _fail(element, name, "must be true or false")
    return value == "true"


def _positive_integer(element: str, name: str, raw: str) -> int:
    value = raw.strip()
    if not _DIGITS.fullmatch(value) or int(value) == 0:
        raise _fail(element, name, "must be a positive integer")
    return int(value)


def _loop_count(element: str, raw: str) -> int:
    value = raw.strip()
    if not _DIGITS.fullmatch(value):
        raise _fail(element, "loop", "must be a whole number (0 repeats for ever)")
    return int(value)


def _check_attributes(element: ElementTree.Element, allowed: tuple[str, ...]) -> None:
    for name in element.attrib:
        if name not in allowed:
            raise _fail(element.tag, name, f"not an attribute of <{element.tag}>")


def _text(element: ElementTree.Element, what: str) -> str:
    if len(element):
        raise _fail(element.tag, None, f"child element <{element[0].tag}> is not supported")
    text = (element.text or "").strip()
    if not text:
        raise _fail(element.tag, None, f"{what} is required as the element's text")
    return text


# --- <Stream> ---------------------------------------------------------------------------

_STREAM_ATTRIBUTES = (
    "bidirectional",
    "audioTrack",
    "streamTimeout",
    "statusCallbackUrl",
    "statusCallbackMethod",
    "contentType",
    "extraHeaders",
    "keepCallAlive",
)


def _stream_url(element: ElementTree.Element) -> str:
    url = _text(element, "the WebSocket URL")
    if not _WS_URL.fullmatch(url):
        raise _fail("Stream", None, "the URL must be a ws:// or wss:// URL")
    return url


def _stream_option(element: ElementTree.Element) -> dict[str, Any]:
    """The stream_start option of one ``<Stream>`` (Plivo: "The AudioStream element")."""
    _check_attributes(element, _STREAM_ATTRIBUTES)
    attributes = element.attrib
    bidirectional = _boolean("Stream", "bidirectional", attributes.get("bidirectional", "false"))
    audio_track = attributes.get("audioTrack", "inbound").strip().lower()
    if audio_track not in AUDIO_TRACKS:
        raise _fail("Stream", "audioTrack", _AUDIO_TRACK_RULE)
    if bidirectional and audio_track != "inbound":
        raise _fail("Stream", "audioTrack", _BIDIRECTIONAL_TRACK_RULE)
    timeout_s = DEFAULT_STREAM_TIMEOUT_S
    if "streamTimeout" in attributes:
        timeout_s = _positive_integer("Stream", "streamTimeout", attributes["streamTimeout"])
    callback_url = attributes.get("statusCallbackUrl", "").strip() or None
    if callback_url is not None and not _HTTP_URL.fullmatch(callback_url):
        raise _fail("Stream", "statusCallbackUrl", "must be an http:// or https:// URL")
    method = attributes.get("statusCallbackMethod", "POST").strip().upper()
    if method not in CALLBACK_METHODS:
        raise _fail("Stream", "statusCallbackMethod", "must be GET or POST")
    content_type = "".join(attributes.get("contentType", DEFAULT_CONTENT_TYPE).split()).lower()
    if content_type not in CONTENT_TYPES:
        raise _fail("Stream", "contentType", _CONTENT_TYPE_RULE)
    extra_headers = attributes.get("extraHeaders", "").strip()
    _check_extra_headers(extra_headers, lambda why: _fail("Stream", "extraHeaders", why))
    keep_alive = _boolean("Stream", "keepCallAlive", attributes.get("keepCallAlive", "false"))
    return {
        "protocol": "plivo",
        "url": _stream_url(element),
        "bidirectional": bidirectional,
        "audio_track": audio_track,
        "timeout_s": timeout_s,
        "status_callback_url": callback_url,
        "status_callback_method": method,
        "content_type": content_type,
        "extra_headers": extra_headers,
        "keep_call_alive": keep_alive,
    }


def _check_extra_headers(value: str, fail: Callable[[str], ConfigError]) -> None:
    if len(value.encode()) > MAX_EXTRA_HEADERS_BYTES:
        raise fail(f"must be at most {MAX_EXTRA_HEADERS_BYTES} bytes")
    if value and not _EXTRA_HEADERS.fullmatch(value):
        raise fail(_EXTRA_HEADERS_RULE)


def check_stream_options(option: Mapping[str, Any]) -> None:
    """Validate a ``stream_start`` option with protocol "plivo" (a JSON flow's, or ours).

    The same rules as the ``<Stream>`` attributes, on typed values: ``url`` (ws/wss),
    ``bidirectional`` and ``keep_call_alive`` (booleans), ``audio_track``, ``timeout_s``
    (positive integer), ``status_callback_url`` (http/https or null),
    ``status_callback_method``, ``content_type`` and ``extra_headers``. Only ``url`` is
    required. Raises ConfigError("option.<key> ...") naming the first bad key.
    """

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"option.{key} {why}")

    unknown = sorted(set(option) - set(STREAM_OPTION_KEYS))
    if unknown:
        raise fail(unknown[0], "is not an option of a plivo stream")
    if option.get("protocol", "plivo") != "plivo":
        raise fail("protocol", "must be plivo")
    url = option.get("url")
    if not isinstance(url, str) or not _WS_URL.fullmatch(url):
        raise fail("url", "is required and must be a ws:// or wss:// URL")
    for key in ("bidirectional", "keep_call_alive"):
        if not isinstance(option.get(key, False), bool):
            raise fail(key, "must be true or false")
    audio_track = option.get("audio_track", "inbound")
    if audio_track not in AUDIO_TRACKS:
        raise fail("audio_track", _AUDIO_TRACK_RULE)
    if option.get("bidirectional", False) and audio_track != "inbound":
        raise fail("audio_track", _BIDIRECTIONAL_TRACK_RULE)
    timeout_s = option.get("timeout_s", DEFAULT_STREAM_TIMEOUT_S)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s <= 0:
        raise fail("timeout_s", "must be a positive integer")
    callback_url = option.get("status_callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not _HTTP_URL.fullmatch(callback_url)
    ):
        raise fail("status_callback_url", "must be an http:// or https:// URL")
    if option.get("status_callback_method", "POST") not in CALLBACK_METHODS:
        raise fail("status_callback_method", "must be GET or POST")
    if option.get("content_type", DEFAULT_CONTENT_TYPE) not in CONTENT_TYPES:
        raise fail("content_type", _CONTENT_TYPE_RULE)
    extra_headers = option.get("extra_headers", "")
    if not isinstance(extra_headers, str):
        raise fail("extra_headers", "must be a string")
    _check_extra_headers(extra_headers, lambda why: fail("extra_headers", why))


# --- <Speak>, <Play>, <Wait>, <Hangup> ----------------------------------------------------

# Plivo's voices: WOMAN (default) and MAN; Polly.* and Google.* neural voices have no
# gender we can read from the name, so they speak with our default voice.
_SPEAK_GENDERS = {"WOMAN": "female", "MAN": "male"}


def _looped(action: dict[str, Any], element: ElementTree.Element) -> list[dict[str, Any]]:
    """``action`` repeated as Plivo's ``loop`` asks: N > 1 adds a goto back N-1 times."""
    loop = _loop_count(element.tag, element.attrib.get("loop", "1"))
    if loop == 1:
        return [action]
    action = {"id": str(uuid.uuid4()), **action}
    repeats = MAX_LOOP_COUNT if loop == 0 else loop - 1
    goto = {"type": "goto", "option": {"target_id": action["id"], "loop_count": repeats}}
    return [action, goto]


def _speak(element: ElementTree.Element) -> list[dict[str, Any]]:
    _check_attributes(element, ("voice", "language", "loop"))
    text = _text(element, "the text to speak")
    voice = element.attrib.get("voice", "WOMAN").strip()
    if voice not in _SPEAK_GENDERS and not voice.startswith(("Polly.", "Google.")):
        raise _fail("Speak", "voice", "must be WOMAN, MAN or a Polly.* or Google.* voice")
    language = element.attrib.get("language", "en-US").strip()
    if not _LANGUAGE_TAG.fullmatch(language):
        raise _fail("Speak", "language", 'must be a language tag such as "en-US"')
    option = {"text": text, "gender": _SPEAK_GENDERS.get(voice, "female"), "language": language}
    return _looped({"type": "talk", "option": option}, element)


def _play(element: ElementTree.Element) -> list[dict[str, Any]]:
    _check_attributes(element, ("loop",))
    url = _text(element, "the audio URL")
    if not _HTTP_URL.fullmatch(url):
        raise _fail("Play", None, "the URL must be an http:// or https:// URL")
    return _looped({"type": "play", "option": {"url": url}}, element)


def _wait(element: ElementTree.Element) -> list[dict[str, Any]]:
    _check_attributes(element, ("length",))
    if len(element) or (element.text or "").strip():
        raise _fail("Wait", None, "must be empty")
    length_s = _positive_integer("Wait", "length", element.attrib.get("length", "1"))
    if length_s > MAX_WAIT_S:
        raise _fail("Wait", "length", f"must be at most {MAX_WAIT_S} seconds")
    return [{"type": "sleep", "option": {"duration": length_s * 1000}}]


def _hangup(element: ElementTree.Element) -> list[dict[str, Any]]:
    _check_attributes(element, ("reason",))
    if len(element) or (element.text or "").strip():
        raise _fail("Hangup", None, "must be empty")
    reason = element.attrib.get("reason")
    if reason is None:
        return [{"type": "hangup"}]
    if reason not in ("rejected", "busy"):
        raise _fail("Hangup", "reason", "must be rejected or busy")
    return [{"type": "hangup", "option": {"reason": reason}}]


def _stream(element: ElementTree.Element) -> list[dict[str, Any]]:
    return [{"type": "stream_start", "option": _stream_option(element)}]


ELEMENTS: dict[str, Callable[[ElementTree.Element], list[dict[str, Any]]]] = {
    "Stream": _stream,
    "Speak": _speak,
    "Play": _play,
    "Wait": _wait,
    "Hangup": _hangup,
}


def _parse_document(xml: str | bytes) -> ElementTree.Element:
    try:
        root: ElementTree.Element = fromstring(xml, forbid_dtd=True)
    except DefusedXmlException as error:
        # DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden: all refused alike.
        raise PlivoXmlError(
            f"XML with a DTD, entities or external references is refused ({type(error).__name__})"
        ) from None
    except ElementTree.ParseError as error:
        raise PlivoXmlError(f"not well-formed XML: {error}") from None
    return root


def parse_response(xml: str | bytes) -> list[dict[str, Any]]:
    """A Plivo ``<Response>`` document as our action dicts, in document order.

    Raises PlivoXmlError (a ConfigError) for XML that is not well-formed, has a DTD or
    entities, a root other than ``<Response>``, an unknown element, or an attribute that
    breaks the rules of Plivo's XML reference; the message names the element.
    """
    root = _parse_document(xml)
    if root.tag != "Response":
        raise PlivoXmlError(f"the document's root must be <Response>, not <{root.tag}>")
    if root.attrib:
        raise _fail("Response", next(iter(root.attrib)), "not an attribute of <Response>")
    if (root.text or "").strip():
        raise _fail("Response", None, "text outside an element is not allowed")
    actions: list[dict[str, Any]] = []
    for element in root:
        build = ELEMENTS.get(element.tag)
        if build is None:
            known = ", ".join(f"<{name}>" for name in ELEMENTS)
            raise PlivoXmlError(f"<{element.tag}>: unknown element (known: {known})")
        if (element.tail or "").strip():
            raise _fail("Response", None, "text outside an element is not allowed")
        actions.extend(build(element))
    return actions
