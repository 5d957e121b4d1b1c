"""The bench smoke tests run a real gateway and the real load generator in real time.

Like the interop suite (tests/interop/conftest.py), a test here is run once more before
it fails: a scheduling stall on the shared CI machine is not a fault of the bench. What
the tests assert holds at any speed; a real fault fails both runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH_RERUNS = 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.flaky(reruns=BENCH_RERUNS, reruns_delay=1))
