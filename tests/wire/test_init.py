import ast
import uuid
from pathlib import Path

import callstream.wire
from callstream.wire import WIRES, AudioSocketWire, RtpWire, SlnWire, Wire

WIRE_SOURCES = Path(callstream.wire.__file__).parent
FORBIDDEN_MODULES = {"asyncio", "socket", "time", "uvloop", "aiohttp", "selectors"}


def test_registry_maps_each_encapsulation_to_its_class() -> None:
    assert WIRES == {"rtp": RtpWire, "sln": SlnWire, "audiosocket": AudioSocketWire}
    for name, wire_class in WIRES.items():
        wire = wire_class(stream_id=uuid.UUID(int=1), options={})
        assert isinstance(wire, Wire) and wire.name == name
        assert wire.stream_id == uuid.UUID(int=1)


def test_wire_modules_do_no_io_and_read_no_clock() -> None:
    for path in sorted(WIRE_SOURCES.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            roots = {name.split(".")[0] for name in names}
            assert not roots & FORBIDDEN_MODULES, f"{path.name} imports {roots & FORBIDDEN_MODULES}"
