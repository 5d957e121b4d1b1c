"""Stream wire protocols: one module each behind ``wire.base.Wire``; no I/O.

``WIRES`` maps a stream's ``encapsulation`` query value to its ``Wire`` class.
"""

from callstream.wire.audiosocket import AudioSocketWire
from callstream.wire.base import Decoded, Message, Wire, WireOptionError
from callstream.wire.rtp import RtpWire
from callstream.wire.sln import SlnWire

WIRES: dict[str, type[Wire]] = {wire.name: wire for wire in (RtpWire, SlnWire, AudioSocketWire)}

__all__ = [
    "WIRES",
    "AudioSocketWire",
    "Decoded",
    "Message",
    "RtpWire",
    "SlnWire",
    "Wire",
    "WireOptionError",
]
