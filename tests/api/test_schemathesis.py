"""Property tests from the API's own OpenAPI document (schemathesis): generated requests,
valid and not, never get a 500, and every answer matches the documented status codes,
content types and response schemas.

The gateway runs in a thread with its own event loop on 127.0.0.1, because schemathesis
sends blocking requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from aiohttp import web  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from callstream.api import OPERATIONS, ApiAccessLogger, create_api  # noqa: E402
from callstream.api.openapi import openapi_document  # noqa: E402
from callstream.store import open_store  # noqa: E402
from tests.api.conftest import StandInService  # noqa: E402

MAX_EXAMPLES = 30


class LiveGateway:
    """The API on a loopback port, served from a thread's own loop."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.token = ""
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        self.store = await open_store(f"sqlite:///{self.database}")
        _, self.token = await self.store.create_token("fuzz")
        self.runner = web.AppRunner(
            create_api(StandInService(self.store), self.store), access_log_class=ApiAccessLogger
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.store.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    live = LiveGateway(tmp_path_factory.mktemp("fuzz") / "callstream.db")
    live.start()
    yield live
    live.stop()


API_SCHEMA = schemathesis.openapi.from_dict(openapi_document(OPERATIONS))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


# schemathesis' own pytest plugin (``from_fixture``) does not run under pytest 9: each
# operation's strategy is driven with hypothesis directly.
@pytest.mark.parametrize(
    ("method", "path"), [(op.method, op.path) for op in OPERATIONS], ids=lambda v: str(v)
)
def test_generated_requests_get_documented_answers(
    gateway: LiveGateway, method: str, path: str
) -> None:
    operation = API_SCHEMA[path][method]
    base_url = f"http://127.0.0.1:{gateway.port}"
    headers = {"Authorization": f"Bearer {gateway.token}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS)

    check()
