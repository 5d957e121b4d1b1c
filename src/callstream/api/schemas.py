"""Request schemas: one description that both validates a body and writes its JSON Schema.

Each ``Schema`` has ``check(value, path)`` — returns the cleaned value or raises
``ConfigError("<path>: <why>")``, the path naming the field as a client wrote it
(``destinations[0].target``) — and ``json_schema()`` for the OpenAPI document, so what
is documented is what is enforced. Unknown object fields are ignored (VoipBin clients
send extras such as ``anonymous``).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from callstream.endpoints import target_fault
from callstream.errors import ConfigError
from callstream.flows.actions import ACTION_TYPES, parse_actions
from callstream.flows.voxology import is_voxology_flow, translate

JsonSchema = dict[str, Any]


def field_path(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def fail(path: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: {why}" if path else why)


class Schema(ABC):
    description: str = ""

    @abstractmethod
    def check(self, value: object, path: str) -> Any:
        """The cleaned value; raises ConfigError naming ``path``."""

    @abstractmethod
    def json_schema(self) -> JsonSchema: ...

    def _described(self, schema: JsonSchema) -> JsonSchema:
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass
class Text(Schema):
    min_length: int = 0
    max_length: int = 1000
    description: str = ""

    def check(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise fail(path, "must be a string")
        if len(value) < self.min_length:
            raise fail(path, "must not be empty" if self.min_length == 1 else "is too short")
        if len(value) > self.max_length:
            raise fail(path, f"must be at most {self.max_length} characters")
        return value

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        return self._described(schema)


@dataclass
class Integer(Schema):
    minimum: int
    maximum: int
    description: str = ""

    def check(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(path, "must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise fail(path, f"must be between {self.minimum} and {self.maximum}")
        return value

    def json_schema(self) -> JsonSchema:
        schema = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        return self._described(schema)


@dataclass
class Boolean(Schema):
    description: str = ""

    def check(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise fail(path, "must be true or false")
        return value

    def json_schema(self) -> JsonSchema:
        return self._described({"type": "boolean"})


@dataclass
class Choice(Schema):
    """One of a few strings, compared without case; cleaned to the listed spelling."""

    values: tuple[str, ...]
    description: str = ""

    def check(self, value: object, path: str) -> str:
        if isinstance(value, str):
            for choice in self.values:
                if value.lower() == choice.lower():
                    return choice
        listed = ", ".join(repr(choice) for choice in self.values)
        raise fail(path, f"must be one of {listed}")

    def json_schema(self) -> JsonSchema:
        return self._described({"type": "string", "enum": list(self.values)})


@dataclass
class Uuid(Schema):
    description: str = ""

    def check(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise fail(path, "must be a string")
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise fail(path, "must be a UUID") from None

    def json_schema(self) -> JsonSchema:
        return self._described({"type": "string", "format": "uuid"})


@dataclass
class Nullable(Schema):
    inner: Schema
    description: str = ""

    def check(self, value: object, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)

    def json_schema(self) -> JsonSchema:
        return self._described({"oneOf": [self.inner.json_schema(), {"type": "null"}]})


@dataclass
class ListOf(Schema):
    item: Schema
    min_items: int = 0
    max_items: int = 100
    description: str = ""

    def check(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise fail(path, "must be a list")
        if not self.min_items <= len(value) <= self.max_items:
            raise fail(path, f"must have between {self.min_items} and {self.max_items} items")
        return [self.item.check(item, f"{path}[{index}]") for index, item in enumerate(value)]

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": "array", "items": self.item.json_schema()}
        schema["minItems"] = self.min_items
        schema["maxItems"] = self.max_items
        return self._described(schema)


class Absent:
    """The default of a field whose absence means "leave it as it is"."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = Absent()


@dataclass(frozen=True)
class Field:
    schema: Schema
    required: bool = True
    default: Any = None


