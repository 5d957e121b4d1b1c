from __future__ import annotations

import pytest

from callstream.api.schemas import (
    ABSENT,
    CALL_CREATE,
    ENDPOINT,
    TRUNK_WRITE,
    Boolean,
    Choice,
    Integer,
    ListOf,
    Nullable,
    Text,
    check_body,
)
from callstream.errors import ConfigError


def message(schema: object, value: object, path: str = "x") -> str:
    with pytest.raises(ConfigError) as caught:
        schema.check(value, path)  # type: ignore[attr-defined]
    return str(caught.value)


def test_choice_is_case_insensitive_and_cleans_to_the_listed_spelling() -> None:
    transport = Choice(("UDP", "TCP"))
    assert transport.check("tcp", "transport") == "TCP"
    assert message(transport, 5, "transport") == "transport: must be one of 'UDP', 'TCP'"


def test_integer_refuses_booleans_and_floats() -> None:
    size = Integer(1, 100)
    assert size.check(100, "n") == 100
    assert message(size, True, "n") == "n: must be an integer"
    assert message(size, 2.0, "n") == "n: must be an integer"
    assert message(size, 101, "n") == "n: must be between 1 and 100"


def test_boolean_takes_only_true_and_false() -> None:
    flag = Boolean()
    assert (flag.check(True, "b"), flag.check(False, "b")) == (True, False)
    for value in (1, 0, "true", None):
        with pytest.raises(ConfigError, match="^b: must be true or false$"):
            flag.check(value, "b")
    assert flag.json_schema() == {"type": "boolean"}


def test_text_limits() -> None:
    assert message(Text(1, 3), "", "name") == "name: must not be empty"
    assert message(Text(0, 3), "abcd", "name") == "name: must be at most 3 characters"
    assert Text(1, 3).json_schema() == {"type": "string", "maxLength": 3, "minLength": 1}


def test_nested_paths_name_the_field_as_written() -> None:
    endpoints = ListOf(ENDPOINT, 1, 5)
    good = {"type": "sip", "target": "sip:a@h"}
    bad = {"type": "sip", "target": 7}
    assert message(endpoints, [good, bad], "destinations") == (
        "destinations[1].target: must be a string"
    )
    assert message(endpoints, [good, "sip:b@h"], "destinations") == (
        "destinations[1]: must be an object"
    )


def test_endpoint_keeps_only_type_and_target() -> None:
    value = {"type": "tel", "target": "+15551234567", "name": "ignored"}
    assert ENDPOINT.check(value, "source") == {"type": "tel", "target": "+15551234567"}


def test_nullable() -> None:
    username = Nullable(Text(1, 10))
    assert username.check(None, "u") is None
    assert username.json_schema() == {
        "oneOf": [{"type": "string", "maxLength": 10, "minLength": 1}, {"type": "null"}]
    }


def test_optional_fields_get_defaults_and_absent_passwords_are_marked() -> None:
    trunk = check_body(TRUNK_WRITE, {"name": "t", "proxy": "h:5060"})
    assert trunk == {
        "name": "t",
        "proxy": "h:5060",
        "transport": "UDP",
        "username": None,
        "password": ABSENT,
        "inbound_addresses": [],
        "register": False,
        "register_expires": 600,
    }


def test_call_actions_come_back_with_ids() -> None:
    body = {
        "source": {"type": "sip", "target": "sip:a@h"},
        "destination": {"type": "sip", "target": "sip:b@h"},
        "actions": [{"type": "answer", "option": {}}],
    }
    [action] = check_body(CALL_CREATE, body)["actions"]
    assert set(action) == {"id", "type", "option"}
    assert action["type"] == "answer"
