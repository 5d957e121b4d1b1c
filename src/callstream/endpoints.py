"""VoipBin's address object, ``{"type": "sip" | "tel", "target": ...}``: the one check of
an endpoint, shared by the REST API (before anything is created) and the call service.
"""

from __future__ import annotations

import re

from callstream.errors import SipParseError
from callstream.sip.uri import SipUri

E164 = re.compile(r"\+[1-9][0-9]{7,14}")
"""An E.164 number as callstream takes it everywhere (API, flows, Voxology scripts)."""
E164_RULE = "+ and 8 to 15 digits, the first not 0"


def target_fault(kind: str, target: str) -> str | None:
    """Why ``target`` is not a valid target for an endpoint of ``kind``, or None."""
    if kind == "tel":
        if not E164.fullmatch(target):
            return f"not an E.164 number ({E164_RULE})"
        return None
    try:
        uri = SipUri.parse(target)
    except SipParseError as exc:
        return f"not a SIP URI ({exc})"
    if uri.scheme not in ("sip", "sips") or not uri.host:
        return "not a SIP URI (sip:user@host)"
    return None


def endpoint_error(where: str, endpoint: object) -> str | None:
    """Why an endpoint object is invalid (naming the field under ``where``), or None."""
    if not isinstance(endpoint, dict):
        return f"{where}: must be an object with 'type' and 'target'"
    kind, target = endpoint.get("type"), endpoint.get("target")
    if kind not in ("sip", "tel"):
        return f"{where}.type: must be 'sip' or 'tel'"
    if not isinstance(target, str) or not target:
        return f"{where}.target: required, a non-empty string"
    fault = target_fault(kind, target)
    return f"{where}.target: {fault}" if fault else None