@dataclass
class Record(Schema):
    """A JSON object with named fields; missing optional fields get their default."""

    fields: Mapping[str, Field]
    description: str = ""

    def check(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(path, "must be an object")
        cleaned: dict[str, Any] = {}
        for name, spec in self.fields.items():
            if name in value:
                cleaned[name] = spec.schema.check(value[name], field_path(path, name))
            elif spec.required:
                raise fail(field_path(path, name), "is required")
            else:
                cleaned[name] = spec.default
        return cleaned

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {
            "type": "object",
            "properties": {name: spec.schema.json_schema() for name, spec in self.fields.items()},
        }
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            schema["required"] = required
        return self._described(schema)


@dataclass
class Checked(Schema):
    """Another schema followed by a check that may reject or clean the value."""

    inner: Schema
    test: Callable[[Any, str], Any]
    extra: JsonSchema | None = None
    description: str = ""

    def check(self, value: object, path: str) -> Any:
        return self.test(self.inner.check(value, path), path)

    def json_schema(self) -> JsonSchema:
        schema = self.inner.json_schema() | (self.extra or {})
        return self._described(schema)


# -- VoipBin's address object ------------------------------------------------------------


def _check_endpoint(value: dict[str, Any], path: str) -> dict[str, str]:
    fault = target_fault(value["type"], value["target"])
    if fault:
        raise fail(field_path(path, "target"), fault)
    return {"type": value["type"], "target": value["target"]}


ENDPOINT: Final = Checked(
    Record(
        {
            "type": Field(Choice(("sip", "tel"))),
            "target": Field(Text(1, 500, "a SIP URI (type sip) or an E.164 number (type tel)")),
        }
    ),
    _check_endpoint,
    description="VoipBin's address: {type, target}",
)


# -- actions -----------------------------------------------------------------------------


def _check_actions(value: list[Any], path: str) -> list[dict[str, Any]]:
    """Validated by the flow module; returned as written, with the ids it settled on
    (the given UUID lower-cased, or a fresh one) so stored flows keep stable ids."""
    if is_voxology_flow(value):
        value = translate(value)  # Voxology's script: stored as the actions it runs
    parsed = parse_actions(value)
    actions: list[dict[str, Any]] = []
    for action, raw in zip(parsed, value, strict=True):
        identity = {"id": action.id}
        if action.next_id is not None:
            identity["next_id"] = action.next_id
        actions.append(identity | {k: v for k, v in raw.items() if k not in identity})
    return actions


class _AnyAction(Schema):
    """An action object; its options are checked by ``flows.actions.parse_actions``."""

    def check(self, value: object, path: str) -> Any:
        return value

    def json_schema(self) -> JsonSchema:
        return {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid", "description": "new if absent"},
                "next_id": {"type": "string", "format": "uuid"},
                "type": {"type": "string", "enum": sorted(ACTION_TYPES)},
                "option": {"type": "object"},
            },
            "required": ["type"],
        }


@dataclass
class _ActionList(Schema):
    """A list of actions, or Voxology's printed script ``{"actions": [...]}``."""

    description: str = ""

    def check(self, value: object, path: str) -> Any:
        if isinstance(value, dict) and set(value) == {"actions"}:
            value = value["actions"]
        return ListOf(_AnyAction(), 0, 1000).check(value, path)

    def json_schema(self) -> JsonSchema:
        return ListOf(_AnyAction(), 0, 1000).json_schema()


ACTIONS: Final = Checked(
    _ActionList(),
    _check_actions,
    description="VoipBin flow actions, validated before anything is created",
)


# -- trunk fields ------------------------------------------------------------------------

_HOST_RE: Final = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9\-.]*")


def _check_proxy(value: str, path: str) -> str:
    host, colon, port = value.rpartition(":")
    if not colon or not _HOST_RE.fullmatch(host):
        raise fail(path, "must be host:port")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise fail(path, "port must be between 1 and 65535")
    return value


def _check_ip_address(value: str, path: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise fail(path, "not an IP address") from None


def _check_match(value: str, path: str) -> str:
    if value.startswith("re:"):
        try:
            re.compile(value[3:])
        except re.error as exc:
            raise fail(path, f"not a valid regular expression ({exc})") from None
    return value


PROXY: Final = Checked(Text(3, 300), _check_proxy, {"pattern": r"^.+:[0-9]{1,5}$"})
IP_ADDRESS: Final = Checked(Text(2, 45), _check_ip_address, {"format": "ip-address"})
MATCH: Final = Checked(
    Text(1, 200),
    _check_match,
    description="a Request-URI user part, exact, or a regular expression after 're:'",
)


# -- request bodies ----------------------------------------------------------------------


def _check_http_url(value: str, path: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise fail(path, "must be an http:// or https:// URL")
    return value


CALL_CREATE: Final = Record(
    {
        "source": Field(ENDPOINT),
        "destinations": Field(ListOf(ENDPOINT, 1, 100), required=False),
        "destination": Field(ENDPOINT, required=False),
        "actions": Field(ACTIONS, required=False),
        "flow_id": Field(Uuid(), required=False),
        "answer_url": Field(
            Checked(Text(1, 2000), _check_http_url, {"pattern": "^https?://"}), required=False
        ),
        "answer_method": Field(Choice(("GET", "POST")), required=False, default="POST"),
        "xml": Field(Text(1, 65536, "a Plivo <Response> document, run on answer"), required=False),
    },
    "One call per destination. Give exactly one of actions, flow_id, answer_url (Plivo: "
    "the <Response> fetched on answer) or xml; destinations (or the older singular "
    "destination).",
)

FLOW_WRITE: Final = Record(
    {
        "name": Field(Text(1, 200)),
        "detail": Field(Text(0, 2000), required=False, default=""),
        "actions": Field(ACTIONS),
    }
)

ROUTE_WRITE: Final = Record(
    {
        "match": Field(MATCH),
        "flow_id": Field(Uuid("a flow of this account")),
        "priority": Field(Integer(0, 1_000_000, "lower goes first"), required=False, default=100),
    }
)

TRUNK_WRITE: Final = Record(
    {
        "name": Field(Text(1, 200)),
        "proxy": Field(PROXY),
        "transport": Field(Choice(("UDP", "TCP")), required=False, default="UDP"),
        "username": Field(Nullable(Text(1, 200)), required=False),
        "password": Field(Nullable(Text(1, 200)), required=False, default=ABSENT),
        "inbound_addresses": Field(ListOf(IP_ADDRESS, 0, 100), required=False, default=[]),
        "register": Field(
            Boolean("register sip:username@proxy-host at the proxy (needs a username)"),
            required=False,
            default=False,
        ),
        "register_expires": Field(
            Integer(60, 86400, "seconds of registration asked for"), required=False, default=600
        ),
    },
    "On PUT, an absent password keeps the stored one; null clears it. Never returned.",
)

CONFERENCE_CREATE: Final = Record(
    {
        "name": Field(Text(0, 200), required=False, default=""),
        "detail": Field(Text(0, 2000), required=False, default=""),
    }
)

CONFERENCE_CALL: Final = Record({"call_id": Field(Uuid())})


def check_body(schema: Schema, body: object) -> Any:
    """Validate a parsed JSON body; the top level must be an object."""
    if not isinstance(body, dict):
        raise ConfigError(f"request body must be a JSON object, not {_json_type(body)}")
    return schema.check(body, "")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Sequence):
        return "an array"
    return type(value).__name__


# -- response shapes (components written by api/openapi.py) ------------------------------


def ref(component: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{component}"}


def page_of(component: str) -> JsonSchema:
    """VoipBin's list response: ``{"result": [...], "next_page_token": "..." | null}``."""
    return {
        "type": "object",
        "properties": {
            "result": {"type": "array", "items": ref(component)},
            "next_page_token": {"type": ["string", "null"]},
        },
        "required": ["result", "next_page_token"],
    }
